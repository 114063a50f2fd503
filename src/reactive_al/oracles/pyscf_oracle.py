"""PySCF as an ASE calculator: energies (eV) and forces (eV/Å) with an SCF robustness ladder.

Hartree and Bohr stay inside this module. A result counts only if its SCF converged; otherwise
:class:`OracleError` carries a failure category that the labeling layer records.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.units import Bohr, Hartree

#: Failure categories recorded for a structure that could not be labeled.
FAILURE_CATEGORIES = ("scf_not_converged", "geometry_invalid", "timeout", "exception")


class OracleError(RuntimeError):
    """A QM calculation that produced no usable label."""

    def __init__(self, category: str, message: str):
        super().__init__(f"{category}: {message}")
        self.category = category
        self.message = message


def _build_mole(atoms: Atoms, basis: str, charge: int, multiplicity: int):
    from pyscf import gto

    mol = gto.Mole()
    mol.atom = list(zip(atoms.get_chemical_symbols(), map(tuple, atoms.positions), strict=True))
    mol.unit = "Angstrom"
    mol.basis = basis
    mol.charge = int(charge)
    mol.spin = int(multiplicity) - 1
    mol.verbose = 0
    mol.build()
    return mol


def _make_scf(mol, method: str, grid_level: int, conv_tol: float, density_fit: bool):
    from pyscf import dft, scf

    restricted = mol.spin == 0
    if method.lower() in ("hf", "rhf", "uhf"):
        mf = scf.RHF(mol) if restricted else scf.UHF(mol)
    else:
        mf = dft.RKS(mol) if restricted else dft.UKS(mol)
        mf.xc = method
        mf.grids.level = int(grid_level)
    mf.conv_tol = conv_tol
    mf.max_cycle = 100
    if density_fit:
        mf = mf.density_fit()
    return mf


def _ladder(mf_factory):
    """Yield (step name, configured SCF object) from cheapest to most robust."""
    mf = mf_factory()
    yield "default", mf
    mf = mf_factory()
    mf.damp = 0.5
    mf.level_shift = 0.3
    mf.diis_start_cycle = 4
    mf.max_cycle = 200
    yield "damping_level_shift", mf
    yield "newton", mf_factory().newton()


def pyscf_single_point(
    atoms: Atoms,
    charge: int,
    multiplicity: int,
    method: str = "b3lyp",
    basis: str = "6-31+g*",
    grid_level: int = 3,
    conv_tol: float = 1e-8,
    density_fit: bool = False,
    omp_threads: int | None = None,
) -> dict[str, Any]:
    """Compute energy (eV) and forces (eV/Å) for a molecule with PySCF.

    Walks the SCF ladder (default → damping + level shift → second-order ``newton()``) until
    one step converges. Returns ``energy``, ``forces`` and a ``provenance`` dict. Raises
    :class:`OracleError` if no step converges or PySCF fails.
    """
    import pyscf
    from pyscf import lib

    if omp_threads:
        lib.num_threads(int(omp_threads))
    start = time.perf_counter()
    try:
        mol = _build_mole(atoms, basis, charge, multiplicity)
    except Exception as exc:  # e.g. parity or basis problems reported by PySCF
        raise OracleError("geometry_invalid", str(exc).splitlines()[0]) from exc

    def factory():
        return _make_scf(mol, method, grid_level, conv_tol, density_fit)

    tried = []
    for step, mf in _ladder(factory):
        try:
            e_h = mf.kernel()
        except Exception as exc:
            tried.append(f"{step}: {type(exc).__name__}")
            continue
        if not mf.converged:
            tried.append(f"{step}: not converged")
            continue
        grad = mf.nuc_grad_method().kernel()
        provenance = {
            "qm_program": "pyscf",
            "qm_version": pyscf.__version__,
            "qm_method": method.lower(),
            "qm_basis": basis.lower(),
            "qm_grid_level": int(grid_level),
            "qm_converged": True,
            "qm_scf_step": step,
            "qm_scf_cycles": int(getattr(mf, "cycles", -1)),
            "qm_wall_time_s": round(time.perf_counter() - start, 3),
        }
        if mol.spin != 0 or method.lower() == "uhf":
            provenance["qm_s2"] = float(mf.spin_square()[0])
        return {
            "energy": float(e_h) * Hartree,
            "forces": -np.asarray(grad) * Hartree / Bohr,
            "provenance": provenance,
        }
    raise OracleError("scf_not_converged", "; ".join(tried))


class PySCFCalculator(Calculator):
    """ASE calculator running PySCF single points (molecules only: ``pbc`` must be False)."""

    implemented_properties = ["energy", "forces"]

    def __init__(
        self,
        charge: int = 0,
        multiplicity: int = 1,
        method: str = "b3lyp",
        basis: str = "6-31+g*",
        grid_level: int = 3,
        conv_tol: float = 1e-8,
        density_fit: bool = False,
        omp_threads: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.qm = {
            "charge": charge,
            "multiplicity": multiplicity,
            "method": method,
            "basis": basis,
            "grid_level": grid_level,
            "conv_tol": conv_tol,
            "density_fit": density_fit,
            "omp_threads": omp_threads,
        }
        self.provenance: dict[str, Any] = {}

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        """Fill ``self.results`` with energy and forces from PySCF."""
        super().calculate(atoms, properties, system_changes)
        if np.any(self.atoms.pbc):
            raise OracleError("geometry_invalid", "PySCFCalculator handles molecules (pbc=False)")
        out = pyscf_single_point(self.atoms, **self.qm)
        self.results = {"energy": out["energy"], "forces": out["forces"]}
        self.provenance = out["provenance"]
