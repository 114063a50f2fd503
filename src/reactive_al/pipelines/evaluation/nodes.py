"""Nodes of the ``evaluation`` pipeline."""

from __future__ import annotations

from typing import Any

from ase import Atoms

from reactive_al.evaluation import (
    calibration_metrics,
    evaluate_committee,
    md_stability_metrics,
    neb_barrier_metrics,
    path_profile,
)
from reactive_al.models import Committee


def evaluate(
    committee: Committee, test_set: list[Atoms], labeled_set: list[Atoms],
    reference_path: list[Atoms], params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Test-set errors (overall, per subset), calibration, barrier errors and MD stability.

    ``labeled_set`` is the committee's training set: its validation split calibrates the
    uncertainties whose quality is measured here. ``reference_path`` is the QM climbing-image
    NEB: the committee's own climbing-image NEB between the same end points is compared with
    it (``neb/*``), and the committee is evaluated on its images (``path/qm_path_*``).
    ``params`` (``evaluation`` parameters) sets the model NEB, the MD-stability walkers and
    whether the gradient-feature uncertainty is scored next to the committee spread.
    """
    params = params or {}
    pred = committee.predict(test_set)
    metrics = evaluate_committee(committee, test_set, pred)
    gf = (params.get("calibration") or {}).get("gradient_features")
    metrics.update(calibration_metrics(committee, test_set, labeled_set, pred, gf)[0])
    profile = path_profile(committee, reference_path)
    if profile is not None:
        metrics.update(profile["metrics"])
        neb = params.get("neb", {})
        metrics.update(neb_barrier_metrics(committee, reference_path,
                                           fmax=float(neb.get("fmax", 0.05)),
                                           steps=int(neb.get("steps", 300))))
    stability = params.get("md_stability", {})
    if stability.get("n_walkers"):
        metrics.update(md_stability_metrics(committee, labeled_set, stability))
    return metrics
