"""Issue #17: a periodic system runs the whole AL campaign with stress labels.

The shipped ``argon_fcc`` crystal (4 atoms, GFN1-xTB): labels carry stress, the committee
trains on it, NPT walkers (plain and uncertainty-biased, with bias stress) explore cell
volumes at two pressures, and every iteration reports the stress error.
"""

from __future__ import annotations

import json

import pytest
import yaml
from ase.io import read

from .conftest import copy_project, kedro

PARAMS = {
    "system": "argon_fcc",
    "data_engineering": {"initial": {"n_displaced": 4, "n_normal_mode": 2},
                         "test": {"n_displaced": 4, "n_normal_mode": 2},
                         "thermal": {"n_per_well": 0}},
    "labeling": {"scheduler": "synchronous", "progress": False},
    "training": {"model": {"ensemble_size": 2, "hidden": [16]},
                 "fit": {"max_epochs": 40, "min_epochs": 10, "patience": 20, "batch_size": 16}},
    "selection": {"batch_size": 3,
                  "walkers": {"n_steps": 120, "temperatures_K": [300], "sample_every": 10,
                              "timestep_fs": 2.0, "pressures_bar": [-20000, 20000]}},
    "active_learning": {"n_iterations": 2},
    "evaluation": {"md_stability": {"n_walkers": 2, "max_steps": 20}},
}
BIASED = {"strategy": "max_det", "uncertainty": {"method": "gradient_features"},
          "walkers": {**PARAMS["selection"]["walkers"], "bias": {"enabled": True, "tau": 0.5}}}


@pytest.mark.slow
def test_crystal_campaign_runs_end_to_end_with_stress_labels(tmp_path):
    """Uncertainty-biased NPT (the plain NPT walker is tested alone in test_npt.py)."""
    biased = True
    params = yaml.safe_load(yaml.safe_dump(PARAMS))
    params["selection"].update(BIASED)
    root = copy_project(tmp_path, yaml.safe_dump(params))
    result = kedro(root)
    assert result.returncode == 0, result.stderr[-3000:]
    data = root / "data"
    labeled = read(data / "03_primary/labeled_set.extxyz", index=":")
    assert len(labeled) == 6 + 3
    for a in labeled:  # crystals with their cell and a stress label
        assert a.pbc.all() and a.get_volume() > 100
        assert a.get_stress().shape == (6,)
    v0 = read(root / "data/01_raw/argon_fcc/crystal.extxyz").get_volume()
    # the displaced initial samples are strained, the selected NPT frames in their own cells
    assert sum(abs(a.get_volume() - v0) > 1e-3 for a in labeled) >= 4 + 3
    first, last = (json.loads((data / f"08_reporting/iter_0{i}/summary.json").read_text())
                   for i in (0, 1))
    assert first["exploration/biased"] is biased
    lo, hi = first["exploration/volume_range_A3"]
    assert lo < v0 < hi  # tension expands the cell, compression shrinks it
    assert first["selection/n_selected"] == 3
    assert last["test/n_stress"] == 6 and last["test/stress_mae_gpa"] > 0
    assert last["test/stress_mae_gpa"] < first["test/stress_mae_gpa"]
