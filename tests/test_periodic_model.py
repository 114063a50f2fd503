"""Issue #17: a committee on crystals — stress by the strain derivative, trained on stress labels.

The stress of a TorchANI committee is σ = (1/V) ∂E/∂ε (positions and cell strained
together); it must equal a finite-difference strain derivative of the committee's own energy,
and training on GFN1-xTB labels with stress must bring the model's stress towards them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule
from ase.calculators.singlepoint import SinglePointCalculator

from reactive_al.models import CommitteeSpec, build_model
from reactive_al.models.committee import Committee
from reactive_al.models.training import TrainingConfig, train_committee


def _crystal(seed: int, strain: float = 0.0):
    atoms = bulk("MgO", "rocksalt", a=4.25, cubic=True)
    rng = np.random.default_rng(seed)
    deform = np.eye(3) + strain * rng.uniform(-1, 1, (3, 3))
    atoms.set_cell(atoms.cell @ (0.5 * (deform + deform.T)), scale_atoms=True)
    atoms.rattle(0.05, seed=seed)
    return atoms


def _committee(seed: int = 0) -> Committee:
    torch.manual_seed(seed)
    spec = CommitteeSpec(symbols=["O", "Mg"], ensemble_size=2, hidden=[16])
    return Committee(build_model(spec), spec)


def _strain_derivative(committee: Committee, atoms, eps: float = 1e-3) -> np.ndarray:
    """Central finite difference (1/V) ∂E/∂ε of the committee energy (eV/Å³)."""
    fd = np.zeros((3, 3))
    for i in range(3):
        for j in range(3):
            e = []
            for sign in (1, -1):
                b = atoms.copy()
                d = np.eye(3)
                d[i, j] += sign * eps / 2
                d[j, i] += sign * eps / 2
                b.set_cell(atoms.cell @ d, scale_atoms=True)
                e.append(committee.predict([b])["energy"][0])
            fd[i, j] = (e[0] - e[1]) / (2 * eps) / atoms.get_volume()
    return fd


def test_model_stress_is_the_strain_derivative_of_the_model_energy():
    committee, atoms = _committee(), _crystal(1, strain=0.03)
    p = committee.predict([atoms])
    fd = _strain_derivative(committee, atoms)
    assert np.abs(fd).max() > 1e-3  # an untrained model is far from equilibrium: not zero
    np.testing.assert_allclose(p["stress"][0], fd, atol=2e-4 * np.abs(fd).max() + 1e-6)
    np.testing.assert_allclose(p["stress"][0], p["stress"][0].T, atol=1e-7)
    # forces of the crystal are minus the gradient of the same energy (periodic images in)
    i, h = 3, 1e-3
    plus, minus = atoms.copy(), atoms.copy()
    plus.positions[i, 0] += h
    minus.positions[i, 0] -= h
    de = committee.predict([plus])["energy"][0] - committee.predict([minus])["energy"][0]
    assert p["forces"][0][i, 0] == pytest.approx(-de / (2 * h), rel=2e-3, abs=1e-4)


def test_crystals_and_molecules_in_one_batch_match_their_own_predictions():
    committee = _committee()
    crystal, mol = _crystal(2), molecule("H2O")
    committee = Committee(build_model(CommitteeSpec(symbols=["H", "O", "Mg"], ensemble_size=2,
                                                    hidden=[16])),
                          CommitteeSpec(symbols=["H", "O", "Mg"], ensemble_size=2,
                                        hidden=[16]))
    both = committee.predict([crystal, mol])
    alone = [committee.predict([crystal]), committee.predict([mol])]
    np.testing.assert_allclose(both["energy"], [alone[0]["energy"][0], alone[1]["energy"][0]],
                               rtol=1e-5)
    np.testing.assert_allclose(both["stress"][0], alone[0]["stress"][0], rtol=1e-4, atol=1e-7)
    assert "stress" not in alone[1] and np.all(both["stress"][1] == 0)
    # the ASE calculator gives a Voigt stress for the crystal only
    crystal.calc = committee.calculator()
    np.testing.assert_allclose(crystal.get_stress(voigt=False), alone[0]["stress"][0],
                               rtol=1e-5, atol=1e-8)
    assert crystal.calc.results["stress_std"] > 0


def test_training_on_stress_labels_learns_the_stress():
    pytest.importorskip("tblite")
    from tblite.ase import TBLite

    frames = []
    for seed in range(8):
        atoms = _crystal(seed, strain=0.04)
        atoms.calc = TBLite(method="GFN1-xTB", verbosity=0)
        e, f, s = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        atoms.calc = SinglePointCalculator(atoms, energy=e, forces=f, stress=s)
        frames.append(atoms)
    train, test = frames[:6], frames[6:]
    spec = CommitteeSpec(symbols=["O", "Mg"], ensemble_size=2, hidden=[16])
    cfg = TrainingConfig(max_epochs=60, min_epochs=60, batch_size=6, learning_rate=1e-2,
                         validation_fraction=0.0, progress=False)
    errors = {}
    for weight in (0.0, 1.0):
        committee = train_committee(train, spec, TrainingConfig(**{**cfg.__dict__,
                                                                   "stress_weight": weight}))
        pred = committee.predict(test)["stress"]
        ref = np.array([a.get_stress(voigt=False) for a in test])
        errors[weight] = float(np.abs(pred - ref).mean())
    assert "val_virial_rmse_ev_per_sqrt_atom" in committee.history
    # with the stress term the test stress error falls well below training without it
    assert errors[1.0] < 0.5 * errors[0.0], errors


def test_precomputed_features_give_the_autograd_stress_of_crystals_and_molecules():
    from reactive_al.models import frames_to_tensors
    from reactive_al.models.committee import member_terms
    from reactive_al.models.features import PrecomputedFeatures

    torch.manual_seed(0)
    model = build_model(CommitteeSpec(symbols=["H", "O", "Mg"], ensemble_size=2, hidden=[16]))
    strained = _crystal(1).copy()
    strained.set_cell(strained.cell * 1.02, scale_atoms=True)
    t = frames_to_tensors([_crystal(1), molecule("H2O"), strained], with_labels=False)
    fast = PrecomputedFeatures(model, t["species"], t["coordinates"], cells=t["cells"],
                               periodic=t["periodic"]).terms(np.arange(3), False)
    slow = member_terms(model, t, np.arange(3), False)
    assert slow[2].abs().max() > 1e-3 and torch.all(slow[2][:, 1] == 0)
    for a, b in zip(fast, slow, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
