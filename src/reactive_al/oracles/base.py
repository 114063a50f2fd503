"""The oracle interface: one small protocol every QM program implements, and its registry.

A program is one module: a frozen settings dataclass (its level of theory, defaults written
there once), an :class:`Oracle` subclass (input check, version, single point, ASE calculator,
warm-up) and a :func:`register_oracle` call. The YAML key ``program:`` of a level of theory is
the registry key, so adding a QM program adds no ``if`` anywhere else.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from importlib.metadata import version as dist_version
from typing import Any, ClassVar, Protocol, runtime_checkable

from ase import Atoms
from ase.calculators.calculator import Calculator, CalculatorError

#: Failure categories recorded for a structure that could not be labeled.
FAILURE_CATEGORIES = ("scf_not_converged", "geometry_invalid", "timeout", "exception")
#: Failures of the run rather than of the structure (a short timeout, a crash, a lost worker):
#: never cached, so the next run computes the structure again. The others are deterministic
#: (the whole SCF ladder failed, the geometry is invalid) and are cached with their cause.
TRANSIENT_FAILURES = ("timeout", "exception")


class OracleError(RuntimeError):
    """A QM calculation that produced no usable label."""

    def __init__(self, category: str, message: str):
        super().__init__(f"{category}: {message}")
        self.category = category
        self.message = message


#: What a driver's ASE calculator (:meth:`Oracle.calculator`) raises when a step gives no
#: result: tblite raises ASE's ``CalculationFailed``/``InputError``, the project's PySCF
#: calculator :class:`OracleError`. An MD run or relaxation on a driver catches exactly these.
DRIVER_ERRORS: tuple[type[Exception], ...] = (OracleError, CalculatorError)


def as_oracle_error(exc: Exception) -> OracleError:
    """``exc`` as a recorded failure: ``scf_not_converged`` when its message says so.

    An :class:`OracleError` is returned as it is; anything else becomes category
    ``exception`` (or ``scf_not_converged``) with the first line of its message.
    """
    if isinstance(exc, OracleError):
        return exc
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return OracleError("scf_not_converged" if "converge" in msg.lower() else "exception", msg)


@functools.cache
def _installed_version(distribution: str) -> str:
    """The installed version of ``distribution``, read once per process (every label asks)."""
    return dist_version(distribution)


@runtime_checkable
class Level(Protocol):
    """A level of theory: the settings of one program that change a label's value."""

    program: ClassVar[str]

    @property
    def name(self) -> str:
        """Short name for provenance and TorchANI (e.g. ``b3lyp-6-31+g*``)."""

    def as_dict(self) -> dict[str, Any]:
        """Plain-dict form with ``program`` (cache keys, provenance, MLflow, Dask workers)."""


class Oracle:
    """A QM program behind one interface; subclass, set the class attributes, register it.

    ``program`` is the YAML name, ``level_class`` the frozen settings dataclass (its fields are
    the accepted YAML keys besides ``program``) and ``distribution`` the installed package
    whose version enters every cache key.
    """

    program: ClassVar[str]
    level_class: ClassVar[type]
    distribution: ClassVar[str]

    def check(self, level: Any, symbols: list[str] | None, where: str) -> None:
        """Raise ``SystemDefinitionError`` for settings the program cannot use.

        The message is one line starting with ``where``; ``symbols`` are the system's elements
        (None: not known yet, skip element checks).
        """

    def version(self) -> str:
        """Installed version of the program (part of the label cache key)."""
        return _installed_version(self.distribution)

    def single_point(
        self, atoms: Atoms, charge: int, multiplicity: int, level: Any,
        omp_threads: int | None = None, timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Energy (eV), forces (eV/Å) and a ``provenance`` dict for a molecule.

        A program that labels periodic structures (``atoms.pbc.any()``, computed in their
        cell) adds ``stress``: ASE's Voigt 6-vector in eV/Å³. A molecular program raises
        ``OracleError("geometry_invalid", ...)`` for a periodic structure rather than drop
        its cell. Raises :class:`OracleError` when no usable label is produced; ``timeout_s``
        in s.
        A program that names ``options`` below also takes them as keyword arguments.
        """
        raise NotImplementedError

    #: whether the program labels crystals (energy, forces and stress in their cell)
    periodic: ClassVar[bool] = False

    #: whether :meth:`single_point` may run on several threads of one process at once (it
    #: keeps no shared state and releases the GIL), e.g. a Δ baseline's calls in MD walkers
    thread_safe: ClassVar[bool] = False

    #: Keyword options of :meth:`single_point` that steer the SCF but not the converged label
    #: (not part of the cache key), e.g. PySCF's orbital files for NEB images.
    options: ClassVar[tuple[str, ...]] = ()

    def rescue_levels(self, level: Any) -> list[Any]:
        """Levels to retry a structure with after it failed at ``level`` (most promising first).

        E.g. broken-symmetry unrestricted for a closed shell with a stretched bond. A rescued
        label is stored under the rescue level's own cache key and provenance.
        """
        return []

    def calculator(self, charge: int, multiplicity: int, level: Any) -> Calculator:
        """An ASE calculator at ``level`` (energies in eV, forces in eV/Å), e.g. an MD driver."""
        raise NotImplementedError

    def warm(self) -> None:
        """Pay the program's import cost now (run once on every Dask worker)."""


#: Registered oracles keyed by the ``program:`` name of a level of theory.
ORACLES: dict[str, Oracle] = {}


def register_oracle(oracle: Oracle | type[Oracle]):
    """Register an oracle under its ``program`` name; returns its argument.

    Takes an instance or a class (instantiated once), so it also works as a class decorator.
    """
    instance = oracle() if isinstance(oracle, type) else oracle
    ORACLES[instance.program] = instance
    return oracle


def get_oracle(program: str) -> Oracle:
    """The registered oracle of ``program``; :class:`OracleError` if there is none."""
    try:
        return ORACLES[program]
    except KeyError:
        raise OracleError("exception", f"unknown QM program '{program}' "
                          f"(registered: {', '.join(sorted(ORACLES))})") from None


def parse_level(spec: Mapping[str, Any] | Level, where: str,
                symbols: list[str] | None = None) -> Level:
    """Turn a ``level_of_theory`` mapping (``program:`` default ``pyscf``) into its level object.

    A level object is returned unchanged. Raises ``SystemDefinitionError`` with a one-line
    message starting with ``where`` for an unknown program, unknown keys, values of the wrong
    type, or settings the program rejects (e.g. a basis without functions for one of
    ``symbols``).
    """
    from reactive_al.systems import SystemDefinitionError

    if not isinstance(spec, Mapping):
        return spec
    settings = dict(spec)
    program = str(settings.pop("program", "pyscf"))
    oracle = ORACLES.get(program)
    if oracle is None:
        raise SystemDefinitionError(f"{where}: unknown program '{program}' "
                                    f"(registered: {', '.join(sorted(ORACLES))})")
    fields = {f.name for f in dataclasses.fields(oracle.level_class)}
    unknown = set(settings) - fields
    if unknown:
        raise SystemDefinitionError(
            f"{where}: unknown setting(s) {sorted(unknown)} for program '{program}' "
            f"(known: {', '.join(sorted(fields))})")
    try:
        level = oracle.level_class(**settings)
    except (TypeError, ValueError) as exc:
        raise SystemDefinitionError(f"{where}: {str(exc).splitlines()[0]}") from exc
    oracle.check(level, symbols, where)
    return level


__all__ = ["FAILURE_CATEGORIES", "ORACLES", "TRANSIENT_FAILURES", "Level", "Oracle", "OracleError",
           "get_oracle", "parse_level", "register_oracle"]
