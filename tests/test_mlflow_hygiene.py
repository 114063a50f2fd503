"""MLflow run hygiene: resumed campaigns keep one parent run, no run is left RUNNING.

The fast tests drive :mod:`reactive_al.tracking` on a temporary SQLite store; the slow ones run
real ``kedro run`` processes (HF/STO-3G, H + H2) on one copy of the project: killed with
``kill -9`` and resumed, resumed with nothing left to do, rejected by the definition check,
stopped by SIGTERM; and two sessions started together on one new ``mlflow.db``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reactive_al import tracking

from .conftest import LOCAL_PARAMS, copy_project, kedro, kedro_with_broken_reactant, start_kedro

EXPERIMENT = "reactive_al"


_TELEMETRY = """
import mlflow
from mlflow.telemetry import get_telemetry_client
before = get_telemetry_client() is not None
import reactive_al.settings
print(before, get_telemetry_client() is not None)
"""


@pytest.mark.parametrize(("setting", "expected"), [(None, "True False"), ("false", "True True")])
def test_mlflow_telemetry_is_off_unless_the_environment_turns_it_on(setting, expected):
    """mlflow imported first (as kedro-mlflow's CLI does): its client is gone after settings."""
    ci = {"PYTEST_CURRENT_TEST", "CI", "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK"}
    env = {k: v for k, v in os.environ.items() if k not in ci}  # MLflow skips telemetry in CI
    if setting is not None:
        env["MLFLOW_DISABLE_TELEMETRY"] = setting
    out = subprocess.run([sys.executable, "-c", _TELEMETRY], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[-2] == expected


def _client(db: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{db}")


def _runs(db: Path) -> list:
    """Every (not deleted) run of the project's experiment."""
    client = _client(db)
    exp = client.get_experiment_by_name(EXPERIMENT)
    return [] if exp is None else client.search_runs([exp.experiment_id], max_results=5000)


def _parents(runs: list) -> list:
    return [r for r in runs if "mlflow.parentRunId" not in r.data.tags]


def _running(runs: list) -> list[str]:
    return [r.info.run_id for r in runs if r.info.status == "RUNNING"]


def _wait_for(condition, timeout: float, proc: subprocess.Popen) -> None:  # noqa: ANN001
    t0 = time.monotonic()
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"kedro run ended early: {proc.stderr.read()[-3000:]}")
        if time.monotonic() - t0 > timeout:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError("timed out")
        time.sleep(0.5)


# --- tracking helpers on a temporary store ------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[str, str]:
    """A fresh SQLite store with the experiment: (tracking URI, experiment id)."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"
    tracking.init_store(uri, EXPERIMENT)
    from mlflow.tracking import MlflowClient

    return uri, MlflowClient(tracking_uri=uri).get_experiment_by_name(EXPERIMENT).experiment_id


def _gone_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_only_runs_of_gone_processes_on_this_host_are_closed(store):
    from mlflow.tracking import MlflowClient

    uri, exp = store
    client = MlflowClient(tracking_uri=uri)
    me = tracking.process_tags()
    gone = {**me, tracking.PID_TAG: str(_gone_pid())}
    reused = {**me, tracking.STARTED_TAG: "1.00"}  # our pid, another process's start time
    elsewhere = {**gone, tracking.HOST_TAG: "another-host"}
    ids = {name: client.create_run(exp, tags=tags).info.run_id for name, tags in
           {"gone": gone, "reused": reused, "alive": me, "elsewhere": elsewhere,
            "untagged": {}}.items()}
    closed = tracking.close_stale_runs(client, exp)
    assert sorted(closed) == sorted([ids["gone"], ids["reused"]])
    status = {name: client.get_run(i).info.status for name, i in ids.items()}
    assert status == {"gone": "KILLED", "reused": "KILLED", "alive": "RUNNING",
                      "elsewhere": "RUNNING", "untagged": "RUNNING"}
    for i in ids.values():
        client.set_terminated(i, "FINISHED")


def test_campaign_run_goes_on_in_its_run_unless_a_parameter_changed(store):
    from mlflow.tracking import MlflowClient

    uri, exp = store
    client = MlflowClient(tracking_uri=uri)
    first, resumed = tracking.campaign_run(uri, exp, "k1", "__default__", {"a": "1"})
    assert not resumed and client.get_run(first).data.tags[tracking.CAMPAIGN_TAG] == "k1"
    client.log_param(first, "a", "1")
    # still RUNNING with a live process: a second session of the campaign gets its own run
    second, resumed = tracking.campaign_run(uri, exp, "k1", "__default__", {"a": "1"})
    assert not resumed and second != first
    client.set_terminated(second, "FAILED")
    client.log_param(second, "a", "2")
    client.set_terminated(first, "KILLED")
    # the newest stopped run whose parameters agree, claimed for this process
    again, resumed = tracking.campaign_run(uri, exp, "k1", "__default__", {"a": "1", "b": "x"})
    run = client.get_run(again)
    assert resumed and again == first and run.info.status == "RUNNING"
    assert run.data.tags[tracking.PID_TAG] == str(os.getpid())
    client.set_terminated(first, "FINISHED")
    other, resumed = tracking.campaign_run(uri, exp, "k2", "__default__", {"a": "1"})
    assert not resumed and other not in (first, second)
    client.set_terminated(other, "FINISHED")


def test_runs_open_at_exit_end_failed_or_killed_after_a_signal(store, monkeypatch):
    import mlflow
    from mlflow.tracking import MlflowClient

    uri, exp = store
    client = MlflowClient(tracking_uri=uri)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        for signals, status in (([], "FAILED"), ([signal.SIGTERM], "KILLED")):
            monkeypatch.setattr(tracking, "_SIGNALS", signals)
            parent = mlflow.start_run(experiment_id=exp).info.run_id
            mlflow.start_run(run_id=parent, nested=True)  # kedro-mlflow re-enters per node
            nested = mlflow.start_run(nested=True).info.run_id
            tracking.end_open_runs()
            assert mlflow.active_run() is None
            assert {client.get_run(i).info.status for i in (parent, nested)} == {status}
        # a run already ended keeps its status (kedro-mlflow ended its run, copies remain)
        parent = mlflow.start_run(experiment_id=exp).info.run_id
        mlflow.start_run(run_id=parent, nested=True)
        mlflow.end_run()
        tracking.end_open_runs()
        assert client.get_run(parent).info.status == "FINISHED"
    finally:
        while mlflow.active_run():
            mlflow.end_run()
        mlflow.set_tracking_uri(previous)


def test_interrupted_nested_run_ends_killed(store):
    import mlflow
    from mlflow.tracking import MlflowClient

    uri, exp = store
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        parent = mlflow.start_run(experiment_id=exp).info.run_id
        with pytest.raises(KeyboardInterrupt), tracking.nested_run("iter_00") as run:
            nested = run.info.run_id
            raise KeyboardInterrupt
        assert mlflow.active_run().info.run_id == parent
        assert MlflowClient(tracking_uri=uri).get_run(nested).info.status == "KILLED"
    finally:
        while mlflow.active_run():
            mlflow.end_run()
        mlflow.set_tracking_uri(previous)


# --- real kedro runs ----------------------------------------------------------------------


@pytest.mark.slow
def test_sessions_started_together_on_one_new_store_both_finish(tmp_path):
    project = copy_project(tmp_path / "project", LOCAL_PARAMS)
    # own data roots and label caches: only the MLflow store is shared
    procs = [start_kedro(project, "--pipelines", "data_engineering", "--params",
                    f"data_root=data/{x},labeling.cache_path=data/{x}/label_cache.db")
             for x in ("a", "b")]
    errors = [p.communicate(timeout=600)[1] for p in procs]
    for p, err in zip(procs, errors, strict=True):
        assert p.returncode == 0, err[-3000:]
    runs = _runs(project / "mlflow.db")
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return copy_project(tmp_path_factory.mktemp("project"), LOCAL_PARAMS)


def _campaign_runs(project: Path) -> tuple[list, list]:
    """The parent runs of the campaign (``kedro run`` on ``data/``) and all runs."""
    runs = _runs(project / "mlflow.db")
    parents = [r for r in _parents(runs) if r.info.run_name == "__default__"]
    return parents, runs


@pytest.mark.slow
def test_campaign_killed_and_resumed_keeps_one_parent_run_with_the_whole_curve(project):
    proc = start_kedro(project)
    summary = project / "data/08_reporting/iter_00/summary.json"
    _wait_for(summary.exists, 600, proc)  # iteration 0 is logged before its summary is saved
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # as if killed before the iteration's figures were saved: iteration 0 is summarised and
    # logged again (one nested run per iteration, each point of the curve once)
    shutil.rmtree(project / "data/08_reporting/iter_00/figures", ignore_errors=True)
    parents, runs = _campaign_runs(project)
    assert len(parents) == 1 and _running(runs)  # kill -9: nothing could end the run
    result = kedro(project, "--only-missing-outputs")
    assert result.returncode == 0, result.stderr[-3000:]
    parents, runs = _campaign_runs(project)
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert not _running(runs)
    nested = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.info.run_name for r in nested) == ["iter_00", "iter_01"]
    assert {r.info.status for r in nested} == {"FINISHED"}
    history = _client(project / "mlflow.db").get_metric_history(parent.info.run_id, "n_labels")
    assert sorted(m.step for m in history) == [0, 1]


@pytest.mark.slow
def test_resume_with_nothing_to_run_adds_no_parent_run(project):
    before = {r.info.run_id for r in _parents(_runs(project / "mlflow.db"))}
    result = kedro(project, "--only-missing-outputs")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = _runs(project / "mlflow.db")
    assert {r.info.run_id for r in _parents(runs)} == before
    assert not _running(runs)
    parents, _ = _campaign_runs(project)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"


@pytest.mark.slow
def test_run_rejected_by_the_definition_check_leaves_no_finished_run(project):
    before = {r.info.run_id: r.info.status for r in _runs(project / "mlflow.db")}
    result = kedro_with_broken_reactant(project)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("reactive_al: ")
    after = {r.info.run_id: r.info.status for r in _runs(project / "mlflow.db")}
    new = {i: s for i, s in after.items() if i not in before}
    assert "FINISHED" not in new.values() and "RUNNING" not in new.values()
    assert {i: after[i] for i in before} == before


@pytest.mark.slow
def test_sigterm_ends_the_run_killed(project):
    # a whole campaign: still running 2 s after its run started, however fast the NEB is
    proc = start_kedro(project, "--params",
                  "data_root=data/term,labeling.cache_path=data/term/label_cache.db")

    def mine() -> list:
        return [r for r in _runs(project / "mlflow.db")
                if r.data.tags.get(tracking.PID_TAG) == str(proc.pid)]

    _wait_for(lambda: any(r.info.status == "RUNNING" for r in mine()), 300, proc)
    time.sleep(2)  # inside data_engineering or labeling
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert [r.info.status for r in mine()] == ["KILLED"]
    assert not _running(_runs(project / "mlflow.db"))


def test_runs_record_the_versions_of_the_numerical_stack():
    import numpy
    import torch

    versions = tracking.process_tags()[tracking.VERSIONS_TAG]
    assert f"numpy {numpy.__version__}" in versions.split(", ")
    assert f"torch {torch.__version__}" in versions.split(", ")
    assert len(versions.split(", ")) == len(tracking.VERSIONED)
