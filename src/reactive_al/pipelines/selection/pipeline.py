"""Wiring of the ``selection`` pipeline."""

from kedro.pipeline import Pipeline, node

from reactive_al.pipelines.selection.nodes import explore_candidates, fit_estimator, select_batch


def create_pipeline(**kwargs) -> Pipeline:
    """``committee`` + ``md_seeds`` → ``candidates`` → ``selected`` (unlabeled batch).

    The calibrated uncertainty ``estimator`` is fitted once and used by both steps.
    """
    return Pipeline([
        node(fit_estimator, ["committee", "labeled_set", "params:selection"], "estimator",
             name="fit_estimator"),
        node(explore_candidates, ["committee", "md_seeds", "estimator", "params:selection"],
             ["candidates", "exploration_stats"], name="explore_candidates"),
        node(select_batch, ["committee", "candidates", "labeled_set", "estimator",
                            "params:selection"],
             ["selected", "selection_stats"], name="select_batch"),
    ])
