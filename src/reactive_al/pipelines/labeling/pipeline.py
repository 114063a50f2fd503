"""Wiring of the ``labeling`` pipeline."""

from kedro.pipeline import Pipeline, node

from reactive_al.pipelines.labeling.nodes import collect_labels, label_frames, submit_frames
from reactive_al.pipelines.training.nodes import warm_up

QM_PARAMS = ["params:system", "params:systems", "params:labeling"]


def create_pipeline(**kwargs) -> Pipeline:
    """Initial pool → ``labeled_set_0``; test pool → ``test_set`` (failures recorded).

    The initial pool is labeled in the background (``submit_initial_pool``) while the driver
    does the first training's one-off work (``warm_up_training``); ``label_initial_pool``
    waits for the labels.
    """
    return Pipeline([
        node(submit_frames, ["initial_pool", *QM_PARAMS], "initial_label_job",
             name="submit_initial_pool"),
        node(warm_up, ["initial_pool", "params:system", "params:systems", "params:training",
                       "params:labeling", "initial_label_job"], "warm_up_stats",
             name="warm_up_training"),
        node(collect_labels, ["initial_label_job", "warm_up_stats"],
             ["labeled_set_0", "initial_label_failures"], name="label_initial_pool"),
        node(label_frames, ["test_pool", *QM_PARAMS],
             ["test_set", "test_label_failures"], name="label_test_pool"),
    ])
