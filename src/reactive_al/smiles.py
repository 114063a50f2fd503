"""End-point geometries from atom-mapped SMILES: RDKit conformers, then a QM optimisation.

Geometries go to ``data/01_raw/<name>/`` with a stamp (``smiles.json``) of every input: the same
inputs reuse the files, any change regenerates them. Mapping rules (with a product; a lone
reactant needs no map numbers and keeps RDKit's atom order):

* every heavy atom carries an atom-map number (``[CH3:1]``) in both SMILES, each number once
  per SMILES; both sides use the same numbers, and a number keeps its element;
* a hydrogen is explicit and mapped (``[H:5]``, required for one that changes its partner) or
  implicit/unmapped: then it belongs to its parent's map number, and each parent carries as many
  unmapped hydrogens in the reactant as in the product;
* both geometries list the mapped atoms by map number, then the unmapped hydrogens by parent map
  number; one parent's hydrogens are permuted to match the reactant best (for NEB).

Formal charges must add up to ``charge`` and ``n`` radical electrons give ``multiplicity = n+1``
(a SMILES cannot say how radicals couple; equality catches bracket atoms missing hydrogens).
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.build import minimize_rotation_and_translation
from ase.io import write
from ase.optimize import BFGS
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from reactive_al.oracles import get_oracle, parse_level
from reactive_al.systems import SystemDefinitionError

#: ``smiles:`` options; ``optimize`` is a level of theory (None keeps the force-field geometry),
#: ``fmax`` the BFGS force threshold in eV/Å.
DEFAULT_OPTIONS: dict[str, Any] = {"n_conformers": 10, "seed": 0, "fmax": 0.02,
                                   "optimize": {"program": "xtb", "method": "gfn2-xtb"}}
STAMP = "smiles.json"
SIDES = ("reactant", "product")
MAX_STEPS = 500  # BFGS steps per end point


def _options(spec: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The ``smiles:`` options merged over :data:`DEFAULT_OPTIONS` and type-checked."""
    given = spec.get("smiles") or {}
    if not isinstance(given, Mapping) or set(given) - set(DEFAULT_OPTIONS):
        raise SystemDefinitionError(f"{where}.smiles: a mapping with keys among "
                                    f"{', '.join(DEFAULT_OPTIONS)} (got {given!r})")
    opts = {**DEFAULT_OPTIONS, **given}
    try:
        opts.update(n_conformers=int(opts["n_conformers"]), seed=int(opts["seed"]),
                    fmax=float(opts["fmax"]))
    except (TypeError, ValueError):
        opts["n_conformers"] = 0  # reported below
    if opts["n_conformers"] < 1 or opts["fmax"] <= 0 or not isinstance(opts["optimize"],
                                                                      Mapping | None):
        raise SystemDefinitionError(f"{where}.smiles: n_conformers must be an integer >= 1, seed "
                                    "an integer, fmax a number > 0 (eV/Å) and optimize a level "
                                    "of theory ({program: xtb, ...}) or null")
    return opts


def _parse(smiles: str, where: str, charge: int, multiplicity: int) -> Any:
    """A sanitized RDKit molecule whose charge and radicals agree with the YAML values."""
    from rdkit import Chem

    params = Chem.SmilesParserParams()
    params.removeHs, params.sanitize = False, False  # keep mapped [H:n] as atoms
    mol = Chem.MolFromSmiles(smiles, params)
    if mol is None:
        raise SystemDefinitionError(f"{where}: cannot parse SMILES '{smiles}' "
                                    "(check brackets, bond symbols and ring closures)")
    try:
        Chem.SanitizeMol(mol)
    except Exception as exc:  # RDKit raises several sanitization exception types
        raise SystemDefinitionError(f"{where}: invalid SMILES '{smiles}' "
                                    f"({' '.join(str(exc).split())[:200]})") from exc
    # parsing unsanitized skips stereo perception: the bond directions and @ of the SMILES count
    Chem.AssignStereochemistry(mol, cleanIt=True, force=True)
    if (q := sum(a.GetFormalCharge() for a in mol.GetAtoms())) != charge:
        raise SystemDefinitionError(f"{where}: the formal charges of the SMILES add up to {q} but "
                                    f"charge is {charge}; fix the charge or the SMILES")
    if (n_rad := sum(a.GetNumRadicalElectrons() for a in mol.GetAtoms())) + 1 != multiplicity:
        raise SystemDefinitionError(
            f"{where}: the SMILES has {n_rad} radical electron(s), i.e. multiplicity {n_rad + 1}, "
            f"but multiplicity is {multiplicity}; write the hydrogens of every bracket atom "
            "(radical centres as e.g. [CH3:1]) or fix the multiplicity")
    return Chem.AddHs(mol)


def _labels(mol: Any, where: str) -> list[tuple[int, int, int]]:
    """Per atom its sort key: ``(0, map, 0)``, or ``(1, parent map, index)`` for unmapped H."""
    labels: list[tuple[int, int, int]] = []
    for atom in mol.GetAtoms():
        m, symbol, nbrs = atom.GetAtomMapNum(), atom.GetSymbol(), atom.GetNeighbors()
        if m and (0, m, 0) in labels:
            raise SystemDefinitionError(f"{where}: mismatched atom maps: map number {m} appears "
                                        "twice; give each atom its own number")
        if m == 0 and symbol != "H":
            raise SystemDefinitionError(f"{where}: atom {atom.GetIdx()} ({symbol}) has no atom-map "
                                        f"number; map every heavy atom, e.g. [{symbol}:7]")
        if m == 0 and (len(nbrs) != 1 or nbrs[0].GetAtomMapNum() == 0):
            raise SystemDefinitionError(f"{where}: hydrogen {atom.GetIdx()} is not bonded to one "
                                        "mapped atom; give it a map number ([H:9])")
        labels.append((0, m, 0) if m else (1, nbrs[0].GetAtomMapNum(), atom.GetIdx()))
    return labels


def _common_order(mols: list[Any], where: str) -> tuple[list[Any], list[list[int]]]:
    """Reactant and product renumbered into the common order; the interchangeable-H groups."""
    from rdkit import Chem
    from rdkit.Chem.rdMolDescriptors import CalcMolFormula

    labels = [_labels(m, f"{where}.{k}_smiles") for m, k in zip(mols, SIDES, strict=True)]
    r, p = ({k[1]: a.GetSymbol() for k, a in zip(lab, m.GetAtoms(), strict=True) if k[0] == 0}
            for lab, m in zip(labels, mols, strict=True))
    if set(r) != set(p):
        raise SystemDefinitionError(f"{where}: mismatched atom maps: only in reactant_smiles "
                                    f"{sorted(set(r) - set(p))}, only in product_smiles "
                                    f"{sorted(set(p) - set(r))}; use the same map numbers")
    for m in (m for m in sorted(r) if r[m] != p[m]):
        raise SystemDefinitionError(f"{where}: map number {m} is {r[m]} in reactant_smiles but "
                                    f"{p[m]} in product_smiles; an atom keeps its element")
    if (formulas := [CalcMolFormula(m) for m in mols])[0] != formulas[1]:
        raise SystemDefinitionError(f"{where}: reactant_smiles is {formulas[0]} but product_smiles "
                                    f"is {formulas[1]}; both sides need the same atoms")
    hs = [Counter(k[1] for k in lab if k[0] == 1) for lab in labels]
    for m in (m for m in sorted(set(hs[0]) | set(hs[1])) if hs[0][m] != hs[1][m]):
        raise SystemDefinitionError(
            f"{where}: map number {m} carries {hs[0][m]} unmapped hydrogen(s) in reactant_smiles "
            f"but {hs[1][m]} in product_smiles; map the migrating hydrogen in both SMILES ([H:9])")
    hydrogens = [(k[1], i) for i, k in enumerate(sorted(labels[0])) if k[0] == 1]
    groups = [[i for q, i in hydrogens if q == m] for m in sorted(hs[0]) if hs[0][m] > 1]
    return [Chem.RenumberAtoms(m, sorted(range(len(lab)), key=lab.__getitem__))
            for m, lab in zip(mols, labels, strict=True)], groups


def _conformers(mol: Any, opts: dict[str, Any], where: str):
    """ETKDGv3 conformers relaxed by MMFF94 (else UFF): ids, Atoms, energies (kcal/mol), ff."""
    from rdkit.Chem import AllChem

    params = AllChem.ETKDGv3()
    params.randomSeed = opts["seed"]
    cids = list(AllChem.EmbedMultipleConfs(mol, numConfs=opts["n_conformers"], params=params))
    if not cids:
        raise SystemDefinitionError(f"{where}: RDKit could not embed a 3D geometry; try another "
                                    "smiles.seed, more smiles.n_conformers or geometry files")
    relax = {"mmff94": AllChem.MMFFOptimizeMoleculeConfs, "uff": AllChem.UFFOptimizeMoleculeConfs}
    ff = ("mmff94" if AllChem.MMFFHasAllMoleculeParams(mol) else
          "uff" if AllChem.UFFHasAllMoleculeParams(mol) else "none")
    res = relax[ff](mol, maxIters=2000) if ff in relax else [(0, 0.0)] * len(cids)
    confs = [Atoms([a.GetSymbol() for a in mol.GetAtoms()], mol.GetConformer(c).GetPositions())
             for c in cids]
    return cids, confs, [float(e) for _, e in res], ff


def _align(target: Atoms, atoms: Atoms, groups: list[list[int]]) -> tuple[Atoms, float]:
    """``atoms`` rigidly aligned on ``target``, interchangeable H permuted; and the RMSD (Å)."""
    out = atoms.copy()
    minimize_rotation_and_translation(target, out)
    perm = np.arange(len(out))
    for g in groups:
        perm[g] = np.asarray(g)[linear_sum_assignment(cdist(target.positions[g],
                                                            out.positions[g]))[1]]
    out = out[perm]
    minimize_rotation_and_translation(target, out)
    return out, float(np.sqrt(((out.positions - target.positions) ** 2).sum(1).mean()))


def _optimise(atoms: Atoms, level: Any, charge: int, multiplicity: int, fmax: float,
              where: str) -> tuple[Atoms, float, bool]:
    """BFGS to ``fmax`` (eV/Å) at ``level``: geometry, energy (eV), converged."""
    atoms = atoms.copy()
    try:
        atoms.calc = get_oracle(level.program).calculator(charge, multiplicity, level)
        converged = bool(BFGS(atoms, logfile=None).run(fmax=fmax, steps=MAX_STEPS))
        energy = float(atoms.get_potential_energy())
    except Exception as exc:  # OracleError, or the program's own SCF exceptions
        msg = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise SystemDefinitionError(f"{where}: optimisation at {level.name} failed ({msg}); "
                                    "smiles.optimize: null keeps the force-field geometry") from exc
    return Atoms(atoms.symbols, atoms.positions), energy, converged  # without the calculator


def geometries_from_smiles(name: str, spec: Mapping[str, Any], root: Path,
                           where: str) -> tuple[str, str | None]:
    """Write (or reuse) the end points of system ``name`` given by SMILES under ``root``.

    Returns the reactant and product (None without ``product_smiles``) geometry paths relative
    to ``root``. Raises :class:`SystemDefinitionError` with one line starting with ``where``.
    """
    try:
        from rdkit import rdBase
    except ImportError as exc:
        raise SystemDefinitionError(
            f"{where}: system '{name}' is given by SMILES but RDKit is not installed "
            "(pip install rdkit, or the project extra .[smiles])") from exc
    try:
        charge, mult = int(spec["charge"]), int(spec["multiplicity"])
    except (KeyError, TypeError, ValueError) as exc:
        raise SystemDefinitionError(f"{where}: charge and multiplicity must be integers") from exc
    opts = _options(spec, where)
    sides = SIDES[: 2 if spec.get("product_smiles") else 1]
    smiles = {k: str(spec[f"{k}_smiles"]) for k in sides}
    with rdBase.BlockLogs():
        mols = [_parse(smiles[k], f"{where}.{k}_smiles", charge, mult) for k in sides]
    mols, groups = _common_order(mols, where) if len(mols) == 2 else (mols, [])
    level, version = None, None
    if opts["optimize"] is not None:
        level = parse_level(opts["optimize"], f"{where}.smiles.optimize",
                            [a.GetSymbol() for a in mols[0].GetAtoms()])
        with contextlib.suppress(Exception):  # not installed: the optimisation says so
            version = get_oracle(level.program).version()
    # what the geometries are made from; the versions are provenance, not a reason to move
    # geometries that were inspected (and shipped) already
    inputs = {"smiles": smiles, "charge": charge, "multiplicity": mult,
              "options": {**opts, "optimize": level.as_dict() if level else None}}
    versions = {"rdkit": rdBase.rdkitVersion, "program_version": version}
    rel = [Path("data/01_raw", name, f"{k}.xyz") for k in sides]
    paths = (rel[0].as_posix(), rel[1].as_posix() if len(rel) == 2 else None)
    stamp = root / rel[0].parent / STAMP
    if stamp.is_file() and all((root / p).is_file() for p in rel):
        with contextlib.suppress(OSError, ValueError):  # unreadable: regenerate
            if json.loads(stamp.read_text()).get("inputs") == inputs:
                return paths

    record: dict[str, Any] = {"inputs": inputs, "versions": versions}
    chosen: list[Atoms] = []
    for mol, k in zip(mols, sides, strict=True):
        cids, confs, ff_e, ff = _conformers(mol, opts, f"{where}.{k}_smiles")
        # the product conformer closest to the reactant gives the straightest NEB interpolation
        i = int(np.argmin([_align(chosen[0], c, groups)[1] for c in confs] if chosen else ff_e))
        atoms, energy, conv = confs[i], None, None
        if level is not None:
            atoms, energy, conv = _optimise(atoms, level, charge, mult, opts["fmax"],
                                            f"{where}.smiles.optimize ({k})")
        chosen.append(atoms)
        record[k] = {"conformer": int(cids[i]), "force_field": ff, "ff_energy_kcal_mol": ff_e[i],
                     "energy_eV": energy, "converged": conv}
    if len(chosen) == 2:
        chosen[1], record["rmsd_product_reactant_A"] = _align(chosen[0], chosen[1], groups)

    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)  # a crash while writing must not leave a valid-looking stamp
    for atoms, p in zip(chosen, rel, strict=True):
        write(root / p, atoms, format="extxyz")
    stamp.write_text(json.dumps(record, indent=1) + "\n")
    return paths
