"""Wiring of the ``tuning`` pipeline."""

from kedro.pipeline import Pipeline, node

from reactive_al.pipelines.tuning.nodes import tune_query


def create_pipeline(**kwargs) -> Pipeline:
    """``labeled_set`` + ``test_set`` → ``best_query_params``, ``tuning_summary``, trials."""
    return Pipeline([
        node(tune_query,
             ["labeled_set", "test_set", "params:selection", "params:training",
              "params:tuning"],
             ["best_query_params", "tuning_summary", "tuning_trials"],
             name="tune_query_hyperparameters"),
    ])
