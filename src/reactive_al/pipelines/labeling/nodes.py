"""Nodes of the ``labeling`` pipeline (also used inside each AL iteration)."""

from __future__ import annotations

from typing import Any

from ase import Atoms

from reactive_al.oracles.labeling import LabelingConfig, LabelJob, label_structures
from reactive_al.systems import load_system


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
