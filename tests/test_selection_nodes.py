"""Selection on a real (UHF/STO-3G) H + H2 labeled set: every strategy, bias, samplers."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import yaml
from ase.io import read

from reactive_al.exploration.structures import structure_set
from reactive_al.models import CommitteeSpec, TrainingConfig, train_committee
from reactive_al.oracles.labeling import LabelingConfig, label_structures
from reactive_al.pipelines.selection.nodes import explore_candidates, fit_estimator, select_batch

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
    est = fit_estimator(committee, labeled, sel)
    candidates, _ = explore_candidates(committee, seeds, est, sel)
    selected, stats = select_batch(committee, candidates, labeled, est, sel)
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
    est = fit_estimator(committee, labeled, sel)
    candidates, stats = explore_candidates(committee, seeds, est, sel)
    origins = {a.info["origin"].split("/")[0] for a in candidates}
    assert {"md", "neb"} <= origins
    assert stats["biased"] and stats["n_normal_mode_candidates"] == 6
    selected, sstats = select_batch(committee, candidates, labeled, est, sel)
    assert len(selected) == 4 and sstats["uncertainty"] == "gradient_features"
    assert sstats["energy_calibration_scale"] > 0


def test_unknown_strategy_names_the_parameter_file(h3):
    committee, labeled, _ = h3
    with pytest.raises(ValueError, match="parameters_selection.yml: unknown strategy"):
        select_batch(committee, labeled[:3], labeled,
                     fit_estimator(committee, labeled, _selection()), _selection(strategy="best"))


# -- extension points: a strategy and a sampler registered here, chosen by configuration ------
from reactive_al.exploration import register_sampler  # noqa: E402
from reactive_al.selection import register_strategy  # noqa: E402


@register_strategy("toy_lowest")
def _toy_lowest(request):
    """Picks the *least* uncertain candidates: the opposite of top-k, easy to recognise."""
    return np.argsort(request.scores, kind="stable")[: request.batch_size]


@register_sampler("toy_stretch")
def _toy_stretch(ctx, settings):
    """One copy of every well with its first atom moved by ``shift`` Å along x."""
    frames = []
    for well in ctx.wells:
        a = well.copy()
        a.positions[0, 0] += float(settings["shift"])
        a.info.update(origin="toy_stretch", subset=well.info["subset"])
        frames.append(a)
    return frames, {"n_toy_candidates": len(frames)}


def _run_selection_pipeline(committee, labeled, seeds, sel):
    """The ``selection`` pipeline run by Kedro on in-memory inputs and parameters."""
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.runner import SequentialRunner

    from reactive_al.pipelines.selection import create_pipeline

    class Kept(MemoryDataset):
        """Keeps its data after the runner is done with it, so the test can read it."""

        def _release(self) -> None:
            pass

    catalog = DataCatalog({
        "committee": MemoryDataset(committee, copy_mode="assign"),
        "labeled_set": MemoryDataset(labeled, copy_mode="assign"),
        "md_seeds": MemoryDataset(seeds, copy_mode="assign"),
        "params:selection": MemoryDataset(sel),
    })
    for name in ("candidates", "selected", "exploration_stats", "selection_stats"):
        catalog[name] = Kept(copy_mode="assign")
    SequentialRunner().run(create_pipeline(), catalog)
    return {name: catalog.load(name) for name in
            ("candidates", "selected", "exploration_stats", "selection_stats")}


def test_toy_strategy_and_sampler_run_through_configuration_alone(h3):
    committee, labeled, seeds = h3
    sel = _selection(strategy="toy_lowest", samplers={"toy_stretch": {"enabled": True,
                                                                       "shift": 0.3}})
    out = _run_selection_pipeline(committee, labeled, seeds, sel)
    toy = [a for a in out["candidates"] if a.info["origin"] == "toy_stretch"]
    assert len(toy) == 2 and out["exploration_stats"]["n_toy_candidates"] == 2
    assert out["selection_stats"]["strategy"] == "toy_lowest"
    chosen = [a.info["force_uncertainty_ev_per_a"] for a in out["selected"]]
    assert len(chosen) == 4 and chosen == sorted(chosen)
    # the least uncertain of all candidates that are not near-duplicates of training frames
    assert chosen[-1] <= out["selection_stats"]["candidate_score_mean"]


def test_unknown_sampler_is_rejected_with_the_parameter_file(h3):
    committee, labeled, seeds = h3
    sel = _selection(samplers={"no_such_sampler": {"enabled": True}})
    with pytest.raises(ValueError, match="parameters_selection.yml.*no_such_sampler"):
        explore_candidates(committee, seeds, fit_estimator(committee, labeled, sel), sel)


def test_estimator_is_fitted_once_for_selection_and_once_for_evaluation(h3, monkeypatch):
    """Biased walkers + max-det both need gradient features: still one fit per consumer."""
    from reactive_al.pipelines.evaluation.nodes import evaluate
    from reactive_al.uncertainty import GradientFeatureUncertainty, UncertaintyEstimator

    counts = {"estimator": 0, "gradient_features": 0}
    init, fit = UncertaintyEstimator.__init__, GradientFeatureUncertainty.fit

    def counting_init(self, *args, **kwargs):
        counts["estimator"] += 1
        init(self, *args, **kwargs)

    def counting_fit(self, *args, **kwargs):
        counts["gradient_features"] += 1
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(UncertaintyEstimator, "__init__", counting_init)
    monkeypatch.setattr(GradientFeatureUncertainty, "fit", counting_fit)
    committee, labeled, seeds = h3
    sel = _selection(strategy="max_det", uncertainty={"num_features": 64},
                     walkers={"bias": {"enabled": True, "tau": 0.2, "window": 10}})
    out = _run_selection_pipeline(committee, labeled, seeds, sel)
    assert out["exploration_stats"]["biased"] and len(out["selected"]) == 4
    assert counts == {"estimator": 1, "gradient_features": 1}
    params = {"calibration": {"gradient_features": {"enabled": True, "num_features": 64}}}
    metrics, products = evaluate(committee, labeled, labeled, [], params)
    assert counts == {"estimator": 2, "gradient_features": 2}
    assert "calibration/gf_energy_spearman" in metrics
    assert set(products["calibration_curves"]) == {"force", "energy", "gf_energy"}


@pytest.mark.parametrize("override, key", [
    ({"strategy": "best"}, "selection.strategy"),
    ({"uncertainty": {"method": "gp"}}, "selection.uncertainty.method"),
    ({"criterion": "dipole"}, "selection.criterion"),
    ({"batch_size": -2}, "selection.batch_size"),
    ({"samplers": {"metadynamics": {"enabled": True}}}, "unknown sampler"),
])
def test_selection_block_is_checked_against_the_registries(override, key):
    from reactive_al.selection import check_selection

    check_selection(copy.deepcopy(SELECTION))  # the shipped block is valid
    with pytest.raises(ValueError, match="parameters_selection.yml") as err:
        check_selection({**copy.deepcopy(SELECTION), **override})
    assert key in str(err.value) and "\n" not in str(err.value)
