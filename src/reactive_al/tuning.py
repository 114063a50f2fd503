"""Tuning the query hyperparameters with Optuna on an already labeled pool (no new QM labels).

A trial replays active learning retrospectively: the pool's labels are hidden until a structure
is "queried", so a query strategy can be scored by the test error it reaches after a fixed label
budget without paying for a single new QM calculation. One replay is
:func:`retrospective_al`; :func:`run_study` runs an Optuna study of replays (resumable storage,
pruning on intermediate AL steps, one nested MLflow run per trial) and returns the best
settings in the shape of the ``selection``/``training`` parameter blocks.

Query settings are one nested dict ``{"selection": {...}, "training": {...}, "replay": {...}}``;
a search-space entry names a dotted path into it (``selection.batch_size``).
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from ase import Atoms
from ase.data import atomic_numbers

from reactive_al.evaluation import evaluate_committee
from reactive_al.models import Committee, CommitteeSpec, TrainingConfig, train_committee
from reactive_al.selection import STRATEGIES, query
from reactive_al.uncertainty import CRITERIA, METHODS, UncertaintyConfig

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

PARAMS_FILE = "parameters_tuning.yml"
#: Blocks a search-space path may start with; only the first two go into the best-params file.
TUNABLE_BLOCKS = ("selection", "training", "replay")
OUTPUT_BLOCKS = ("selection", "training")
#: Fallbacks for query settings missing from the campaign's ``selection`` block.
QUERY_DEFAULTS: dict[str, Any] = {
    "batch_size": 8,
    "strategy": "top_k",
    "criterion": "force",
    "min_separation": 0.02,
    "seed": 0,
    "threshold": {"low": 0.0, "high": float("inf")},
    "uncertainty": {"method": "committee"},
}
#: Exploration settings of the ``selection`` block: meaningless in a replay on a fixed pool.
EXPLORATION_KEYS = ("walkers", "samplers")
#: Replay sizes when ``tuning.replay`` gives none: fractions of the pool.
DEFAULT_N_INITIAL, DEFAULT_BUDGET = 0.2, 0.5
#: Categorical paths whose values the replay must understand.
KNOWN_CHOICES = {"selection.strategy": STRATEGIES, "selection.uncertainty.method": METHODS,
                 "selection.criterion": tuple(CRITERIA)}
#: Metric names usable as objectives besides those of :func:`evaluate_committee`.
EXTRA_METRICS = ("n_labels",)

StepCallback = Callable[[int, dict[str, float]], None]


# -- nested parameter dicts -------------------------------------------------------------------
def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any] | None) -> dict[str, Any]:
    """Copy of ``base`` with ``override`` merged in key by key (nested dicts merged too)."""
    out = copy.deepcopy(dict(base))
    for k, v in (override or {}).items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def get_path(cfg: Mapping[str, Any], path: str, default: Any = None) -> Any:
    """Value at a dotted ``path`` of a nested dict, ``default`` when any level is missing."""
    node: Any = cfg
    for key in path.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return default
        node = node[key]
    return node


def set_path(cfg: dict[str, Any], path: str, value: Any) -> None:
    """Set the value at a dotted ``path``, creating intermediate dicts."""
    *parents, leaf = path.split(".")
    node = cfg
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1}`` → ``{"a": {"b": 1}}``."""
    out: dict[str, Any] = {}
    for path, value in flat.items():
        set_path(out, path, value)
    return out


def _plain(value: Any) -> Any:
    """Numpy scalars → python scalars, so YAML/JSON/MLflow accept the value."""
    return value.item() if isinstance(value, np.generic) else value


# -- one retrospective replay -----------------------------------------------------------------
def _symbols(frames: list[Atoms]) -> list[str]:
    found = {s for a in frames for s in a.get_chemical_symbols()}
    return sorted(found, key=atomic_numbers.get)


def _count(value: int | float, n: int, what: str) -> int:
    """An absolute count, or a fraction (< 1) of ``n``."""
    if isinstance(value, float) and 0 < value < 1:
        return max(1, round(value * n))
    if value != int(value) or value < 1:
        raise ValueError(f"{PARAMS_FILE}: {what} must be a positive integer or a fraction in "
                         f"(0, 1), got {value!r}")
    return int(value)


def replay_sizes(n_pool: int, n_initial: int | float, budget: int | float) -> tuple[int, int]:
    """Initial and final label counts of a replay on ``n_pool`` structures (checked)."""
    n0 = _count(n_initial, n_pool, "replay.n_initial")
    n_budget = _count(budget, n_pool, "replay.budget")
    if not 2 <= n0 < n_budget <= n_pool:
        raise ValueError(f"{PARAMS_FILE}: need 2 <= n_initial < budget <= pool size, got "
                         f"n_initial={n0}, budget={n_budget}, pool={n_pool}")
    return n0, n_budget


def check_query(selection: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the parameter file if a query setting is unknown."""
    method = (selection.get("uncertainty") or {}).get("method", "committee")
    for path, value, known in (("selection.strategy", selection["strategy"], STRATEGIES),
                               ("selection.uncertainty.method", method, METHODS),
                               ("selection.criterion", selection["criterion"], tuple(CRITERIA))):
        if value not in known:
            raise ValueError(f"{PARAMS_FILE}: unknown {path} {value!r} "
                             f"(choose from {list(known)})")
    if int(selection["batch_size"]) < 1:
        raise ValueError(f"{PARAMS_FILE}: selection.batch_size must be >= 1")
    try:
        UncertaintyConfig(**(selection.get("uncertainty") or {}))
    except TypeError as exc:
        raise ValueError(f"{PARAMS_FILE}: selection.uncertainty: {exc}") from None


def check_training(training: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the parameter file for an unknown training setting."""
    try:
        CommitteeSpec(symbols=["H"], **training.get("model", {}))
        TrainingConfig(**training.get("fit", {}))
    except TypeError as exc:
        raise ValueError(f"{PARAMS_FILE}: training: {exc}") from None


def query_batch(
    committee: Committee,
    train: list[Atoms],
    pool: list[Atoms],
    selection: Mapping[str, Any],
    b: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices into ``pool`` of the next batch (at most ``b``) and the pool's ranking scores.

    The same composition as the campaign's ``select_batch`` node (calibrated
    :class:`~reactive_al.uncertainty.UncertaintyEstimator`, then
    :func:`~reactive_al.selection.choose_batch`), so a tuned ``selection`` block means in the
    replay what it means in the campaign. ``train`` must be the committee's training frames in
    training order (its validation split calibrates the uncertainty).
    """
    chosen, _, ranking, _ = query(committee, pool, train, dict(selection), rng, batch_size=b)
    return np.asarray(chosen, dtype=int), ranking


def _step_metrics(committee: Committee, test_set: list[Atoms], n_labels: int) -> dict[str, float]:
    """Test errors worth keeping per AL step (overall and per subset) plus the label count."""
    metrics = evaluate_committee(committee, test_set)
    keep = {k: float(v) for k, v in metrics.items()
            if ("_mae_" in k or "_rmse_" in k) and math.isfinite(float(v))}
    return {"n_labels": n_labels, **keep,
            "train_wall_time_s": float(committee.history.get("wall_time_s", 0.0))}


def retrospective_al(
    pool: list[Atoms],
    test_set: list[Atoms],
    selection: Mapping[str, Any],
    training: Mapping[str, Any],
    budget: int | float,
    n_initial: int | float,
    seed: int = 0,
    on_step: StepCallback | None = None,
) -> dict[str, Any]:
    """Replay active learning on a labeled ``pool``; no QM is called.

    A seeded random subset of ``n_initial`` pool structures starts the training set; then
    train a committee (``training`` = ``{"model": CommitteeSpec kwargs, "fit": TrainingConfig
    kwargs}``), evaluate it on ``test_set``, query a batch from the rest of the pool with the
    ``selection`` settings (see :func:`query_batch`), reveal its labels and repeat until
    ``budget`` labels are used. ``budget``/``n_initial`` may be fractions (< 1) of the pool.
    After every evaluation ``on_step(n_labels, metrics)`` is called; it may raise (e.g.
    ``optuna.TrialPruned``) to abandon the replay. The same ``seed`` gives the same initial
    subset and random draws, so settings compared at one seed see common random numbers.

    Returns ``history`` (metrics per AL step), ``final`` (metrics at the end), ``n_labels``,
    ``queried`` (pool indices in query order) and ``wall_time_s``.
    """
    t0 = time.perf_counter()
    selection = deep_merge(QUERY_DEFAULTS, selection)
    check_query(selection)
    n = len(pool)
    n0, n_budget = replay_sizes(n, n_initial, budget)
    if not test_set:
        raise ValueError("the test set is empty: nothing to score a replay on")
    rng = np.random.default_rng(seed)
    labeled = [int(i) for i in rng.choice(n, size=n0, replace=False)]
    spec = CommitteeSpec(symbols=_symbols([*pool, *test_set]), **training.get("model", {}))
    fit = TrainingConfig(**training.get("fit", {}))
    history: list[dict[str, float]] = []
    queried: list[int] = []
    while True:
        committee = train_committee([pool[i] for i in labeled], spec, fit)
        metrics = _step_metrics(committee, test_set, len(labeled))
        history.append(metrics)
        if on_step is not None:
            on_step(len(labeled), metrics)
        remaining = np.setdiff1d(np.arange(n), labeled)
        b = min(int(selection["batch_size"]), n_budget - len(labeled))
        if b <= 0 or len(remaining) == 0:
            break
        picked, _ = query_batch(committee, [pool[i] for i in labeled],
                                [pool[i] for i in remaining], selection, b, rng)
        if len(picked) == 0:
            log.info("query strategy %s found nothing more to add at %d labels",
                     selection["strategy"], len(labeled))
            break
        new = [int(remaining[j]) for j in picked]
        labeled += new
        queried += new
    return {"history": history, "final": history[-1], "n_labels": len(labeled),
            "queried": queried, "wall_time_s": round(time.perf_counter() - t0, 2)}


# -- search space -----------------------------------------------------------------------------
def validate_search_space(space: Mapping[str, Mapping[str, Any]]) -> None:
    """Raise ``ValueError`` naming the parameter file for a malformed search-space entry."""
    seen: set[str] = set()
    for path, spec in space.items():
        where = f"{PARAMS_FILE}: tuning.search_space.{path}"
        if path.split(".", 1)[0] not in TUNABLE_BLOCKS or "." not in path:
            raise ValueError(f"{where}: a path must start with one of {list(TUNABLE_BLOCKS)}")
        kind = spec.get("type")
        if kind in ("int", "float"):
            if not spec.get("low", 0) < spec.get("high", 0):
                raise ValueError(f"{where}: need low < high")
            if spec.get("log") and spec.get("step") not in (None, 1):
                raise ValueError(f"{where}: log and step cannot be combined")
        elif kind == "categorical":
            choices = spec.get("choices") or []
            if not choices or any(isinstance(c, list | dict) for c in choices):
                raise ValueError(f"{where}: choices must be a non-empty list of scalars")
            known = KNOWN_CHOICES.get(path)
            if known and set(choices) - set(known):
                raise ValueError(f"{where}: unknown choice(s) {sorted(set(choices) - set(known))}"
                                 f" (choose from {list(known)})")
        else:
            raise ValueError(f"{where}: type must be int, float or categorical, got {kind!r}")
        for dep in (spec.get("when") or {}):
            if dep in space and dep not in seen:
                raise ValueError(f"{where}: 'when' refers to {dep}, which is tuned, so it "
                                 f"must be an earlier entry of the search space")
        seen.add(path)


def _active(spec: Mapping[str, Any], values: Mapping[str, Any], base: Mapping[str, Any]) -> bool:
    """Whether a conditional entry applies: any ``when`` path holds one of its listed values."""
    when = spec.get("when")
    if not when:
        return True
    for path, allowed in when.items():
        current = values[path] if path in values else get_path(base, path)
        if current in (allowed if isinstance(allowed, list) else [allowed]):
            return True
    return False


def suggest(trial: optuna.trial.BaseTrial, space: Mapping[str, Mapping[str, Any]],
            base: Mapping[str, Any]) -> dict[str, Any]:
    """Ask ``trial`` for every active search-space entry; returns ``{path: value}``.

    Entries are visited in file order, so a ``when`` condition sees earlier suggestions (or the
    ``base`` value of a path that is not tuned).
    """
    values: dict[str, Any] = {}
    for path, spec in space.items():
        if not _active(spec, values, base):
            continue
        kind = spec["type"]
        if kind == "int":
            v = trial.suggest_int(path, int(spec["low"]), int(spec["high"]),
                                  step=int(spec.get("step") or 1), log=bool(spec.get("log")))
        elif kind == "float":
            v = trial.suggest_float(path, float(spec["low"]), float(spec["high"]),
                                    step=spec.get("step"), log=bool(spec.get("log")))
        else:
            v = trial.suggest_categorical(path, list(spec["choices"]))
        values[path] = _plain(v)
    return values


def _in_space(spec: Mapping[str, Any], value: Any) -> bool:
    if spec["type"] == "categorical":
        return value in spec["choices"]
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    low, high, step = spec["low"], spec["high"], spec.get("step")
    if not low <= value <= high:
        return False
    if spec["type"] == "int":
        return value == int(value) and (int(value) - int(low)) % int(step or 1) == 0
    return step is None or math.isclose((value - low) / step, round((value - low) / step))


def baseline_params(space: Mapping[str, Mapping[str, Any]],
                    base: Mapping[str, Any]) -> dict[str, Any]:
    """The current settings (``base``) expressed as trial params, for ``study.enqueue_trial``.

    Paths whose base value lies outside the search space are left for the sampler.
    """
    out: dict[str, Any] = {}
    for path, spec in space.items():
        if not _active(spec, out, base):
            continue
        value = get_path(base, path)
        if value is not None and _in_space(spec, value):
            out[path] = value
    return out


def base_config(
    tuning: Mapping[str, Any],
    selection: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Settings every trial starts from, before its suggestions are applied.

    ``selection``: :data:`QUERY_DEFAULTS` ← the campaign's ``selection`` block ←
    ``tuning.query``. ``training``: the campaign's ``training`` block ← ``tuning.training``
    (small, fast settings). ``replay``: ``tuning.replay``.
    """
    sel = deep_merge(deep_merge(QUERY_DEFAULTS, selection), tuning.get("query"))
    for key in EXPLORATION_KEYS:
        sel.pop(key, None)
    return {
        "selection": sel,
        "training": deep_merge(training or {}, tuning.get("training")),
        "replay": dict(tuning.get("replay") or {}),
    }


# -- the study --------------------------------------------------------------------------------
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


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


class _TrialRun:
    """A nested MLflow run for one trial, or nothing when no run is active."""

    def __init__(self, name: str):
        import mlflow

        self.mlflow = mlflow
        self.parent = mlflow.active_run()
        self.run = mlflow.start_run(run_name=name, nested=True) if self.parent else None

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

    def end(self, status: str) -> None:
        if not self.run:
            return
        self.mlflow.end_run(status=status)
        # kedro-mlflow keeps the parent run active between nodes; make sure we are back on it
        active = self.mlflow.active_run()
        if active is None or active.info.run_id != self.parent.info.run_id:
            self.mlflow.start_run(run_id=self.parent.info.run_id)


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
        run = _TrialRun(f"trial_{trial.number}")
        trial.set_user_attr("mlflow_run_id", run.run_id)
        run.set_tags({"optuna.study_name": study_name, "optuna.trial_number": trial.number})
        run.log_params({**values, **{f"config.{k}": v for k, v in _flat(cfg).items()}})
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
            run.set_tags({"optuna.state": "PRUNED"})
            run.end("KILLED")
            raise
        except BaseException:
            # also on Ctrl-C, so that no nested run is left RUNNING under the parent
            run.set_tags({"optuna.state": "FAIL"})
            run.end("FAILED")
            raise
        final = {**result["final"], "n_labels": result["n_labels"]}
        missing = [m for m in metrics_names if m not in final]
        if missing:
            run.end("FAILED")
            raise ValueError(f"{PARAMS_FILE}: unknown objective metric(s) {missing}; "
                             f"available: {sorted(final)}")
        out = [float(final[m]) for m in metrics_names]
        trial.set_user_attr("history", [{k: _plain(v) for k, v in h.items()}
                                        for h in result["history"]])
        trial.set_user_attr("wall_time_s", result["wall_time_s"])
        run.log_metrics({f"objective/{m}": v for m, v in zip(metrics_names, out, strict=True)})
        run.log_metrics({"wall_time_s": result["wall_time_s"]})
        run.set_tags({"optuna.state": "COMPLETE"})
        run.end("FINISHED")
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
    kept = {p: _plain(v) for p, v in trial.params.items() if p.split(".", 1)[0] in OUTPUT_BLOCKS}
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
