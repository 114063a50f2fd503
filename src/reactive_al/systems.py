"""Reaction definitions: reading, validating and describing a reactive system.

A system is configuration, not code: a name, a reactant geometry file (and optionally a product
geometry file with the same atoms in the same order), the total charge, the spin multiplicity
and a level of theory. Every problem found here is reported as one line naming the file (or the
configuration key) and the problem, before any quantum chemistry runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols

if TYPE_CHECKING:
    from reactive_al.oracles.base import Level

#: Atoms closer than this (Å) make a geometry physically invalid.
DEFAULT_MIN_DISTANCE = 0.5


#: ``atoms.info`` keys that identify a structure's system; every derived structure keeps them.
IDENTITY_KEYS = ("charge", "multiplicity", "system")


def identity(atoms: Atoms) -> dict[str, Any]:
    """The charge, multiplicity and system name of ``atoms.info`` (a new dict)."""
    return {k: v for k, v in atoms.info.items() if k in IDENTITY_KEYS}


class SystemDefinitionError(ValueError):
    """A reaction definition or geometry that cannot be used; the message is one line."""


@dataclass(frozen=True)
class ReactionSystem:
    """A validated reaction: end-point geometries, charge, multiplicity, level of theory."""

    name: str
    reactant: Atoms
    charge: int
    multiplicity: int
    level: Level  # the oracle's level object (``.program``, ``.name``, ``.as_dict()``)
    product: Atoms | None = None
    description: str = ""
    reactant_file: str = ""
    product_file: str = ""
    #: optional band seeds: a transition-state guess and ordered intermediates (same atoms)
    ts_guess: Atoms | None = None
    intermediates: tuple[Atoms, ...] = ()
    #: crystals: another form of the same atoms (e.g. a narrow-pore framework) that only the
    #: held-out test set visits, along the cell path to it, and that path's settings
    test_path: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def symbols(self) -> list[str]:
        """Sorted unique element symbols of the system (the model's element set)."""
        return sorted(set(self.reactant.get_chemical_symbols()), key=atomic_numbers.get)

    def tag(self, atoms: Atoms) -> Atoms:
        """Attach charge and multiplicity to a structure's ``info`` and return it."""
        atoms.info["charge"] = self.charge
        atoms.info["multiplicity"] = self.multiplicity
        atoms.info["system"] = self.name
        return atoms


def _read_geometry(path: Path) -> Atoms:
    from ase.io import read

    if path.is_dir():
        raise SystemDefinitionError(f"{path}: a directory, not a geometry file")
    if not path.is_file():
        raise SystemDefinitionError(f"{path}: geometry file not found")
    try:
        atoms = read(path, index=0)
    except Exception as exc:  # ASE raises many kinds for unparsable files
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SystemDefinitionError(f"{path}: cannot read geometry ({first})") from exc
    if not isinstance(atoms, Atoms):
        raise SystemDefinitionError(f"{path}: no structure found")
    if not atoms.pbc.any():
        atoms.pbc = False  # a molecule (a cell in an .xyz comment line is ignored)
    elif not atoms.pbc.all():
        raise SystemDefinitionError(f"{path}: periodic in {int(atoms.pbc.sum())} of 3 "
                                    "directions (pbc); slabs and wires are not supported: "
                                    "give a molecule or a 3D-periodic crystal")
    return atoms


def is_crystal(atoms: Atoms) -> bool:
    """True for a structure periodic in all three directions (a crystal with a cell)."""
    return bool(np.all(atoms.pbc))


def working_copy(atoms: Atoms) -> Atoms:
    """A copy for an oracle, a calculator or MD.

    A crystal keeps its cell and pbc; a molecule goes non-periodic (a periodic copy of a
    molecule gives wrong xTB/PySCF energies).
    """
    out = atoms.copy()
    if not is_crystal(out):
        out.pbc = False
    return out


def bare(atoms: Atoms) -> Atoms:
    """A new structure with ``atoms``' numbers and positions only (a crystal: and its cell)."""
    if is_crystal(atoms):
        return Atoms(atoms.numbers, atoms.positions, cell=atoms.get_cell(), pbc=True)
    return Atoms(atoms.numbers, atoms.positions, pbc=False)


def cell_widths(atoms: Atoms) -> np.ndarray:
    """Perpendicular widths of the cell (Å): the distance between opposite faces."""
    cell = np.asarray(atoms.cell)
    volume = abs(float(np.linalg.det(cell)))
    return np.array([volume / np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3]))
                     for i in range(3)])


def check_cell(atoms: Atoms, where: str, cutoff: float | None = None) -> None:
    """Raise :class:`SystemDefinitionError` if a crystal's cell cannot be used.

    Checks: a cell with volume (at least 1 Å³ per atom) and, with ``cutoff`` (the model's
    radial cutoff, Å), every perpendicular cell width at least that cutoff, so that no atom
    meets its own periodic image inside the model's environment (a supercell fixes that).
    """
    volume = abs(float(atoms.cell.volume)) if atoms.cell.rank == 3 else 0.0
    if volume < len(atoms):
        raise SystemDefinitionError(f"{where}: cell volume {volume:.3g} Å³ for {len(atoms)} "
                                    "atoms (a crystal needs a cell of at least 1 Å³ per atom)")
    if cutoff is not None:
        widths = cell_widths(atoms)
        k = int(np.argmin(widths))
        if widths[k] < cutoff:
            reps = [int(np.ceil(cutoff / w)) for w in widths]
            raise SystemDefinitionError(
                f"{where}: cell width {widths[k]:.2f} Å along lattice vector {'abc'[k]} is below "
                f"the model's radial cutoff {cutoff} Å (training.model.radial_cutoff): an atom "
                f"would see its own image; use a supercell (ase: atoms.repeat({tuple(reps)}))")


def check_structure(
    atoms: Atoms,
    where: str,
    charge: int,
    multiplicity: int,
    min_distance: float = DEFAULT_MIN_DISTANCE,
) -> None:
    """Raise :class:`SystemDefinitionError` if a structure cannot be given to an oracle.

    Checks: non-empty, known elements, finite coordinates, charge/multiplicity parity,
    and no pair of atoms closer than ``min_distance`` Å. ``where`` names the structure in the
    message (a file path or a frame identifier).
    """
    if len(atoms) == 0:
        raise SystemDefinitionError(f"{where}: empty structure")
    numbers = atoms.get_atomic_numbers()
    bad = [int(z) for z in numbers if z <= 0 or z >= len(chemical_symbols)]
    if bad:
        raise SystemDefinitionError(f"{where}: unknown element (atomic number {bad[0]})")
    pos = atoms.get_positions()
    if not np.all(np.isfinite(pos)):
        raise SystemDefinitionError(f"{where}: non-finite (NaN/inf) coordinates")
    if is_crystal(atoms):
        check_cell(atoms, where)
    if multiplicity < 1:
        raise SystemDefinitionError(f"{where}: spin multiplicity must be >= 1, got {multiplicity}")
    n_electrons = int(numbers.sum()) - int(charge)
    if n_electrons < 0:
        raise SystemDefinitionError(f"{where}: charge {charge} leaves {n_electrons} electrons")
    if (n_electrons - (multiplicity - 1)) % 2 != 0 or multiplicity - 1 > n_electrons:
        raise SystemDefinitionError(
            f"{where}: charge {charge} and multiplicity {multiplicity} are impossible "
            f"with {n_electrons} electrons (parity)"
        )
    if is_crystal(atoms):
        # nearest periodic images: a pair across the cell boundary, or an atom and its own
        # image (the shortest lattice vector)
        reduced, _ = atoms.cell.minkowski_reduce()
        lattice = float(np.linalg.norm(np.asarray(reduced), axis=1).min())
        if lattice < min_distance:
            raise SystemDefinitionError(f"{where}: a lattice vector of {lattice:.3f} Å puts "
                                        f"atoms next to their own image (minimum "
                                        f"{min_distance} Å)")
    if len(atoms) > 1:
        d = (atoms.get_all_distances(mic=True) if is_crystal(atoms) else
             np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=-1))
        iu = np.triu_indices(len(atoms), k=1)
        k = int(np.argmin(d[iu]))
        if d[iu][k] < min_distance:
            i, j = int(iu[0][k]), int(iu[1][k])
            raise SystemDefinitionError(
                f"{where}: atoms {i} ({atoms[i].symbol}) and {j} ({atoms[j].symbol}) are "
                f"{d[iu][k]:.3f} Å apart (minimum {min_distance} Å)"
            )


def _unknown_symbols(path: Path) -> str | None:
    """Return the first element symbol in an xyz file that is not a chemical element."""
    if path.suffix.lower() != ".xyz":
        return None
    lines = path.read_text().splitlines()
    for line in lines[2:]:
        parts = line.split()
        if parts and parts[0] not in atomic_numbers and not parts[0].isdigit():
            return parts[0]
    return None


def _checked_geometry(path: Path, charge: int, multiplicity: int, min_distance: float) -> Atoms:
    """Read a geometry file and check it (one-line :class:`SystemDefinitionError`)."""
    bad_symbol = _unknown_symbols(path) if path.is_file() else None
    if bad_symbol:
        raise SystemDefinitionError(f"{path}: unknown element '{bad_symbol}'")
    atoms = _read_geometry(path)
    check_structure(atoms, str(path), charge, multiplicity, min_distance)
    return atoms


#: ``test_path`` settings: interior images, test frames per image, fixed-cell relaxation
TEST_PATH_DEFAULTS = {"n_images": 4, "n_per_image": 3, "relax_steps": 15, "relax_fmax": 0.2}


def _test_path(spec: Any, reactant: Atoms, same_atoms: Any, where: str) -> dict[str, Any] | None:
    """The checked ``test_path`` of a crystal, or None.

    ``{"to": Atoms, "name": the file's stem, **TEST_PATH_DEFAULTS}`` (counts; fmax in eV/Å).
    """
    if spec is None:
        return None
    if not isinstance(spec, Mapping) or "to" not in spec:
        raise SystemDefinitionError(f"{where}: a mapping with 'to' (a geometry file) and "
                                    f"optionally {', '.join(TEST_PATH_DEFAULTS)}")
    unknown = sorted(set(spec) - {"to", *TEST_PATH_DEFAULTS})
    if unknown:
        raise SystemDefinitionError(f"{where}: unknown keys {unknown} (known: to, "
                                    f"{', '.join(TEST_PATH_DEFAULTS)})")
    if not is_crystal(reactant):
        raise SystemDefinitionError(f"{where}: a cell path needs a crystal reactant")
    out: dict[str, Any] = {**TEST_PATH_DEFAULTS, "to": same_atoms(str(spec["to"])),
                           "name": Path(str(spec["to"])).stem}
    if not is_crystal(out["to"]):
        raise SystemDefinitionError(f"{where}: {spec['to']} is not a crystal (cell and pbc)")
    for key, default in TEST_PATH_DEFAULTS.items():
        value = spec.get(key, default)
        kind = float if isinstance(default, float) else int
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise SystemDefinitionError(f"{where}.{key}: a non-negative number, got {value!r}")
        out[key] = kind(value)
    return out


def load_system(
    name: str,
    systems: dict[str, dict[str, Any]],
    project_root: str | Path = ".",
    min_distance: float = DEFAULT_MIN_DISTANCE,
) -> ReactionSystem:
    """Build and validate the system ``name`` from the ``systems`` configuration mapping.

    Geometry paths are relative to ``project_root``. Raises :class:`SystemDefinitionError` with a
    one-line message naming the file or configuration entry and the problem.
    """
    if name not in systems:
        known = ", ".join(sorted(systems)) or "none"
        raise SystemDefinitionError(
            f"conf/base/parameters_systems.yml: unknown system '{name}' (defined: {known})"
        )
    where_conf = f"conf/base/parameters_systems.yml: systems.{name}"
    if not isinstance(systems[name], Mapping):
        raise SystemDefinitionError(f"{where_conf}: must be a mapping (reactant, charge, "
                                    f"multiplicity, ...), got {systems[name]!r}")
    spec = dict(systems[name])
    for key in ("charge", "multiplicity"):
        if key not in spec:
            raise SystemDefinitionError(f"{where_conf}: missing required key '{key}'")
    root = Path(project_root)
    if spec.get("reactant_smiles") and not spec.get("reactant"):
        from reactive_al.smiles import geometries_from_smiles  # RDKit: optional dependency

        spec["reactant"], spec["product"] = geometries_from_smiles(name, spec, root, where_conf)
    elif "reactant" not in spec:
        raise SystemDefinitionError(f"{where_conf}: missing required key 'reactant' "
                                    "(or 'reactant_smiles')")
    reactant_path = root / spec["reactant"]
    try:
        charge, mult = int(spec["charge"]), int(spec["multiplicity"])
    except (TypeError, ValueError) as exc:
        raise SystemDefinitionError(
            f"{where_conf}: charge and multiplicity must be integers"
        ) from exc
    reactant = _checked_geometry(reactant_path, charge, mult, min_distance)

    def same_atoms(path: str) -> Atoms:
        p = root / path
        atoms = _checked_geometry(p, charge, mult, min_distance)
        if atoms.get_chemical_symbols() != reactant.get_chemical_symbols():
            raise SystemDefinitionError(
                f"{p}: atoms differ from the reactant {reactant_path} "
                "(same elements in the same order are required)"
            )
        return atoms

    product = same_atoms(spec["product"]) if spec.get("product") else None
    product_path = str(root / spec["product"]) if product is not None else ""
    ts_guess = same_atoms(spec["ts_guess"]) if spec.get("ts_guess") else None
    inter = spec.get("intermediates") or []
    if isinstance(inter, str) or not isinstance(inter, list | tuple):
        raise SystemDefinitionError(f"{where_conf}.intermediates: a list of geometry files")
    intermediates = tuple(same_atoms(str(f)) for f in inter)
    if (ts_guess is not None or intermediates) and product is None:
        raise SystemDefinitionError(
            f"{where_conf}: ts_guess/intermediates seed the reaction path and need a product")

    from reactive_al.oracles import parse_level  # the registry (no QM import until a call)

    level = parse_level(dict(spec.get("level_of_theory") or {}), f"{where_conf}.level_of_theory",
                        reactant.get_chemical_symbols())
    if is_crystal(reactant):
        from reactive_al.oracles import get_oracle

        if not get_oracle(level.program).periodic:
            raise SystemDefinitionError(
                f"{where_conf}.level_of_theory: program '{level.program}' labels molecules "
                f"only, and {reactant_path} is a crystal (cell and pbc); use program: xtb "
                "(method: gfn1-xtb) for periodic systems")
    test_path = _test_path(spec.get("test_path"), reactant, same_atoms, f"{where_conf}.test_path")
    known_keys = {"reactant", "product", "charge", "multiplicity", "level_of_theory", "description",
                  "ts_guess", "intermediates", "reactant_smiles", "product_smiles", "smiles",
                  "test_path"}
    return ReactionSystem(
        name=name,
        reactant=reactant,
        product=product,
        charge=charge,
        multiplicity=mult,
        level=level,
        description=str(spec.get("description", "")),
        reactant_file=str(reactant_path),
        product_file=product_path,
        ts_guess=ts_guess,
        intermediates=intermediates,
        test_path=test_path,
        extra={k: v for k, v in spec.items() if k not in known_keys},
    )
