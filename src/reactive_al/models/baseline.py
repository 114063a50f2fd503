"""A cheap-level baseline under a committee (Δ-learning): E = E_baseline + E_committee.

With ``training.baseline`` set, the committee learns E_QM − E_baseline and F_QM − F_baseline,
and every prediction adds the baseline back (:meth:`~reactive_al.models.Committee.predict`),
so MD walkers, the biased walkers, the model NEB, normal modes, evaluation and the ASE
calculator a user gets from a checkpoint all see the full potential. The committee spread
and the gradient features belong to the learned part only: the baseline is deterministic.

The baseline labels of training structures go through the label cache like QM labels (the
training node labels them with :func:`~reactive_al.oracles.labeling.label_structures`), so a
structure's baseline call is made once; predictions on new geometries (MD steps) call the
program directly.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from reactive_al.oracles import OracleError, get_oracle, parse_level

#: ``training.baseline: xtb`` is shorthand for this level of theory
SHORTHANDS: dict[str, dict[str, str]] = {"xtb": {"program": "xtb", "method": "gfn2-xtb"}}
#: ``training.baseline: auto`` (the default): Δ on this shorthand where it applies
AUTO, AUTO_BASELINE = "auto", "xtb"
#: structures whose baseline a process remembers (test and validation sets, NEB images)
MEMO_SIZE = 4096


def resolve_baseline(spec: Any, level: Any, crystal: bool) -> Any:
    """The baseline a campaign uses: ``training.baseline`` with ``auto`` resolved.

    ``auto`` is GFN2-xTB (:data:`AUTO_BASELINE`) for a molecule labeled above the xTB level
    (measured: 1.8–3.2× lower force errors at the same QM labels, README), and none (None)
    for a crystal or a system labeled by xTB itself. ``level`` is the system's level object
    (``.program``); any other value is returned as it is.
    """
    if spec != AUTO:
        return spec
    return None if crystal or level.program == "xtb" else AUTO_BASELINE


def baseline_level(spec: str | Mapping[str, Any], where: str) -> dict[str, Any]:
    """The level-of-theory mapping of a ``training.baseline`` value (``xtb`` or a mapping).

    Raises ``SystemDefinitionError`` (one line starting with ``where``) for an unknown name or
    an invalid level.
    """
    from reactive_al.systems import SystemDefinitionError

    if isinstance(spec, str):
        if spec not in SHORTHANDS:
            raise SystemDefinitionError(f"{where}: unknown baseline '{spec}' (known: "
                                        f"{', '.join(SHORTHANDS)}, or a level_of_theory "
                                        "mapping)")
        spec = SHORTHANDS[spec]
    if not isinstance(spec, Mapping):
        raise SystemDefinitionError(f"{where}: expected a name or a level_of_theory mapping, "
                                    f"got {type(spec).__name__}")
    return parse_level(spec, where).as_dict()


@dataclass
class Baseline:
    """A baseline level of theory for one system: energies eV, forces eV/Å.

    ``level`` is the plain-dict level (``program`` key included), ``version`` the program's
    version the committee was trained against (recorded in the checkpoint).
    """

    level: dict[str, Any]
    charge: int
    multiplicity: int
    version: str
    calls: int = field(default=0, compare=False)
    seconds: float = field(default=0.0, compare=False)
    #: single points :meth:`evaluate` found already started by :meth:`prefetch`
    prefetched: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        self._memo: OrderedDict[str, tuple[float, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()
        #: the threads of :meth:`parallel` while its block runs (None: serial)
        self._pool: ThreadPoolExecutor | None = None
        self._threads = 1
        #: single points started by :meth:`prefetch`, by geometry key
        self._started: dict[str, Future] = {}
        self._oracle = get_oracle(self.level["program"])
        self._level = parse_level(self.level, "baseline")

    @classmethod
    def for_system(cls, spec: str | Mapping[str, Any], charge: int, multiplicity: int,
                   where: str = "parameters_training.yml: training.baseline") -> Baseline:
        """The baseline ``spec`` (``xtb`` or a level mapping) for a system's charge and spin."""
        level = baseline_level(spec, where)
        return cls(level, int(charge), int(multiplicity),
                   get_oracle(level["program"]).version())

    def to_dict(self) -> dict[str, Any]:
        """Plain-python form kept in the committee spec (and so in the checkpoint)."""
        return {"level": dict(self.level), "charge": self.charge,
                "multiplicity": self.multiplicity, "version": self.version}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Baseline:
        """Rebuild from :meth:`to_dict`; raises ``ValueError`` if the program is missing.

        A checkpoint trained on a baseline is only its learned part: without the same
        program the predictions would be meaningless, so loading fails rather than guess.
        """
        level = dict(d["level"])
        try:
            installed = get_oracle(level["program"]).version()
        except Exception as exc:  # unknown program, or its package not installed
            raise ValueError(f"the committee was trained on the baseline {level} "
                             f"({level['program']} {d.get('version')}), which is not "
                             f"available here: {str(exc).splitlines()[0]}") from exc
        if installed != d.get("version"):
            raise ValueError(f"the committee was trained on the baseline {level} at "
                             f"{level['program']} version {d.get('version')}, installed is "
                             f"{installed}: install that version or retrain")
        return cls(level, int(d["charge"]), int(d["multiplicity"]), str(d["version"]))

    @property
    def name(self) -> str:
        """Short name of the baseline level (e.g. ``gfn2-xtb``)."""
        return str(self.level.get("method") or self.level.get("xc") or self.level["program"])

    @staticmethod
    def key(atoms: Atoms) -> str:
        """Content key of a geometry (atomic numbers, positions to 1e-8 Å)."""
        h = hashlib.sha1(np.asarray(atoms.get_atomic_numbers(), dtype=np.int64).tobytes())
        h.update(np.round(atoms.get_positions(), 8).tobytes())
        return h.hexdigest()

    def remember(self, frames: list[Atoms], energies: np.ndarray,
                 forces: list[np.ndarray]) -> None:
        """Keep already known baseline labels (e.g. from the label cache) for predictions."""
        with self._lock:
            for a, e, f in zip(frames, energies, forces, strict=True):
                self._memo[self.key(a)] = (float(e), np.asarray(f, dtype=float))
                self._memo.move_to_end(self.key(a))
            while len(self._memo) > MEMO_SIZE:
                self._memo.popitem(last=False)

    @contextmanager
    def parallel(self, threads: int) -> Iterator[None]:
        """Inside the block, up to ``threads`` single points of one batch run at once.

        For MD walkers while the QM workers are idle: the single points of one MD step of every
        walker run together, with the same numbers (SN2 GFN2-xTB: 1.7× faster on 2 threads). A
        program whose single points are not thread-safe
        (:attr:`~reactive_al.oracles.Oracle.thread_safe`) stays serial.
        """
        if self._pool is not None or int(threads) < 2 or not self._oracle.thread_safe:
            yield  # already parallel, or serial
            return
        with ThreadPoolExecutor(int(threads), thread_name_prefix="baseline") as pool:
            self._pool, self._threads = pool, int(threads)
            try:
                yield
            finally:
                self._pool, self._threads = None, 1
                with self._lock:
                    self._started.clear()  # evaluate took every one; none outlives the pool

    @property
    def threads(self) -> int:
        """How many single points of one batch run at once (1 outside :meth:`parallel`)."""
        return self._threads

    def prefetch(self, frames: list[Atoms]) -> None:
        """Start the single points of ``frames`` on the threads of :meth:`parallel`.

        :meth:`evaluate` of the same geometries then waits for these instead of starting
        them (the same numbers). An MD walker's step starts its baseline this way while the
        other walkers still integrate theirs (see ``models.batching``), so the program runs
        beside the Python work of the integrators. Outside :meth:`parallel` it does nothing.
        """
        pool = self._pool
        if pool is None:
            return
        for a in frames:
            k = self.key(a)
            with self._lock:
                if k in self._memo or k in self._started:
                    continue
                # a copy: the walker moves its atoms on once it is answered
                self._started[k] = pool.submit(self._compute, Atoms(a.numbers, a.get_positions()))

    def evaluate(self, frames: list[Atoms]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Baseline energies (eV, [n]) and forces (eV/Å, [N_i, 3]) of molecules.

        A geometry where the program fails (e.g. no SCC convergence far from equilibrium) gets
        NaN energy and infinite forces, so an MD walker stops there as unphysical. Geometries
        not remembered are computed on up to :attr:`threads` threads (a repeated one once).
        """
        keys = [self.key(a) for a in frames]
        with self._lock:
            known = {k: self._memo[k] for k in keys if k in self._memo}
            started = {k: self._started.pop(k) for k in keys
                       if k not in known and k in self._started}
            self.prefetched += len(started)
        todo = {k: a for k, a in zip(keys, frames, strict=True)
                if k not in known and k not in started}
        pool = self._pool
        if pool is not None and len(todo) > 1:
            done = dict(zip(todo, pool.map(self._compute, todo.values()), strict=True))
        else:
            done = {k: self._compute(a) for k, a in todo.items()}
        done.update({k: f.result() for k, f in started.items()})
        with self._lock:
            self._memo.update(done)
            while len(self._memo) > MEMO_SIZE:
                self._memo.popitem(last=False)
        known.update(done)
        return (np.array([known[k][0] for k in keys], dtype=float),
                [known[k][1] for k in keys])

    def _compute(self, atoms: Atoms) -> tuple[float, np.ndarray]:
        # the oracle's own single point, as for the cached training labels: the same numbers
        # (a calculator reused across geometries starts each SCC from the last one's density
        # and fails to converge where a fresh start converges)
        mol = Atoms(atoms.get_atomic_numbers(), atoms.get_positions(), pbc=False)
        start = time.perf_counter()
        try:
            r = self._oracle.single_point(mol, self.charge, self.multiplicity, self._level)
            e, f = float(r["energy"]), np.asarray(r["forces"], dtype=float)
        except OracleError:
            e, f = float("nan"), np.full((len(mol), 3), np.inf)
        finally:
            with self._lock:  # threads of one batch count together
                self.calls += 1
                self.seconds += time.perf_counter() - start
        return e, f

    def stats(self) -> dict[str, float]:
        """Direct baseline calls of this process and their wall time (s, summed over calls).

        ``prefetched``: how many of them :meth:`prefetch` started ahead.
        """
        return {"calls": int(self.calls), "wall_time_s": round(float(self.seconds), 3),
                "prefetched": int(self.prefetched)}


def residual_frames(frames: list[Atoms], energies: np.ndarray,
                    forces: list[np.ndarray]) -> list[Atoms]:
    """Copies of labeled ``frames`` whose labels are QM minus baseline (eV, eV/Å).

    ``info`` is kept (label keys, provenance), so the copies are the same training frames.
    """
    out = []
    for a, e, f in zip(frames, energies, forces, strict=True):
        r = Atoms(a.get_atomic_numbers(), a.get_positions(), pbc=a.pbc, cell=a.cell)
        r.info = dict(a.info)
        r.calc = SinglePointCalculator(r, energy=float(a.get_potential_energy()) - float(e),
                                       forces=np.asarray(a.get_forces()) - np.asarray(f))
        out.append(r)
    return out
