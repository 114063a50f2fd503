"""Retrospective active learning on an already labeled pool: the replay one tuning trial runs.

The pool's labels are hidden until a structure is "queried", so a query strategy can be scored
by the test error it reaches after a fixed label budget without a single new QM calculation.
Query settings are the campaign's ``selection`` block completed by :data:`QUERY_DEFAULTS`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers

from reactive_al.evaluation import evaluate_committee
from reactive_al.models import Committee, CommitteeSpec, TrainingConfig, train_committee
from reactive_al.nested import deep_merge
from reactive_al.selection import STRATEGIES, query
from reactive_al.uncertainty import CRITERIA, METHODS, UncertaintyConfig

log = logging.getLogger(__name__)

PARAMS_FILE = "parameters_tuning.yml"
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

StepCallback = Callable[[int, dict[str, float]], None]


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
    for path, value, known in (("selection.strategy", selection["strategy"], tuple(STRATEGIES)),
                               ("selection.uncertainty.method", method, tuple(METHODS)),
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

    The campaign's own query (:func:`reactive_al.selection.query`: calibrated uncertainty
    estimator, then the ``selection.strategy``), so a tuned ``selection`` block means in the
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
