import numpy as np
import pytest

from reactive_al.oracles import labeling
from reactive_al.oracles.cache import LabelCache
from reactive_al.oracles.labeling import (
    FailureBudgetExceeded,
    LabelingConfig,
    LabelJob,
    label_structures,
)

from .conftest import HF_STO3G, FakeLevel, water


def count_qm_calls(monkeypatch) -> list:
    """Record every QM calculation the labeling layer starts (in this process)."""
    calls: list = []
    real = labeling.compute_label

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(labeling, "compute_label", counting)
    return calls


def _cfg(tmp_path, **kw) -> LabelingConfig:
    base = {"charge": 0, "multiplicity": 1, "level": HF_STO3G,
            "cache_path": str(tmp_path / "cache.db"), "scheduler": "synchronous",
            "progress": False}
    return LabelingConfig(**{**base, **kw})


def test_cache_hit_returns_identical_labels_without_qm(tmp_path, water_frames, monkeypatch):
    cfg = _cfg(tmp_path)
    first, failures = label_structures(water_frames, cfg)
    assert len(first) == len(water_frames) and failures == []

    def no_qm(*args, **kwargs):
        raise AssertionError("QM called for a cached structure")

    monkeypatch.setattr(labeling, "compute_label", no_qm)
    second, _ = label_structures(water_frames, cfg)
    for a, b in zip(first, second, strict=True):
        assert a.get_potential_energy() == b.get_potential_energy()
        np.testing.assert_array_equal(a.get_forces(), b.get_forces())
        assert a.info["label_key"] == b.info["label_key"]
        assert b.info["origin"].startswith("test/")
        assert b.info["qm_method"] == "hf"


def test_interrupted_batch_recomputes_only_missing(tmp_path, water_frames, monkeypatch):
    cfg = _cfg(tmp_path)
    label_structures(water_frames[:4], cfg)  # "killed" after four labels
    calls = count_qm_calls(monkeypatch)
    labeled, _ = label_structures(water_frames, cfg)
    assert len(labeled) == 6
    assert len(calls) == 2


def test_bad_geometry_is_recorded_and_rest_labeled(tmp_path, water_frames):
    bad = water()
    bad.positions[1] = [0.1, 0, 0]
    bad.info["origin"] = "md/broken"
    labeled, failures = label_structures([*water_frames[:3], bad], _cfg(tmp_path))
    assert len(labeled) == 3
    assert failures == [{"index": 3, "origin": "md/broken", "category": "geometry_invalid",
                         "message": failures[0]["message"]}]
    assert "Å apart" in failures[0]["message"]


def test_failure_budget_stops_a_systematically_failing_batch(tmp_path, water_frames):
    for a in water_frames[:4]:
        a.positions[1] = a.positions[0] + 0.05
    with pytest.raises(FailureBudgetExceeded, match="failure budget"):
        label_structures(water_frames, _cfg(tmp_path, max_failure_fraction=0.5))


def test_dask_local_cluster_labels_in_parallel(tmp_path, water_frames):
    cfg = _cfg(tmp_path, scheduler="local", n_workers=2)
    labeled, failures = label_structures(water_frames[:3], cfg)
    assert len(labeled) == 3 and not failures
    serial, _ = label_structures(water_frames[:3], _cfg(tmp_path / "other"))
    for a, b in zip(labeled, serial, strict=True):
        assert a.get_potential_energy() == pytest.approx(b.get_potential_energy(), abs=1e-6)


def test_a_batch_labeled_in_the_background_gives_the_same_labels(tmp_path, water_frames):
    # what an AL iteration does while it evaluates: the batch runs on the Dask workers,
    # driven from a background thread; the result and the cache are those of a direct call
    cfg = _cfg(tmp_path, scheduler="local", n_workers=2)
    job = LabelJob(water_frames[:4], cfg)
    labeled, failures = job.result()
    assert not failures
    direct, _ = label_structures(water_frames[:4], _cfg(tmp_path / "direct"))
    for a, b in zip(labeled, direct, strict=True):
        assert a.get_potential_energy() == pytest.approx(b.get_potential_energy(), abs=1e-6)
        assert a.info["origin"] == b.info["origin"]
    cache = LabelCache(cfg.cache_path)
    assert all(cache.get(a.info["label_key"])["status"] == "ok" for a in labeled)


def test_a_background_batch_raises_its_error_when_collected(tmp_path, water_frames):
    for a in water_frames[:4]:
        a.positions[1] = a.positions[0] + 0.05
    job = LabelJob(water_frames, _cfg(tmp_path, max_failure_fraction=0.5))
    with pytest.raises(FailureBudgetExceeded, match="failure budget"):
        job.result()


def test_the_initial_pool_labeled_head_first_comes_back_as_one_labeling(tmp_path, water_frames):
    # active_learning.early_first_batch: the head (spread over the pool) and the rest are two
    # background jobs; collected, they give what one labeling of the whole pool gives
    from reactive_al.pipelines.labeling.nodes import (
        collect_initial_head,
        collect_initial_pool,
        initial_split,
    )

    early = {"early_first_batch": 0.5}
    head, tail = initial_split(6, 0.5)
    assert (head, tail) == ([0, 2, 4], [1, 3, 5])
    assert initial_split(6, None) == ([0, 1, 2, 3, 4, 5], [])
    for i in (1, 2):  # one failure in each job
        water_frames[i].positions[1] = water_frames[i].positions[0] + 0.05
    jobs = [LabelJob([water_frames[i] for i in idx], _cfg(tmp_path)) for idx in (head, tail)]
    assert [a.info["origin"] for a in collect_initial_head(*jobs, early)] == ["test/0", "test/4"]
    labeled, failures = collect_initial_pool(*jobs, early)
    whole, whole_failures = label_structures(water_frames, _cfg(tmp_path / "whole"))
    assert [a.info["origin"] for a in labeled] == [a.info["origin"] for a in whole] == [
        "test/0", "test/3", "test/4", "test/5"]
    for a, b in zip(labeled, whole, strict=True):
        assert a.get_potential_energy() == pytest.approx(b.get_potential_energy(), abs=1e-8)
    assert [(f["index"], f["origin"], f["category"]) for f in failures] == [
        (f["index"], f["origin"], f["category"]) for f in whole_failures] == [
        (1, "test/1", "geometry_invalid"), (2, "test/2", "geometry_invalid")]
    # a head that mostly failed: its committee waits for the rest of the pool instead
    water_frames[4].positions[1] = water_frames[4].positions[0] + 0.05
    jobs = [LabelJob([water_frames[i] for i in idx], _cfg(tmp_path)) for idx in (head, tail)]
    assert [a.info["origin"] for a in collect_initial_head(*jobs, early)] == [
        "test/0", "test/3", "test/5"]


def test_hpc_config_builds_a_slurm_job_script(tmp_path):
    import yaml

    from reactive_al.oracles.cluster import slurm_cluster

    from .conftest import PROJECT_ROOT

    params = yaml.safe_load((PROJECT_ROOT / "conf/hpc/parameters_labeling.yml").read_text())
    cfg = _cfg(tmp_path, **{k: v for k, v in params["labeling"].items()
                            if k not in ("cache_path",)})
    assert cfg.scheduler == "slurm"
    cluster = slurm_cluster(cfg)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "#SBATCH" in script
    assert f"#SBATCH -p {params['labeling']['slurm']['queue']}" in script
    assert "export OMP_NUM_THREADS=1" in script
    assert "--nthreads 1" in script or "--nworkers 1" in script


def _label_in_process(cache_path, start, stop, seed):
    from tests.conftest import HF_STO3G as level
    from tests.conftest import water as make

    rng = np.random.default_rng(0)
    frames = []
    for _ in range(stop):
        a = make()
        a.positions += rng.normal(0, 0.05, a.positions.shape)
        frames.append(a)
    cfg = LabelingConfig(charge=0, multiplicity=1, level=level, cache_path=cache_path,
                         scheduler="synchronous", progress=False)
    labeled, _ = label_structures(frames[start:stop], cfg)
    return {a.info["label_key"]: a.get_potential_energy() for a in labeled}


def test_two_campaigns_sharing_the_cache_do_not_corrupt_it(tmp_path):
    import multiprocessing as mp
    import sqlite3

    cache = str(tmp_path / "shared.db")
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        a, b = pool.starmap(_label_in_process, [(cache, 0, 8, 0), (cache, 4, 12, 1)])
    assert len(a) == 8 and len(b) == 8
    for key in set(a) & set(b):
        assert a[key] == pytest.approx(b[key], abs=1e-8)
    with sqlite3.connect(cache) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    from reactive_al.oracles.cache import LabelCache

    store = LabelCache(cache)
    assert all(store.get(k)["status"] == "ok" for k in {**a, **b})


def test_killed_labeling_process_loses_only_calculations_in_flight(tmp_path, monkeypatch):
    import signal
    import subprocess
    import sys
    import time

    from reactive_al.oracles.cache import LabelCache

    from .conftest import PROJECT_ROOT

    cache = tmp_path / "killed.db"
    script = (
        "from tests.test_labeling import _label_in_process as f; "
        f"f({str(cache)!r}, 0, 16, 0)"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=PROJECT_ROOT)
    store = LabelCache(cache)
    deadline = time.time() + 120
    while time.time() < deadline and len(store) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(store)
    assert 3 <= done < 16
    calls = count_qm_calls(monkeypatch)
    result = _label_in_process(str(cache), 0, 16, 0)
    assert len(result) == 16
    assert len(calls) == 16 - done


def test_a_lock_file_left_by_a_killed_writer_does_not_block_the_cache(tmp_path):
    """A writer killed inside ASE's write leaves ``<cache>.lock``; SQLite's own lock is used."""
    import threading

    cache = tmp_path / "stale.db"
    (tmp_path / "stale.db.lock").write_bytes(b"")
    out: dict = {}
    worker = threading.Thread(target=lambda: out.update(_label_in_process(str(cache), 0, 2, 0)),
                              daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "labeling waits for a stale lock file"
    assert len(out) == 2 and len(LabelCache(cache)) == 2


def test_cache_waits_for_a_schema_another_process_is_still_writing(tmp_path):
    """ASE writes its tables, then the version row: a cache opened in between waits for it."""
    import sqlite3
    import threading
    import time

    import ase.db

    from reactive_al.oracles.cache import LabelCache

    path = tmp_path / "half_made.db"
    with ase.db.connect(str(path), type="db") as db:
        db.count()  # creates the schema
    with sqlite3.connect(path) as con:
        (version,) = con.execute("SELECT value FROM information WHERE name='version'").fetchone()
        con.execute("DELETE FROM information WHERE name='version'")

    def finish_schema():
        time.sleep(0.3)
        with sqlite3.connect(path) as con:
            con.execute("INSERT INTO information VALUES ('version', ?)", (version,))

    writer = threading.Thread(target=finish_schema)
    writer.start()
    try:
        cache = LabelCache(path)
    finally:
        writer.join()
    assert cache.get("no-such-key") is None


def test_a_new_program_labels_through_configuration_alone(tmp_path, water_frames, fake_oracle):
    from ase.calculators.emt import EMT

    cfg = _cfg(tmp_path, level={"program": "fake", "scale": 2.0})
    assert cfg.level == FakeLevel(scale=2.0)
    labeled, failures = label_structures(water_frames, cfg)
    assert len(labeled) == len(water_frames) and failures == []
    for frame, a in zip(water_frames, labeled, strict=True):
        ref = frame.copy()
        ref.calc = EMT()
        assert a.get_potential_energy() == pytest.approx(2.0 * ref.get_potential_energy())
        assert a.info["qm_program"] == "fake" and a.info["qm_method"] == "emt-x2"
    assert cfg.settings()["program"] == "fake" and "program_version" in cfg.settings()
    from reactive_al.oracles.cluster import _warm_worker

    _warm_worker("fake")
    assert fake_oracle.warmed >= 1
    # another level of the same program is another cache entry, never a stale hit
    other, _ = label_structures(water_frames[:1], _cfg(tmp_path, level={"program": "fake"}))
    assert other[0].get_potential_energy() == pytest.approx(
        labeled[0].get_potential_energy() / 2)


def test_labeling_config_takes_a_level_object_and_gives_the_same_cache_key(tmp_path):
    from reactive_al.oracles import parse_level

    as_dict = _cfg(tmp_path)
    as_object = _cfg(tmp_path, level=parse_level(HF_STO3G, "test"))
    assert as_dict.level == as_object.level
    assert as_dict.settings() == as_object.settings() == {
        **HF_STO3G, "program_version": as_dict.settings()["program_version"]}


@pytest.mark.parametrize(("level", "expected"), [
    ({"program": "orca"}, "unknown program 'orca'"),
    ({"program": "pyscf", "xc": "pbe"}, "unknown setting(s) ['xc']"),
])
def test_unknown_program_or_key_is_a_one_line_definition_error(tmp_path, level, expected):
    from reactive_al.systems import SystemDefinitionError

    with pytest.raises(SystemDefinitionError) as err:
        _cfg(tmp_path, level=level)
    assert expected in str(err.value) and "\n" not in str(err.value)
