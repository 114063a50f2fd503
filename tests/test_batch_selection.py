"""Batch query strategies in feature space."""

from __future__ import annotations

import numpy as np
import pytest

from reactive_al.selection.strategies import (
    drop_training_duplicates,
    kmeans_representatives,
    max_det,
    max_dist,
    posterior_covariance,
    random_batch,
    threshold_window,
    top_k,
)


def duplicated_candidates() -> np.ndarray:
    """Three distinct feature vectors, each present three times."""
    rng = np.random.default_rng(0)
    base = rng.normal(size=(3, 6))
    return np.repeat(base, 3, axis=0)


def near_duplicate_case() -> tuple[np.ndarray, int, int, int]:
    """A point, its near-duplicate (2nd by norm) and a far point with a smaller norm."""
    e = np.eye(5)
    cand = np.array([2.0 * e[1], 2.0 * e[1] + 1e-3 * e[2], 1.5 * e[3], 0.1 * e[4]])
    return cand, 0, 1, 2


@pytest.mark.parametrize("select", [max_det, max_dist])
def test_never_repeats_indices(select):
    cand = duplicated_candidates()
    chosen = select(cand, None, 12)
    assert len(chosen) == len(set(chosen.tolist())) <= len(cand)
    groups = {int(i) // 3 for i in chosen[:3]}
    assert groups == {0, 1, 2}, "the first picks must cover every distinct structure"


def test_max_det_without_stopping_still_returns_distinct_indices():
    cand = duplicated_candidates()
    chosen = max_det(cand, None, 9, min_variance=-np.inf)
    assert sorted(chosen.tolist()) == list(range(9))


@pytest.mark.parametrize("select", [max_det, max_dist])
def test_far_structure_beats_near_duplicate(select):
    cand, a, a_dup, far = near_duplicate_case()
    chosen = select(cand, None, 2).tolist()
    assert far in chosen
    assert not {a, a_dup} <= set(chosen)


def test_max_det_matches_brute_force_greedy_logdet():
    rng = np.random.default_rng(1)
    cand, train = rng.normal(size=(15, 6)), rng.normal(size=(4, 6))
    sigma_n = 0.3
    post = cand @ posterior_covariance(train, sigma_n) @ cand.T
    chosen: list[int] = []
    for _ in range(5):
        gains = [
            -np.inf if j in chosen else
            np.linalg.slogdet(sigma_n ** 2 * np.eye(len(chosen) + 1)
                              + post[np.ix_(chosen + [j], chosen + [j])])[1]
            for j in range(len(cand))
        ]
        chosen.append(int(np.argmax(gains)))
    assert max_det(cand, train, 5, sigma_n=sigma_n).tolist() == chosen


def test_posterior_covariance_formula():
    rng = np.random.default_rng(2)
    train = rng.normal(size=(7, 4))
    s2 = 0.01 ** 2
    expected = s2 * np.linalg.inv(train.T @ train + s2 * np.eye(4))
    np.testing.assert_allclose(posterior_covariance(train, 0.01), expected, rtol=1e-8)
    np.testing.assert_array_equal(posterior_covariance(None, 0.01, dim=3), np.eye(3))


def test_training_set_counts_as_already_selected():
    rng = np.random.default_rng(3)
    train = rng.normal(size=(5, 4))
    near_train = train + 1e-4 * rng.normal(size=train.shape)
    novel = 3.0 + rng.normal(size=(3, 4))
    cand = np.vstack([near_train, novel])
    for select in (max_det, max_dist):
        assert set(select(cand, train, 3).tolist()) == {5, 6, 7}
    kept = drop_training_duplicates(cand, train, tol=1e-2)
    np.testing.assert_array_equal(kept, [5, 6, 7])
    np.testing.assert_array_equal(drop_training_duplicates(cand, None), np.arange(8))


def test_kmeans_returns_distinct_representatives():
    rng = np.random.default_rng(4)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    feats = np.vstack([c + rng.normal(size=(20, 2)) for c in centres])
    chosen = kmeans_representatives(feats, 3, rng=5)
    assert len(set(chosen.tolist())) == 3
    assert {int(i) // 20 for i in chosen} == {0, 1, 2}
    dup = np.repeat(feats[:4], 5, axis=0)
    chosen = kmeans_representatives(dup, 7, rng=6)
    assert len(chosen) == len(set(chosen.tolist())) == 7
    np.testing.assert_array_equal(kmeans_representatives(feats[:5], 9), np.arange(5))


def test_threshold_window_respects_bounds():
    rng = np.random.default_rng(7)
    scores = rng.uniform(0, 1, 200)
    det = threshold_window(scores, 0.3, 0.6, 10)
    inside = np.flatnonzero((scores >= 0.3) & (scores <= 0.6))
    assert len(det) == 10
    np.testing.assert_array_equal(det, inside[np.argsort(-scores[inside])][:10])
    rand = threshold_window(scores, 0.3, 0.6, 10, rng=8)
    assert len(set(rand.tolist())) == 10
    assert np.all((scores[rand] >= 0.3) & (scores[rand] <= 0.6))
    everything = threshold_window(scores, 0.3, 0.6, 10_000, rng=9)
    assert sorted(everything.tolist()) == inside.tolist()


def test_top_k_and_random_batch():
    scores = np.array([0.1, np.nan, 0.9, 0.5, 0.9])
    np.testing.assert_array_equal(top_k(scores, 3), [2, 4, 3])
    batch = random_batch(10, 4, rng=0)
    assert len(set(batch.tolist())) == 4 and batch.max() < 10
    assert len(random_batch(3, 8, rng=0)) == 3
