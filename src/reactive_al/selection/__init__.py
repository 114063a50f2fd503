"""Selection: the query (query) and the batch strategies with their registry (strategies).

To add a strategy, write ``fn(request: BatchRequest) -> indices`` in a module and decorate it
with :func:`register_strategy`; ``selection.strategy: <name>`` then selects it.
"""

from reactive_al.selection.query import (
    build_estimator,
    check_selection,
    choose_batch,
    distance_fingerprint,
    not_in_training,
    query,
    top_k_unique,
)
from reactive_al.selection.strategies import (
    STRATEGIES,
    BatchRequest,
    Strategy,
    kmeans_representatives,
    max_det,
    max_dist,
    random_batch,
    register_strategy,
    threshold_window,
)

__all__ = ["STRATEGIES", "BatchRequest", "Strategy", "build_estimator", "check_selection",
           "choose_batch",
           "distance_fingerprint", "kmeans_representatives", "max_det", "max_dist",
           "not_in_training", "query", "random_batch", "register_strategy", "threshold_window",
           "top_k_unique"]
