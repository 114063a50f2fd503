"""Nodes of the ``evaluation`` pipeline."""

from __future__ import annotations

from typing import Any

import numpy as np
from ase import Atoms

from reactive_al.evaluation import (
    calibration_metrics,
    evaluate_committee,
    evaluation_estimator,
    md_stability_metrics,
    neb_barrier_metrics,
    path_profile,
)
from reactive_al.models import Committee
from reactive_al.profiling import timed


def evaluate(
    committee: Committee, test_set: list[Atoms], labeled_set: list[Atoms],
    reference_path: list[Atoms], params: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Test-set errors (overall, per subset), calibration, barrier errors and MD stability.

    ``labeled_set`` is the committee's training set: its validation split calibrates the
    uncertainties whose quality is measured here (one estimator, fitted once). The QM
    ``reference_path`` (climbing-image NEB) is compared with the committee's own NEB between
    the same end points (``neb/*``) and the committee is evaluated on its images
    (``path/qm_path_*``). ``params`` (``evaluation`` parameters) sets the model NEB, the
    MD-stability walkers and whether the gradient-feature uncertainty is scored too.

    Returns (metrics, products): products are what the figures are drawn from — per-atom
    energies (eV/atom) and forces (eV/Å), reference vs prediction, the path profile and the
    calibration curves.
    """
    params = params or {}
    with timed("test_errors"):
        pred = committee.predict(test_set)
        metrics = evaluate_committee(committee, test_set, pred)
    gf = (params.get("calibration") or {}).get("gradient_features")
    with timed("calibration"):
        estimator = evaluation_estimator(committee, labeled_set, gf)
        calibration, curves = calibration_metrics(committee, test_set, labeled_set, pred,
                                                  estimator=estimator)
    metrics.update(calibration)
    profile = path_profile(committee, reference_path)
    if profile is not None:
        metrics.update(profile["metrics"])
        neb = params.get("neb", {})
        with timed("model_neb"):
            metrics.update(neb_barrier_metrics(committee, reference_path,
                                               fmax=float(neb.get("fmax", 0.05)),
                                               steps=int(neb.get("steps", 300))))
    stability = params.get("md_stability", {})
    if stability.get("n_walkers"):
        with timed("md_stability"):
            metrics.update(md_stability_metrics(committee, labeled_set, stability))
    n = np.array([len(a) for a in test_set])
    products = {
        "energy_ref": np.array([a.get_potential_energy() for a in test_set]) / n,
        "energy_pred": np.asarray(pred["energy"]) / n,
        "forces_ref": [a.get_forces() for a in test_set],
        "forces_pred": list(pred["forces"]),
        "profile": profile,
        "calibration_curves": curves,
    }
    return metrics, products


def evaluate_after(_before: Any, *args: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """:func:`evaluate` (``args`` are its arguments), run after the node making ``_before``.

    In an AL iteration ``_before`` is the batch being labeled (a
    :class:`~reactive_al.oracles.labeling.LabelJob`): the committee is evaluated while the QM
    runs.
    """
    return evaluate(*args)
