"""Nodes of the ``labeling`` pipeline (also used inside each AL iteration)."""

from __future__ import annotations

from typing import Any

from ase import Atoms

from reactive_al.oracles.labeling import LabelingConfig, label_structures
from reactive_al.systems import load_system


def label_frames(
    frames: list[Atoms], system: str, systems: dict[str, Any], labeling: dict[str, Any]
) -> tuple[list[Atoms], list[dict[str, Any]]]:
    """Label ``frames`` at the system's level of theory; return (labeled, failure records)."""
    rs = load_system(system, systems)
    cfg = LabelingConfig(charge=rs.charge, multiplicity=rs.multiplicity, level=rs.level,
                         **labeling)
    return label_structures(frames, cfg)


def merge_labeled(labeled_set: list[Atoms], new_labels: list[Atoms]) -> list[Atoms]:
    """The next training set: everything labeled so far plus the new batch."""
    return list(labeled_set) + list(new_labels)
