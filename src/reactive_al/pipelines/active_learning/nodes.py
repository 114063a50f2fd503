"""Nodes specific to the ``active_learning`` pipeline: iteration records and the curve."""

from __future__ import annotations

from typing import Any

import pandas as pd
from ase import Atoms
from matplotlib.figure import Figure

from reactive_al.evaluation import forgetting_ratio
from reactive_al.evaluation.plots import evaluation_figures, learning_curves
from reactive_al.evaluation.report import markdown_report
from reactive_al.models import Committee
from reactive_al.tracking import log_iteration_run


def summarize_iteration(
    metrics: dict[str, Any],
    evaluation_products: dict[str, Any],
    committee: Committee,
    labeled_set: list[Atoms],
    exploration_stats: dict[str, Any] | None = None,
    selection_stats: dict[str, Any] | None = None,
    selected: list[Atoms] | None = None,
    label_failures: list[dict[str, Any]] | None = None,
    *,
    iteration: int,
) -> tuple[dict[str, Any], dict[str, Figure]]:
    """One iteration's record and figures, also logged to a nested MLflow run.

    The record holds labels used, test errors, calibration and uncertainty statistics; the
    figures (parity plots, path energy profile, calibration plots) are drawn from the
    ``evaluation_products`` of the evaluate node.
    """
    summary: dict[str, Any] = {
        "iteration": iteration,
        "n_labels": len(labeled_set),
        **{f"test/{k}": v for k, v in metrics.items()},
        "train/epochs": committee.history.get("epochs"),
        "train/wall_time_s": committee.history.get("wall_time_s"),
        "train/val_force_rmse_ev_per_a": committee.history.get("val_force_rmse_ev_per_a"),
        # cost accounting: the QM labels trained on and what computing them took (s, once
        # each), apart from the cheap baseline's calls (Δ-learning)
        "cost/qm_labels": len(labeled_set),
        "cost/qm_wall_time_s": round(sum(float(a.info.get("qm_wall_time_s", 0.0))
                                         for a in labeled_set), 2),
    }
    base_cost = committee.history.get("baseline_cost")
    if base_cost:
        summary["cost/baseline_labels"] = base_cost["n_structures"]
        summary["cost/baseline_label_wall_time_s"] = base_cost["wall_time_s"]
    if selection_stats is not None:
        summary.update({f"selection/{k}": v for k, v in selection_stats.items()})
    if exploration_stats is not None:
        for k, v in exploration_stats.items():
            if k == "walker_stop_reasons":
                summary.update({f"exploration/stop_{r}": n for r, n in v.items()})
            elif isinstance(v, dict):  # e.g. kinetic temperature per target temperature
                summary.update({f"exploration/{k}/{kk}": vv for kk, vv in v.items()})
            else:
                summary[f"exploration/{k}"] = v
    if label_failures is not None:
        summary["labeling/n_failed"] = len(label_failures)
        summary["labeling/n_new"] = (len(selected) if selected is not None else 0) - len(
            label_failures)
    params = {"n_labels": len(labeled_set), "ensemble_size": committee.spec.ensemble_size,
              "hidden": committee.spec.hidden,
              "train_mode": committee.history.get("mode", "retrain"),
              "baseline": committee.baseline.name if committee.baseline is not None else "none"}
    if selection_stats is not None:
        params.update({k: selection_stats.get(k) for k in
                       ("strategy", "uncertainty", "criterion", "calibration")})
    if exploration_stats is not None:
        params["biased_md"] = exploration_stats.get("biased", False)
        params["bias_tau"] = exploration_stats.get("bias_tau")
    figures = evaluation_figures(evaluation_products)
    summary["mlflow_run_id"] = log_iteration_run(
        iteration, {k: v for k, v in summary.items() if k != "iteration"}, params, committee,
        selected, figures)
    return summary, figures


def learning_curve(*summaries: dict[str, Any]) -> tuple[pd.DataFrame, Figure]:
    """Per-iteration table and a plot of test force MAE vs number of labels."""
    table = pd.DataFrame(list(summaries)).sort_values("iteration").reset_index(drop=True)
    wells = [c for c in ("test/reactant/force_mae_ev_per_a", "test/product/force_mae_ev_per_a")
             if c in table]
    if wells:
        # error on the initial domain (the wells) relative to the first iteration
        table["test/wells_forgetting_ratio"] = forgetting_ratio(table[wells].mean(axis=1))
    panels = {
        "test force MAE (eV/Å)": {
            label: (table["n_labels"], table[col]) for col, label in (
                ("test/force_mae_ev_per_a", "all"), ("test/path/force_mae_ev_per_a", "path"),
                ("test/reactant/force_mae_ev_per_a", "reactant well"),
                ("test/product/force_mae_ev_per_a", "product well")) if col in table},
        "test energy MAE (meV/atom)": {
            label: (table["n_labels"], table[col]) for col, label in (
                ("test/energy_mae_mev_per_atom", "all"),
                ("test/path/energy_mae_mev_per_atom", "path")) if col in table},
    }
    fig = learning_curves(panels)
    return table, fig


def finalize(labeled_set: list[Atoms], committee: Committee) -> tuple[list[Atoms], Committee]:
    """Publish the last iteration's training set and committee as the campaign's product."""
    return list(labeled_set), committee


REPORT_COLUMNS = {
    "iteration": "iteration",
    "n_labels": "labels",
    "test/force_mae_ev_per_a": "force MAE (eV/Å)",
    "test/path/force_mae_ev_per_a": "path force MAE (eV/Å)",
    "test/energy_mae_mev_per_atom": "energy MAE (meV/atom)",
    "test/neb/barrier_error_kcal_mol": "NEB barrier error (kcal/mol)",
    "test/neb/reaction_energy_error_kcal_mol": "reaction energy error (kcal/mol)",
    "test/md_stability/median_steps": "MD stability (median steps)",
    "test/calibration/force_spearman": "Spearman (force)",
    "test/calibration/force_coverage_95": "95% coverage (force)",
    "test/wells_forgetting_ratio": "forgetting ratio (wells)",
}


def campaign_report(table: pd.DataFrame, system: str, n_iterations: int) -> str:
    """Markdown report of a campaign: final numbers, the learning curve table, figure links."""
    last = table.iloc[-1]
    headline = {label: last[col] for col, label in REPORT_COLUMNS.items()
                if col in table and col != "iteration"}
    cols = [c for c in REPORT_COLUMNS if c in table]
    curve = table[cols].rename(columns=REPORT_COLUMNS)
    ns = f"iter_{n_iterations - 1:02d}"
    figures = {"Learning curve": "learning_curve.png",
               "Energy along the QM NEB path, last iteration": f"{ns}/figures/path_profile.png",
               "Force parity, last iteration": f"{ns}/figures/parity_forces.png",
               "Force calibration, last iteration": f"{ns}/figures/calibration_force.png"}
    return markdown_report(f"Active-learning campaign: {system}", system, headline,
                           {"Learning curve": curve}, figures)
