"""Project pipelines: one folder per registered name under ``pipelines/``."""

from __future__ import annotations

from pathlib import Path

from kedro.pipeline import Pipeline

from reactive_al.pipelines import (
    active_learning,
    data_engineering,
    evaluation,
    labeling,
    selection,
    training,
    tuning,
)


def _n_iterations(default: int = 5) -> int:
    """Campaign length from the active_learning parameters (base, then local overrides)."""
    from kedro.config import OmegaConfigLoader

    conf = Path.cwd() / "conf"
    if not conf.is_dir():
        return default
    loader = OmegaConfigLoader(conf_source=str(conf), base_env="base", default_run_env="local")
    try:
        params = loader["parameters"]
    except Exception:
        return default
    return int(params.get("active_learning", {}).get("n_iterations", default))


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines; ``__default__`` runs a whole campaign."""
    pipes = {
        "data_engineering": data_engineering.create_pipeline(),
        "labeling": labeling.create_pipeline(),
        "training": training.create_pipeline(),
        "selection": selection.create_pipeline(),
        "evaluation": evaluation.create_pipeline(),
        "active_learning": active_learning.create_pipeline(n_iterations=_n_iterations()),
        "tuning": tuning.create_pipeline(),
    }
    pipes["__default__"] = (
        pipes["data_engineering"] + pipes["labeling"] + pipes["active_learning"]
    )
    return pipes
