"""Wiring of the ``labeling`` pipeline."""

from kedro.pipeline import Pipeline, node

from reactive_al.pipelines.labeling.nodes import (
    collect_initial_head,
    collect_initial_pool,
    collect_labels,
    label_frames,
    submit_frames,
    submit_initial_pool,
)
from reactive_al.pipelines.training.nodes import warm_up

QM_PARAMS = ["params:system", "params:systems", "params:labeling"]
WARM_UP_PARAMS = ["params:system", "params:systems", "params:training", "params:labeling"]


def create_pipeline(early_first_batch: float | None = None, after: tuple[str, ...] = (),
                    **kwargs) -> Pipeline:
    """Initial pool → ``labeled_set_0``; test pool → ``test_set`` (failures recorded).

    The initial pool is labeled in the background (``submit_initial_pool``) while the driver
    does the first training's one-off work (``warm_up_training``); ``label_initial_pool``
    waits for the labels. With ``early_first_batch`` (``active_learning.early_first_batch``,
    with the lookahead) the pool is labeled head first and ``label_initial_head`` gives the
    head's labels (``initial_head_set``) as soon as they are in, for the committee that
    selects the first batch; ``after`` (the datasets of that work, in the ``__default__``
    campaign) makes ``label_initial_pool`` wait for the rest only once it is done.
    """
    test = node(label_frames, ["test_pool", *QM_PARAMS], ["test_set", "test_label_failures"],
                name="label_test_pool")
    if not early_first_batch:
        return Pipeline([
            node(submit_frames, ["initial_pool", *QM_PARAMS], "initial_label_job",
                 name="submit_initial_pool"),
            node(warm_up, ["initial_pool", *WARM_UP_PARAMS, "initial_label_job"],
                 "warm_up_stats", name="warm_up_training"),
            node(collect_labels, ["initial_label_job", "warm_up_stats"],
                 ["labeled_set_0", "initial_label_failures"], name="label_initial_pool"),
            test,
        ])
    jobs = ["initial_label_job", "initial_tail_job", "params:active_learning"]
    return Pipeline([
        node(submit_initial_pool, ["initial_pool", "params:active_learning", *QM_PARAMS],
             jobs[:2], name="submit_initial_pool"),
        node(warm_up, ["initial_pool", *WARM_UP_PARAMS, "initial_label_job"],
             "warm_up_stats", name="warm_up_training"),
        node(collect_initial_head, [*jobs, "warm_up_stats"], "initial_head_set",
             name="label_initial_head"),
        node(collect_initial_pool, [*jobs, "initial_head_set", *after],
             ["labeled_set_0", "initial_label_failures"], name="label_initial_pool"),
        test,
    ])
