"""Issue #17: bias stress — the strain derivative of the uncertainty bias, for NPT walkers.

The gradient-feature uncertainty of a crystal is computed in its cell; its strain derivative
(1/V) ∂u/∂ε and the biased calculator's bias stress must equal finite-difference strain
derivatives of the uncertainty and of the bias energy.
"""

from __future__ import annotations

import numpy as np
import torch
from ase.build import bulk
from ase.stress import voigt_6_to_full_3x3_stress

from reactive_al.exploration.bias import UncertaintyBiasedCalculator
from reactive_al.models import CommitteeSpec, build_model
from reactive_al.models.committee import Committee
from reactive_al.uncertainty.gradient_features import GradientFeatureUncertainty


def _crystal(seed: int):
    atoms = bulk("MgO", "rocksalt", a=4.25, cubic=True)
    atoms.rattle(0.08, seed=seed)
    return atoms


def _strained(atoms, i: int, j: int, eps: float):
    b = atoms.copy()
    d = np.eye(3)
    d[i, j] += eps / 2
    d[j, i] += eps / 2
    b.set_cell(atoms.cell @ d, scale_atoms=True)
    return b


def _fd(f, atoms, eps: float = 1e-4) -> np.ndarray:
    """(1/V) ∂f/∂ε by central differences."""
    out = np.zeros((3, 3))
    for i in range(3):
        for j in range(3):
            out[i, j] = (f(_strained(atoms, i, j, eps)) - f(_strained(atoms, i, j, -eps))) \
                / (2 * eps) / atoms.get_volume()
    return out


def _fitted():
    torch.manual_seed(0)
    spec = CommitteeSpec(symbols=["O", "Mg"], ensemble_size=2, hidden=[16])
    committee = Committee(build_model(spec), spec)
    gf = GradientFeatureUncertainty(num_features=64, sigma_n=0.05).fit(
        committee, [_crystal(s) for s in range(3)])
    return committee, gf


def test_uncertainty_strain_derivative_matches_finite_differences():
    _, gf = _fitted()
    atoms = _crystal(7)
    u, grad, strain = gf.uncertainty_gradient_strain(atoms)
    fd = _fd(lambda a: float(gf.energy_uncertainty([a])[0]), atoms)
    assert np.abs(fd).max() > 1e-8
    np.testing.assert_allclose(strain, fd, rtol=1e-4, atol=1e-6 * np.abs(fd).max())
    # molecules and crystals together: the crystal's values do not depend on the batch
    mol = atoms.copy()
    mol.pbc = False
    us, _, strains = gf.uncertainty_gradient_strain([mol, atoms])
    assert strains[0] is None and us[1] == u
    np.testing.assert_array_equal(strains[1], strain)


def test_bias_stress_is_the_strain_derivative_of_the_bias_energy():
    committee, gf = _fitted()
    calc = UncertaintyBiasedCalculator(committee, gf, tau=0.5, window=1, energy_scale=0.3)
    atoms = _crystal(9)
    atoms.calc = calc
    stress = atoms.get_stress(voigt=False)
    res = dict(calc.results)
    s = res["bias_scale"]
    assert s > 0
    n = len(atoms)
    bias = _fd(lambda a: -s * 0.3 * n * float(gf.energy_uncertainty([a])[0]), atoms)
    assert np.abs(bias).max() > 1e-8
    np.testing.assert_allclose(voigt_6_to_full_3x3_stress(res["bias_stress"]), bias,
                               rtol=1e-4, atol=1e-6 * np.abs(bias).max())
    model = committee.predict([atoms])["stress"][0]
    np.testing.assert_allclose(stress, model + bias, rtol=1e-4, atol=1e-6)
