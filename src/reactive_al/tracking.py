"""MLflow records of an AL campaign: one nested run per iteration under the campaign run."""

from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path
from typing import Any

from ase import Atoms

from reactive_al.models import Committee

log = logging.getLogger(__name__)


def _numeric(d: dict[str, Any], prefix: str = "") -> dict[str, float]:
    out = {}
    for k, v in d.items():
        if isinstance(v, bool):
            continue
        if isinstance(v, int | float) and math.isfinite(v):
            out[f"{prefix}{k}"] = float(v)
        elif isinstance(v, dict):
            out.update(_numeric(v, f"{prefix}{k}."))
    return out


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

    parent = mlflow.active_run()
    if parent is None:
        log.info("no active MLflow run: iteration %d is not tracked", iteration)
        return None
    numeric = _numeric(metrics)
    mlflow.log_metrics(numeric, step=iteration)
    with mlflow.start_run(run_name=f"iter_{iteration:02d}", nested=True) as run:
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
    # kedro-mlflow keeps the campaign run active; make sure we are back on it
    active = mlflow.active_run()
    if active is None or active.info.run_id != parent.info.run_id:
        mlflow.start_run(run_id=parent.info.run_id)
    return run_id
