"""Wall-time records of a run: every Kedro node, and named stages inside long nodes.

Dataset loads and saves (which Kedro does before and after a node runs) are recorded as
stages ``load:<dataset>`` / ``save:<dataset>`` of the node that reads or writes them.

Off unless ``$REACTIVE_AL_PROFILE`` names a file; then every record is appended to it as one
JSON line ``{"node", "stage", "seconds", "start", "pid"}`` (seconds of wall time, ``start``
in seconds since the epoch). ``benchmarks/campaign_profile.py`` sets it and sums the records.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

ENV = "REACTIVE_AL_PROFILE"
#: the node running in this process (stages inside it are recorded under its name)
_current: dict[str, object] = {"node": None, "start": 0.0}


def enabled() -> bool:
    """True if ``$REACTIVE_AL_PROFILE`` is set."""
    return bool(os.environ.get(ENV))


def record(stage: str, seconds: float, start: float, node: str | None = None) -> None:
    """Append one record (``seconds`` of wall time from ``start``, epoch seconds)."""
    path = os.environ.get(ENV)
    if not path:
        return
    line = json.dumps({"node": node if node is not None else _current["node"], "stage": stage,
                       "seconds": round(seconds, 4), "start": round(start, 3),
                       "pid": os.getpid()})
    with open(path, "a") as fh:
        fh.write(line + "\n")


def node_started(name: str) -> None:
    """Mark the start of Kedro node ``name``."""
    _current.update(node=name, start=time.time())


def node_finished(name: str) -> None:
    """Record the wall time of Kedro node ``name`` (stage ``node``)."""
    start = float(_current["start"]) if _current["node"] == name else time.time()
    record("node", time.time() - start, start, node=name)
    _current.update(node=None, start=0.0)


_io: dict[str, float] = {}


def io_started(dataset: str) -> None:
    """Mark the start of a dataset load or save (Kedro does them outside the node's run)."""
    if enabled():
        _io[dataset] = time.time()


def io_finished(dataset: str, op: str, node: str) -> None:
    """Record a dataset ``op`` (``load`` / ``save``) of ``node`` as stage ``<op>:<dataset>``."""
    start = _io.pop(dataset, None)
    if start is not None:
        record(f"{op}:{dataset}", time.time() - start, start, node=node)


@contextmanager
def timed(stage: str) -> Iterator[None]:
    """Record the wall time of the block as ``stage`` of the running node."""
    if not enabled():
        yield
        return
    start = time.time()
    try:
        yield
    finally:
        record(stage, time.time() - start, start)
