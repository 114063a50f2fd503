import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from reactive_al.evaluation import error_metrics
from reactive_al.selection import top_k_unique


def _h2(d):
    return Atoms("H2", positions=[[0, 0, 0], [d, 0, 0]])


def test_top_k_takes_highest_scores_and_skips_duplicates():
    cands = [_h2(0.70), _h2(0.70001), _h2(0.90), _h2(1.20), _h2(0.74)]
    scores = np.array([5.0, 4.9, 3.0, 1.0, 9.0])
    reference = [_h2(0.74)]  # already in the training set
    chosen = top_k_unique(cands, scores, 3, reference=reference, min_separation=0.01)
    assert chosen == [0, 2, 3]


def test_error_metrics_known_values():
    e_pred, e_ref = np.array([1.0, 2.0]), np.array([1.3, 1.6])  # eV
    n = np.array([2, 4])
    f_pred = [np.zeros((2, 3)), np.ones((4, 3))]
    f_ref = [np.full((2, 3), 0.5), np.ones((4, 3))]
    m = error_metrics(e_pred, e_ref, n, f_pred, f_ref)
    assert m["energy_mae_mev_per_atom"] == pytest.approx((150 + 100) / 2)
    assert m["energy_rmse_mev_per_atom"] == pytest.approx(np.sqrt((150**2 + 100**2) / 2))
    assert m["force_mae_ev_per_a"] == pytest.approx(0.5 * 6 / 18)
    assert m["force_rmse_ev_per_a"] == pytest.approx(np.sqrt(0.25 * 6 / 18))


def test_evaluate_committee_reports_subsets():
    from reactive_al.evaluation import evaluate_committee
    from reactive_al.models import Committee, CommitteeSpec, build_model

    spec = CommitteeSpec(symbols=["H"], ensemble_size=2, hidden=[4])
    committee = Committee(build_model(spec), spec)
    frames = []
    for i, subset in enumerate(["reactant", "path", "path"]):
        a = _h2(0.7 + 0.1 * i)
        a.calc = SinglePointCalculator(a, energy=0.0, forces=np.zeros((2, 3)))
        a.info["subset"] = subset
        frames.append(a)
    m = evaluate_committee(committee, frames)
    assert m["n_test"] == 3 and m["path/n_test"] == 2 and m["reactant/n_test"] == 1
    assert "spearman_force_uncertainty_error" in m
