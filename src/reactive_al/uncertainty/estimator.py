"""Uncertainty of candidate structures behind one interface, calibrated on held-out frames.

Methods: ``committee`` (query by committee: spread of the TorchANI ensemble), and the
ensemble-free ``gradient_features`` (GP posterior over sketched gradient features) and
``distance`` (distance to the nearest training feature) of
:mod:`reactive_al.uncertainty.gradient_features`; each is registered in :data:`METHODS` under its
``uncertainty.method`` YAML name (add one with :func:`register_uncertainty`).
Every method gives a per-structure energy uncertainty (eV/atom) and a per-atom force
uncertainty (eV/Å, committee); a single scale factor fitted on the committee's validation
split (conformal or Gaussian ML, :mod:`reactive_al.uncertainty.calibration`) gives them their units.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from ase import Atoms

from reactive_al.models import Committee
from reactive_al.uncertainty.calibration import Calibrator
from reactive_al.uncertainty.gradient_features import GradientFeatureUncertainty

log = logging.getLogger(__name__)

#: Scores by which candidates can be ranked, with their units.
CRITERIA = {"energy": "eV/atom", "force": "eV/Å"}


@dataclass(frozen=True)
class UncertaintyMethod:
    """A registered uncertainty: raw per-structure energy uncertainty, and its needs.

    ``energy(estimator, frames, committee_scores)`` returns the uncalibrated energy
    uncertainty per structure (eV/atom up to the calibration scale); ``committee_scores`` are
    the committee spreads of ``frames`` (already computed). ``needs_features``: the method
    uses the estimator's fitted gradient features ``estimator.gf``.
    """

    energy: Callable[[UncertaintyEstimator, list[Atoms], dict[str, np.ndarray]], np.ndarray]
    needs_features: bool = False


#: ``uncertainty.method`` name → method.
METHODS: dict[str, UncertaintyMethod] = {}


def register_uncertainty(name: str, needs_features: bool = False):
    """Decorator registering an energy-uncertainty function under ``name`` (see METHODS)."""

    def deco(fn):
        METHODS[name] = UncertaintyMethod(fn, needs_features)
        return fn

    return deco


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


@register_uncertainty("committee")
def _committee_energy(est: UncertaintyEstimator, frames: list[Atoms],
                      committee_scores: dict[str, np.ndarray]) -> np.ndarray:
    return committee_scores["energy"]


@register_uncertainty("gradient_features", needs_features=True)
def _gf_energy(est: UncertaintyEstimator, frames: list[Atoms],
               committee_scores: dict[str, np.ndarray]) -> np.ndarray:
    return est.gf.energy_uncertainty(frames)


@register_uncertainty("distance", needs_features=True)
def _distance_energy(est: UncertaintyEstimator, frames: list[Atoms],
                     committee_scores: dict[str, np.ndarray]) -> np.ndarray:
    return est.gf.distance_uncertainty(frames)


class UncertaintyEstimator:
    """Calibrated uncertainties and (when fitted) gradient features for a committee.

    Fitted once per committee: the gradient features (if the method, ``need_features`` or
    ``also`` needs them) and one calibration per energy method — ``cfg.method`` plus the
    methods in ``also``, scored side by side on one fit (evaluation compares the committee
    spread with the gradient-feature uncertainty this way).
    """

    def __init__(self, committee: Committee, labeled_set: list[Atoms], cfg: UncertaintyConfig,
                 need_features: bool = False, also: tuple[str, ...] = ()):
        for method in (cfg.method, *also):
            if method not in METHODS:
                raise ValueError(f"parameters_selection.yml: unknown uncertainty '{method}' "
                                 f"(choose from {list(METHODS)})")
        if cfg.criterion not in CRITERIA:
            raise ValueError(f"parameters_selection.yml: unknown criterion '{cfg.criterion}' "
                             f"(choose from {sorted(CRITERIA)})")
        self.committee, self.cfg = committee, cfg
        self.methods = tuple(dict.fromkeys((cfg.method, *also)))
        self.train, self.val = split_by_history(committee, labeled_set)
        self.gf: GradientFeatureUncertainty | None = None
        if need_features or any(METHODS[m].needs_features for m in self.methods):
            self.gf = GradientFeatureUncertainty(
                num_features=cfg.num_features, layers=cfg.layers, sigma_n=cfg.sigma_n,
                seed=cfg.seed).fit(committee, self.train)
        self.energy_cals, self.force_cal = self._calibrate()
        self.energy_cal = self.energy_cals[cfg.method]

    def _raw_energy(self, frames: list[Atoms], method: str,
                    committee_scores: dict[str, np.ndarray] | None = None) -> np.ndarray:
        if committee_scores is None:
            committee_scores = committee_uncertainty(self.committee, frames)
        return METHODS[method].energy(self, frames, committee_scores)

    def _calibrate(self) -> tuple[dict[str, Calibrator], Calibrator]:
        if not self.val:
            log.warning("committee has no validation split: uncertainties stay uncalibrated")
            return ({m: Calibrator(self.cfg.calibration, self.cfg.alpha, units="eV/atom")
                     for m in self.methods},
                    Calibrator(self.cfg.calibration, self.cfg.alpha, units="eV/Å"))
        p = self.committee.predict(self.val)
        n = np.array([len(a) for a in self.val])
        e_err = np.abs(p["energy"] - [a.get_potential_energy() for a in self.val]) / n
        f_err = np.concatenate([np.sqrt(((pf - a.get_forces()) ** 2).mean(1))
                                for pf, a in zip(p["forces"], self.val, strict=True)])
        f_unc = np.concatenate(p["forces_std"])
        spreads = {"energy": np.asarray(p["energy_std"]),
                   "force": np.array([s.max() for s in p["forces_std"]])}
        energy = {m: _fit(self.cfg, e_err, self._raw_energy(self.val, m, spreads), "eV/atom")
                  for m in self.methods}
        return energy, _fit(self.cfg, f_err, f_unc, "eV/Å")

    def scores(self, frames: list[Atoms], method: str | None = None) -> dict[str, np.ndarray]:
        """Calibrated ``energy`` (eV/atom) and largest atomic ``force`` (eV/Å) uncertainty.

        ``energy`` is that of ``method`` (default ``cfg.method``; one of :attr:`methods`).
        """
        if not frames:
            return {"energy": np.zeros(0), "force": np.zeros(0)}
        method = method or self.cfg.method
        committee = committee_uncertainty(self.committee, frames)
        return {"energy": self.energy_cals[method](self._raw_energy(frames, method, committee)),
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
