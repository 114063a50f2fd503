"""Issue #15: the label cache under concurrency, transient faults and damage; the HPC cluster.

Real QM (HF/STO-3G water, synchronous) where a count of calculations is the point; a toy
program where only the failure category matters.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

from reactive_al.oracles import labeling
from reactive_al.oracles.cache import CacheUnwritable, LabelCache, label_key
from reactive_al.oracles.labeling import LabelingConfig, label_structures

from .conftest import HF_STO3G, PROJECT_ROOT, permissions_enforced, water
from .test_labeling import _cfg, count_qm_calls


def _frames(n: int, seed: int = 0) -> list[Atoms]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        a = water()
        a.positions += rng.normal(0, 0.05, a.positions.shape)
        a.info["origin"] = f"test/{i}"
        out.append(a)
    return out


def _rows_per_key(path) -> dict[str, int]:
    with sqlite3.connect(path) as con:
        return dict(con.execute("SELECT value, COUNT(*) FROM text_key_values "
                                "WHERE key = 'label_key' GROUP BY value").fetchall())


def _claims(path) -> list:
    with sqlite3.connect(path) as con:
        return con.execute("SELECT * FROM reactive_al_claims").fetchall()


# ---------------------------------------------------------------- one computation per key


def _campaign(cache_path: str, counter: str, out: str, barrier) -> None:
    """One campaign in its own process: counts every QM calculation it starts in ``counter``."""
    from reactive_al.oracles import labeling as lab

    real = lab.compute_label

    def counting(*args, **kwargs):
        fd = os.open(counter, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, f"{os.getpid()}\n".encode())
        finally:
            os.close(fd)
        return real(*args, **kwargs)

    lab.compute_label = counting
    lab.CLAIM_POLL_S = 0.05
    cfg = LabelingConfig(charge=0, multiplicity=1, level=HF_STO3G, cache_path=cache_path,
                         scheduler="synchronous", progress=False)
    frames = _frames(10)
    barrier.wait(timeout=120)
    labeled, failures = label_structures(frames, cfg)
    with open(out, "w") as f:
        json.dump({"energies": {a.info["label_key"]: a.get_potential_energy() for a in labeled},
                   "failures": len(failures)}, f)


def test_two_campaigns_started_together_compute_each_structure_once(tmp_path):
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    cache, counter = str(tmp_path / "shared.db"), str(tmp_path / "calls.txt")
    barrier = ctx.Barrier(2)
    outs = [str(tmp_path / f"out{i}.json") for i in range(2)]
    procs = [ctx.Process(target=_campaign, args=(cache, counter, out, barrier)) for out in outs]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0, 0]
    a, b = (json.loads(Path(out).read_text()) for out in outs)
    assert a["failures"] == b["failures"] == 0
    assert len(a["energies"]) == len(b["energies"]) == 10
    assert all(a["energies"][k] == pytest.approx(b["energies"][k], abs=1e-8)
               for k in a["energies"])
    calls = Path(counter).read_text().split()
    assert len(calls) == 10, f"{len(calls)} QM calls for 10 distinct structures"
    assert len(set(calls)) == 2, "one campaign computed everything: no work was shared"
    assert set(_rows_per_key(cache).values()) == {1}
    with sqlite3.connect(cache) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert _claims(cache) == []


def _claim_as(path, key: str, owner: str, expires: float) -> None:
    with sqlite3.connect(path) as con:
        con.execute("INSERT OR REPLACE INTO reactive_al_claims VALUES (?, ?, ?)",
                    (key, owner, expires))


def _key(cfg: LabelingConfig, atoms: Atoms) -> str:
    return label_key(atoms, cfg.charge, cfg.multiplicity, cfg.settings())


@pytest.fixture
def fast_poll(monkeypatch):
    monkeypatch.setattr(labeling, "CLAIM_POLL_S", 0.05)


def _prepared(tmp_path) -> tuple[LabelingConfig, Atoms, str]:
    cfg = _cfg(tmp_path)
    frame = _frames(1)[0]
    from reactive_al.oracles.claims import Claims

    Claims(LabelCache(cfg.cache_path))  # creates the cache and its claims table
    return cfg, frame, _key(cfg, frame)


def test_a_label_another_campaign_is_computing_is_waited_for(tmp_path, monkeypatch, fast_poll):
    cfg, frame, key = _prepared(tmp_path)
    _claim_as(cfg.cache_path, key, "otherhost:1:abc", time.time() + 600)

    def other_campaign_finishes():
        time.sleep(0.5)
        LabelCache(cfg.cache_path).put(key, frame, {
            "status": "ok", "energy": -1.25, "forces": np.zeros((3, 3)), "provenance": {}})
        with sqlite3.connect(cfg.cache_path) as con:
            con.execute("DELETE FROM reactive_al_claims WHERE label_key = ?", (key,))

    calls = count_qm_calls(monkeypatch)
    other = threading.Thread(target=other_campaign_finishes)
    other.start()
    labeled, _ = label_structures([frame], cfg)
    other.join()
    assert calls == []
    assert labeled[0].get_potential_energy() == -1.25


def test_an_expired_claim_of_another_host_is_taken_over(tmp_path, monkeypatch, fast_poll):
    cfg, frame, key = _prepared(tmp_path)
    _claim_as(cfg.cache_path, key, "otherhost:1:abc", time.time() + 1.0)
    calls = count_qm_calls(monkeypatch)
    t0 = time.monotonic()
    labeled, _ = label_structures([frame], cfg)
    assert time.monotonic() - t0 >= 0.9  # waited for the expiry
    assert len(calls) == 1 and len(labeled) == 1
    assert _claims(cfg.cache_path) == []


def test_the_claim_of_a_dead_process_of_this_host_is_taken_at_once(tmp_path, monkeypatch):
    import socket
    import subprocess
    import sys

    cfg, frame, key = _prepared(tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    _claim_as(cfg.cache_path, key, f"{socket.gethostname()}:{dead}:abc", time.time() + 600)
    calls = count_qm_calls(monkeypatch)
    t0 = time.monotonic()
    labeled, _ = label_structures([frame], cfg)
    assert time.monotonic() - t0 < 30 and len(calls) == 1 and len(labeled) == 1


def test_claims_are_released_when_labeling_fails(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(labeling, "compute_label", crash)
    with pytest.raises(KeyboardInterrupt):
        label_structures(_frames(3), cfg)
    assert _claims(cfg.cache_path) == []


def test_put_keeps_the_first_row_of_a_key(tmp_path):
    cache = LabelCache(tmp_path / "c.db")
    rec = {"status": "ok", "forces": np.zeros((3, 3)), "provenance": {}}
    assert cache.put("k", water(), {**rec, "energy": -1.0}) is True
    assert cache.put("k", water(), {**rec, "energy": -2.0}) is False
    assert cache.get("k")["energy"] == -1.0
    assert _rows_per_key(cache.path) == {"k": 1}


# ---------------------------------------------------------------- transient vs deterministic


def test_a_timeout_is_retried_on_the_next_run(tmp_path, monkeypatch):
    frames = _frames(1)
    labeled, failures = label_structures(frames, _cfg(tmp_path, timeout_s=1e-9))
    assert labeled == [] and failures[0]["category"] == "timeout"
    assert len(LabelCache(tmp_path / "cache.db")) == 0  # a timeout is never cached
    calls = count_qm_calls(monkeypatch)
    labeled, failures = label_structures(frames, _cfg(tmp_path))
    assert len(calls) == 1 and len(labeled) == 1 and failures == []


def _legacy_write(path, key: str, record: dict, energy: float | None = None) -> None:
    """A row as the cache wrote it before issue #15 (failures of every kind, no unique key)."""
    import ase.db
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms = water()
    with ase.db.connect(str(path), type="db", append=True) as db:
        if energy is not None:
            atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=np.zeros((3, 3)))
            db.write(atoms, label_key=key, status="ok", data={"provenance": {}})
        else:
            db.write(atoms, label_key=key, status="failed", data=record)


def test_timeouts_stored_by_an_older_version_are_retried(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path)
    frames = _frames(2)
    timeout = {"category": "timeout", "message": "no converged SCF within 1 s"}
    _legacy_write(cfg.cache_path, _key(cfg, frames[0]), timeout)  # before the migration
    LabelCache(cfg.cache_path)
    _legacy_write(cfg.cache_path, _key(cfg, frames[1]), timeout)  # an old writer, after it
    calls = count_qm_calls(monkeypatch)
    labeled, failures = label_structures(frames, cfg)
    assert len(calls) == 2 and len(labeled) == 2 and failures == []
    assert set(_rows_per_key(cfg.cache_path).values()) == {1}
    assert all(LabelCache(cfg.cache_path).get(a.info["label_key"])["status"] == "ok"
               for a in labeled)


def test_a_cache_with_duplicate_keys_is_migrated_to_one_row_per_key(tmp_path):
    path = tmp_path / "old.db"
    _legacy_write(path, "a", {}, energy=-1.0)
    _legacy_write(path, "a", {}, energy=-1.0 + 1e-12)
    _legacy_write(path, "b", {"category": "exception", "message": "KilledWorker"})
    _legacy_write(path, "b", {}, energy=-2.0)
    _legacy_write(path, "c", {"category": "scf_not_converged", "message": "ladder failed"})
    cache = LabelCache(path)
    assert _rows_per_key(path) == {"a": 1, "b": 1, "c": 1}
    assert cache.get("a")["energy"] == -1.0 and cache.get("b")["energy"] == -2.0
    assert cache.get("c")["category"] == "scf_not_converged"


def test_scf_not_converged_after_the_ladder_is_kept_with_its_cause(tmp_path, fake_oracle):
    fake_oracle.fails = staticmethod(lambda atoms: True)  # the whole SCF ladder fails
    fake_oracle.message = ("default: not converged; level shift: not converged; second order: "
                           "not converged")
    cfg = _cfg(tmp_path, level={"program": "fake"})
    frames = _frames(1)
    for _ in range(2):
        _, failures = label_structures(frames, cfg)
        assert failures[0]["category"] == "scf_not_converged"
        assert "second order: not converged" in failures[0]["message"]
    assert fake_oracle.calls == 1  # the second run read the failure from the cache
    label_structures(frames, cfg, retry_failed=True)
    assert fake_oracle.calls == 2


# ---------------------------------------------------------------- damaged or unwritable cache


def _damage_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "label cache damaged" in r.getMessage()]


def test_a_cache_of_random_bytes_is_moved_aside_and_replaced(tmp_path, caplog, water_frames):
    path = tmp_path / "cache.db"
    garbage = np.random.default_rng(0).bytes(20_000)
    path.write_bytes(garbage)
    cache = LabelCache(path)
    (msg,) = _damage_warnings(caplog)
    assert "\n" not in msg and str(path) in msg and "0 readable labels kept" in msg
    (aside,) = tmp_path.glob("cache.db.damaged-*[0-9]")
    assert aside.name in msg and aside.read_bytes() == garbage  # moved aside, not deleted
    assert len(cache) == 0
    labeled, _ = label_structures(water_frames[:1], _cfg(tmp_path))
    assert len(labeled) == 1
    caplog.clear()
    LabelCache(path)
    assert _damage_warnings(caplog) == []


def test_a_corrupted_page_is_found_and_the_readable_labels_kept(tmp_path, caplog):
    import shutil

    rng = np.random.default_rng(1)
    good = LabelCache(tmp_path / "good.db")
    for i in range(60):
        good.put(f"k{i}", Atoms("OH2", positions=rng.normal(0, 1, (3, 3))), {
            "status": "ok", "energy": -float(i), "forces": np.zeros((3, 3)), "provenance": {}})
    with sqlite3.connect(good.path) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = con.execute("PRAGMA page_size").fetchone()[0]
        leaves = [p for (p,) in con.execute(
            "SELECT pageno FROM dbstat WHERE name = 'systems' AND pagetype = 'leaf' "
            "ORDER BY pageno")]
    assert len(leaves) >= 3
    path = tmp_path / "copy.db"
    shutil.copy(good.path, path)
    with open(path, "r+b") as f:  # garbage over a leaf of the table of rows, mid-file
        f.seek(page_size * (leaves[1] - 1))
        f.write(rng.bytes(page_size))
    damaged = path.read_bytes()
    cache = LabelCache(path)
    (msg,) = _damage_warnings(caplog)
    kept = int(msg.split(" readable labels kept")[0].rsplit(" ", 1)[1])
    assert "\n" not in msg and 0 < kept < 60 and len(cache) == kept
    assert all(cache.get(f"k{i}") is None or cache.get(f"k{i}")["energy"] == -float(i)
               for i in range(60))
    (aside,) = tmp_path.glob("copy.db.damaged-*[0-9]")
    assert aside.read_bytes() == damaged


def test_an_unwritable_cache_path_is_one_line(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(CacheUnwritable) as err:
        label_structures(_frames(1), _cfg(tmp_path, cache_path=str(not_a_dir / "cache.db")))
    msg = str(err.value)
    assert "\n" not in msg and "is not a directory" in msg
    assert msg.endswith("point labeling.cache_path to a writable place")
    # root may create files in /proc's folder as far as permissions go, then SQLite cannot
    with pytest.raises(CacheUnwritable,
                       match=r"/proc/cache.db \((unable to open|permission denied)"):
        LabelCache("/proc/cache.db")


@pytest.mark.skipif(not permissions_enforced(), reason="root ignores directory permissions")
def test_a_read_only_data_directory_is_one_line(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    LabelCache(data / "cache.db")
    data.chmod(0o500)
    try:
        with pytest.raises(CacheUnwritable, match=r"permission denied\); point labeling"):
            LabelCache(data / "other.db")
    finally:
        data.chmod(0o700)


def test_the_hook_ends_a_cache_error_in_one_line():
    from reactive_al.hooks import ReactiveALHooks

    class Node:
        name = "label_initial"

    error = CacheUnwritable("cannot write the label cache /x/cache.db (permission denied); "
                            "point labeling.cache_path to a writable place")
    with pytest.raises(SystemExit) as exit_:
        ReactiveALHooks().on_node_error(error, Node())
    assert str(exit_.value.code) == f"reactive_al: {error}"


# ---------------------------------------------------------------- what the clusters listen on


def _wildcard_listeners(processes) -> list:
    return [(p.pid, c.laddr) for p in processes for c in p.net_connections(kind="inet")
            if c.status == "LISTEN" and c.laddr.ip in ("0.0.0.0", "::")]


def _talk_tls_without_certificate(port: int) -> None:
    """Open TLS to ``port`` on loopback with no client certificate and exchange a few bytes."""
    import socket
    import ssl

    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw) as tls:
        tls.sendall(b"\x00" * 64)
        if not tls.recv(1):
            raise ConnectionError("closed by the scheduler")


def test_the_hpc_slurm_cluster_speaks_tls_only(tmp_path):
    import ssl

    import psutil
    import yaml
    from dask.distributed import Client

    from reactive_al.oracles.cluster import _delete_certificates, slurm_cluster

    params = yaml.safe_load((PROJECT_ROOT / "conf/hpc/parameters_labeling.yml").read_text())
    settings = params["labeling"]
    settings["slurm"]["shared_temp_directory"] = str(tmp_path / "tls")
    cfg = _cfg(tmp_path, **{k: v for k, v in settings.items() if k != "cache_path"})
    cluster = slurm_cluster(cfg)
    try:
        assert cluster.security.require_encryption
        assert cluster.scheduler_address.startswith("tls://")
        script = cluster.job_script()
        assert "--tls-ca-file" in script and "--tls-key" in script and "--no-dashboard" in script
        assert oct((tmp_path / "tls").stat().st_mode & 0o777) == "0o700"
        assert all(oct(f.stat().st_mode & 0o777) == "0o600" for f in (tmp_path / "tls").iterdir())
        port = int(cluster.scheduler_address.rsplit(":", 1)[1])
        # only the TLS port is on every interface: HTTP (health, metrics) is on loopback
        assert {addr.port for _, addr in _wildcard_listeners([psutil.Process()])} <= {port}
        # a TLS client without the cluster's certificate is turned away...
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            _talk_tls_without_certificate(port)
        # ...and the labeling client, which holds it, gets in
        with Client(cluster, timeout=30) as client:
            assert client.scheduler_info()["address"].startswith("tls://")
    finally:
        cluster.close()
        _delete_certificates(cluster)
    assert list((tmp_path / "tls").iterdir()) == []  # no private key left behind


def test_slurm_security_settings(tmp_path, caplog):
    from reactive_al.oracles.cluster import cluster_security, slurm_cluster

    assert cluster_security(None).require_encryption
    assert cluster_security({"tls_ca_file": "ca.pem"}).require_encryption
    assert cluster_security(False) is None
    with pytest.raises(ValueError, match="labeling.slurm.security"):
        cluster_security("yes")
    cluster = slurm_cluster(_cfg(tmp_path, scheduler="slurm", slurm={"security": False}))
    cluster.close()
    assert any("unencrypted and unauthenticated" in r.getMessage() for r in caplog.records)


def test_the_local_cluster_listens_on_loopback_only(tmp_path):
    import psutil

    from reactive_al.oracles.cluster import dask_client

    client = dask_client(_cfg(tmp_path, scheduler="local", n_workers=2))
    assert client.scheduler.address.startswith("tcp://127.0.0.1:")
    assert all(w.startswith("tcp://127.0.0.1:") for w in client.scheduler_info()["workers"])
    me = psutil.Process()
    assert _wildcard_listeners([me, *me.children(recursive=True)]) == []
