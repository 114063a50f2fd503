"""How well calibrated uncertainties describe the errors: rank correlation, coverage, area."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from ase import Atoms
from scipy.stats import norm, spearmanr

from reactive_al.models import Committee
from reactive_al.uncertainty import UncertaintyConfig, UncertaintyEstimator


def _errors_sigma(errors: np.ndarray, sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    e = np.abs(np.asarray(errors, dtype=float)).ravel()
    s = np.broadcast_to(np.asarray(sigma, dtype=float), np.shape(errors)).ravel()
    if e.size == 0:
        raise ValueError("no errors given")
    if np.any(s <= 0) or not np.all(np.isfinite(s)):
        raise ValueError("uncertainties must be finite and positive")
    return e, s


def spearman(u: Sequence[float] | np.ndarray, err: Sequence[float] | np.ndarray) -> float:
    """Spearman rank correlation of uncertainty vs error (NaN when undefined).

    Undefined means fewer than 3 points or a constant input: a rank correlation of a constant
    says nothing, and NaN keeps that visible in a metrics table.
    """
    u, err = np.asarray(u, dtype=float).ravel(), np.asarray(err, dtype=float).ravel()
    if u.shape != err.shape:
        raise ValueError(f"uncertainties and errors differ in length: {u.size} vs {err.size}")
    if u.size < 3 or np.ptp(u) == 0 or np.ptp(err) == 0:
        return float("nan")
    return float(spearmanr(u, err)[0])


def interval_coverage(
    errors: np.ndarray, sigma: np.ndarray | float, nominal: float = 0.95
) -> float:
    """Fraction of errors inside the two-sided Gaussian interval ±z·σ of level ``nominal``.

    z = Φ⁻¹((1 + nominal)/2), e.g. 1.96 for 95 %; a calibrated σ gives a fraction ≈ nominal.
    """
    if not 0 < nominal < 1:
        raise ValueError(f"nominal level must be in (0, 1), got {nominal}")
    e, s = _errors_sigma(errors, sigma)
    z = norm.ppf(0.5 + nominal / 2)
    return float(np.mean(e <= z * s))


def calibration_curve(
    errors: np.ndarray, sigma: np.ndarray | float, n_levels: int = 99
) -> tuple[np.ndarray, np.ndarray]:
    """Expected vs observed coverage of Gaussian ±z·σ intervals at ``n_levels`` levels in (0, 1).

    Levels are p_k = k/(n_levels + 1); observed is the fraction of |error| ≤ Φ⁻¹((1 + p)/2)·σ.
    A curve below the diagonal means overconfident σ (too small), above means underconfident.
    """
    if n_levels < 1:
        raise ValueError(f"need at least one level, got {n_levels}")
    e, s = _errors_sigma(errors, sigma)
    expected = np.arange(1, n_levels + 1) / (n_levels + 1)
    z = norm.ppf(0.5 + expected / 2)
    ratio = np.sort(e / s)
    observed = np.searchsorted(ratio, z, side="right") / ratio.size
    return expected, observed


def miscalibration_area(
    errors: np.ndarray, sigma: np.ndarray | float, n_levels: int = 99
) -> float:
    """Area between the observed-vs-expected coverage curve and the diagonal (0 = calibrated).

    Trapezoidal over the levels of :func:`calibration_curve` plus the end points (0, 0) and
    (1, 1), which every interval family passes through; the maximum possible area is 0.5.
    """
    expected, observed = calibration_curve(errors, sigma, n_levels)
    x = np.concatenate([[0.0], expected, [1.0]])
    gap = np.abs(np.concatenate([[0.0], observed - expected, [0.0]]))
    return float(np.trapezoid(gap, x))


def evaluation_estimator(
    committee: Committee, labeled_set: list[Atoms],
    gradient_features: dict[str, Any] | None = None,
) -> UncertaintyEstimator:
    """The one estimator evaluation scores: Gaussian-ML calibrated, fitted once per committee.

    Committee spreads always; with ``gradient_features`` (``enabled`` plus the
    ``num_features``, ``layers``, ``sigma_n`` of
    :class:`~reactive_al.uncertainty.UncertaintyConfig`) also the gradient-feature energy
    uncertainty of the same committee, on the same fit.
    """
    gf = dict(gradient_features or {})
    enabled = gf.pop("enabled", bool(gf))
    cfg = UncertaintyConfig(method="committee", calibration="gaussian_ml",
                            **(gf if enabled else {}))
    return UncertaintyEstimator(committee, labeled_set, cfg,
                                also=("gradient_features",) if enabled else ())


def calibration_metrics(
    committee: Committee, test_set: list[Atoms], labeled_set: list[Atoms],
    pred: dict[str, Any] | None = None, gradient_features: dict[str, Any] | None = None,
    estimator: UncertaintyEstimator | None = None,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """How well the committee's calibrated uncertainties describe its test errors.

    The spreads are turned into Gaussian σ by one scale fitted (maximum likelihood) on the
    committee's validation split; on the test set we report the Spearman correlation of σ with
    the error, the coverage of the nominal 95% interval and the miscalibration area, for
    per-atom force errors (RMS over x, y, z) and per-atom energy errors. Returns (metrics,
    calibration curves {"force": (expected, observed), "energy": ...}).

    ``estimator`` is :func:`evaluation_estimator` (built from ``gradient_features`` when not
    given); when it also holds the gradient-feature uncertainty, that is scored the same way
    (``gf_energy_*``), so the two uncertainties are compared on one model and one test set.
    """
    est = estimator if estimator is not None else evaluation_estimator(
        committee, labeled_set, gradient_features)
    p = pred if pred is not None else committee.predict(test_set)
    f_err = np.concatenate([np.sqrt(((pf - a.get_forces()) ** 2).mean(1))
                            for pf, a in zip(p["forces"], test_set, strict=True)])
    f_sig = est.force_cal(np.concatenate(p["forces_std"]))
    n = np.array([len(a) for a in test_set])
    e_err = np.abs(p["energy"] - [a.get_potential_energy() for a in test_set]) / n
    e_sig = est.energy_cals["committee"](np.asarray(p["energy_std"]))
    scored = [("force", f_err, f_sig), ("energy", e_err, e_sig)]
    out = {"calibration/force_scale": est.force_cal.scale,
           "calibration/energy_scale": est.energy_cals["committee"].scale}
    if "gradient_features" in est.methods:
        scored.append(("gf_energy", e_err,
                       est.scores(test_set, "gradient_features")["energy"]))
        out["calibration/gf_energy_scale"] = est.energy_cals["gradient_features"].scale
    curves = {}
    for name, err, sig in scored:
        ok = sig > 0
        out[f"calibration/{name}_spearman"] = spearman(sig[ok], err[ok])
        out[f"calibration/{name}_coverage_95"] = interval_coverage(err[ok], sig[ok], 0.95)
        out[f"calibration/{name}_miscalibration_area"] = miscalibration_area(err[ok], sig[ok])
        curves[name] = calibration_curve(err[ok], sig[ok])
    return out, curves
