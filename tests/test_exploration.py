import numpy as np
import pytest
from ase import Atoms, units
from ase.calculators.emt import EMT

from reactive_al.exploration import WalkerConfig, explore, run_walker


def _methane():
    return Atoms("CH4", positions=[[0, 0, 0], [0.63, 0.63, 0.63], [-0.63, -0.63, 0.63],
                                   [-0.63, 0.63, -0.63], [0.63, -0.63, -0.63]])


def test_langevin_walker_holds_its_temperature():
    # ASE's default fixcm=True runs small molecules far too hot; the walker must not
    temps = []
    for seed in range(3):
        cfg = WalkerConfig(n_steps=1500, timestep_fs=0.5, friction_per_fs=0.02, sample_every=5)
        frames, reason, _ = run_walker(_methane(), EMT(), 300.0, cfg,
                                       np.random.default_rng(seed), "w")
        assert reason == "max_steps"
        temps += [f.info["kinetic_temperature_K"] for f in frames[50:]]
    assert 240 < np.mean(temps) < 360, np.mean(temps)


def test_broken_frames_stop_the_walker_and_are_counted():
    cfg = WalkerConfig(temperatures_K=(300.0,), n_steps=50, sample_every=1, max_force=1e-3)
    seed = _methane()
    seed.info["origin"] = "reactant"
    candidates, stats = explore([seed], EMT(), cfg, np.random.default_rng(0))
    assert candidates == []
    assert stats["walker_stop_reasons"] == {"huge_force": 1}


class _GrowingUncertainty(EMT):
    """EMT plus a fake atomic uncertainty that grows with every evaluation."""

    implemented_properties = ["energy", "forces", "forces_std"]

    def __init__(self):
        super().__init__()
        self.calls = 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=None):
        super().calculate(atoms, ["energy", "forces"], system_changes or [])
        self.calls += 1
        self.results["forces_std"] = np.full(len(self.atoms), 0.01 * self.calls)


def test_walker_stops_at_uncertainty_threshold_and_keeps_that_frame():
    cfg = WalkerConfig(n_steps=500, sample_every=1000, max_atomic_uncertainty=0.3)
    frames, reason, steps = run_walker(_methane(), _GrowingUncertainty(), 300.0, cfg,
                                       np.random.default_rng(0), "w")
    assert reason == "uncertainty"
    assert steps < 500
    assert len(frames) == 1  # sample_every is never reached: only the terminating frame
    assert frames[0].info["walker_max_atomic_uncertainty"] > 0.3


def test_neb_on_a_calculator_gives_path_candidates():
    from ase.io import read

    from reactive_al.exploration import neb_candidates

    from .conftest import PROJECT_ROOT

    r = read(PROJECT_ROOT / "data/01_raw/h3_exchange/reactant.xyz")
    p = read(PROJECT_ROOT / "data/01_raw/h3_exchange/product.xyz")
    frames, stats = neb_candidates(r, p, EMT(), n_images=5, fmax=0.05, steps=300)
    assert len(frames) == 5
    assert {f.info["subset"] for f in frames} == {"path"}
    assert set(stats) == {"neb_converged", "neb_steps", "neb_model_barrier_ev", "neb_energies_ev"}
    assert len(stats["neb_energies_ev"]) == 7
    e = stats["neb_energies_ev"]
    assert stats["neb_model_barrier_ev"] == max(e) - e[0]
    # the middle of the exchange path is symmetric: both H-H distances alike
    mid = frames[2]
    assert abs(mid.get_distance(0, 1) - mid.get_distance(1, 2)) < 0.3


def test_model_hessian_gives_the_analytic_morse_frequency():
    from ase.calculators.morse import MorsePotential

    from reactive_al.exploration import finite_difference_hessian, model_normal_mode_samples
    from reactive_al.exploration.structures import modes_from_hessian

    eps, r0, rho0 = 4.7, 0.74, 2.0
    h2 = Atoms("H2", positions=[[0, 0, 0], [r0, 0, 0]])
    calc = MorsePotential(epsilon=eps, r0=r0, rho0=rho0)
    hess = finite_difference_hessian(h2, calc, delta=1e-3)
    np.testing.assert_allclose(hess, hess.T, atol=1e-6)
    w2, modes = modes_from_hessian(hess, h2.get_masses(), h2.positions)
    assert len(w2) == 1  # a diatomic has one vibration
    k = 2 * eps * (rho0 / r0) ** 2
    mu = h2.get_masses()[0] / 2
    assert w2[0] == pytest.approx(k / mu, rel=1e-3)
    assert abs(modes[0][0, 0]) > 0.9 * np.abs(modes[0]).max()  # a stretch along x
    h2.info["subset"] = "reactant"
    frames = model_normal_mode_samples([h2], calc, 200, 300.0, np.random.default_rng(0))
    d = np.array([f.get_distance(0, 1) for f in frames])
    # classical thermal spread of the bond length: sqrt(kT / k)
    assert np.std(d) == pytest.approx(np.sqrt(units.kB * 300 / k), rel=0.2)
    assert frames[0].info["origin"] == "reactant/model_normal_mode"


def test_frame_is_broken_sees_close_pairs_in_molecules_and_across_cell_faces():
    from reactive_al.exploration import frame_is_broken

    cfg = WalkerConfig()
    quiet = np.zeros((3, 3))
    mol = Atoms("H3", positions=[[0, 0, 0], [1.0, 0, 0], [0, 1.0, 0]])
    assert frame_is_broken(mol, quiet, cfg) is None
    mol.positions[2] = [1.0, 0, 0.1]  # 0.1 Å from atom 1
    assert frame_is_broken(mol, quiet, cfg) == "too_close"
    # in a crystal a pair is close through the periodic boundary, not inside the cell
    crystal = Atoms("H2", positions=[[0.05, 2, 2], [3.95, 2, 2]], cell=[4, 4, 4], pbc=True)
    assert frame_is_broken(crystal, quiet[:2], cfg) == "too_close"
    crystal.positions[1, 0] = 2.0
    assert frame_is_broken(crystal, quiet[:2], cfg) is None
    assert frame_is_broken(mol[:2], np.array([[1e3, 0, 0], [0, 0, 0]]), cfg) is not None
