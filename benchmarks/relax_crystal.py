"""Relax a crystal (positions and cell) at a GFN-xTB level before it seeds a campaign.

The structures a campaign starts from should be minima of its own level of theory: e.g. the
deposited MIL-53(Al) large-pore cell has hydroxyl O–H bonds of 0.86 Å. ASE's
``FrechetCellFilter`` with ``BFGS`` moves atoms and cell together at zero external pressure,
on tblite through the project's xTB oracle. Writes the relaxed crystal (extxyz, with its
energy, forces and stress) and a JSON record of the run.

    python benchmarks/relax_crystal.py /work/shared/data/mil53_al_lp.extxyz \
        data/01_raw/mil53_al/lp.extxyz --method gfn1-xtb --fmax 0.05

Another form of the same framework: ``--cell a,b,c`` first strains the input cell affinely
(fractional coordinates kept) to those lengths (Å), ``--fixed-cell-steps`` relaxes the atoms
in that cell before the cell is released, and ``--pressure-gpa`` is the external pressure of
the cell relaxation. The MIL-53(Al) narrow-pore-like form of the 76-atom cell (the rhombic
channel flattened at constant linker length):

    python benchmarks/relax_crystal.py data/01_raw/mil53_al/lp.extxyz \
        data/01_raw/mil53_al/np.extxyz --cell 6.89,20.05,7.6 --fixed-cell-steps 80
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from ase.calculators.singlepoint import SinglePointCalculator
from ase.filters import FrechetCellFilter
from ase.io import read, write
from ase.optimize import BFGS
from ase.units import GPa

from reactive_al.oracles.xtb import XTBLevel, XTBOracle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--method", default="gfn1-xtb")
    parser.add_argument("--charge", type=int, default=0)
    parser.add_argument("--multiplicity", type=int, default=1)
    parser.add_argument("--fmax", type=float, default=0.05,
                        help="eV/Å (for the cell: the filter's virial per atom)")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--cell", default=None, help="a,b,c (Å): strain the input cell first")
    parser.add_argument("--fixed-cell-steps", type=int, default=0,
                        help="BFGS steps of the atoms alone before the cell is released")
    parser.add_argument("--pressure-gpa", type=float, default=0.0,
                        help="external pressure of the cell relaxation (GPa)")
    args = parser.parse_args()
    atoms = read(args.input)
    if not atoms.pbc.all():
        raise SystemExit(f"reactive_al: {args.input}: not a 3D-periodic crystal (pbc)")
    v0, lengths0 = atoms.get_volume(), atoms.cell.lengths().tolist()
    if args.cell:
        lengths = [float(x) for x in args.cell.split(",")]
        cell = atoms.cell.array * (np.array(lengths) / atoms.cell.lengths())[:, None]
        atoms.set_cell(cell, scale_atoms=True)
    atoms.calc = XTBOracle().calculator(args.charge, args.multiplicity, XTBLevel(args.method))
    start = time.perf_counter()
    fixed_steps = 0
    if args.fixed_cell_steps:
        pre = BFGS(atoms, logfile="-")
        pre.run(fmax=args.fmax, steps=args.fixed_cell_steps)
        fixed_steps = int(pre.nsteps)
    opt = BFGS(FrechetCellFilter(atoms, scalar_pressure=args.pressure_gpa * GPa), logfile="-")
    converged = bool(opt.run(fmax=args.fmax, steps=args.steps))
    wall = time.perf_counter() - start
    e, f, s = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    atoms.calc = SinglePointCalculator(atoms, energy=e, forces=f, stress=s)
    atoms.info.update({"relaxed_at": args.method, "source": str(args.input)})
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    write(args.output, atoms, format="extxyz")
    record = {"input": str(args.input), "output": str(args.output), "method": args.method,
              "cell_start_A": args.cell, "pressure_gpa": args.pressure_gpa,
              "fixed_cell_steps": fixed_steps,
              "converged": converged, "steps": int(opt.nsteps), "wall_time_s": round(wall, 1),
              "fmax_ev_per_a": float(np.linalg.norm(f, axis=1).max()),
              "max_stress_gpa": float(np.abs(s).max() / GPa),
              "volume_A3": [round(v0, 2), round(atoms.get_volume(), 2)],
              "cell_lengths_A": [lengths0, atoms.cell.lengths().round(4).tolist()],
              "energy_ev": float(e)}
    Path(args.output).with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record))


if __name__ == "__main__":
    main()
