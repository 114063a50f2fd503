"""Query strategies: pick the batch of candidates worth a QM label."""

from __future__ import annotations

import numpy as np
from ase import Atoms


def distance_fingerprint(atoms: Atoms) -> np.ndarray:
    """Sorted interatomic distances: invariant to translation, rotation and atom order."""
    d = atoms.get_all_distances()
    return np.sort(d[np.triu_indices(len(atoms), 1)])


def _near_any(fp: np.ndarray, references: list[np.ndarray], tol: float) -> bool:
    """Whether fingerprint ``fp`` is within ``tol`` Å RMS of any reference fingerprint."""
    return any(len(r) == len(fp) and np.sqrt(np.mean((r - fp) ** 2)) < tol for r in references)


def top_k_unique(
    candidates: list[Atoms],
    scores: np.ndarray,
    batch_size: int,
    reference: list[Atoms] | None = None,
    min_separation: float = 0.02,
) -> list[int]:
    """Indices of the ``batch_size`` highest-scoring candidates, skipping near-duplicates.

    A candidate is a near-duplicate when the RMS difference of its distance fingerprint to an
    already chosen structure or to a ``reference`` (training) structure is below
    ``min_separation`` Å.
    """
    fps = [distance_fingerprint(a) for a in candidates]
    taken = [distance_fingerprint(a) for a in (reference or [])]
    chosen: list[int] = []
    for i in np.argsort(-np.asarray(scores), kind="stable"):
        if len(chosen) >= batch_size:
            break
        if _near_any(fps[i], taken, min_separation):
            continue
        chosen.append(int(i))
        taken.append(fps[i])
    return chosen


#: Batch strategies; the feature-space ones need gradient features.
STRATEGIES = ("top_k", "threshold", "max_det", "max_dist", "kmeans", "random")
FEATURE_STRATEGIES = frozenset({"max_det", "max_dist", "kmeans"})


def not_in_training(candidates: list[Atoms], reference: list[Atoms],
                    min_separation: float) -> np.ndarray:
    """Indices of candidates that are not near-duplicates of a reference (training) frame."""
    ref = [distance_fingerprint(a) for a in reference]
    keep = [i for i, a in enumerate(candidates)
            if not _near_any(distance_fingerprint(a), ref, min_separation)]
    return np.array(keep, dtype=int)


def choose_batch(
    strategy: str,
    batch_size: int,
    scores: np.ndarray,
    candidates: list[Atoms],
    labeled_set: list[Atoms],
    min_separation: float,
    rng: np.random.Generator,
    features: tuple[np.ndarray, np.ndarray] | None = None,
    sigma_n: float = 0.01,
    window: tuple[float, float] = (0.0, float("inf")),
) -> list[int]:
    """Indices of the batch chosen by ``strategy`` (see :data:`STRATEGIES`).

    ``scores`` rank candidates (top_k, threshold); ``features`` = (candidate, training)
    gradient features for max_det, max_dist and k-means. Near-duplicates of training frames
    are removed first.
    """
    from reactive_al import batch_selection as bs

    if strategy not in STRATEGIES:
        raise ValueError(f"parameters_selection.yml: unknown strategy '{strategy}' "
                         f"(choose from {list(STRATEGIES)})")
    if strategy in FEATURE_STRATEGIES and features is None:
        raise ValueError(f"strategy '{strategy}' needs gradient features")
    if strategy == "top_k":
        return top_k_unique(candidates, scores, batch_size, reference=labeled_set,
                            min_separation=min_separation)
    fresh = not_in_training(candidates, labeled_set, min_separation)
    if len(fresh) == 0:
        return []
    b = min(batch_size, len(fresh))
    if strategy == "threshold":
        picked = bs.threshold_window(scores[fresh], window[0], window[1], b)
    elif strategy == "random":
        picked = bs.random_batch(len(fresh), b, rng)
    elif strategy == "max_det":
        picked = bs.max_det(features[0][fresh], features[1], b, sigma_n=sigma_n)
    elif strategy == "max_dist":
        picked = bs.max_dist(features[0][fresh], features[1], b)
    else:
        picked = bs.kmeans_representatives(features[0][fresh], b, rng)
    return [int(fresh[i]) for i in picked]


def query(
    committee,
    candidates: list[Atoms],
    labeled_set: list[Atoms],
    selection: dict,
    rng: np.random.Generator,
    batch_size: int | None = None,
):
    """Choose a batch as configured by a ``selection`` parameter block.

    Builds the calibrated uncertainty estimator for ``committee`` (``labeled_set`` must be its
    training set, in order: its validation split calibrates), ranks ``candidates`` and applies
    the strategy. Returns (chosen indices, calibrated scores dict, ranking scores, estimator).
    """
    from reactive_al.uncertainty import UncertaintyConfig, UncertaintyEstimator

    strategy = selection.get("strategy", "top_k")
    cfg = UncertaintyConfig(**{**(selection.get("uncertainty") or {}),
                               "criterion": selection["criterion"]})
    est = UncertaintyEstimator(committee, labeled_set, cfg,
                               need_features=strategy in FEATURE_STRATEGIES)
    scores = est.scores(candidates)
    ranking = est.ranking(scores)
    features = None
    if strategy in FEATURE_STRATEGIES and candidates:
        features = (est.features(candidates), est.features(est.train))
    window = selection.get("threshold") or {}
    chosen = choose_batch(
        strategy, batch_size or selection["batch_size"], ranking, candidates, labeled_set,
        float(selection.get("min_separation", 0.02)), rng, features=features,
        sigma_n=cfg.sigma_n,
        window=(float(window.get("low", 0.0)), float(window.get("high", float("inf")))))
    return chosen, scores, ranking, est
