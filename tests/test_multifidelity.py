"""Multi-fidelity: Δ-learning on a GFN2-xTB baseline (the committee learns QM − xTB and every
prediction adds xTB back) and pre-training on GFN2-xTB labels (fine-tuned on QM)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
import yaml
from ase import units

from reactive_al.models import Committee, CommitteeSpec, TrainingConfig, train_committee
from reactive_al.models.baseline import Baseline
from reactive_al.oracles.labeling import LabelingConfig, label_structures

from .conftest import COUNTING_KEDRO, HF_STO3G, LOCAL_PARAMS, copy_project, kedro, water

pytest.importorskip("tblite")

XTB = {"program": "xtb", "method": "gfn2-xtb"}
SPEC = dict(symbols=["H", "O"], lot="hf-sto-3g", ensemble_size=2, hidden=[16])
FIT = TrainingConfig(max_epochs=40, batch_size=8, patience=40, progress=False)


@pytest.fixture(scope="module")
def labeled(tmp_path_factory):
    rng = np.random.default_rng(1)
    frames = []
    for _ in range(12):
        a = water()
        a.positions += rng.normal(0, 0.05, a.positions.shape)
        frames.append(a)
    cfg = LabelingConfig(charge=0, multiplicity=1, level=HF_STO3G, scheduler="synchronous",
                         cache_path=str(tmp_path_factory.mktemp("c") / "c.db"), progress=False)
    out, failures = label_structures(frames, cfg)
    assert not failures
    return out


@pytest.fixture(scope="module")
def delta(labeled) -> Committee:
    base = Baseline.for_system("xtb", 0, 1)
    return train_committee(labeled, CommitteeSpec(**SPEC, baseline=base.to_dict()), FIT)


def test_delta_committee_learns_the_residual_and_adds_the_baseline_back(labeled, delta):
    plain = Committee(delta.model, CommitteeSpec(**{**delta.spec.to_dict(), "baseline": None}))
    e_xtb, f_xtb = Baseline.for_system("xtb", 0, 1).evaluate(labeled)
    p, q = delta.predict(labeled), plain.predict(labeled)
    np.testing.assert_allclose(p["energy"], q["energy"] + e_xtb, rtol=0, atol=1e-6)
    for a, b, f in zip(p["forces"], q["forces"], f_xtb, strict=True):
        np.testing.assert_allclose(a, b + f, rtol=0, atol=1e-6)
    # the spread is the learned part's: a deterministic baseline adds nothing to it
    np.testing.assert_allclose(p["energy_std"], q["energy_std"], rtol=1e-9)
    # the learned part is the residual QM − xTB (self energies fitted to it), not QM itself
    qm = np.array([a.get_potential_energy() for a in labeled])
    assert np.abs(q["energy"] - (qm - e_xtb)).max() < 0.5  # eV, after 40 epochs
    assert np.abs(q["energy"] - qm).min() > 100.0


def test_delta_forces_are_minus_the_gradient_of_the_total_energy(labeled, delta):
    atoms, h = labeled[0].copy(), 4e-3  # Å
    forces = delta.predict([atoms])["forces"][0]
    fd = np.zeros_like(forces)
    for i in range(len(atoms)):
        for k in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[i, k] += h
            minus.positions[i, k] -= h
            e = delta.predict([plus, minus])["energy"]
            fd[i, k] = -(e[0] - e[1]) / (2 * h)
    # float32 networks (total energies of ~1e3 eV to ~1e-4 eV) limit the agreement
    np.testing.assert_allclose(forces, fd, atol=3e-2)
    assert np.abs(forces).max() > 0.1  # the comparison is not between two zeros


def test_checkpoint_round_trip_keeps_the_baseline_and_refuses_without_it(labeled, delta):
    buf = io.BytesIO()
    torch.save(delta.to_checkpoint(), buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    assert ckpt["spec"]["baseline"]["level"] == XTB
    assert ckpt["spec"]["baseline"]["version"]
    assert ckpt["spec"]["repulsion"] is False  # xTB has its own: not counted twice
    again = Committee.from_checkpoint(ckpt)
    np.testing.assert_allclose(again.predict(labeled)["energy"],
                               delta.predict(labeled)["energy"], rtol=0, atol=1e-6)
    ckpt["spec"]["baseline"] = {**ckpt["spec"]["baseline"], "version": "0.0.0"}
    with pytest.raises(ValueError, match="installed is"):
        Committee.from_checkpoint(ckpt)
    ckpt["spec"]["baseline"] = {**ckpt["spec"]["baseline"], "level": {"program": "nope"}}
    with pytest.raises(ValueError, match="not available here"):
        Committee.from_checkpoint(ckpt)


def test_ase_calculator_from_a_delta_checkpoint_drives_md(delta):
    from ase.md.verlet import VelocityVerlet

    atoms = water()
    atoms.calc = delta.calculator()
    e0 = atoms.get_potential_energy()
    VelocityVerlet(atoms, timestep=0.25 * units.fs).run(5)
    assert np.isfinite(atoms.get_potential_energy()) and atoms.get_potential_energy() != e0
    assert delta.baseline.stats()["calls"] > 0


def test_walkers_run_the_baseline_on_threads_with_the_same_candidates(delta, monkeypatch):
    import threading

    from reactive_al.exploration import explore_candidates

    names: set[str] = set()
    compute = Baseline._compute

    def recording(self, atoms):  # noqa: ANN001, ANN202
        names.add(threading.current_thread().name)
        return compute(self, atoms)

    monkeypatch.setattr(Baseline, "_compute", recording)
    seeds = [water() for _ in range(3)]
    for i, a in enumerate(seeds):
        a.positions += np.random.default_rng(i).normal(0, 0.03, a.positions.shape)
    walkers = {"temperatures_K": [300], "n_steps": 20, "sample_every": 5, "progress": False}
    runs = {}
    for threads in (1, 2):
        names.clear()
        sel = {"seed": 3, "walkers": {**walkers, "baseline_threads": threads}}
        fresh = Committee.from_checkpoint(delta.to_checkpoint())  # nothing remembered yet
        frames, stats = explore_candidates(fresh, seeds, sel)
        assert stats["n_md_steps"] == 60 and fresh.baseline.stats()["calls"] >= 60
        runs[threads] = (np.array([a.positions for a in frames]), set(names))
        assert fresh.baseline.threads == 1  # only while the walkers ran
        # on threads, each walker's single point starts as it asks (beside the others' steps)
        assert (fresh.baseline.stats()["prefetched"] >= 50) == (threads == 2)
    np.testing.assert_array_equal(runs[1][0], runs[2][0])  # the same trajectories, bit for bit
    assert not any(n.startswith("baseline") for n in runs[1][1])
    assert any(n.startswith("baseline") for n in runs[2][1])
    # a program whose single points are not thread-safe stays serial
    hf = Baseline.for_system(HF_STO3G, 0, 1)
    with hf.parallel(2):
        assert hf.threads == 1


def _xtb_rows(cache) -> int:
    from ase.db import connect

    with connect(str(cache)) as db:
        return sum(row.data.get("provenance", {}).get("qm_method") == "gfn2-xtb"
                   for row in db.select(status="ok"))


def test_fine_tuning_starts_from_the_pretrained_networks(labeled, delta):
    from reactive_al.models.training import _networks

    spec = CommitteeSpec(**SPEC)
    still = TrainingConfig(max_epochs=1, batch_size=8, learning_rate=1e-12, progress=False)
    tuned = train_committee(labeled, spec, still, init=delta)
    assert tuned.history["init"] == "pretrained"
    for a, b in zip(_networks(tuned.model).parameters(), _networks(delta.model).parameters(),
                    strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-9)
    fresh = train_committee(labeled, spec, still)
    assert fresh.history["init"] == "random"
    assert not all(torch.equal(a, b) for a, b in zip(
        _networks(fresh.model).parameters(), _networks(delta.model).parameters(), strict=True))
    with pytest.raises(ValueError, match="fine-tuning a pre-trained committee needs"):
        train_committee(labeled, CommitteeSpec(**{**SPEC, "hidden": [8]}), still, init=delta)


#: a small pre-training pool for the tiny campaign (25 structures)
PRETRAIN = {"level": "xtb", "n_displaced": 3, "n_normal_mode": 3, "n_path_images": 3,
            "n_path_perturbed": 2, "md_temperatures_K": [300], "md_frames_per_well": 2,
            "md_steps": 40, "fit": {"max_epochs": 20}}


@pytest.mark.slow
def test_campaign_with_baseline_and_pretraining_runs_and_resumes_without_new_xtb_calls(
        tmp_path):
    params = yaml.safe_load(LOCAL_PARAMS)
    params["training"].update(baseline="auto", pretrain=PRETRAIN)  # the default: xTB for h3
    root = copy_project(tmp_path, yaml.safe_dump(params))
    result = kedro(root)
    assert result.returncode == 0, result.stderr[-3000:]
    data = root / "data"
    stats = json.loads((data / "08_reporting/pretrain_stats.json").read_text())
    assert stats["n_structures"] == 2 * (3 + 3 + 2) + 3 * 3 and stats["n_labeled"] >= 20
    pre = torch.load(data / "06_models/pretrained/committee.pt", weights_only=True)
    assert pre["history"]["n_train"] + pre["history"]["n_val"] == stats["n_labeled"]
    for it in ("iter_00", "iter_01"):
        c = torch.load(data / f"06_models/{it}/committee.pt", weights_only=True)
        assert c["history"]["init"] == "pretrained"
        assert c["spec"]["baseline"]["level"] == XTB
    summary = json.loads((data / "08_reporting/iter_01/summary.json").read_text())
    assert summary["cost/baseline_labels"] == summary["n_labels"]
    assert summary["cost/qm_wall_time_s"] > 0
    ckpt = torch.load(data / "06_models/committee.pt", weights_only=True)
    assert ckpt["spec"]["baseline"]["level"] == XTB
    assert ckpt["history"]["baseline_cost"]["n_structures"] == ckpt["history"]["n_train"] + \
        ckpt["history"]["n_val"]
    cache = root / "data/02_intermediate/label_cache.db"
    n_xtb = _xtb_rows(cache)
    assert n_xtb >= ckpt["history"]["n_train"]
    # resume: the last iteration's training runs again, its baseline labels come from the cache
    (root / "data/06_models/iter_01/committee.pt").unlink()
    import subprocess
    import sys

    calls = tmp_path / "calls"
    run = subprocess.run([sys.executable, "-c", COUNTING_KEDRO, str(calls), "run",
                          "--only-missing-outputs"], cwd=root, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "train_committee" in run.stderr + run.stdout
    assert not calls.exists() or calls.read_text().count("1") == 0
    assert _xtb_rows(cache) == n_xtb


def test_a_baseline_at_the_systems_own_level_stops_with_one_line():
    from reactive_al.checks import ParameterError, check_parameters

    systems = {"s": {"level_of_theory": XTB}}
    with pytest.raises(ParameterError, match=r"training.baseline: 'xtb' is the level of theory "
                                             r"of system 's' itself"):
        check_parameters({"system": "s", "systems": systems, "training": {"baseline": "xtb"}})
    check_parameters({"system": "s", "systems": {"s": {"level_of_theory": HF_STO3G}},
                      "training": {"baseline": "xtb", "pretrain": {"level": "xtb"}}})
    with pytest.raises(ParameterError, match=r"training.pretrain: unknown settings \['pool'\]"):
        check_parameters({"training": {"pretrain": {"pool": 3}}})


def _sn2_frames(systems) -> list:
    from reactive_al.systems import load_system

    rs = load_system("sn2_cl_ch3cl", systems)
    rng = np.random.default_rng(3)
    frames = []
    for a in (rs.reactant, rs.product) * 3:
        b = a.copy()
        b.positions += rng.normal(0, 0.03, b.positions.shape)
        frames.append(b)
    return frames


def test_the_warm_up_caches_the_baseline_labels_of_the_initial_pool(project_params, tmp_path):
    from reactive_al.pipelines.training.nodes import warm_up

    from .conftest import cache_labels

    p, cache = project_params, tmp_path / "labels.db"
    labeling = {**p["labeling"], "cache_path": str(cache), "progress": False}
    training = {**p["training"], "baseline": "auto"}  # B3LYP SN2: the GFN2-xTB baseline
    out = warm_up(_sn2_frames(p["systems"]), "sn2_cl_ch3cl", p["systems"], training,
                  labeling, None)
    assert out["baseline_labels"] == 6 and out["baseline_failures"] == 0, out
    assert len([v for v in cache_labels(cache).values() if v[0] is not None]) == 6
    # an xTB-level system has no baseline: nothing to warm up
    xtb = {**p["systems"], "sn2_cl_ch3cl": {**p["systems"]["sn2_cl_ch3cl"],
                                             "level_of_theory": XTB}}
    assert warm_up([], "sn2_cl_ch3cl", xtb, training, labeling)["skipped"] == "no baseline"


def test_a_failing_warm_up_is_reported_not_raised(project_params, tmp_path):
    from reactive_al.pipelines.training.nodes import warm_up

    p = project_params
    labeling = {**p["labeling"], "cache_path": str(tmp_path / "labels.db"), "progress": False}
    bad = {**p["training"], "baseline": "xtb", "model": {**p["training"]["model"],
                                                         "no_such_setting": 1}}
    out = warm_up(_sn2_frames(p["systems"]), "sn2_cl_ch3cl", p["systems"], bad, labeling)
    assert "no_such_setting" in out["error"]
