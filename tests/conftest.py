"""Shared fixtures: real but cheap QM (HF/STO-3G) on tiny molecules, a fake QM program, and
the tiny campaign through ``kedro run``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from ase import Atoms

from reactive_al.oracles import ORACLES, Oracle, OracleError, register_oracle

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
HF_STO3G = {"program": "pyscf", "method": "hf", "basis": "sto-3g", "grid_level": 3,
            "conv_tol": 1e-9, "density_fit": False, "unrestricted": "auto"}


#: The tiny campaign: H + H2 at HF/STO-3G, two AL iterations (about 40 s on two busy cores).
LOCAL_PARAMS = """
system: h3_exchange
data_engineering:
  initial: {n_displaced: 2, n_normal_mode: 2}
  test: {n_displaced: 2, n_normal_mode: 2}
  reference_path: {n_images: 3, steps: 60, n_perturbed: 1}
  thermal: {n_per_well: 1, n_steps: 40, temperatures_K: [300], hot_temperature_K: 1200}
  md_seed_path_images: 1
labeling: {scheduler: synchronous, progress: false}
training:
  baseline: null   # the plain committee (test_multifidelity runs the default, auto: Δ on xTB)
  model: {ensemble_size: 2, hidden: [16]}
  fit: {max_epochs: 60, patience: 30, batch_size: 16}
selection:
  batch_size: 4
  walkers: {n_steps: 60, temperatures_K: [300], sample_every: 5}
active_learning: {n_iterations: 2}
evaluation:
  neb: {steps: 100}
  md_stability: {n_walkers: 2, max_steps: 40}
"""

#: ``kedro run`` in a Python that first counts, in the file named by its first argument, every
#: QM calculation the labeling layer starts (one line per call, written before the call)
COUNTING_KEDRO = """
import os, sys
from reactive_al.oracles import labeling
counter, real = sys.argv.pop(1), labeling.compute_label
def counting(*args, **kwargs):
    fd = os.open(counter, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, b"1\\n")
    os.close(fd)
    return real(*args, **kwargs)
labeling.compute_label = counting
from kedro.framework.cli import main
sys.argv[0] = "kedro"
sys.exit(main())
"""


def _kedro_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "OMP_NUM_THREADS": "1",
            "COLUMNS": "250", **(extra or {})}  # rich wraps long log lines at the terminal width


def kedro(project: Path, *args: str, env: dict[str, str] | None = None
          ) -> subprocess.CompletedProcess:
    """``kedro run <args>`` in ``project`` (one OpenMP thread, wide log lines), captured.

    ``env``: extra environment variables.
    """
    exe = Path(sys.executable).with_name("kedro")
    return subprocess.run([str(exe), "run", *args], cwd=project, env=_kedro_env(env),
                          capture_output=True, text=True, timeout=600)


def start_kedro(project: Path, *args: str, stdout=subprocess.DEVNULL,  # noqa: ANN001
                stderr=subprocess.PIPE, qm_calls: Path | None = None,
                env: dict[str, str] | None = None) -> subprocess.Popen:
    """``kedro run <args>`` in the background, in its own process group (``os.killpg``).

    With ``qm_calls``, every QM calculation the run starts appends a line to that file
    (:data:`COUNTING_KEDRO`); ``env`` is added to the environment.
    """
    if qm_calls is None:
        cmd = [str(Path(sys.executable).with_name("kedro")), "run", *args]
    else:
        cmd = [sys.executable, "-c", COUNTING_KEDRO, str(qm_calls), "run", *args]
    env = {**_kedro_env(), "PYTHONUNBUFFERED": "1", **(env or {})}  # lines as they are written
    return subprocess.Popen(cmd, cwd=project, env=env, stdout=stdout, stderr=stderr, text=True,
                            start_new_session=True)


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


def permissions_enforced() -> bool:
    """False for root (unless it gave up its capability to ignore file permissions)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "read_only"
        folder.mkdir(mode=0o555)
        try:
            (folder / "x").write_text("")
        except PermissionError:
            return True
        finally:
            folder.chmod(0o755)
    return False


def cache_labels(path: Path) -> dict[str, tuple]:
    """Every row of a label cache: key → (energy, forces blob); energy None for a failure.

    Read from a copy of the file and its write-ahead log (as a killed writer left them):
    SQLite would otherwise add files next to the cache, or complete the log into it.
    """
    import sqlite3
    import tempfile
    from contextlib import closing

    with tempfile.TemporaryDirectory() as tmp:
        for part in path.parent.glob(f"{path.name}*"):
            if part.name in (path.name, f"{path.name}-wal"):
                shutil.copy(part, Path(tmp) / part.name)
        with closing(sqlite3.connect(Path(tmp) / path.name)) as con:
            assert con.execute("PRAGMA quick_check").fetchone()[0] == "ok"
            return {key: (energy, forces) for key, energy, forces in con.execute(
                "SELECT t.value, s.energy, s.forces FROM systems s JOIN text_key_values t "
                "ON t.id = s.id WHERE t.key = 'label_key'")}


@pytest.fixture(scope="module")
def project_params() -> dict:
    """The shipped parameters (``conf/base``), loaded once per test module: copy before changing."""
    from reactive_al.settings import load_parameters

    return load_parameters(PROJECT_ROOT)


@pytest.fixture(scope="session")
def finished_campaign(tmp_path_factory) -> Path:
    """A finished tiny campaign (:data:`LOCAL_PARAMS`), run once per session: never modify it.

    Tests that change files work on a copy; tests that compare with an uninterrupted
    campaign read it.
    """
    root = copy_project(tmp_path_factory.mktemp("finished_campaign"), LOCAL_PARAMS)
    result = kedro(root)
    assert result.returncode == 0, result.stderr[-3000:]
    return root


@dataclass(frozen=True)
class FakeLevel:
    """A level of theory of the test program ``fake``: ASE's EMT, scaled by ``scale``."""

    program: ClassVar[str] = "fake"
    scale: float = 1.0
    robust: bool = False  # the rescue level: never fails

    @property
    def name(self) -> str:
        return f"emt-x{self.scale:g}"

    def as_dict(self) -> dict:
        return {"program": "fake", "scale": float(self.scale), "robust": self.robust}


class FakeOracle(Oracle):
    """The test program (``fake_oracle``): a new program is one class like this, a registry
    entry and a YAML key.

    Energies and forces are EMT's times ``level.scale``. Set on the class: ``fails`` (the
    structures whose SCF does not converge: ``OracleError("scf_not_converged", message)``,
    except at the robust level), ``rescue`` (whether that level is offered as a rescue);
    ``calls`` and ``warmed`` count single points and warm-ups in this process.
    """

    program = "fake"
    level_class = FakeLevel
    distribution = "ase"
    fails = staticmethod(lambda atoms: False)
    message = "fake: no convergence here"
    rescue = False
    calls = 0
    warmed = 0

    @classmethod
    def reset(cls) -> None:
        cls.fails = staticmethod(lambda atoms: False)
        cls.message, cls.rescue, cls.calls, cls.warmed = "fake: no convergence here", False, 0, 0

    def rescue_levels(self, level: FakeLevel) -> list[FakeLevel]:
        return [replace(level, robust=True)] if FakeOracle.rescue else []

    def single_point(self, atoms, charge, multiplicity, level, omp_threads=None,  # noqa: ANN001
                     timeout_s=None) -> dict:
        FakeOracle.calls += 1
        if FakeOracle.fails(atoms) and not level.robust:
            raise OracleError("scf_not_converged", FakeOracle.message)
        mol = atoms.copy()
        mol.calc = self.calculator(charge, multiplicity, level)
        return {"energy": level.scale * mol.get_potential_energy(),
                "forces": level.scale * mol.get_forces(),
                "provenance": {"qm_program": "fake", "qm_method": level.name,
                               "qm_robust": level.robust}}

    def calculator(self, charge, multiplicity, level):  # noqa: ANN001, ANN201
        from ase.calculators.emt import EMT

        return EMT()

    def warm(self) -> None:
        FakeOracle.warmed += 1


@pytest.fixture
def fake_oracle() -> Iterator[type[FakeOracle]]:
    """:class:`FakeOracle` registered as program ``fake`` for the test, reset afterwards."""
    register_oracle(FakeOracle)
    try:
        yield FakeOracle
    finally:
        ORACLES.pop("fake", None)
        FakeOracle.reset()


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
