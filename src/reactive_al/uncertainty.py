"""Uncertainty estimates for candidate structures; committee disagreement (query by committee)."""

from __future__ import annotations

import numpy as np
from ase import Atoms

from reactive_al.models import Committee

#: Scores by which candidates can be ranked, with their units.
CRITERIA = {"energy": "eV/atom", "force": "eV/Å"}


def committee_uncertainty(committee: Committee, frames: list[Atoms]) -> dict[str, np.ndarray]:
    """Per-structure committee spreads.

    ``energy``: std of the members' energies / √N_atoms (eV/atom);
    ``force``: the largest per-atom force spread √(mean_m ‖F_m,i − F̄_i‖²) (eV/Å).
    """
    if not frames:
        return {"energy": np.zeros(0), "force": np.zeros(0)}
    p = committee.predict(frames)
    return {
        "energy": np.asarray(p["energy_std"]),
        "force": np.array([s.max() for s in p["forces_std"]]),
    }
