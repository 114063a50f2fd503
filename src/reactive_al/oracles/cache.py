"""Content-addressed label cache in an ASE database (SQLite, WAL journal).

The key hashes everything that changes a label: atomic numbers, positions rounded to
``POSITION_DECIMALS`` decimals of an Å, cell and pbc, charge, multiplicity and every QM setting
(method, basis, grid, density fitting, program version). A label already in the cache is never
computed again. A deterministic failure (the whole SCF ladder failed, invalid geometry) is
stored too, with its cause, so a campaign can report it; a transient one (timeout, exception,
lost worker: :data:`TRANSIENT_FAILURES`) is never stored, so the next run tries again.

One row per key: a partial unique index on ASE's ``text_key_values`` table (key
``label_key``) makes a second :meth:`LabelCache.put` of a key a no-op that keeps the first row.
Caches written before the index existed are migrated when opened (transient failures dropped,
duplicate rows of a key reduced to the first label). Who computes a key is coordinated by
:mod:`reactive_al.oracles.claims`, in a table of the same file.

When opened the file is checked (``PRAGMA quick_check``); a damaged cache is moved aside and
replaced by its readable rows (:mod:`reactive_al.oracles.cache_repair`), with a one-line
warning, and the campaign goes on. A cache that cannot be written raises
:class:`CacheUnwritable`, one line naming the file and the way out.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from reactive_al.oracles.base import TRANSIENT_FAILURES
from reactive_al.oracles.cache_repair import first_line, integrity_problem, repair

log = logging.getLogger(__name__)

#: Positions are rounded to 1e-5 Å before hashing.
POSITION_DECIMALS = 5
#: the partial unique index that keeps one row per label key
UNIQUE_KEY_INDEX = "reactive_al_one_row_per_key"


#: (device, inode) of the cache files this process has checked and migrated
_CHECKED: set[tuple[int, int] | None] = set()  # None never added: a missing file is new


class LabelCacheError(RuntimeError):
    """The label cache cannot be used: a one-line message naming the file and the way out."""


class CacheDamaged(LabelCacheError):
    """The cache file was damaged while in use (it is checked and repaired when opened)."""


class CacheUnwritable(LabelCacheError):
    """The cache file or its directory cannot be created or written."""


def label_key(atoms: Atoms, charge: int, multiplicity: int, settings: dict[str, Any]) -> str:
    """Return the SHA-256 content key of a structure under a QM setting."""
    payload = {
        "numbers": atoms.get_atomic_numbers().tolist(),
        "positions": np.round(atoms.get_positions(), POSITION_DECIMALS).tolist(),
        "cell": np.round(np.asarray(atoms.cell), POSITION_DECIMALS).tolist(),
        "pbc": [bool(p) for p in atoms.pbc],
        "charge": int(charge),
        "multiplicity": int(multiplicity),
        "settings": {k: settings[k] for k in sorted(settings)},
    }
    # -0.0 and 0.0 must hash alike
    blob = json.dumps(payload, sort_keys=True).replace("-0.0,", "0.0,").replace("-0.0]", "0.0]")
    return hashlib.sha256(blob.encode()).hexdigest()


def is_transient(record: dict[str, Any]) -> bool:
    """True for a failure of the run, not of the structure (retried, never cached)."""
    return record.get("status") == "failed" and bool(
        record.get("transient") or record.get("category", "exception") in TRANSIENT_FAILURES)


def _unwritable(path: Path, exc: BaseException) -> CacheUnwritable:
    """The one-line error for a cache that cannot be created or written."""
    existing = next((p for p in (path, *path.parents) if p.exists()), path)
    if getattr(exc, "errno", None) == errno.EROFS:
        problem = "read-only file system"
    elif path.is_dir():
        problem = f"{path} is a directory"
    elif existing != path and not existing.is_dir():
        problem = f"{existing} is not a directory"
    elif isinstance(exc, PermissionError) or not os.access(existing, os.W_OK):
        problem = "permission denied"
    elif existing == path and not os.access(path.parent, os.W_OK):
        # SQLite writes its journal next to the file: a read-only folder makes it read-only
        problem = f"permission denied in {path.parent}"
    else:
        problem = first_line(getattr(exc, "strerror", None) or exc)
    return CacheUnwritable(f"cannot write the label cache {path} ({problem}); point "
                           "labeling.cache_path to a writable place")


def _damage_message(path: Path, problem: str, aside: Path, kept: int) -> str:
    return (f"{path}: label cache damaged ({problem}); moved aside to {aside.name}, {kept} "
            "readable labels kept in a fresh cache (the others are computed again)")


def _use_wal(path: Path, wait_s: float = 60.0) -> None:
    """Switch the file to WAL (several campaigns read while one writes, no corruption).

    The switch needs a moment alone with the file, and SQLite can answer "database is locked"
    at once instead of waiting when another campaign opens the same new cache at that
    moment, so it is retried for up to ``wait_s`` seconds.
    """
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with contextlib.closing(sqlite3.connect(path, timeout=wait_s)) as con:
                con.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class LabelCache:
    """ASE-database store of QM results keyed by :func:`label_key`, one row per key."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        #: the one-line report if the file was damaged and repaired when opened, else None
        self.repaired: str | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self._checked_before():
                return
            if integrity_problem(self.path) is not None:
                outcome = repair(self.path)
                if outcome is not None:
                    self.repaired = _damage_message(self.path, *outcome)
                    log.warning("%s", self.repaired)
            _use_wal(self.path)
            self._create_schema()
            self._one_row_per_key()
            _CHECKED.add(self._identity())
        except sqlite3.OperationalError as exc:
            msg = str(exc)
            if "unable to open" in msg or "readonly" in msg or "read-only" in msg:
                raise _unwritable(self.path, exc) from None
            raise
        except OSError as exc:
            raise _unwritable(self.path, exc) from None

    def _identity(self) -> tuple[int, int] | None:
        """The file's (device, inode): a repaired or replaced cache is another file."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_dev, st.st_ino

    def _checked_before(self) -> bool:
        """True if this process checked and migrated this very file already.

        A QM NEB opens the cache at every step: the full check (which reads the whole file)
        runs once per process and file; a file that merely reuses an inode lacks the index.
        """
        if self._identity() not in _CHECKED:
            return False
        try:
            with contextlib.closing(sqlite3.connect(self.path, timeout=60)) as con:
                return con.execute("SELECT 1 FROM sqlite_master WHERE name = ?",
                                   (UNIQUE_KEY_INDEX,)).fetchone() is not None
        except sqlite3.DatabaseError:
            return False

    def _create_schema(self) -> None:
        # ASE creates its tables on first use, in several statements: two processes opening a
        # new cache at once can see each other's half-made schema ("table ... already exists",
        # "no such table", or the version row not written yet, which ASE reads as None); the
        # loser waits and opens it again
        for attempt in range(20):
            try:
                with self._db() as db:
                    db.count()
                return
            except (sqlite3.OperationalError, TypeError) as exc:
                msg = str(exc)
                half_made = ("already exists" in msg or "no such table" in msg
                             or "'NoneType' object is not subscriptable" in msg)
                if not half_made or attempt == 19:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def _db(self):
        """The ASE database on the cache file, without ASE's lock file.

        SQLite locks the file itself (WAL, busy timeout); ASE's ``<file>.lock`` is created with
        ``O_EXCL`` and waited for without end, so a process killed while writing would leave it
        behind and hang every later campaign on the cache.
        """
        import ase.db

        return ase.db.connect(str(self.path), type="db", append=True, use_lock_file=False)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction on the cache file (``BEGIN IMMEDIATE``), committed on exit.

        ``synchronous=NORMAL``: in WAL mode a power cut may lose the last commits, never
        corrupt the file; what is written here (claims, migrations) can be redone.
        """
        con = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        try:
            con.execute("PRAGMA synchronous=NORMAL")
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        finally:
            con.close()

    def _one_row_per_key(self) -> None:
        """Create the unique index on label keys, first migrating a cache written without it."""
        from ase.db.sqlite import all_tables

        for attempt in range(5):
            with self.transaction() as con:
                if con.execute("SELECT 1 FROM sqlite_master WHERE name=?",
                               (UNIQUE_KEY_INDEX,)).fetchone():
                    return
                drop = self._rows_to_drop(con)
                if drop:
                    marks = ",".join("?" * len(drop))
                    for table in reversed(all_tables):  # what ase.db's delete does, no VACUUM
                        con.execute(f"DELETE FROM {table} WHERE id IN ({marks})", drop)
                    log.info("label cache %s: %d transient or duplicate rows dropped",
                             self.path, len(drop))
                try:
                    con.execute(f"CREATE UNIQUE INDEX {UNIQUE_KEY_INDEX} ON "
                                "text_key_values(value) WHERE key = 'label_key'")
                    return
                except sqlite3.IntegrityError:
                    if attempt == 4:
                        raise
                    continue  # an older writer added a duplicate meanwhile: migrate again

    def _rows_to_drop(self, con: sqlite3.Connection) -> list[int]:
        """Ids of transient failures and of every row of a key but its first label."""
        status = dict(con.execute(
            "SELECT id, value FROM text_key_values WHERE key = 'status'").fetchall())
        drop = [i for i, s in status.items() if s == "failed" and self._transient_row(i)]
        by_key: dict[str, list[int]] = {}
        for i, key in con.execute("SELECT id, value FROM text_key_values "
                                  "WHERE key = 'label_key' ORDER BY id"):
            if i not in drop:
                by_key.setdefault(key, []).append(i)
        for ids in by_key.values():
            if len(ids) > 1:
                first = next((i for i in ids if status.get(i) == "ok"), ids[0])
                drop += [i for i in ids if i != first]
        return drop

    def _transient_row(self, row_id: int) -> bool:
        with self._db() as db:
            return is_transient({"status": "failed", **db.get(id=row_id).data})

    @contextlib.contextmanager
    def _connected(self) -> Iterator[Any]:
        """An ASE connection; damage found while in use becomes a one-line :class:`CacheDamaged`."""
        try:
            with self._db() as db:
                yield db
        except sqlite3.OperationalError:
            raise
        except sqlite3.DatabaseError as exc:
            if not isinstance(exc, sqlite3.IntegrityError):
                raise CacheDamaged(f"{self.path}: label cache damaged while in use "
                                   f"({first_line(exc)}); run again: it is checked and "
                                   "repaired when opened") from None
            raise

    def get(self, key: str) -> dict[str, Any] | None:
        """Return the stored record for ``key`` (label or deterministic failure), or None.

        A label has ``energy`` (eV), ``forces`` (eV/Å) and, if it was stored with one,
        ``stress`` (ASE's Voigt 6-vector, eV/Å³). A transient failure left by an older
        version of this cache counts as missing.
        """
        with self._connected() as db:
            rows = list(db.select(label_key=key))
        for row in rows:
            data = dict(row.data)
            if row.get("status") == "failed":
                if is_transient({"status": "failed", **data}):
                    continue
                return {"status": "failed", **data}
            record = {"status": "ok", "energy": float(row.energy),
                      "forces": np.array(row.forces)}
            stress = row.get("stress")
            if stress is not None:  # a periodic label (Voigt, eV/Å³)
                record["stress"] = np.array(stress, dtype=float)
            record["provenance"] = data.get("provenance", {})
            return record
        return None

    def put(self, key: str, atoms: Atoms, record: dict[str, Any]) -> bool:
        """Store a label (``status='ok'``) or a deterministic failure record under ``key``.

        A label's ``stress`` (Voigt, eV/Å³; periodic structures) is stored when it has one.

        Insert-or-ignore: returns False, storing nothing, for a transient failure or a key
        that already has a row (the first row is kept; a transient failure an older version
        stored is replaced).
        """
        if is_transient(record):
            return False
        stored = Atoms(atoms.get_atomic_numbers(), atoms.get_positions(),
                       cell=atoms.cell, pbc=atoms.pbc)
        if record["status"] == "ok":
            labels = {"energy": record["energy"], "forces": record["forces"]}
            if record.get("stress") is not None:
                labels["stress"] = np.asarray(record["stress"], dtype=float)
            stored.calc = SinglePointCalculator(stored, **labels)
            kvp, data = {"label_key": key, "status": "ok"}, {"provenance": record["provenance"]}
        else:
            kvp = {"label_key": key, "status": "failed"}
            data = {k: v for k, v in record.items() if k != "status"}
        for _ in range(2):
            try:
                with self._connected() as db:
                    db.write(stored, key_value_pairs=kvp, data=data)
                return True
            except sqlite3.IntegrityError:
                with self._connected() as db:
                    stale = [r.id for r in db.select(label_key=key, status="failed")
                             if is_transient({"status": "failed", **r.data})]
                    if not stale:
                        return False
                    db.delete(stale)
        return False

    def forget_failure(self, key: str) -> None:
        """Delete a stored failure so that the structure is tried again."""
        with self._connected() as db:
            ids = [r.id for r in db.select(label_key=key, status="failed")]
            if ids:
                db.delete(ids)

    def __len__(self) -> int:
        with self._connected() as db:
            return db.count()
