"""Wiring of the ``evaluation`` pipeline."""

from kedro.pipeline import Pipeline, node

from reactive_al.pipelines.evaluation.nodes import evaluate


def create_pipeline(**kwargs) -> Pipeline:
    """``committee`` + ``test_set`` (+ its ``labeled_set`` for calibration) → ``metrics``."""
    return Pipeline([
        node(evaluate, ["committee", "test_set", "labeled_set"], "metrics",
             name="evaluate_committee"),
    ])
