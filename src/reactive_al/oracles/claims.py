"""Claims on label keys: one computation per key across every campaign sharing a cache.

Before computing a missing label a campaign claims its key: an atomic insert into the table
``reactive_al_claims(label_key PRIMARY KEY, owner, expires)`` in the cache file. A campaign
that finds a key claimed by another live owner waits for that owner's label instead of
computing it. The owner renews its claims every ``ttl_s / 4`` from a background thread while
it runs, and releases each one after the label (or a failure) is stored, and all of them when
it ends, also on an exception. So the expiry only matters when an owner dies without releasing
(killed, node lost): its claims are taken once they expire, or at once when the owner was a
process of this host that no longer exists.
"""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable

from reactive_al.oracles.cache import LabelCache

log = logging.getLogger(__name__)

#: seconds a claim lives without renewal
DEFAULT_CLAIM_TTL_S = 120.0

_SCHEMA = ("CREATE TABLE IF NOT EXISTS reactive_al_claims (label_key TEXT PRIMARY KEY, "
           "owner TEXT NOT NULL, expires REAL NOT NULL)")


def new_owner() -> str:
    """A claim owner id: ``host:pid:token`` (the token tells sessions of a process apart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def owner_alive(owner: str) -> bool:
    """False only for an owner known to be gone: a process of this host that has exited."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another host: only the expiry tells
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, another user's process
    return True


class Claims:
    """The claims one labeling call holds on a cache; a context manager that renews them.

    Use as ``with Claims(cache) as claims:``; :meth:`claim` before computing a key and
    :meth:`release` once its record is stored. Times in s.
    """

    def __init__(self, cache: LabelCache, ttl_s: float = DEFAULT_CLAIM_TTL_S):
        self.cache = cache
        self.ttl_s = float(ttl_s)
        self.owner = new_owner()
        self.held: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        with cache.transaction() as con:
            con.execute(_SCHEMA)
            # claims a killed campaign left on keys nobody asked for again
            con.execute("DELETE FROM reactive_al_claims WHERE expires < ?", (time.time(),))

    def __enter__(self) -> Claims:
        self._thread = threading.Thread(target=self._renew_until_stopped, daemon=True,
                                        name="reactive-al-claims")
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self.cache.transaction() as con:
            con.execute("DELETE FROM reactive_al_claims WHERE owner = ?", (self.owner,))
        self.held.clear()

    def _renew_until_stopped(self) -> None:
        while not self._stop.wait(self.ttl_s / 4):
            if not self.held:
                continue
            try:
                with self.cache.transaction() as con:
                    con.execute("UPDATE reactive_al_claims SET expires = ? WHERE owner = ?",
                                (time.time() + self.ttl_s, self.owner))
            except sqlite3.Error as exc:  # busy for a minute: try again next time
                log.warning("could not renew label claims in %s: %s", self.cache.path, exc)

    def _holder(self, con, key: str) -> str | None:
        """The other live owner holding an unexpired claim on ``key``, or None."""
        row = con.execute("SELECT owner, expires FROM reactive_al_claims WHERE label_key = ?",
                          (key,)).fetchone()
        if row is None or row[0] == self.owner or row[1] <= time.time():
            return None
        return row[0] if owner_alive(row[0]) else None

    def claim(self, key: str) -> bool:
        """Claim ``key`` for this owner; False if another live owner holds it unexpired."""
        with self.cache.transaction() as con:
            if self._holder(con, key) is not None:
                return False
            con.execute("INSERT OR REPLACE INTO reactive_al_claims VALUES (?, ?, ?)",
                        (key, self.owner, time.time() + self.ttl_s))
        self.held.add(key)
        return True

    def busy(self, keys: Iterable[str]) -> set[str]:
        """The ``keys`` another live owner holds (a read: no write lock taken)."""
        keys = list(keys)
        con = sqlite3.connect(self.cache.path, timeout=60)
        try:
            return {k for k in keys if self._holder(con, k) is not None}
        finally:
            con.close()

    def release(self, key: str) -> None:
        """Give up the claim on ``key`` (its record is stored, or it failed transiently)."""
        with self.cache.transaction() as con:
            con.execute("DELETE FROM reactive_al_claims WHERE label_key = ? AND owner = ?",
                        (key, self.owner))
        self.held.discard(key)
