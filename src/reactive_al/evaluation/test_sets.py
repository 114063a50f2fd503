"""What a held-out test set holds, per subset: sizes, origins, measured temperatures, dihedrals.

Every error is reported per ``info["subset"]`` (:func:`~reactive_al.evaluation.errors.
evaluate_committee`); these statistics say what each subset is: how many frames, made how, at
which kinetic temperature the MD that made them actually ran, and for conformational basins
where in the (φ, ψ) plane they lie.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from ase import Atoms

from reactive_al.exploration.basins import circular_mean_deg, wrap_deg
from reactive_al.systems import is_crystal


def subset_stats(frames: Sequence[Atoms]) -> dict[str, Any]:
    """Per-subset statistics of ``frames`` (JSON-ready).

    ``{"n_frames", "subsets": {name: {"n", "origins", ...}}}``; subsets of MD frames add
    ``md_temperature_K`` (the set temperature, K) and ``mean_kinetic_temperature_K`` (mean
    over the frames of the mean kinetic temperature of their run, K), both mappings keyed by
    the set temperature when a subset (a basin) holds several; basin subsets add
    ``basin_phi_psi_deg`` (the target), ``mean_phi_psi_deg`` (circular mean of the frames) and
    ``max_deviation_deg`` (the largest |φ − φ₀| or |ψ − ψ₀| of a frame, wrapped); crystal
    subsets add ``volume_A3`` (smallest and largest cell volume, Å³).
    """
    by_subset: dict[str, list[Atoms]] = {}
    for a in frames:
        by_subset.setdefault(str(a.info.get("subset", "unknown")), []).append(a)
    subsets: dict[str, Any] = {}
    for name, group in by_subset.items():
        entry: dict[str, Any] = {
            "n": len(group),
            "origins": dict(Counter(str(a.info.get("origin", "unknown")) for a in group))}
        entry.update(_temperatures(group))
        volumes = [a.get_volume() for a in group if is_crystal(a)]
        if volumes:  # crystals: the cell volumes (Å³) the subset spans
            entry["volume_A3"] = [round(float(min(volumes)), 1), round(float(max(volumes)), 1)]
        angles = np.array([np.asarray(a.info["phi_psi_deg"], dtype=float) for a in group
                           if "phi_psi_deg" in a.info]).reshape(-1, 2)
        if len(angles):
            entry["mean_phi_psi_deg"] = circular_mean_deg(angles).round(1).tolist()
            if "basin_phi_psi_deg" in group[0].info:
                target = np.asarray(group[0].info["basin_phi_psi_deg"], dtype=float)
                entry["basin_phi_psi_deg"] = target.tolist()
                entry["max_deviation_deg"] = float(
                    np.abs(wrap_deg(angles - target)).max().round(1))
        subsets[name] = entry
    return {"n_frames": len(frames), "subsets": subsets}


def _temperatures(group: Sequence[Atoms]) -> dict[str, Any]:
    """Set and mean measured kinetic temperatures (K) of the MD frames of one subset."""
    kinetic: dict[float, list[float]] = {}
    for a in group:
        if "md_kinetic_temperature_K" in a.info:
            kinetic.setdefault(float(a.info.get("md_temperature_K", np.nan)), []).append(
                float(a.info["md_kinetic_temperature_K"]))
    if not kinetic:
        return {}
    means = {t: float(np.mean(v)) for t, v in sorted(kinetic.items())}
    if len(means) == 1:
        (t, mean), = means.items()
        return {"md_temperature_K": t, "mean_kinetic_temperature_K": mean}
    return {"md_temperature_K": list(means),
            "mean_kinetic_temperature_K": {f"{t:g}": m for t, m in means.items()}}


def subset_lines(stats: dict[str, Any]) -> list[str]:
    """One line per subset of :func:`subset_stats` (what the logs show)."""
    lines = []
    for name, s in stats["subsets"].items():
        line = f"{name}: {s['n']} frames"
        kinetic = s.get("mean_kinetic_temperature_K")
        if isinstance(kinetic, dict):
            line += ", mean kinetic temperature " + ", ".join(
                f"{m:.0f} K (set {t} K)" for t, m in kinetic.items())
        elif kinetic is not None:
            line += f", mean kinetic temperature {kinetic:.0f} K (set {s['md_temperature_K']:g} K)"
        if "volume_A3" in s:
            line += f", cell volume {s['volume_A3'][0]:.0f}-{s['volume_A3'][1]:.0f} A^3"
        if "basin_phi_psi_deg" in s:
            line += (f", mean (phi, psi) = ({s['mean_phi_psi_deg'][0]:.0f}, "
                     f"{s['mean_phi_psi_deg'][1]:.0f}) deg for target "
                     f"({s['basin_phi_psi_deg'][0]:.0f}, {s['basin_phi_psi_deg'][1]:.0f}), "
                     f"at most {s['max_deviation_deg']:.0f} deg off")
        lines.append(line)
    return lines
