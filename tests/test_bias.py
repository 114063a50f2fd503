import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from reactive_al.exploration.bias import UncertaintyBiasedCalculator
from reactive_al.models import Committee, CommitteeSpec, build_model
from reactive_al.uncertainty.gradient_features import GradientFeatureUncertainty


@pytest.fixture
def setup():
    import torch

    torch.manual_seed(0)
    spec = CommitteeSpec(symbols=["H", "O"], ensemble_size=2, hidden=[8])
    committee = Committee(build_model(spec), spec)
    rng = np.random.default_rng(0)
    train = []
    for _ in range(6):
        a = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
        a.positions += rng.normal(0, 0.05, a.positions.shape)
        a.calc = SinglePointCalculator(a, energy=0.0, forces=np.zeros((3, 3)))
        train.append(a)
    gf = GradientFeatureUncertainty(num_features=64).fit(committee, train)
    probe = Atoms("OH2", positions=[[0, 0, 0], [1.3, 0.1, 0], [-0.3, 1.0, 0.1]])
    return committee, gf, probe


def test_bias_forces_equal_finite_differences_of_the_bias_energy(setup, monkeypatch):
    committee, gf, probe = setup
    calc = UncertaintyBiasedCalculator(committee, gf, tau=0.2, element_weights={"H": 0.5},
                                       energy_scale=0.7)
    monkeypatch.setattr(calc, "scale", lambda: 0.35)  # freeze τ·r for the derivative

    def bias(atoms):
        atoms.calc = calc
        atoms.get_potential_energy()
        return calc.results["bias_energy"], calc.results["forces"] - committee.predict(
            [atoms])["forces"][0]

    e0, f_bias = bias(probe.copy())
    assert e0 < 0
    weights = np.array([1.0, 0.5, 0.5])
    h = 1e-5
    for i in range(3):
        for c in range(3):
            e = []
            for s in (1, -1):
                b = probe.copy()
                b.positions[i, c] += s * h
                e.append(bias(b)[0])
            # the element weight scales the force, not the energy: F_b = w ⊙ (−∂E_b/∂R)
            fd = -(e[0] - e[1]) / (2 * h) * weights[i]
            assert f_bias[i, c] == pytest.approx(fd, rel=1e-4, abs=1e-7)


def test_bias_is_off_during_burn_in_and_weights_mute_hydrogen(setup):
    committee, gf, probe = setup
    calc = UncertaintyBiasedCalculator(committee, gf, tau=0.5, window=3)
    plain = committee.predict([probe])["forces"][0]
    for step in range(5):
        a = probe.copy()
        a.positions[1, 0] += 0.01 * step  # a new geometry each evaluation
        a.calc = calc
        f = a.get_forces()
        if step < 2:  # window not full yet: r = 0, pure model forces
            assert calc.results["bias_scale"] == 0.0
            np.testing.assert_allclose(f, committee.predict([a])["forces"][0], atol=1e-10)
    assert calc.results["bias_scale"] > 0
    diff = f - committee.predict([a])["forces"][0]
    assert np.abs(diff[1:]).max() == 0.0  # hydrogens (weight 0) feel no bias
    assert np.abs(diff[0]).max() > 0
    # τ sets the bias-to-physical force ratio over the window
    ratio = np.linalg.norm(diff) / np.linalg.norm(committee.predict([a])["forces"][0])
    assert 0.05 < ratio < 5
    assert plain.shape == (3, 3)
