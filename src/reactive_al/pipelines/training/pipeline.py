"""Wiring of the ``training`` pipeline (and of pre-training on a cheap level)."""

from functools import partial, update_wrapper

from kedro.pipeline import Pipeline, node

from reactive_al.pipelines.training.nodes import (
    build_pretrain_pool,
    label_pretrain_pool,
    pretrain,
    train,
)

TRAIN_PARAMS = {"system": "params:system", "systems": "params:systems",
                "training": "params:training", "labeling": "params:labeling"}


def create_pipeline(previous_committee: bool = False, pretrained: bool = False,
                    iteration: int | None = None, last: bool = False,
                    **kwargs) -> Pipeline:
    """``labeled_set`` → ``committee``; also reads ``previous_committee`` if asked to.

    The AL loop asks for it from the second iteration on, so that ``training.fit.mode:
    warm_start`` can continue the previous committee; run alone, the pipeline trains from
    scratch. With ``pretrained`` it reads ``pretrained_committee`` (:func:`pretraining`),
    whose networks training starts from. In the AL loop the node also knows its
    ``iteration`` and whether it is the ``last`` (``training.fit.retrain_every`` /
    ``retrain_last`` of a warm-starting campaign).
    """
    inputs = {"labeled_set": "labeled_set", **TRAIN_PARAMS}
    if previous_committee:
        inputs["previous_committee"] = "previous_committee"
    if pretrained:
        inputs["pretrained_committee"] = "pretrained_committee"
    func = train if iteration is None else update_wrapper(
        partial(train, iteration=iteration, last=last), train)
    return Pipeline([node(func, inputs, "committee", name="train_committee")])


def pretraining() -> Pipeline:
    """``training.pretrain``: pool → cheap labels (label cache) → ``pretrained_committee``."""
    return Pipeline([
        node(build_pretrain_pool, ["params:system", "params:systems", "params:training"],
             "pretrain_pool", name="build_pretrain_pool"),
        node(label_pretrain_pool, ["pretrain_pool", "params:system", "params:systems",
                                   "params:training", "params:labeling"],
             ["pretrain_labels", "pretrain_stats"], name="label_pretrain_pool"),
        node(pretrain, ["pretrain_labels", "params:system", "params:systems",
                        "params:training"], "pretrained_committee", name="pretrain_committee"),
    ])
