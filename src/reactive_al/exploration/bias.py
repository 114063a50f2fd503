"""Uncertainty-biased molecular dynamics as an ASE calculator.

The walker moves on the effective energy E_eff = E − τ·r(t)·u(S): the model energy lowered where
the model is uncertain, so walkers are pushed towards extrapolative regions and rare events.
Bias forces come from autograd, F_b = w ⊙ ∂u/∂R, with per-element weights w (hydrogen 0 by
default: light atoms would otherwise pick up most of the push). r(t) rescales the bias so that
τ is roughly the ratio of bias to physical force magnitude:
r = √(Σ‖F_model‖²) / √(Σ‖F_b‖²) over a sliding window of the last ``window`` evaluations, and
r = 0 until the window is full (burn-in).

For a crystal the bias also has a stress, σ_b = (1/V) ∂(−τ·r·u)/∂ε under a symmetric strain of
positions and cell (autograd, as the model's stress), scaled by the same τ·r: NPT walkers then
move on E_eff in cell space as well, towards volumes and shapes where the model is uncertain.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from reactive_al.models import Committee
from reactive_al.uncertainty.gradient_features import GradientFeatureUncertainty

if TYPE_CHECKING:
    from reactive_al.uncertainty import UncertaintyEstimator


class UncertaintyBiasedCalculator(Calculator):
    """Committee-mean energy and forces plus an uncertainty bias (eV, eV/Å).

    ``uncertainty`` is a fitted :class:`GradientFeatureUncertainty`; ``energy_scale`` turns
    its σ into a calibrated per-atom energy uncertainty (eV/atom), which times the number of
    atoms is the structure's u(S) in eV. Results also carry ``energy_uncertainty`` (u, eV),
    ``bias_energy``, ``bias_scale`` (τ·r) and, from the committee, ``forces_std`` scaled by
    ``force_scale`` (calibrated atomic force uncertainty, eV/Å). For crystals also
    ``stress`` (model plus bias, Voigt, eV/Å³) and ``bias_stress`` (Voigt, eV/Å³).
    """

    implemented_properties = ["energy", "forces", "stress", "forces_std",
                              "energy_uncertainty", "bias_energy", "bias_scale", "bias_stress"]

    def __init__(
        self,
        committee: Committee,
        uncertainty: GradientFeatureUncertainty,
        tau: float = 0.1,
        element_weights: dict[str, float] | None = None,
        window: int = 100,
        energy_scale: float = 1.0,
        force_scale: float = 1.0,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.committee = committee
        self.uncertainty = uncertainty
        self.tau = float(tau)
        self.element_weights = {"H": 0.0} if element_weights is None else dict(element_weights)
        self.window = int(window)
        self.energy_scale = float(energy_scale)
        self.force_scale = float(force_scale)
        self._model_sq: deque[float] = deque(maxlen=self.window)
        self._bias_sq: deque[float] = deque(maxlen=self.window)

    def _weights(self, atoms) -> np.ndarray:  # noqa: ANN001
        return np.array([self.element_weights.get(s, 1.0)
                         for s in atoms.get_chemical_symbols()])[:, None]

    def scale(self) -> float:
        """Current τ·r(t): zero until the sliding window is full."""
        if len(self._model_sq) < self.window or sum(self._bias_sq) <= 0:
            return 0.0
        return self.tau * float(np.sqrt(sum(self._model_sq) / sum(self._bias_sq)))

    def evaluate_batch(self, frames: list) -> list[dict[str, Any]]:
        """Results of :meth:`calculate` for many structures (walkers) from one batched pass.

        The sliding window takes the structures in order, one evaluation each, as if they
        had been calculated one after the other.
        """
        from ase.stress import full_3x3_to_voigt_6_stress

        pred = self.committee.predict(frames)
        sigma, grads, strains = self.uncertainty.uncertainty_gradient_strain(frames)
        out = []
        for i, atoms in enumerate(frames):
            e_model, f_model = float(pred["energy"][i]), pred["forces"][i]
            n = len(atoms)
            u = self.energy_scale * float(sigma[i]) * n
            f_bias = self._weights(atoms) * (self.energy_scale * n * grads[i])
            self._model_sq.append(float((f_model ** 2).sum()))
            self._bias_sq.append(float((f_bias ** 2).sum()))
            s = self.scale()
            res = {
                "energy": e_model - s * u,
                "forces": f_model + s * f_bias,
                "forces_std": self.force_scale * pred["forces_std"][i],
                "energy_uncertainty": u,
                "bias_energy": -s * u,
                "bias_scale": s,
            }
            if strains[i] is not None:  # a crystal: model stress plus the bias stress
                bias_stress = -s * self.energy_scale * n * strains[i]
                res["bias_stress"] = full_3x3_to_voigt_6_stress(bias_stress)
                res["stress"] = full_3x3_to_voigt_6_stress(pred["stress"][i] + bias_stress)
            out.append(res)
        return out

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        """Fill energy/forces of E_eff and the uncertainty diagnostics."""
        super().calculate(atoms, properties, system_changes)
        self.results = self.evaluate_batch([self.atoms])[0]


def walker_calculator(
    committee: Committee, estimator: UncertaintyEstimator | None, bias: dict[str, Any],
    calibrated: bool = False,
) -> Calculator:
    """The calculator MD walkers run on: committee mean, or uncertainty-biased if enabled.

    With ``bias.enabled`` (or ``calibrated``, when walkers stop at a calibrated uncertainty)
    the ``estimator`` fitted for this committee supplies the calibration scales and, for the
    bias, the gradient features.
    """
    if not (bias.get("enabled") or calibrated):
        return committee.calculator()
    if estimator is None:
        raise ValueError("a biased or uncertainty-stopped walker needs the fitted estimator")
    force_scale = estimator.force_cal.scale
    if not bias.get("enabled"):
        return committee.calculator(force_scale=force_scale)
    if estimator.gf is None:
        raise ValueError("uncertainty-biased MD needs gradient features in the estimator")
    return UncertaintyBiasedCalculator(
        committee, estimator.gf, tau=bias["tau"], element_weights=bias.get("element_weights"),
        window=bias.get("window", 100), energy_scale=estimator.energy_cal.scale,
        force_scale=force_scale)
