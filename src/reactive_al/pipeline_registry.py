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

#: What the registered pipelines were last built with: ``active_learning.n_iterations``,
#: ``active_learning.lookahead`` (and ``early_first_batch``), whether ``training.pretrain``
#: is set.
BUILT_WITH: dict[str, int | bool | float | None] = {}


def _session_parameters() -> dict:
    """The session's parameters (``--env``, ``--params``), else the files."""
    from reactive_al import hooks
    from reactive_al.settings import load_parameters

    params = hooks.SESSION_PARAMETERS
    if params is None:
        try:
            params = load_parameters(Path.cwd())
        except Exception:  # no project configuration here (e.g. imported from elsewhere)
            params = {}
    return params


def _n_iterations(params: dict, default: int = 5) -> int:
    """Campaign length (``active_learning.n_iterations``)."""
    return int((params.get("active_learning") or {}).get("n_iterations", default))


def _pretrain(params: dict) -> bool:
    """Whether the campaign pre-trains on a cheap level (``training.pretrain`` set)."""
    training = params.get("training", {})
    return bool(training.get("pretrain")) if isinstance(training, dict) else False


def _lookahead(params: dict) -> bool:
    """Whether the loop is pipelined one batch deep (``active_learning.lookahead``)."""
    return bool((params.get("active_learning") or {}).get("lookahead", False))


def _early_first_batch(params: dict) -> float | None:
    """``active_learning.early_first_batch`` where it applies (a pipelined loop), else None."""
    early = (params.get("active_learning") or {}).get("early_first_batch")
    return early if early and _lookahead(params) and _n_iterations(params) > 2 else None


def built_with(params: dict) -> dict[str, int | bool | float | None]:
    """The parameters the ``labeling`` and ``active_learning`` pipelines' shapes depend on."""
    return {"n_iterations": _n_iterations(params), "pretrain": _pretrain(params),
            "lookahead": _lookahead(params), "early_first_batch": _early_first_batch(params)}


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines; ``__default__`` runs a whole campaign."""
    params = _session_parameters()
    BUILT_WITH.update(built_with(params))
    early = BUILT_WITH["early_first_batch"]
    pipes = {
        "data_engineering": data_engineering.create_pipeline(),
        "labeling": labeling.create_pipeline(early),
        "training": training.create_pipeline(),
        "selection": selection.create_pipeline(),
        "evaluation": evaluation.create_pipeline(),
        "active_learning": active_learning.create_pipeline(**BUILT_WITH),
        "tuning": tuning.create_pipeline(),
    }
    # the initial pool's last labels are collected once the first batch is under way
    after = ("first_batch.label_job",) if early else ()
    pipes["__default__"] = (
        pipes["data_engineering"] + labeling.create_pipeline(early, after)
        + pipes["active_learning"]
    )
    return pipes
