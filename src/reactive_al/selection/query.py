"""The query: rank candidates by calibrated uncertainty and pick the batch worth a QM label."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from ase import Atoms

from reactive_al.selection.strategies import STRATEGIES, BatchRequest
from reactive_al.uncertainty import UncertaintyConfig, UncertaintyEstimator

if TYPE_CHECKING:
    from reactive_al.models import Committee


def distance_fingerprint(atoms: Atoms) -> np.ndarray:
    """Sorted interatomic distances: invariant to translation, rotation and atom order.

    A crystal's distances are to the nearest periodic images, followed by its three cell
    lengths (Å), so two frames with the same atoms in different cells differ.
    """
    crystal = bool(np.all(atoms.pbc))
    d = atoms.get_all_distances(mic=crystal)
    fp = np.sort(d[np.triu_indices(len(atoms), 1)])
    return np.concatenate([fp, atoms.cell.lengths()]) if crystal else fp


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
    """Indices of the batch chosen by the registered ``strategy`` (see :data:`STRATEGIES`).

    ``scores`` rank candidates (top_k, threshold); ``features`` = (candidate, training)
    gradient features for the strategies that need them. Near-duplicates of training frames
    are removed first (top_k removes them itself, also among the chosen).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"parameters_selection.yml: unknown strategy '{strategy}' "
                         f"(choose from {list(STRATEGIES)})")
    strat = STRATEGIES[strategy]
    if strat.needs_features and features is None:
        raise ValueError(f"strategy '{strategy}' needs gradient features")
    scores = np.asarray(scores)
    if strat.drops_duplicates:
        fresh = np.arange(len(candidates))
    else:
        fresh = not_in_training(candidates, labeled_set, min_separation)
        if len(fresh) == 0:
            return []
    request = BatchRequest(
        scores=scores[fresh], batch_size=min(batch_size, len(fresh)), rng=rng,
        candidates=[candidates[i] for i in fresh], labeled_set=labeled_set,
        features=None if features is None else (features[0][fresh], features[1]),
        sigma_n=sigma_n, window=window, min_separation=min_separation)
    if strat.drops_duplicates:
        request.batch_size = batch_size
    return [int(fresh[i]) for i in strat.pick(request)]


def check_selection(selection: dict) -> None:
    """Raise ``ValueError`` (one line naming the parameter) for a broken ``selection`` block.

    Broken: an unregistered strategy, uncertainty method, criterion or sampler, or a batch
    size below 1. Run before any node, so a typo never costs a training run.
    """
    from reactive_al.exploration import check_samplers
    from reactive_al.uncertainty import CRITERIA, METHODS

    where = "conf/base/parameters_selection.yml: selection"
    strategy = selection.get("strategy", "top_k")
    if strategy not in STRATEGIES:
        raise ValueError(f"{where}.strategy: unknown strategy '{strategy}' "
                         f"(registered: {', '.join(STRATEGIES)})")
    method = (selection.get("uncertainty") or {}).get("method", "committee")
    if method not in METHODS:
        raise ValueError(f"{where}.uncertainty.method: unknown uncertainty '{method}' "
                         f"(registered: {', '.join(METHODS)})")
    if selection.get("criterion", "force") not in CRITERIA:
        raise ValueError(f"{where}.criterion: unknown criterion '{selection.get('criterion')}' "
                         f"(choose from {', '.join(CRITERIA)})")
    size = selection.get("batch_size", 1)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"{where}.batch_size: must be a positive integer, got {size!r}")
    check_samplers(selection.get("samplers"))


def build_estimator(committee: Committee, labeled_set: list[Atoms], selection: dict,
                    need_features: bool = False) -> UncertaintyEstimator:
    """The calibrated uncertainty estimator a ``selection`` block asks for, fitted once.

    ``labeled_set`` must be the committee's training set, in order (its validation split
    calibrates). Gradient features are fitted when the uncertainty method, the strategy, the
    walker bias or ``need_features`` needs them, so exploration and selection share one fit.
    """
    strategy = selection.get("strategy", "top_k")
    bias = (selection.get("walkers") or {}).get("bias") or {}
    cfg = UncertaintyConfig(**{**(selection.get("uncertainty") or {}),
                               "criterion": selection["criterion"]})
    strat = STRATEGIES.get(strategy)
    need = need_features or bool(bias.get("enabled")) or bool(strat and strat.needs_features)
    return UncertaintyEstimator(committee, labeled_set, cfg, need_features=need)


def query(
    committee: Committee,
    candidates: list[Atoms],
    labeled_set: list[Atoms],
    selection: dict,
    rng: np.random.Generator,
    batch_size: int | None = None,
    estimator: UncertaintyEstimator | None = None,
):
    """Choose a batch as configured by a ``selection`` parameter block.

    Uses ``estimator`` (fitted for ``committee``) or builds it with :func:`build_estimator`,
    ranks ``candidates`` and applies the strategy. Returns (chosen indices, calibrated scores
    dict, ranking scores, estimator).
    """
    strategy = selection.get("strategy", "top_k")
    est = estimator if estimator is not None else build_estimator(committee, labeled_set,
                                                                  selection)
    scores = est.scores(candidates)
    ranking = est.ranking(scores)
    features = None
    if strategy in STRATEGIES and STRATEGIES[strategy].needs_features and candidates:
        features = (est.features(candidates), est.features(est.train))
    window = selection.get("threshold") or {}
    chosen = choose_batch(
        strategy, batch_size or selection["batch_size"], ranking, candidates, labeled_set,
        float(selection.get("min_separation", 0.02)), rng, features=features,
        sigma_n=est.cfg.sigma_n,
        window=(float(window.get("low", 0.0)), float(window.get("high", float("inf")))))
    return chosen, scores, ranking, est
