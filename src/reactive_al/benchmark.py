"""Compare query methods on one system: same pipeline, same oracle, same label budget.

``reactive-al benchmark --system sn2_cl_ch3cl`` (or ``python -m reactive_al.benchmark``, or
``make benchmark SYSTEM=sn2_cl_ch3cl``) runs the ``__default__`` campaign once per method
listed under ``benchmark.methods`` (``conf/base/parameters_benchmark.yml``), each as a real
``kedro run`` with that method's parameter overrides. The reference path, the pools, the test
set, the initial labels and iteration 0 are shared under ``data/benchmark/<system>/``; each method
writes its own iterations under ``data/benchmark/<system>/<method>/``. QM labels are shared
through the label cache, so a structure two methods both select is computed once.
Interrupted comparisons resume (``--only-missing-outputs``).

The result is ``data/08_reporting/benchmark_<system>.json`` (per method: labels, test errors
per iteration, barrier errors against the QM NEB, calibration, MD stability, Ramachandran
coverage for systems with ``reporting: {ramachandran: true}`` in ``parameters_systems.yml``,
wall time) plus learning-curve and coverage plots.

This driver is the one place outside ``pipelines/`` that uses Kedro: it launches the runs and
reads each campaign's results through the project's catalog (``learning_curve``,
``iter_NN.summary``, ``labeled_set_{k}``, ``iter_NN.candidates`` ... with the campaign's
``data_root`` / ``campaign_root``); the comparison itself is
:mod:`reactive_al.evaluation.comparison`.
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

import pandas as pd

from reactive_al.evaluation.comparison import (
    compare,
    iteration_row,
    jsonable,
    learning_curve_panels,
    markdown_summary,
    method_result,
    phi_psi,
)
from reactive_al.nested import flatten
from reactive_al.settings import load_catalog, load_parameters

log = logging.getLogger(__name__)

#: Where the comparison (JSON, markdown table, plots) is written, relative to the project.
REPORT_DIR = Path("data/08_reporting")
#: Iterations looked up in a campaign (more than any campaign runs).
MAX_ITERATIONS = 100


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
                              bench.get("reference_method", "random"), env=env, params=params)
    if failed:  # the comparison above still covers the iterations they finished
        raise RuntimeError(f"{len(failed)} campaign(s) failed: " + "; ".join(failed))
    return result


def report_only(system: str, project: Path = Path("."), methods: list[str] | None = None,
                env: str | None = None) -> dict[str, Any]:
    """Rewrite the comparison from campaigns that have already run (no kedro run)."""
    project = project.resolve()
    params = load_parameters(project, env)
    bench = params.get("benchmark", {})
    root = Path(bench.get("root", "data/benchmark")) / system
    timing_path = project / root / "wall_time_s.json"
    timing = json.loads(timing_path.read_text()) if timing_path.is_file() else {}
    chosen = methods or [m for m in bench.get("methods", {})
                         if _campaign_started(campaign_catalog(project, root, m, env))]
    if not chosen:
        raise ValueError(f"{root}: no finished campaign to report")
    return write_comparison(system, project, root, chosen, bench["methods"], timing,
                            bench.get("reference_method", "random"), env=env, params=params)


def campaign_catalog(project: Path, root: Path, method: str | None = None,
                     env: str | None = None):  # noqa: ANN201
    """The catalog of one method's campaign: shared data under ``root``, its own below.

    ``method=None`` gives the shared stage's catalog (what every method reads).
    """
    campaign = root / method if method else root
    return load_catalog(project, env, {"data_root": str(root), "campaign_root": str(campaign)})


def _campaign_started(catalog: Any) -> bool:
    """Whether a method's campaign evaluated anything of its own (beyond the shared stage)."""
    return catalog.exists("learning_curve") or catalog.exists("iter_00.summary")


def _curve_table(catalog: Any, where: Path) -> tuple[pd.DataFrame, bool]:
    """A campaign's learning curve; for an unfinished campaign, its evaluated iterations.

    Returns (table, complete). Unfinished iterations contribute what they evaluated: the
    summary if written, else the test metrics and the size of their training set.
    """
    if catalog.exists("learning_curve"):
        return catalog.load("learning_curve"), True
    rows = []
    for k in range(MAX_ITERATIONS):
        ns = f"iter_{k:02d}"
        if catalog.exists(f"{ns}.summary"):
            rows.append(catalog.load(f"{ns}.summary"))
        elif catalog.exists(f"{ns}.metrics") and catalog.exists(f"labeled_set_{k}"):
            rows.append(iteration_row(k, catalog.load(f"{ns}.metrics"),
                                      len(catalog.load(f"labeled_set_{k}"))))
        else:
            break
    if not rows:
        raise ValueError(f"{where}: no evaluated iteration to report")
    return pd.DataFrame(rows), False


def _explored_frames(catalog: Any) -> list:
    """Every candidate frame a campaign's exploration produced, iteration by iteration."""
    frames: list = []
    for k in range(MAX_ITERATIONS):
        if catalog.exists(f"iter_{k:02d}.candidates"):
            frames += catalog.load(f"iter_{k:02d}.candidates")
    return frames


def reporting_options(params: dict[str, Any], system: str) -> dict[str, Any]:
    """The system's ``reporting`` key of ``parameters_systems.yml`` (e.g. ``ramachandran``)."""
    return dict((params.get("systems", {}).get(system, {}) or {}).get("reporting", {}) or {})


def write_comparison(
    system: str, project: Path, root: Path, methods: list[str], definitions: dict[str, Any],
    timing: dict[str, float], reference_method: str = "random", env: str | None = None,
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Collect every method's campaign, read through the catalog, into the JSON and plots.

    ``root`` is the comparison's shared data root (relative to ``project``); each method's
    campaign is under ``root/<method>``. ``params`` (default: the project's) give the
    system's ``reporting`` options.
    """
    project = Path(project).resolve()
    params = load_parameters(project, env) if params is None else params
    ramachandran = bool(reporting_options(params, system).get("ramachandran", False))
    results: dict[str, Any] = {}
    explored: dict[str, list] = {}
    for method in methods:
        catalog = campaign_catalog(project, root, method, env)
        table, complete = _curve_table(catalog, root / method)
        frames = _explored_frames(catalog)
        res = method_result(table, complete, frames, ramachandran=ramachandran)
        res["description"] = definitions[method].get("description", "")
        res["wall_time_s"] = timing.get(method)
        results[method] = res
        if ramachandran:
            explored[method] = frames
    shared = campaign_catalog(project, root, None, env)
    ref_stats = (shared.load("reference_path_stats")
                 if shared.exists("reference_path_stats") else None)
    out = compare(system, results, timing, ref_stats, reference_method)
    report_dir = project / REPORT_DIR
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / f"benchmark_{system}.json"
    path.write_text(json.dumps(out, indent=1, default=jsonable))
    (report_dir / f"benchmark_{system}.md").write_text(markdown_summary(out))
    _plots(system, results, explored, report_dir)
    log.info("wrote %s", path)
    return out


def _plots(system: str, results: dict[str, Any], explored: dict[str, list],
           report_dir: Path) -> None:
    """Learning curves of every method and, if ``explored`` is given, Ramachandran maps."""
    import matplotlib.pyplot as plt

    from reactive_al.evaluation import plots  # selects the Agg backend before any figure

    panels = learning_curve_panels(results)
    fig = plots.learning_curves(panels)
    for ax, label in zip(fig.axes, panels, strict=False):
        if label.startswith("NEB"):
            ax.axhline(0.0, color="k", lw=0.8)
    fig.suptitle(f"{system}: query methods at equal label budget")
    fig.tight_layout()
    fig.savefig(report_dir / f"benchmark_{system}_learning_curves.png", dpi=120)
    plt.close(fig)
    maps = {m: phi_psi(frames) for m, frames in explored.items()}
    maps = {m: a for m, a in maps.items() if len(a)}
    if maps:
        fig = plots.ramachandran_coverage(maps)
        fig.savefig(report_dir / f"benchmark_{system}_ramachandran.png", dpi=120)
        plt.close(fig)


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    """Command line: ``reactive-al benchmark --system <name> [--methods a,b] [--parallel N]``.

    ``prog`` names the command in ``--help`` (``reactive-al benchmark`` from the console
    script, else ``python -m reactive_al.benchmark``).
    """
    parser = argparse.ArgumentParser(prog=prog or "python -m reactive_al.benchmark",
                                     description=__doc__.splitlines()[0])
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
