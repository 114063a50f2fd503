"""Optuna plumbing of the query-hyperparameter tuning: storage, sampler, pruner, objectives.

:func:`run_study` runs an Optuna study of retrospective AL replays
(:func:`~reactive_al.tuning.replay.retrospective_al`) with resumable storage, pruning on
intermediate AL steps and one nested MLflow run per trial, and returns the best settings in
the shape of the ``selection``/``training`` parameter blocks.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from ase import Atoms

from reactive_al.nested import flatten, nest, set_path
from reactive_al.tracking import nested_run
from reactive_al.tuning.replay import (
    DEFAULT_BUDGET,
    DEFAULT_N_INITIAL,
    PARAMS_FILE,
    check_query,
    check_training,
    replay_sizes,
    retrospective_al,
)
from reactive_al.tuning.space import (
    base_config,
    baseline_params,
    plain,
    suggest,
    validate_search_space,
)

if TYPE_CHECKING:
    import mlflow
    import optuna

log = logging.getLogger(__name__)

#: Blocks of the search space that go into the best-params file (``replay.*`` does not).
OUTPUT_BLOCKS = ("selection", "training")
#: Metric names usable as objectives besides those of :func:`evaluate_committee`.
EXTRA_METRICS = ("n_labels",)


@dataclass
class TuningResult:
    """Outcome of :func:`run_study`."""

    study: optuna.Study
    best_params: dict[str, Any]
    summary: dict[str, Any]
    trials: pd.DataFrame


def _objectives(study_cfg: Mapping[str, Any]) -> list[dict[str, str]]:
    objs = study_cfg.get("objectives") or [{"metric": "force_mae_ev_per_a"}]
    out = []
    for o in objs:
        o = {"metric": o} if isinstance(o, str) else dict(o)
        o.setdefault("direction", "minimize")
        if o["direction"] not in ("minimize", "maximize"):
            raise ValueError(f"{PARAMS_FILE}: objective direction must be minimize or maximize, "
                             f"got {o['direction']!r}")
        out.append(o)
    return out


def storage_url(study_cfg: Mapping[str, Any]) -> str | None:
    """Optuna storage URL: the ``storage_env`` variable when set, else ``storage``.

    An SQLite file's folder is created, so the embedded default works on a fresh checkout.
    """
    env = study_cfg.get("storage_env")
    url = (os.environ.get(env) if env else None) or study_cfg.get("storage")
    if url and url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    return url


def safe_url(url: str | None) -> str | None:
    """A storage URL fit for logs and reports: the password masked."""
    if not url:
        return None
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not an RDB URL: nothing we know how to mask
        return url


def _sampler_seed(seed: int, worker: int, n_existing: int) -> int:
    # TPE's random start-up draws depend only on the seed, so a resumed study (or a second
    # worker) with the same seed would re-propose the first trials' settings: mix in where
    # this run starts so it stays reproducible without repeating itself.
    return int(np.random.SeedSequence([seed, worker, n_existing]).generate_state(1)[0])


def _pruner(study_cfg: Mapping[str, Any], multi: bool) -> optuna.pruners.BasePruner:
    import optuna

    cfg = study_cfg.get("pruner")
    if multi or not cfg:
        # optuna has no pruning for multi-objective studies (Trial.report raises)
        return optuna.pruners.NopPruner()
    kind = cfg.get("type", "median")
    if kind != "median":
        raise ValueError(f"{PARAMS_FILE}: tuning.study.pruner.type must be median, got {kind!r}")
    return optuna.pruners.MedianPruner(
        n_startup_trials=int(cfg.get("n_startup_trials", 5)),
        n_warmup_steps=int(cfg.get("n_warmup_steps", 0)),
        n_min_trials=int(cfg.get("n_min_trials", 1)),
    )


def open_study(study_cfg: Mapping[str, Any]) -> optuna.Study:
    """Create, or load by name (``load_if_exists``), the study described by ``study_cfg``.

    The sampler is a seeded TPE sampler; its seed also depends on ``worker`` and on how many
    trials the study already holds (see :func:`_sampler_seed`).
    """
    import optuna

    objectives = _objectives(study_cfg)
    directions = [o["direction"] for o in objectives]
    url = storage_url(study_cfg)
    name = study_cfg.get("name", "query_hyperparameters")
    study = optuna.create_study(storage=url, study_name=name, load_if_exists=True,
                                directions=directions,
                                pruner=_pruner(study_cfg, len(directions) > 1))
    found = [d.name.lower() for d in study.directions]
    if found != directions:
        raise ValueError(f"{PARAMS_FILE}: study {name!r} in {safe_url(url)} has directions "
                         f"{found}, the parameters ask for {directions}; choose another "
                         f"tuning.study.name")
    # the seed depends on the stored trials, known only once the study is open
    study.sampler = optuna.samplers.TPESampler(
        seed=_sampler_seed(int(study_cfg.get("seed", 0)), int(study_cfg.get("worker", 0)),
                           len(study.trials)),
        n_startup_trials=int(study_cfg.get("n_startup_trials", 10)),
        multivariate=bool(study_cfg.get("multivariate", False)),
    )
    with warnings.catch_warnings():
        # experimental since optuna 3.2, stable in use; names make the dashboard readable
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([o["metric"] for o in objectives])
    return study


class _TrialLog:
    """What a trial records on its nested MLflow run; nothing when ``run`` is None."""

    def __init__(self, run: mlflow.ActiveRun | None):
        import mlflow

        self.mlflow = mlflow
        self.run = run

    @property
    def run_id(self) -> str | None:
        return self.run.info.run_id if self.run else None

    def log_params(self, params: Mapping[str, Any]) -> None:
        if self.run:
            self.mlflow.log_params({k: str(v)[:500] for k, v in params.items()})

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        if self.run:
            ok = {k: float(v) for k, v in metrics.items()
                  if isinstance(v, int | float) and math.isfinite(float(v))}
            self.mlflow.log_metrics(ok, step=step)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if self.run:
            self.mlflow.set_tags({k: str(v) for k, v in tags.items()})


def make_objective(
    pool: list[Atoms],
    test_set: list[Atoms],
    space: Mapping[str, Mapping[str, Any]],
    base: Mapping[str, Any],
    objectives: list[dict[str, str]],
    report_every: int,
    study_name: str,
) -> Callable[[optuna.Trial], float | tuple[float, ...]]:
    """Optuna objective: suggest settings, replay AL, return the objective metric(s).

    Single-objective trials report the first objective at label-count checkpoints (multiples
    of ``report_every`` above the initial set) so the pruner compares trials at equal label
    cost even when the batch size is tuned; each checkpoint gets the first model trained on at
    least that many labels, which judges large batches a little leniently, never harshly.
    """
    import optuna

    metrics_names = [o["metric"] for o in objectives]
    multi = len(objectives) > 1

    def objective(trial: optuna.Trial) -> float | tuple[float, ...]:
        values = suggest(trial, space, base)
        cfg = copy.deepcopy(dict(base))
        for path, v in values.items():
            set_path(cfg, path, v)
        replay = cfg["replay"]
        n_initial = replay.get("n_initial", DEFAULT_N_INITIAL)
        budget = replay.get("budget", DEFAULT_BUDGET)
        n_budget = replay_sizes(len(pool), n_initial, budget)[1]
        with nested_run(f"trial_{trial.number}", killed=(optuna.TrialPruned,)) as active:
            run = _TrialLog(active)
            trial.set_user_attr("mlflow_run_id", run.run_id)
            run.set_tags({"optuna.study_name": study_name, "optuna.trial_number": trial.number})
            run.log_params({**values,
                            **{f"config.{k}": v for k, v in flatten(cfg, sep=".").items()}})
            reported: set[int] = set()
            start: list[int] = []

            def on_step(n_labels: int, metrics: dict[str, float]) -> None:
                run.log_metrics(metrics, step=n_labels)
                if multi:
                    return
                if not start:
                    # no query has acted yet: the first model says nothing about the strategy
                    start.append(n_labels)
                    return
                value = metrics.get(metrics_names[0], float("nan"))
                for c in range(report_every, n_labels + 1, report_every):
                    if c > start[0] and c not in reported:
                        reported.add(c)
                        trial.report(value, step=c)
                # at the budget the replay is done: its value is final, not a reason to prune
                if n_labels < n_budget and trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at {n_labels} labels")

            try:
                result = retrospective_al(
                    pool, test_set, cfg["selection"], cfg["training"],
                    budget=budget, n_initial=n_initial,
                    seed=int(replay.get("seed", 0)), on_step=on_step,
                )
            except optuna.TrialPruned:
                run.set_tags({"optuna.state": "PRUNED"})  # the nested run ends KILLED
                raise
            except BaseException:
                # also on Ctrl-C; the nested run ends FAILED
                run.set_tags({"optuna.state": "FAIL"})
                raise
            final = {**result["final"], "n_labels": result["n_labels"]}
            missing = [m for m in metrics_names if m not in final]
            if missing:
                raise ValueError(f"{PARAMS_FILE}: unknown objective metric(s) {missing}; "
                                 f"available: {sorted(final)}")
            out = [float(final[m]) for m in metrics_names]
            trial.set_user_attr("history", [{k: plain(v) for k, v in h.items()}
                                            for h in result["history"]])
            trial.set_user_attr("wall_time_s", result["wall_time_s"])
            run.log_metrics({f"objective/{m}": v
                             for m, v in zip(metrics_names, out, strict=True)})
            run.log_metrics({"wall_time_s": result["wall_time_s"]})
            run.set_tags({"optuna.state": "COMPLETE"})
        return tuple(out) if multi else out[0]

    return objective


def pick_best(study: optuna.Study) -> optuna.trial.FrozenTrial:
    """The best trial; for several objectives the Pareto trial best in the first objective."""
    if len(study.directions) == 1:
        return study.best_trial
    front = study.best_trials
    if not front:
        raise ValueError("no completed trial")
    sign = [1 if d.name.lower() == "minimize" else -1 for d in study.directions]
    return min(front, key=lambda t: tuple(s * v for s, v in zip(sign, t.values, strict=True)))


def best_query_params(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """A trial's tuned values nested like the ``selection``/``training`` parameter blocks.

    Only paths in those blocks are kept (``replay.*`` describes the replay, not the campaign),
    so the result can be dropped into ``conf/local/`` as a parameters file.
    """
    kept = {p: plain(v) for p, v in trial.params.items() if p.split(".", 1)[0] in OUTPUT_BLOCKS}
    return nest(kept)


def trials_table(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, objective values by metric name, params, run id."""
    names = study.metric_names or [f"value_{i}" for i in range(len(study.directions))]
    rows = []
    for t in study.trials:
        row: dict[str, Any] = {"number": t.number, "state": t.state.name}
        values = t.values or [None] * len(names)
        row.update(dict(zip(names, values, strict=True)))
        row["duration_s"] = t.duration.total_seconds() if t.duration else None
        row["last_step"] = t.last_step
        row.update(t.params)
        row["mlflow_run_id"] = t.user_attrs.get("mlflow_run_id")
        rows.append(row)
    return pd.DataFrame(rows)


def run_study(
    pool: list[Atoms],
    test_set: list[Atoms],
    tuning: Mapping[str, Any],
    selection: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
    n_trials: int | None = None,
) -> TuningResult:
    """Run ``n_trials`` more retrospective-AL trials of the study in ``tuning.study``.

    ``tuning`` is the ``tuning`` parameter block (``study``, ``replay``, ``query``,
    ``training``, ``search_space``); ``selection``/``training`` are the campaign's blocks,
    the starting point of every trial. A new study first runs the current settings (as far
    as they lie in the search space), so the baseline is always trial 0. With an active MLflow
    run every trial is a nested run ``trial_<n>`` and the best value(s) go on the parent run.
    """
    import optuna

    study_cfg = dict(tuning.get("study") or {})
    space = dict(tuning.get("search_space") or {})
    validate_search_space(space)
    objectives = _objectives(study_cfg)
    for o in objectives:
        if o["metric"] in EXTRA_METRICS:
            continue
        if not ("_mae_" in o["metric"] or "_rmse_" in o["metric"]):
            raise ValueError(f"{PARAMS_FILE}: objective metric {o['metric']!r} is not a test "
                             f"error (…_mae_…/…_rmse_…) or one of {list(EXTRA_METRICS)}")
    base = base_config(tuning, selection, training)
    check_query(base["selection"])
    check_training(base["training"])
    # fail before the first trial rather than in every one of them
    replay = base["replay"]
    budget_space = space.get("replay.budget")
    for budget in ([budget_space["low"], budget_space["high"]] if budget_space
                   else [replay.get("budget", DEFAULT_BUDGET)]):
        replay_sizes(len(pool), replay.get("n_initial", DEFAULT_N_INITIAL), budget)
    study = open_study(study_cfg)
    name = study.study_name
    n_before = len(study.trials)
    if not study.trials and study_cfg.get("enqueue_baseline", True):
        study.enqueue_trial(baseline_params(space, base), skip_if_exists=True)
    objective = make_objective(pool, test_set, space, base, objectives,
                               report_every=int(study_cfg.get("report_every", 4)),
                               study_name=name)
    study.optimize(
        objective,
        n_trials=int(n_trials if n_trials is not None else study_cfg.get("n_trials", 20)),
        timeout=study_cfg.get("timeout_s"),
        # a trial whose training or linear algebra fails is recorded as FAIL; the study goes on
        catch=(ValueError, RuntimeError),
        gc_after_trial=True,
    )
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    where = safe_url(storage_url(study_cfg))
    if not complete:
        raise RuntimeError(f"study {name!r}: no trial completed ({len(study.trials)} trials); "
                           f"see the FAIL/PRUNED trials in {where}")
    best = pick_best(study)
    names = [o["metric"] for o in objectives]
    states = pd.Series([t.state.name for t in study.trials]).value_counts().to_dict()
    summary: dict[str, Any] = {
        "study_name": name,
        "storage": where,
        "objectives": objectives,
        "n_trials": len(study.trials),
        "n_new_trials": len(study.trials) - n_before,
        "states": {k: int(v) for k, v in states.items()},
        "best_trial": best.number,
        "best_values": dict(zip(names, best.values, strict=True)),
        "best_params": dict(best.params),
        "best_mlflow_run_id": best.user_attrs.get("mlflow_run_id"),
    }
    if len(objectives) > 1:
        summary["pareto_front"] = [
            {"trial": t.number, "values": dict(zip(names, t.values, strict=True)),
             "params": dict(t.params)}
            for t in sorted(study.best_trials, key=lambda t: t.values)
        ]
    baseline = next((t for t in complete if t.number == 0), None)
    if baseline is not None:
        summary["baseline_values"] = dict(zip(names, baseline.values, strict=True))
    import mlflow

    if mlflow.active_run() is not None:
        mlflow.log_metrics({f"tuning/best_{m.replace('/', '_')}": float(v)
                            for m, v in summary["best_values"].items()})
        mlflow.log_metric("tuning/n_trials", len(study.trials))
    log.info("study %s: %d trials, best trial %d %s", name, len(study.trials), best.number,
             summary["best_values"])
    return TuningResult(study=study, best_params=best_query_params(best), summary=summary,
                        trials=trials_table(study))
