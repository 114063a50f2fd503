"""MLflow records of an AL campaign: one nested run per iteration under the campaign run.

Run hygiene lives here too. Every run we open carries the pid, host and start time of its
process, so a later ``kedro run`` can tell a ``RUNNING`` run whose process is gone (killed with
``kill -9``, a lost node) and end it ``KILLED``; a campaign's parent run carries a campaign key,
so a resumed campaign goes on logging into the run it started instead of opening a new one.
Signals end the open runs ``KILLED``, a crash ends them ``FAILED`` (see
:func:`install_interrupt_handlers`), and the first access to a SQLite store is serialised
across processes (:func:`store_lock`): MLflow creates the schema on first use, and two
processes doing so on one new ``mlflow.db`` fail half-way through its migrations.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import signal
import socket
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ase import Atoms

from reactive_al.models import Committee
from reactive_al.nested import flatten

if TYPE_CHECKING:
    import mlflow

log = logging.getLogger(__name__)

#: Tags of the runs we open: the campaign a parent run records, and the process holding a run.
CAMPAIGN_TAG = "reactive_al.campaign"
PID_TAG = "reactive_al.pid"
HOST_TAG = "reactive_al.host"
STARTED_TAG = "reactive_al.process_started"
#: The numerical stack of the process (a campaign's numbers depend on its versions, README).
VERSIONS_TAG = "reactive_al.versions"
VERSIONED = ("torch", "torchani", "pyscf", "tblite", "ase", "numpy", "scipy", "dask", "kedro",
             "mlflow")
#: MLflow's limit on a parameter value (``mlflow.utils.validation.MAX_PARAM_VAL_LENGTH``).
MAX_PARAM_LENGTH = 6000


def package_versions() -> str:
    """``name version`` of each package of :data:`VERSIONED`, comma-separated (absent: ``-``)."""
    from importlib.metadata import PackageNotFoundError, version

    def one(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "-"

    return ", ".join(f"{name} {one(name)}" for name in VERSIONED)


def process_tags() -> dict[str, str]:
    """Tags naming this process and its numerical stack.

    Its pid, host and start time (the pair pid/start is unique) and the versions of
    :func:`package_versions`.
    """
    import psutil

    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname(),
            STARTED_TAG: f"{psutil.Process().create_time():.2f}",
            VERSIONS_TAG: package_versions()}


def process_alive(tags: Mapping[str, str]) -> bool | None:
    """Whether the process recorded in a run's ``tags`` still runs; None if we cannot tell.

    We can tell only on the host that recorded it; a pid reused by another process (after a
    restart of the machine or the container) counts as gone through its start time.
    """
    if tags.get(HOST_TAG) != socket.gethostname() or not str(tags.get(PID_TAG, "")).isdigit():
        return None
    import psutil

    try:
        started = psutil.Process(int(tags[PID_TAG])).create_time()
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # another user's process: it exists
        return True
    recorded = tags.get(STARTED_TAG)
    return recorded is None or abs(started - float(recorded)) < 1.0


def sqlite_path(tracking_uri: str | None) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (relative to the cwd, as SQLite's)."""
    if not tracking_uri or not tracking_uri.startswith("sqlite:///"):
        return None
    path = tracking_uri[len("sqlite:///"):].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


@contextmanager
def store_lock(tracking_uri: str | None) -> Iterator[None]:
    """Hold an exclusive lock on ``<db>.lock`` next to a SQLite store (no-op for other stores).

    ``fcntl.flock`` is released by the kernel when its process dies, so a killed campaign
    never leaves the lock held.
    """
    path = sqlite_path(tracking_uri)
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        path = None
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def init_store(tracking_uri: str, experiment: str | None) -> None:
    """Create the store's schema and the ``experiment`` under :func:`store_lock`.

    Run it before anything else opens the store: afterwards every process finds a complete
    schema (MLflow then only checks its version) and an existing experiment.
    """
    from mlflow.tracking import MlflowClient

    with store_lock(tracking_uri):
        client = MlflowClient(tracking_uri=tracking_uri)
        if experiment and client.get_experiment_by_name(experiment) is None:
            client.create_experiment(experiment)


def close_stale_runs(client: Any, experiment_id: str) -> list[str]:
    """End ``KILLED`` the ``RUNNING`` runs of this host whose process is gone; their ids."""
    host = socket.gethostname().replace("'", "")
    runs = client.search_runs(
        [experiment_id], f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'",
        max_results=5000)
    stale = [r.info.run_id for r in runs if process_alive(r.data.tags) is False]
    for run_id in stale:
        client.set_terminated(run_id, "KILLED")
        log.warning("MLflow run %s was left RUNNING by a process that is gone: KILLED", run_id)
    return stale


def campaign_run(tracking_uri: str, experiment_id: str, key: str, run_name: str,
                 params: Mapping[str, str]) -> tuple[str, bool]:
    """The parent run for campaign ``key``: its last run if it can go on, else a new one.

    Under :func:`store_lock`: stale runs are closed first (:func:`close_stale_runs`); then the
    newest run tagged ``key`` that is not ``RUNNING`` (a run still ``RUNNING`` belongs to a
    live process, or to another host) and whose logged parameters agree with ``params`` (MLflow
    refuses to change a logged parameter) is claimed: status ``RUNNING``, this process's tags.
    Otherwise a new run is created with those tags. Returns ``(run_id, resumed)``.
    """
    from mlflow.tracking import MlflowClient
    from mlflow.tracking.context import registry
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

    client = MlflowClient(tracking_uri=tracking_uri)
    with store_lock(tracking_uri):
        close_stale_runs(client, experiment_id)
        for run in client.search_runs([experiment_id], f"tags.`{CAMPAIGN_TAG}` = '{key}'",
                                      order_by=["attributes.start_time DESC"], max_results=50):
            old = run.data.params
            if run.info.status == "RUNNING" or any(
                    k in old and old[k] != v for k, v in params.items()):
                continue
            client.update_run(run.info.run_id, status="RUNNING")
            for tag, value in process_tags().items():
                client.set_tag(run.info.run_id, tag, value)
            log.info("MLflow: campaign %s goes on in its run %s (%s)", key, run.info.run_id,
                     run.info.status)
            return run.info.run_id, True
        tags = registry.resolve_tags({CAMPAIGN_TAG: key, MLFLOW_RUN_NAME: run_name,
                                      **process_tags()})
        run = client.create_run(experiment_id, tags=tags, run_name=run_name)
    return run.info.run_id, False


#: Signals received while a pipeline runs (they end the open runs KILLED, see below).
_SIGNALS: list[int] = []
_AT_EXIT: list[bool] = []


def _on_signal(signum: int, frame: Any) -> None:  # noqa: ARG001
    _SIGNALS.append(signum)
    raise KeyboardInterrupt(signal.Signals(signum).name)


def end_open_runs() -> None:
    """End the runs still open in this thread: ``KILLED`` after a signal, else ``FAILED``.

    Registered at exit, before MLflow's own handler (which would end them ``FINISHED``). A run
    is open at exit only when the pipeline did not end normally (kedro-mlflow ends its run
    after the last node, and on an ``Exception``; a ``SystemExit`` or ``KeyboardInterrupt``
    bypasses that). kedro-mlflow re-enters its run at every node, so the stack holds it
    several times: a copy whose run is already ended keeps its status.
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    status = "KILLED" if _SIGNALS else "FAILED"
    while (active := mlflow.active_run()) is not None:
        try:
            now = MlflowClient().get_run(active.info.run_id).info.status
        except Exception:  # the store is gone: still unwind the stack
            now = status
        mlflow.end_run(status=status if now == "RUNNING" else now)


def install_interrupt_handlers() -> dict[int, Any]:
    """Turn SIGTERM, SIGHUP and SIGINT into ``KeyboardInterrupt`` and end open runs at exit.

    The interrupt unwinds the pipeline (a nested run in progress ends ``KILLED``, files being
    written are closed); :func:`end_open_runs` then ends the parent ``KILLED``. Returns the
    previous handlers for :func:`restore_handlers` (none outside the main thread, where Python
    cannot set handlers).
    """
    if not _AT_EXIT:
        atexit.register(end_open_runs)  # after mlflow's own: atexit runs it first
        _AT_EXIT.append(True)
    if threading.current_thread() is not threading.main_thread():
        return {}
    sigs = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP")
                                              else [])
    return {s: signal.signal(s, _on_signal) for s in sigs}


def restore_handlers(previous: Mapping[int, Any]) -> None:
    """Put back the signal handlers :func:`install_interrupt_handlers` replaced."""
    if threading.current_thread() is threading.main_thread():
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def nested_run(
    name: str, killed: tuple[type[BaseException], ...] = (),
) -> Iterator[mlflow.ActiveRun | None]:
    """A nested MLflow run ``name`` under the active (parent) run, for the ``with`` block.

    Yields None, and records nothing, when no run is active (MLflow tracking switched off).
    The nested run (tagged with :func:`process_tags`) ends ``FINISHED``, ``KILLED`` when the
    block raises one of ``killed`` or is interrupted (Ctrl-C, a signal), or ``FAILED`` on any
    other exception, so that no nested run is left ``RUNNING``; afterwards the parent is the
    active run again, even where kedro-mlflow keeps it active in its own way.
    """
    import mlflow

    parent = mlflow.active_run()
    if parent is None:
        yield None
        return
    run = mlflow.start_run(run_name=name, nested=True, tags=process_tags())
    status = "FAILED"
    try:
        yield run
        status = "FINISHED"
    except (KeyboardInterrupt, *killed):
        status = "KILLED"
        raise
    finally:
        active = mlflow.active_run()
        if active is not None and active.info.run_id == run.info.run_id:
            mlflow.end_run(status=status)
        # kedro-mlflow keeps the campaign run active; make sure we are back on it
        active = mlflow.active_run()
        if active is None or active.info.run_id != parent.info.run_id:
            mlflow.start_run(run_id=parent.info.run_id)


def _drop_iteration_runs(parent: mlflow.ActiveRun, iteration: int) -> None:
    """Delete (restorable: ``mlflow runs restore``) earlier nested runs of ``iteration``."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    for old in client.search_runs(
            [parent.info.experiment_id],
            f"tags.mlflow.parentRunId = '{parent.info.run_id}' and tags.al_iteration = "
            f"'{iteration}'"):
        client.delete_run(old.info.run_id)
        log.info("MLflow: iteration %d is run again; its earlier run %s is deleted", iteration,
                 old.info.run_id)


def _new_points(run_id: str, metrics: dict[str, float], step: int) -> dict[str, float]:
    """The ``metrics`` whose value at ``step`` is not yet in run ``run_id``'s history."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    return {k: v for k, v in metrics.items() if not any(
        m.step == step and m.value == v for m in client.get_metric_history(run_id, k))}


def _numeric(d: dict[str, Any]) -> dict[str, float]:
    """Finite numbers of a nested dict under dotted keys (what MLflow accepts as metrics)."""
    return {k: float(v) for k, v in flatten(d, sep=".").items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}


def log_iteration_run(
    iteration: int,
    metrics: dict[str, float],
    params: dict[str, Any],
    committee: Committee,
    selected: list[Atoms] | None = None,
    figures: dict[str, Any] | None = None,
) -> str | None:
    """Open a nested MLflow run ``iter_NN`` under the active (campaign) run and fill it.

    Logs the metrics (also on the campaign run with ``step=iteration``, each point once), the
    params, the committee checkpoint, the selected structures and ``figures`` (PNG name →
    matplotlib Figure) as artifacts. A nested run of the same iteration left by an earlier
    session of the campaign (the iteration is run again) is deleted, so the campaign run keeps
    one nested run per iteration. Returns the nested run id, or None when no campaign run is
    active (MLflow tracking switched off).
    """
    import mlflow
    import torch

    if (parent := mlflow.active_run()) is None:
        log.info("no active MLflow run: iteration %d is not tracked", iteration)
        return None
    _drop_iteration_runs(parent, iteration)
    numeric = _numeric(metrics)
    # the learning curve on the campaign run: a point already there (the iteration's node ran
    # again after an interruption) is not logged twice
    mlflow.log_metrics(_new_points(parent.info.run_id, numeric, iteration), step=iteration)
    with nested_run(f"iter_{iteration:02d}") as run:
        mlflow.set_tag("al_iteration", iteration)
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        mlflow.log_metrics(numeric, step=iteration)
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = Path(tmp) / "committee.pt"
            torch.save(committee.to_checkpoint(), ckpt)
            mlflow.log_artifact(str(ckpt), artifact_path="model")
            if selected:
                from ase.io import write

                path = Path(tmp) / "selected.extxyz"
                write(path, selected, format="extxyz")
                mlflow.log_artifact(str(path), artifact_path="selection")
        for name, fig in (figures or {}).items():
            mlflow.log_figure(fig, f"plots/{name}")
        run_id = run.info.run_id
    return run_id
