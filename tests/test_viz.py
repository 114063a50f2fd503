"""`make viz`'s data, built without a browser: `kedro viz build` on a copy of the project."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import PROJECT_ROOT

N_ITERATIONS = 3  # set in conf/local of the copy: the viz follows the session's parameters


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Path:
    pytest.importorskip("kedro_viz", reason="kedro-viz is installed by `pip install -e .[dev]`")
    root = tmp_path_factory.mktemp("viz_project")
    shutil.copytree(PROJECT_ROOT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf/local").mkdir()
    (root / "conf/local/parameters_test.yml").write_text(
        f"active_learning: {{n_iterations: {N_ITERATIONS}}}\n")
    shutil.copy(PROJECT_ROOT / "pyproject.toml", root)
    shutil.copytree(PROJECT_ROOT / "src", root / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "COLUMNS": "250"}
    exe = Path(sys.executable).with_name("kedro")
    result = subprocess.run([str(exe), "viz", "build"], cwd=root, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return root / "build"


def _pipeline(build: Path, name: str) -> dict:
    return json.loads((build / "api/pipelines" / name).read_text())


def test_viz_build_lists_every_registered_pipeline(build):
    assert (build / "index.html").exists()
    ids = {p["id"] for p in json.loads((build / "api/main").read_text())["pipelines"]}
    assert {"data_engineering", "labeling", "training", "selection", "evaluation",
            "active_learning", "tuning", "__default__"} <= ids


def test_viz_shows_the_namespaced_active_learning_iterations(build):
    data = _pipeline(build, "active_learning")
    iterations = [f"iter_{k:02d}" for k in range(N_ITERATIONS)]
    modular = {n["id"] for n in data["nodes"] if n["type"] == "modularPipeline"}
    assert modular == {*iterations, "first_batch"}  # active_learning.early_first_batch
    assert set(iterations) <= set(data["modular_pipelines"])
    for it in iterations:
        # one template per iteration: train → evaluate (explore → select → label around the
        # evaluation, but the last)
        tasks = {n["name"] for n in data["nodes"]
                 if n["type"] == "task" and n["modular_pipelines"] == [it]}
        assert {"train_committee", "evaluate_committee"} <= tasks, (it, tasks)
        assert len(tasks) >= (3 if it == iterations[-1] else 5), (it, tasks)
        assert data["modular_pipelines"][it]["children"]
