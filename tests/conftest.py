"""Shared fixtures: real but cheap QM (HF/STO-3G) on tiny molecules."""

from __future__ import annotations

import os
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
    from reactive_al.oracles.labeling import close_clients

    close_clients()
