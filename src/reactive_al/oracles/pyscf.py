"""PySCF as an oracle: energies (eV) and forces (eV/Å) with an SCF robustness ladder.

Hartree and Bohr stay inside this module. A result counts only if its SCF converged; otherwise
:class:`OracleError` carries a failure category that the labeling layer records. The level of
theory is :class:`PySCFLevel`, registered as ``program: pyscf``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.units import Bohr, Hartree

from reactive_al.oracles.base import Oracle, OracleError, parse_level, register_oracle

_REFERENCES = ("auto", "always", "never")


@dataclass(frozen=True)
class PySCFLevel:
    """A PySCF level of theory (the defaults of every campaign live here).

    ``unrestricted``: ``auto`` (open shells only), ``always`` (broken symmetry, for stretched
    bonds) or ``never``. ``conv_tol`` is the SCF energy tolerance in Hartree.
    """

    program: ClassVar[str] = "pyscf"
    method: str = "b3lyp"
    basis: str = "6-31+g*"
    grid_level: int = 3
    conv_tol: float = 1e-8
    density_fit: bool = False
    unrestricted: str = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.density_fit, str):
            raise ValueError(f"density_fit must be true or false, got '{self.density_fit}'")
        for key, cast in (("method", lambda v: str(v).lower()), ("basis", lambda v: str(v).lower()),
                          ("grid_level", int), ("conv_tol", float), ("density_fit", bool),
                          ("unrestricted", str)):
            object.__setattr__(self, key, cast(getattr(self, key)))

    @property
    def name(self) -> str:
        """Short name used in provenance and by TorchANI (``method-basis``)."""
        return f"{self.method}-{self.basis}"

    def as_dict(self) -> dict[str, Any]:
        """Plain-dict form (cache keys, provenance, MLflow, Dask workers)."""
        return {"program": "pyscf", "method": self.method, "basis": self.basis,
                "grid_level": self.grid_level, "conv_tol": self.conv_tol,
                "density_fit": self.density_fit, "unrestricted": self.unrestricted}


class _SCFTimeout(Exception):
    pass


def _molecule_only(atoms: Atoms) -> None:
    """Raise ``geometry_invalid`` for a periodic structure: this oracle computes molecules.

    Dropping the cell would silently label a cluster cut out of the crystal; the failure is
    deterministic, so the labeling layer caches and reports it with this one-line cause.
    """
    if np.any(atoms.pbc):
        raise OracleError("geometry_invalid",
                          f"periodic structure (pbc={np.asarray(atoms.pbc).tolist()}) given to "
                          "the molecular PySCF oracle; periodic structures need `program: xtb` "
                          "(GFN1-xTB)")


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


def _make_scf(mol, method: str, grid_level: int, conv_tol: float, density_fit: bool,
              unrestricted: bool):
    from pyscf import dft, scf

    if method.lower() in ("hf", "rhf", "uhf"):
        mf = scf.UHF(mol) if unrestricted else scf.RHF(mol)
    else:
        mf = dft.UKS(mol) if unrestricted else dft.RKS(mol)
        mf.xc = method
        mf.grids.level = int(grid_level)
    mf.conv_tol = conv_tol
    mf.max_cycle = 100
    if density_fit:
        mf = mf.density_fit()
    return mf


def _ladder(mf_factory, guess_chkfile: str | None = None):
    """Yield (step name, configured SCF object, initial density or None), cheapest first.

    With an existing ``guess_chkfile`` (the orbitals of a nearby geometry, e.g. the same NEB
    image one optimizer step earlier) the first step starts from its density.
    """
    if guess_chkfile and os.path.isfile(guess_chkfile):
        mf = mf_factory()
        try:
            dm0 = mf.init_guess_by_chkfile(guess_chkfile, project=True)
        except Exception:  # unreadable or another molecule's file: go on without it
            dm0 = None
        if dm0 is not None:
            yield "previous_orbitals", mf, dm0
            mf = mf_factory().newton()
            yield "previous_orbitals_newton", mf, dm0
    yield "default", mf_factory(), None
    mf = mf_factory()
    mf.damp = 0.5
    mf.level_shift = 0.3
    mf.diis_start_cycle = 4
    mf.max_cycle = 200
    yield "damping_level_shift", mf, None
    yield "newton", mf_factory().newton(), None
    mf = mf_factory()
    mf.init_guess = "huckel"
    yield "alternative_guess", mf.newton(), None


def _stabilize(mf, max_rounds: int = 2) -> bool:
    """Follow internal instabilities of an unrestricted solution; True if it ends stable."""
    for _ in range(max_rounds):
        mo_new = mf.stability()[0]
        same = all(np.allclose(np.abs(a), np.abs(b), atol=1e-6)
                   for a, b in zip(mo_new, mf.mo_coeff, strict=True))
        if same:
            return True
        mf.kernel(dm0=mf.make_rdm1(mo_new, mf.mo_occ))
        if not mf.converged:
            return False
    return False


def pyscf_single_point(
    atoms: Atoms,
    charge: int,
    multiplicity: int,
    level: PySCFLevel | Mapping[str, Any] | None = None,
    omp_threads: int | None = None,
    timeout_s: float | None = None,
    chkfile: str | None = None,
    guess_chkfile: str | None = None,
) -> dict[str, Any]:
    """Compute energy (eV) and forces (eV/Å) for a molecule with PySCF.

    Walks the SCF ladder (default → damping + level shift → second-order ``newton()`` →
    Hückel initial guess with ``newton()``) until one step converges; with ``guess_chkfile``
    (a PySCF checkpoint of a nearby geometry) the ladder starts from its orbitals. The
    converged orbitals are written to ``chkfile`` when one is given. Open shells (and closed
    shells with ``unrestricted='always'``, for stretched bonds) run unrestricted with a
    stability check; ⟨S²⟩ is recorded. Returns ``energy``, ``forces`` and a ``provenance``
    dict. Raises :class:`OracleError` (``scf_not_converged``, ``timeout``,
    ``geometry_invalid``, also for a periodic structure: ``atoms.pbc.any()``) when no usable
    result is produced. ``level`` defaults to :class:`PySCFLevel` (a mapping is parsed into
    one); ``timeout_s`` in s.
    """
    _molecule_only(atoms)
    import pyscf
    from pyscf import lib

    if level is None:
        level = PySCFLevel()
    elif isinstance(level, Mapping):
        level = parse_level({**level, "program": "pyscf"}, "pyscf level of theory")
    method, basis, unrestricted = level.method, level.basis, level.unrestricted
    if omp_threads:
        lib.num_threads(int(omp_threads))
    start = time.perf_counter()
    try:
        mol = _build_mole(atoms, basis, charge, multiplicity)
    except Exception as exc:  # e.g. parity or basis problems reported by PySCF
        raise OracleError("geometry_invalid", str(exc).splitlines()[0]) from exc
    if unrestricted not in _REFERENCES:
        raise OracleError("exception", f"unrestricted must be auto/always/never: {unrestricted}")
    open_shell = (mol.spin != 0 and unrestricted != "never") or unrestricted == "always"

    def check_time(envs) -> None:  # PySCF calls this once per SCF cycle
        if timeout_s and time.perf_counter() - start > timeout_s:
            raise _SCFTimeout

    def factory():
        mf = _make_scf(mol, method, level.grid_level, level.conv_tol, level.density_fit,
                       open_shell)
        mf.callback = check_time
        return mf

    tried: list[str] = []
    for step, mf, dm0 in _ladder(factory, guess_chkfile):
        try:
            mf.kernel(dm0=dm0)
            stable = _stabilize(mf) if open_shell and mf.converged else None
        except _SCFTimeout as exc:
            raise OracleError("timeout", f"no converged SCF within {timeout_s} s "
                              f"(ladder: {'; '.join([*tried, step])})") from exc
        except Exception as exc:
            tried.append(f"{step}: {type(exc).__name__}")
            continue
        if not mf.converged:
            tried.append(f"{step}: not converged")
            continue
        grad = mf.nuc_grad_method().kernel()
        if chkfile:
            from pyscf.scf import chkfile as pyscf_chk

            pyscf_chk.dump_scf(mol, chkfile, mf.e_tot, mf.mo_energy, mf.mo_coeff, mf.mo_occ)
        provenance = {
            "qm_program": "pyscf",
            "qm_version": pyscf.__version__,
            "qm_method": method,
            "qm_basis": basis,
            "qm_grid_level": level.grid_level,
            "qm_reference": "unrestricted" if open_shell else "restricted",
            "qm_converged": True,
            "qm_scf_step": step,
            "qm_scf_cycles": int(getattr(mf, "cycles", -1)),
            "qm_wall_time_s": round(time.perf_counter() - start, 3),
        }
        if open_shell:
            provenance["qm_s2"] = float(mf.spin_square()[0])
            provenance["qm_stable"] = bool(stable)
        return {
            "energy": float(mf.e_tot) * Hartree,
            "forces": -np.asarray(grad) * Hartree / Bohr,
            "provenance": provenance,
        }
    raise OracleError("scf_not_converged", "; ".join(tried))


class PySCFCalculator(Calculator):
    """ASE calculator running PySCF single points (molecules only: ``pbc`` must be False)."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, charge: int = 0, multiplicity: int = 1,
                 level: PySCFLevel | Mapping[str, Any] | None = None,
                 omp_threads: int | None = None, timeout_s: float | None = None):
        super().__init__()
        self.qm = {"charge": charge, "multiplicity": multiplicity, "level": level,
                   "omp_threads": omp_threads, "timeout_s": timeout_s}
        self.provenance: dict[str, Any] = {}

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        """Fill ``self.results`` with energy (eV) and forces (eV/Å) from PySCF.

        Raises :class:`OracleError` (``geometry_invalid``) for a periodic structure.
        """
        super().calculate(atoms, properties, system_changes)
        out = pyscf_single_point(self.atoms, **self.qm)
        self.results = {"energy": out["energy"], "forces": out["forces"]}
        self.provenance = out["provenance"]


def _check_functional(method: str, where: str) -> None:
    """Reject a method PySCF's XC parser (libxc) does not know, with a "did you mean"."""
    import difflib

    from pyscf.dft import libxc

    from reactive_al.systems import SystemDefinitionError

    if method in ("hf", "rhf", "uhf"):
        return
    try:
        libxc.parse_xc(method)
    except (KeyError, ValueError) as exc:
        names = [n.lower() for n in (*libxc.XC_ALIAS, *libxc.XC_CODES)]
        close = difflib.get_close_matches(method.lower(), names, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise SystemDefinitionError(
            f"{where}: unknown method '{method}': neither hf nor a functional PySCF "
            f"knows{hint}") from exc


def _check_basis(basis: str, symbols: list[str], where: str) -> None:
    from pyscf.gto import basis as pyscf_basis

    from reactive_al.systems import SystemDefinitionError

    for sym in symbols:
        try:
            pyscf_basis.load(basis, sym)
        except Exception as exc:
            raise SystemDefinitionError(
                f"{where}: basis '{basis}' has no functions for {sym}") from exc


@register_oracle
class PySCFOracle(Oracle):
    """Hartree–Fock and Kohn–Sham DFT with PySCF (``program: pyscf``)."""

    program = "pyscf"
    level_class = PySCFLevel
    distribution = "pyscf"
    options = ("chkfile", "guess_chkfile")

    def check(self, level: PySCFLevel, symbols: list[str] | None, where: str) -> None:
        """Reject an unknown ``unrestricted`` mode or functional, or a basis missing a symbol."""
        from reactive_al.systems import SystemDefinitionError

        if level.unrestricted not in _REFERENCES:
            raise SystemDefinitionError(f"{where}: unrestricted must be one of "
                                        f"{'/'.join(_REFERENCES)}, got '{level.unrestricted}'")
        _check_functional(level.method, where)
        if symbols:
            _check_basis(level.basis, sorted(set(symbols)), where)

    def single_point(self, atoms: Atoms, charge: int, multiplicity: int, level: PySCFLevel,
                     omp_threads: int | None = None, timeout_s: float | None = None,
                     chkfile: str | None = None,
                     guess_chkfile: str | None = None) -> dict[str, Any]:
        """See :func:`pyscf_single_point` (energy eV, forces eV/Å, timeout s)."""
        return pyscf_single_point(atoms, charge, multiplicity, level, omp_threads, timeout_s,
                                  chkfile=chkfile, guess_chkfile=guess_chkfile)

    def rescue_levels(self, level: PySCFLevel) -> list[PySCFLevel]:
        """Broken-symmetry unrestricted (``unrestricted: always``) when the level allows it."""
        return [replace(level, unrestricted="always")] if level.unrestricted == "auto" else []

    def calculator(self, charge: int, multiplicity: int, level: PySCFLevel) -> Calculator:
        """A :class:`PySCFCalculator` at ``level``."""
        return PySCFCalculator(charge, multiplicity, level)

    def warm(self) -> None:
        """Import PySCF (the first label on a worker should not pay it)."""
        import pyscf  # noqa: F401
