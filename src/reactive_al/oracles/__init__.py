"""QM oracles behind one call: the registry (base), PySCF (pyscf), GFN-xTB (xtb).

Also here: the label cache (cache, with its open-time check in cache_repair and the claims that
make campaigns sharing it compute each key once in claims), batch labeling (labeling) on a
Dask cluster (cluster) and the QM reference data (reference). To add a QM program, write one
module with a settings dataclass and an :class:`Oracle` subclass, call :func:`register_oracle`
in it and import it below; its ``program:`` name is then accepted in every ``level_of_theory``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ase import Atoms

from reactive_al.oracles import pyscf as _pyscf  # noqa: F401 - registers program "pyscf"
from reactive_al.oracles import xtb as _xtb  # noqa: F401 - registers program "xtb"
from reactive_al.oracles.base import (
    FAILURE_CATEGORIES,
    ORACLES,
    TRANSIENT_FAILURES,
    Level,
    Oracle,
    OracleError,
    get_oracle,
    parse_level,
    register_oracle,
)


def single_point(
    atoms: Atoms, charge: int, multiplicity: int, level: Level | Mapping[str, Any],
    omp_threads: int | None = None, timeout_s: float | None = None,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One single point at ``level`` (a level object or a ``level_of_theory`` mapping).

    Returns ``energy`` (eV), ``forces`` (eV/Å), ``provenance`` and, for a periodic structure
    (``program: xtb``), ``stress`` (Voigt, eV/Å³); raises :class:`OracleError` when the
    program gives no usable label (``timeout_s`` in s).
    ``options`` the program does not declare (:attr:`Oracle.options`) are ignored.
    """
    lvl = parse_level(level, "level of theory")
    oracle = get_oracle(lvl.program)
    extra = {k: v for k, v in (options or {}).items() if k in oracle.options}
    return oracle.single_point(atoms, charge, multiplicity, lvl, omp_threads=omp_threads,
                               timeout_s=timeout_s, **extra)


__all__ = ["FAILURE_CATEGORIES", "ORACLES", "TRANSIENT_FAILURES", "Level", "Oracle", "OracleError",
           "get_oracle", "parse_level", "register_oracle", "single_point"]
