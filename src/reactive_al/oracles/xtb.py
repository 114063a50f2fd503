"""GFN-xTB through tblite: a cheap oracle with the same interface as the PySCF one.

For exploration warm-up, thermal MD drivers, tuning and tests, and the oracle of periodic
systems (crystals, MOFs: energy, forces and stress under periodic boundary conditions); install
with ``pip install -e ".[xtb]"``. tblite is imported only inside calls, so importing this module
(which registers ``program: xtb``) is cheap. Method names are lower case everywhere
(``gfn2-xtb``); tblite's spelling (``GFN2-xTB``) stays in this module.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

from reactive_al.oracles.base import Oracle, OracleError, as_oracle_error, register_oracle

#: Our method names → tblite's.
_METHODS = {"gfn2-xtb": "GFN2-xTB", "gfn1-xtb": "GFN1-xTB", "ipea1-xtb": "IPEA1-xTB"}
#: the failure of a call when tblite is missing
NOT_INSTALLED = "tblite is not installed (pip install '.[xtb]')"
#: K: the electronic (Fermi smearing) temperature of every label, as in tblite's ASE calculator
ELECTRONIC_TEMPERATURE_K = 300.0
#: Å³: a periodic cell smaller than this spans no volume (zero or flat cell vectors)
MIN_CELL_VOLUME = 1e-6


@dataclass(frozen=True)
class XTBLevel:
    """A GFN-xTB level of theory; ``method``: ``gfn2-xtb``, ``gfn1-xtb`` or ``ipea1-xtb``."""

    program: ClassVar[str] = "xtb"
    method: str = "gfn2-xtb"

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", str(self.method).lower())

    @property
    def name(self) -> str:
        """Short name used in provenance and by TorchANI (the method)."""
        return self.method

    def as_dict(self) -> dict[str, Any]:
        """Plain-dict form (cache keys, provenance, MLflow, Dask workers)."""
        return {"program": "xtb", "method": self.method}


def _tblite_method(method: str) -> str:
    """The tblite spelling of ``method``; raises :class:`OracleError` for an unknown one."""
    if method not in _METHODS:
        raise OracleError("exception", f"unknown xTB method '{method}' ({sorted(_METHODS)})")
    return _METHODS[method]


def _tblite(charge: int, multiplicity: int, method: str):
    try:
        from tblite.ase import TBLite
    except ImportError as exc:
        raise OracleError("exception", NOT_INSTALLED) from exc
    return TBLite(method=_tblite_method(method), charge=float(charge),
                  multiplicity=int(multiplicity), verbosity=0)


def _check_cell(atoms: Atoms) -> None:
    """Raise ``geometry_invalid`` for a periodic structure whose cell spans no volume.

    xTB sees a crystal with its cell and a molecule (``pbc`` all False) without one: a
    periodic copy of a molecule gives wrong energies (about 0.5 eV for the SN2 anion), so only
    a structure that declares periodicity (``atoms.pbc.any()``) is computed periodic; its cell
    must then span a volume (tblite divides the virial by it). Nothing is copied: the single
    point only reads the structure.
    """
    if not atoms.pbc.any():
        return
    volume = abs(float(np.linalg.det(np.asarray(atoms.cell))))
    if volume < MIN_CELL_VOLUME:
        raise OracleError("geometry_invalid",
                          f"periodic structure (pbc={atoms.pbc.tolist()}) has a cell of volume "
                          f"{volume:.3g} Å³; give a cell spanning three dimensions")


def _singlepoint(work: Atoms, charge: int, multiplicity: int,
                 method: str) -> tuple[float, np.ndarray, np.ndarray | None]:
    """Energy (eV), forces (eV/Å) and, for a crystal, Voigt stress (eV/Å³) from a fresh SCC.

    tblite's own calculation interface with the settings of its ASE calculator (electronic
    temperature 300 K, the rest tblite's defaults): the same numbers to the last bit (tested)
    at about 60% of the cost (no ASE state checks, no charges, dipole or bond orders, which a
    label does not keep). Every call starts from the superposition of atomic densities.
    """
    from ase.units import Bohr, Hartree, kB
    from tblite.interface import Calculator as TBLiteCalculator

    periodic = bool(work.pbc.any())
    calc = TBLiteCalculator(method, work.numbers, work.positions / Bohr, float(charge),
                            int(multiplicity) - 1,
                            np.asarray(work.cell) / Bohr if periodic else None,
                            np.asarray(work.pbc) if periodic else None)
    calc.set("temperature", ELECTRONIC_TEMPERATURE_K * kB / Hartree)
    calc.set("verbosity", 0)
    res = calc.singlepoint()
    energy = float(res.get("energy")) * Hartree
    forces = -np.asarray(res.get("gradient")) * Hartree / Bohr
    stress = None
    if periodic:
        stress = (np.asarray(res.get("virial")) * Hartree / work.get_volume()).flat[
            [0, 4, 8, 5, 2, 1]]
    return energy, forces, stress


def xtb_single_point(
    atoms: Atoms,
    charge: int,
    multiplicity: int,
    level: XTBLevel | None = None,
    omp_threads: int | None = None,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Energy (eV), forces (eV/Å) and, for a periodic structure, stress from tblite.

    A structure with ``atoms.pbc.any()`` (a crystal) is computed periodic in its cell and the
    record gets ``stress``: ASE's Voigt 6-vector (xx, yy, zz, yz, xz, xy) in eV/Å³, the strain
    derivative of the energy per volume. A molecule (``pbc`` all False) is computed
    non-periodic and gets no stress. Raises :class:`OracleError` on failure
    (``geometry_invalid`` for a periodic structure whose cell has no volume).
    ``level`` defaults to :class:`XTBLevel` (GFN2-xTB); ``timeout_s`` (s) is checked after the
    calculation; ``omp_threads`` is set by the worker's environment.
    """
    level = level or XTBLevel()
    _check_cell(atoms)
    method = _tblite_method(level.method)
    start = time.perf_counter()
    try:
        energy, forces, stress = _singlepoint(atoms, charge, multiplicity, method)
    except ImportError as exc:
        raise OracleError("exception", NOT_INSTALLED) from exc
    except Exception as exc:  # tblite raises a generic exception when SCC does not converge
        raise as_oracle_error(exc) from exc
    wall = time.perf_counter() - start
    if timeout_s and wall > timeout_s:
        raise OracleError("timeout", f"xTB took {wall:.1f} s > {timeout_s} s")
    record: dict[str, Any] = {"energy": energy, "forces": forces}
    if stress is not None:
        record["stress"] = stress
    record["provenance"] = {
        "qm_program": "tblite", "qm_version": XTBOracle().version(), "qm_method": level.method,
        "qm_converged": True, "qm_wall_time_s": round(wall, 3)}
    return record


@register_oracle
class XTBOracle(Oracle):
    """GFN-xTB tight binding with tblite (``program: xtb``)."""

    program = "xtb"
    level_class = XTBLevel
    distribution = "tblite"
    periodic = True
    thread_safe = True  # a fresh tblite calculator per call; its SCC releases the GIL

    def check(self, level: XTBLevel, symbols: list[str] | None, where: str) -> None:
        """Reject a method tblite does not offer."""
        from reactive_al.systems import SystemDefinitionError

        if level.method not in _METHODS:
            raise SystemDefinitionError(f"{where}: unknown xTB method '{level.method}' "
                                        f"({', '.join(_METHODS)})")

    def single_point(self, atoms: Atoms, charge: int, multiplicity: int, level: XTBLevel,
                     omp_threads: int | None = None,
                     timeout_s: float | None = None) -> dict[str, Any]:
        """See :func:`xtb_single_point` (energy eV, forces eV/Å, stress eV/Å³, timeout s)."""
        return xtb_single_point(atoms, charge, multiplicity, level, omp_threads, timeout_s)

    def calculator(self, charge: int, multiplicity: int, level: XTBLevel) -> Calculator:
        """The tblite ASE calculator at ``level`` (give it molecules with ``pbc=False``).

        On a periodic structure it also gives ``get_stress()`` (Voigt, eV/Å³).
        """
        return _tblite(charge, multiplicity, level.method)

    def warm(self) -> None:
        """Import tblite if it is installed."""
        with contextlib.suppress(ImportError):
            import tblite.ase  # noqa: F401
