"""Tuning the query hyperparameters with Optuna on an already labeled pool (no new QM labels).

A trial replays active learning retrospectively (:mod:`~reactive_al.tuning.replay`): the pool's
labels are hidden until a structure is "queried", so a query strategy is scored by the test
error it reaches after a fixed label budget. The trial's settings come from the search space of
``tuning.search_space`` (:mod:`~reactive_al.tuning.space`); :func:`run_study`
(:mod:`~reactive_al.tuning.study`) runs the Optuna study and returns the best settings in the
shape of the ``selection``/``training`` parameter blocks.
"""

from reactive_al.nested import deep_merge
from reactive_al.tuning.replay import (
    DEFAULT_BUDGET,
    DEFAULT_N_INITIAL,
    PARAMS_FILE,
    QUERY_DEFAULTS,
    check_query,
    check_training,
    query_batch,
    replay_sizes,
    retrospective_al,
)
from reactive_al.tuning.space import (
    base_config,
    baseline_params,
    suggest,
    validate_search_space,
)
from reactive_al.tuning.study import (
    TuningResult,
    best_query_params,
    make_objective,
    open_study,
    pick_best,
    run_study,
    safe_url,
    storage_url,
    trials_table,
)

__all__ = [
    "DEFAULT_BUDGET", "DEFAULT_N_INITIAL", "PARAMS_FILE", "QUERY_DEFAULTS", "TuningResult",
    "base_config", "baseline_params", "best_query_params", "check_query", "check_training",
    "deep_merge", "make_objective", "open_study", "pick_best", "query_batch", "replay_sizes",
    "retrospective_al", "run_study", "safe_url", "storage_url", "suggest", "trials_table",
    "validate_search_space",
]
