"""Wiring of the ``labeling`` pipeline."""

from kedro.pipeline import Pipeline, node

from reactive_al.pipelines.labeling.nodes import label_frames

QM_PARAMS = ["params:system", "params:systems", "params:labeling"]


def create_pipeline(**kwargs) -> Pipeline:
    """Initial pool → ``labeled_set_0``; test pool → ``test_set`` (failures recorded)."""
    return Pipeline([
        node(label_frames, ["initial_pool", *QM_PARAMS],
             ["labeled_set_0", "initial_label_failures"], name="label_initial_pool"),
        node(label_frames, ["test_pool", *QM_PARAMS],
             ["test_set", "test_label_failures"], name="label_test_pool"),
    ])
