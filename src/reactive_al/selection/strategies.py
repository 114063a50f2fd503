"""Batch query strategies on uncertainty scores and feature vectors, and their registry.

A strategy is registered under its ``selection.strategy`` YAML name with
:func:`register_strategy`; it receives a :class:`BatchRequest` and returns candidate indices.
Every strategy returns the chosen candidate indices (distinct, in selection order) as an
``int`` array of length at most ``b``; it is shorter only when fewer useful candidates exist.
Feature-space strategies take the gradient features of
:mod:`reactive_al.uncertainty.gradient_features` (or any fixed-length descriptors) as
``[n, p]`` arrays.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms
from scipy.cluster.vq import kmeans2
from scipy.linalg import cho_factor, cho_solve
from scipy.spatial.distance import cdist

RngLike = np.random.Generator | int | None


def _as_2d(features: np.ndarray | None, dim: int = 0) -> np.ndarray:
    """Features as a float64 [n, p] array; ``None`` or empty gives shape (0, ``dim``)."""
    if features is None or len(features) == 0:
        return np.zeros((0, dim))
    f = np.asarray(features, dtype=np.float64)
    return f.reshape(len(f), -1)


def _min_distances(a: np.ndarray, b: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Distance from every row of ``a`` to its nearest row of ``b`` (inf if ``b`` is empty)."""
    if len(b) == 0:
        return np.full(len(a), np.inf)
    if len(a) == 0:
        return np.zeros(0)
    # cdist subtracts coordinates directly, so near-zero distances keep their precision.
    return np.concatenate([cdist(a[i:i + chunk], b).min(1) for i in range(0, len(a), chunk)])


def top_k(scores: np.ndarray, b: int) -> np.ndarray:
    """Indices of the ``b`` highest scores (ties keep input order; NaN scores rank last)."""
    s = np.nan_to_num(np.asarray(scores, dtype=float), nan=-np.inf)
    return np.argsort(-s, kind="stable")[: max(b, 0)]


def threshold_window(
    scores: np.ndarray,
    low: float,
    high: float,
    b: int,
    rng: RngLike = None,
) -> np.ndarray:
    """Up to ``b`` candidates with ``low <= score <= high``.

    Without ``rng`` the highest-scoring candidates inside the window are taken (deterministic);
    with ``rng`` they are drawn uniformly at random among all candidates inside the window,
    which spreads the batch over the window instead of crowding at its upper edge.
    """
    s = np.asarray(scores, dtype=float)
    inside = np.flatnonzero((s >= low) & (s <= high))
    k = min(max(b, 0), len(inside))
    if rng is None:
        return inside[np.argsort(-s[inside], kind="stable")[:k]]
    return np.random.default_rng(rng).choice(inside, size=k, replace=False)


def random_batch(n: int, b: int, rng: RngLike = None) -> np.ndarray:
    """``min(b, n)`` distinct indices out of ``range(n)`` drawn uniformly at random."""
    return np.random.default_rng(rng).choice(n, size=min(max(b, 0), n), replace=False)


def drop_training_duplicates(
    features_candidates: np.ndarray, features_train: np.ndarray | None, tol: float = 1e-6
) -> np.ndarray:
    """Indices of the candidates whose nearest training feature is at least ``tol`` away."""
    c = _as_2d(features_candidates)
    t = _as_2d(features_train, c.shape[1])
    return np.flatnonzero(_min_distances(c, t) >= tol)


def posterior_covariance(
    features_train: np.ndarray | None, sigma_n: float, dim: int = 0
) -> np.ndarray:
    """Posterior covariance Σ = σ_n² (ΦᵀΦ + σ_n² I)⁻¹ of the linear-kernel GP in feature space.

    With no training features it is the prior covariance I (``dim`` then sets the size).
    """
    t = _as_2d(features_train, dim)
    p = t.shape[1]
    if len(t) == 0:
        return np.eye(p)
    a = t.T @ t + sigma_n ** 2 * np.eye(p)
    cov = sigma_n ** 2 * cho_solve(cho_factor(a, lower=True), np.eye(p))
    return 0.5 * (cov + cov.T)


def max_det(
    features_candidates: np.ndarray,
    features_train: np.ndarray | None,
    b: int,
    sigma_n: float = 0.01,
    min_variance: float = 0.0,
) -> np.ndarray:
    """Greedy maximum-determinant batch: maximises the batch's joint information.

    Repeatedly pick the candidate with the highest posterior variance φᵀΣφ, then condition the
    GP on it as if it were labelled, Σ ← Σ − ΣφφᵀΣ / (σ_n² + φᵀΣφ), updating every
    candidate's variance by the same rank-1 term. Each step adds the largest possible
    increment to log det(I + K_batch|train / σ_n²). A near-duplicate of a picked structure
    loses its variance at once, and picked indices are never reconsidered; selection stops
    early when no remaining variance exceeds ``min_variance``.
    """
    c = _as_2d(features_candidates)
    m = len(c)
    if m == 0 or b <= 0:
        return np.zeros(0, dtype=int)
    cov = posterior_covariance(features_train, sigma_n, c.shape[1])
    var = np.einsum("ij,jk,ik->i", c, cov, c)
    available = np.ones(m, dtype=bool)
    chosen: list[int] = []
    for _ in range(min(b, m)):
        j = int(np.argmax(np.where(available, var, -np.inf)))
        if var[j] <= min_variance:
            break
        w = cov @ c[j]
        denom = sigma_n ** 2 + float(c[j] @ w)
        proj = c @ w
        var = var - proj ** 2 / denom
        cov = cov - np.outer(w, w) / denom
        available[j] = False
        chosen.append(j)
    return np.asarray(chosen, dtype=int)


def max_dist(
    features_candidates: np.ndarray,
    features_train: np.ndarray | None,
    b: int,
    min_distance: float = 0.0,
) -> np.ndarray:
    """Greedy farthest-point batch in feature space.

    Each step picks the candidate farthest from its nearest point among the training set and
    the candidates picked so far. Without training features the first pick is the candidate
    farthest from the candidates' mean. Stops early when the best distance is not above
    ``min_distance`` (so exact duplicates are never picked with the default 0).
    """
    c = _as_2d(features_candidates)
    m = len(c)
    if m == 0 or b <= 0:
        return np.zeros(0, dtype=int)
    t = _as_2d(features_train, c.shape[1])
    available = np.ones(m, dtype=bool)
    chosen: list[int] = []
    if len(t):
        dist = _min_distances(c, t)
    else:
        first = int(np.argmax(np.linalg.norm(c - c.mean(0), axis=1)))
        available[first] = False
        chosen.append(first)
        dist = np.linalg.norm(c - c[first], axis=1)
    while len(chosen) < min(b, m):
        j = int(np.argmax(np.where(available, dist, -np.inf)))
        if dist[j] <= min_distance:
            break
        dist = np.minimum(dist, np.linalg.norm(c - c[j], axis=1))
        available[j] = False
        chosen.append(j)
    return np.asarray(chosen, dtype=int)


def kmeans_representatives(
    features: np.ndarray, b: int, rng: RngLike = None, iterations: int = 20
) -> np.ndarray:
    """One representative per k-means cluster: the candidate nearest each of ``b`` centres.

    Centres come from :func:`scipy.cluster.vq.kmeans2` (k-means++ seeding). Centres are served
    in turn and each takes its nearest not-yet-taken candidate, so the ``b`` indices are
    distinct even when clusters end up empty or share a nearest point.
    """
    f = _as_2d(features)
    n = len(f)
    if b <= 0 or n == 0:
        return np.zeros(0, dtype=int)
    if b >= n:
        return np.arange(n)
    with warnings.catch_warnings():
        # empty clusters are harmless here: every centre still gets a distinct candidate
        warnings.simplefilter("ignore")
        centres, _ = kmeans2(f, b, iter=iterations, minit="++",
                             rng=np.random.default_rng(rng))
    d = cdist(centres, f)
    taken = np.zeros(n, dtype=bool)
    chosen = []
    for row in d:
        j = int(np.argmin(np.where(taken, np.inf, row)))
        taken[j] = True
        chosen.append(j)
    return np.asarray(chosen, dtype=int)


# -- registry ---------------------------------------------------------------------------------
@dataclass
class BatchRequest:
    """What a strategy sees: the candidates it may pick from and how many to pick.

    ``scores`` (calibrated ranking score per candidate, units of the criterion), ``features``
    ((candidate, training) gradient features, only for strategies that need them),
    ``batch_size``, the ``rng``, the GP noise ``sigma_n`` and the threshold ``window``
    (low, high). ``candidates`` are the structures behind the scores and ``labeled_set`` the
    training set (for strategies that filter near-duplicates themselves).
    """

    scores: np.ndarray
    batch_size: int
    rng: np.random.Generator
    candidates: list[Atoms] = field(default_factory=list)
    labeled_set: list[Atoms] = field(default_factory=list)
    features: tuple[np.ndarray, np.ndarray] | None = None
    sigma_n: float = 0.01
    window: tuple[float, float] = (0.0, float("inf"))
    min_separation: float = 0.02


@dataclass(frozen=True)
class Strategy:
    """A registered strategy: its function, and whether it needs gradient features.

    With ``drops_duplicates`` false the candidates that are near-duplicates of training frames
    are removed before the strategy sees them; true means the strategy does it itself.
    """

    pick: Callable[[BatchRequest], np.ndarray | list[int]]
    needs_features: bool = False
    drops_duplicates: bool = False


#: ``selection.strategy`` name → strategy.
STRATEGIES: dict[str, Strategy] = {}


def register_strategy(name: str, needs_features: bool = False, drops_duplicates: bool = False):
    """Decorator registering ``fn(request) -> indices`` under the YAML name ``name``."""

    def deco(fn: Callable[[BatchRequest], np.ndarray | list[int]]):
        STRATEGIES[name] = Strategy(fn, needs_features, drops_duplicates)
        return fn

    return deco


@register_strategy("top_k", drops_duplicates=True)
def _top_k(r: BatchRequest) -> list[int]:
    from reactive_al.selection.query import top_k_unique

    return top_k_unique(r.candidates, r.scores, r.batch_size, reference=r.labeled_set,
                        min_separation=r.min_separation)


@register_strategy("threshold")
def _threshold(r: BatchRequest) -> np.ndarray:
    return threshold_window(r.scores, r.window[0], r.window[1], r.batch_size)


@register_strategy("random")
def _random(r: BatchRequest) -> np.ndarray:
    return random_batch(len(r.scores), r.batch_size, r.rng)


@register_strategy("max_det", needs_features=True)
def _max_det(r: BatchRequest) -> np.ndarray:
    return max_det(r.features[0], r.features[1], r.batch_size, sigma_n=r.sigma_n)


@register_strategy("max_dist", needs_features=True)
def _max_dist(r: BatchRequest) -> np.ndarray:
    return max_dist(r.features[0], r.features[1], r.batch_size)


@register_strategy("kmeans", needs_features=True)
def _kmeans(r: BatchRequest) -> np.ndarray:
    return kmeans_representatives(r.features[0], r.batch_size, r.rng)
