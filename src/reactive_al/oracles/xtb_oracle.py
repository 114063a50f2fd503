"""GFN-xTB through tblite: a cheap oracle with the same interface as the PySCF one.

For exploration warm-up, tuning and tests; install with ``pip install -e ".[xtb]"``.
"""

from __future__ import annotations

import time
from importlib.metadata import version
from typing import Any

import numpy as np
from ase import Atoms

from reactive_al.oracles.pyscf_oracle import OracleError

_METHODS = {"gfn2-xtb": "GFN2-xTB", "gfn1-xtb": "GFN1-xTB", "ipea1-xtb": "IPEA1-xTB"}


def xtb_single_point(
    atoms: Atoms,
    charge: int,
    multiplicity: int,
    method: str = "gfn2-xtb",
    omp_threads: int | None = None,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Energy (eV) and forces (eV/Å) from tblite; raises :class:`OracleError` on failure."""
    try:
        from tblite.ase import TBLite
    except ImportError as exc:
        raise OracleError("exception", "tblite is not installed (pip install '.[xtb]')") from exc
    if method.lower() not in _METHODS:
        raise OracleError("exception", f"unknown xTB method '{method}' ({sorted(_METHODS)})")
    start = time.perf_counter()
    mol = atoms.copy()
    mol.pbc = False
    mol.calc = TBLite(method=_METHODS[method.lower()], charge=float(charge),
                      multiplicity=int(multiplicity), verbosity=0)
    try:
        energy = float(mol.get_potential_energy())
        forces = np.asarray(mol.get_forces())
    except Exception as exc:  # tblite raises a generic exception when SCC does not converge
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        category = "scf_not_converged" if "converge" in msg.lower() else "exception"
        raise OracleError(category, msg) from exc
    wall = time.perf_counter() - start
    if timeout_s and wall > timeout_s:
        raise OracleError("timeout", f"xTB took {wall:.1f} s > {timeout_s} s")
    return {"energy": energy, "forces": forces, "provenance": {
        "qm_program": "tblite", "qm_version": version("tblite"), "qm_method": method.lower(),
        "qm_converged": True, "qm_wall_time_s": round(wall, 3)}}
