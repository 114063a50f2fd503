"""TorchANI committee checkpoints (``torch.save`` / ``torch.load(weights_only=True)``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from kedro.io import AbstractDataset, DatasetError

from reactive_al.datasets.extxyz import unwritable
from reactive_al.models import Committee


class CommitteeCheckpointDataset(AbstractDataset[Committee, Committee]):
    """A :class:`~reactive_al.models.Committee` stored as a plain checkpoint dict."""

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None):
        self._filepath = Path(filepath)
        self.metadata = metadata

    def load(self) -> Committee:
        """Rebuild the committee; only tensors and plain types are unpickled."""
        if not self._filepath.exists():
            raise DatasetError(f"{self._filepath}: checkpoint not found")
        try:
            ckpt = torch.load(self._filepath, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated, not a checkpoint, or foreign pickled objects
            raise DatasetError(f"{self._filepath}: unreadable committee checkpoint "
                               f"({_unreadable(self._filepath, exc)}); remove it to retrain"
                               ) from exc
        try:
            return Committee.from_checkpoint(ckpt)
        except (ValueError, KeyError, RuntimeError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DatasetError(f"{self._filepath}: damaged committee checkpoint ({first}); "
                               "remove it to retrain") from exc

    def save(self, data: Committee) -> None:
        """Write the checkpoint atomically."""
        tmp = self._filepath.with_suffix(self._filepath.suffix + ".tmp")
        try:
            self._filepath.parent.mkdir(parents=True, exist_ok=True)
            torch.save(data.to_checkpoint(), tmp)
            tmp.replace(self._filepath)
        except OSError as exc:
            raise unwritable(self._filepath, exc) from exc

    def _exists(self) -> bool:
        return self._filepath.exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}


def _unreadable(path: Path, exc: BaseException) -> str:
    """Why ``torch.load`` failed, in a few words.

    ``torch.save`` writes a zip archive: a file that is not one was cut short or is something
    else. torch's own message for a foreign pickle advises ``weights_only=False``, which runs
    the file's code: not advice to pass on for a file of unknown origin.
    """
    import zipfile

    if path.stat().st_size == 0:
        return "empty file"
    if not zipfile.is_zipfile(path):
        return "truncated, or not a torch checkpoint"
    text = str(exc).strip()
    if "Weights only load failed" in text:
        return "holds objects other than tensors and plain types"
    return text.splitlines()[0] if text else type(exc).__name__
