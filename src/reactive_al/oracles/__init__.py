"""QM oracles (PySCF, GFN-xTB) behind one call, the label cache, and batch labeling."""

from __future__ import annotations

from typing import Any

from ase import Atoms

from reactive_al.oracles.pyscf_oracle import OracleError, pyscf_single_point


def single_point(
    atoms: Atoms, charge: int, multiplicity: int, program: str = "pyscf", **settings: Any
) -> dict[str, Any]:
    """Run one single point with ``program`` (``pyscf`` or ``xtb``); see the backends."""
    if program == "pyscf":
        return pyscf_single_point(atoms, charge, multiplicity, **settings)
    if program == "xtb":
        from reactive_al.oracles.xtb_oracle import xtb_single_point

        return xtb_single_point(atoms, charge, multiplicity, **settings)
    raise OracleError("exception", f"unknown QM program '{program}'")


__all__ = ["OracleError", "single_point"]
