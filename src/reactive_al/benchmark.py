"""Compare query methods on one system: same pipeline, same oracle, same label budget.

``python -m reactive_al.benchmark --system sn2_cl_ch3cl`` (or ``make benchmark
SYSTEM=sn2_cl_ch3cl``) runs the ``__default__`` campaign once per method listed under
``benchmark.methods`` (``conf/base/parameters_benchmark.yml``), each as a real ``kedro run``
with that method's parameter overrides. The reference path, the pools, the test set, the
initial labels and iteration 0 are shared under ``data/benchmark/<system>/``; each method
writes its own iterations under ``data/benchmark/<system>/<method>/``. QM labels are shared
through the label cache, so a structure two methods both select is computed once.
Interrupted comparisons resume (``--only-missing-outputs``).

The result is ``data/08_reporting/benchmark_<system>.json`` (per method: labels, test errors
per iteration, barrier errors against the QM NEB, calibration, MD stability, Ramachandran
coverage for alanine dipeptide, wall time) plus learning-curve and coverage plots.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reactive_al.report import flatten

log = logging.getLogger(__name__)

#: Columns of a campaign's learning curve copied into the benchmark result.
CURVE_COLUMNS = {
    "n_labels": "n_labels",
    "test/force_mae_ev_per_a": "force_mae_ev_per_a",
    "test/force_rmse_ev_per_a": "force_rmse_ev_per_a",
    "test/energy_mae_mev_per_atom": "energy_mae_mev_per_atom",
    "test/path/force_mae_ev_per_a": "path_force_mae_ev_per_a",
    "test/neb/barrier_error_kcal_mol": "neb_barrier_error_kcal_mol",
    "test/neb/model_barrier_kcal_mol": "neb_model_barrier_kcal_mol",
    "test/neb/reaction_energy_error_kcal_mol": "reaction_energy_error_kcal_mol",
    "test/path/qm_path_barrier_error_kcal_mol": "qm_path_barrier_error_kcal_mol",
    "test/calibration/force_spearman": "force_spearman",
    "test/calibration/force_coverage_95": "force_coverage_95",
    "test/calibration/force_miscalibration_area": "force_miscalibration_area",
    "test/calibration/energy_spearman": "committee_energy_spearman",
    "test/calibration/gf_energy_spearman": "gf_energy_spearman",
    "test/calibration/gf_energy_coverage_95": "gf_energy_coverage_95",
    "test/spearman_force_uncertainty_error": "committee_spread_spearman",
    "test/wells_forgetting_ratio": "wells_forgetting_ratio",
    "test/md_stability/median_steps": "md_stability_median_steps",
}


def load_parameters(project: Path, env: str | None = None) -> dict[str, Any]:
    """The project's parameters (base, then ``local`` or ``env``)."""
    from kedro.config import OmegaConfigLoader

    from reactive_al.settings import CONFIG_LOADER_ARGS

    args = {**CONFIG_LOADER_ARGS, **({"default_run_env": env} if env else {})}
    return OmegaConfigLoader(conf_source=str(project / "conf"), **args)["parameters"]


def _flatten(overrides: dict[str, Any]) -> dict[str, Any]:
    """Nested parameter overrides as the dotted keys of ``kedro run --params``."""
    return flatten(overrides, sep=".")


def _param_arg(params: dict[str, Any]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        return str(v)

    return ",".join(f"{k}={fmt(v)}" for k, v in params.items())


def _kedro(project: Path, args: list[str], log_path: Path) -> float:
    exe = Path(sys.executable).with_name("kedro")
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "COLUMNS": "250"}
    start = time.perf_counter()
    with open(log_path, "a") as fh:
        proc = subprocess.run([str(exe), "run", *args], cwd=project, env=env, stdout=fh,
                              stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"kedro run {' '.join(args)} failed (exit {proc.returncode}); "
                           f"see {log_path}")
    return time.perf_counter() - start


def run_benchmark(
    system: str, project: Path = Path("."), methods: list[str] | None = None,
    env: str | None = None, parallel: int = 1,
) -> dict[str, Any]:
    """Run every method's campaign (resuming finished work) and write the comparison.

    The shared stage (reference path, pools, labels of the test set and of the initial pool,
    iteration 0) runs first; then the methods, ``parallel`` campaigns at a time. Training and
    MD use one core per campaign, so two campaigns on two cores nearly halve the wall time;
    each method's wall time is then measured while sharing the machine.
    """
    project = project.resolve()
    params = load_parameters(project, env)
    bench = params.get("benchmark", {})
    all_methods: dict[str, Any] = bench.get("methods", {})
    if not all_methods:
        raise ValueError("conf/base/parameters_benchmark.yml: no benchmark.methods defined")
    chosen = methods or list(all_methods)
    unknown = sorted(set(chosen) - set(all_methods))
    if unknown:
        raise ValueError(f"conf/base/parameters_benchmark.yml: unknown methods {unknown} "
                         f"(defined: {sorted(all_methods)})")
    root = Path(bench.get("root", "data/benchmark")) / system
    (project / root).mkdir(parents=True, exist_ok=True)
    log_path = project / root / "kedro_runs.log"
    timing_path = project / root / "wall_time_s.json"
    timing = json.loads(timing_path.read_text()) if timing_path.is_file() else {}
    common = {"system": system, "data_root": str(root),
              **_flatten((bench.get("systems", {}) or {}).get(system, {}).get("params", {}))}
    env_args = ["--env", env] if env else []
    shared = _kedro(project, ["--only-missing-outputs", "--to-outputs",
                              "iter_00.committee,iter_00.metrics", *env_args,
                              "--params", _param_arg(common)], log_path)
    timing["shared"] = timing.get("shared", 0.0) + shared
    timing["parallel_campaigns"] = max(1, parallel)
    timing_path.write_text(json.dumps(timing, indent=1))

    def run(method: str) -> float:
        overrides = {**common, "campaign_root": str(root / method),
                     **_flatten(all_methods[method].get("params", {}))}
        log.info("benchmark %s: method %s (%s)", system, method, overrides)
        return _kedro(project, ["--only-missing-outputs", *env_args,
                                "--params", _param_arg(overrides)],
                      project / root / f"kedro_run_{method}.log")

    from concurrent.futures import ThreadPoolExecutor, as_completed

    # each finished campaign's wall time is written at once: a stopped comparison keeps them
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        futures = {pool.submit(run, method): method for method in chosen}
        failed: list[str] = []
        for future in as_completed(futures):
            method = futures[future]
            try:
                timing[method] = timing.get(method, 0.0) + future.result()
            except RuntimeError as exc:  # the other campaigns go on; the report says which failed
                log.error("benchmark %s: %s", system, exc)
                failed.append(str(exc))
                continue
            timing_path.write_text(json.dumps(timing, indent=1))
    result = write_comparison(system, project, root, chosen, all_methods, timing,
                              bench.get("reference_method", "random"))
    if failed:  # the comparison above still covers the iterations they finished
        raise RuntimeError(f"{len(failed)} campaign(s) failed: " + "; ".join(failed))
    return result


def report_only(system: str, project: Path = Path("."), methods: list[str] | None = None,
                env: str | None = None) -> dict[str, Any]:
    """Rewrite the comparison from campaigns that have already run (no kedro run)."""
    project = project.resolve()
    bench = load_parameters(project, env).get("benchmark", {})
    root = Path(bench.get("root", "data/benchmark")) / system
    timing_path = project / root / "wall_time_s.json"
    timing = json.loads(timing_path.read_text()) if timing_path.is_file() else {}
    chosen = methods or [m for m in bench.get("methods", {})
                         if (project / root / m / "08_reporting").is_dir()]
    if not chosen:
        raise ValueError(f"{root}: no finished campaign to report")
    return write_comparison(system, project, root, chosen, bench["methods"], timing,
                            bench.get("reference_method", "random"))


def labels_to_reach(curve: pd.DataFrame, target: float, column: str = "force_mae_ev_per_a"
                    ) -> float | None:
    """Labels at which a learning curve first reaches ``target`` (linear interpolation).

    None if it never does. The curve's first point counts: a method already at the target
    needs no more labels than it started with.
    """
    x = curve["n_labels"].to_numpy(float)
    y = curve[column].to_numpy(float)
    if y[0] <= target:
        return float(x[0])
    for i in range(1, len(y)):
        if y[i] <= target:
            frac = (y[i - 1] - target) / (y[i - 1] - y[i])
            return float(x[i - 1] + frac * (x[i] - x[i - 1]))
    return None


def _curve_table(camp: Path, shared: Path) -> tuple[pd.DataFrame, bool]:
    """A campaign's learning curve; for an unfinished campaign, its evaluated iterations.

    Returns (table, complete). Unfinished iterations contribute what they evaluated: the
    summary if written, else the test metrics and the size of their training set.
    """
    csv = camp / "08_reporting/learning_curve.csv"
    if csv.is_file():
        return pd.read_csv(csv), True
    from ase.io import read

    rows = []
    for k in range(1000):
        ns = f"iter_{k:02d}"
        summary = camp / "08_reporting" / ns / "summary.json"
        metrics = [d / "08_reporting" / ns / "metrics.json" for d in (camp, shared)]
        labeled = [d / "03_primary" / f"labeled_set_{k}.extxyz" for d in (camp, shared)]
        if summary.is_file():
            rows.append(json.loads(summary.read_text()))
        elif any(m.is_file() for m in metrics) and any(f.is_file() for f in labeled):
            m = json.loads(next(m for m in metrics if m.is_file()).read_text())
            n = len(read(next(f for f in labeled if f.is_file()), index=":"))
            rows.append({"iteration": k, "n_labels": n, **{f"test/{key}": v
                                                           for key, v in m.items()}})
        else:
            break
    if not rows:
        raise ValueError(f"{camp}: no evaluated iteration to report")
    return pd.DataFrame(rows), False


def _method_result(system: str, camp: Path) -> dict[str, Any]:
    table, complete = _curve_table(camp, camp.parent)
    cols = {k: v for k, v in CURVE_COLUMNS.items() if k in table}
    curve = table[list(cols)].rename(columns=cols)
    last = curve.iloc[-1]
    out: dict[str, Any] = {
        "complete": complete,
        "iterations_evaluated": len(curve),
        "labels_total": int(last["n_labels"]),
        "labels_initial": int(curve["n_labels"].iloc[0]),
        "labels_acquired": int(last["n_labels"] - curve["n_labels"].iloc[0]),
        "final": {k: (None if pd.isna(v) else float(v)) for k, v in last.items()},
        "curve": {k: [None if pd.isna(v) else float(v) for v in curve[k]] for k in curve},
    }
    frames = _explored_frames(camp)
    out["n_explored_frames"] = len(frames)
    if system.startswith("alanine") and frames:
        from reactive_al.science_metrics import quadtree_coverage

        out["ramachandran_coverage"] = quadtree_coverage(_phi_psi(frames))
    return out


def _phi_psi(frames: list) -> np.ndarray:
    from reactive_al.science_metrics import alanine_dipeptide_phi_psi_indices, phi_psi_of_frames

    if not frames:
        return np.zeros((0, 2))
    phi, psi = alanine_dipeptide_phi_psi_indices(frames[0])
    return phi_psi_of_frames(frames, phi, psi)


def _explored_frames(camp: Path) -> list:
    from ase.io import read

    frames = []
    for path in sorted((camp / "05_model_input").glob("iter_*/candidates.extxyz")):
        frames += read(path, index=":")
    return frames


def write_comparison(
    system: str, project: Path, root: Path, methods: list[str], definitions: dict[str, Any],
    timing: dict[str, float], reference_method: str = "random",
) -> dict[str, Any]:
    """Collect every method's campaign into the benchmark JSON and plots."""
    results: dict[str, Any] = {}
    for method in methods:
        res = _method_result(system, project / root / method)
        res["description"] = definitions[method].get("description", "")
        res["wall_time_s"] = timing.get(method)
        results[method] = res
    ref_stats = project / root / "08_reporting/reference_path.json"
    out: dict[str, Any] = {
        "system": system,
        "methods": results,
        "shared_wall_time_s": timing.get("shared"),
        "parallel_campaigns": timing.get("parallel_campaigns", 1),
        "reference_path": json.loads(ref_stats.read_text()) if ref_stats.is_file() else None,
    }
    ref = results.get(reference_method)
    if ref is not None:
        out["reference_method"] = reference_method
        out["reference_final_force_mae_ev_per_a"] = ref["final"]["force_mae_ev_per_a"]
        out["reference_final_path_force_mae_ev_per_a"] = ref["final"].get(
            "path_force_mae_ev_per_a")
    for res in results.values():
        curve = pd.DataFrame(res["curve"])
        if ref is not None:
            need = labels_to_reach(curve, out["reference_final_force_mae_ev_per_a"])
            res["labels_to_reach_reference_final"] = need
            res["label_fraction_of_reference"] = (
                None if need is None else need / ref["labels_total"])
            acquired = None if need is None else need - res["labels_initial"]
            res["acquired_fraction_of_reference"] = (
                None if acquired is None or ref["labels_acquired"] == 0
                else max(acquired, 0.0) / ref["labels_acquired"])
            # the same count where the reaction happens: the path subset of the test set
            path_target = out["reference_final_path_force_mae_ev_per_a"]
            res["labels_to_reach_reference_final_path"] = (
                labels_to_reach(curve, path_target, "path_force_mae_ev_per_a")
                if path_target is not None and "path_force_mae_ev_per_a" in curve else None)
        if "neb_barrier_error_kcal_mol" in curve:  # systems with a reaction path only
            curve = curve.dropna(subset=["neb_barrier_error_kcal_mol"])
            curve["abs_barrier_error"] = curve["neb_barrier_error_kcal_mol"].abs()
            res["labels_to_barrier_within_1_kcal_mol"] = (
                labels_to_reach(curve, 1.0, "abs_barrier_error") if len(curve) else None)
    report_dir = project / "data/08_reporting"
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / f"benchmark_{system}.json"
    path.write_text(json.dumps(out, indent=1, default=_jsonable))
    (report_dir / f"benchmark_{system}.md").write_text(markdown_summary(out))
    _plots(system, project, root, results, report_dir)
    log.info("wrote %s", path)
    return out


def markdown_summary(out: dict[str, Any]) -> str:
    """A short markdown table of a comparison (final iteration of every method)."""

    def num(v: Any, fmt: str) -> str:
        return "–" if v is None else format(v, fmt)

    lines = [f"# Query methods on {out['system']}", "",
             "| method | labels | force MAE (eV/Å) | path force MAE | NEB barrier error "
             "(kcal/mol) | Spearman (force) | labels to reach random's final MAE (all / "
             "path) | labels to barrier within 1 kcal/mol | MD stability (steps) | "
             "Ramachandran coverage | wall time (min) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for method, res in out["methods"].items():
        f = res["final"]
        wall = res.get("wall_time_s")
        lines.append(
            f"| {method} | {res['labels_total']} | {num(f.get('force_mae_ev_per_a'), '.3f')} | "
            f"{num(f.get('path_force_mae_ev_per_a'), '.3f')} | "
            f"{num(f.get('neb_barrier_error_kcal_mol'), '+.2f')} | "
            f"{num(f.get('force_spearman'), '.2f')} | "
            f"{num(res.get('labels_to_reach_reference_final'), '.1f')} / "
            f"{num(res.get('labels_to_reach_reference_final_path'), '.1f')} | "
            f"{num(res.get('labels_to_barrier_within_1_kcal_mol'), '.1f')} | "
            f"{num(f.get('md_stability_median_steps'), '.0f')} | "
            f"{num(res.get('ramachandran_coverage'), '.3f')} | "
            f"{num(None if wall is None else wall / 60, '.1f')} |")
    ref = out.get("reference_path")
    if ref and "barrier_kcal_mol" in ref:
        lines += ["", f"QM climbing-image NEB reference: barrier "
                      f"{ref['barrier_kcal_mol']:.2f} kcal/mol, converged {ref['converged']} "
                      f"in {ref['steps']} steps."]
    unfinished = [m for m, r in out["methods"].items() if not r.get("complete", True)]
    if unfinished:
        lines += ["", f"Stopped before the last iteration (their last evaluated iteration is "
                      f"shown): {', '.join(unfinished)}."]
    lines += ["", f"{out.get('parallel_campaigns', 1)} campaign(s) ran at the same time."]
    return "\n".join(lines) + "\n"


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"not JSON serialisable: {type(v)}")


def _plots(system: str, project: Path, root: Path, results: dict[str, Any],
           report_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("force_mae_ev_per_a", "test force MAE (eV/Å)"),
              ("path_force_mae_ev_per_a", "path force MAE (eV/Å)"),
              ("neb_barrier_error_kcal_mol", "NEB barrier error (kcal/mol)")]
    panels = [p for p in panels if any(p[0] in r["curve"] for r in results.values())]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (col, label) in zip(axes[0], panels, strict=True):
        for method, res in results.items():
            if col in res["curve"]:
                ax.plot(res["curve"]["n_labels"], res["curve"][col], marker="o", label=method)
        if col.startswith("neb"):
            ax.axhline(0.0, color="k", lw=0.8)
        ax.set_xlabel("QM labels")
        ax.set_ylabel(label)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{system}: query methods at equal label budget")
    fig.tight_layout()
    fig.savefig(report_dir / f"benchmark_{system}_learning_curves.png", dpi=120)
    plt.close(fig)
    if system.startswith("alanine"):
        from reactive_al import plots

        maps = {m: _phi_psi(_explored_frames(project / root / m)) for m in results}
        maps = {m: a for m, a in maps.items() if len(a)}
        if maps:
            fig = plots.ramachandran_coverage(maps)
            fig.savefig(report_dir / f"benchmark_{system}_ramachandran.png", dpi=120)
            plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m reactive_al.benchmark --system <name> [--methods a,b]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", required=True, help="a system of parameters_systems.yml")
    parser.add_argument("--methods", default=None,
                        help="comma-separated subset of benchmark.methods (default: all)")
    parser.add_argument("--env", default=None, help="Kedro configuration environment")
    parser.add_argument("--project", default=".", help="project root (default: cwd)")
    parser.add_argument("--parallel", type=int, default=1,
                        help="campaigns run at the same time (default 1)")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite the JSON, table and plots from finished campaigns")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        if args.report_only:
            out = report_only(args.system, Path(args.project),
                              args.methods.split(",") if args.methods else None, args.env)
        else:
            out = run_benchmark(args.system, Path(args.project),
                                args.methods.split(",") if args.methods else None, args.env,
                                args.parallel)
    except (ValueError, RuntimeError) as exc:
        sys.exit(f"benchmark: {exc}")
    for method, res in out["methods"].items():
        f = res["final"]
        print(f"{method:>20}: {res['labels_total']} labels, force MAE "
              f"{f.get('force_mae_ev_per_a', float('nan')):.3f} eV/Å, NEB barrier error "
              f"{f.get('neb_barrier_error_kcal_mol') or float('nan'):+.2f} kcal/mol, "
              f"Spearman {f.get('force_spearman') or float('nan'):.2f}")


if __name__ == "__main__":
    main()
