"""Selection on a real (UHF/STO-3G) H + H2 labeled set: every strategy, bias, samplers."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import yaml
from ase.io import read

from reactive_al.models import CommitteeSpec, TrainingConfig, train_committee
from reactive_al.oracles.labeling import LabelingConfig, label_structures
from reactive_al.pipelines.selection.nodes import explore_candidates, select_batch
from reactive_al.sampling import structure_set

from .conftest import HF_STO3G, PROJECT_ROOT

SELECTION = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_selection.yml").read_text())[
    "selection"]


@pytest.fixture(scope="module")
def h3(tmp_path_factory):
    r = read(PROJECT_ROOT / "data/01_raw/h3_exchange/reactant.xyz")
    p = read(PROJECT_ROOT / "data/01_raw/h3_exchange/product.xyz")
    frames = structure_set(r, p, 4, 4, 3, 1, 0.05, 600, np.random.default_rng(0))
    cfg = LabelingConfig(charge=0, multiplicity=2, level=HF_STO3G, scheduler="synchronous",
                         cache_path=str(tmp_path_factory.mktemp("c") / "c.db"), progress=False)
    labeled, failures = label_structures(frames, cfg)
    assert not failures
    spec = CommitteeSpec(symbols=["H"], lot="hf-sto-3g", ensemble_size=2, hidden=[16])
    committee = train_committee(labeled, spec, TrainingConfig(max_epochs=40, batch_size=16))
    r.info.update(origin="reactant", subset="reactant")
    p.info.update(origin="product", subset="product")
    return committee, labeled, [r, p]


def _selection(**overrides):
    sel = copy.deepcopy(SELECTION)
    sel["walkers"].update(n_steps=40, temperatures_K=[300], sample_every=4)
    sel["batch_size"] = 4
    for key, value in overrides.items():
        if isinstance(value, dict):
            sel[key].update(value)
        else:
            sel[key] = value
    return sel


@pytest.mark.parametrize("strategy", ["top_k", "threshold", "max_det", "max_dist", "kmeans",
                                      "random"])
def test_every_strategy_selects_distinct_new_structures(h3, strategy):
    committee, labeled, seeds = h3
    sel = _selection(strategy=strategy)
    candidates, _ = explore_candidates(committee, seeds, labeled, sel)
    selected, stats = select_batch(committee, candidates, labeled, sel)
    assert len(selected) == 4
    assert stats["strategy"] == strategy and stats["n_calibration_frames"] > 0
    positions = [a.positions.tobytes() for a in selected]
    assert len(set(positions)) == 4
    assert all(a.info["selected_by"].startswith(strategy) for a in selected)
    if strategy == "top_k":
        scores = [a.info["force_uncertainty_ev_per_a"] for a in selected]
        assert scores == sorted(scores, reverse=True)
        assert stats["selected_score_min"] >= stats["candidate_score_mean"]


def test_gradient_feature_uncertainty_and_biased_walkers_with_samplers(h3):
    committee, labeled, seeds = h3
    sel = _selection(
        strategy="max_det",
        uncertainty={"method": "gradient_features", "num_features": 128},
        walkers={"bias": {"enabled": True, "tau": 0.2, "element_weights": {"H": 1.0},
                          "window": 10}},
        samplers={"neb": {"enabled": True, "n_images": 3, "fmax": 0.5, "steps": 20},
                  "normal_modes": {"enabled": True, "n_per_minimum": 3, "temperature_K": 300}},
    )
    candidates, stats = explore_candidates(committee, seeds, labeled, sel)
    origins = {a.info["origin"].split("/")[0] for a in candidates}
    assert {"md", "neb"} <= origins
    assert stats["biased"] and stats["n_normal_mode_candidates"] == 6
    selected, sstats = select_batch(committee, candidates, labeled, sel)
    assert len(selected) == 4 and sstats["uncertainty"] == "gradient_features"
    assert sstats["energy_calibration_scale"] > 0


def test_unknown_strategy_names_the_parameter_file(h3):
    committee, labeled, _ = h3
    with pytest.raises(ValueError, match="parameters_selection.yml: unknown strategy"):
        select_batch(committee, labeled[:3], labeled, _selection(strategy="best"))
