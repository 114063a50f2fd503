"""Issue #17: NPT walkers for crystals — the cell follows the pressure, frames keep it.

Runs on ASE's EMT copper (a cheap calculator with a stress), the same walker code the
committee drives.
"""

from __future__ import annotations

import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT

from reactive_al.exploration.md import WalkerConfig, explore, run_walker


def _copper():
    return bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))


def test_npt_walkers_compress_under_pressure_and_expand_under_tension():
    cfg = WalkerConfig(temperatures_K=(300.0,), n_steps=150, timestep_fs=2.0,
                       friction_per_fs=0.05, sample_every=10, progress=False,
                       pressures_bar=(-20000.0, 50000.0))
    start = _copper()
    frames, stats = explore([start], EMT(), cfg, np.random.default_rng(0))
    assert stats["n_walkers"] == 2 and stats["walker_stop_reasons"] == {"max_steps": 2}
    v0 = start.get_volume()
    late = {p: np.mean([f.info["volume_A3"] for f in frames
                        if f.info["pressure_bar"] == p][-5:]) for p in cfg.pressures_bar}
    assert late[-20000.0] > v0 > late[50000.0], (late, v0)
    assert all(f.pbc.all() and abs(f.get_volume() - f.info["volume_A3"]) < 1e-6
               for f in frames)
    lo, hi = stats["volume_range_A3"]
    assert lo < v0 < hi
    # the cell moves in shape too (a fully flexible cell), not only in volume
    assert max(np.ptp(f.cell.lengths()) for f in frames) > 1e-4


def test_a_cell_that_leaves_the_volume_limits_stops_the_walker():
    cfg = WalkerConfig(temperatures_K=(300.0,), n_steps=150, timestep_fs=2.0,
                       friction_per_fs=0.05, sample_every=10, progress=False,
                       max_volume_ratio=1.02)
    frames, reason, steps = run_walker(_copper(), EMT(), 300.0, cfg,
                                       np.random.default_rng(1), "w0",
                                       pressure_bar=-200000.0)
    assert reason == "cell" and steps < cfg.n_steps
    # NVT for the same crystal keeps its cell
    frames, reason, _ = run_walker(_copper(), EMT(), 300.0, cfg, np.random.default_rng(1),
                                   "w0")
    assert reason == "max_steps"
    assert all(abs(f.get_volume() - _copper().get_volume()) < 1e-9 for f in frames)
