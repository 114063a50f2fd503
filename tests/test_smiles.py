import json
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.io import read

from reactive_al.smiles import geometries_from_smiles
from reactive_al.systems import SystemDefinitionError, load_system

WHERE = "conf/base/parameters_systems.yml: systems.rxn"
VINYL = "[CH2:1]=[CH:2][O:3][H:4]"
ACETALDEHYDE = "[H:4][CH2:1][CH:2]=[O:3]"
FAST = {"n_conformers": 3, "optimize": None}


def _spec(reactant=VINYL, product=ACETALDEHYDE, charge=0, multiplicity=1, **smiles) -> dict:
    spec = {"reactant_smiles": reactant, "charge": charge, "multiplicity": multiplicity}
    if product is not None:
        spec["product_smiles"] = product
    if smiles:
        spec["smiles"] = smiles
    return spec


def _d(atoms, i: int, j: int) -> float:
    return float(atoms.get_distance(i, j))


@pytest.fixture(scope="module")
def tautomer(tmp_path_factory):
    """Vinyl alcohol → acetaldehyde at the default settings (GFN2-xTB end points)."""
    root = tmp_path_factory.mktemp("smiles")
    paths = geometries_from_smiles("rxn", _spec(), root, WHERE)
    return root, paths


def test_tautomer_geometries_share_the_atom_order(tautomer):
    root, (r_path, p_path) = tautomer
    assert (r_path, p_path) == ("data/01_raw/rxn/reactant.xyz", "data/01_raw/rxn/product.xyz")
    r, p = read(root / r_path), read(root / p_path)
    # map order C1 C2 O3 H4, then the unmapped H: two on C1, one on C2
    assert r.get_chemical_symbols() == p.get_chemical_symbols() == list("CCOHHHH")
    assert _d(r, 2, 3) < 1.05 and _d(r, 0, 3) > 1.8  # H4 on the oxygen in vinyl alcohol
    assert _d(p, 0, 3) < 1.3 and _d(p, 2, 3) > 1.8  # H4 moved to C1 in acetaldehyde
    for a in (r, p):
        assert _d(a, 0, 4) < 1.15 and _d(a, 0, 5) < 1.15 and _d(a, 1, 6) < 1.15
    assert _d(r, 1, 2) > _d(p, 1, 2) + 0.1  # C–O single bond becomes C=O
    assert _d(r, 0, 1) < _d(p, 0, 1) - 0.1  # C=C double bond becomes C–C


def test_end_points_are_minima_and_aligned(tautomer):
    from ase.build import minimize_rotation_and_translation

    from reactive_al.oracles import single_point

    root, (r_path, p_path) = tautomer
    r, p = read(root / r_path), read(root / p_path)
    for atoms in (r, p):
        forces = single_point(atoms, 0, 1, {"program": "xtb"})["forces"]
        assert np.abs(forces).max() < 0.05
    moved = p.copy()
    minimize_rotation_and_translation(r, moved)
    assert np.allclose(moved.positions, p.positions, atol=1e-4)
    stamp = json.loads((root / "data/01_raw/rxn/smiles.json").read_text())
    assert stamp["inputs"]["smiles"] == {"reactant": VINYL, "product": ACETALDEHYDE}
    assert stamp["versions"]["rdkit"].startswith("20")
    assert stamp["reactant"]["converged"] and stamp["product"]["converged"]
    # acetaldehyde is the more stable tautomer (about 0.4 eV)
    assert 0.2 < stamp["reactant"]["energy_eV"] - stamp["product"]["energy_eV"] < 0.8


def test_second_call_reuses_files(tautomer):
    root, paths = tautomer
    files = [root / p for p in paths] + [root / "data/01_raw/rxn/smiles.json"]
    before = [f.stat().st_mtime_ns for f in files]
    assert geometries_from_smiles("rxn", _spec(), root, WHERE) == paths
    assert [f.stat().st_mtime_ns for f in files] == before


def test_changed_smiles_regenerates(tmp_path):
    r_path, p_path = geometries_from_smiles("rxn", _spec(**FAST), tmp_path, WHERE)
    assert len(read(tmp_path / r_path)) == 7
    hcn, hnc = "[H:1][C:2]#[N:3]", "[C-:2]#[N+:3][H:1]"
    assert geometries_from_smiles("rxn", _spec(hcn, hnc, **FAST), tmp_path, WHERE) == (
        r_path, p_path)
    r, p = read(tmp_path / r_path), read(tmp_path / p_path)
    assert r.get_chemical_symbols() == p.get_chemical_symbols() == ["H", "C", "N"]
    assert _d(r, 0, 1) < 1.2 < _d(r, 0, 2)  # H–C≡N
    assert _d(p, 0, 2) < 1.2 < _d(p, 0, 1)  # C≡N–H
    stamp = json.loads((tmp_path / "data/01_raw/rxn/smiles.json").read_text())
    assert stamp["inputs"]["smiles"]["product"] == hnc
    before = (tmp_path / r_path).stat().st_mtime_ns
    geometries_from_smiles("rxn", _spec(hcn, hnc, n_conformers=3, seed=1, optimize=None),
                           tmp_path, WHERE)  # another option also regenerates
    assert (tmp_path / r_path).stat().st_mtime_ns != before


def test_double_bond_stereo_of_the_smiles_is_kept(tmp_path):
    # (Z)-malonaldehyde: the hydrogen-bonded enol on both sides (O...O 2.6-2.7 Å), for every
    # conformer seed; (E) would put the oxygens 4 Å apart
    for seed in (0, 1, 2):
        r_path, p_path = geometries_from_smiles(
            "mal", _spec(r"[O:1]=[CH:2]/[CH:3]=[CH:4]\[O:5][H:6]",
                         r"[H:6][O:1]/[CH:2]=[CH:3]\[CH:4]=[O:5]", **FAST, seed=seed),
            tmp_path, WHERE)
        for path in (r_path, p_path):
            assert _d(read(tmp_path / path), 0, 4) < 3.0


def test_reactant_only(tmp_path):
    r_path, p_path = geometries_from_smiles("rxn", _spec("CCO", None, **FAST), tmp_path, WHERE)
    assert p_path is None
    assert sorted(read(tmp_path / r_path).get_chemical_symbols()) == sorted("CCOHHHHHH")


def test_load_system_from_smiles(tmp_path):
    spec = {"reactant_smiles": "[H:1][C:2]#[N:3]", "product_smiles": "[C-:2]#[N+:3][H:1]",
            "charge": "0", "multiplicity": 1, "level_of_theory": {"program": "xtb"},
            "smiles": {"n_conformers": 2}}
    system = load_system("hcn", {"hcn": spec}, project_root=tmp_path)
    assert system.charge == 0 and system.multiplicity == 1 and system.product is not None
    assert system.product.get_chemical_symbols() == system.reactant.get_chemical_symbols()
    assert (tmp_path / "data/01_raw/hcn/reactant.xyz").is_file()
    assert (tmp_path / "data/01_raw/hcn/product.xyz").is_file()
    assert Path(system.reactant_file).is_relative_to(tmp_path)
    assert system.extra == {}


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"reactant": "[CH2:1]=[CH:2][O:3"}, "cannot parse SMILES"),
        ({"reactant": "[CH3:1]=[CH:2][O:3][H:4]"}, "invalid SMILES"),
        ({"product": "[H:4][CH2:1][CH:2]=[O:5]"}, "mismatched atom maps"),
        ({"product": "[H:4][CH2:1][CH:1]=[O:3]"}, "mismatched atom maps"),
        ({"product": "[H:4][CH2:1][CH:2]=[S:3]"}, "map number 3 is O"),
        ({"product": "[H:4][CH2:1][CH2:2][OH:3]"}, "C2H6O"),
        ({"product": "[H:4]C[CH:2]=[O:3]"}, "no atom-map number"),
        ({"reactant": "[CH2:1]=[CH:2][OH:3]", "product": "[CH3:1][CH:2]=[O:3]"},
         "map the migrating hydrogen"),
        ({"charge": -1}, "formal charges of the SMILES add up to 0 but charge is -1"),
        ({"charge": "minus one"}, "must be integers"),
        ({"reactant": "[CH3:1][CH2:2]", "product": "[CH3:1][CH2:2]"},
         "1 radical electron(s), i.e. multiplicity 2"),
        ({"multiplicity": 3}, "multiplicity is 3"),
        ({"n_conformers": 0}, "n_conformers must be an integer"),
        ({"optimize": {"program": "xtb", "method": "gfn9"}}, "unknown xTB method"),
        ({"colour": "red"}, "keys among"),
    ],
)
def test_bad_definitions_give_one_line(tmp_path, kwargs, expected):
    with pytest.raises(SystemDefinitionError) as err:
        geometries_from_smiles("rxn", _spec(**kwargs), tmp_path, WHERE)
    msg = str(err.value)
    assert msg.startswith(WHERE) and "\n" not in msg
    assert expected in msg
    assert not (tmp_path / "data").exists()


def test_without_rdkit(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "rdkit", None)
    with pytest.raises(SystemDefinitionError, match="pip install rdkit") as err:
        geometries_from_smiles("rxn", _spec(), tmp_path, WHERE)
    assert str(err.value).startswith(WHERE) and "'rxn'" in str(err.value)


def test_embedding_failure(tmp_path, monkeypatch):
    from rdkit.Chem import AllChem

    monkeypatch.setattr(AllChem, "EmbedMultipleConfs", lambda *a, **k: [])
    with pytest.raises(SystemDefinitionError, match="could not embed") as err:
        geometries_from_smiles("rxn", _spec(**FAST), tmp_path, WHERE)
    assert str(err.value).startswith(f"{WHERE}.reactant_smiles")
