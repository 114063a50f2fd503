"""Do uncertainty-biased walkers cover more of alanine dipeptide's Ramachandran plane?

Takes a campaign's committee (``<data>/06_models/committee.pt``) and the labeled set it was
trained on (``<data>/03_primary/labeled_set.extxyz``, for the validation split that calibrates
the uncertainty). Runs the same number of Langevin steps from the reactant (C7eq) with plain
walkers (committee mean) and with uncertainty-biased walkers (gradient-feature uncertainty,
walker settings and bias from the project's parameters ``selection.walkers`` with ``--env``,
τ from ``--tau``), with the same random streams. Coverage of the φ/ψ plane by the sampled
frames: quadtree over [−180°, 180°]² to depth 5, a cell at level h adds 1/4^h, the total
divided by the depth.
Writes benchmarks/results/<name>.json and <name>.png (visits per finest cell, per run).

    python benchmarks/ramachandran.py --data data [--steps 1000] [--walkers 4]
        [--temperatures 300 600] [--tau 0.2] [--name ramachandran] [--env local]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _results import RESULTS, write_result

from reactive_al.datasets import CommitteeCheckpointDataset, ExtXYZDataset
from reactive_al.evaluation.plots import ramachandran_coverage
from reactive_al.evaluation.ramachandran import (
    alanine_dipeptide_phi_psi_indices,
    dihedral_phi_psi,
    phi_psi_of_frames,
    quadtree_coverage,
    quadtree_level_fractions,
)
from reactive_al.exploration import WalkerConfig, run_walker
from reactive_al.exploration.bias import UncertaintyBiasedCalculator
from reactive_al.settings import load_parameters
from reactive_al.systems import load_system
from reactive_al.uncertainty import UncertaintyConfig, UncertaintyEstimator

ROOT = Path(__file__).resolve().parents[1]
SYSTEM = "alanine_dipeptide"


def coverage_stats(pts: np.ndarray, depth: int) -> dict:
    """Quadtree coverage, visited fraction per level and distinct finest cells."""
    fractions = quadtree_level_fractions(pts, depth)
    return {
        "n_frames": int(len(pts)),
        "quadtree_coverage": round(quadtree_coverage(pts, depth), 4),
        "visited_fraction_per_level": [round(float(f), 4) for f in fractions],
        f"n_cells_level_{depth}": int(round(fractions[-1] * 4**depth)),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="data", help="campaign data directory")
    parser.add_argument("--steps", type=int, default=1000, help="MD steps per walker")
    parser.add_argument("--walkers", type=int, default=4, help="walkers per mode and temperature")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[300.0])
    parser.add_argument("--tau", type=float, default=None,
                        help="bias strength (default: selection.walkers.bias.tau)")
    parser.add_argument("--sample-every", type=int, default=5)
    parser.add_argument("--depth", type=int, default=5)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--name", default="ramachandran", help="result file stem")
    parser.add_argument("--env", default=None, help="Kedro configuration environment")
    args = parser.parse_args()
    data = Path(args.data)
    committee = CommitteeCheckpointDataset(str(data / "06_models/committee.pt")).load()
    labeled = ExtXYZDataset(str(data / "03_primary/labeled_set.extxyz")).load()
    params = load_parameters(ROOT, args.env)
    selection, systems = params["selection"], params["systems"]
    reactant = load_system(SYSTEM, systems, ROOT).reactant
    reactant.info["origin"] = "reactant"
    phi_idx, psi_idx = alanine_dipeptide_phi_psi_indices(reactant)

    walkers = dict(selection["walkers"])
    bias = dict(walkers.pop("bias", {}) or {})
    tau = float(bias.get("tau", 0.1) if args.tau is None else args.tau)
    unc = {**selection.get("uncertainty", {}), "method": "gradient_features",
           "criterion": selection["criterion"]}
    est = UncertaintyEstimator(committee, labeled, UncertaintyConfig(**unc), need_features=True)
    cfg = WalkerConfig(**{**walkers, "temperatures_K": tuple(args.temperatures),
                          "n_steps": args.steps, "sample_every": args.sample_every})
    result = {
        "data": str(data), "committee_training_frames": len(labeled),
        "reactant_phi_psi_deg": [round(x, 1) for x in dihedral_phi_psi(reactant, phi_idx,
                                                                        psi_idx)],
        "steps_per_walker": args.steps, "walkers_per_temperature": args.walkers,
        "timestep_fs": cfg.timestep_fs, "sample_every": args.sample_every,
        "tau": tau, "element_weights": bias.get("element_weights", {"H": 0.0}),
        "energy_calibration_scale": est.energy_cal.scale, "depth": args.depth,
        "coverage": "sum over levels h=1..depth of visited cells / 4^h, divided by depth",
    }
    panels: dict[str, np.ndarray] = {}
    for mode in ("unbiased", "biased"):
        rng = np.random.default_rng(args.seed)  # the same velocities and noise for both modes
        by_mode, all_pts = {}, []
        for t in args.temperatures:
            frames, reasons, steps, t0 = [], [], 0, time.perf_counter()
            for w in range(args.walkers):
                if mode == "unbiased":
                    calc = committee.calculator(force_scale=est.force_cal.scale)
                else:  # a fresh calculator per walker: the bias window starts empty
                    calc = UncertaintyBiasedCalculator(
                        committee, est.gf, tau=tau, element_weights=bias.get("element_weights"),
                        window=bias.get("window", 100), energy_scale=est.energy_cal.scale,
                        force_scale=est.force_cal.scale)
                f, reason, n = run_walker(reactant, calc, t, cfg, rng, f"{mode}{w}_{int(t)}K")
                frames += f
                reasons.append(reason)
                steps += n
            pts = phi_psi_of_frames(frames, phi_idx, psi_idx)
            kin = [a.info["kinetic_temperature_K"] for a in frames]
            by_mode[f"{t:g}K"] = {
                **coverage_stats(pts, args.depth),
                "md_steps": steps,
                "stop_reasons": {r: reasons.count(r) for r in sorted(set(reasons))},
                "mean_kinetic_temperature_K": round(float(np.mean(kin)), 1) if kin else None,
                "wall_time_s": round(time.perf_counter() - t0, 1),
            }
            panels[f"{mode} {t:g} K"] = pts
            all_pts.append(pts)
            print(mode, f"{t:g} K", by_mode[f"{t:g}K"], flush=True)
        if len(args.temperatures) > 1:
            by_mode["all"] = coverage_stats(np.concatenate(all_pts), args.depth)
        result[mode] = by_mode
    fig = ramachandran_coverage(panels, depth=args.depth)
    png = RESULTS / f"{args.name}.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    result["figure"] = png.name
    write_result(args.name, result)


if __name__ == "__main__":
    main()
