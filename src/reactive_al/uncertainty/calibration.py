"""Calibration of uncertainties by a single scale factor fitted on a validation split.

Raw uncertainties (committee spreads, gradient-feature GP σ) are only proportional to the
error. One factor s maps them to calibrated values s·u, either by inductive conformal
prediction (|e| ≤ s·u holds for a fraction ≥ 1 − α of new exchangeable samples) or by the
Gaussian maximum-likelihood estimate under e ~ N(0, (s·u)²).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

Method = Literal["conformal", "gaussian_ml"]


def _validated(errors: np.ndarray, uncertainties: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    e = np.abs(np.asarray(errors, dtype=float)).ravel()
    u = np.asarray(uncertainties, dtype=float).ravel()
    if e.shape != u.shape:
        raise ValueError(f"errors {e.shape} and uncertainties {u.shape} differ in size")
    if e.size == 0:
        raise ValueError("need at least one validation sample")
    if not (np.all(np.isfinite(e)) and np.all(np.isfinite(u)) and np.all(u > 0)):
        raise ValueError("errors must be finite and uncertainties finite and positive")
    return e, u


def conformal_scale(errors: np.ndarray, uncertainties: np.ndarray, alpha: float = 0.05) -> float:
    """Inductive conformal scale: the ⌈(n+1)(1−α)⌉-th smallest score |e_i|/u_i.

    When that rank exceeds n (too few samples for the requested level) the largest score is
    used, which is the best the data can support.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    e, u = _validated(errors, uncertainties)
    scores = np.sort(e / u)
    n = scores.size
    rank = min(math.ceil((n + 1) * (1 - alpha)), n)
    return float(scores[rank - 1])


def gaussian_ml_scale(errors: np.ndarray, uncertainties: np.ndarray) -> float:
    """Maximum-likelihood scale under e_i ~ N(0, (s·u_i)²): s = √mean(e²/u²)."""
    e, u = _validated(errors, uncertainties)
    return float(np.sqrt(np.mean((e / u) ** 2)))


def coverage(errors: np.ndarray, calibrated_u: np.ndarray) -> float:
    """Fraction of samples with |error| ≤ calibrated uncertainty."""
    e = np.abs(np.asarray(errors, dtype=float)).ravel()
    u = np.asarray(calibrated_u, dtype=float).ravel()
    if e.shape != u.shape:
        raise ValueError(f"errors {e.shape} and uncertainties {u.shape} differ in size")
    return float(np.mean(e <= u)) if e.size else float("nan")


@dataclass
class Calibrator:
    """A fitted scale factor turning raw uncertainties into calibrated ones.

    ``method`` is ``"conformal"`` (coverage 1 − ``alpha``) or ``"gaussian_ml"``; ``units``
    names the unit of the calibrated values (e.g. ``"eV"``) for bookkeeping only.
    """

    method: Method = "conformal"
    alpha: float = 0.05
    scale: float = 1.0
    units: str = ""
    n_fit: int = 0

    def fit(self, errors: np.ndarray, uncertainties: np.ndarray) -> Calibrator:
        """Fit ``scale`` on validation errors and the matching raw uncertainties; returns self."""
        if self.method == "conformal":
            self.scale = conformal_scale(errors, uncertainties, self.alpha)
        elif self.method == "gaussian_ml":
            self.scale = gaussian_ml_scale(errors, uncertainties)
        else:
            raise ValueError(f"unknown calibration method {self.method!r}")
        self.n_fit = int(np.asarray(errors).size)
        return self

    def __call__(self, uncertainties: np.ndarray | float) -> np.ndarray:
        """Calibrated uncertainties ``scale · u``."""
        return self.scale * np.asarray(uncertainties, dtype=float)

    def to_dict(self) -> dict[str, Any]:
        """Plain-python form (JSON/YAML friendly)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibrator:
        """Rebuild from :meth:`to_dict` output."""
        return cls(**d)
