"""The pipelined loop against the plain one: same seeds, oracle, test set and label budget.

``committee`` (the default query) and ``committee_lookahead`` (the same query with
``active_learning.lookahead``: committee k selects batch k+1 while batch k is labeled) are
methods of the comparison command (``parameters_benchmark.yml``). Runs the missing campaigns
(``reactive-al benchmark --methods committee,committee_lookahead``), then writes
benchmarks/results/lookahead_<system>[_<level>].json: per arm the final test errors (mean,
standard deviation and per seed), the per-seed differences lookahead − plain, and every
campaign's wall time (s; only comparable between campaigns that ran alone).

    python benchmarks/lookahead.py --system sn2_cl_ch3cl --seeds 3 [--level xtb] [--parallel 2]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import numpy as np
from _results import write_result

from reactive_al.benchmark import comparison_name, report_only, run_benchmark

ROOT = Path(__file__).resolve().parents[1]
ARMS = {"plain": "committee", "lookahead": "committee_lookahead"}
METRICS = ("force_mae_ev_per_a", "path_force_mae_ev_per_a", "energy_mae_mev_per_atom",
           "neb_barrier_error_kcal_mol")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--system", default="sn2_cl_ch3cl")
    add("--seeds", type=int, default=3)
    add("--level", default=None, help="a key of benchmark.levels (e.g. xtb)")
    add("--iterations", type=int, default=None)
    add("--batch-size", type=int, default=None)
    add("--parallel", type=int, default=1)
    add("--report-only", action="store_true")
    args = parser.parse_args()
    os.chdir(ROOT)
    methods = list(ARMS.values())
    load0 = os.getloadavg()
    if not args.report_only:
        run_benchmark(args.system, ROOT, methods=methods, parallel=args.parallel,
                      seeds=args.seeds, level=args.level, iterations=args.iterations,
                      batch_size=args.batch_size)
    result = report_only(args.system, ROOT, methods=methods, seeds=args.seeds,
                         level=args.level)
    seeds = [str(s) for s in range(args.seeds)]
    out: dict[str, Any] = {
        "system": args.system, "level_of_theory": result.get("level_of_theory"),
        "seeds": seeds, "budget": result.get("budget"), "parallel_campaigns": args.parallel,
        "load_average_start": [round(x, 2) for x in load0],
        "load_average_end": [round(x, 2) for x in os.getloadavg()], "arms": {}}
    per_seed: dict[str, dict[str, dict[str, float]]] = {}
    for arm, method in ARMS.items():
        agg = result["aggregate"]["methods"].get(method)
        if agg is None:
            continue
        per_seed[arm] = {m: agg["final"][m]["per_seed"] for m in METRICS if m in agg["final"]}
        out["arms"][arm] = {"method": method, "final": {m: agg["final"][m] for m in METRICS
                                                         if m in agg["final"]},
                            "labels_total": agg.get("labels_total", {}).get("mean"),
                            "wall_time_s": agg.get("wall_time_s")}
    if len(per_seed) == 2:
        out["lookahead_minus_plain"] = {}
        for m in METRICS:
            both = [s for s in seeds if per_seed["plain"].get(m, {}).get(s) is not None
                    and per_seed["lookahead"].get(m, {}).get(s) is not None]
            diff = [per_seed["lookahead"][m][s] - per_seed["plain"][m][s] for s in both]
            out["lookahead_minus_plain"][m] = {
                "per_seed": dict(zip(both, diff, strict=True)),
                "mean": float(np.mean(diff)) if diff else None}
    name = f"lookahead_{comparison_name(args.system, args.level)}"
    write_result(name, out)
    print(f"{'arm':10s} {'labels':>6s} " + " ".join(f"{m:>26s}" for m in METRICS))
    for arm, rec in out["arms"].items():
        cells = [f"{rec['final'][m]['mean']:.3f} ± {rec['final'][m]['std'] or 0:.3f}"
                 if m in rec["final"] else "–" for m in METRICS]
        print(f"{arm:10s} {rec['labels_total'] or 0:6.0f} " + " ".join(f"{c:>26s}" for c in cells))


if __name__ == "__main__":
    main()
