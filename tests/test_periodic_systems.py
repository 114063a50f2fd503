"""Issue #17: periodic systems as configuration — cell and pbc from the geometry file, checked.

A crystal is a 3D-periodic extxyz (``Lattice=``/``pbc=``) or CIF file; the loader keeps its
cell, checks its volume, the nearest periodic images and the program, and the campaign's
parameter check compares its cell widths with the model's cutoff, each as one line.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.io import write

from reactive_al.systems import SystemDefinitionError, check_cell, load_system

GFN1 = {"program": "xtb", "method": "gfn1-xtb"}


def _system(tmp_path, atoms, level=GFN1, fmt="extxyz", name="crystal"):
    path = tmp_path / f"{name}.{'cif' if fmt == 'cif' else 'extxyz'}"
    write(path, atoms, format=fmt)
    return {"c": {"reactant": str(path), "charge": 0, "multiplicity": 1,
                  "level_of_theory": level}}


@pytest.mark.parametrize("fmt", ["extxyz", "cif"])
def test_a_crystal_keeps_its_cell_and_pbc(tmp_path, fmt):
    atoms = bulk("MgO", "rocksalt", a=4.25, cubic=True).repeat((2, 2, 2))
    rs = load_system("c", _system(tmp_path, atoms, fmt=fmt))
    assert rs.reactant.pbc.all()
    np.testing.assert_allclose(rs.reactant.cell.lengths(), [8.5] * 3, atol=1e-4)


def test_a_molecule_file_stays_a_molecule(tmp_path):
    from ase.build import molecule

    atoms = molecule("H2O")
    atoms.cell = [10, 10, 10]  # a cell without pbc is a box, not a crystal
    rs = load_system("c", _system(tmp_path, atoms, level={"program": "xtb"}))
    assert not rs.reactant.pbc.any()


@pytest.mark.parametrize(("change", "expected"), [
    ("slab", "periodic in 2 of 3 directions"),
    ("flat", "cell volume"),
    ("close_images", "Å apart (minimum 0.5 Å)"),
    ("pyscf", "labels molecules only"),
])
def test_a_broken_crystal_is_one_line(tmp_path, change, expected):
    atoms = bulk("MgO", "rocksalt", a=4.25, cubic=True)
    level = GFN1
    if change == "slab":
        atoms.pbc = [True, True, False]
    elif change == "flat":
        atoms.cell[2] = [0.0, 0.0, 1e-3]
    elif change == "close_images":
        atoms.positions[0] = [0.1, 0.0, 0.0]
        atoms.positions[1] = [4.25 - 0.1, 0.0, 0.0]  # 0.2 Å apart across the cell face
    elif change == "pyscf":
        level = {"method": "hf", "basis": "sto-3g"}
    with pytest.raises(SystemDefinitionError) as err:
        load_system("c", _system(tmp_path, atoms, level=level))
    msg = str(err.value)
    assert expected in msg and "\n" not in msg, msg


def test_cell_narrower_than_the_model_cutoff_names_the_supercell():
    atoms = bulk("MgO", "rocksalt", a=4.25, cubic=True)
    check_cell(atoms.repeat((2, 2, 2)), "big", cutoff=5.2)  # 8.5 Å wide: fine
    with pytest.raises(SystemDefinitionError, match=r"repeat\(\(2, 2, 2\)\)") as err:
        check_cell(atoms, "small.extxyz", cutoff=5.2)
    assert str(err.value).startswith("small.extxyz: cell width 4.25 Å")


def test_null_periodic_options_leave_the_campaign_identity_of_earlier_campaigns(tmp_path):
    from reactive_al.checks import campaign_identity

    atoms = bulk("MgO", "rocksalt", a=4.25, cubic=True).repeat((2, 2, 2))
    rs = load_system("c", _system(tmp_path, atoms))
    before = {"training": {"fit": {"max_epochs": 10}}, "selection": {"walkers": {"n_steps": 5}}}
    null = {"training": {"fit": {"max_epochs": 10, "stress_weight": None}},
            "selection": {"walkers": {"n_steps": 5, "pressures_bar": None}}}
    npt = {"training": {"fit": {"max_epochs": 10, "stress_weight": None}},
           "selection": {"walkers": {"n_steps": 5, "pressures_bar": [0, 2500]}}}
    ids = [campaign_identity(p, rs)["campaign"] for p in (before, null, npt)]
    assert ids[0] == ids[1] != ids[2]


def test_cell_path_interpolates_cell_and_fractional_coordinates():
    from reactive_al.exploration.structures import cell_path

    start = bulk("MgO", "rocksalt", a=4.25, cubic=True)
    end = start.copy()
    end.set_cell(start.cell.array @ np.diag([1.1, 0.9, 0.8]), scale_atoms=True)
    end.positions[0] += [0.05, 0.0, 0.0]
    end.positions[1] -= [0.0, 0.0, 0.3]  # crosses the cell face: the step is wrapped
    end.wrap()
    images = cell_path(start, end, 3)
    assert [a.info["origin"] for a in images] == ["cell_path"] * 3
    vols = [start.get_volume(), *(a.get_volume() for a in images), end.get_volume()]
    assert all(v1 > v2 for v1, v2 in zip(vols, vols[1:], strict=False))  # monotonic
    np.testing.assert_allclose(images[1].cell.array,
                               0.5 * (start.cell.array + end.cell.array), atol=1e-12)
    # the midpoint's atom 1 is half-way along the short (wrapped) step, not across the cell
    frac = images[1].get_scaled_positions(wrap=False)[1] - start.get_scaled_positions()[1]
    assert abs(frac[2]) < 0.1


def test_a_crystal_test_path_is_loaded_and_checked(tmp_path):
    atoms = bulk("Ar", "fcc", a=5.3, cubic=True)
    other = atoms.copy()
    other.set_cell(atoms.cell.array * 0.95, scale_atoms=True)
    write(tmp_path / "small.extxyz", other, format="extxyz")
    systems = _system(tmp_path, atoms)
    systems["c"]["test_path"] = {"to": str(tmp_path / "small.extxyz"), "n_images": 2}
    rs = load_system("c", systems)
    assert rs.test_path["name"] == "small" and rs.test_path["n_images"] == 2
    assert rs.test_path["n_per_image"] == 3  # the default
    assert rs.test_path["to"].get_volume() == pytest.approx(other.get_volume())
    systems["c"]["test_path"]["n_per_image"] = -1
    with pytest.raises(SystemDefinitionError, match="test_path.n_per_image: a non-negative"):
        load_system("c", systems)
    molecule = tmp_path / "mol.xyz"
    write(molecule, atoms[:1], format="xyz")
    systems["c"]["test_path"] = {"to": str(molecule)}
    with pytest.raises(SystemDefinitionError, match="atoms differ from the reactant"):
        load_system("c", systems)


def test_crystal_normal_mode_samples_are_capped():
    from ase.io import read

    from reactive_al.exploration.structures import (
        CRYSTAL_MODE_MAX_DISPLACEMENT,
        normal_mode_perturbations,
    )

    mof = read("data/01_raw/mil53_al/lp.extxyz")
    frames = normal_mode_perturbations(mof, 12, 600.0, np.random.default_rng(0), "reactant")
    moved = [np.linalg.norm(f.positions - mof.positions, axis=1).max() for f in frames]
    assert max(moved) <= CRYSTAL_MODE_MAX_DISPLACEMENT + 1e-9
    assert min(moved) > 0.05  # still thermal samples, not copies
    assert any(m == pytest.approx(CRYSTAL_MODE_MAX_DISPLACEMENT) for m in moved)  # cap acted


def test_a_cell_path_image_whose_relaxation_fails_is_kept_unrelaxed(tmp_path, monkeypatch,
                                                                      caplog):
    from ase.calculators.calculator import CalculationFailed, Calculator

    from reactive_al.pipelines.data_engineering import nodes

    class Failing(Calculator):  # what tblite's calculator raises when its SCF fails
        implemented_properties = ["energy", "forces"]

        def calculate(self, *args, **kwargs):  # noqa: ANN002, ANN003
            raise CalculationFailed("SCF did not converge")

    atoms = bulk("Ar", "fcc", a=5.3, cubic=True)
    other = atoms.copy()
    other.set_cell(atoms.cell.array * 0.95, scale_atoms=True)
    write(tmp_path / "small.extxyz", other, format="extxyz")
    systems = _system(tmp_path, atoms)
    systems["c"]["test_path"] = {"to": str(tmp_path / "small.extxyz"), "n_images": 2,
                                 "n_per_image": 1}
    rs = load_system("c", systems)
    monkeypatch.setattr(nodes, "driver_factory", lambda *a: Failing)
    frames = nodes._cell_path_test_frames(rs, 0.01, np.random.default_rng(0))
    origins = [a.info["origin"] for a in frames]
    assert origins[0] == "cell_path_1/interpolated" and "small/relaxed" in origins
    assert len(frames) == 6 and all(a.calc is None for a in frames)
    assert "relaxation failed (scf_not_converged: SCF did not converge)" in caplog.text
