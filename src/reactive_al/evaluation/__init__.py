"""Evaluation of a committee against QM: errors, barriers, calibration, stability, figures.

Test errors per region (errors), barriers against the QM NEB (barriers), uncertainty
calibration (calibration), MD stability (stability), Ramachandran coverage (ramachandran),
figures (plots), the markdown report (report) and the comparison of query methods
(comparison).
"""

from reactive_al.evaluation.barriers import (
    EV_TO_KCAL_MOL,
    barrier_and_reaction_energy,
    barrier_error_kcal,
    committee_path_energies,
    interpolate_max,
    neb_barrier_metrics,
    path_coordinate,
    path_energies,
    path_profile,
)
from reactive_al.evaluation.calibration import (
    calibration_curve,
    calibration_metrics,
    evaluation_estimator,
    interval_coverage,
    miscalibration_area,
    spearman,
)
from reactive_al.evaluation.errors import error_metrics, evaluate_committee, forgetting_ratio
from reactive_al.evaluation.ramachandran import (
    alanine_dipeptide_phi_psi_indices,
    dihedral_phi_psi,
    phi_psi_of_frames,
    quadtree_coverage,
    quadtree_level_fractions,
)
from reactive_al.evaluation.stability import (
    md_stability,
    md_stability_metrics,
    steps_until_unphysical,
)

__all__ = ["EV_TO_KCAL_MOL", "barrier_and_reaction_energy", "barrier_error_kcal",
           "calibration_curve", "calibration_metrics", "committee_path_energies",
           "error_metrics", "evaluate_committee", "evaluation_estimator", "forgetting_ratio",
           "interpolate_max", "interval_coverage", "md_stability", "md_stability_metrics",
           "miscalibration_area", "neb_barrier_metrics", "path_coordinate", "path_energies",
           "path_profile", "spearman", "alanine_dipeptide_phi_psi_indices", "dihedral_phi_psi",
           "phi_psi_of_frames", "quadtree_coverage", "quadtree_level_fractions",
           "steps_until_unphysical"]
