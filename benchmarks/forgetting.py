"""Forgetting: warm start + replay vs retraining from scratch, on a finished campaign (no QM).

Replays the AL iterations of a campaign data directory twice or more, once per training mode,
and scores every committee on the campaign's test set: the forgetting ratio on the initial
domain (force MAE on the ``reactant``/``product`` test subsets, the wells the campaign starts
from, relative to iteration 0), the test force MAE, and the training wall time.

Two replay schemes:

* ``campaign`` (default): iteration k trains on ``labeled_set_k.extxyz`` exactly as the
  campaign did, so every mode sees the same training sets and only the training differs.
* ``query``: retrospective AL as in :func:`reactive_al.tuning.retrospective_al` — start from
  ``labeled_set_0`` and let each mode's own committee query ``selection.batch_size``
  structures per iteration from the pool ``labeled_set.extxyz`` (the campaign's selection
  settings), so a mode also shapes its training set.

Iteration 0 trains from scratch in every mode (there is nothing to continue), so it is trained
once and shared. Training settings are the project's ``training`` parameters (base + local),
with ``--mode``-specific overrides. Prints a table; writes benchmarks/results/forgetting.json.

    python benchmarks/forgetting.py [--data data] [--scheme campaign|query] [--seeds 0]
        [--replay-fractions 0.5] [--warm-start-epochs N] [--max-epochs N]
        [--warm-mode warm_start_epochs=300,warm_start_min_epochs=150 ...]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import yaml  # noqa: E402
from _results import write_result  # noqa: E402
from ase import Atoms  # noqa: E402
from ase.data import atomic_numbers  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WELLS = ("reactant", "product")


def load_campaign(data: Path) -> tuple[list[list[Atoms]], list[Atoms], list[Atoms]]:
    """Training sets ``labeled_set_0, 1, …``, the pool ``labeled_set`` and the test set."""
    from reactive_al.datasets import ExtXYZDataset

    primary = data / "03_primary"
    steps = []
    while (primary / f"labeled_set_{len(steps)}.extxyz").exists():
        steps.append(ExtXYZDataset(str(primary / f"labeled_set_{len(steps)}.extxyz")).load())
    missing = [p for p in ("labeled_set_0.extxyz", "test_set.extxyz")
               if not (primary / p).exists()]
    if missing:
        sys.exit(f"no campaign data in {data}: missing {', '.join(missing)} in {primary} "
                 "(run a campaign first, e.g. `make run`)")
    pool_file = primary / "labeled_set.extxyz"
    pool = ExtXYZDataset(str(pool_file)).load() if pool_file.exists() else steps[-1]
    return steps, pool, ExtXYZDataset(str(primary / "test_set.extxyz")).load()


def score(committee, test_set: list[Atoms]) -> dict[str, float]:
    """Test force MAE overall, on the path and on the wells (mean of the two well subsets)."""
    from reactive_al.evaluation import evaluate_committee

    m = evaluate_committee(committee, test_set)
    wells = [m[f"{w}/force_mae_ev_per_a"] for w in WELLS if f"{w}/force_mae_ev_per_a" in m]
    if not wells:
        raise SystemExit(f"the test set has no {'/'.join(WELLS)} subset: no initial domain")
    return {"force_mae_ev_per_a": float(m["force_mae_ev_per_a"]),
            "path_force_mae_ev_per_a": float(m.get("path/force_mae_ev_per_a", np.nan)),
            "energy_mae_mev_per_atom": float(m["energy_mae_mev_per_atom"]),
            "wells_force_mae_ev_per_a": float(np.mean(wells))}


def replay(
    name: str,
    fit: dict[str, Any],
    spec,
    first,
    steps: list[list[Atoms]],
    pool: list[Atoms],
    test_set: list[Atoms],
    scheme: str,
    selection: dict[str, Any],
    n_iterations: int,
    seed: int,
) -> list[dict[str, Any]]:
    """Iterations 1… of one mode, continuing from the shared iteration-0 committee ``first``."""
    from reactive_al.models import TrainingConfig, frame_key, train_committee
    from reactive_al.nested import deep_merge
    from reactive_al.tuning import QUERY_DEFAULTS, query_batch

    cfg = TrainingConfig(**fit)
    committee, train = first, list(steps[0])
    rng = np.random.default_rng(seed)
    query = deep_merge(QUERY_DEFAULTS, selection)
    rows = []
    for k in range(1, n_iterations):
        if scheme == "campaign":
            train = list(steps[k])
        else:
            have = {frame_key(a) for a in train}
            rest = [a for a in pool if frame_key(a) not in have]
            b = min(int(query["batch_size"]), len(rest))
            if b == 0:
                break
            picked, _ = query_batch(committee, train, rest, query, b, rng)
            train = train + [rest[j] for j in picked]
        t = time.perf_counter()
        committee = train_committee(train, spec, cfg, previous=committee)
        wall = time.perf_counter() - t
        rows.append({"mode": name, "iteration": k, "n_labels": len(train),
                     "train_wall_time_s": round(wall, 2), "epochs": committee.history["epochs"],
                     **score(committee, test_set)})
        print(f"  {name:22s} iter {k}: {len(train):3d} labels, "
              f"wells F-MAE {rows[-1]['wells_force_mae_ev_per_a']:.4f}, "
              f"test F-MAE {rows[-1]['force_mae_ev_per_a']:.4f} eV/Å, {wall:6.1f} s", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data", help="campaign data directory (Kedro layers)")
    parser.add_argument("--scheme", choices=("campaign", "query"), default="campaign")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="training seeds; results are averaged over them")
    parser.add_argument("--replay-fractions", type=float, nargs="+", default=None,
                        help="one warm-start mode per value (default: the project's)")
    parser.add_argument("--warm-start-epochs", type=int, default=None)
    parser.add_argument("--max-epochs", type=int, default=None,
                        help="cap every training (also from scratch), for a quick look")
    parser.add_argument("--warm-mode", action="append", default=[], metavar="KEY=VALUE,...",
                        help="one more warm-start mode with these training.fit overrides, "
                             "e.g. warm_start_epochs=300,warm_start_min_epochs=150 (repeatable)")
    parser.add_argument("--no-retrain", action="store_true",
                        help="the warm-start modes only (retrain measured in another run)")
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--name", default="forgetting", help="result file name")
    args = parser.parse_args()

    import torch

    from reactive_al.evaluation import forgetting_ratio
    from reactive_al.models import CommitteeSpec, TrainingConfig, train_committee
    from reactive_al.settings import load_parameters

    torch.set_num_threads(1)
    load0 = [round(x, 2) for x in os.getloadavg()]
    data = Path(args.data)
    if not data.is_absolute() and not data.exists():
        data = ROOT / data
    steps, pool, test_set = load_campaign(data)
    params = load_parameters(project=ROOT, env=None)
    training, selection = dict(params["training"]), dict(params.get("selection") or {})
    if args.scheme == "campaign":
        n_iterations = min(args.iterations or len(steps), len(steps))
    else:  # until the pool is used up
        batch = int(selection.get("batch_size", 8))
        n_iterations = args.iterations or 1 + -(-(len(pool) - len(steps[0])) // batch)
    base_fit = {**training["fit"]}
    if args.max_epochs:
        base_fit["max_epochs"] = args.max_epochs
        base_fit["min_epochs"] = min(base_fit.get("min_epochs", 0), args.max_epochs)
    if args.warm_start_epochs:
        base_fit["warm_start_epochs"] = args.warm_start_epochs
    fractions = args.replay_fractions or [float(base_fit.get("replay_fraction", 0.5))]
    modes = {} if args.no_retrain else {"retrain": {**base_fit, "mode": "retrain"}}
    for f in fractions:
        modes[f"warm_start(replay={f:g})"] = {**base_fit, "mode": "warm_start",
                                              "replay_fraction": f}
    for extra in args.warm_mode:
        over = {k.strip(): yaml.safe_load(v) for k, v in
                (item.split("=", 1) for item in extra.split(",") if item.strip())}
        modes[f"warm_start({extra})"] = {**base_fit, "mode": "warm_start", **over}
    symbols = sorted({s for a in [*pool, *test_set] for s in a.get_chemical_symbols()},
                     key=atomic_numbers.get)
    spec = CommitteeSpec(symbols=symbols, **training["model"])
    print(f"{data}: {len(steps)} campaign training sets ({len(steps[0])}…{len(steps[-1])} "
          f"labels), pool {len(pool)}, test {len(test_set)}; scheme {args.scheme}, "
          f"{n_iterations} iterations, seeds {args.seeds}", flush=True)

    rows: list[dict[str, Any]] = []
    for seed in args.seeds:
        fit0 = {**base_fit, "mode": "retrain", "seed": seed}
        t = time.perf_counter()
        first = train_committee(steps[0], spec, TrainingConfig(**fit0))
        wall0 = time.perf_counter() - t
        s0 = score(first, test_set)
        print(f"seed {seed}: iteration 0 ({len(steps[0])} labels, from scratch): wells F-MAE "
              f"{s0['wells_force_mae_ev_per_a']:.4f} eV/Å, {wall0:.1f} s", flush=True)
        for name, fit in modes.items():
            head = {"mode": name, "seed": seed, "iteration": 0, "n_labels": len(steps[0]),
                    "train_wall_time_s": round(wall0, 2), "epochs": first.history["epochs"], **s0}
            mode_rows = [head] + [{**r, "seed": seed} for r in replay(
                name, {**fit, "seed": seed}, spec, first, steps, pool, test_set, args.scheme,
                selection, n_iterations, seed)]
            ratio = forgetting_ratio([r["wells_force_mae_ev_per_a"] for r in mode_rows])
            for r, fr in zip(mode_rows, ratio, strict=True):
                r["wells_forgetting_ratio"] = float(fr)
            rows.extend(mode_rows)

    import pandas as pd

    table = pd.DataFrame(rows)
    per_iter = (table.groupby(["mode", "iteration"], sort=False)
                .agg(n_labels=("n_labels", "mean"),
                     forgetting_ratio=("wells_forgetting_ratio", "mean"),
                     wells_force_mae=("wells_force_mae_ev_per_a", "mean"),
                     test_force_mae=("force_mae_ev_per_a", "mean"),
                     path_force_mae=("path_force_mae_ev_per_a", "mean"),
                     train_wall_time_s=("train_wall_time_s", "mean"),
                     epochs=("epochs", "mean"))
                .reset_index())
    later = table[table["iteration"] > 0]
    last = table[table["iteration"] == table["iteration"].max()]
    summary = (pd.DataFrame({
        "final_test_force_mae": last.groupby("mode", sort=False)["force_mae_ev_per_a"].mean(),
        "final_forgetting_ratio": last.groupby("mode", sort=False)["wells_forgetting_ratio"]
        .mean(),
        "max_forgetting_ratio": later.groupby(["mode", "seed"], sort=False)[
            "wells_forgetting_ratio"].max().groupby("mode", sort=False).mean(),
        # iteration 0 is shared; this is what the mode itself costs
        "train_wall_time_s_iter_1_on": later.groupby(["mode", "seed"], sort=False)[
            "train_wall_time_s"].sum().groupby("mode", sort=False).mean(),
    }).reset_index())
    with pd.option_context("display.width", 200, "display.max_columns", 20,
                           "display.float_format", "{:.4f}".format):
        print("\nper iteration (mean over seeds):")
        print(per_iter.to_string(index=False))
        print("\nsummary (forgetting ratio = wells force MAE / iteration 0's):")
        print(summary.to_string(index=False))
    write_result(args.name, {
        "data": str(data),
        "system": str(steps[0][0].info.get("system", "?")),
        "scheme": args.scheme,
        "seeds": args.seeds,
        "n_iterations": n_iterations,
        "initial_domain": list(WELLS),
        "n_test": len(test_set),
        "training": {"model": training["model"], "fit": base_fit},
        "modes": modes,
        "machine": {"cpu": platform.processor() or platform.machine(),
                    "torch_threads": torch.get_num_threads(),
                    "load_average_start": load0,
                    "load_average_end": [round(x, 2) for x in os.getloadavg()]},
        "summary": summary.to_dict(orient="records"),
        "per_iteration": per_iter.to_dict(orient="records"),
        "rows": rows,
    })


if __name__ == "__main__":
    main()
