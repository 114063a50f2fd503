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


class _DoubleWell:
    """A stand-in committee: one atom on E = h (x² − 1)² + y² + z² (eV, Å), barrier h at x = 0."""

    def __init__(self, height: float):
        self.height = height

    def calculator(self):
        from ase.calculators.calculator import Calculator, all_changes

        h = self.height

        class DoubleWell(Calculator):
            implemented_properties = ["energy", "forces"]

            def calculate(self, atoms=None, properties=("energy",),
                          system_changes=all_changes):
                super().calculate(atoms, properties, system_changes)
                x, y, z = self.atoms.positions[0]
                self.results = {
                    "energy": h * (x**2 - 1) ** 2 + y**2 + z**2,
                    "forces": -np.array([[4 * h * x * (x**2 - 1), 2 * y, 2 * z]])}

        return DoubleWell()


def _reference_path(height: float):
    from ase.calculators.singlepoint import SinglePointCalculator

    from reactive_al.exploration import neb_candidates

    r = Atoms("Ar", positions=[[-1.0, 0.0, 0.0]])
    p = Atoms("Ar", positions=[[1.0, 0.1, 0.0]])
    well = _DoubleWell(height)
    frames, stats = neb_candidates(r, p, well.calculator(), n_images=5, fmax=0.001, steps=2000)
    assert stats["neb_converged"]
    path = []
    for a in [r, *frames, p]:
        b = a.copy()
        b.calc = well.calculator()
        e, f = b.get_potential_energy(), b.get_forces()
        b.calc = SinglePointCalculator(b, energy=e, forces=f)
        path.append(b)
    return path


def test_neb_barrier_error_of_the_committee_mean_has_known_answers():
    from ase.units import kcal, mol

    from reactive_al.evaluation import neb_barrier_metrics

    kcal_mol = kcal / mol
    path = _reference_path(0.5)
    # the climbing image sits on the saddle: the reference barrier is h − E(reactant)
    e0 = path[0].get_potential_energy()
    assert e0 == pytest.approx(0.0)
    same = neb_barrier_metrics(_DoubleWell(0.5), path, fmax=0.001, steps=2000)
    assert same["neb/model_converged"]
    assert same["neb/qm_barrier_kcal_mol"] == pytest.approx(0.5 / kcal_mol, rel=1e-3)
    assert abs(same["neb/barrier_error_kcal_mol"]) < 1e-3
    # a model whose barrier is 30% higher: error +0.15 eV, reaction energy unchanged (0.01 eV)
    high = neb_barrier_metrics(_DoubleWell(0.65), path, fmax=0.001, steps=2000)
    assert high["neb/barrier_error_kcal_mol"] == pytest.approx(0.15 / kcal_mol, rel=1e-2)
    assert abs(high["neb/reaction_energy_error_kcal_mol"]) < 1e-6
    low = neb_barrier_metrics(_DoubleWell(0.4), path, fmax=0.001, steps=2000)
    assert low["neb/barrier_error_kcal_mol"] == pytest.approx(-0.1 / kcal_mol, rel=1e-2)
    assert low["neb/abs_barrier_error_kcal_mol"] == pytest.approx(0.1 / kcal_mol, rel=1e-2)


def test_calibration_scores_the_gradient_feature_uncertainty_against_the_errors():
    """Errors made equal to k × the gradient-feature σ: rank correlation 1, and the 95 %
    interval (±1.96 σ) covers all of them at k = 1 and none at k = 3."""
    import torch

    from reactive_al.evaluation import calibration_metrics
    from reactive_al.models import Committee, CommitteeSpec, build_model
    from reactive_al.uncertainty import UncertaintyConfig, UncertaintyEstimator

    spec = CommitteeSpec(symbols=["H", "O"], ensemble_size=2, hidden=[8, 6])
    torch.manual_seed(0)
    committee = Committee(build_model(spec), spec)
    rng = np.random.default_rng(0)

    def water(noise, stretch=0.0):
        a = Atoms("OH2", positions=[[0, 0, 0], [0.96 + stretch, 0, 0], [-0.24, 0.93, 0]])
        a.positions += rng.normal(0, noise, a.positions.shape)
        return a

    train = [water(0.04) for _ in range(10)]  # no validation split: σ stay unscaled
    test = [water(0.04, s) for s in (0.0, 0.1, 0.2, 0.35, 0.5, 0.8)]
    gf = {"num_features": 128, "layers": "all", "sigma_n": 0.01}
    sigma = UncertaintyEstimator(committee, train, UncertaintyConfig(
        method="gradient_features", calibration="gaussian_ml", **gf)).scores(test)["energy"]
    assert np.unique(sigma).size == len(test)
    pred = committee.predict(test)
    for k, coverage in ((1.0, 1.0), (3.0, 0.0)):
        labeled = []
        for a, e, f, s in zip(test, pred["energy"], pred["forces"], sigma, strict=True):
            b = a.copy()
            b.calc = SinglePointCalculator(b, energy=e + k * s * len(b), forces=f)
            labeled.append(b)
        m, curves = calibration_metrics(committee, labeled, train,
                                        gradient_features={"enabled": True, **gf})
        assert m["calibration/gf_energy_spearman"] == pytest.approx(1.0)
        assert m["calibration/gf_energy_coverage_95"] == pytest.approx(coverage)
        assert "gf_energy" in curves and "energy" in curves
    off = calibration_metrics(committee, labeled, train,
                              gradient_features={"enabled": False, **gf})[0]
    assert not any(key.startswith("calibration/gf_") for key in off)
