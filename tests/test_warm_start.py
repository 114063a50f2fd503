"""Warm start + replay: continuing the previous committee instead of retraining it."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from ase import Atoms
from ase.calculators.morse import MorsePotential
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read

from reactive_al.models import (
    Committee,
    CommitteeSpec,
    TrainingConfig,
    frame_key,
    train_committee,
)
from reactive_al.models.features import PrecomputedFeatures

from .conftest import PROJECT_ROOT

SPEC = CommitteeSpec(symbols=["H"], lot="morse", ensemble_size=2, hidden=[8],
                     radial_shifts=8, angular_shifts=4, angular_sections=2)
FAST = {"batch_size": 64, "patience": 50, "learning_rate": 5e-3}


def _h3_frames(n: int, seed: int) -> list[Atoms]:
    """H + H2 geometries around the reactant and product wells, labeled by a Morse potential."""
    wells = [read(PROJECT_ROOT / f"data/01_raw/h3_exchange/{w}.xyz")
             for w in ("reactant", "product")]
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n):
        a = wells[i % 2].copy()
        a.positions += rng.normal(0, 0.08, a.positions.shape)
        a.calc = MorsePotential(epsilon=4.7, r0=0.74, rho0=1.4)
        e, f = a.get_potential_energy(), a.get_forces()
        a.calc = SinglePointCalculator(a, energy=e, forces=f)
        frames.append(a)
    return frames


@pytest.fixture(scope="module")
def frames() -> list[Atoms]:
    return _h3_frames(20, seed=1)


@pytest.fixture(scope="module")
def previous(frames):
    return train_committee(frames[:12], SPEC, TrainingConfig(max_epochs=20, **FAST))


def test_warm_start_starts_from_the_previous_weights(frames, previous):
    frozen = {**FAST, "learning_rate": 0.0}  # AdamW with lr 0 leaves every weight unchanged
    warm = train_committee(frames, SPEC, TrainingConfig(mode="warm_start", warm_start_epochs=1,
                                                        **frozen), previous=previous)
    before, after = previous.predict(frames), warm.predict(frames)
    np.testing.assert_allclose(after["energy_members"], before["energy_members"], atol=1e-9)
    assert warm.spec.self_energies == previous.spec.self_energies
    assert warm.history["mode"] == "warm_start"
    # a from-scratch committee under the same frozen settings is a different model
    fresh = train_committee(frames, SPEC, TrainingConfig(max_epochs=1, **frozen),
                            previous=previous)
    assert fresh.history["mode"] == "retrain"
    assert not np.allclose(fresh.predict(frames)["energy_members"], before["energy_members"])


def test_warm_start_learns_the_new_frames(frames, previous):
    cfg = TrainingConfig(mode="warm_start", warm_start_epochs=30, replay_fraction=0.5, **FAST)
    warm = train_committee(frames, SPEC, cfg, previous=previous)
    h = warm.history
    assert h["n_old_train"] == previous.history["n_train"]
    assert h["n_new_train"] + h["n_val"] - previous.history["n_val"] == len(frames) - 12
    assert h["n_replay_per_epoch"] == round(0.5 * h["n_old_train"])
    # old held-out frames stay; new ones top validation up to its share of all frames
    assert h["n_val"] == max(previous.history["n_val"], round(0.15 * len(frames)))
    assert h["epochs"] >= 1 and len(h["train_keys"]) == len(frames)
    new = frames[12:]

    def force_mae(c):
        p = c.predict(new)
        return np.mean([np.abs(pf - a.get_forces()).mean()
                        for pf, a in zip(p["forces"], new, strict=True)])

    assert force_mae(warm) < force_mae(previous)


def test_replay_mixes_old_frames_into_every_epoch(frames, previous, monkeypatch):
    """Each epoch trains on every new training frame plus a fresh sample of old ones."""
    seen: list[set[int]] = []
    real = PrecomputedFeatures.terms

    def spy(self, idx, create_graph):
        if create_graph:  # a training step (evaluation does not build the double-backward graph)
            seen.append({int(i) for i in idx})
        return real(self, idx, create_graph)

    monkeypatch.setattr(PrecomputedFeatures, "terms", spy)
    warm = train_committee(frames, SPEC, TrainingConfig(mode="warm_start", warm_start_epochs=6,
                                                        replay_fraction=0.5, **FAST),
                           previous=previous)
    keys = [frame_key(a) for a in frames]
    prev_keys = previous.history["train_keys"]
    prev_val = {prev_keys[i] for i in previous.history["val_indices"]}
    old = {i for i, k in enumerate(keys) if k in set(prev_keys) - prev_val}
    val = set(warm.history["val_indices"])
    new_train = set(range(len(frames))) - old - val
    assert len(seen) == warm.history["epochs"] == 6  # batch_size > epoch size: one step each
    for epoch in seen:
        assert new_train <= epoch
        assert len(epoch & old) == warm.history["n_replay_per_epoch"] > 0
        assert not epoch & val  # held-out frames, old or new, are never trained on
    assert len({frozenset(e & old) for e in seen}) > 1  # resampled, not a fixed subset
    # the previous committee's held-out frames stay held out
    assert {keys.index(k) for k in prev_val} <= val


def test_new_frames_are_matched_by_key_not_position(frames, previous):
    shuffled = list(reversed(frames))
    warm = train_committee(shuffled, SPEC, TrainingConfig(mode="warm_start", warm_start_epochs=1,
                                                          **FAST), previous=previous)
    assert warm.history["n_old_train"] == previous.history["n_train"]
    # a checkpoint without frame keys falls back to "the previous set is a prefix"
    legacy = Committee(previous.model, previous.spec,
                              {k: v for k, v in previous.history.items() if k != "train_keys"})
    warm = train_committee(frames, SPEC, TrainingConfig(mode="warm_start", warm_start_epochs=1,
                                                        **FAST), previous=legacy)
    assert warm.history["n_old_train"] == previous.history["n_train"]


def test_mode_and_architecture_are_validated(frames, previous):
    with pytest.raises(ValueError, match=r"training.fit.mode must be one of \['retrain', "):
        TrainingConfig(mode="finetune")
    with pytest.raises(ValueError, match="replay_fraction must lie in"):
        TrainingConfig(replay_fraction=1.5)
    with pytest.raises(ValueError, match="warm_start_epochs must be >= 1"):
        TrainingConfig(warm_start_epochs=0)
    wider = CommitteeSpec(**{**SPEC.to_dict(), "hidden": [16]})
    with pytest.raises(ValueError, match=r"differs in hidden: previous \[8\] vs now \[16\]"):
        train_committee(frames, wider, TrainingConfig(mode="warm_start", **FAST),
                        previous=previous)
    # without a previous committee warm_start trains from scratch
    c = train_committee(frames, SPEC, TrainingConfig(mode="warm_start", max_epochs=1, **FAST))
    assert c.history["mode"] == "retrain"


def test_training_node_passes_the_previous_committee(frames, previous, monkeypatch):
    from reactive_al.pipelines.training.nodes import train

    monkeypatch.chdir(PROJECT_ROOT)
    systems = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_systems.yml").read_text())
    params = {"model": {k: v for k, v in SPEC.to_dict().items()
                        if k not in ("symbols", "lot", "self_energies")},
              "fit": {"mode": "warm_start", "warm_start_epochs": 1, **FAST}}
    previous_h3 = Committee(previous.model, CommitteeSpec(
        **{**previous.spec.to_dict(), "lot": "hf-sto-3g"}), previous.history)
    c = train(frames, "h3_exchange", systems["systems"], params, previous_committee=previous_h3)
    assert c.history["mode"] == "warm_start"
    assert train(frames, "h3_exchange", systems["systems"],
                 {**params, "fit": {**params["fit"], "max_epochs": 1}}).history["mode"] == "retrain"


def test_active_learning_wires_the_previous_committee_into_training():
    from reactive_al.pipelines.active_learning import create_pipeline
    from reactive_al.pipelines.training import create_pipeline as training_pipeline

    pipe = create_pipeline(n_iterations=3)
    nodes = {n.name: n for n in pipe.nodes}
    assert not any(i.endswith("committee") for i in nodes["iter_00.train_committee"].inputs)
    assert "iter_00.committee" in nodes["iter_01.train_committee"].inputs
    assert "iter_01.committee" in nodes["iter_02.train_committee"].inputs
    assert "iter_01.labeled_set" not in pipe.inputs()  # namespacing of the template intact
    assert not any("previous_committee" in i for i in pipe.all_inputs())
    assert training_pipeline().inputs() == {"labeled_set", "params:system", "params:systems",
                                            "params:training", "params:labeling"}
    # with pre-training, every iteration starts from the pre-trained committee
    pre = {n.name: n for n in create_pipeline(n_iterations=2, pretrain=True).nodes}
    assert {"pretrain_committee", "label_pretrain_pool", "build_pretrain_pool"} <= set(pre)
    for it in ("iter_00", "iter_01"):
        assert "pretrained_committee" in pre[f"{it}.train_committee"].inputs


def test_a_warm_starting_campaign_retrains_on_schedule_and_at_its_end(frames, previous,
                                                                      monkeypatch):
    from reactive_al.models.training import retrains_at
    from reactive_al.pipelines.active_learning import create_pipeline
    from reactive_al.pipelines.training.nodes import train

    warm = TrainingConfig(mode="warm_start", retrain_every=3)
    assert [retrains_at(warm, k, k == 7) for k in range(1, 8)] == [
        False, False, True, False, False, True, True]
    no_last = TrainingConfig(mode="warm_start", retrain_last=False)
    assert not any(retrains_at(no_last, k, k == 7) for k in range(1, 8))
    assert not retrains_at(TrainingConfig(retrain_every=1), 3, True)  # retrain mode anyway
    assert not retrains_at(warm, None, True)  # `--pipelines training` alone
    with pytest.raises(ValueError, match="retrain_every must be >= 1 or null"):
        TrainingConfig(retrain_every=0)
    # the AL loop tells each training node its iteration and whether it is the last
    pipe = {n.name: n for n in create_pipeline(n_iterations=3).nodes}
    bound = [pipe[f"iter_0{k}.train_committee"].func.keywords for k in range(3)]
    assert bound == [{"iteration": 0, "last": False}, {"iteration": 1, "last": False},
                     {"iteration": 2, "last": True}]
    # and the node trains the last iteration from scratch
    monkeypatch.chdir(PROJECT_ROOT)
    systems = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_systems.yml").read_text())
    params = {"model": {k: v for k, v in SPEC.to_dict().items()
                        if k not in ("symbols", "lot", "self_energies")},
              "fit": {"mode": "warm_start", "warm_start_epochs": 1, "max_epochs": 1, **FAST}}
    previous_h3 = Committee(previous.model, CommitteeSpec(
        **{**previous.spec.to_dict(), "lot": "hf-sto-3g"}), previous.history)
    modes = [train(frames, "h3_exchange", systems["systems"], params,
                   previous_committee=previous_h3, iteration=2, last=last).history["mode"]
             for last in (False, True)]
    assert modes == ["warm_start", "retrain"]


def test_warm_start_has_its_own_early_stopping(frames, previous):
    # a warm start waits warm_start_min_epochs, then stops after warm_start_patience epochs
    # without a better validation loss, long before warm_start_epochs
    fast = {k: v for k, v in FAST.items() if k not in ("patience", "min_epochs")}
    cfg = TrainingConfig(mode="warm_start", warm_start_epochs=400, warm_start_min_epochs=3,
                         warm_start_patience=2, patience=1000, min_epochs=1000, **fast)
    warm = train_committee(frames, SPEC, cfg, previous=previous)
    h = warm.history
    assert 3 <= h["epochs"] < 400
    assert h["epochs"] - 1 - h["best_epoch"] == 2  # stopped by the warm-start patience
