"""Do uncertainty-biased walkers reach the SN2 transition-state region more than plain ones?

Trains the first committee of a campaign (on its initial set: the two wells only).
Runs the same number of Langevin steps at 300 K from both wells, plain (committee mean) and
uncertainty-biased (gradient-feature uncertainty, calibrated on the validation split), and
counts sampled frames in the transition-state region |d(C–Cl1) − d(C–Cl2)| < 0.3 Å. Then labels
a random sample of each run's frames with PySCF (default level, label cache) to compare true
force errors. Prints and writes benchmarks/results/biased_md.json.

    python benchmarks/biased_md.py [--data data] [--steps 600] [--walkers 2] [--tau 0.2 0.5 ...]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import yaml
from _results import write_result

from reactive_al.datasets import ExtXYZDataset
from reactive_al.exploration import WalkerConfig, run_walker
from reactive_al.exploration.bias import UncertaintyBiasedCalculator
from reactive_al.models import CommitteeSpec, TrainingConfig, train_committee
from reactive_al.oracles.labeling import LabelingConfig, label_structures
from reactive_al.systems import load_system
from reactive_al.uncertainty import UncertaintyConfig, UncertaintyEstimator

ROOT = Path(__file__).resolve().parents[1]


def xi(a) -> float:
    """Reaction coordinate d(C–Cl1) − d(C–Cl2) (atoms 0, 1, 2 of the SN2 system)."""
    return float(a.get_distance(0, 1) - a.get_distance(0, 2))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="data")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--walkers", type=int, default=2, help="walkers per well and mode")
    parser.add_argument("--tau", type=float, nargs="+", default=[0.2],
                        help="bias strengths: one biased run per value")
    parser.add_argument("--name", default="biased_md", help="result file name")
    parser.add_argument("--n-label", type=int, default=6, help="frames labeled per mode")
    args = parser.parse_args()
    data = Path(args.data)
    train = ExtXYZDataset(str(data / "03_primary/labeled_set_0.extxyz")).load()
    # the wells-only committee of iteration 0, trained here with the project's settings so
    # that its validation split (for calibration) is known
    params = yaml.safe_load((ROOT / "conf/base/parameters_training.yml").read_text())["training"]
    spec = CommitteeSpec(symbols=["H", "C", "Cl"], **params["model"])
    committee = train_committee(train, spec, TrainingConfig(**params["fit"]))
    seeds = [a for a in ExtXYZDataset(str(data / "02_intermediate/md_seeds.extxyz")).load()
             if a.info.get("subset") in ("reactant", "product")]
    est = UncertaintyEstimator(committee, train, UncertaintyConfig(method="gradient_features"))
    cfg = WalkerConfig(n_steps=args.steps, sample_every=5, max_force=50.0)
    reactant = seeds[0]
    result = {"well_abs_xi_A": abs(xi(reactant)), "steps_per_walker": args.steps,
              "walkers_per_well": args.walkers, "taus": args.tau, "temperature_K": 300,
              "ts_region": "|d(C-Cl1) - d(C-Cl2)| < 0.3 A",
              "energy_calibration_scale": est.energy_cal.scale}
    frames_by_mode = {}
    modes = ["plain"] + [f"biased_tau{t:g}" for t in args.tau]
    for mode, tau in zip(modes, [None, *args.tau], strict=True):
        rng = np.random.default_rng(5)
        frames, reasons, t0 = [], [], time.perf_counter()
        for seed in seeds:
            for w in range(args.walkers):
                if mode == "plain":
                    calc = committee.calculator()
                else:
                    calc = UncertaintyBiasedCalculator(
                        committee, est.gf, tau=tau, energy_scale=est.energy_cal.scale)
                f, reason, _ = run_walker(seed, calc, 300.0, cfg, rng, f"{mode}{w}")
                frames += f
                reasons.append(reason)
        x = np.array([xi(a) for a in frames])
        result[mode] = {
            "n_frames": len(frames),
            "ts_region_fraction": float(np.mean(np.abs(x) < 0.3)) if len(x) else 0.0,
            "fraction_abs_xi_below_0.9_A": float(np.mean(np.abs(x) < 0.9)) if len(x) else 0.0,
            "fraction_abs_xi_below_1.2_A": float(np.mean(np.abs(x) < 1.2)) if len(x) else 0.0,
            "mean_abs_xi_A": float(np.mean(np.abs(x))) if len(x) else float("nan"),
            "min_abs_xi_A": float(np.min(np.abs(x))) if len(x) else float("nan"),
            "stop_reasons": {r: reasons.count(r) for r in set(reasons)},
            "wall_time_s": round(time.perf_counter() - t0, 1),
        }
        frames_by_mode[mode] = frames
        print(mode, result[mode])
    systems = yaml.safe_load((ROOT / "conf/base/parameters_systems.yml").read_text())["systems"]
    rs = load_system("sn2_cl_ch3cl", systems, ROOT)
    lab = LabelingConfig(charge=rs.charge, multiplicity=rs.multiplicity, level=rs.level,
                         cache_path=str(data / "02_intermediate/label_cache.db"), progress=False)
    rng = np.random.default_rng(0)
    for mode, frames in frames_by_mode.items():
        pick = rng.choice(len(frames), size=min(args.n_label, len(frames)), replace=False)
        labeled, failures = label_structures([frames[i] for i in pick], lab)
        pred = committee.predict(labeled)
        errs = [np.abs(pf - a.get_forces()).mean() for pf, a in zip(pred["forces"], labeled,
                                                                   strict=True)]
        result[mode]["true_force_mae_ev_per_a"] = float(np.mean(errs)) if errs else float("nan")
        result[mode]["true_force_mae_max_ev_per_a"] = float(np.max(errs)) if errs else float(
            "nan")
        result[mode]["n_labeled"] = len(labeled)
        result[mode]["n_label_failures"] = len(failures)
        print(mode, "true force MAE", result[mode]["true_force_mae_ev_per_a"])
    write_result(args.name, result)


if __name__ == "__main__":
    main()
