"""Exploration with the current model: MD walkers (md), the bias (bias), samplers (samplers).

Model-free structure generators (displacements, normal-mode-like samples, IDPP images) for the
pools and test sets are in :mod:`reactive_al.exploration.structures`.
"""

from reactive_al.exploration.md import (
    WalkerConfig,
    explore,
    frame_is_broken,
    run_walker,
    start_langevin,
)
from reactive_al.exploration.samplers import (
    SAMPLERS,
    ExplorationContext,
    check_samplers,
    explore_candidates,
    finite_difference_hessian,
    model_normal_mode_samples,
    neb_candidates,
    register_sampler,
)

__all__ = ["SAMPLERS", "ExplorationContext", "WalkerConfig", "check_samplers", "explore",
           "explore_candidates", "finite_difference_hessian", "frame_is_broken",
           "model_normal_mode_samples", "neb_candidates", "register_sampler", "run_walker",
           "start_langevin"]
