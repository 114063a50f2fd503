"""Nodes of the ``selection`` pipeline."""

from __future__ import annotations

from typing import Any

import numpy as np
from ase import Atoms

from reactive_al.exploration import WalkerConfig, explore
from reactive_al.models import Committee
from reactive_al.selection import top_k_unique
from reactive_al.uncertainty import CRITERIA, committee_uncertainty


def explore_candidates(
    committee: Committee, md_seeds: list[Atoms], selection: dict[str, Any]
) -> tuple[list[Atoms], dict[str, Any]]:
    """Langevin walkers driven by the committee mean from every MD seed and temperature."""
    walkers = dict(selection["walkers"])
    walkers["temperatures_K"] = tuple(walkers["temperatures_K"])
    rng = np.random.default_rng(selection["seed"])
    return explore(md_seeds, committee.calculator(), WalkerConfig(**walkers), rng)


def select_batch(
    committee: Committee, candidates: list[Atoms], labeled_set: list[Atoms],
    selection: dict[str, Any],
) -> tuple[list[Atoms], dict[str, Any]]:
    """Score candidates by committee disagreement and take the top unique batch."""
    criterion = selection["criterion"]
    if criterion not in CRITERIA:
        raise ValueError(f"parameters_selection.yml: unknown criterion '{criterion}' "
                         f"(choose from {sorted(CRITERIA)})")
    scores = committee_uncertainty(committee, candidates)
    chosen = top_k_unique(candidates, scores[criterion], selection["batch_size"],
                          reference=labeled_set, min_separation=selection["min_separation"])
    selected = []
    for i in chosen:
        a = candidates[i].copy()
        a.info["qbc_energy_std_ev_per_atom"] = float(scores["energy"][i])
        a.info["qbc_max_force_std_ev_per_a"] = float(scores["force"][i])
        a.info["selected_by"] = f"qbc/{criterion}"
        selected.append(a)
    s = scores[criterion]
    stats = {
        "criterion": criterion,
        "units": CRITERIA[criterion],
        "n_candidates": len(candidates),
        "n_selected": len(selected),
        "candidate_score_mean": float(np.mean(s)) if len(s) else float("nan"),
        "candidate_score_max": float(np.max(s)) if len(s) else float("nan"),
        "selected_score_mean": float(np.mean(s[chosen])) if chosen else float("nan"),
        "selected_score_min": float(np.min(s[chosen])) if chosen else float("nan"),
        "candidate_energy_std_mean": float(np.mean(scores["energy"])) if len(s) else float("nan"),
        "candidate_force_std_mean": float(np.mean(scores["force"])) if len(s) else float("nan"),
    }
    return selected, stats
