"""Nodes of the ``evaluation`` pipeline."""

from __future__ import annotations

from typing import Any

from ase import Atoms

from reactive_al.evaluation import evaluate_committee
from reactive_al.models import Committee


def evaluate(committee: Committee, test_set: list[Atoms]) -> dict[str, Any]:
    """Energy/force errors of the committee on the fixed test set, per subset too."""
    return evaluate_committee(committee, test_set)
