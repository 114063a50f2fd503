"""Wiring of the ``evaluation`` pipeline."""

from kedro.pipeline import Pipeline, node

from reactive_al.pipelines.evaluation.nodes import evaluate, evaluate_after

INPUTS = ["committee", "test_set", "labeled_set", "reference_path", "params:evaluation"]


def create_pipeline(after: str | None = None, **kwargs) -> Pipeline:
    """``committee`` + ``test_set`` (+ ``labeled_set``, ``reference_path``) → ``metrics``.

    The committee's ``labeled_set`` calibrates its uncertainties; the QM ``reference_path``
    is the reference of the barrier errors. ``evaluation_products`` (predictions, path
    profile, calibration curves) feed the figures. With ``after`` (a dataset name) the node
    also reads that dataset, only to run after the node producing it: an AL iteration
    evaluates while its batch is being labeled.
    """
    func, inputs = (evaluate, INPUTS) if after is None else (evaluate_after, [after, *INPUTS])
    return Pipeline([
        node(func, inputs, ["metrics", "evaluation_products"], name="evaluate_committee"),
    ])
