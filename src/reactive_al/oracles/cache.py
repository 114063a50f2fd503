"""Content-addressed label cache in an ASE database (SQLite, WAL journal).

The key hashes everything that changes a label: atomic numbers, positions rounded to
``POSITION_DECIMALS`` decimals of an Å, cell and pbc, charge, multiplicity and every QM setting
(method, basis, grid, density fitting, program version). A label already in the cache is never
computed again; a failure is stored too, with its cause, so a campaign can report it.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

#: Positions are rounded to 1e-5 Å before hashing.
POSITION_DECIMALS = 5


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


class LabelCache:
    """ASE-database store of QM results keyed by :func:`label_key`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(self.path, timeout=60) as con:
            # WAL lets several campaigns read while one writes, without corrupting the file
            con.execute("PRAGMA journal_mode=WAL")
        # ASE creates its tables on first use, in several statements: two processes opening a
        # new cache at once can see each other's half-made schema ("table ... already exists",
        # "no such table", or the version row not written yet, which ASE reads as None); the
        # loser waits and opens it again
        for attempt in range(20):
            try:
                with self._db() as db:
                    db.count()
                break
            except (sqlite3.OperationalError, TypeError) as exc:
                msg = str(exc)
                half_made = ("already exists" in msg or "no such table" in msg
                             or "'NoneType' object is not subscriptable" in msg)
                if not half_made or attempt == 19:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def _db(self):
        import ase.db

        return ase.db.connect(str(self.path), type="db", append=True)

    def get(self, key: str) -> dict[str, Any] | None:
        """Return the stored record for ``key`` (label or failure), or None."""
        with self._db() as db:
            rows = list(db.select(label_key=key, limit=1))
        if not rows:
            return None
        row = rows[0]
        data = dict(row.data)
        if row.get("status") == "failed":
            return {"status": "failed", **data}
        return {
            "status": "ok",
            "energy": float(row.energy),
            "forces": np.array(row.forces),
            "provenance": data.get("provenance", {}),
        }

    def put(self, key: str, atoms: Atoms, record: dict[str, Any]) -> None:
        """Store a label (``status='ok'``) or a failure record under ``key``."""
        stored = Atoms(atoms.get_atomic_numbers(), atoms.get_positions(),
                       cell=atoms.cell, pbc=atoms.pbc)
        with self._db() as db:
            if record["status"] == "ok":
                stored.calc = SinglePointCalculator(
                    stored, energy=record["energy"], forces=record["forces"]
                )
                db.write(stored, label_key=key, status="ok",
                         data={"provenance": record["provenance"]})
            else:
                db.write(stored, label_key=key, status="failed",
                         data={k: v for k, v in record.items() if k != "status"})

    def forget_failure(self, key: str) -> None:
        """Delete a stored failure so that the structure is tried again."""
        with self._db() as db:
            ids = [r.id for r in db.select(label_key=key, status="failed")]
            if ids:
                db.delete(ids)

    def __len__(self) -> int:
        with self._db() as db:
            return db.count()
