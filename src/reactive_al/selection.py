"""Query strategies: pick the batch of candidates worth a QM label."""

from __future__ import annotations

import numpy as np
from ase import Atoms


def distance_fingerprint(atoms: Atoms) -> np.ndarray:
    """Sorted interatomic distances: invariant to translation, rotation and atom order."""
    d = atoms.get_all_distances()
    return np.sort(d[np.triu_indices(len(atoms), 1)])


def top_k_unique(
    candidates: list[Atoms],
    scores: np.ndarray,
    batch_size: int,
    reference: list[Atoms] | None = None,
    min_separation: float = 0.02,
) -> list[int]:
    """Indices of the ``batch_size`` highest-scoring candidates, skipping near-duplicates.

    A candidate is a near-duplicate when the RMS difference of its distance fingerprint to an
    already chosen structure or to a ``reference`` (training) structure is below
    ``min_separation`` Å.
    """
    fps = [distance_fingerprint(a) for a in candidates]
    taken = [distance_fingerprint(a) for a in (reference or [])]

    def is_dup(fp: np.ndarray) -> bool:
        return any(
            len(t) == len(fp) and np.sqrt(np.mean((t - fp) ** 2)) < min_separation for t in taken
        )

    chosen: list[int] = []
    for i in np.argsort(-np.asarray(scores), kind="stable"):
        if len(chosen) >= batch_size:
            break
        if is_dup(fps[i]):
            continue
        chosen.append(int(i))
        taken.append(fps[i])
    return chosen
