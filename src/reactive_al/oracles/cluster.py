"""The Dask cluster that labeling fans out to, started once per process.

An embedded ``LocalCluster`` (one thread per worker process, every address on loopback) by
default; ``dask_jobqueue.SLURMCluster`` with ``scheduler: slurm`` (TLS between scheduler,
workers and client, the scheduler on the configured interface, HTTP on loopback only); or an
existing scheduler address.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reactive_al.oracles.base import get_oracle

if TYPE_CHECKING:
    from reactive_al.oracles.labeling import LabelingConfig

log = logging.getLogger(__name__)


def import_scheduler(cfg: LabelingConfig) -> None:
    """Import the library of ``cfg.scheduler``; call it in the main thread.

    Importing ``dask_jobqueue`` installs a SIGINT handler, which only the main thread may
    do: a batch labeled in a background thread (:class:`~reactive_al.oracles.labeling.LabelJob`)
    that starts the first Slurm cluster of a run would fail there.
    """
    if cfg.scheduler == "slurm":
        import dask_jobqueue  # noqa: F401


def make_cluster(cfg: LabelingConfig, n_jobs: int):
    """Dask cluster for ``cfg.scheduler`` (None for an existing scheduler address).

    ``n_jobs`` bounds the number of Slurm jobs requested.
    """
    if cfg.scheduler == "local":
        from dask.distributed import LocalCluster

        return LocalCluster(  # every address on loopback: nothing reachable from outside
            n_workers=cfg.n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
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


#: where a Slurm cluster writes its throwaway TLS certificates for its jobs (a directory every
#: node sees, private to the user: created with mode 0700; the files are 0600)
TLS_DIRECTORY = "~/.reactive_al/dask-tls"


def cluster_security(setting: bool | Mapping[str, Any] | None):
    """The ``distributed`` :class:`~distributed.security.Security` of ``labeling.slurm.security``.

    ``true`` (the default, also for null): mutual TLS with certificates generated for this
    cluster (``Security.temporary``, needs ``cryptography``); a mapping: ``Security`` settings
    of site certificates (``tls_ca_file``, ``tls_scheduler_cert``, ...), encryption required;
    ``false``: plain TCP (None).
    """
    from distributed.security import Security

    if setting is None or setting is True:
        return Security.temporary()
    if isinstance(setting, Mapping):
        return Security(**{"require_encryption": True, **setting})
    if setting is False:
        return None
    raise ValueError("labeling.slurm.security must be true, false or a mapping of "
                     f"distributed.security.Security settings, not {setting!r}")


def slurm_cluster(cfg: LabelingConfig):
    """A ``dask_jobqueue.SLURMCluster`` (no jobs submitted yet) from ``cfg.slurm`` settings.

    The scheduler speaks TLS (see :func:`cluster_security`) and binds to ``interface`` when
    one is set; its HTTP server (health, metrics; the dashboard only if
    ``scheduler_options: {dashboard: true}``) and the workers' listen on loopback only.
    """
    from dask_jobqueue import SLURMCluster

    settings = {"cores": 1, "processes": 1, "memory": "4GB", "walltime": "02:00:00",
                **cfg.slurm}
    prologue = list(settings.pop("job_script_prologue", []))
    prologue.append(f"export OMP_NUM_THREADS={cfg.omp_threads}")
    security = cluster_security(settings.pop("security", True))
    scheduler_options = {"dashboard": False, "dashboard_address": "127.0.0.1:0",
                         **(settings.pop("scheduler_options", None) or {})}
    worker_args = ["--no-dashboard", "--dashboard-address", "127.0.0.1:0",
                   *settings.pop("worker_extra_args", [])]
    if security is not None:
        tls_dir = Path(os.path.expanduser(settings.pop("shared_temp_directory", None)
                                          or TLS_DIRECTORY)).resolve()
        tls_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        settings["shared_temp_directory"] = str(tls_dir)
    elif not (settings.get("interface") or scheduler_options.get("interface")
              or scheduler_options.get("host")):
        log.warning("labeling.slurm.security is false and no interface is set: the Dask "
                    "scheduler listens on every interface, unencrypted and unauthenticated")
    return SLURMCluster(job_script_prologue=prologue, security=security,
                        scheduler_options=scheduler_options, worker_extra_args=worker_args,
                        **settings)


_CLIENTS: dict[tuple, Any] = {}
#: batches labeled from two threads (lookahead) must not start two clusters
_CLIENTS_LOCK = threading.Lock()


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
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
        if client is not None and client.status == "running":
            return client
        cluster = make_cluster(cfg, cfg.n_workers)
        client = Client(cluster) if cluster is not None else Client(cfg.scheduler)
        if cluster is not None and cfg.scheduler == "local":
            client.run(_warm_worker, cfg.level.program)
        _CLIENTS[key] = client
        return client


#: seconds a client or cluster may take to close at exit before the process goes on without it
CLOSE_TIMEOUT_S = 30


def close_clients() -> None:
    """Shut down the clusters this process started (quietly: shutdown is not news).

    Each close has a time limit and its errors are ignored: at exit, a worker whose batch job
    was cancelled can leave a connection that never closes (seen once: a finished labeling run
    hung in this callback), and a hung exit must not undo a finished run.
    """
    for name in ("distributed", "distributed.scheduler", "distributed.nanny",
                 "distributed.core", "distributed.worker"):
        logging.getLogger(name).setLevel(logging.ERROR)
    while _CLIENTS:
        _, client = _CLIENTS.popitem()
        cluster = client.cluster
        with contextlib.suppress(Exception):
            client.close(timeout=CLOSE_TIMEOUT_S)
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close(timeout=CLOSE_TIMEOUT_S)
            _delete_certificates(cluster)


def _delete_certificates(cluster) -> None:  # noqa: ANN001
    """Delete the certificate files ``dask_jobqueue`` wrote for a cluster's jobs.

    It keeps them as open temporary files (``_job_ca_file``, ``_job_cert``, ``_job_key``)
    deleted only when the cluster is garbage-collected, which a process exit does not do.
    """
    for name, handle in list(vars(cluster).items()):
        if name.startswith("_job_") and callable(getattr(handle, "close", None)):
            handle.close()


atexit.register(close_clients)
