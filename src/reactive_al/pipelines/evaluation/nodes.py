"""Nodes of the ``evaluation`` pipeline."""

from __future__ import annotations

from typing import Any

from ase import Atoms

from reactive_al.evaluation import calibration_metrics, evaluate_committee, path_profile
from reactive_al.models import Committee


def evaluate(
    committee: Committee, test_set: list[Atoms], labeled_set: list[Atoms]
) -> dict[str, Any]:
    """Test-set errors (overall, per subset), calibration and the IDPP-path barrier error.

    ``labeled_set`` is the committee's training set: its validation split calibrates the
    uncertainties whose quality is measured here.
    """
    pred = committee.predict(test_set)
    metrics = evaluate_committee(committee, test_set, pred)
    metrics.update(calibration_metrics(committee, test_set, labeled_set, pred)[0])
    profile = path_profile(committee, test_set)
    if profile is not None:
        metrics.update(profile["metrics"])
    return metrics
