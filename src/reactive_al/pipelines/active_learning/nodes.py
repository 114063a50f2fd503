"""Nodes specific to the ``active_learning`` pipeline: iteration records and the curve."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from ase import Atoms

from reactive_al.models import Committee
from reactive_al.tracking import log_iteration_run


def summarize_iteration(
    metrics: dict[str, Any],
    committee: Committee,
    labeled_set: list[Atoms],
    exploration_stats: dict[str, Any] | None = None,
    selection_stats: dict[str, Any] | None = None,
    selected: list[Atoms] | None = None,
    label_failures: list[dict[str, Any]] | None = None,
    *,
    iteration: int,
) -> dict[str, Any]:
    """One iteration's record (labels, test errors, uncertainty statistics), also to MLflow."""
    summary: dict[str, Any] = {
        "iteration": iteration,
        "n_labels": len(labeled_set),
        **{f"test/{k}": v for k, v in metrics.items()},
        "train/epochs": committee.history.get("epochs"),
        "train/wall_time_s": committee.history.get("wall_time_s"),
        "train/val_force_rmse_ev_per_a": committee.history.get("val_force_rmse_ev_per_a"),
    }
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
              "hidden": committee.spec.hidden}
    if selection_stats is not None:
        params.update({k: selection_stats.get(k) for k in
                       ("strategy", "uncertainty", "criterion", "calibration")})
    if exploration_stats is not None:
        params["biased_md"] = exploration_stats.get("biased", False)
        params["bias_tau"] = exploration_stats.get("bias_tau")
    summary["mlflow_run_id"] = log_iteration_run(
        iteration, {k: v for k, v in summary.items() if k != "iteration"}, params, committee,
        selected)
    return summary


def learning_curve(*summaries: dict[str, Any]) -> tuple[pd.DataFrame, plt.Figure]:
    """Per-iteration table and a plot of test force MAE vs number of labels."""
    table = pd.DataFrame(list(summaries)).sort_values("iteration").reset_index(drop=True)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for col, label in (("test/force_mae_ev_per_a", "all"),
                       ("test/path/force_mae_ev_per_a", "path"),
                       ("test/reactant/force_mae_ev_per_a", "reactant well"),
                       ("test/product/force_mae_ev_per_a", "product well")):
        if col in table:
            axes[0].plot(table["n_labels"], table[col], marker="o", label=label)
    axes[0].set_xlabel("QM labels")
    axes[0].set_ylabel("test force MAE (eV/Å)")
    axes[0].legend(fontsize=8)
    for col, label in (("test/energy_mae_mev_per_atom", "all"),
                       ("test/path/energy_mae_mev_per_atom", "path")):
        if col in table:
            axes[1].plot(table["n_labels"], table[col], marker="o", label=label)
    axes[1].set_xlabel("QM labels")
    axes[1].set_ylabel("test energy MAE (meV/atom)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return table, fig


def finalize(labeled_set: list[Atoms], committee: Committee) -> tuple[list[Atoms], Committee]:
    """Publish the last iteration's training set and committee as the campaign's product."""
    return list(labeled_set), committee
