"""Multi-fidelity on one system: plain vs Δ-learning vs pre-trained vs both, same seeds.

The four arms are methods of the comparison command (``parameters_benchmark.yml``): the
default campaign's query (``committee``) and its multi-fidelity variants ``committee_delta``
(GFN2-xTB baseline), ``committee_pretrain`` (pre-trained on GFN2-xTB labels) and
``committee_delta_pretrain``. They share the comparison's QM reference path, held-out test set,
initial labels and budget; selection spends QM labels only. Runs the missing campaigns
(``reactive-al benchmark --methods ...``), then writes
benchmarks/results/multifidelity_<system>.json: per arm and seed the learning curves (force
MAE overall and on the path, energy MAE, NEB barrier error) and the cost — QM labels and their
wall time, cheap-level labels (baseline, pre-training pool) and direct baseline calls in
exploration, with their wall time.

    python benchmarks/multifidelity.py --system sn2_cl_ch3cl --seeds 2 [--parallel 2]
    python benchmarks/multifidelity.py --system sn2_cl_ch3cl --report-only
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _results import write_result

from reactive_al.benchmark import comparison_name, report_only, run_benchmark, seed_root
from reactive_al.settings import load_parameters

ROOT = Path(__file__).resolve().parents[1]
ARMS = {"plain": "committee", "delta": "committee_delta", "pretrain": "committee_pretrain",
        "both": "committee_delta_pretrain"}
METRICS = ("force_mae_ev_per_a", "path_force_mae_ev_per_a", "energy_mae_mev_per_atom",
           "neb_barrier_error_kcal_mol")


def _json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def campaign_cost(campaign: Path) -> dict[str, Any]:
    """QM and cheap-level counts and wall times (s) of one finished campaign folder."""
    summaries = sorted((campaign / "08_reporting").glob("iter_*/summary.json"))
    rows = [json.loads(p.read_text()) for p in summaries]
    if not rows:
        return {}
    last = rows[-1]
    pre = _json(campaign / "08_reporting/pretrain_stats.json") or {}
    ckpt = campaign / "06_models/pretrained/committee.pt"
    pre_fit = (torch.load(ckpt, weights_only=True)["history"].get("wall_time_s", 0.0)
               if ckpt.is_file() else 0.0)
    return {
        "qm_labels": last.get("cost/qm_labels", last.get("n_labels")),
        "qm_wall_time_s": last.get("cost/qm_wall_time_s"),
        "baseline_labels": last.get("cost/baseline_labels", 0),
        "baseline_label_wall_time_s": last.get("cost/baseline_label_wall_time_s", 0.0),
        "baseline_exploration_calls": int(sum(r.get("exploration/baseline_calls", 0)
                                              for r in rows)),
        "baseline_exploration_wall_time_s": round(sum(
            r.get("exploration/baseline_wall_time_s", 0.0) for r in rows), 2),
        "pretrain_labels": pre.get("n_labeled", 0),
        "pretrain_label_wall_time_s": pre.get("wall_time_s", 0.0),
        "pretrain_train_wall_time_s": pre_fit,
        "train_wall_time_s": round(sum(r.get("train/wall_time_s") or 0.0 for r in rows), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", default="sn2_cl_ch3cl")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--arms", default=",".join(ARMS), help=f"subset of {list(ARMS)}")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    os.chdir(ROOT)
    arms = {a: ARMS[a] for a in args.arms.split(",")}
    methods = list(arms.values())
    if not args.report_only:
        run_benchmark(args.system, ROOT, methods=methods, parallel=args.parallel,
                      seeds=args.seeds)
    result = report_only(args.system, ROOT, methods=methods, seeds=args.seeds)
    bench = load_parameters(ROOT).get("benchmark", {})
    root = ROOT / bench.get("root", "data/benchmark") / comparison_name(args.system)
    out: dict[str, Any] = {"system": args.system, "level_of_theory": result.get("level_of_theory"),
                           "seeds": list(range(args.seeds)), "budget": result.get("budget"),
                           "arms": {}}
    aggregate = result["aggregate"]["methods"]
    for arm, method in arms.items():
        agg = aggregate.get(method)
        if agg is None:
            continue
        curves = {m: {"n_labels": agg["n_labels"], **{k: agg["curves"][m][k] for k in
                                                      ("mean", "std", "per_seed")}}
                  for m in METRICS if m in agg["curves"]}
        cost = {str(s): campaign_cost(seed_root(root, s) / method) for s in out["seeds"]}
        out["arms"][arm] = {"method": method, "description": bench["methods"][method].get(
            "description", ""), "curves": curves, "final": agg["final"],
            "qm_labels_total": agg.get("labels_total", {}).get("mean"), "cost": cost}
    write_result(f"multifidelity_{args.system}", out)
    print(f"{'arm':9s} {'QM labels':>9s} {'force MAE':>16s} {'path':>16s} {'barrier err':>14s}"
          f" {'xTB labels':>10s} {'xTB calls (MD)':>14s}")
    for arm, rec in out["arms"].items():
        f = rec["final"]
        n = rec["qm_labels_total"] or np.nan
        cells = [f"{f[m]['mean']:.3f} ± {f[m]['std']:.3f}" if m in f else "–"
                 for m in ("force_mae_ev_per_a", "path_force_mae_ev_per_a")]
        b = f.get("neb_barrier_error_kcal_mol")
        barrier = f"{b['mean']:+.2f}" if b else "–"
        costs = list(rec["cost"].values())
        xtb = np.mean([c.get("baseline_labels", 0) + c.get("pretrain_labels", 0) for c in costs])
        md = np.mean([c.get("baseline_exploration_calls", 0) for c in costs])
        print(f"{arm:9s} {n:9.0f} {cells[0]:>16s} {cells[1]:>16s} "
              f"{barrier:>14s}"
              f" {xtb:10.0f} {md:14.0f}")


if __name__ == "__main__":
    main()
