"""Uncertainty of candidate structures: calibrated estimator, gradient features, calibration.

The estimator and its method registry (estimator), gradient features (gradient_features) and
the calibration of raw uncertainties (calibration).

To add a method, write ``fn(estimator, frames, committee_scores) -> energy uncertainty`` and
decorate it with :func:`register_uncertainty`; ``uncertainty.method: <name>`` selects it.
"""

from reactive_al.uncertainty.calibration import (
    Calibrator,
    conformal_scale,
    coverage,
    gaussian_ml_scale,
)
from reactive_al.uncertainty.estimator import (
    CRITERIA,
    METHODS,
    UncertaintyConfig,
    UncertaintyEstimator,
    UncertaintyMethod,
    committee_uncertainty,
    register_uncertainty,
    split_by_history,
)
from reactive_al.uncertainty.gradient_features import (
    GradientFeatureMap,
    GradientFeatureUncertainty,
)

__all__ = ["CRITERIA", "METHODS", "Calibrator", "GradientFeatureMap",
           "GradientFeatureUncertainty", "UncertaintyConfig", "UncertaintyEstimator",
           "UncertaintyMethod", "committee_uncertainty", "conformal_scale", "coverage",
           "gaussian_ml_scale", "register_uncertainty", "split_by_history"]
