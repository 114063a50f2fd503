"""Nodes of the ``selection`` pipeline."""

from __future__ import annotations

from typing import Any

import numpy as np
from ase import Atoms

from reactive_al.exploration import WalkerConfig, explore, model_normal_mode_samples, neb_candidates
from reactive_al.models import Committee
from reactive_al.selection import query
from reactive_al.uncertainty import CRITERIA, UncertaintyConfig, UncertaintyEstimator


def _estimator(committee: Committee, labeled_set: list[Atoms], selection: dict[str, Any],
               need_features: bool) -> UncertaintyEstimator:
    cfg = UncertaintyConfig(**{**selection.get("uncertainty", {}),
                               "criterion": selection["criterion"]})
    return UncertaintyEstimator(committee, labeled_set, cfg, need_features=need_features)


def explore_candidates(
    committee: Committee, md_seeds: list[Atoms], labeled_set: list[Atoms],
    selection: dict[str, Any],
) -> tuple[list[Atoms], dict[str, Any]]:
    """Candidates from committee-driven walkers (optionally uncertainty-biased).

    Also, as configured, from an NEB on the committee and from the committee's normal modes.
    """
    walkers = dict(selection["walkers"])
    bias = walkers.pop("bias", {}) or {}
    walkers["temperatures_K"] = tuple(walkers["temperatures_K"])
    rng = np.random.default_rng(selection["seed"])
    cfg = WalkerConfig(**walkers)
    force_scale = 1.0
    if bias.get("enabled") or cfg.max_atomic_uncertainty is not None:
        est = _estimator(committee, labeled_set, selection, need_features=bias.get("enabled"))
        force_scale = est.force_cal.scale
    if bias.get("enabled"):
        from reactive_al.bias import UncertaintyBiasedCalculator

        calc = UncertaintyBiasedCalculator(
            committee, est.gf, tau=bias["tau"], element_weights=bias.get("element_weights"),
            window=bias.get("window", 100), energy_scale=est.energy_cal.scale,
            force_scale=force_scale)
    else:
        calc = committee.calculator(force_scale=force_scale)
    candidates, stats = explore(md_seeds, calc, cfg, rng)
    stats["biased"] = bool(bias.get("enabled"))
    if bias.get("enabled"):
        stats["bias_tau"] = float(bias["tau"])
    samplers = selection.get("samplers", {}) or {}
    neb = samplers.get("neb", {}) or {}
    wells = [s for s in md_seeds if s.info.get("subset") in ("reactant", "product")]
    if neb.get("enabled") and len(wells) == 2:
        frames, neb_stats = neb_candidates(
            wells[0], wells[1], committee.calculator, n_images=neb.get("n_images", 7),
            fmax=neb.get("fmax", 0.1), steps=neb.get("steps", 200))
        candidates += frames
        neb_stats.pop("neb_energies_ev", None)
        stats.update(neb_stats)
    nm = samplers.get("normal_modes", {}) or {}
    if nm.get("enabled"):
        frames = model_normal_mode_samples(wells, committee.calculator(), nm["n_per_minimum"],
                                           nm["temperature_K"], rng)
        candidates += frames
        stats["n_normal_mode_candidates"] = len(frames)
    stats["n_candidates"] = len(candidates)
    return candidates, stats


def select_batch(
    committee: Committee, candidates: list[Atoms], labeled_set: list[Atoms],
    selection: dict[str, Any],
) -> tuple[list[Atoms], dict[str, Any]]:
    """Score candidates by calibrated uncertainty and choose a batch by the strategy."""
    strategy = selection.get("strategy", "top_k")
    chosen, scores, ranking, est = query(committee, candidates, labeled_set, selection,
                                         np.random.default_rng(selection["seed"]))
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
