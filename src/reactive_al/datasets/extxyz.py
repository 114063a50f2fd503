"""Lists of ``ase.Atoms`` stored as extended XYZ; labels survive through SinglePointCalculator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ase import Atoms
from kedro.io import AbstractDataset, DatasetError

#: ``atoms.info`` key of the frame count written with every frame (removed on load).
COUNT_KEY = "frames_in_file"


class ExtXYZDataset(AbstractDataset[list[Atoms], list[Atoms]]):
    """A frame list in one extxyz file.

    Energies, forces (and stress) attached through a calculator are written by ASE and read
    back as a ``SinglePointCalculator``, so ``atoms.get_forces()`` works after a round trip;
    ``atoms.info`` carries metadata (origin, iteration, uncertainty, QM provenance). An empty
    list is stored as an empty file. Every frame records the file's frame count
    (:data:`COUNT_KEY`), so a file cut at a frame boundary is reported, never taken as whole.
    """

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None):
        self._filepath = Path(filepath)
        self.metadata = metadata

    def load(self) -> list[Atoms]:
        """Read every frame of the file."""
        from ase.io import read

        if not self._filepath.exists():
            raise DatasetError(f"{self._filepath}: file not found")
        if self._filepath.stat().st_size == 0:
            return []
        try:
            frames = list(read(self._filepath, index=":", format="extxyz"))
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DatasetError(f"{self._filepath}: cannot read extxyz ({first}); remove the file "
                               "to recompute it") from exc
        counts = {a.info.pop(COUNT_KEY) for a in frames if COUNT_KEY in a.info}
        if counts and counts != {len(frames)}:
            raise DatasetError(f"{self._filepath}: truncated ({len(frames)} of {max(counts)} "
                               "frames); remove the file to recompute it")
        return frames

    def save(self, data: list[Atoms]) -> None:
        """Write the frames atomically (a partial file never replaces a good one)."""
        from ase.io import write

        tmp = self._filepath.with_suffix(self._filepath.suffix + ".tmp")
        frames = []
        for a in data:
            b = a.copy()  # keeps the calculator's labels; the caller's frames stay as they are
            b.calc = a.calc
            b.info[COUNT_KEY] = len(data)
            frames.append(b)
        try:
            self._filepath.parent.mkdir(parents=True, exist_ok=True)
            if frames:
                write(tmp, frames, format="extxyz")
            else:
                tmp.write_text("")
            tmp.replace(self._filepath)
        except OSError as exc:
            raise unwritable(self._filepath, exc) from exc

    def _exists(self) -> bool:
        return self._filepath.exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}


def unwritable(path: Path, exc: OSError) -> DatasetError:
    """The one-line error for a dataset file that cannot be written (read-only folder, ...)."""
    return DatasetError(f"{path}: cannot write ({exc.strerror or exc}); make "
                        f"{path.parent} writable")
