"""Shared fixtures: real but cheap QM (HF/STO-3G) on tiny molecules."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
HF_STO3G = {"program": "pyscf", "method": "hf", "basis": "sto-3g", "grid_level": 3,
            "conv_tol": 1e-9, "density_fit": False, "unrestricted": "auto"}


def kedro(project: Path, *args: str, env: dict[str, str] | None = None
          ) -> subprocess.CompletedProcess:
    """``kedro run <args>`` in ``project`` (one OpenMP thread, wide log lines), captured.

    ``env``: extra environment variables.
    """
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "OMP_NUM_THREADS": "1",
           "COLUMNS": "250", **(env or {})}  # rich wraps long log lines at the terminal width
    exe = Path(sys.executable).with_name("kedro")
    return subprocess.run([str(exe), "run", *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=600)


#: An H3 reactant with two atoms 0.1 Å apart: a definition the pre-run check rejects.
OVERLAPPING_H3 = "3\n\nH 0 0 0\nH 0.1 0 0\nH 2.5 0 0\n"


def kedro_with_broken_reactant(project: Path) -> subprocess.CompletedProcess:
    """``kedro run`` with the h3_exchange reactant overlapping (restored afterwards)."""
    raw = project / "data/01_raw/h3_exchange/reactant.xyz"
    good = raw.read_text()
    try:
        raw.write_text(OVERLAPPING_H3)
        return kedro(project)
    finally:
        raw.write_text(good)


def copy_project(root: Path, local_params: str) -> Path:
    """A copy of the project (conf, raw data, sources) under ``root`` with local parameters."""
    shutil.copytree(PROJECT_ROOT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf/local").mkdir()
    (root / "conf/local/parameters_test.yml").write_text(local_params)
    shutil.copytree(PROJECT_ROOT / "data/01_raw", root / "data/01_raw")
    shutil.copy(PROJECT_ROOT / "pyproject.toml", root)
    shutil.copytree(PROJECT_ROOT / "src", root / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return root


def water(shift: float = 0.0) -> Atoms:
    """A water molecule, O-H stretched by ``shift`` Å."""
    return Atoms("OH2", positions=[[0, 0, 0], [0.96 + shift, 0, 0], [-0.24, 0.93, 0]])


@pytest.fixture
def water_frames() -> list[Atoms]:
    rng = np.random.default_rng(3)
    frames = []
    for i in range(6):
        a = water()
        a.positions += rng.normal(0, 0.05, a.positions.shape)
        a.info["origin"] = f"test/{i}"
        frames.append(a)
    return frames


@pytest.fixture(scope="session", autouse=True)
def _close_dask_clusters():
    """Stop labeling clusters before pytest prints its summary."""
    yield
    from reactive_al.oracles.cluster import close_clients

    close_clients()
