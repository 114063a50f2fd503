"""Scale-factor calibration: conformal coverage and the Gaussian ML scale."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reactive_al.uncertainty.calibration import (
    Calibrator,
    conformal_scale,
    coverage,
    gaussian_ml_scale,
)


def heteroscedastic(n: int, c: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    u = rng.uniform(0.01, 1.0, n)
    return rng.normal(0.0, c * u), u


@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.32])
def test_conformal_covers_held_out_half(alpha):
    errors, u = heteroscedastic(8000, c=2.5, seed=0)
    cal = Calibrator("conformal", alpha=alpha, units="eV").fit(errors[:4000], u[:4000])
    assert coverage(errors[4000:], cal(u[4000:])) == pytest.approx(1 - alpha, abs=0.03)
    assert coverage(errors[:4000], cal(u[:4000])) >= 1 - alpha


def test_gaussian_ml_scale_recovers_c():
    errors, u = heteroscedastic(8000, c=2.5, seed=1)
    cal = Calibrator("gaussian_ml").fit(errors[:4000], u[:4000])
    assert cal.scale == pytest.approx(2.5, rel=0.05)
    # a Gaussian with the right scale covers ±1σ ≈ 68 %
    assert coverage(errors[4000:], cal(u[4000:])) == pytest.approx(0.683, abs=0.03)


def test_conformal_rank_and_small_sample_fallback():
    u = np.ones(9)
    errors = np.arange(1, 10, dtype=float)
    # ⌈10·0.8⌉ = 8 → the 8th smallest score
    assert conformal_scale(errors, u, alpha=0.2) == 8.0
    # ⌈10·0.95⌉ = 10 > 9 → the largest score
    assert conformal_scale(errors, u, alpha=0.05) == 9.0


def test_round_trip_and_validation():
    cal = Calibrator("gaussian_ml", units="eV").fit(np.array([0.1, -0.2]), np.array([0.1, 0.1]))
    back = Calibrator.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert back == cal
    np.testing.assert_allclose(back(np.array([1.0, 2.0])), cal.scale * np.array([1.0, 2.0]))
    with pytest.raises(ValueError):
        gaussian_ml_scale(np.array([0.1]), np.array([0.0]))
    with pytest.raises(ValueError):
        Calibrator("nonsense").fit(np.array([0.1]), np.array([1.0]))
