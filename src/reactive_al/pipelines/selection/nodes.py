"""Nodes of the ``selection`` pipeline: fit the estimator once, explore, select."""

from __future__ import annotations

from typing import Any

import numpy as np
from ase import Atoms

from reactive_al import exploration
from reactive_al.models import Committee
from reactive_al.oracles.labeling import LabelJob
from reactive_al.selection import build_estimator, query
from reactive_al.uncertainty import CRITERIA, UncertaintyEstimator


def fit_estimator(committee: Committee, labeled_set: list[Atoms],
                  selection: dict[str, Any]) -> UncertaintyEstimator:
    """The iteration's calibrated uncertainty estimator, shared by exploration and selection."""
    return build_estimator(committee, labeled_set, selection)


def explore_candidates(
    committee: Committee, md_seeds: list[Atoms], estimator: UncertaintyEstimator,
    selection: dict[str, Any],
) -> tuple[list[Atoms], dict[str, Any]]:
    """Candidates from committee-driven walkers (optionally uncertainty-biased) and samplers.

    With a Δ-learning baseline the stats count its direct calls and their wall time (s, summed
    over the calls: on ``selection.walkers.baseline_threads`` threads it exceeds the walkers').
    """
    before = committee.baseline.stats() if committee.baseline is not None else None
    candidates, stats = exploration.explore_candidates(committee, md_seeds, selection,
                                                       estimator)
    if before is not None:
        after = committee.baseline.stats()
        stats["baseline_calls"] = after["calls"] - before["calls"]
        stats["baseline_wall_time_s"] = round(after["wall_time_s"] - before["wall_time_s"], 3)
    return candidates, stats


def select_batch(
    committee: Committee, candidates: list[Atoms], labeled_set: list[Atoms],
    estimator: UncertaintyEstimator, selection: dict[str, Any],
) -> tuple[list[Atoms], dict[str, Any]]:
    """Score candidates by calibrated uncertainty and choose a batch by the strategy."""
    strategy = selection.get("strategy", "top_k")
    chosen, scores, ranking, est = query(committee, candidates, labeled_set, selection,
                                         np.random.default_rng(selection["seed"]),
                                         estimator=estimator)
    selected = []
    for i in chosen:
        a = candidates[i].copy()
        a.info["energy_uncertainty_ev_per_atom"] = float(scores["energy"][i])
        a.info["force_uncertainty_ev_per_a"] = float(scores["force"][i])
        a.info["selected_by"] = f"{strategy}/{est.cfg.method}"
        selected.append(a)

    def stat(x: np.ndarray, f) -> float:
        return float(f(x)) if len(x) else float("nan")

    unit = CRITERIA[est.cfg.criterion] if est.cfg.method == "committee" else "eV/atom"
    stats = {
        "strategy": strategy,
        "criterion": est.cfg.criterion if est.cfg.method == "committee" else "energy",
        "units": unit,
        **est.summary(),
        "n_candidates": len(candidates),
        "n_selected": len(selected),
        "candidate_score_mean": stat(ranking, np.mean),
        "candidate_score_max": stat(ranking, np.max),
        "selected_score_mean": stat(ranking[chosen], np.mean),
        "selected_score_min": stat(ranking[chosen], np.min),
        "candidate_energy_uncertainty_mean": stat(scores["energy"], np.mean),
        "candidate_force_uncertainty_mean": stat(scores["force"], np.mean),
    }
    return selected, stats


def select_next_batch(
    committee: Committee, candidates: list[Atoms], labeled_set: list[Atoms],
    pending_job: LabelJob, estimator: UncertaintyEstimator, selection: dict[str, Any],
) -> tuple[list[Atoms], dict[str, Any]]:
    """:func:`select_batch` while ``pending_job``'s batch is still being labeled.

    The pending frames count as training frames for the near-duplicate test and the
    strategies' distances (``min_separation``): the next batch is not selected twice.
    """
    reference = list(labeled_set) + list(pending_job.frames)
    selected, stats = select_batch(committee, candidates, reference, estimator, selection)
    stats["n_pending"] = len(pending_job.frames)
    return selected, stats
