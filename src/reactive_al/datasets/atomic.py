"""Any file dataset of kedro-datasets written atomically (temp file, then rename)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset

from reactive_al.datasets.extxyz import unwritable


class AtomicDataset(AbstractDataset[Any, Any]):
    """A kedro-datasets file dataset (JSON, CSV, text, YAML, …) whose file is never half-written.

    Catalog entry: ``type: reactive_al.datasets.AtomicDataset``, ``dataset: json.JSONDataset``
    (or a mapping with the wrapped dataset's own arguments) and ``filepath``. The wrapped
    dataset writes ``<file>.tmp``, which then replaces ``<file>`` in one rename, so a run
    killed while writing leaves the old file or none — never a partial one that
    ``--only-missing-outputs`` would take as finished. Loading is the wrapped dataset's.
    """

    def __init__(self, dataset: str | dict[str, Any], filepath: str,
                 metadata: dict[str, Any] | None = None):
        spec = {"type": dataset} if isinstance(dataset, str) else dict(dataset)
        self._filepath = Path(filepath)
        self._tmp = self._filepath.with_name(self._filepath.name + ".tmp")
        self._type = str(spec["type"])
        self._reader = AbstractDataset.from_config(str(filepath),
                                                   {**spec, "filepath": str(self._filepath)})
        self._writer = AbstractDataset.from_config(str(self._tmp),
                                                   {**spec, "filepath": str(self._tmp)})
        self.metadata = metadata

    def load(self) -> Any:
        """The wrapped dataset's load of the file."""
        return self._reader.load()

    def save(self, data: Any) -> None:
        """Write through the wrapped dataset to the temporary file, then rename it over."""
        try:
            self._filepath.parent.mkdir(parents=True, exist_ok=True)
            self._writer.save(data)
            self._tmp.replace(self._filepath)
        except OSError as exc:
            raise unwritable(self._filepath, exc) from exc

    def _exists(self) -> bool:
        return self._filepath.exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "dataset": self._type}
