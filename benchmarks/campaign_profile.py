"""Where a campaign's wall time goes: QM labeling, training, exploration, selection, evaluation.

Runs the ``__default__`` campaign of one system (optionally at another level of theory, e.g.
``--level xtb``) with ``$REACTIVE_AL_PROFILE`` set, so every Kedro node and the named stages
inside the evaluation node are timed (:mod:`reactive_al.profiling`). The one-off work (QM
reference path, labeling the test set) is kept under ``data/profile/<name>/shared`` and reported
separately; the campaign itself (pools, initial labels, iterations, its own label cache) is
recomputed from scratch under ``data/profile/<name>/campaign`` on every run.

Writes ``benchmarks/results/campaign_profile_<system>_<level>[_<tag>].json``: wall time per
stage in total and per iteration, the QM fraction of the campaign's wall time, dataset loads and
saves, Kedro's own overhead (process wall time in no node and no dataset operation: start-up,
imports, hooks), the load average, and the campaign's final errors.

    python benchmarks/campaign_profile.py --system sn2_cl_ch3cl --level xtb \\
        --iterations 17 --batch-size 8 [--tag before] [--params training.fit.mode=warm_start]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

from _results import write_result

from reactive_al.benchmark import campaign_params, kedro_run, param_arg
from reactive_al.profiling import ENV, summarize
from reactive_al.settings import load_catalog, load_parameters

ROOT = Path(__file__).resolve().parents[1]
FINAL = {"n_labels": "n_labels", "test/force_mae_ev_per_a": "force_mae_ev_per_a",
         "test/path/force_mae_ev_per_a": "path_force_mae_ev_per_a",
         "test/energy_mae_mev_per_atom": "energy_mae_mev_per_atom",
         "test/neb/barrier_error_kcal_mol": "neb_barrier_error_kcal_mol",
         "train/wall_time_s": "train_wall_time_s", "train/epochs": "train_epochs"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--system", default="sn2_cl_ch3cl")
    add("--level", default=None, help="a key of benchmark.levels (e.g. xtb); default: the "
                                      "system's own level of theory")
    add("--iterations", type=int, default=None, help="active_learning.n_iterations")
    add("--batch-size", type=int, default=None, help="selection.batch_size")
    add("--tag", default="", help="suffix of the result file (e.g. before / after)")
    add("--params", default="", help="extra kedro --params (key=value,...)")
    add("--keep-campaign", action="store_true", help="resume instead of starting afresh")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    params = load_parameters(ROOT)
    level = args.level or "own"
    base = Path("data/profile") / f"{args.system}_{level}"
    shared, campaign = base / "shared", base / "campaign"
    if not args.keep_campaign:
        shutil.rmtree(ROOT / campaign, ignore_errors=True)
    (ROOT / campaign).mkdir(parents=True, exist_ok=True)
    budget = {k: v for k, v in {"active_learning.n_iterations": args.iterations,
                                "selection.batch_size": args.batch_size}.items() if v}
    run = campaign_params(params, args.system, shared, 0, None, args.level, budget)
    run.update({"seed_root": str(campaign), "campaign_root": str(campaign),
                "labeling.cache_path": str(campaign / "label_cache.db")})
    extra = ",".join(x for x in [param_arg(run), args.params] if x)
    profile = ROOT / campaign / "profile.jsonl"
    os.environ[ENV] = str(profile)
    load0 = os.getloadavg()
    start = time.perf_counter()
    wall = kedro_run(ROOT, ["--only-missing-outputs", "--params", extra],
                     ROOT / campaign / "kedro_run.log")
    records = [json.loads(line) for line in profile.read_text().splitlines()]
    out = {"system": args.system, "level": args.level or params["systems"][args.system].get(
        "level_of_theory"), "budget": budget, "extra_params": args.params,
        "load_average_start": [round(x, 2) for x in load0],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"), **summarize(records, wall)}
    out["driver_wall_time_s"] = round(time.perf_counter() - start, 1)
    curve = load_catalog(ROOT, None, {"data_root": str(shared), "seed_root": str(campaign),
                                      "campaign_root": str(campaign)}).load("learning_curve")
    last = curve.iloc[-1]
    out["final"] = {name: float(last[col]) for col, name in FINAL.items() if col in curve}
    out["learning_curve"] = {name: [float(x) for x in curve[col]]
                             for col, name in FINAL.items() if col in curve}
    name = f"campaign_profile_{args.system}_{args.level or 'own'}" + (
        f"_{args.tag}" if args.tag else "")
    write_result(name, out)
    print(f"{args.system} ({level}): campaign {out['campaign_wall_time_s']:.0f} s, one-off "
          f"{out['one_off_s']:.0f} s, QM fraction {out['qm_fraction']}, load {load0[0]:.1f}")
    for stage, s in out["stages_s"].items():
        hidden = out["overlapped_with_qm_s"].get(stage)
        print(f"  {stage:>20}: {s:8.1f} s" + (f" ({hidden:.1f} s while the QM ran)"
                                               if hidden else ""))
    print(f"  final: {out['final']}")


if __name__ == "__main__":
    main()
