"""The pipelined loop against the plain one: same seeds, oracle, test set and label budget.

``committee`` (the default query) and ``committee_lookahead`` (the same query with
``active_learning.lookahead``: committee k selects batch k+1 while batch k is labeled) are
methods of the comparison command (``parameters_benchmark.yml``). With ``--delta`` the arms
are the default campaign's committee on the GFN2-xTB baseline (``committee_delta``), the same
pipelined (``committee_delta_lookahead``), pipelined on the warm-start fast path
(``committee_delta_lookahead_warm``) and pipelined with the first batch chosen from half the
initial labels (``committee_delta_lookahead_early``, ``active_learning.early_first_batch``).
Runs the missing campaigns (``reactive-al benchmark --methods ...``), then writes
benchmarks/results/lookahead[_delta]_<system>[_<level>].json:
per arm the final test errors (mean, standard deviation and per seed), the per-seed
differences of every arm against the plain one, and every campaign's wall time (s; only
comparable between campaigns that ran alone).

    python benchmarks/lookahead.py --system sn2_cl_ch3cl --seeds 3 [--delta] [--level xtb] \\
        [--parallel 2]
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
DELTA_ARMS = {"plain": "committee_delta", "lookahead": "committee_delta_lookahead",
              "lookahead_warm": "committee_delta_lookahead_warm",
              "lookahead_early": "committee_delta_lookahead_early"}
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
    add("--delta", action="store_true", help="the Δ arms (the default campaign's committee)")
    add("--report-only", action="store_true")
    args = parser.parse_args()
    os.chdir(ROOT)
    arms = DELTA_ARMS if args.delta else ARMS
    methods = list(arms.values())
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
        # the load while the campaigns ran (none when they ran before --report-only)
        "load_average_start": None if args.report_only else [round(x, 2) for x in load0],
        "load_average_end": None if args.report_only else [round(x, 2) for x in os.getloadavg()],
        "arms": {}}
    per_seed: dict[str, dict[str, dict[str, float]]] = {}
    for arm, method in arms.items():
        agg = result["aggregate"]["methods"].get(method)
        if agg is None:
            continue
        per_seed[arm] = {m: agg["final"][m]["per_seed"] for m in METRICS if m in agg["final"]}
        out["arms"][arm] = {"method": method, "final": {m: agg["final"][m] for m in METRICS
                                                         if m in agg["final"]},
                            "labels_total": agg.get("labels_total", {}).get("mean"),
                            "wall_time_s": agg.get("wall_time_s")}
    if "plain" in per_seed:
        out["minus_plain"] = {}
        for arm in (a for a in per_seed if a != "plain"):
            out["minus_plain"][arm] = {}
            for m in METRICS:
                both = [s for s in seeds if per_seed["plain"].get(m, {}).get(s) is not None
                        and per_seed[arm].get(m, {}).get(s) is not None]
                diff = [per_seed[arm][m][s] - per_seed["plain"][m][s] for s in both]
                out["minus_plain"][arm][m] = {
                    "per_seed": dict(zip(both, diff, strict=True)),
                    "mean": float(np.mean(diff)) if diff else None}
    name = f"lookahead_{'delta_' if args.delta else ''}{comparison_name(args.system, args.level)}"
    write_result(name, out)
    print(f"{'arm':14s} {'labels':>6s} " + " ".join(f"{m:>26s}" for m in METRICS))
    for arm, rec in out["arms"].items():
        cells = [f"{rec['final'][m]['mean']:.3f} ± {rec['final'][m]['std'] or 0:.3f}"
                 if m in rec["final"] else "–" for m in METRICS]
        print(f"{arm:14s} {rec['labels_total'] or 0:6.0f} " + " ".join(f"{c:>26s}" for c in cells))


if __name__ == "__main__":
    main()
