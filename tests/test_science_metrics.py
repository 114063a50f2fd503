"""Science metrics on synthetic inputs with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import molecule
from ase.calculators.emt import EMT
from ase.calculators.morse import MorsePotential
from ase.io import read
from scipy.integrate import quad
from scipy.stats import norm

from reactive_al.evaluation import (
    EV_TO_KCAL_MOL,
    alanine_dipeptide_phi_psi_indices,
    barrier_and_reaction_energy,
    barrier_error_kcal,
    calibration_curve,
    dihedral_phi_psi,
    forgetting_ratio,
    interpolate_max,
    interval_coverage,
    md_stability,
    miscalibration_area,
    path_coordinate,
    path_energies,
    phi_psi_of_frames,
    quadtree_coverage,
    quadtree_level_fractions,
    spearman,
    steps_until_unphysical,
)

from .conftest import PROJECT_ROOT

ALANINE = PROJECT_ROOT / "data/01_raw/alanine_dipeptide/reactant.xyz"


# -- barriers --------------------------------------------------------------------------------
def test_barrier_and_reaction_energy():
    out = barrier_and_reaction_energy([1.0, 1.3, 1.8, 1.1, 0.6])
    assert out["barrier_ev"] == pytest.approx(0.8)
    assert out["reaction_energy_ev"] == pytest.approx(-0.4)
    assert out["ts_index"] == 2
    with pytest.raises(ValueError):
        barrier_and_reaction_energy([1.0])


def test_barrier_error_kcal_is_signed_model_minus_reference():
    assert abs(EV_TO_KCAL_MOL - 23.0605) < 1e-3
    ref = np.array([0.0, 0.3, 0.5, 0.2, -0.1])
    model = ref + np.array([0.0, 0.0, 0.1, 0.0, -0.05])
    out = barrier_error_kcal(model, ref)
    assert out["barrier_error_kcal_mol"] == pytest.approx(0.1 * 23.0605, rel=1e-4)
    assert out["reaction_energy_error_kcal_mol"] == pytest.approx(-0.05 * 23.0605, rel=1e-4)
    assert out["reference_barrier_kcal_mol"] == pytest.approx(0.5 * 23.0605, rel=1e-4)
    assert out["model_barrier_kcal_mol"] == pytest.approx(0.6 * 23.0605, rel=1e-4)
    with pytest.raises(ValueError):
        barrier_error_kcal(model[:3], ref)


def test_path_energies_matches_analytic_morse_and_keeps_images():
    r0, eps, rho0 = 1.0, 2.0, 6.0
    rs = np.array([0.9, 1.0, 1.2, 1.5])
    images = [Atoms("H2", positions=[[0, 0, 0], [r, 0, 0]]) for r in rs]
    e = path_energies(images, MorsePotential(epsilon=eps, r0=r0, rho0=rho0))
    x = np.exp(rho0 * (1 - rs / r0))
    np.testing.assert_allclose(e, eps * x * (x - 2), rtol=1e-10)
    assert all(img.calc is None for img in images)


def test_interpolate_max_recovers_analytic_barrier():
    s = np.linspace(0.0, 1.0, 7)
    e = np.sin(np.pi * s) ** 2
    out = interpolate_max(s, e)
    assert out["coordinate_max"] == pytest.approx(0.5, abs=1e-6)
    assert out["energy_max_ev"] == pytest.approx(1.0, abs=1e-3)
    assert out["barrier_ev"] == pytest.approx(1.0, abs=1e-3)
    # maximum between images: shift the peak off the knots
    e2 = np.sin(np.pi * s**1.3) ** 2
    out2 = interpolate_max(s, e2)
    assert out2["coordinate_max"] == pytest.approx(0.5 ** (1 / 1.3), abs=0.02)
    assert out2["energy_max_ev"] == pytest.approx(1.0, abs=0.02)
    # monotonic downhill profile: maximum at the reactant, zero barrier
    assert interpolate_max(s, 1 - s)["barrier_ev"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError):
        interpolate_max([0.0, 0.0, 1.0], [0.0, 1.0, 0.0])


def test_path_coordinate_is_normalized_arc_length():
    images = [Atoms("H2", positions=[[0, 0, 0], [0.7 + 0.1 * k, 0, 0]]) for k in range(5)]
    np.testing.assert_allclose(path_coordinate(images), np.linspace(0, 1, 5))
    np.testing.assert_allclose(path_coordinate(images, normalize=False), 0.1 * np.arange(5))


def test_committee_path_energies_gives_total_energy_spread():
    from reactive_al.evaluation import committee_path_energies
    from reactive_al.models import Committee, CommitteeSpec, build_model

    spec = CommitteeSpec(symbols=["H", "O"], ensemble_size=3, hidden=[8], radial_shifts=4,
                         angular_shifts=2, angular_sections=2)
    committee = Committee(build_model(spec).eval(), spec)
    images = [Atoms("OH2", positions=[[0, 0, 0], [0.9 + 0.05 * k, 0, 0], [-0.24, 0.93, 0]])
              for k in range(4)]
    e, sigma = committee_path_energies(committee, images)
    p = committee.predict(images)
    np.testing.assert_allclose(e, p["energy"])
    np.testing.assert_allclose(sigma, p["energy_std"] * np.sqrt(3), rtol=1e-6)
    assert e.shape == sigma.shape == (4,)


# -- calibration -----------------------------------------------------------------------------
def test_spearman():
    u = np.arange(10.0)
    assert spearman(u, u**3) == pytest.approx(1.0)
    assert spearman(u, -u) == pytest.approx(-1.0)
    assert np.isnan(spearman(u, np.ones(10)))
    assert np.isnan(spearman([1.0, 2.0], [1.0, 2.0]))


def test_interval_coverage_known_and_gaussian():
    # z(95 %) = 1.96: 0.5 and 1.5 inside, 2.5 outside
    assert interval_coverage([0.5, -1.5, 2.5], 1.0, 0.95) == pytest.approx(2 / 3)
    rng = np.random.default_rng(0)
    sigma = rng.uniform(0.1, 2.0, 20000)
    errors = rng.normal(0.0, sigma)
    assert interval_coverage(errors, sigma, 0.95) == pytest.approx(0.95, abs=0.01)
    assert interval_coverage(errors, sigma, 0.5) == pytest.approx(0.5, abs=0.015)
    with pytest.raises(ValueError):
        interval_coverage(errors, sigma, 1.0)


@pytest.fixture(scope="module")
def gaussian_errors() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    sigma = rng.uniform(0.05, 0.5, 20000)  # heteroscedastic, as committee spreads are
    return rng.normal(0.0, sigma), sigma


def test_calibration_curve_shape(gaussian_errors):
    errors, sigma = gaussian_errors
    expected, observed = calibration_curve(errors, sigma, n_levels=9)
    np.testing.assert_allclose(expected, np.arange(1, 10) / 10)
    assert np.all(np.diff(observed) >= 0)
    np.testing.assert_allclose(observed, expected, atol=0.015)


def test_miscalibration_area_calibrated_vs_miscalibrated(gaussian_errors):
    errors, sigma = gaussian_errors
    calibrated = miscalibration_area(errors, sigma)
    assert calibrated < 0.03

    # σ_pred = σ/2: observed coverage is P(|Z| ≤ z_p/2) = 2Φ(z_p/2) − 1, below the diagonal
    def gap(p: float) -> float:
        return p - (2 * norm.cdf(norm.ppf(0.5 + p / 2) / 2) - 1)

    analytic, _ = quad(gap, 0, 1)
    overconfident = miscalibration_area(errors, sigma / 2)
    assert overconfident == pytest.approx(analytic, abs=0.01)
    assert overconfident > 5 * calibrated
    underconfident = miscalibration_area(errors, sigma * 2)
    assert underconfident > 0.1
    e_over, o_over = calibration_curve(errors, sigma / 2)
    assert np.all(o_over <= e_over + 0.01)


# -- forgetting ------------------------------------------------------------------------------
def test_forgetting_ratio():
    np.testing.assert_allclose(forgetting_ratio([0.2, 0.2, 0.3, 0.1]), [1.0, 1.0, 1.5, 0.5])
    with pytest.raises(ValueError):
        forgetting_ratio([0.0, 0.1])


# -- MD stability ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def relaxed_methane() -> Atoms:
    from ase.optimize import BFGS

    a = molecule("CH4")
    a.calc = EMT()
    BFGS(a, logfile=None).run(fmax=0.01, steps=100)
    a.calc = None
    return a


def test_stable_md_reaches_max_steps(relaxed_methane):
    out = md_stability([relaxed_methane], EMT(), 300.0, n_walkers=2, max_steps=40,
                       rng=np.random.default_rng(0))
    assert out["all_steps"] == [40, 40]
    assert out["median_steps"] == 40
    assert out["fraction_stable"] == 1.0


def test_unphysical_md_stops_at_first_step(relaxed_methane):
    rng = np.random.default_rng(0)
    assert steps_until_unphysical(relaxed_methane, EMT(), 300.0, 40, 0.6, 1e-6, rng) == 1
    # every C-H bond is shorter than 1.5 Å
    assert steps_until_unphysical(relaxed_methane, EMT(), 300.0, 40, 1.5, 25.0, rng) == 1
    assert relaxed_methane.calc is None


# -- Ramachandran coverage -------------------------------------------------------------------
def test_dihedral_wrapped_to_half_open_range():
    a = Atoms("C4", positions=[[1, 0, 0], [0, 0, 0], [0, 0, 1.5], [1, 0, 1.5]])
    a.set_dihedral(0, 1, 2, 3, 270.0)
    phi, psi = dihedral_phi_psi(a, (0, 1, 2, 3), (3, 2, 1, 0))
    assert phi == pytest.approx(-90.0)
    assert psi == pytest.approx(-90.0)
    a.set_dihedral(0, 1, 2, 3, 180.0)
    phi, _ = dihedral_phi_psi(a, (0, 1, 2, 3), (3, 2, 1, 0))
    assert phi == pytest.approx(-180.0)
    assert phi_psi_of_frames([a, a], (0, 1, 2, 3), (3, 2, 1, 0)).shape == (2, 2)


def test_quadtree_single_point():
    expected = sum(1 / 4**h for h in range(1, 6)) / 5
    assert quadtree_coverage(np.array([[-60.0, 45.0]]), depth=5) == pytest.approx(expected)
    assert quadtree_coverage(np.zeros((0, 2))) == 0.0


def test_quadtree_four_quadrants():
    pts = np.array([[-90.0, -90.0], [-90.0, 90.0], [90.0, -90.0], [90.0, 90.0]])
    np.testing.assert_allclose(quadtree_level_fractions(pts, 3), [1.0, 4 / 16, 4 / 64])
    assert quadtree_coverage(pts, 3) == pytest.approx((1 + 4 / 16 + 4 / 64) / 3)
    # both boundaries, ±180°, land inside the grid
    edge = np.array([[180.0, 180.0], [-180.0, -180.0]])
    np.testing.assert_allclose(quadtree_level_fractions(edge, 1), [0.5])


def test_quadtree_dense_grid_covers_everything():
    centres = np.linspace(-180, 180, 65)[:-1] + 360 / 128
    grid = np.array(np.meshgrid(centres, centres)).reshape(2, -1).T
    assert quadtree_coverage(grid, depth=5) == pytest.approx(1.0)
    assert quadtree_coverage(grid, depth=6) == pytest.approx(1.0)


def test_alanine_dipeptide_backbone_indices():
    atoms = read(ALANINE)
    assert len(atoms) == 22
    phi_idx, psi_idx = alanine_dipeptide_phi_psi_indices(atoms)
    sym = atoms.get_chemical_symbols()
    assert [sym[i] for i in phi_idx] == ["C", "N", "C", "C"]
    assert [sym[i] for i in psi_idx] == ["N", "C", "C", "N"]
    assert phi_idx[1:] == psi_idx[:3]
    assert (phi_idx, psi_idx) == ((1, 3, 4, 6), (3, 4, 6, 8))
    phi, psi = dihedral_phi_psi(atoms, phi_idx, psi_idx)
    assert np.isfinite([phi, psi]).all()
    assert -180 <= phi < 180 and -180 <= psi < 180
    # MMFF minimum from RDKit: the C7eq basin (φ ≈ −83°, ψ ≈ 56°)
    assert -120 < phi < -50 and 20 < psi < 100

    # atom order must not matter
    perm = np.random.default_rng(0).permutation(len(atoms))
    shuffled = atoms[perm]
    s_phi, s_psi = alanine_dipeptide_phi_psi_indices(shuffled)
    assert tuple(perm[list(s_phi)]) == phi_idx and tuple(perm[list(s_psi)]) == psi_idx


def test_alanine_indices_reject_non_peptide():
    with pytest.raises(ValueError):
        alanine_dipeptide_phi_psi_indices(molecule("H2O"))


def test_units_constant_consistent_with_ase():
    assert EV_TO_KCAL_MOL * (units.kcal / units.mol) == pytest.approx(1.0)
