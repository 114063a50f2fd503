"""Cost and accuracy of candidate levels of theory for alanine dipeptide (22 atoms).

One label is one energy + gradient through the project's oracle (SCF ladder included), on one
OpenMP thread, as a labeling worker runs it. Geometries: the stored reactant and two rigid
backbone rotamers of it (C5-like and αR-like φ/ψ), so relative energies probe the
conformational surface the potential has to learn. Accuracy is measured against the most
expensive level in the list (the reference): relative-energy error and force RMSE.

The campaign estimate assumes ``--labels`` labels shared by ``--workers`` single-thread
workers plus ``--overhead-min`` minutes of training and MD. CPU time per label is reported next
to wall time because the machine may be shared while this runs (load average recorded).
Writes benchmarks/results/alanine_level_of_theory.json.

    python benchmarks/alanine_level.py [--labels 105] [--workers 2] [--overhead-min 10]
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import numpy as np
from _results import write_result
from ase import Atoms
from ase.io import read
from ase.neighborlist import natural_cutoffs, neighbor_list

from reactive_al.evaluation.ramachandran import (
    alanine_dipeptide_phi_psi_indices,
    dihedral_phi_psi,
)
from reactive_al.oracles import parse_level, single_point

ROOT = Path(__file__).resolve().parents[1]
GEOMETRY = ROOT / "data/01_raw/alanine_dipeptide/reactant.xyz"

#: Candidates, cheapest first; the last one is the accuracy reference.
LEVELS = [
    {"program": "xtb", "method": "gfn2-xtb"},
    {"method": "hf", "basis": "3-21g", "density_fit": True},
    {"method": "hf", "basis": "6-31g*", "density_fit": True},
    {"method": "b3lyp", "basis": "3-21g", "grid_level": 3, "density_fit": True},
    {"method": "b3lyp", "basis": "6-31g*", "grid_level": 3, "density_fit": True},
]
#: (φ, ψ) of the extra geometries, degrees.
ROTAMERS = {"C5": (-155.0, 160.0), "alphaR": (-70.0, -40.0)}


def _side(atoms: Atoms, keep: int, cut: int) -> list[int]:
    """Atoms reachable from ``keep`` without crossing the bond ``keep``–``cut``."""
    i, j = neighbor_list("ij", atoms, natural_cutoffs(atoms, mult=1.2))
    nbrs: dict[int, set[int]] = {k: set() for k in range(len(atoms))}
    for a, b in zip(i, j, strict=True):
        nbrs[int(a)].add(int(b))
    seen, todo = {keep}, [keep]
    while todo:
        for n in nbrs[todo.pop()] - seen:
            if n != cut:
                seen.add(n)
                todo.append(n)
    return sorted(seen)


def rotamer(atoms: Atoms, phi: float, psi: float) -> Atoms:
    """A copy with φ and ψ set by rigid rotation of the C-terminal side of each bond."""
    a = atoms.copy()
    phi_idx, psi_idx = alanine_dipeptide_phi_psi_indices(a)
    for idx, angle in ((phi_idx, phi), (psi_idx, psi)):
        moving = _side(a, idx[2], idx[1])
        mask = [k in moving for k in range(len(a))]
        a.set_dihedral(*idx, angle, mask=mask)
    return a


def label_name(level: dict) -> str:
    if level.get("program") == "xtb":
        return level["method"]
    name = f"{level['method']}/{level['basis']}"
    return name + ("+df" if level.get("density_fit") else "")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--labels", type=int, default=105, help="labels per campaign")
    parser.add_argument("--workers", type=int, default=2, help="single-thread labeling workers")
    parser.add_argument("--overhead-min", type=float, default=10.0,
                        help="training + MD per campaign, minutes")
    args = parser.parse_args()
    reactant = read(GEOMETRY)
    phi_idx, psi_idx = alanine_dipeptide_phi_psi_indices(reactant)
    geoms = {"reactant": reactant} | {k: rotamer(reactant, *v) for k, v in ROTAMERS.items()}
    load_before = os.getloadavg()
    rows, energies, forces = [], {}, {}
    for level in LEVELS:
        name = label_name(level)
        lot = parse_level(level, f"alanine_level.py: LEVELS[{name}]",
                          reactant.get_chemical_symbols())
        walls, cpus, e, f = [], [], [], []
        for geom in geoms.values():
            t, c = time.perf_counter(), time.process_time()
            out = single_point(geom, 0, 1, lot, omp_threads=1)
            walls.append(time.perf_counter() - t)
            cpus.append(time.process_time() - c)
            e.append(out["energy"])
            f.append(out["forces"])
        energies[name], forces[name] = np.array(e), np.array(f)
        per_label = float(np.mean(cpus))
        rounds = math.ceil(args.labels / args.workers)
        rows.append({
            "level": name, "settings": level,
            "wall_s_per_label": [round(w, 2) for w in walls],
            "cpu_s_per_label": [round(c, 2) for c in cpus],
            "mean_cpu_s_per_label": round(per_label, 2),
            "campaign_estimate_min": round((rounds * per_label) / 60 + args.overhead_min, 1),
        })
        print(rows[-1], flush=True)
    ref = rows[-1]["level"]
    rel_ref = energies[ref] - energies[ref][0]
    for row in rows:
        rel = energies[row["level"]] - energies[row["level"]][0]
        row["relative_energy_kcal_mol"] = dict(zip(geoms, np.round(rel * 23.060548, 2).tolist(),
                                                   strict=True))
        row["relative_energy_max_error_kcal_mol"] = round(
            float(np.max(np.abs(rel - rel_ref))) * 23.060548, 2)
        row["force_rmse_vs_reference_ev_per_a"] = round(
            float(np.sqrt(np.mean((forces[row["level"]] - forces[ref]) ** 2))), 3)
    write_result("alanine_level_of_theory", {
        "system": "alanine_dipeptide", "n_atoms": len(reactant), "omp_threads": 1,
        "geometry": GEOMETRY.read_text().splitlines()[1].strip(),
        "geometries_phi_psi_deg": {k: [round(x, 1) for x in dihedral_phi_psi(g, phi_idx, psi_idx)]
                                   for k, g in geoms.items()},
        "reference_level": ref,
        "campaign_assumptions": {"labels": args.labels, "workers": args.workers,
                                 "overhead_min": args.overhead_min,
                                 "estimate": "ceil(labels/workers) * mean CPU s per label "
                                             "+ overhead"},
        "load_average_1min": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "n_cpus": os.cpu_count(),
        "levels": rows,
    })


if __name__ == "__main__":
    main()
