"""Optuna tuning of the query hyperparameters on the SN2 campaign's labeled pool (no new QM).

Needs a finished default campaign (`make run`): replays active learning on
data/03_primary/labeled_set.extxyz, scored on data/03_primary/test_set.extxyz, with the
project's parameters (base + local, including conf/base/parameters_tuning.yml). The study
lives in its own SQLite file, so the project's `tuning` study is not touched. Prints the
trials and writes benchmarks/results/tuning_sn2.json (baseline = trial 0 = the current
settings, best trial, every trial with its learning curve).

    python benchmarks/tuning_sn2.py [--trials 24] [--resume] [--pareto]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks/results"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--resume", action="store_true",
                        help="add trials to the previous benchmark study instead of a new one")
    parser.add_argument("--pareto", action="store_true",
                        help="two objectives (force MAE, labels used) with the budget tuned")
    args = parser.parse_args()
    if args.trials < 1:
        parser.error("--trials must be positive")

    import torch

    from reactive_al.datasets import ExtXYZDataset
    from reactive_al.settings import load_parameters
    from reactive_al.tuning import run_study

    torch.set_num_threads(1)
    params = load_parameters(project=ROOT, env=None)
    pool = ExtXYZDataset(str(ROOT / "data/03_primary/labeled_set.extxyz")).load()
    test = ExtXYZDataset(str(ROOT / "data/03_primary/test_set.extxyz")).load()
    tuning = dict(params["tuning"])
    name = "sn2_pareto" if args.pareto else "sn2"
    db = RESULTS / f"tuning_{name}.db"
    if db.exists() and not args.resume:
        db.unlink()
    study = {**tuning["study"], "name": name, "storage": f"sqlite:///{db}", "storage_env": None}
    if args.pareto:
        study["objectives"] = [{"metric": "force_mae_ev_per_a", "direction": "minimize"},
                               {"metric": "n_labels", "direction": "minimize"}]
        budget = int(tuning["replay"]["budget"])
        low = int(tuning["replay"]["n_initial"]) + 4
        tuning["search_space"] = {**tuning["search_space"], "replay.budget": {
            "type": "int", "low": min(low, budget), "high": max(budget, low + 4), "step": 4}}
    tuning["study"] = study
    print(f"pool {len(pool)} labeled structures, test set {len(test)}; replay "
          f"{tuning['replay']}; {args.trials} trials -> {db}")

    t0 = time.perf_counter()
    result = run_study(pool, test, tuning, selection=params["selection"],
                       training=params["training"], n_trials=args.trials)
    wall = time.perf_counter() - t0

    table = result.trials
    print(table.drop(columns=["mlflow_run_id"]).to_string(index=False))
    summary = result.summary
    print(f"best trial {summary['best_trial']}: {summary['best_values']}")
    print(f"baseline (trial 0): {summary.get('baseline_values')}")
    print("best_query_params:", json.dumps(result.best_params))

    histories = {t.number: t.user_attrs.get("history") for t in result.study.trials}
    out = {
        "system": params.get("system"),
        "pool_size": len(pool),
        "test_size": len(test),
        "replay": tuning["replay"],
        "training_overrides": tuning.get("training"),
        "search_space": tuning["search_space"],
        "summary": summary,
        "best_query_params": result.best_params,
        # to_json turns NaN (pruned trials' missing values) into null
        "trials": json.loads(table.to_json(orient="records")),
        "learning_curves": {str(k): v for k, v in histories.items() if v},
        "wall_time_s": round(wall, 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "torch_threads": torch.get_num_threads()},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"tuning_{name}.json"
    path.write_text(json.dumps(out, indent=2, default=str))
    print(f"wrote {path} ({wall / 60:.1f} min)")


if __name__ == "__main__":
    main()
