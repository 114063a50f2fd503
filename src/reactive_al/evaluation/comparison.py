"""Comparison of query methods from their campaigns' results (plain data, no Kedro).

The driver (:mod:`reactive_al.benchmark`) loads each campaign's learning curve (or, for an
unfinished campaign, its evaluated iterations) and explored frames through the Kedro catalog
and hands them here: :func:`method_result` summarises one method, :func:`compare` sets every
method against the reference method (labels needed to reach its final error),
:func:`markdown_summary` prints the table and :func:`learning_curve_panels` feeds
:func:`reactive_al.evaluation.plots.learning_curves`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from ase import Atoms

#: Columns of a campaign's learning curve copied into the benchmark result.
CURVE_COLUMNS = {
    "n_labels": "n_labels",
    "test/force_mae_ev_per_a": "force_mae_ev_per_a",
    "test/force_rmse_ev_per_a": "force_rmse_ev_per_a",
    "test/energy_mae_mev_per_atom": "energy_mae_mev_per_atom",
    "test/path/force_mae_ev_per_a": "path_force_mae_ev_per_a",
    "test/neb/barrier_error_kcal_mol": "neb_barrier_error_kcal_mol",
    "test/neb/model_barrier_kcal_mol": "neb_model_barrier_kcal_mol",
    "test/neb/reaction_energy_error_kcal_mol": "reaction_energy_error_kcal_mol",
    "test/path/qm_path_barrier_error_kcal_mol": "qm_path_barrier_error_kcal_mol",
    "test/calibration/force_spearman": "force_spearman",
    "test/calibration/force_coverage_95": "force_coverage_95",
    "test/calibration/force_miscalibration_area": "force_miscalibration_area",
    "test/calibration/energy_spearman": "committee_energy_spearman",
    "test/calibration/gf_energy_spearman": "gf_energy_spearman",
    "test/calibration/gf_energy_coverage_95": "gf_energy_coverage_95",
    "test/spearman_force_uncertainty_error": "committee_spread_spearman",
    "test/wells_forgetting_ratio": "wells_forgetting_ratio",
    "test/md_stability/median_steps": "md_stability_median_steps",
}

#: Panels of the comparison's learning-curve figure: curve column → y-axis label.
CURVE_PANELS = {
    "force_mae_ev_per_a": "test force MAE (eV/Å)",
    "path_force_mae_ev_per_a": "path force MAE (eV/Å)",
    "neb_barrier_error_kcal_mol": "NEB barrier error (kcal/mol)",
}


def labels_to_reach(curve: pd.DataFrame, target: float, column: str = "force_mae_ev_per_a"
                    ) -> float | None:
    """Labels at which a learning curve first reaches ``target`` (linear interpolation).

    None if it never does. The curve's first point counts: a method already at the target
    needs no more labels than it started with.
    """
    x = curve["n_labels"].to_numpy(float)
    y = curve[column].to_numpy(float)
    if y[0] <= target:
        return float(x[0])
    for i in range(1, len(y)):
        if y[i] <= target:
            frac = (y[i - 1] - target) / (y[i - 1] - y[i])
            return float(x[i - 1] + frac * (x[i] - x[i - 1]))
    return None


def iteration_row(iteration: int, metrics: Mapping[str, Any], n_labels: int) -> dict[str, Any]:
    """A learning-curve row of an iteration without summary: its test metrics and labels."""
    return {"iteration": iteration, "n_labels": n_labels,
            **{f"test/{key}": v for key, v in metrics.items()}}


def phi_psi(frames: Sequence[Atoms]) -> np.ndarray:
    """Alanine dipeptide's (φ, ψ) in degrees for every frame, ``[n, 2]``."""
    from reactive_al.evaluation.ramachandran import (
        alanine_dipeptide_phi_psi_indices,
        phi_psi_of_frames,
    )

    if not frames:
        return np.zeros((0, 2))
    phi, psi = alanine_dipeptide_phi_psi_indices(frames[0])
    return phi_psi_of_frames(list(frames), phi, psi)


def method_result(table: pd.DataFrame, complete: bool, explored: Sequence[Atoms],
                  ramachandran: bool = False) -> dict[str, Any]:
    """One method's entry of the comparison.

    ``table`` is the campaign's learning curve (columns as written by the campaign, see
    :data:`CURVE_COLUMNS`), ``complete`` whether the campaign finished, ``explored`` the
    candidate frames its exploration produced; with ``ramachandran`` (a system's
    ``reporting.ramachandran``) their quadtree coverage of the φ/ψ plane is added.
    """
    cols = {k: v for k, v in CURVE_COLUMNS.items() if k in table}
    curve = table[list(cols)].rename(columns=cols)
    last = curve.iloc[-1]
    out: dict[str, Any] = {
        "complete": complete,
        "iterations_evaluated": len(curve),
        "labels_total": int(last["n_labels"]),
        "labels_initial": int(curve["n_labels"].iloc[0]),
        "labels_acquired": int(last["n_labels"] - curve["n_labels"].iloc[0]),
        "final": {k: (None if pd.isna(v) else float(v)) for k, v in last.items()},
        "curve": {k: [None if pd.isna(v) else float(v) for v in curve[k]] for k in curve},
    }
    out["n_explored_frames"] = len(explored)
    if ramachandran and explored:
        from reactive_al.evaluation.ramachandran import quadtree_coverage

        out["ramachandran_coverage"] = quadtree_coverage(phi_psi(explored))
    return out


def compare(system: str, results: dict[str, dict[str, Any]], timing: Mapping[str, Any],
            reference_path: Mapping[str, Any] | None = None,
            reference_method: str = "random") -> dict[str, Any]:
    """The comparison: every method's result set against ``reference_method``'s curve.

    Adds to each method (in place) the labels it needs to reach the reference's final force
    MAE (all test frames and the path subset), the fraction of the reference's labels that
    is, and the labels to a NEB barrier within 1 kcal/mol of the QM one.
    """
    out: dict[str, Any] = {
        "system": system,
        "methods": results,
        "shared_wall_time_s": timing.get("shared"),
        "parallel_campaigns": timing.get("parallel_campaigns", 1),
        "reference_path": dict(reference_path) if reference_path is not None else None,
    }
    ref = results.get(reference_method)
    if ref is not None:
        out["reference_method"] = reference_method
        out["reference_final_force_mae_ev_per_a"] = ref["final"]["force_mae_ev_per_a"]
        out["reference_final_path_force_mae_ev_per_a"] = ref["final"].get(
            "path_force_mae_ev_per_a")
    for res in results.values():
        curve = pd.DataFrame(res["curve"])
        if ref is not None:
            need = labels_to_reach(curve, out["reference_final_force_mae_ev_per_a"])
            res["labels_to_reach_reference_final"] = need
            res["label_fraction_of_reference"] = (
                None if need is None else need / ref["labels_total"])
            acquired = None if need is None else need - res["labels_initial"]
            res["acquired_fraction_of_reference"] = (
                None if acquired is None or ref["labels_acquired"] == 0
                else max(acquired, 0.0) / ref["labels_acquired"])
            # the same count where the reaction happens: the path subset of the test set
            path_target = out["reference_final_path_force_mae_ev_per_a"]
            res["labels_to_reach_reference_final_path"] = (
                labels_to_reach(curve, path_target, "path_force_mae_ev_per_a")
                if path_target is not None and "path_force_mae_ev_per_a" in curve else None)
        if "neb_barrier_error_kcal_mol" in curve:  # systems with a reaction path only
            curve = curve.dropna(subset=["neb_barrier_error_kcal_mol"])
            curve["abs_barrier_error"] = curve["neb_barrier_error_kcal_mol"].abs()
            res["labels_to_barrier_within_1_kcal_mol"] = (
                labels_to_reach(curve, 1.0, "abs_barrier_error") if len(curve) else None)
    return out


def markdown_summary(out: dict[str, Any]) -> str:
    """A short markdown table of a comparison (final iteration of every method)."""

    def num(v: Any, fmt: str) -> str:
        return "–" if v is None else format(v, fmt)

    lines = [f"# Query methods on {out['system']}", "",
             "| method | labels | force MAE (eV/Å) | path force MAE | NEB barrier error "
             "(kcal/mol) | Spearman (force) | labels to reach random's final MAE (all / "
             "path) | labels to barrier within 1 kcal/mol | MD stability (steps) | "
             "Ramachandran coverage | wall time (min) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for method, res in out["methods"].items():
        f = res["final"]
        wall = res.get("wall_time_s")
        lines.append(
            f"| {method} | {res['labels_total']} | {num(f.get('force_mae_ev_per_a'), '.3f')} | "
            f"{num(f.get('path_force_mae_ev_per_a'), '.3f')} | "
            f"{num(f.get('neb_barrier_error_kcal_mol'), '+.2f')} | "
            f"{num(f.get('force_spearman'), '.2f')} | "
            f"{num(res.get('labels_to_reach_reference_final'), '.1f')} / "
            f"{num(res.get('labels_to_reach_reference_final_path'), '.1f')} | "
            f"{num(res.get('labels_to_barrier_within_1_kcal_mol'), '.1f')} | "
            f"{num(f.get('md_stability_median_steps'), '.0f')} | "
            f"{num(res.get('ramachandran_coverage'), '.3f')} | "
            f"{num(None if wall is None else wall / 60, '.1f')} |")
    ref = out.get("reference_path")
    if ref and "barrier_kcal_mol" in ref:
        lines += ["", f"QM climbing-image NEB reference: barrier "
                      f"{ref['barrier_kcal_mol']:.2f} kcal/mol, converged {ref['converged']} "
                      f"in {ref['steps']} steps."]
    unfinished = [m for m, r in out["methods"].items() if not r.get("complete", True)]
    if unfinished:
        lines += ["", f"Stopped before the last iteration (their last evaluated iteration is "
                      f"shown): {', '.join(unfinished)}."]
    lines += ["", f"{out.get('parallel_campaigns', 1)} campaign(s) ran at the same time."]
    return "\n".join(lines) + "\n"


def learning_curve_panels(results: Mapping[str, Mapping[str, Any]]
                          ) -> dict[str, dict[str, tuple[list, list]]]:
    """The panels of :func:`~reactive_al.evaluation.plots.learning_curves` for a comparison.

    One panel per column of :data:`CURVE_PANELS` that some method has, one curve per method
    that has it: ``{y label: {method: (n_labels, values)}}``.
    """
    panels: dict[str, dict[str, tuple[list, list]]] = {}
    for col, label in CURVE_PANELS.items():
        curves = {method: (res["curve"]["n_labels"], res["curve"][col])
                  for method, res in results.items() if col in res["curve"]}
        if curves:
            panels[label] = curves
    return panels


def jsonable(v: Any) -> Any:
    """``json.dumps`` ``default`` for NumPy scalars."""
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"not JSON serialisable: {type(v)}")
