"""MLflow records of an AL campaign: one nested run per iteration under the campaign run."""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ase import Atoms

from reactive_al.models import Committee
from reactive_al.nested import flatten

if TYPE_CHECKING:
    import mlflow

log = logging.getLogger(__name__)


@contextmanager
def nested_run(
    name: str, killed: tuple[type[BaseException], ...] = (),
) -> Iterator[mlflow.ActiveRun | None]:
    """A nested MLflow run ``name`` under the active (parent) run, for the ``with`` block.

    Yields None, and records nothing, when no run is active (MLflow tracking switched off).
    The nested run ends ``FINISHED``, ``KILLED`` when the block raises one of ``killed``, or
    ``FAILED`` on any other exception (Ctrl-C included, so that no nested run is left
    ``RUNNING``); afterwards the parent is the active run again, even where kedro-mlflow
    keeps it active in its own way.
    """
    import mlflow

    parent = mlflow.active_run()
    if parent is None:
        yield None
        return
    run = mlflow.start_run(run_name=name, nested=True)
    status = "FAILED"
    try:
        yield run
        status = "FINISHED"
    except killed:
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

    Logs the metrics (also on the campaign run with ``step=iteration``), the params, the
    committee checkpoint, the selected structures and ``figures`` (PNG name → matplotlib
    Figure) as artifacts. Returns the nested run id,
    or None when no campaign run is active (MLflow tracking switched off).
    """
    import mlflow
    import torch

    if mlflow.active_run() is None:
        log.info("no active MLflow run: iteration %d is not tracked", iteration)
        return None
    numeric = _numeric(metrics)
    mlflow.log_metrics(numeric, step=iteration)
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
