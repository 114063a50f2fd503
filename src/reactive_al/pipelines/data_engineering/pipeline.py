"""Wiring of the ``data_engineering`` pipeline."""

from kedro.pipeline import Pipeline, node

from reactive_al.pipelines.data_engineering.nodes import build_structure_sets


def create_pipeline(**kwargs) -> Pipeline:
    """System definition → initial pool, test pool, MD seeds."""
    return Pipeline([
        node(build_structure_sets,
             ["params:system", "params:systems", "params:data_engineering"],
             ["initial_pool", "test_pool", "md_seeds"],
             name="build_structure_sets"),
    ])
