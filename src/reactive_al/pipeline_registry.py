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

#: The ``active_learning.n_iterations`` the registered pipelines were last built with.
BUILT_WITH: dict[str, int] = {}


def _n_iterations(default: int = 5) -> int:
    """Campaign length: the session's parameters (``--env``, ``--params``), else the files."""
    from reactive_al import hooks
    from reactive_al.settings import load_parameters

    params = hooks.SESSION_PARAMETERS
    if params is None:
        try:
            params = load_parameters(Path.cwd())
        except Exception:  # no project configuration here (e.g. imported from elsewhere)
            params = {}
    n = int(params.get("active_learning", {}).get("n_iterations", default))
    BUILT_WITH["n_iterations"] = n
    return n


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
