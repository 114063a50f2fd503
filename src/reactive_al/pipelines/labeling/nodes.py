"""Nodes of the ``labeling`` pipeline (also used inside each AL iteration)."""

from __future__ import annotations

import logging
from typing import Any

from ase import Atoms

from reactive_al.oracles.labeling import LabelingConfig, LabelJob, label_structures
from reactive_al.systems import load_system

log = logging.getLogger(__name__)


def _config(system: str, systems: dict[str, Any], labeling: dict[str, Any]) -> LabelingConfig:
    """The labeling settings of ``system`` (charge, multiplicity, level) and ``labeling``."""
    rs = load_system(system, systems)
    return LabelingConfig(charge=rs.charge, multiplicity=rs.multiplicity, level=rs.level,
                          **labeling)


def label_frames(
    frames: list[Atoms], system: str, systems: dict[str, Any], labeling: dict[str, Any]
) -> tuple[list[Atoms], list[dict[str, Any]]]:
    """Label ``frames`` at the system's level of theory; return (labeled, failure records)."""
    return label_structures(frames, _config(system, systems, labeling))


def submit_frames(
    frames: list[Atoms], system: str, systems: dict[str, Any], labeling: dict[str, Any]
) -> LabelJob:
    """Start labeling ``frames`` in the background and return at once (:class:`LabelJob`).

    The nodes that run until :func:`collect_labels` (the AL iteration's evaluation) overlap
    with the QM calculations.
    """
    return LabelJob(frames, _config(system, systems, labeling))


def collect_labels(job: LabelJob, *overlapped: Any) -> tuple[list[Atoms], list[dict[str, Any]]]:
    """Wait for ``job``; return (labeled, failure records) as :func:`label_frames` does.

    ``overlapped`` are the outputs of the work done while the batch ran: they only order the
    pipeline (this node runs after the nodes producing them) and are not used.
    """
    return job.result()


def merge_labeled(labeled_set: list[Atoms], new_labels: list[Atoms]) -> list[Atoms]:
    """The next training set: everything labeled so far plus the new batch."""
    return list(labeled_set) + list(new_labels)


def initial_split(n_frames: int, early_first_batch: float | None) -> tuple[list[int], list[int]]:
    """Pool indices of the initial pool's head and tail (``active_learning.early_first_batch``).

    The head is ``round(early_first_batch × n_frames)`` frames (at least one) spread evenly
    over the pool, which lists each well's structures together, so the head has some of
    every kind; the tail is the rest. Without ``early_first_batch`` the head is the pool.
    """
    if not early_first_batch or n_frames < 2:
        return list(range(n_frames)), []
    n_head = min(n_frames - 1, max(1, round(early_first_batch * n_frames)))
    head = {i * n_frames // n_head for i in range(n_head)}
    return sorted(head), [i for i in range(n_frames) if i not in head]


def submit_initial_pool(
    frames: list[Atoms], active_learning: dict[str, Any], system: str,
    systems: dict[str, Any], labeling: dict[str, Any],
) -> tuple[LabelJob, LabelJob]:
    """Start labeling the initial pool in two jobs: its head, then the rest.

    The head and the rest are those of :func:`initial_split`; the Dask workers finish the
    head first. Returns (head job, tail job) at once.
    """
    head, tail = initial_split(len(frames), active_learning.get("early_first_batch"))
    return (submit_frames([frames[i] for i in head], system, systems, labeling),
            submit_frames([frames[i] for i in tail], system, systems, labeling))


def collect_initial_pool(
    head_job: LabelJob, tail_job: LabelJob, active_learning: dict[str, Any], *overlapped: Any
) -> tuple[list[Atoms], list[dict[str, Any]]]:
    """Wait for both jobs of :func:`submit_initial_pool`; (labels, failure records).

    The labels are in pool order and the failure records carry their pool ``index``, as
    :func:`label_frames` of the whole pool returns them. ``overlapped`` only orders the
    pipeline.
    """
    head, tail = initial_split(len(head_job.frames) + len(tail_job.frames),
                               active_learning.get("early_first_batch"))
    labeled: dict[int, Atoms] = {}
    failures: list[dict[str, Any]] = []
    for job, where in ((head_job, head), (tail_job, tail)):
        done, failed = job.result()
        lost = {f["index"] for f in failed}
        labeled.update(zip([where[i] for i in range(len(where)) if i not in lost], done,
                           strict=True))
        failures += [{**f, "index": where[f["index"]]} for f in failed]
    return [labeled[i] for i in sorted(labeled)], sorted(failures, key=lambda f: f["index"])


def collect_initial_head(
    head_job: LabelJob, tail_job: LabelJob, active_learning: dict[str, Any], *overlapped: Any
) -> list[Atoms]:
    """The head's labels, which the first batch's committee is trained on.

    See ``active_learning.early_first_batch``. If fewer than half of them (or than two) came
    back, it waits for the rest of the pool and returns all its labels instead.
    """
    labeled, failures = head_job.result()
    if len(labeled) >= max(2, (len(head_job.frames) + 1) // 2):
        return labeled
    log.warning("only %d of the initial pool's first %d labels came back; the first batch's "
                "committee waits for the rest of the pool", len(labeled), len(head_job.frames))
    return collect_initial_pool(head_job, tail_job, active_learning)[0]
