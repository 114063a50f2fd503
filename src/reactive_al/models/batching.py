"""Many ASE drivers on one model, every force call of theirs evaluated in one batch.

A committee costs about the same for one small structure as for thirty (the per-call overhead
dominates), so walkers and NEB images are evaluated together:

- :func:`run_lockstep` runs independent dynamics (MD walkers) in threads; each has its own
  ASE calculator whose ``calculate`` waits until every walker still running has asked, then
  one :meth:`~BatchCalculator.evaluate_batch` call answers them all. ASE's own integrators
  are used unchanged, and the results do not depend on thread timing: a batch always holds
  one request per running walker, in walker order. A batch calculator with a ``prefetch``
  method is told of each request as it arrives (a Δ-learning baseline starts its single
  point then, beside the other walkers' integration; see ``Baseline.prefetch``).
- :func:`attach_batched` gives a fixed set of images (an NEB band) calculators that evaluate
  every image whose positions changed in one call, when the first of them is asked.

A *batch calculator* is an ASE calculator with ``evaluate_batch(frames) -> list[dict]`` (the
results dict each frame would get from ``calculate``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

T = TypeVar("T")


class BatchCalculator(Protocol):
    """An ASE calculator that can also evaluate a list of structures in one call."""

    implemented_properties: list[str]

    def evaluate_batch(self, frames: list[Atoms]) -> list[dict[str, Any]]:
        """Results (energy eV, forces eV/Å, …) of every frame, in order."""


class SerialBatch:
    """A plain ASE calculator seen as a batch calculator: the frames one after the other."""

    def __init__(self, calc: Calculator):
        self.calc = calc
        self.implemented_properties = list(calc.implemented_properties)

    def evaluate_batch(self, frames: list[Atoms]) -> list[dict[str, Any]]:
        """Energy and forces (and whatever else the calculator gives) of each frame."""
        out = []
        for frame in frames:
            a = frame.copy()
            a.calc = self.calc
            a.get_forces()
            # copies: a calculator may reuse its result arrays (EMT does)
            out.append({k: np.array(v) if isinstance(v, np.ndarray) else v
                        for k, v in self.calc.results.items()})
        return out


def as_batch(calc: Calculator) -> BatchCalculator:
    """``calc`` itself if it has ``evaluate_batch``, else :class:`SerialBatch` around it."""
    return calc if hasattr(calc, "evaluate_batch") else SerialBatch(calc)


class _Proxy(Calculator):
    """Calculator of one walker or image: its results come from a shared batch."""

    def __init__(self, implemented: Sequence[str], ask: Callable[[Atoms], dict[str, Any]]):
        super().__init__()
        self.implemented_properties = list(implemented)
        self._ask = ask

    def check_state(self, atoms: Atoms, tol: float = 1e-15) -> list[str]:
        """What changed since the last calculation: positions, numbers, cell or pbc.

        ASE's own check compares every per-atom array with a tolerance; an MD step asks three
        times (integrator, trajectory bookkeeping, the walker's checks), so here the arrays a
        committee sees are compared as they are (ASE's check was a fifth of the walkers'
        Python time).
        """
        old = self.atoms
        if old is None or len(old) != len(atoms):
            return list(all_changes)
        return [name for name, a, b in (
            ("positions", old.positions, atoms.positions),
            ("numbers", old.numbers, atoms.numbers),
            ("cell", old.cell.array, atoms.cell.array),
            ("pbc", old.pbc, atoms.pbc)) if not np.array_equal(a, b)]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        """Fill ``results`` from the batch evaluation that covers this structure."""
        super().calculate(atoms, properties, system_changes)
        self.results = dict(self._ask(atoms))


class _Lockstep:
    """One batch per round: every running walker's request, answered together."""

    def __init__(self, calc: BatchCalculator, n: int):
        self.calc, self.running = calc, n
        self.pending: dict[int, Atoms] = {}
        self.answers: dict[int, dict[str, Any]] = {}
        self.error: BaseException | None = None
        self.cond = threading.Condition()
        #: the calculator's ``prefetch`` (told of each request as it arrives), if it has one
        self.prefetch = getattr(calc, "prefetch", None)

    def ask(self, i: int, atoms: Atoms) -> dict[str, Any]:
        if self.prefetch is not None:
            self.prefetch(atoms)
        with self.cond:
            self.pending[i] = atoms  # no copy: the walker waits here until it is answered
            self._evaluate_if_complete()
            while i not in self.answers and self.error is None:
                self.cond.wait()
            if self.error is not None:
                raise RuntimeError("batched evaluation failed") from self.error
            return self.answers.pop(i)

    def leave(self) -> None:
        with self.cond:
            self.running -= 1
            self._evaluate_if_complete()

    def _evaluate_if_complete(self) -> None:
        if not self.pending or len(self.pending) < self.running:
            return
        order = sorted(self.pending)
        frames = [self.pending.pop(i) for i in order]
        try:
            self.answers.update(zip(order, self.calc.evaluate_batch(frames), strict=True))
        except BaseException as exc:  # every waiting walker re-raises it
            self.error = exc
        self.cond.notify_all()


def run_lockstep(jobs: Sequence[Callable[[Calculator], T]], calc: Calculator) -> list[T]:
    """Run ``jobs`` (each drives its own dynamics on the calculator it is given) together.

    Every force call of every job is batched with those of the other jobs still running
    (see the module docstring); a plain calculator is evaluated frame by frame
    (:func:`as_batch`). Returns the jobs' results in order; a job's exception is
    raised after all jobs ended.
    """
    if not jobs:
        return []
    calc = as_batch(calc)
    hub = _Lockstep(calc, len(jobs))

    def run(i: int) -> T:
        try:
            return jobs[i](_Proxy(calc.implemented_properties, lambda a: hub.ask(i, a)))
        finally:
            hub.leave()

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = [pool.submit(run, i) for i in range(len(jobs))]
        return [f.result() for f in futures]


def attach_batched(images: Sequence[Atoms], calc: Calculator) -> None:
    """Give each of ``images`` a calculator; one call evaluates all whose positions changed.

    Meant for drivers that move every image before asking for any forces (ASE's NEB): the
    first image asked triggers one :meth:`~BatchCalculator.evaluate_batch` over all moved
    images, the others are answered from it.
    """
    images, calc = list(images), as_batch(calc)
    done: dict[int, tuple[np.ndarray, np.ndarray, dict[str, Any]]] = {}

    def fresh(k: int) -> bool:
        hit = done.get(k)
        img = images[k]
        return (hit is not None and np.array_equal(hit[0], img.numbers)
                and np.array_equal(hit[1], img.positions))

    def ask(k: int, atoms: Atoms) -> dict[str, Any]:
        if not fresh(k):
            stale = [j for j in range(len(images)) if j == k or not fresh(j)]
            results = calc.evaluate_batch([images[j].copy() for j in stale])
            for j, res in zip(stale, results, strict=True):
                done[j] = (images[j].numbers.copy(), images[j].positions.copy(), res)
        return done[k][2]

    for k, img in enumerate(images):
        img.calc = _Proxy(calc.implemented_properties, lambda a, k=k: ask(k, a))
