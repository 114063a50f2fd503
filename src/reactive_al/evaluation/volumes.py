"""Crystals in a comparison: which cell volumes a method's walkers explored, and per-volume errors.

A crystal system's forms are its reactant and, with a ``test_path``, the other form its
held-out set reaches (e.g. MIL-53(Al)'s large- and narrow-pore cells). A method's explored
frames (every candidate its NPT walkers produced) are summarised by their volume range and by
the fraction nearest to each form's volume: a form is *reached* when a frame is nearer to its
volume than to any other form's. Errors per volume range are the test set's per-subset errors
(``reactant``, ``cell_path_<k>``, the other form), whose volumes ``test_set_stats`` gives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from reactive_al.systems import is_crystal, load_system


def form_volumes(system: str, systems: Mapping[str, Any],
                 project_root: str | Path = ".") -> dict[str, float]:
    """Cell volume (Å³) of each form of a crystal system, by file stem.

    ``{}`` for a molecule, or a system the configuration does not define.
    """
    if system not in systems:
        return {}
    rs = load_system(system, dict(systems), project_root)
    if not is_crystal(rs.reactant):
        return {}
    forms = {Path(rs.reactant_file).stem: float(rs.reactant.get_volume())}
    if rs.test_path:
        forms[rs.test_path["name"]] = float(rs.test_path["to"].get_volume())
    return forms


def volume_exploration(frames: Sequence[Atoms], forms: Mapping[str, float]) -> dict[str, Any]:
    """Volume range (Å³) of the crystal ``frames`` and the fraction nearest to each form.

    ``{"n_frames", "min", "max", "p05", "p95", "nearest_form_fraction": {form: f},
    "reached": {form: bool}, "form_volumes": forms}``; None values without crystal frames.
    """
    vols = np.array([a.get_volume() for a in frames if is_crystal(a)])
    names = list(forms)
    out: dict[str, Any] = {"n_frames": int(len(vols)), "form_volumes": dict(forms)}
    if not len(vols):
        return {**out, "min": None, "max": None, "p05": None, "p95": None,
                "nearest_form_fraction": dict.fromkeys(names), "reached": dict.fromkeys(names)}
    nearest = np.argmin(np.abs(vols[:, None] - np.array([forms[n] for n in names])[None]),
                        axis=1)
    frac = {n: float(np.mean(nearest == i)) for i, n in enumerate(names)}
    return {**out, "min": float(vols.min()), "max": float(vols.max()),
            "p05": float(np.percentile(vols, 5)), "p95": float(np.percentile(vols, 95)),
            "nearest_form_fraction": frac, "reached": {n: f > 0 for n, f in frac.items()}}


def volume_lines(methods: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Markdown table of the explored volumes of every method with ``explored_volume``."""
    rows = {m: r["explored_volume"] for m, r in methods.items() if "explored_volume" in r}
    if not rows:
        return []
    forms = next(iter(rows.values()))["form_volumes"]
    head = " | ".join(f"nearest {n} ({v:.0f} Å³)" for n, v in forms.items())
    lines = ["", f"| method | explored frames | volume range (Å³) | 5–95 % (Å³) | {head} |",
             "|---|---|---|---|" + "---|" * len(forms)]
    for method, v in rows.items():
        if v["min"] is None:
            lines.append(f"| {method} | 0 | – | – |" + " – |" * len(forms))
            continue
        fracs = " | ".join(f"{v['nearest_form_fraction'][n]:.2f}" for n in forms)
        lines.append(f"| {method} | {v['n_frames']} | {v['min']:.0f}–{v['max']:.0f} | "
                     f"{v['p05']:.0f}–{v['p95']:.0f} | {fracs} |")
    return lines
