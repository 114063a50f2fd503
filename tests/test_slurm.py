"""Integration: `kedro run --env hpc --pipelines labeling` on a real single-node Slurm.

Needs slurmctld + slurmd + munge on this machine (``tests/slurm/start_slurm.sh --install`` as
root; `.ci/run` does it). Skips, saying why, when Slurm is not installed or cannot be started
(fails instead with REACTIVE_AL_REQUIRE_SLURM=1, as in CI).

One run labels 6 H + H2 structures (UHF/cc-pVQZ, a few seconds each) through
``dask_jobqueue.SLURMCluster`` with two single-core jobs; while the first batch runs, every
running job is killed with ``scancel``. The run must finish with every label: the labeling
resubmits the ended jobs and Dask reruns the labels that were in flight. A second run, after two
labels were deleted from the cache, must compute exactly those two and nothing else.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from .conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow

START_SCRIPT = PROJECT_ROOT / "tests/slurm/start_slurm.sh"
N_INITIAL, N_TEST = 4, 2
BASIS = "cc-pvqz"  # a few s per H3 label: slow enough to kill a job mid-batch


def _slurm_running() -> bool:
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True)
    if "UP" not in ping.stdout:
        return False
    nodes = subprocess.run(["sinfo", "-h", "-p", "compute", "-o", "%T"],
                           capture_output=True, text=True).stdout.split()
    return any(state.rstrip("*") in ("idle", "mixed", "allocated") for state in nodes)


def _unavailable(reason: str) -> None:
    """Skip, or fail where Slurm is required (`.ci/run` sets REACTIVE_AL_REQUIRE_SLURM=1)."""
    if os.environ.get("REACTIVE_AL_REQUIRE_SLURM") == "1":
        pytest.fail(f"REACTIVE_AL_REQUIRE_SLURM=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def slurm() -> None:
    """A responsive single-node Slurm with partition ``compute``, started here if need be."""
    missing = [exe for exe in ("sbatch", "squeue", "scancel", "scontrol", "sinfo",
                               "slurmctld", "slurmd", "munged") if shutil.which(exe) is None]
    if missing:
        _unavailable(f"Slurm is not installed (no {', '.join(missing)}): run "
                    "`tests/slurm/start_slurm.sh --install` as root (Debian slurm-wlm + munge)")
    if _slurm_running():
        return
    if os.geteuid() != 0:
        _unavailable("Slurm is installed but not running, and starting it needs root: run "
                    "`sudo tests/slurm/start_slurm.sh`")
    started = subprocess.run(["bash", str(START_SCRIPT)], capture_output=True, text=True,
                             timeout=120)
    if started.returncode != 0 or not _slurm_running():
        _unavailable("Slurm could not be started by tests/slurm/start_slurm.sh: "
                    f"{(started.stderr or started.stdout).strip()[-500:]}")


def _write_pools(project: Path) -> None:
    import numpy as np
    from ase.io import read, write

    atoms = read(project / "data/01_raw/h3_exchange/reactant.xyz")
    rng = np.random.default_rng(18)
    frames = []
    for i in range(N_INITIAL + N_TEST):
        a = atoms.copy()
        a.positions += rng.normal(0.0, 0.05, a.positions.shape)
        a.info.update(origin=f"slurm_test_{i}", subset="well")
        frames.append(a)
    out = project / "data/02_intermediate"
    out.mkdir(parents=True, exist_ok=True)
    write(out / "initial_pool.extxyz", frames[:N_INITIAL], format="extxyz")
    write(out / "test_pool.extxyz", frames[N_INITIAL:], format="extxyz")


@pytest.fixture(scope="module")
def project(tmp_path_factory, slurm) -> tuple[Path, str]:
    """A copy of the project on h3_exchange whose ``hpc`` env submits to the local Slurm."""
    root = tmp_path_factory.mktemp("slurm_project")
    shutil.copytree(PROJECT_ROOT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf/local").mkdir()
    shutil.copytree(PROJECT_ROOT / "data/01_raw", root / "data/01_raw")
    shutil.copy(PROJECT_ROOT / "pyproject.toml", root)
    shutil.copytree(PROJECT_ROOT / "src", root / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    job_name = f"ral-test-{uuid.uuid4().hex[:8]}"
    hpc = root / "conf/hpc/parameters_labeling.yml"
    params = yaml.safe_load(hpc.read_text())
    params["labeling"].update(n_workers=2, progress=False)
    # the shipped Slurm settings, shrunk to this node; the scheduler on loopback
    params["labeling"]["slurm"].update(memory="500MB", walltime="00:10:00", interface="lo",
                                       job_name=job_name)
    hpc.write_text(yaml.safe_dump(params))
    (root / "conf/hpc/parameters_test.yml").write_text(yaml.safe_dump({
        "system": "h3_exchange",
        "systems": {"h3_exchange": {"level_of_theory": {"basis": BASIS}}},
    }))
    _write_pools(root)
    return root, job_name


def _env() -> dict[str, str]:
    return {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "OMP_NUM_THREADS": "1",
            "COLUMNS": "250",
            # forget a killed worker after 2 s (default 15 s) so the test stays short
            "DASK_DISTRIBUTED__DEPLOY__LOST_WORKER_TIMEOUT": "2s"}


def _kedro_run(project: Path) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("kedro")
    return subprocess.Popen([str(exe), "run", "--env", "hpc", "--pipelines", "labeling"],
                            cwd=project, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _jobs(job_name: str) -> dict[str, str]:
    """Job id → state of every job of this test that Slurm still knows (queued or ended)."""
    out = subprocess.run(["scontrol", "show", "job", "--oneliner"], capture_output=True,
                         text=True).stdout
    jobs = {}
    for line in out.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if fields.get("JobName") == job_name:
            jobs[fields["JobId"]] = fields["JobState"]
    return jobs


def _running(job_name: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-n", job_name, "-t", "R", "-o", "%i"],
                         capture_output=True, text=True).stdout
    return out.split()


def _n_cached(project: Path) -> int:
    import sqlite3

    path = project / "data/02_intermediate/label_cache.db"
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(path, timeout=1) as con:
            return con.execute("SELECT COUNT(*) FROM systems").fetchone()[0]
    except sqlite3.Error:  # created but no table yet
        return 0


def _labels(project: Path) -> dict[str, float]:
    from ase.io import read

    frames = []
    for name in ("labeled_set_0", "test_set"):
        frames += read(project / f"data/03_primary/{name}.extxyz", index=":")
    return {a.info["label_key"]: a.get_potential_energy() for a in frames}


def test_labeling_on_slurm_survives_scancel_and_resumes_from_the_cache(project):
    from ase.db import connect

    root, job_name = project
    summary: dict[str, object] = {}

    # run 1: kill every running job once the first label is in the cache
    t0 = time.monotonic()
    proc = _kedro_run(root)
    killed: list[str] = []
    while proc.poll() is None and time.monotonic() - t0 < 240:
        n = _n_cached(root)
        running = _running(job_name)
        if not killed and 1 <= n < N_INITIAL and running:
            subprocess.run(["scancel", *running], check=True)
            killed = running
            summary["labels_cached_at_kill"] = n
        time.sleep(0.2)
    if proc.poll() is None:
        proc.kill()
    log = proc.communicate()[0]
    summary["run1_s"] = round(time.monotonic() - t0, 1)
    assert proc.returncode == 0, log[-4000:]
    assert killed, f"the batch finished before a job could be killed:\n{log[-3000:]}"

    jobs = _jobs(job_name)
    summary.update(run1_jobs=len(jobs), killed=killed)
    assert all(jobs[j] == "CANCELLED" for j in killed)
    # two jobs at the start, and one resubmitted for each killed job
    assert len(jobs) >= 2 + len(killed), jobs
    assert "resubmitting" in log
    summary["results_lost_on_killed_workers"] = log.count("lose already computed task")

    labels = _labels(root)
    cache_path = root / "data/02_intermediate/label_cache.db"
    assert len(labels) == N_INITIAL + N_TEST
    # the QM labels, and the GFN2-xTB baseline labels the driver cached while the initial
    # pool was labeled (the warm-up of the first Δ training)
    assert _n_cached(root) == N_INITIAL + N_TEST + N_INITIAL
    programs = [row.data["provenance"]["qm_program"]
                for row in connect(str(cache_path), type="db").select()
                if row.label_key not in labels]
    assert programs == ["tblite"] * N_INITIAL, programs
    summary["labels"] = len(labels)

    # run 2: two labels gone from the cache are computed again, exactly those two
    from ase.io import read

    first = read(root / "data/03_primary/labeled_set_0.extxyz", index=":2")
    db = connect(str(cache_path), type="db")
    lost = [a.info["label_key"] for a in first]
    db.delete([row.id for key in lost for row in db.select(label_key=key)])
    assert _n_cached(root) == 2 * N_INITIAL + N_TEST - 2

    t0 = time.monotonic()
    proc = _kedro_run(root)
    log2 = proc.communicate(timeout=240)[0]
    summary["run2_s"] = round(time.monotonic() - t0, 1)
    assert proc.returncode == 0, log2[-4000:]
    # the initial pool is labeled head first (active_learning.early_first_batch): the two
    # lost labels may fall in either part; the test pool is all cached and not labeled
    runs = [(int(n), int(hits)) for n, hits
            in re.findall(r"labeling (\d+) structures \((\d+) cache hits\)", log2)]
    assert sum(n for n, _ in runs) == 2, log2[-4000:]
    assert sum(hits for _, hits in runs) == N_INITIAL - 2, runs
    relabeled = _labels(root)
    assert relabeled.keys() == labels.keys()
    assert all(abs(relabeled[k] - labels[k]) < 1e-6 for k in labels)
    assert _n_cached(root) == 2 * N_INITIAL + N_TEST
    summary["total_jobs"] = len(_jobs(job_name))
    print("slurm summary:", json.dumps(summary))
