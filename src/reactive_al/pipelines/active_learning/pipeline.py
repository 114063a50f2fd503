"""Wiring of the ``active_learning`` pipeline from one iteration template.

Iteration k trains on ``labeled_set_k``, explores with the new committee, selects a batch,
evaluates the committee while the batch is labeled, and writes ``labeled_set_{k+1}``; the last
iteration trains and evaluates only. Every iteration is the same template under the namespace
``iter_NN``.

With ``active_learning.lookahead`` the loop is pipelined one batch deep: iteration k's
committee selects the batch *after* the one being labeled (which it has not seen), so the QM
workers label batch k while committee k is trained, explores, selects batch k+1 and is
evaluated. Iteration 0 selects the first two batches from its candidates; the last acquiring
iteration only collects. The label budget is the same as without lookahead. With
``active_learning.early_first_batch`` the first batch is selected before iteration 0, by a
committee trained on the head of the initial pool while its rest is labeled, so the QM
workers never wait for the first committee either.
"""

from __future__ import annotations

from functools import partial, update_wrapper

from kedro.pipeline import Pipeline, node

from reactive_al.pipelines.active_learning.nodes import (
    campaign_report,
    finalize,
    learning_curve,
    summarize_iteration,
)
from reactive_al.pipelines.evaluation import create_pipeline as evaluation_pipeline
from reactive_al.pipelines.labeling.nodes import collect_labels, merge_labeled, submit_frames
from reactive_al.pipelines.labeling.pipeline import QM_PARAMS
from reactive_al.pipelines.selection import create_pipeline as selection_pipeline
from reactive_al.pipelines.selection.nodes import select_batch, select_next_batch
from reactive_al.pipelines.training import create_pipeline as training_pipeline
from reactive_al.pipelines.training.pipeline import pretraining as training_pretraining


def _at(iteration: int):
    summarize = partial(summarize_iteration, iteration=iteration)
    return update_wrapper(summarize, summarize_iteration)


def _collect(iteration: int, job: str, overlapped: list[str], summary_inputs) -> Pipeline:
    """Wait for ``job`` (after the ``overlapped`` outputs), merge its labels, summarize."""
    return Pipeline([
        node(collect_labels, [job, *overlapped], ["new_labels", "label_failures"],
             name="label_selected"),
        node(merge_labeled, ["labeled_set", "new_labels"], "next_labeled_set",
             name="merge_labeled"),
        node(_at(iteration), summary_inputs, ["summary", "figures"], name="summarize_iteration"),
    ])


def iteration_template(iteration: int, acquire: bool, pretrained: bool = False) -> Pipeline:
    """One AL iteration, un-namespaced: inputs ``labeled_set``, ``test_set``, ``md_seeds``.

    From the second iteration on, training also reads ``previous_committee`` (for warm starts);
    with ``pretrained``, every iteration reads ``pretrained_committee``. An acquiring iteration
    trains, explores and selects, starts labeling the batch (``submit_selected``), evaluates
    the committee while the QM runs, then waits for the labels (``label_selected``) and
    merges them.
    """
    training = training_pipeline(previous_committee=iteration > 0, pretrained=pretrained,
                                 iteration=iteration, last=not acquire)
    if not acquire:
        return training + evaluation_pipeline() + Pipeline([
            node(_at(iteration), {"metrics": "metrics",
                                  "evaluation_products": "evaluation_products",
                                  "committee": "committee", "labeled_set": "labeled_set"},
                 ["summary", "figures"], name="summarize_iteration"),
        ])
    return training + selection_pipeline() + Pipeline([
        node(submit_frames, ["selected", *QM_PARAMS], "label_job", name="submit_selected"),
    ]) + evaluation_pipeline(after="label_job") + _collect(
        iteration, "label_job", ["evaluation_products"],
        ["metrics", "evaluation_products", "committee", "labeled_set", "exploration_stats",
         "selection_stats", "selected", "label_failures"])


def first_batch_template(pretrained: bool = False) -> Pipeline:
    """The first batch of ``active_learning.early_first_batch``, un-namespaced.

    A committee trained on ``labeled_set`` (the initial pool's head, labeled first) explores,
    selects the first batch (``selected``) and starts labeling it (``label_job``, queued
    behind the rest of the initial pool), while that rest is labeled; iteration 0 collects
    it as its pending batch.
    """
    return training_pipeline(pretrained=pretrained) + selection_pipeline() + Pipeline([
        node(submit_frames, ["selected", *QM_PARAMS], "label_job", name="submit_selected"),
    ])


def lookahead_template(iteration: int, select_next: bool, pretrained: bool = False,
                       early: bool = False) -> Pipeline:
    """One acquiring iteration of the pipelined loop (``active_learning.lookahead``), un-namespaced.

    It collects ``pending_job`` (the batch ``pending``, selected by the previous committee
    and labeled since) into ``next_labeled_set``. Before that, while the batch runs, it
    trains the committee on ``labeled_set``, with ``select_next`` explores and selects the
    next batch away from the training set and the pending batch (``selected``), starts
    labeling it (``label_job``, queued behind the pending batch) and evaluates. Iteration 0
    makes its own ``pending``: the first batch, from the same candidates; with ``early`` it
    collects that of :func:`first_batch_template` instead.
    """
    training = training_pipeline(previous_committee=iteration > 0, pretrained=pretrained,
                                 iteration=iteration)
    first = Pipeline([
        node(select_batch, ["committee", "candidates", "labeled_set", "estimator",
                            "params:selection"], ["pending", "pending_selection_stats"],
             name="select_first_batch"),
        node(submit_frames, ["pending", *QM_PARAMS], "pending_job", name="submit_first_batch"),
    ]) if iteration == 0 and not early else Pipeline([])
    if not select_next:
        return training + evaluation_pipeline(after="pending_job") + _collect(
            iteration, "pending_job", ["evaluation_products"],
            {"metrics": "metrics", "evaluation_products": "evaluation_products",
             "committee": "committee", "labeled_set": "labeled_set",
             "selected": "pending", "label_failures": "label_failures"})
    explore = selection_pipeline().only_nodes("fit_estimator", "explore_candidates")
    return training + explore + first + Pipeline([
        node(select_next_batch, ["committee", "candidates", "labeled_set", "pending_job",
                                 "estimator", "params:selection"],
             ["selected", "selection_stats"], name="select_batch"),
        node(submit_frames, ["selected", *QM_PARAMS], "label_job", name="submit_selected"),
    ]) + evaluation_pipeline(after="label_job") + _collect(
        iteration, "pending_job", ["evaluation_products", "label_job"],
        ["metrics", "evaluation_products", "committee", "labeled_set", "exploration_stats",
         "selection_stats", "pending", "label_failures"])


def _parameters(pipe: Pipeline) -> set[str]:
    """The parameters ``pipe`` reads (``params:x`` → ``x``): shared by every namespace."""
    return {p.split(":", 1)[1] for p in pipe.inputs() if p.startswith("params:")}


def create_pipeline(n_iterations: int = 5, pretrain: bool = False, lookahead: bool = False,
                    early_first_batch: float | None = None, **kwargs) -> Pipeline:
    """``n_iterations`` namespaced iterations chained through ``labeled_set_{k}``.

    With ``pretrain`` (``training.pretrain`` set) the committee pre-trained on the cheap level
    before iteration 0 is where every iteration's training starts. With ``lookahead``
    (``active_learning.lookahead``) the acquiring iterations are pipelined one batch deep
    (:func:`lookahead_template`); with fewer than three iterations there is nothing to
    pipeline and the loop is the plain one. With ``early_first_batch`` as well
    (``active_learning.early_first_batch``) iteration 0's first batch comes from a committee
    trained on ``initial_head_set`` (namespace ``first_batch``).
    """
    if n_iterations < 1:
        raise ValueError("parameters_active_learning.yml: n_iterations must be >= 1")
    pipelined = lookahead and n_iterations > 2
    early = pipelined and bool(early_first_batch)
    iterations = []
    for k in range(n_iterations):
        last = k == n_iterations - 1
        piped = pipelined and not last
        template = (lookahead_template(k, select_next=k < n_iterations - 2, pretrained=pretrain,
                                       early=early)
                    if piped else iteration_template(k, acquire=not last, pretrained=pretrain))
        outputs = {} if last else {"next_labeled_set": f"labeled_set_{k + 1}"}
        before = f"iter_{k - 1:02d}" if k else "first_batch"
        pending = {"pending": f"{before}.selected", "pending_job": f"{before}.label_job"} \
            if piped and (k or early) else {}
        iterations.append(Pipeline(
            template,
            namespace=f"iter_{k:02d}",
            inputs={"labeled_set": f"labeled_set_{k}", "test_set": "test_set",
                    "reference_path": "reference_path",
                    **({"md_seeds": "md_seeds"} if "md_seeds" in template.inputs() else {}),
                    **pending,
                    **({"previous_committee": f"iter_{k - 1:02d}.committee"} if k else {}),
                    **({"pretrained_committee": "pretrained_committee"} if pretrain else {})},
            outputs=outputs,
            parameters=_parameters(template),
        ))
    ns_last = f"iter_{n_iterations - 1:02d}"
    wrap_up = Pipeline([
        node(learning_curve, [f"iter_{k:02d}.summary" for k in range(n_iterations)],
             ["learning_curve", "learning_curve_plot"], name="learning_curve"),
        node(finalize, [f"labeled_set_{n_iterations - 1}", f"{ns_last}.committee"],
             ["labeled_set", "committee"], name="publish_campaign_result"),
        node(update_wrapper(partial(campaign_report, n_iterations=n_iterations), campaign_report),
             ["learning_curve", "params:system"], "campaign_report", name="campaign_report"),
    ])
    pre = training_pretraining() if pretrain else Pipeline([])
    if early:
        first = first_batch_template(pretrain)
        pre += Pipeline(first, namespace="first_batch", inputs={
            "labeled_set": "initial_head_set", "md_seeds": "md_seeds",
            **({"pretrained_committee": "pretrained_committee"} if pretrain else {})},
            parameters=_parameters(first))
    return pre + sum(iterations, Pipeline([])) + wrap_up
