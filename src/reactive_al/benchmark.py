"""Compare query methods on one system: same pipeline, same oracle, same label budget.

``reactive-al benchmark --system sn2_cl_ch3cl [--seeds 3] [--level xtb] [--iterations 16
--batch-size 8]`` (or ``python -m reactive_al.benchmark``, or ``make benchmark SYSTEM=...
SEEDS=3 LEVEL=xtb``) runs the ``__default__`` campaign once per method of ``benchmark.methods``
(``conf/base/parameters_benchmark.yml``) and replicate seed, each a real ``kedro run`` with that
method's and seed's parameter overrides. Under ``data/benchmark/<name>/`` (``<system>``, or
``<system>_<level>`` with ``--level``): the QM reference path and the test set (every seed);
the pools, initial labels and iteration 0 of seed 0 (seed s: ``seed_<s>/``); each method's
iterations in ``<method>/`` below its seed. QM labels are shared through the label cache.
Interrupted comparisons resume (``--only-missing-outputs``).

The result is ``data/08_reporting/benchmark_<name>.json`` (per method and seed: labels, test
errors per iteration, barrier errors against the QM NEB, calibration, MD stability,
Ramachandran coverage for systems with ``reporting: {ramachandran: true}``, wall time; over
seeds: mean, std, min, max) plus the markdown table and learning-curve and coverage plots.

This driver uses Kedro (outside ``pipelines/``): it launches the runs and reads each campaign's
results through the project's catalog; the comparison itself is in ``evaluation.comparison``.
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
    aggregate_seeds,
    compare,
    iteration_row,
    jsonable,
    markdown_summary,
    method_result,
    phi_psi,
    seed_overrides,
)
from reactive_al.evaluation.volumes import form_volumes
from reactive_al.nested import flatten, get_path
from reactive_al.settings import load_catalog, load_parameters

log = logging.getLogger(__name__)

#: Where the comparison (JSON, markdown table, plots) is written, relative to the project.
REPORT_DIR = Path("data/08_reporting")
#: Iterations looked up in a campaign (more than any campaign runs).
MAX_ITERATIONS = 100


def param_arg(params: dict[str, Any]) -> str:
    """Dotted overrides as the one ``--params`` argument of ``kedro run``."""
    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        return "null" if v is None else str(v)

    return ",".join(f"{k}={fmt(v)}" for k, v in params.items())


def kedro_run(project: Path, args: list[str], log_path: Path) -> float:
    """``kedro run <args>`` in ``project``, output appended to ``log_path``; wall time (s)."""
    exe = Path(sys.executable).with_name("kedro")
    env = {**os.environ, "COLUMNS": "250"}  # telemetry off: reactive_al.settings
    start = time.perf_counter()
    with open(log_path, "a") as fh:
        proc = subprocess.run([str(exe), "run", *args], cwd=project, env=env, stdout=fh,
                              stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"kedro run {' '.join(args)} failed (exit {proc.returncode}); "
                           f"see {log_path}")
    return time.perf_counter() - start


def comparison_name(system: str, level: str | None = None) -> str:
    """Name of a comparison's directory and reports: ``<system>`` or ``<system>_<level>``."""
    return system if level is None else f"{system}_{level}"


def seed_root(root: Path, seed: int) -> Path:
    """Directory of a seed's pools and campaigns: ``root`` for seed 0, else ``root/seed_<s>``."""
    return Path(root) if seed == 0 else Path(root) / f"seed_{seed}"


def budget_overrides(params: dict[str, Any], iterations: int | None = None,
                     batch_size: int | None = None) -> dict[str, int]:
    """Dotted overrides of the campaign budget: the arguments, else ``benchmark.budget``."""
    conf = (params.get("benchmark", {}) or {}).get("budget") or {}
    given = {"active_learning.n_iterations": (iterations, conf.get("n_iterations")),
             "selection.batch_size": (batch_size, conf.get("batch_size"))}
    return {k: int(a if a is not None else b) for k, (a, b) in given.items()
            if (a if a is not None else b) is not None}


def _by_reference(overrides: dict[str, Any] | None, where: str) -> dict[str, Any]:
    """Nested overrides as dotted keys; a list becomes an interpolation of its ``where`` entry.

    ``kedro run --params`` splits its values on commas, so a list (e.g. NPT pressures) reaches
    the run as ``${<where>.<key>}``, resolved against the project's parameters.
    """
    return {k: f"${{{where}.{k}}}" if isinstance(v, list | tuple) else v
            for k, v in flatten(overrides or {}, sep=".").items()}


def campaign_params(params: dict[str, Any], system: str, root: Path, seed: int = 0,
                    method: str | None = None, level: str | None = None,
                    budget: dict[str, int] | None = None) -> dict[str, Any]:
    """The dotted ``kedro run --params`` of one campaign (``method=None``: the seed's stage).

    The roots (``data_root``: reference path and test set of every seed; :func:`seed_root`;
    ``<seed_root>/<method>``, and ``model_root``, iteration 0's, for a method that sets
    ``training``), the system's benchmark overrides, the ``budget``, the method's
    parameters, the ``level`` (a key of ``benchmark.levels``) and the seed's values of
    ``benchmark.seed_parameters`` (:func:`~reactive_al.evaluation.comparison.seed_overrides`).
    """
    bench = params.get("benchmark", {}) or {}
    out: dict[str, Any] = {"system": system, "data_root": str(root),
                           "seed_root": str(seed_root(root, seed))}
    if method is not None:
        out["campaign_root"] = str(seed_root(root, seed) / method)
    out.update(_by_reference(((bench.get("systems") or {}).get(system) or {}).get("params"),
                             f"benchmark.systems.{system}.params"))
    out.update(budget or {})
    if method is not None:
        method_params = bench["methods"][method].get("params", {}) or {}
        out.update(_by_reference(method_params, f"benchmark.methods.{method}.params"))
        if "training" in method_params:
            out["model_root"] = out["campaign_root"]
    if level is not None:
        levels = bench.get("levels", {}) or {}
        if level not in levels:
            raise ValueError(f"conf/base/parameters_benchmark.yml: unknown level '{level}' "
                             f"(benchmark.levels: {sorted(levels)})")
        # an interpolation replaces the whole mapping (a dotted key would merge into it)
        out[f"systems.{system}.level_of_theory"] = f"${{benchmark.levels.{level}}}"
    out.update(seed_overrides(params, seed, bench.get("seed_parameters", []) or []))
    return out


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _timing(project: Path, root: Path, seed: int) -> dict[str, Any]:
    return _read_json(project / seed_root(root, seed) / "wall_time_s.json") or {}


def _check_budget(project: Path, root: Path, params: dict[str, Any],
                  stage: dict[str, Any]) -> None:
    """Record the budget in ``root/budget.json``; stop if it holds another (reused results)."""
    budget = {key.split(".")[-1]: int(stage.get(key, get_path(params, key)))
              for key in ("active_learning.n_iterations", "selection.batch_size")}
    old = _read_json(path := project / root / "budget.json")
    if old is not None and old != budget:
        raise ValueError(f"{root} holds campaigns of budget {old}, not {budget}: remove it "
                         "or set benchmark.root to another directory")
    path.write_text(json.dumps(budget))


def run_benchmark(
    system: str, project: Path = Path("."), methods: list[str] | None = None,
    env: str | None = None, parallel: int = 1, seeds: int = 1, level: str | None = None,
    iterations: int | None = None, batch_size: int | None = None,
) -> dict[str, Any]:
    """Run every method's campaign for each seed (resuming finished work); write the comparison.

    Seed 0's stage (QM reference path, test set, its pools, initial labels, iteration 0) runs
    first, then the other seeds' stages (same reference path and test set), then every
    (seed, method) campaign, ``parallel`` at a time (one core each: each wall time, s, is
    measured while sharing the machine). ``level`` (a key of ``benchmark.levels``) replaces
    the system's level of theory, ``iterations`` and ``batch_size`` the budget.
    """
    project = project.resolve()
    params = load_parameters(project, env)
    bench = params.get("benchmark", {})
    all_methods: dict[str, Any] = bench.get("methods", {})
    if not all_methods:
        raise ValueError("conf/base/parameters_benchmark.yml: no benchmark.methods defined")
    chosen = methods or ((bench.get("systems") or {}).get(system) or {}).get("methods") or [
        m for m, d in all_methods.items() if (d or {}).get("default", True)]
    unknown = sorted(set(chosen) - set(all_methods))
    if unknown:
        raise ValueError(f"conf/base/parameters_benchmark.yml: unknown methods {unknown} "
                         f"(defined: {sorted(all_methods)})")
    if seeds < 1:
        raise ValueError("--seeds must be at least 1")
    root = Path(bench.get("root", "data/benchmark")) / comparison_name(system, level)
    budget, seed_list = budget_overrides(params, iterations, batch_size), list(range(seeds))
    stage0 = campaign_params(params, system, root, 0, None, level, budget)  # checks the level
    for s in seed_list:
        (project / seed_root(root, s)).mkdir(parents=True, exist_ok=True)
    _check_budget(project, root, params, stage0)
    timings = {s: _timing(project, root, s) for s in seed_list}
    env_args = ["--env", env] if env else []

    def run(s: int, method: str | None) -> float:  # method None: the seed's shared stage
        args = campaign_params(params, system, root, s, method, level, budget)
        log.info("benchmark %s: seed %d, %s (%s)", system, s, method or "shared stage", args)
        shared = "iter_00.committee,iter_00.metrics,test_set_stats"
        stage = [] if method else ["--to-outputs", shared]
        return kedro_run(project, ["--only-missing-outputs", *stage, *env_args, "--params",
                                param_arg(args)], project / seed_root(root, s) /
                      (f"kedro_run_{method}.log" if method else "kedro_runs.log"))

    def record(s: int, key: str, seconds: float) -> None:
        timings[s].update({key: timings[s].get(key, 0.0) + seconds,
                           "parallel_campaigns": max(1, parallel)})
        (project / seed_root(root, s) / "wall_time_s.json").write_text(
            json.dumps(timings[s], indent=1))

    from concurrent.futures import ThreadPoolExecutor, as_completed

    record(0, "shared", run(0, None))  # the reference path and test set every seed uses
    failed: list[str] = []
    ready = [0]
    # each finished campaign's wall time is written at once: a stopped comparison keeps them
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        for phase in ("stages", "campaigns"):
            futures = ({pool.submit(run, s, None): (s, "shared") for s in seed_list[1:]}
                       if phase == "stages" else
                       {pool.submit(run, s, m): (s, m) for s in ready for m in chosen})
            for future in as_completed(futures):
                s, key = futures[future]
                try:
                    record(s, key, future.result())
                except RuntimeError as exc:  # the others go on; the report says which failed
                    log.error("benchmark %s: seed %d: %s", system, s, exc)
                    failed.append(str(exc))
                    continue
                if key == "shared":
                    ready.append(s)
            ready.sort()
    result = write_comparison(system, project, root, chosen, all_methods, timings[0],
                              bench.get("reference_method", "random"), env=env, params=params,
                              seeds=seed_list, level=level)
    if failed:  # the comparison above still covers the iterations they finished
        raise RuntimeError(f"{len(failed)} run(s) failed: " + "; ".join(failed))
    return result


def report_only(system: str, project: Path = Path("."), methods: list[str] | None = None,
                env: str | None = None, seeds: int | None = None, level: str | None = None
                ) -> dict[str, Any]:
    """Rewrite the comparison from campaigns that have already run (no kedro run).

    ``seeds``: seeds 0 … seeds-1, default every seed directory found.
    """
    project = project.resolve()
    params = load_parameters(project, env)
    bench = params.get("benchmark", {})
    root = Path(bench.get("root", "data/benchmark")) / comparison_name(system, level)
    found = [p.name.removeprefix("seed_") for p in (project / root).glob("seed_*")]
    seed_list = ([0, *sorted(int(n) for n in found if n.isdigit())] if seeds is None
                 else list(range(seeds)))
    chosen = methods or [m for m in bench.get("methods", {})
                         if _campaign_started(campaign_catalog(project, root, m, env))]
    if not chosen:
        raise ValueError(f"{root}: no finished campaign to report")
    return write_comparison(system, project, root, chosen, bench["methods"],
                            _timing(project, root, 0), bench.get("reference_method", "random"),
                            env=env, params=params, seeds=seed_list, level=level)


def campaign_catalog(project: Path, root: Path, method: str | None = None,
                     env: str | None = None, seed: int = 0):  # noqa: ANN201
    """The catalog of one method's campaign of one seed: shared data under ``root``.

    ``method=None`` gives the seed's stage's catalog (what every method of that seed reads).
    """
    sroot = seed_root(root, seed)
    campaign = sroot / method if method else sroot
    return load_catalog(project, env, {"data_root": str(root), "seed_root": str(sroot),
                                       "campaign_root": str(campaign)})


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
    params: dict[str, Any] | None = None, seeds: list[int] | None = None,
    level: str | None = None,
) -> dict[str, Any]:
    """Collect every campaign, read through the catalog, into the JSON, table and plots.

    ``root``: the comparison's data root (relative to ``project``); ``timing``: seed 0's wall
    times (s), other seeds' are read from their ``wall_time_s.json``. A seed > 0 without a
    campaign of a method is left out for it. JSON: ``methods`` the first seed's results (as a
    single-seed comparison), ``by_seed`` every seed's, ``aggregate`` their statistics
    (``aggregate_seeds``). ``params`` (default: the project's): ``reporting`` options.
    """
    project = Path(project).resolve()
    params = load_parameters(project, env) if params is None else params
    seeds = list(seeds or [0])
    ramachandran = bool(reporting_options(params, system).get("ramachandran", False))
    forms = form_volumes(system, params.get("systems", {}), project)  # crystals: explored V
    shared = campaign_catalog(project, root, None, env)
    ref_stats = (shared.load("reference_path_stats")
                 if shared.exists("reference_path_stats") else None)
    by_seed: dict[int, dict[str, Any]] = {}
    explored: dict[str, list] = {}
    for s in seeds:
        seed_timing = timing if s == 0 else _timing(project, root, s)
        results: dict[str, Any] = {}
        for method in methods:
            catalog = campaign_catalog(project, root, method, env, seed=s)
            if s != 0 and not _campaign_started(catalog):
                log.warning("benchmark %s: seed %d has no %s campaign", system, s, method)
                continue
            table, complete = _curve_table(catalog, seed_root(root, s) / method)
            frames = _explored_frames(catalog)
            res = method_result(table, complete, frames, ramachandran=ramachandran, forms=forms)
            res["description"] = definitions[method].get("description", "")
            res["wall_time_s"] = seed_timing.get(method)
            results[method] = res
            if (ramachandran or forms) and s == seeds[0]:
                explored[method] = frames
        by_seed[s] = compare(system, results, seed_timing, ref_stats, reference_method)
    name = comparison_name(system, level)
    out = {**by_seed[seeds[0]], "name": name, "level": level,
           "level_of_theory": get_path(params, f"benchmark.levels.{level}") if level
           else get_path(params, f"systems.{system}.level_of_theory"),
           "budget": _read_json(project / root / "budget.json"), "seeds": seeds,
           "shared_wall_time_s_per_seed": {str(s): o["shared_wall_time_s"]
                                           for s, o in by_seed.items()},
           "by_seed": {str(s): o["methods"] for s, o in by_seed.items()},
           "aggregate": aggregate_seeds({s: o["methods"] for s, o in by_seed.items()},
                                        reference_method)}
    report_dir = project / REPORT_DIR
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / f"benchmark_{name}.json"
    path.write_text(json.dumps(out, indent=1, default=jsonable))
    (report_dir / f"benchmark_{name}.md").write_text(markdown_summary(out))
    import matplotlib.pyplot as plt

    from reactive_al.evaluation import plots  # selects the Agg backend before any figure

    for kind, fig in plots.comparison_figures(
            name, out, {m: phi_psi(f) for m, f in explored.items()} if ramachandran else {},
            {m: [a.get_volume() for a in f] for m, f in explored.items()} if forms else {},
            forms).items():
        fig.savefig(report_dir / f"benchmark_{name}_{kind}.png", dpi=120)
        plt.close(fig)
    log.info("wrote %s", path)
    return out


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    """Command line: ``reactive-al benchmark --system <name> [--seeds N] [--level xtb] ...``.

    ``prog`` names the command in ``--help`` (default ``python -m reactive_al.benchmark``).
    """
    parser = argparse.ArgumentParser(prog=prog or "python -m reactive_al.benchmark",
                                     description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--system", required=True, help="a system of parameters_systems.yml")
    add("--methods", default=None, help="comma-separated subset of benchmark.methods")
    add("--seeds", type=int, default=None, help="seeds 0 … N-1 (default 1; report: all found)")
    add("--level", default=None, help="a level of benchmark.levels (e.g. xtb) for every label")
    add("--iterations", type=int, default=None, help="AL iterations per campaign")
    add("--batch-size", type=int, default=None, help="labels acquired per iteration")
    add("--env", default=None, help="Kedro configuration environment")
    add("--project", default=".", help="project root (default: cwd)")
    add("--parallel", type=int, default=1, help="campaigns run at the same time (default 1)")
    add("--report-only", action="store_true",
        help="rewrite the JSON, table and plots from finished campaigns")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    methods = args.methods.split(",") if args.methods else None
    try:
        if args.report_only:
            out = report_only(args.system, Path(args.project), methods, args.env, args.seeds,
                              args.level)
        else:
            out = run_benchmark(args.system, Path(args.project), methods, args.env,
                                args.parallel, args.seeds or 1, args.level, args.iterations,
                                args.batch_size)
    except (ValueError, RuntimeError) as exc:
        sys.exit(f"benchmark: {exc}")
    for method, agg in out["aggregate"]["methods"].items():
        f = {k: v["mean"] or float("nan") for k, v in agg["final"].items()}
        std = agg["final"]["force_mae_ev_per_a"]["std"]
        print(f"{method:>20}: {agg['labels_total']['mean']:.0f} labels, {len(agg['seeds'])} "
              f"seed(s): force MAE {f['force_mae_ev_per_a']:.3f}"
              f"{'' if std is None else f' ± {std:.3f}'} eV/Å, NEB barrier error "
              f"{f.get('neb_barrier_error_kcal_mol', float('nan')):+.2f} kcal/mol, "
              f"Spearman {f.get('force_spearman', float('nan')):.2f}")


if __name__ == "__main__":
    main()
