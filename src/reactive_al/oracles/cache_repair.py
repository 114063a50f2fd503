"""Check a label cache file when it is opened, and replace a damaged one by what can be read.

The damaged file is never deleted: it stays next to the cache as ``<name>.damaged-<time>``
(with its ``-wal``), and the rows that can still be read are copied into a fresh cache under
the original name. Salvage is best effort: rows are read one by one through ASE, so a row on
a damaged page is lost and every other row is kept; a file that is not a database at all
(overwritten, truncated header) keeps nothing. Lost labels are simply computed again.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from reactive_al.oracles.base import TRANSIENT_FAILURES

log = logging.getLogger(__name__)

#: id probes when the row list of a damaged ``systems`` table cannot be read in one query
MAX_PROBED_IDS = 1_000_000


def first_line(text: str, width: int = 160) -> str:
    """The first line of ``text``, at most ``width`` characters."""
    line = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def integrity_problem(path: Path) -> str | None:
    """Return what ``PRAGMA quick_check`` finds wrong with ``path`` (None: sound or absent).

    ``quick_check`` reads every page and checks the B-tree structure (not index contents), in
    about the time it takes to read the file. Raises ``sqlite3.OperationalError`` when the
    file cannot be opened at all (permissions, read-only file system): that is not damage.
    """
    if not path.exists() or path.stat().st_size == 0:
        return None
    con = sqlite3.connect(path, timeout=60)
    try:
        rows = con.execute("PRAGMA quick_check").fetchall()
    except sqlite3.OperationalError:
        raise
    except sqlite3.DatabaseError as exc:  # "file is not a database", "disk image is malformed"
        return first_line(exc)
    finally:
        con.close()
    if rows == [("ok",)]:
        return None
    found = " ".join(str(r[0]) for r in rows[:3]).replace("*** in database main ***", "")
    return first_line(" ".join(found.split()))


@contextlib.contextmanager
def _directory_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``directory``: one process repairs, the others wait."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _keep(src: Path, dst: Path) -> None:
    """Make ``dst`` a second name of ``src`` (a hard link; a copy where links are refused)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _salvage(damaged: Path, fresh: Path) -> int:
    """Copy every readable label row of ``damaged`` into a new ASE database ``fresh``.

    Transient failures are dropped (they are never cached) and a key seen twice keeps its
    first row. Returns the number of rows kept.
    """
    import ase.db

    try:
        src = ase.db.connect(str(damaged), type="db", create_indices=False)
        with sqlite3.connect(damaged) as con:
            try:
                ids = [r[0] for r in con.execute("SELECT id FROM systems ORDER BY id")]
            except sqlite3.DatabaseError:  # the table's B-tree is broken: probe id by id
                (top,) = con.execute("SELECT MAX(id) FROM systems").fetchone()
                ids = list(range(1, min(int(top or 0), MAX_PROBED_IDS) + 1))
    except sqlite3.DatabaseError as exc:
        log.info("nothing readable in %s (%s)", damaged, first_line(exc))
        return 0
    seen: set[str] = set()
    kept = 0
    # one writer under the directory lock; ASE's lock file would outlive a kill (see cache.py)
    with ase.db.connect(str(fresh), type="db", append=True, use_lock_file=False) as out, src:
        for i in ids:
            try:
                row = src.get(id=i)
                kvp, data = dict(row.key_value_pairs), dict(row.data)
                atoms = row.toatoms()
            except (sqlite3.DatabaseError, KeyError, ValueError, TypeError):
                continue  # on a damaged page, or no such id
            key = kvp.get("label_key")
            transient = (kvp.get("status") == "failed"
                         and data.get("category") in TRANSIENT_FAILURES)
            if key is None or key in seen or transient:
                continue
            seen.add(key)
            out.write(atoms, key_value_pairs=kvp, data=data)
            kept += 1
    return kept


def repair(path: Path) -> tuple[str, Path, int] | None:
    """Move a damaged cache aside and put a fresh cache of its readable rows in its place.

    Returns (problem, where the damaged file now is, rows kept), or None when the file is
    sound (e.g. another process repaired it while this one waited for the lock). The swap is
    atomic (``os.replace``): a process opening the cache meanwhile sees the damaged file or
    the fresh one, never no file.
    """
    with _directory_lock(path.parent):
        problem = integrity_problem(path)
        if problem is None:
            return None
        stamp = time.strftime("%Y%m%dT%H%M%S")
        aside = path.with_name(f"{path.name}.damaged-{stamp}")
        n = 1
        while aside.exists():
            n += 1
            aside = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
        _keep(path, aside)
        for suffix in ("-wal", "-shm"):  # the journal belongs to the damaged file
            journal = path.with_name(path.name + suffix)
            if journal.exists():
                os.replace(journal, aside.with_name(aside.name + suffix))
        fresh = path.with_name(f"{path.name}.salvage-{os.getpid()}")
        fresh.unlink(missing_ok=True)  # a leftover of a salvage killed half-way
        kept = _salvage(aside, fresh)
        if fresh.exists():
            os.replace(fresh, path)
        else:
            path.unlink()  # still readable as ``aside``
        return problem, aside, kept
