"""End-to-end: a real (HF/STO-3G, H + H2) campaign through `kedro run`, then each pipeline alone."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import (
    LOCAL_PARAMS,
    PROJECT_ROOT,
    copy_project,
    kedro,
    kedro_with_broken_reactant,
)

pytestmark = pytest.mark.slow



@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = copy_project(tmp_path_factory.mktemp("project"), LOCAL_PARAMS)
    result = kedro(root, env={"REACTIVE_AL_PROFILE": str(root / "campaign_profile.jsonl")})
    assert result.returncode == 0, result.stderr[-3000:]
    return root


def _frames(path: Path) -> int:
    from ase.io import read

    return len(read(path, index=":"))


def _spans(profile: Path) -> dict[tuple[str, str], tuple[float, float]]:
    """(node, stage) → (start, end) of a ``REACTIVE_AL_PROFILE`` file, in seconds."""
    records = [json.loads(line) for line in profile.read_text().splitlines()]
    return {(r["node"], r["stage"]): (r["start"], r["start"] + r["seconds"]) for r in records}


def _assert_in_order(span: dict, *pairs: tuple[str, str]) -> None:
    """Each (earlier, later) pair of nodes: ``earlier`` ended before ``later`` began (10 ms)."""
    for earlier, later in pairs:
        assert span[(earlier, "node")][1] <= span[(later, "node")][0] + 0.01, (earlier, later)


def test_reference_path_is_a_converged_qm_climbing_image_neb(project):
    from ase.io import read

    data = project / "data"
    path = read(data / "03_primary/reference_path.extxyz", index=":")
    stats = json.loads((data / "08_reporting/reference_path.json").read_text())
    assert len(path) == 5 and stats["converged"]
    energies = [a.get_potential_energy() for a in path]
    ts = stats["ts_image"]
    assert 0 < ts < 4 and energies[ts] == max(energies) and path[ts].info["ts"]
    # H-H-H symmetric exchange: the saddle has two equal H-H distances
    d = path[ts].get_all_distances()
    assert abs(d[0, 1] - d[1, 2]) < 0.02 or abs(d[0, 2] - d[0, 1]) < 0.02 or abs(
        d[0, 2] - d[1, 2]) < 0.02
    test = read(data / "03_primary/test_set.extxyz", index=":")
    origins = {a.info["origin"] for a in test}
    assert {"path/qm_neb", "path/qm_neb_displaced", "thermal_300K/md", "hot_1200K/md"} <= origins
    keys = {a.info["label_key"] for a in test}
    train = read(data / "03_primary/labeled_set.extxyz", index=":")
    assert not keys & {a.info["label_key"] for a in train}


def test_campaign_grows_labels_trains_and_tracks(project):
    data = project / "data"
    assert _frames(data / "03_primary/labeled_set_0.extxyz") == 8
    assert _frames(data / "03_primary/labeled_set_1.extxyz") > 8
    assert _frames(data / "03_primary/labeled_set.extxyz") == _frames(
        data / "03_primary/labeled_set_1.extxyz")
    new = data / "03_primary/iter_00/new_labels.extxyz"
    from ase.io import read

    frames = read(new, index=":")
    assert all(f.info["origin"].startswith("md/") for f in frames)
    assert all("force_uncertainty_ev_per_a" in f.info for f in frames)
    assert all(f.info["selected_by"] == "top_k/committee" for f in frames)
    assert frames[0].get_forces().shape == (3, 3)

    import pandas as pd

    curve = pd.read_csv(data / "08_reporting/learning_curve.csv")
    assert list(curve["iteration"]) == [0, 1]
    assert curve["n_labels"].iloc[1] > curve["n_labels"].iloc[0]
    assert curve["train/epochs"].min() > 1
    assert (data / "08_reporting/learning_curve.png").stat().st_size > 1000
    for k in (0, 1):
        assert (data / f"06_models/iter_{k:02d}/committee.pt").exists()
        metrics = json.loads((data / f"08_reporting/iter_{k:02d}/metrics.json").read_text())
        assert {"path/force_mae_ev_per_a", "reactant/force_mae_ev_per_a",
                "thermal_300K/force_mae_ev_per_a", "hot_1200K/force_mae_ev_per_a",
                "calibration/force_coverage_95", "neb/barrier_error_kcal_mol",
                "neb/reaction_energy_error_kcal_mol", "path/qm_path_barrier_error_kcal_mol",
                "md_stability/median_steps", "calibration/gf_energy_spearman"} <= set(metrics)
        assert 0 <= metrics["calibration/force_coverage_95"] <= 1
        assert 0 <= metrics["calibration/gf_energy_coverage_95"] <= 1
        assert 1 <= metrics["md_stability/median_steps"] <= 40
        assert metrics["neb/qm_barrier_kcal_mol"] > 5  # H + H2 at UHF/STO-3G: ~20 kcal/mol
        figures = {p.name for p in (data / f"08_reporting/iter_{k:02d}/figures").iterdir()}
        assert figures == {"parity_energy.png", "parity_forces.png", "path_profile.png",
                           "calibration_force.png", "calibration_energy.png",
                           "calibration_gf_energy.png"}
    assert curve["test/wells_forgetting_ratio"].iloc[0] == 1.0
    report = (data / "08_reporting/report.md").read_text()
    assert "# Active-learning campaign: h3_exchange" in report
    assert "iter_01/figures/path_profile.png" in report

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["reactive_al"])
    nested = runs[runs["tags.mlflow.parentRunId"].notna()]
    assert sorted(nested["tags.mlflow.runName"]) == ["iter_00", "iter_01"]
    parent_ids = set(nested["tags.mlflow.parentRunId"])
    assert len(parent_ids) == 1 and parent_ids <= set(runs["run_id"])
    assert (nested["metrics.n_labels"] > 0).all()
    client = mlflow.tracking.MlflowClient()
    it0 = nested[nested["tags.mlflow.runName"] == "iter_00"]["run_id"].iloc[0]
    arts = {a.path for a in client.list_artifacts(it0, "model")} | {
        a.path for a in client.list_artifacts(it0, "selection")}
    assert arts == {"model/committee.pt", "selection/selected.extxyz"}
    plots = {a.path for a in client.list_artifacts(it0, "plots")}
    assert "plots/path_profile.png" in plots


def test_committee_is_evaluated_while_its_batch_is_labeled(project):
    # the acquiring iteration starts its batch, evaluates while the QM runs in the
    # background, then waits for the labels: the profile's intervals show that order
    records = [json.loads(line) for line in
               (project / "campaign_profile.jsonl").read_text().splitlines()]
    span = {(r["node"], r["stage"]): (r["start"], r["start"] + r["seconds"]) for r in records}
    submitted = span[("iter_00.submit_selected", "node")]
    batch = span[("iter_00.submit_selected", "qm_batch")]
    evaluated = span[("iter_00.evaluate_committee", "node")]
    collected = span[("iter_00.label_selected", "node")]
    tol = 0.01  # start times are rounded to ms
    assert submitted[1] <= evaluated[0] + tol <= collected[0] + 2 * tol
    assert batch[0] <= evaluated[0] + tol  # the batch was under way when evaluation began
    assert collected[1] + tol >= batch[1]  # label_selected ends once the batch is done
    assert ("iter_01.submit_selected", "qm_batch") not in span  # the last one only evaluates


#: the lookahead with iteration 0 selecting both first batches (the fixture's campaign has two
#: iterations, too few to pipeline, so its labeling wrote no head of the initial pool)
LOOKAHEAD = ("active_learning.lookahead=true,active_learning.n_iterations=3,"
             "active_learning.early_first_batch=null")


def test_lookahead_labels_the_next_batch_while_the_committee_trains(project, tmp_path):
    # active_learning.lookahead: iteration 0 selects two batches from its candidates, starts
    # the second before collecting the first; iteration 1 trains while that batch is labeled
    # and only collects it; the label budget is that of the plain loop
    from ase.io import read

    from reactive_al.selection.query import not_in_training

    root = tmp_path / "lookahead"
    shutil.copytree(project, root, ignore=shutil.ignore_patterns("campaign_profile.jsonl",
                                                                "campaign_identity.json"))
    profile = root / "profile.jsonl"
    result = kedro(root, "--pipelines", "active_learning", "--params",
                   LOOKAHEAD,
                   env={"REACTIVE_AL_PROFILE": str(profile)})
    assert result.returncode == 0, result.stderr[-3000:]
    data = root / "data"
    first = read(data / "05_model_input/iter_00/pending.extxyz", index=":")
    second = read(data / "05_model_input/iter_00/selected.extxyz", index=":")
    assert len(first) == len(second) == 4
    # the second batch was chosen away from the first one, still being labeled
    assert len(not_in_training(second, first, 0.02)) == len(second)
    sizes = [_frames(data / f"03_primary/labeled_set_{k}.extxyz") for k in range(3)]
    assert sizes == [8, 12, 16]
    collected = read(data / "03_primary/iter_01/new_labels.extxyz", index=":")
    assert sorted(a.info["origin"] for a in collected) == sorted(
        a.info["origin"] for a in second)
    assert not (data / "05_model_input/iter_01/selected.extxyz").exists()
    span = _spans(profile)
    _assert_in_order(span, ("iter_00.submit_first_batch", "iter_00.submit_selected"),
                     ("iter_00.submit_selected", "iter_00.label_selected"))
    # the second batch was under way before iteration 1 began training
    assert span[("iter_00.submit_selected", "qm_batch")][0] <= span[
        ("iter_01.train_committee", "node")][0] + 0.01
    curve = json.loads((data / "08_reporting/iter_01/summary.json").read_text())
    assert curve["n_labels"] == 12 and curve["labeling/n_new"] == 4
    # killed in iteration 1 (its batch was being labeled in memory): the resumed run starts
    # that batch again from iteration 0's saved selection and keeps iteration 0's committee
    kept = data / "06_models/iter_00/committee.pt"
    mtime = kept.stat().st_mtime
    for name in ("06_models/iter_01", "06_models/iter_02", "08_reporting/iter_01",
                 "08_reporting/iter_02", "03_primary/iter_01"):
        shutil.rmtree(data / name)
    for name in ("03_primary/labeled_set_2.extxyz", "03_primary/labeled_set.extxyz",
                 "06_models/committee.pt", "08_reporting/learning_curve.csv"):
        (data / name).unlink()
    again = kedro(root, "--pipelines", "active_learning", "--only-missing-outputs", "--params",
                  LOOKAHEAD)
    assert again.returncode == 0, again.stderr[-3000:]
    assert kept.stat().st_mtime == mtime
    assert _frames(data / "03_primary/labeled_set_2.extxyz") == 16
    assert (data / "08_reporting/learning_curve.csv").exists()


def test_early_first_batch_is_selected_while_the_initial_pool_is_labeled(project, tmp_path):
    # active_learning.early_first_batch: the initial pool is labeled head first; a committee
    # trained on the head selects and submits the first batch before the rest of the pool
    # is collected; iteration 0 (on the whole pool) selects the next batch away from it
    from ase.io import read

    from reactive_al.selection.query import not_in_training

    root = tmp_path / "early"
    shutil.copytree(project, root, ignore=shutil.ignore_patterns("campaign_profile.jsonl"))
    data = root / "data"
    for folder in ("05_model_input", "06_models", "08_reporting"):
        shutil.rmtree(data / folder)
    for path in [*(data / "03_primary").glob("labeled_set*"), *data.glob("0[37]_*/iter_*")]:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    profile = root / "profile.jsonl"
    params = ("active_learning.lookahead=true,active_learning.n_iterations=3,"
              "active_learning.early_first_batch=0.5")
    result = kedro(root, "--only-missing-outputs", "--params", params,
                   env={"REACTIVE_AL_PROFILE": str(profile)})
    assert result.returncode == 0, result.stderr[-3000:]
    pool = read(data / "02_intermediate/initial_pool.extxyz", index=":")
    head = read(data / "03_primary/initial_head_set.extxyz", index=":")
    assert [a.positions.tolist() for a in head] == [a.positions.tolist() for a in pool[::2]]
    labeled = read(data / "03_primary/labeled_set_0.extxyz", index=":")
    assert [a.positions.tolist() for a in labeled] == [a.positions.tolist() for a in pool]
    first = read(data / "05_model_input/first_batch/selected.extxyz", index=":")
    second = read(data / "05_model_input/iter_00/selected.extxyz", index=":")
    assert len(first) == len(second) == 4
    assert len(not_in_training(second, first, 0.02)) == len(second)
    assert not (data / "05_model_input/iter_00/pending.extxyz").exists()
    assert (data / "06_models/first_batch/committee.pt").exists()
    collected = read(data / "03_primary/iter_00/new_labels.extxyz", index=":")
    assert sorted(a.info["origin"] for a in collected) == sorted(a.info["origin"] for a in first)
    sizes = [_frames(data / f"03_primary/labeled_set_{k}.extxyz") for k in range(3)]
    assert sizes == [8, 12, 16]
    # the first batch was under way before the initial pool was collected
    _assert_in_order(_spans(profile), ("label_initial_head", "first_batch.train_committee"),
                     ("first_batch.submit_selected", "label_initial_pool"),
                     ("label_initial_pool", "iter_00.train_committee"))


def test_resume_reruns_only_missing_iterations(project):
    data = project / "data"
    kept = [data / "06_models/iter_00/committee.pt", data / "06_models/iter_01/committee.pt"]
    mtimes = [k.stat().st_mtime for k in kept]
    # as if killed while evaluating the last iteration: its reports and everything written at
    # the end of a campaign are missing, its committee is already trained
    shutil.rmtree(data / "08_reporting/iter_01")
    for name in ("08_reporting/learning_curve.csv", "08_reporting/learning_curve.png",
                 "08_reporting/report.md", "03_primary/labeled_set.extxyz",
                 "06_models/committee.pt"):
        (data / name).unlink()
    result = kedro(project, "--only-missing-outputs")
    assert result.returncode == 0, result.stderr[-3000:]
    assert [k.stat().st_mtime for k in kept] == mtimes
    assert (data / "08_reporting/iter_01/summary.json").exists()
    assert (data / "08_reporting/report.md").exists()
    log = " ".join((result.stderr + result.stdout).split())
    # evaluate + summarize of the last iteration, learning curve, publish, report
    found = re.search(r"Running (\d+) out of (\d+) nodes", log)
    assert found and int(found.group(1)) == 5 and int(found.group(2)) > 5, log[-2000:]


@pytest.mark.parametrize("name", ["training", "selection", "evaluation"])
def test_each_pipeline_runs_alone_on_campaign_data(project, name):
    result = kedro(project, "--pipelines", name)
    assert result.returncode == 0, result.stderr[-3000:]


def test_profile_records_nodes_stages_and_dataset_io(project, tmp_path):
    # what benchmarks/campaign_profile.py sums: every node's wall time, the named stages
    # inside evaluation, and the dataset loads/saves Kedro does around the node
    out = tmp_path / "profile.jsonl"
    result = kedro(project, "--pipelines", "evaluation", env={"REACTIVE_AL_PROFILE": str(out)})
    assert result.returncode == 0, result.stderr[-2000:]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    stages = {(r["node"], r["stage"]) for r in records}
    assert ("evaluate_committee", "node") in stages
    inside = ("test_errors", "calibration", "model_neb")
    assert {("evaluate_committee", s) for s in inside} <= stages
    assert ("evaluate_committee", "load:committee") in stages
    assert ("evaluate_committee", "save:metrics") in stages
    assert all(r["seconds"] >= 0 and r["pid"] > 0 for r in records)


def test_broken_system_stops_with_one_line_and_keeps_data(project, tmp_path):
    labeled = project / "data/03_primary/labeled_set_0.extxyz"
    before = labeled.read_bytes()
    result = kedro_with_broken_reactant(project)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("reactive_al: ") and "reactant.xyz" in last and "Å apart" in last
    assert labeled.read_bytes() == before


def test_unknown_strategy_stops_with_one_line_before_any_node(project):
    selected = project / "data/05_model_input/selected.extxyz"

    def state():
        return selected.stat().st_mtime if selected.exists() else None

    before = state()
    result = kedro(project, "--pipelines", "selection", "--params", "selection.strategy=best")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("reactive_al: conf/base/parameters_selection.yml: selection.strategy")
    assert "'best'" in last and "top_k" in last
    assert state() == before


def test_notebook_runs_on_the_campaign_catalog(project, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    monkeypatch.chdir(project)
    bootstrap_project(project)
    with KedroSession.create(project_path=project) as session:
        catalog = session.load_context().catalog
        nb = json.loads((PROJECT_ROOT / "notebooks/learning_curve.ipynb").read_text())
        namespace = {"catalog": catalog}
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                exec("".join(cell["source"]), namespace)  # noqa: S102
    assert list(namespace["curve"]["iteration"]) == [0, 1]
    assert len(namespace["err"]) == len(namespace["test_set"])


def test_benchmark_runs_each_method_on_the_same_test_set_and_budget(project):
    import numpy as np

    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "reactive_al.benchmark", "--system", "h3_exchange",
         "--methods", "random,committee", "--parallel", "2", "--seeds", "2",
         "--batch-size", "3"], cwd=project, env=env,
        capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    out = json.loads((project / "data/08_reporting/benchmark_h3_exchange.json").read_text())
    assert set(out["methods"]) == {"random", "committee"}
    assert out["seeds"] == [0, 1] and out["budget"] == {"n_iterations": 2, "batch_size": 3}
    rnd, qbc = out["methods"]["random"], out["methods"]["committee"]
    assert rnd["labels_initial"] == qbc["labels_initial"] == 8
    assert 0 < rnd["labels_acquired"] <= 3 and 0 < qbc["labels_acquired"] <= 3
    assert rnd["curve"]["n_labels"][0] == 8 and len(rnd["curve"]["n_labels"]) == 2
    # iteration 0 is shared: both curves start from the same committee and test set
    assert rnd["curve"]["force_mae_ev_per_a"][0] == qbc["curve"]["force_mae_ev_per_a"][0]
    assert rnd["labels_to_reach_reference_final"] is not None
    assert out["reference_path"]["converged"]
    root = project / "data/benchmark/h3_exchange"
    timing = json.loads((root / "wall_time_s.json").read_text())
    assert min(timing["shared"], timing["random"], timing["committee"]) > 0
    assert rnd["wall_time_s"] == timing["random"]
    assert "labels_to_barrier_within_1_kcal_mol" in qbc
    assert len(qbc["curve"]["gf_energy_spearman"]) == 2
    assert (root / "03_primary/test_set.extxyz").exists()
    assert not (root / "random/03_primary/test_set.extxyz").exists()
    from ase.io import read

    picked = read(root / "random/03_primary/iter_00/new_labels.extxyz", index=":")
    assert {a.info["selected_by"].split("/")[0] for a in picked} == {"random"}
    assert (project / "data/08_reporting/benchmark_h3_exchange_learning_curves.png").exists()
    # seed 1: its own initial pool and iteration 0, the same test set and reference path
    seed1 = root / "seed_1"
    assert not (seed1 / "03_primary/test_set.extxyz").exists()
    assert not (seed1 / "03_primary/reference_path.extxyz").exists()
    pool0, pool1 = (read(r / "03_primary/labeled_set_0.extxyz", index=":") for r in (root, seed1))
    assert len(pool0) == len(pool1) and not all(
        np.allclose(a.positions, b.positions) for a, b in zip(pool0, pool1, strict=True))
    by_seed = out["by_seed"]
    assert by_seed["0"]["random"] == rnd and set(by_seed["1"]) == {"random", "committee"}
    assert (by_seed["1"]["random"]["curve"]["force_mae_ev_per_a"][0]
            == by_seed["1"]["committee"]["curve"]["force_mae_ev_per_a"][0])
    assert by_seed["1"]["random"]["curve"]["force_mae_ev_per_a"][0] != \
        rnd["curve"]["force_mae_ev_per_a"][0]
    agg = out["aggregate"]["methods"]["random"]
    mae = agg["curves"]["force_mae_ev_per_a"]
    assert agg["seeds"] == [0, 1] and mae["n"] == [2, 2]
    assert mae["mean"][0] == pytest.approx(np.mean([s[0] for s in mae["per_seed"].values()]))
    assert mae["std"][0] > 0 and agg["wall_time_s"]["n"] == 2
    assert json.loads((seed1 / "wall_time_s.json").read_text())["committee"] > 0
    # the campaign under data/ is untouched by the benchmark
    assert (project / "data/03_primary/labeled_set.extxyz").exists()


def test_other_level_on_the_same_data_folder_stops_with_one_line(project):
    labeled = project / "data/03_primary/labeled_set_0.extxyz"
    before = labeled.read_bytes()
    result = kedro(project, "--pipelines", "data_engineering", "--params",
                   "systems.h3_exchange.level_of_theory.basis=3-21g")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("reactive_al: data/08_reporting/data_identity.json: this folder holds")
    assert "level_of_theory" in last and "data_root=" in last
    assert labeled.read_bytes() == before
