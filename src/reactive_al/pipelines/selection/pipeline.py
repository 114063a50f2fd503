"""Wiring of the ``selection`` pipeline."""

from kedro.pipeline import Pipeline, node

from reactive_al.pipelines.selection.nodes import explore_candidates, select_batch


def create_pipeline(**kwargs) -> Pipeline:
    """``committee`` + ``md_seeds`` → ``candidates`` → ``selected`` (unlabeled batch)."""
    return Pipeline([
        node(explore_candidates, ["committee", "md_seeds", "labeled_set", "params:selection"],
             ["candidates", "exploration_stats"], name="explore_candidates"),
        node(select_batch, ["committee", "candidates", "labeled_set", "params:selection"],
             ["selected", "selection_stats"], name="select_batch"),
    ])
