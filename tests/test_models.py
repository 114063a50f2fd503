import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.units import Hartree

from reactive_al.models import (
    CommitteeSpec,
    TrainingConfig,
    fit_self_energies,
    train_committee,
)
from reactive_al.oracles.labeling import LabelingConfig, label_structures

from .conftest import HF_STO3G, water


def test_self_energies_recover_linear_composition_model():
    e_h, e_o = -0.5, -75.0  # Hartree
    frames = []
    for n_h in (1, 2, 3):
        a = Atoms("O" + "H" * n_h, positions=np.arange(3 * (n_h + 1)).reshape(-1, 3) * 1.0)
        a.calc = SinglePointCalculator(a, energy=(e_o + n_h * e_h) * Hartree)
        frames.append(a)
    se = fit_self_energies(frames, ["H", "O"])
    assert se["H"] == pytest.approx(e_h, abs=1e-9)
    assert se["O"] == pytest.approx(e_o, abs=1e-9)


@pytest.fixture(scope="module")
def labeled_water(tmp_path_factory):
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(24):
        a = water()
        a.positions += rng.normal(0, 0.06, a.positions.shape)
        frames.append(a)
    cfg = LabelingConfig(charge=0, multiplicity=1, level=HF_STO3G, scheduler="synchronous",
                         cache_path=str(tmp_path_factory.mktemp("c") / "c.db"), progress=False)
    labeled, failures = label_structures(frames, cfg)
    assert not failures
    return labeled


def test_committee_learns_real_qm_forces(labeled_water):
    train, test = labeled_water[:18], labeled_water[18:]
    spec = CommitteeSpec(symbols=["H", "O"], lot="hf-sto-3g", ensemble_size=3, hidden=[32, 24])
    untrained = train_committee(train, spec, TrainingConfig(max_epochs=1, batch_size=18,
                                                            learning_rate=1e-9))
    trained = train_committee(train, spec, TrainingConfig(max_epochs=250, batch_size=8,
                                                          patience=60))

    def force_mae(c):
        p = c.predict(test)
        return np.mean([np.abs(pf - a.get_forces()).mean()
                        for pf, a in zip(p["forces"], test, strict=True)])

    before, after = force_mae(untrained), force_mae(trained)
    assert after < 0.5 * before, (before, after)
    assert trained.history["n_val"] >= 1
    p = trained.predict(test)
    assert p["energy_members"].shape == (3, len(test))
    assert np.all(p["energy_std"] > 0)
    assert all(s.shape == (3,) for s in p["forces_std"])
    # the committee-mean calculator agrees with predict()
    a = test[0].copy()
    a.calc = trained.calculator()
    assert a.get_potential_energy() == pytest.approx(p["energy"][0], abs=1e-6)
    np.testing.assert_allclose(a.get_forces(), p["forces"][0], atol=1e-6)
