import numpy as np
from ase import Atoms
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
