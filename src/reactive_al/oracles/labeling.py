"""Label a batch of structures: validate, look up the cache, compute the rest in parallel.

Parallelism is inside this one call, with Dask: an embedded ``LocalCluster`` (one thread per
worker process) by default, or an existing scheduler address. Results are written to the cache
as each finishes, so an interrupted batch loses only the calculations in flight.
"""

from __future__ import annotations

import atexit
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from reactive_al.oracles import Level, OracleError, get_oracle, parse_level, single_point
from reactive_al.oracles.cache import LabelCache, label_key
from reactive_al.systems import DEFAULT_MIN_DISTANCE, SystemDefinitionError, check_structure

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


def make_cluster(cfg: LabelingConfig, n_jobs: int):
    """Dask cluster for ``cfg.scheduler`` (None for an existing scheduler address).

    ``n_jobs`` bounds the number of Slurm jobs requested.
    """
    if cfg.scheduler == "local":
        from dask.distributed import LocalCluster

        return LocalCluster(
            n_workers=cfg.n_workers, threads_per_worker=1, processes=True,
            dashboard_address=None, silence_logs=logging.ERROR,
            env={"OMP_NUM_THREADS": str(cfg.omp_threads)},
        )
    if cfg.scheduler == "slurm":
        cluster = slurm_cluster(cfg)
        jobs = min(cfg.n_workers, n_jobs)
        cluster.scale(jobs=jobs)
        keep_jobs_submitted(cluster, jobs)
        return cluster
    return None


#: seconds between checks that every Slurm job of a cluster is still queued or running
SLURM_RESUBMIT_INTERVAL_S = 5.0


def keep_jobs_submitted(cluster, jobs: int, interval_s: float = SLURM_RESUBMIT_INTERVAL_S) -> None:
    """Resubmit the Slurm jobs of ``cluster`` that ended (scancel, walltime, preemption).

    A ``SLURMCluster`` scaled once forgets a lost worker after
    ``distributed.deploy.lost-worker-timeout`` but never submits a job in its place, so a batch
    whose jobs have all ended would wait forever. Every ``interval_s`` this re-scales the
    cluster to ``jobs`` when one is missing; Dask reruns the labels that were in flight there.
    """
    from distributed.core import Status
    from tornado.ioloop import PeriodicCallback

    def check() -> None:
        missing = set(cluster.worker_spec) - set(cluster.workers)
        if cluster.status == Status.running and missing:
            log.warning("resubmitting %d Slurm job(s) that ended: %s", len(missing),
                        ", ".join(map(str, sorted(missing, key=str))))
            cluster.scale(jobs=jobs)

    def install() -> None:
        pc = PeriodicCallback(check, interval_s * 1000)
        cluster.periodic_callbacks["reactive-al-resubmit"] = pc  # stopped by cluster.close()
        pc.start()

    cluster.loop.add_callback(install)


def slurm_cluster(cfg: LabelingConfig):
    """A ``dask_jobqueue.SLURMCluster`` (no jobs submitted yet) from ``cfg.slurm`` settings."""
    from dask_jobqueue import SLURMCluster

    settings = {"cores": 1, "processes": 1, "memory": "4GB", "walltime": "02:00:00",
                **cfg.slurm}
    prologue = list(settings.pop("job_script_prologue", []))
    prologue.append(f"export OMP_NUM_THREADS={cfg.omp_threads}")
    return SLURMCluster(job_script_prologue=prologue, **settings)


def compute_label(
    numbers: list[int], positions: list[list[float]], charge: int, multiplicity: int,
    level: dict[str, Any], omp_threads: int, timeout_s: float | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run one QM single point; return a label record or a failure record (never raises).

    ``level`` is the plain-dict form of the level of theory (what a Dask worker receives);
    positions in Å, ``timeout_s`` in s; ``options`` are the program's SCF options (a frame's
    ``info["qm_options"]``, not part of the cache key).
    """
    atoms = Atoms(numbers=numbers, positions=positions, pbc=False)
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
    out = atoms.copy()
    out.calc = SinglePointCalculator(out, energy=record["energy"],
                                     forces=np.asarray(record["forces"]))
    out.info.update(record.get("provenance", {}))
    out.info["label_key"] = key
    return out


def _run_parallel(jobs: dict[str, Atoms], cfg: LabelingConfig):
    """Compute missing labels, yielding (key, record) as each finishes."""
    level = cfg.level.as_dict()  # plain and picklable for the workers
    args = {
        k: (a.get_atomic_numbers().tolist(), a.get_positions().tolist(),
            cfg.charge, cfg.multiplicity, level, cfg.omp_threads, cfg.timeout_s,
            a.info.get("qm_options"))
        for k, a in jobs.items()
    }
    if cfg.scheduler == "synchronous" or (cfg.scheduler == "local" and
                                          (cfg.n_workers <= 1 or len(jobs) <= 1)):
        for k, a in args.items():
            yield k, compute_label(*a)
        return
    from dask.distributed import as_completed

    client = dask_client(cfg)
    futures = {client.submit(compute_label, *a, pure=False): k for k, a in args.items()}
    try:
        for fut in as_completed(futures):
            key = futures.pop(fut)
            try:
                record = fut.result()
            except Exception as exc:  # the worker died (e.g. KilledWorker): not the label's fault
                first = str(exc).splitlines()[0] if str(exc) else ""
                record = {"status": "failed", "category": "exception", "transient": True,
                          "message": f"{type(exc).__name__}: {first}"}
            # a finished label must not be recomputed if its worker is lost later
            fut.release()
            yield key, record
    finally:
        client.cancel(list(futures))


_CLIENTS: dict[tuple, Any] = {}


def _warm_worker(program: str) -> bool:
    """Import the program on a worker: the first label there should not pay for it."""
    get_oracle(program).warm()
    return True


def dask_client(cfg: LabelingConfig):
    """A Dask client for ``cfg``, started once per process and reused by later batches.

    Starting a LocalCluster costs seconds; a campaign labels a batch every iteration, so the
    cluster lives until the process exits.
    """
    from dask.distributed import Client

    # slurm settings may hold lists (job_script_prologue): key on their JSON form
    key = (cfg.scheduler, cfg.n_workers, cfg.omp_threads,
           json.dumps(cfg.slurm, sort_keys=True, default=str))
    client = _CLIENTS.get(key)
    if client is not None and client.status == "running":
        return client
    cluster = make_cluster(cfg, cfg.n_workers)
    client = Client(cluster) if cluster is not None else Client(cfg.scheduler)
    if cluster is not None and cfg.scheduler == "local":
        client.run(_warm_worker, cfg.level.program)
    _CLIENTS[key] = client
    return client


def close_clients() -> None:
    """Shut down the clusters this process started (quietly: shutdown is not news)."""
    for name in ("distributed", "distributed.scheduler", "distributed.nanny",
                 "distributed.core", "distributed.worker"):
        logging.getLogger(name).setLevel(logging.ERROR)
    while _CLIENTS:
        _, client = _CLIENTS.popitem()
        cluster = client.cluster
        client.close()
        if cluster is not None:
            cluster.close()


atexit.register(close_clients)


def label_structures(
    frames: Iterable[Atoms], cfg: LabelingConfig, retry_failed: bool = False,
) -> tuple[list[Atoms], list[dict[str, Any]]]:
    """Label ``frames`` with the QM oracle, reusing and filling the cache.

    Returns (labeled frames in input order, failure records). With ``retry_failed`` a
    cached failure is forgotten and computed again (e.g. with a better SCF guess in the
    frame's ``info["qm_options"]``). A structure that fails
    validation or QM is recorded with its cause and left out of the labeled list. Raises
    :class:`FailureBudgetExceeded` (after caching every finished label) if more than
    ``max_failure_fraction`` of a batch of at least four structures failed.
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
        mol = atoms.copy()
        mol.pbc = False  # molecules go to the oracle non-periodic
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
        bar = tqdm(total=len(jobs), desc="QM labels", disable=not cfg.progress, leave=False)
        for key, record in _run_parallel(jobs, cfg):
            if not record.get("transient"):  # a lost worker is retried on the next run
                cache.put(key, jobs[key], record)
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
