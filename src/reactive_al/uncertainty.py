"""Uncertainty of candidate structures behind one interface, calibrated on held-out frames.

Methods: ``committee`` (query by committee: spread of the TorchANI ensemble), and the
ensemble-free ``gradient_features`` (GP posterior over sketched gradient features) and
``distance`` (distance to the nearest training feature) of :mod:`reactive_al.gradient_features`.
Every method gives a per-structure energy uncertainty (eV/atom) and a per-atom force
uncertainty (eV/Å, committee); a single scale factor fitted on the committee's validation
split (conformal or Gaussian ML, :mod:`reactive_al.calibration`) gives them their units.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from ase import Atoms

from reactive_al.calibration import Calibrator
from reactive_al.gradient_features import GradientFeatureUncertainty
from reactive_al.models import Committee

log = logging.getLogger(__name__)

#: Scores by which candidates can be ranked, with their units.
CRITERIA = {"energy": "eV/atom", "force": "eV/Å"}
METHODS = ("committee", "gradient_features", "distance")


@dataclass
class UncertaintyConfig:
    """Which uncertainty, how it is calibrated, and the gradient-feature settings."""

    method: str = "committee"
    criterion: str = "force"  # committee only: rank by force or energy spread
    num_features: int = 512
    layers: str = "all"
    sigma_n: float = 0.01
    calibration: str = "conformal"  # conformal | gaussian_ml
    alpha: float = 0.05
    seed: int = 0


def committee_uncertainty(committee: Committee, frames: list[Atoms]) -> dict[str, np.ndarray]:
    """Per-structure committee spreads.

    ``energy``: std of the members' energies / √N_atoms (eV/atom);
    ``force``: the largest per-atom force spread √(mean_m ‖F_m,i − F̄_i‖²) (eV/Å).
    """
    if not frames:
        return {"energy": np.zeros(0), "force": np.zeros(0)}
    p = committee.predict(frames)
    return {
        "energy": np.asarray(p["energy_std"]),
        "force": np.array([s.max() for s in p["forces_std"]]),
    }


def split_by_history(committee: Committee, labeled_set: list[Atoms]):
    """(training frames, validation frames) of the split the committee was trained with."""
    val_idx = set(committee.history.get("val_indices", []))
    if val_idx and max(val_idx) >= len(labeled_set):
        raise ValueError("the committee's validation indices do not fit this labeled set: "
                         "was it trained on another one?")
    train = [a for i, a in enumerate(labeled_set) if i not in val_idx]
    val = [a for i, a in enumerate(labeled_set) if i in val_idx]
    return train, val


def _fit(cfg: UncertaintyConfig, errors: np.ndarray, u: np.ndarray, units: str) -> Calibrator:
    cal = Calibrator(method=cfg.calibration, alpha=cfg.alpha, units=units)
    ok = np.isfinite(u) & (u > 0)
    if ok.sum() < 2:
        log.warning("too few validation frames to calibrate %s uncertainty: scale 1", units)
        return cal
    return cal.fit(errors[ok], u[ok])


class UncertaintyEstimator:
    """Calibrated uncertainties and (when fitted) gradient features for a committee."""

    def __init__(self, committee: Committee, labeled_set: list[Atoms], cfg: UncertaintyConfig,
                 need_features: bool = False):
        if cfg.method not in METHODS:
            raise ValueError(f"parameters_selection.yml: unknown uncertainty '{cfg.method}' "
                             f"(choose from {list(METHODS)})")
        if cfg.criterion not in CRITERIA:
            raise ValueError(f"parameters_selection.yml: unknown criterion '{cfg.criterion}' "
                             f"(choose from {sorted(CRITERIA)})")
        self.committee, self.cfg = committee, cfg
        self.train, self.val = split_by_history(committee, labeled_set)
        self.gf: GradientFeatureUncertainty | None = None
        if cfg.method != "committee" or need_features:
            self.gf = GradientFeatureUncertainty(
                num_features=cfg.num_features, layers=cfg.layers, sigma_n=cfg.sigma_n,
                seed=cfg.seed).fit(committee, self.train)
        self.energy_cal, self.force_cal = self._calibrate()

    def _raw_energy(self, frames: list[Atoms],
                    committee_scores: dict[str, np.ndarray] | None = None) -> np.ndarray:
        if self.cfg.method == "committee":
            if committee_scores is None:
                committee_scores = committee_uncertainty(self.committee, frames)
            return committee_scores["energy"]
        if self.cfg.method == "gradient_features":
            return self.gf.energy_uncertainty(frames)
        return self.gf.distance_uncertainty(frames)

    def _calibrate(self) -> tuple[Calibrator, Calibrator]:
        if not self.val:
            log.warning("committee has no validation split: uncertainties stay uncalibrated")
            return (Calibrator(self.cfg.calibration, self.cfg.alpha, units="eV/atom"),
                    Calibrator(self.cfg.calibration, self.cfg.alpha, units="eV/Å"))
        p = self.committee.predict(self.val)
        n = np.array([len(a) for a in self.val])
        e_err = np.abs(p["energy"] - [a.get_potential_energy() for a in self.val]) / n
        f_err = np.concatenate([np.sqrt(((pf - a.get_forces()) ** 2).mean(1))
                                for pf, a in zip(p["forces"], self.val, strict=True)])
        f_unc = np.concatenate(p["forces_std"])
        return (_fit(self.cfg, e_err, self._raw_energy(self.val), "eV/atom"),
                _fit(self.cfg, f_err, f_unc, "eV/Å"))

    def scores(self, frames: list[Atoms]) -> dict[str, np.ndarray]:
        """Calibrated ``energy`` (eV/atom) and largest atomic ``force`` (eV/Å) uncertainty."""
        if not frames:
            return {"energy": np.zeros(0), "force": np.zeros(0)}
        committee = committee_uncertainty(self.committee, frames)
        return {"energy": self.energy_cal(self._raw_energy(frames, committee)),
                "force": self.force_cal(committee["force"])}

    def ranking(self, scores: dict[str, np.ndarray]) -> np.ndarray:
        """The score candidates are ranked by, picked from :meth:`scores`.

        Energy for the gradient-feature methods, else the configured criterion.
        """
        return scores["energy"] if self.cfg.method != "committee" else scores[self.cfg.criterion]

    def features(self, frames: list[Atoms]) -> np.ndarray:
        """Normalised gradient features (requires ``need_features`` or a GF method)."""
        if self.gf is None:
            raise RuntimeError("gradient features were not fitted for this estimator")
        return self.gf.features(frames)

    def summary(self) -> dict[str, Any]:
        """Calibration factors and settings, for MLflow."""
        return {"uncertainty": self.cfg.method, "calibration": self.cfg.calibration,
                "energy_calibration_scale": self.energy_cal.scale,
                "force_calibration_scale": self.force_cal.scale,
                "n_calibration_frames": len(self.val)}
