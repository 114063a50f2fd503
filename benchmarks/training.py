"""Cost of committee training steps vs network size, next to the cost of one QM label.

Prints a table and writes benchmarks/results/training.json. Compare rows as ratios within one
run: timings on a shared machine are noisy.

    python benchmarks/training.py [--qm]   # --qm also times one B3LYP/6-31+G* SN2 label
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from _results import write_result
from ase.io import read

from reactive_al.models import CommitteeSpec, build_model, frames_to_tensors
from reactive_al.models.features import PrecomputedFeatures

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [
    # (label, hidden, ensemble_size, radial_shifts, angular_shifts)
    ("ANI-2x-like widths", [224, 192, 160], 8, 16, 8),
    ("ANI-2x-like widths", [224, 192, 160], 4, 16, 8),
    ("default [64, 48]", [64, 48], 4, 16, 8),
    ("small [32, 24]", [32, 24], 4, 16, 8),
    ("default, 8 members", [64, 48], 8, 16, 8),
]


def time_steps(spec: CommitteeSpec, batch: dict, n_steps: int) -> float:
    """Median wall time (s) of one training step as ``train_committee`` takes it.

    The AEVs and their Jacobians are computed once (:class:`PrecomputedFeatures`), as in
    training; each step evaluates the member networks, the loss and the optimiser step.
    """
    model = build_model(spec)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)  # as train_committee
    features = PrecomputedFeatures(model, batch["species"], batch["coordinates"])
    idx = torch.arange(len(batch["species"]))
    times = []
    for _ in range(n_steps + 1):
        t = time.perf_counter()
        e, f = features.energies_forces(idx, True)
        loss = (e.double() - batch["energies"]).pow(2).mean() + (f - batch["forces"]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return float(np.median(times[1:]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--qm", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    reactant = read(ROOT / "data/01_raw/sn2_cl_ch3cl/reactant.xyz")
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(args.batch):
        a = reactant.copy()
        a.positions += rng.normal(0, 0.05, a.positions.shape)
        from ase.calculators.singlepoint import SinglePointCalculator

        a.calc = SinglePointCalculator(a, energy=-26133.0, forces=np.zeros((len(a), 3)))
        frames.append(a)
    batch = frames_to_tensors(frames)
    rows = []
    for label, hidden, members, rs, as_ in CONFIGS:
        spec = CommitteeSpec(symbols=["H", "C", "Cl"], hidden=hidden, ensemble_size=members,
                             radial_shifts=rs, angular_shifts=as_)
        sec = time_steps(spec, batch, args.steps)
        n_par = sum(p.numel() for p in build_model(spec).parameters())
        rows.append({"config": label, "hidden": hidden, "ensemble_size": members,
                     "parameters": n_par, "batch": args.batch, "s_per_step": round(sec, 4)})
        print(f"{label:24s} members={members} params={n_par:8d}  {sec * 1000:7.1f} ms/step")
    result = {"system": "sn2_cl_ch3cl (6 atoms)", "torch_threads": torch.get_num_threads(),
              "rows": rows}
    if args.qm:
        from reactive_al.oracles.pyscf import PySCFLevel, pyscf_single_point

        t = time.perf_counter()
        level = PySCFLevel(method="b3lyp", basis="6-31+g*", grid_level=3)
        pyscf_single_point(reactant, -1, 1, level, omp_threads=1)
        key = "qm_label_s_b3lyp_631+gs_grid3_1thread"
        result[key] = round(time.perf_counter() - t, 2)
        print(f"one B3LYP/6-31+G* label (1 thread): {result[key]} s")
    write_result("training", result)


if __name__ == "__main__":
    main()
