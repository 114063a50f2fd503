"""Label a batch of structures: validate, look up the cache, compute the rest in parallel.

Parallelism is inside this one call, with Dask: an embedded ``LocalCluster`` (one thread per
worker process) by default, or an existing scheduler address. Results are written to the cache
as each finishes, so an interrupted batch loses only the calculations in flight. Each missing
key is claimed before it is computed (:mod:`reactive_al.oracles.claims`), so campaigns sharing
a cache compute every structure once: a key another campaign is computing is waited for.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from reactive_al import profiling
from reactive_al.oracles import Level, OracleError, get_oracle, parse_level, single_point
from reactive_al.oracles.cache import LabelCache, label_key
from reactive_al.oracles.claims import DEFAULT_CLAIM_TTL_S, Claims
from reactive_al.oracles.cluster import dask_client, import_scheduler
from reactive_al.systems import (
    DEFAULT_MIN_DISTANCE,
    SystemDefinitionError,
    check_structure,
    working_copy,
)

log = logging.getLogger(__name__)


class FailureBudgetExceeded(RuntimeError):
    """Too many structures of a batch failed: the campaign is failing systematically."""


@dataclass
class LabelingConfig:
    """How to run the oracle: QM settings, parallelism, cache and failure budget.

    ``level`` is a level object or a ``level_of_theory`` mapping (parsed on construction).
    """

    charge: int
    multiplicity: int
    level: Level | Mapping[str, Any]
    cache_path: str = "data/02_intermediate/label_cache.db"
    #: "local" (embedded LocalCluster), "synchronous" (in process), "slurm"
    #: (dask_jobqueue.SLURMCluster with ``slurm`` settings) or a scheduler address
    scheduler: str = "local"
    n_workers: int = 2
    omp_threads: int = 1
    timeout_s: float | None = 1800.0
    #: s a claim on a key lives unrenewed (only matters when its campaign dies on another host)
    claim_ttl_s: float = DEFAULT_CLAIM_TTL_S
    min_distance: float = DEFAULT_MIN_DISTANCE
    max_failure_fraction: float = 0.5
    progress: bool = True
    slurm: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.level = parse_level(self.level, "labeling: level of theory")

    def settings(self) -> dict[str, Any]:
        """Every setting that changes a label's value (part of the cache key)."""
        return {**self.level.as_dict(),
                "program_version": get_oracle(self.level.program).version()}


def compute_label(
    numbers: list[int], positions: list[list[float]], charge: int, multiplicity: int,
    level: dict[str, Any], omp_threads: int, timeout_s: float | None = None,
    options: dict[str, Any] | None = None, cell: list[list[float]] | None = None,
    pbc: list[bool] | None = None,
) -> dict[str, Any]:
    """Run one QM single point; return a label record or a failure record (never raises).

    ``level`` is the plain-dict form of the level of theory (what a Dask worker receives);
    positions in Å, ``timeout_s`` in s; ``options`` are the program's SCF options (a frame's
    ``info["qm_options"]``, not part of the cache key). ``cell`` (Å, rows are the lattice
    vectors) and ``pbc`` describe a periodic structure; without them it is a molecule. A
    label has ``energy`` (eV), ``forces`` (eV/Å) and, from a program that computes it for a
    periodic structure, ``stress`` (ASE's Voigt 6-vector, eV/Å³).
    """
    periodic = pbc is not None and any(pbc)
    atoms = Atoms(numbers=numbers, positions=positions, cell=cell if periodic else None,
                  pbc=pbc if periodic else False)
    try:
        out = single_point(atoms, charge, multiplicity, level, omp_threads=omp_threads,
                           timeout_s=timeout_s, options=options)
    except OracleError as exc:
        return {"status": "failed", "category": exc.category, "message": exc.message}
    except Exception as exc:  # a label failure must never kill the campaign
        return {"status": "failed", "category": "exception",
                "message": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
    return {"status": "ok", **out}


def _attach(atoms: Atoms, record: dict[str, Any], key: str) -> Atoms:
    """A copy of ``atoms`` with the record's labels (eV, eV/Å, stress eV/Å³) and provenance."""
    out = atoms.copy()
    labels = {"energy": record["energy"], "forces": np.asarray(record["forces"])}
    if record.get("stress") is not None:
        labels["stress"] = np.asarray(record["stress"], dtype=float)
    out.calc = SinglePointCalculator(out, **labels)
    out.info.update(record.get("provenance", {}))
    out.info["label_key"] = key
    return out


#: s between looks at the keys another campaign holds claims on
CLAIM_POLL_S = 1.0


class _InProcess:
    """Computes one claimed label at a time in this process.

    Batches labeled from background threads (:class:`LabelJob`) take turns: one in-process
    calculation runs at a time, as on one worker.
    """

    capacity = 1
    _turn = threading.Lock()

    def __init__(self) -> None:
        self.queue: dict[str, tuple] = {}

    @property
    def running(self) -> int:
        return len(self.queue)

    def submit(self, key: str, args: tuple) -> None:
        self.queue[key] = args

    def finished(self, timeout_s: float | None) -> list[tuple[str, dict[str, Any]]]:
        key, args = self.queue.popitem()
        with self._turn:
            return [(key, compute_label(*args))]

    def cancel(self) -> None:
        self.queue.clear()


class _OnDask:
    """Computes claimed labels on a Dask cluster, ``capacity`` at a time, at ``priority``."""

    def __init__(self, client, capacity: int, priority: int = 0) -> None:  # noqa: ANN001
        self.client, self.capacity, self.priority = client, capacity, priority
        self.futures: dict[Any, str] = {}

    @property
    def running(self) -> int:
        return len(self.futures)

    def submit(self, key: str, args: tuple) -> None:
        self.futures[self.client.submit(compute_label, *args, pure=False,
                                        priority=self.priority)] = key

    def finished(self, timeout_s: float | None) -> list[tuple[str, dict[str, Any]]]:
        """The labels finished within ``timeout_s`` s (None: wait for the first)."""
        from dask.distributed import wait

        try:
            done, _ = wait(list(self.futures), timeout=timeout_s, return_when="FIRST_COMPLETED")
        except TimeoutError:
            return []
        out = []
        for fut in done:
            key = self.futures.pop(fut)
            try:
                record = fut.result()
            except Exception as exc:  # the worker died (e.g. KilledWorker): not the label's fault
                first = str(exc).splitlines()[0] if str(exc) else ""
                record = {"status": "failed", "category": "exception", "transient": True,
                          "message": f"{type(exc).__name__}: {first}"}
            # a finished label must not be recomputed if its worker is lost later
            fut.release()
            out.append((key, record))
        return out

    def cancel(self) -> None:
        self.client.cancel(list(self.futures))


def _periodicity(atoms: Atoms) -> tuple[list[list[float]] | None, list[bool] | None]:
    """(cell in Å, pbc) of a periodic structure for :func:`compute_label`; (None, None) else."""
    if not atoms.pbc.any():
        return None, None
    return np.asarray(atoms.cell).tolist(), [bool(p) for p in atoms.pbc]


def _label_missing(jobs: dict[str, Atoms], cfg: LabelingConfig, cache: LabelCache,
                   priority: int = 0) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (key, record) for every key of ``jobs`` as it is known, storing what it computes.

    A key is computed here only under this call's claim; a key another live campaign holds is
    waited for (looked at every :data:`CLAIM_POLL_S` s) and taken over if its claim is
    released without a label (a transient failure there) or expires.
    """
    level = cfg.level.as_dict()  # plain and picklable for the workers
    args = {
        k: (a.get_atomic_numbers().tolist(), a.get_positions().tolist(),
            cfg.charge, cfg.multiplicity, level, cfg.omp_threads, cfg.timeout_s,
            a.info.get("qm_options"), *_periodicity(a))
        for k, a in jobs.items()
    }
    if cfg.scheduler == "synchronous" or (cfg.scheduler == "local" and
                                          (cfg.n_workers <= 1 or len(jobs) <= 1)):
        runner: _InProcess | _OnDask = _InProcess()
    else:
        runner = _OnDask(dask_client(cfg), capacity=2 * max(cfg.n_workers, 1),
                         priority=priority)
    pending, waiting = deque(jobs), []
    told = False
    with Claims(cache, cfg.claim_ttl_s) as claims:
        try:
            while pending or waiting or runner.running:
                while pending and runner.running < runner.capacity:
                    key = pending.popleft()
                    if not claims.claim(key):
                        waiting.append(key)
                        continue
                    hit = cache.get(key)  # stored by another campaign since we looked
                    if hit is not None:
                        claims.release(key)
                        yield key, hit
                        continue
                    runner.submit(key, args[key])
                if waiting and not told:
                    log.info("waiting for %d labels another campaign is computing",
                             len(waiting))
                    told = True
                if runner.running:
                    finished = runner.finished(CLAIM_POLL_S if waiting else None)
                else:
                    time.sleep(CLAIM_POLL_S)
                    finished = []
                for key, record in finished:
                    cache.put(key, jobs[key], record)  # a transient failure is not stored
                    claims.release(key)
                    yield key, record
                if waiting:
                    busy = claims.busy(waiting)
                    pending.extendleft(k for k in reversed(waiting) if k not in busy)
                    waiting = [k for k in waiting if k in busy]
        finally:
            runner.cancel()


def label_structures(
    frames: Iterable[Atoms], cfg: LabelingConfig, retry_failed: bool = False,
    priority: int = 0,
) -> tuple[list[Atoms], list[dict[str, Any]]]:
    """Label ``frames`` with the QM oracle, reusing and filling the cache.

    Labels are attached as a ``SinglePointCalculator``: energy (eV), forces (eV/Å) and, for a
    periodic frame (``atoms.pbc.any()``, computed in its cell), stress (Voigt, eV/Å³);
    molecules are computed non-periodic.

    Returns (labeled frames in input order, failure records). A structure that fails
    validation or QM is recorded with its cause and left out of the labeled list; a
    deterministic failure is cached, a transient one (timeout, exception) is not, so the next
    run computes it again. With ``retry_failed`` a cached failure is forgotten and computed
    again (e.g. with a better SCF guess in the frame's ``info["qm_options"]``). ``priority``
    is the Dask priority of the calculations (higher runs first when batches share the
    workers). Raises
    :class:`FailureBudgetExceeded` (after caching every finished label) if more than
    ``max_failure_fraction`` of a batch of at least four structures failed, and
    :class:`~reactive_al.oracles.cache.CacheUnwritable` if the cache cannot be written.
    """
    from tqdm.auto import tqdm

    frames = list(frames)
    cache = LabelCache(cfg.cache_path)
    settings = cfg.settings()
    keys: list[str | None] = []
    records: dict[str, dict[str, Any]] = {}
    failures: list[dict[str, Any]] = []
    jobs: dict[str, Atoms] = {}
    for i, atoms in enumerate(frames):
        where = f"frame {i} ({atoms.info.get('origin', 'unknown origin')})"
        try:
            check_structure(atoms, where, cfg.charge, cfg.multiplicity, cfg.min_distance)
        except SystemDefinitionError as exc:
            failures.append({"index": i, "origin": atoms.info.get("origin"),
                             "category": "geometry_invalid", "message": str(exc)})
            keys.append(None)
            continue
        mol = working_copy(atoms)  # as the oracle gets it, and as its key is made
        key = label_key(mol, cfg.charge, cfg.multiplicity, settings)
        keys.append(key)
        if key in records or key in jobs:
            continue
        hit = cache.get(key)
        if hit is not None and retry_failed and hit["status"] == "failed":
            cache.forget_failure(key)
            hit = None
        if hit is not None:
            records[key] = hit
        else:
            jobs[key] = mol
    n_hits = len(records)
    if jobs:
        log.info("labeling %d structures (%d cache hits) with %s on %s",
                 len(jobs), n_hits, cfg.level.as_dict(), cfg.scheduler)
        # disable=None: no bar when stderr is not a terminal (log files, batch jobs)
        bar = tqdm(total=len(jobs), desc="QM labels", disable=None if cfg.progress else True,
                   leave=False)
        for key, record in _label_missing(jobs, cfg, cache, priority):
            records[key] = record
            bar.update(1)
        bar.close()
    labeled: list[Atoms] = []
    for i, (atoms, key) in enumerate(zip(frames, keys, strict=True)):
        if key is None:
            continue
        rec = records[key]
        if rec["status"] == "ok":
            labeled.append(_attach(atoms, rec, key))
        else:
            failures.append({"index": i, "origin": atoms.info.get("origin"), "label_key": key,
                             "category": rec.get("category", "exception"),
                             "message": rec.get("message", "")})
    log.info("labeled %d/%d structures (%d from cache, %d failed)",
             len(labeled), len(frames), n_hits, len(failures))
    if len(frames) >= 4 and len(failures) > cfg.max_failure_fraction * len(frames):
        causes = sorted({f["category"] for f in failures})
        raise FailureBudgetExceeded(
            f"{len(failures)} of {len(frames)} structures failed ({', '.join(causes)}), more "
            f"than the failure budget {cfg.max_failure_fraction:.0%}; finished labels are cached"
        )
    return labeled, failures


class LabelJob:
    """A batch labeled by :func:`label_structures` in a background thread of this process.

    The thread drives the labeling (validation, cache, handing the calculations to the Dask
    workers, writing each label as it finishes) while the caller goes on with work that does
    not need the labels. :meth:`result` waits for the batch and raises what
    :func:`label_structures` raised. Python waits for the thread at exit, so a run that fails
    meanwhile still caches every label of the batch. With profiling on, the batch's wall time
    is recorded as stage ``qm_batch`` of the node that started it.
    """

    #: how many jobs this process started: a later job's calculations have lower priority
    _started = itertools.count()

    def __init__(self, frames: Iterable[Atoms], cfg: LabelingConfig) -> None:
        self.frames = list(frames)
        import_scheduler(cfg)  # before the thread: dask_jobqueue's import needs the main one
        priority = -next(self._started)  # the Dask workers finish older batches first
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reactive-al-labels")
        self._future = executor.submit(self._run, self.frames, cfg, priority,
                                       profiling.current_node())
        executor.shutdown(wait=False)  # the thread ends after its one batch

    @staticmethod
    def _run(frames: list[Atoms], cfg: LabelingConfig, priority: int,
             node: str | None) -> tuple[list[Atoms], list[dict[str, Any]]]:
        start = time.time()
        try:
            return label_structures(frames, cfg, priority=priority)
        finally:
            profiling.record("qm_batch", time.time() - start, start, node=node)

    def result(self) -> tuple[list[Atoms], list[dict[str, Any]]]:
        """(labeled frames in input order, failure records), once the batch has finished."""
        return self._future.result()
