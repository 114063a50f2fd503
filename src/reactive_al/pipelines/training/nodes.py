"""Nodes of the ``training`` pipeline."""

from __future__ import annotations

from typing import Any

from ase import Atoms

from reactive_al.models import Committee, CommitteeSpec, TrainingConfig, train_committee
from reactive_al.systems import load_system


def train(
    labeled_set: list[Atoms],
    system: str,
    systems: dict[str, Any],
    training: dict[str, Any],
    previous_committee: Committee | None = None,
) -> Committee:
    """Train a committee for the system's elements and level of theory on ``labeled_set``.

    With ``training.fit.mode: warm_start`` and a ``previous_committee`` (the AL iteration
    before), the members continue from its weights; otherwise they train from scratch.
    """
    rs = load_system(system, systems)
    spec = CommitteeSpec(symbols=rs.symbols, lot=rs.level.name, **training["model"])
    return train_committee(labeled_set, spec, TrainingConfig(**training["fit"]),
                           previous=previous_committee)
