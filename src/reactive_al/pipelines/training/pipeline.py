"""Wiring of the ``training`` pipeline."""

from kedro.pipeline import Pipeline, node

from reactive_al.pipelines.training.nodes import train


def create_pipeline(previous_committee: bool = False, **kwargs) -> Pipeline:
    """``labeled_set`` → ``committee``; also reads ``previous_committee`` if asked to.

    The AL loop asks for it from the second iteration on, so that ``training.fit.mode:
    warm_start`` can continue the previous committee; run alone, the pipeline trains from
    scratch.
    """
    inputs = ["labeled_set", "params:system", "params:systems", "params:training",
              "params:labeling"]
    if previous_committee:
        inputs.append("previous_committee")
    return Pipeline([node(train, inputs, "committee", name="train_committee")])
