"""Cost of one MD step: plain committee, committee + gradient-feature uncertainty, biased.

And the same committee on a GFN2-xTB baseline (Δ-learning, ``training.baseline: xtb``):
plain and biased, each step one tblite single point more.

For the SN2 complex (6 atoms) and alanine dipeptide (22 atoms), with the default committee
(4 members, [64, 48]) and p = 512 gradient features. Langevin steps at 300 K; the walkers'
physics checks are off so every run has the same number of steps. Target: biased ≤ 2.5× plain.
For the MIL-53(Al) crystal (76 atoms, periodic): NPT steps at 300 K and 0 bar
(:func:`~reactive_al.exploration.md.start_npt`), plain, with the uncertainty, and biased (bias
forces and bias stress). Prints a table and writes benchmarks/results/md_cost.json.

    python benchmarks/md_cost.py [--steps 200]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from _results import write_result
from ase.calculators.calculator import Calculator, all_changes
from ase.data import atomic_numbers
from ase.io import read
from ase.stress import full_3x3_to_voigt_6_stress

from reactive_al.exploration.bias import UncertaintyBiasedCalculator
from reactive_al.exploration.md import start_langevin, start_npt
from reactive_al.models import Committee, CommitteeSpec, build_model
from reactive_al.models.baseline import Baseline
from reactive_al.uncertainty.gradient_features import GradientFeatureUncertainty

ROOT = Path(__file__).resolve().parents[1]
#: name: (geometry, charge, multiplicity)
SYSTEMS = {"sn2_cl_ch3cl": ("data/01_raw/sn2_cl_ch3cl/reactant.xyz", -1, 1),
           "alanine_dipeptide": ("data/01_raw/alanine_dipeptide/reactant.xyz", 0, 1)}
#: crystals timed with NPT steps: name: geometry (relaxed at GFN1-xTB, benchmarks/relax_crystal.py)
CRYSTALS = {"mil53_al": "data/01_raw/mil53_al/lp.extxyz"}


class WithUncertainty(Calculator):
    """Committee mean plus the (unbiased) gradient-feature uncertainty at every step."""

    implemented_properties = ["energy", "forces", "stress"]

    def __init__(self, committee: Committee, gf: GradientFeatureUncertainty):
        super().__init__()
        self.committee, self.gf = committee, gf

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        p = self.committee.predict([self.atoms])
        self.results = {"energy": float(p["energy"][0]), "forces": p["forces"][0],
                        "energy_uncertainty": float(self.gf.energy_uncertainty([self.atoms])[0])}
        if "stress" in p:
            self.results["stress"] = full_3x3_to_voigt_6_stress(p["stress"][0])


def ms_per_step(atoms, calc, steps: int, npt: bool = False) -> float:
    a = atoms.copy()
    a.calc = calc
    dyn = (start_npt(a, 300.0, 0.0, 0.5, 0.02, np.random.default_rng(0)) if npt else
           start_langevin(a, 300.0, 0.5, 0.02, np.random.default_rng(0)))
    dyn.run(5)  # warm-up
    t = time.perf_counter()
    dyn.run(steps)
    return (time.perf_counter() - t) / steps * 1000


def untrained(atoms, n_train: int):  # noqa: ANN001, ANN201
    """(element symbols, the default committee untrained, p = 512 gradient features fitted on
    ``n_train`` copies of ``atoms`` displaced by 0.05 Å): timing needs no trained weights."""
    symbols = sorted(set(atoms.get_chemical_symbols()), key=atomic_numbers.get)
    spec = CommitteeSpec(symbols=symbols)
    committee = Committee(build_model(spec), spec)
    rng = np.random.default_rng(1)
    train = []
    for _ in range(n_train):
        a = atoms.copy()
        a.positions += rng.normal(0, 0.05, a.positions.shape)
        train.append(a)
    return symbols, committee, GradientFeatureUncertainty(num_features=512).fit(committee, train)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = []
    for name, (path, charge, multiplicity) in SYSTEMS.items():
        atoms = read(ROOT / path)
        symbols, committee, gf = untrained(atoms, 32)
        plain = ms_per_step(atoms, committee.calculator(), args.steps)
        with_u = ms_per_step(atoms, WithUncertainty(committee, gf), args.steps)
        biased = ms_per_step(atoms, UncertaintyBiasedCalculator(committee, gf, tau=0.1),
                             args.steps)
        dspec = CommitteeSpec(symbols=symbols, baseline=Baseline.for_system(
            "xtb", charge, multiplicity).to_dict())
        delta = Committee(committee.model, dspec)
        delta_plain = ms_per_step(atoms, delta.calculator(), args.steps)
        delta_biased = ms_per_step(atoms, UncertaintyBiasedCalculator(delta, gf, tau=0.1),
                                   args.steps)
        row = {"system": name, "n_atoms": len(atoms), "plain_ms": round(plain, 2),
               "with_uncertainty_ms": round(with_u, 2), "biased_ms": round(biased, 2),
               "biased_over_plain": round(biased / plain, 2),
               "delta_plain_ms": round(delta_plain, 2), "delta_biased_ms": round(delta_biased, 2),
               "delta_plain_over_plain": round(delta_plain / plain, 2)}
        rows.append(row)
        print(f"{name:18s} N={len(atoms):2d}  plain {plain:6.1f} ms  +uncertainty "
              f"{with_u:6.1f} ms  biased {biased:6.1f} ms  ({biased / plain:.2f}x)  "
              f"Δ plain {delta_plain:6.1f} ms  Δ biased {delta_biased:6.1f} ms")
    npt_rows = []
    for name, path in CRYSTALS.items():
        atoms = read(ROOT / path)
        _, committee, gf = untrained(atoms, 16)
        steps = max(10, args.steps // 10)  # a 76-atom crystal step costs ~10× a molecule's
        plain = ms_per_step(atoms, committee.calculator(), steps, npt=True)
        with_u = ms_per_step(atoms, WithUncertainty(committee, gf), steps, npt=True)
        biased = ms_per_step(atoms, UncertaintyBiasedCalculator(committee, gf, tau=0.1),
                             steps, npt=True)
        npt_rows.append({"system": name, "n_atoms": len(atoms), "steps": steps,
                         "plain_ms": round(plain, 1), "with_uncertainty_ms": round(with_u, 1),
                         "biased_ms": round(biased, 1),
                         "biased_over_plain": round(biased / plain, 2)})
        print(f"{name:18s} N={len(atoms):2d}  NPT plain {plain:6.1f} ms  +uncertainty "
              f"{with_u:6.1f} ms  biased (bias stress) {biased:6.1f} ms  "
              f"({biased / plain:.2f}x)")
    write_result("md_cost", {"steps": args.steps, "committee": "4 x [64, 48]",
                               "num_features": 512, "rows": rows, "npt_rows": npt_rows})


if __name__ == "__main__":
    main()
