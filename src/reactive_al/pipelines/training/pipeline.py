"""Wiring of the ``training`` pipeline."""

from kedro.pipeline import Pipeline, node

from reactive_al.pipelines.training.nodes import train


def create_pipeline(**kwargs) -> Pipeline:
    """``labeled_set`` → ``committee``."""
    return Pipeline([
        node(train, ["labeled_set", "params:system", "params:systems", "params:training"],
             "committee", name="train_committee"),
    ])
