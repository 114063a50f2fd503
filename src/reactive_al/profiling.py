"""Wall-time records of a run: every Kedro node, and named stages inside long nodes.

Dataset loads and saves (which Kedro does before and after a node runs) are recorded as
stages ``load:<dataset>`` / ``save:<dataset>`` of the node that reads or writes them.

Off unless ``$REACTIVE_AL_PROFILE`` names a file; then every record is appended to it as one
JSON line ``{"node", "stage", "seconds", "start", "pid"}`` (seconds of wall time, ``start``
in seconds since the epoch). ``benchmarks/campaign_profile.py`` sets it and sums the records
(:func:`summarize`).
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

ENV = "REACTIVE_AL_PROFILE"
#: the node running in this process (stages inside it are recorded under its name)
_current: dict[str, object] = {"node": None, "start": 0.0}


def enabled() -> bool:
    """True if ``$REACTIVE_AL_PROFILE`` is set."""
    return bool(os.environ.get(ENV))


def record(stage: str, seconds: float, start: float, node: str | None = None) -> None:
    """Append one record (``seconds`` of wall time from ``start``, epoch seconds)."""
    path = os.environ.get(ENV)
    if not path:
        return
    line = json.dumps({"node": node if node is not None else _current["node"], "stage": stage,
                       "seconds": round(seconds, 4), "start": round(start, 3),
                       "pid": os.getpid()})
    with open(path, "a") as fh:
        fh.write(line + "\n")


def current_node() -> str | None:
    """The Kedro node running in this process (None between nodes)."""
    return _current["node"]  # type: ignore[return-value]


def node_started(name: str) -> None:
    """Mark the start of Kedro node ``name``."""
    _current.update(node=name, start=time.time())


def node_finished(name: str) -> None:
    """Record the wall time of Kedro node ``name`` (stage ``node``)."""
    start = float(_current["start"]) if _current["node"] == name else time.time()
    record("node", time.time() - start, start, node=name)
    _current.update(node=None, start=0.0)


_io: dict[str, float] = {}


def io_started(dataset: str) -> None:
    """Mark the start of a dataset load or save (Kedro does them outside the node's run)."""
    if enabled():
        _io[dataset] = time.time()


def io_finished(dataset: str, op: str, node: str) -> None:
    """Record a dataset ``op`` (``load`` / ``save``) of ``node`` as stage ``<op>:<dataset>``."""
    start = _io.pop(dataset, None)
    if start is not None:
        record(f"{op}:{dataset}", time.time() - start, start, node=node)


@contextmanager
def timed(stage: str) -> Iterator[None]:
    """Record the wall time of the block as ``stage`` of the running node."""
    if not enabled():
        yield
        return
    start = time.time()
    try:
        yield
    finally:
        record(stage, time.time() - start, start)


#: node name (without its iter_NN namespace) → stage of the profile
STAGES = {
    "qm_reference_path": "one_off", "label_test_pool": "one_off",
    "build_training_pools": "structures", "build_test_pool": "structures",
    "describe_test_pool": "structures",
    "label_initial_pool": "qm_labeling", "train_committee": "training",
    "warm_up_training": "training",
    "explore_candidates": "exploration", "fit_estimator": "selection",
    "select_batch": "selection", "select_first_batch": "selection",
    "evaluate_committee": "evaluation",
    "merge_labeled": "structures", "summarize_iteration": "figures_mlflow",
    "learning_curve": "figures_mlflow", "campaign_report": "figures_mlflow",
    "publish_campaign_result": "figures_mlflow",
}
#: nodes that start a batch labeled in the background and wait for it: the batch's own record
#: (stage ``qm_batch``) is its QM time; the driver's time in these nodes is waiting for the QM
#: (``label_selected`` and ``label_initial_pool`` labeled in the foreground before the overlap
#: was built; ``label_initial_head`` waits for the head of ``active_learning.early_first_batch``)
QM_DRIVER = {"submit_selected", "submit_first_batch", "label_selected", "submit_initial_pool",
             "label_initial_pool", "label_initial_head"}


def _union(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Disjoint intervals covering ``intervals`` (start, end in s)."""
    out: list[tuple[float, float]] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _overlap(a: tuple[float, float], spans: list[tuple[float, float]]) -> float:
    """Seconds of interval ``a`` inside the disjoint ``spans``."""
    return sum(max(0.0, min(a[1], b) - max(a[0], s)) for s, b in spans)


def summarize(records: list[dict], process_wall: float) -> dict:
    """Sum profile records into stages (total and per iteration) and the QM fraction.

    QM labeling counts the initial pool's labeling and every batch's own wall time (from its
    start to its last label, while the driver evaluates meanwhile), the time two batches
    shared the workers once (``active_learning.lookahead``); ``overlapped_with_qm_s``
    is the driver's node time spent while a batch ran, so the stages add up to the campaign's
    wall time plus that overlap. The QM fraction is the part of the campaign's wall time in
    which QM calculations were under way.
    """
    totals: dict[str, float] = defaultdict(float)
    per_iter: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    inner: dict[str, float] = defaultdict(float)
    in_nodes = waiting = 0.0
    qm_spans: list[tuple[float, float]] = []
    driver: list[tuple[str, tuple[float, float]]] = []
    background = any(r["stage"] == "qm_batch" for r in records)
    for r in records:
        node = r["node"] or ""
        ns, _, base = node.rpartition(".")
        span = (r["start"], r["start"] + r["seconds"])
        it = int(ns[5:]) if ns.startswith("iter_") else None
        if r["stage"].startswith(("load:", "save:")):
            in_nodes += r["seconds"]  # outside the node's own time, but not Kedro's overhead
            totals["dataset_io"] += r["seconds"]
            if it is not None:
                per_iter[it]["dataset_io"] += r["seconds"]
            op, _, dataset = r["stage"].partition(":")
            inner[f"{op}/{dataset.rpartition('.')[2]}"] += r["seconds"]  # over iterations
            driver.append(("dataset_io", span))
            continue
        if r["stage"] == "qm_batch":
            totals["qm_labeling"] += r["seconds"]
            qm_spans.append(span)
            if it is not None:
                per_iter[it]["qm_labeling"] += r["seconds"]
            continue
        if r["stage"] != "node":
            inner[f"{base}/{r['stage']}"] += r["seconds"]
            continue
        in_nodes += r["seconds"]
        if base in QM_DRIVER and not background:
            stage = "qm_labeling"  # a profile of the code that labeled in the foreground
        elif base in QM_DRIVER:
            waiting += r["seconds"]
            continue
        else:
            stage = STAGES.get(base, "other")
        totals[stage] += r["seconds"]
        if stage == "qm_labeling":
            qm_spans.append(span)
        elif stage != "one_off":
            driver.append((stage, span))
        if it is not None:
            per_iter[it][stage] += r["seconds"]
    one_off = totals.pop("one_off", 0.0)
    totals["kedro_overhead"] = max(0.0, process_wall - in_nodes)
    campaign = process_wall - one_off
    qm = _union(qm_spans)
    qm_wall = sum(b - a for a, b in qm)
    if qm:
        totals["qm_labeling"] = qm_wall
    overlapped: dict[str, float] = defaultdict(float)
    for stage, span in driver:
        overlapped[stage] += _overlap(span, qm)
    return {
        "process_wall_time_s": round(process_wall, 1),
        "one_off_s": round(one_off, 1),
        "campaign_wall_time_s": round(campaign, 1),
        "stages_s": {k: round(v, 1) for k, v in sorted(totals.items())},
        "overlapped_with_qm_s": {k: round(v, 1) for k, v in sorted(overlapped.items())
                                 if v >= 0.05},
        "driver_waiting_for_qm_s": round(waiting, 1),
        "inside_nodes_s": {k: round(v, 1) for k, v in sorted(inner.items()) if v >= 0.05},
        "qm_wall_time_s": round(qm_wall, 1),
        "qm_fraction": round(qm_wall / campaign, 3) if campaign else None,
        "per_iteration_s": [{"iteration": k, **{s: round(v, 2) for s, v in sorted(d.items())}}
                            for k, d in sorted(per_iter.items())],
    }
