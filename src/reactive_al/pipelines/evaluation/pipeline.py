"""Wiring of the ``evaluation`` pipeline."""

from kedro.pipeline import Pipeline, node

from reactive_al.pipelines.evaluation.nodes import evaluate


def create_pipeline(**kwargs) -> Pipeline:
    """``committee`` + ``test_set`` (+ ``labeled_set``, ``reference_path``) → ``metrics``.

    The committee's ``labeled_set`` calibrates its uncertainties; the QM ``reference_path``
    is the reference of the barrier errors. ``evaluation_products`` (predictions, path
    profile, calibration curves) feed the figures.
    """
    return Pipeline([
        node(evaluate, ["committee", "test_set", "labeled_set", "reference_path",
                        "params:evaluation"], ["metrics", "evaluation_products"],
             name="evaluate_committee"),
    ])
