"""Wiring of the ``data_engineering`` pipeline."""

from kedro.pipeline import Pipeline, node

from reactive_al.pipelines.data_engineering.nodes import (
    build_test_pool,
    build_training_pools,
    describe_test_pool,
    reference_path,
)


def create_pipeline(**kwargs) -> Pipeline:
    """System definition → QM reference path, initial pool, test pool (+ stats), MD seeds."""
    return Pipeline([
        node(reference_path,
             ["params:system", "params:systems", "params:labeling", "params:data_engineering"],
             ["reference_path", "reference_path_stats"], name="qm_reference_path"),
        node(build_training_pools,
             ["params:system", "params:systems", "params:data_engineering"],
             ["initial_pool", "md_seeds"], name="build_training_pools"),
        node(build_test_pool,
             ["params:system", "params:systems", "params:data_engineering", "reference_path"],
             ["test_pool", "test_pool_md_failures"], name="build_test_pool"),
        node(describe_test_pool, ["test_pool", "test_pool_md_failures"], "test_set_stats",
             name="describe_test_pool"),
    ])
