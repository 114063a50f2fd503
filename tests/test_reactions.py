"""Reaction paths that survive new chemistry: band checks and repair, guesses, failed images."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.io import write

from reactive_al.exploration.band import (
    PathConstructionError,
    build_band,
    closest_contact,
    max_turn_deg,
)
from reactive_al.oracles.labeling import LabelingConfig
from reactive_al.oracles.reference import ReferencePathError, qm_neb_path
from reactive_al.systems import SystemDefinitionError, load_system

from .conftest import HF_STO3G, water

#: HCN and HNC, collinear: the hydrogen moves from the carbon end to the nitrogen end.
HCN = Atoms("HCN", positions=[[-1.07, 0, 0], [0, 0, 0], [1.16, 0, 0]])
HNC = Atoms("HCN", positions=[[2.16, 0, 0], [-0.01, 0, 0], [1.17, 0, 0]])


def test_linear_molecule_shift_band_keeps_atoms_apart():
    from ase.mep import NEB

    plain = [HCN.copy() for _ in range(6)] + [HNC.copy()]
    NEB(plain).interpolate(method="idpp")
    assert closest_contact(plain)[0] < 0.3  # IDPP drives H straight through the heavy atoms

    band, report = build_band(HCN, HNC, 5, min_distance=0.8, seed=1)
    assert len(band) == 7 and report["repaired"] and report["sane"]
    d, _, _, _ = closest_contact(band, substeps=8)
    assert d >= 0.8
    for img in band:  # also on each image, every pair
        pos = img.positions
        dist = np.linalg.norm(pos[:, None] - pos[None], axis=-1)[np.triu_indices(3, 1)]
        assert dist.min() >= 0.8
    np.testing.assert_allclose(band[0].positions, HCN.positions)
    np.testing.assert_allclose(band[-1].positions, HNC.positions)
    assert max_turn_deg(band) > 5.0  # the hydrogen circling the C-N bond turns the molecule
    again, _ = build_band(HCN, HNC, 5, min_distance=0.8, seed=1)
    np.testing.assert_array_equal(np.array([a.positions for a in band]),
                                  np.array([a.positions for a in again]))


def test_sane_band_is_plain_idpp():
    from ase.mep import NEB

    r = Atoms("H3", positions=[[0, 0, 0], [0.75, 0, 0], [2.6, 0, 0]])
    p = Atoms("H3", positions=[[0, 0, 0], [1.85, 0, 0], [2.6, 0, 0]])
    plain = [r.copy() for _ in range(4)] + [p.copy()]
    NEB(plain, method="improvedtangent").interpolate(method="idpp")
    band, report = build_band(r, p, 3)
    assert not report["repaired"] and report["max_turn_deg"] == 0.0
    np.testing.assert_array_equal(np.array([a.positions for a in band]),
                                  np.array([a.positions for a in plain]))


def test_unrepairable_band_stops_with_one_line_naming_what_to_give():
    with pytest.raises(PathConstructionError) as err:
        build_band(HCN, HNC, 5, min_distance=3.0, where="systems.hcn")
    msg = str(err.value)
    assert msg.startswith("systems.hcn: ") and "\n" not in msg
    assert "ts_guess" in msg and "intermediates" in msg


def test_guesses_are_knots_of_the_band():
    ts = Atoms("HCN", positions=[[0.55, 1.1, 0], [0, 0, 0], [1.17, 0, 0]])
    band, report = build_band(HCN, HNC, 5, ts_guess=ts)
    assert report["n_guesses"] == 1
    assert any(np.allclose(img.positions, ts.positions) for img in band[1:-1])
    assert closest_contact(band)[0] > 0.7
    with pytest.raises(PathConstructionError, match="raise reference_path.n_images"):
        build_band(HCN, HNC, 1, ts_guess=ts, intermediates=[ts])


def _hcn_system(tmp_path, **extra) -> dict:
    write(tmp_path / "r.xyz", HCN)
    write(tmp_path / "p.xyz", HNC)
    spec = {"reactant": str(tmp_path / "r.xyz"), "product": str(tmp_path / "p.xyz"),
            "charge": 0, "multiplicity": 1, **extra}
    return {"hcn": spec}


def test_guess_files_are_validated_like_the_reactant(tmp_path):
    write(tmp_path / "ts.xyz", Atoms("HCN", positions=[[0.5, 1.0, 0], [0, 0, 0], [1.17, 0, 0]]))
    rs = load_system("hcn", _hcn_system(tmp_path, ts_guess=str(tmp_path / "ts.xyz"),
                                        intermediates=[str(tmp_path / "ts.xyz")]))
    assert rs.ts_guess is not None and len(rs.intermediates) == 1
    write(tmp_path / "bad.xyz", Atoms("HNC", positions=[[0.5, 1.0, 0], [0, 0, 0], [1.17, 0, 0]]))
    write(tmp_path / "overlap.xyz", Atoms("HCN", positions=[[0.1, 0, 0], [0, 0, 0], [1.2, 0, 0]]))
    cases = [({"ts_guess": str(tmp_path / "bad.xyz")}, "bad.xyz: atoms differ from the reactant"),
             ({"intermediates": [str(tmp_path / "overlap.xyz")]}, "overlap.xyz: atoms 0 (H)"),
             ({"intermediates": str(tmp_path / "overlap.xyz")}, "a list of geometry files"),
             ({"ts_guess": str(tmp_path / "none.xyz")}, "none.xyz: geometry file not found")]
    for extra, expected in cases:
        with pytest.raises(SystemDefinitionError) as err:
            load_system("hcn", _hcn_system(tmp_path, **extra))
        assert expected in str(err.value) and "\n" not in str(err.value)


def test_previous_orbitals_start_the_scf(tmp_path):
    from reactive_al.oracles.pyscf import pyscf_single_point

    chk = str(tmp_path / "w.chk")
    level = {**HF_STO3G, "basis": "6-31g"}
    first = pyscf_single_point(water(), 0, 1, level, chkfile=chk)
    assert first["provenance"]["qm_scf_step"] == "default"
    plain = pyscf_single_point(water(0.03), 0, 1, level)
    guessed = pyscf_single_point(water(0.03), 0, 1, level, guess_chkfile=chk)
    assert guessed["provenance"]["qm_scf_step"] == "previous_orbitals"
    assert guessed["provenance"]["qm_scf_cycles"] < plain["provenance"]["qm_scf_cycles"]
    assert abs(guessed["energy"] - plain["energy"]) < 1e-6


@pytest.fixture
def flaky(tmp_path, fake_oracle):
    """Labeling by the fake program, failing where ``fake_oracle.fails`` says."""
    return LabelingConfig(charge=0, multiplicity=2, level={"program": "fake"},
                          cache_path=str(tmp_path / "cache.db"), scheduler="synchronous",
                          progress=False)


H3_R = Atoms("H3", positions=[[0, 0, 0], [0.8, 0, 0], [2.6, 0, 0]])
H3_P = Atoms("H3", positions=[[0, 0, 0], [1.8, 0, 0], [2.6, 0, 0]])


def test_failed_middle_image_is_recorded_and_the_band_repaired(flaky, fake_oracle):
    band, _ = build_band(H3_R, H3_P, 3)
    poisoned = band[2].positions.copy()
    fake_oracle.fails = staticmethod(lambda atoms: np.allclose(atoms.positions, poisoned))
    path, stats = qm_neb_path(H3_R, H3_P, flaky, fmax=0.3, steps=40, band=band)
    assert len(path) == 5 and all("label_key" in a.info for a in path)
    assert stats["band_repairs"] == 1
    (event,) = stats["image_failures"]
    assert event["image"] == 2 and event["category"] == "scf_not_converged"
    assert event["repair"] == "midpoint of neighbours" and event["rescued_by"] is None
    assert not np.allclose(path[2].positions, poisoned)


def test_failed_image_rescued_at_the_oracles_rescue_level_keeps_the_band(flaky, fake_oracle):
    band, _ = build_band(H3_R, H3_P, 3)
    poisoned = band[2].positions.copy()
    fake_oracle.fails = staticmethod(lambda atoms: np.allclose(atoms.positions, poisoned))
    fake_oracle.rescue = True
    path, stats = qm_neb_path(H3_R, H3_P, flaky, fmax=0.3, steps=40, band=band)
    (event,) = stats["image_failures"]
    assert event["rescued_by"] == "level {'program': 'fake', 'scale': 1.0, 'robust': True}"
    assert stats["band_repairs"] == 0 and "repair" not in event
    assert all("label_key" in a.info for a in path)


def test_image_that_always_fails_stops_with_one_line(flaky, fake_oracle):
    # the middle hydrogen never converges near the centre of the band
    fake_oracle.fails = staticmethod(lambda atoms: 1.0 < atoms.positions[1, 0] < 1.6)
    with pytest.raises(ReferencePathError) as err:
        qm_neb_path(H3_R, H3_P, flaky, fmax=0.3, steps=40, n_images=3, max_repairs=2,
                    where="h3: QM reference path")
    msg = str(err.value)
    assert msg.startswith("h3: QM reference path: image ") and "\n" not in msg
    assert "after 2 band repairs" in msg and "ts_guess" in msg


def test_failing_end_point_names_it(flaky, fake_oracle):
    fake_oracle.fails = staticmethod(lambda atoms: atoms.positions[1, 0] > 1.7)
    with pytest.raises(ReferencePathError, match="the product fails at the QM level"):
        qm_neb_path(H3_R, H3_P, flaky, fmax=0.3, steps=40, n_images=3)


SMILES_PROJECT = """
system: hcn_smiles
systems:
  hcn_smiles:
    reactant_smiles: "[H:1][C:2]#[N:3]"
    product_smiles: "[C-:2]#[N+:3][H:1]"
    charge: 0
    multiplicity: 1
    level_of_theory: {program: xtb, method: gfn2-xtb}
data_engineering:
  initial: {n_displaced: 1, n_normal_mode: 1}
  test: {n_displaced: 1, n_normal_mode: 1}
  reference_path: {n_images: 5, steps: 150, n_perturbed: 1}
  thermal: {n_per_well: 1, n_steps: 40, temperatures_K: [300], hot_temperature_K: 1200}
  md_seed_path_images: 2
labeling: {scheduler: synchronous, progress: false}
"""


@pytest.fixture(scope="module")
def smiles_project(tmp_path_factory):
    from .conftest import copy_project, kedro

    root = copy_project(tmp_path_factory.mktemp("smiles_project"), SMILES_PROJECT)
    result = kedro(root, "--pipelines", "data_engineering")
    assert result.returncode == 0, result.stderr[-3000:]
    return root


@pytest.mark.slow
def test_smiles_reaction_runs_data_engineering_to_a_converged_neb(smiles_project):
    import json

    from ase.io import read

    raw = smiles_project / "data/01_raw/hcn_smiles"
    assert (raw / "reactant.xyz").is_file() and (raw / "product.xyz").is_file()
    stats = json.loads((smiles_project / "data/08_reporting/reference_path.json").read_text())
    # the product is aligned on the reactant: the C-N unit turns about the hydrogen
    assert stats["converged"] and stats["band"]["max_turn_deg"] > 5 and stats["remove_rotation"]
    path = read(smiles_project / "data/03_primary/reference_path.extxyz", index=":")
    assert len(path) == 7 and closest_contact(path)[0] >= 0.7
    assert path[0].get_chemical_symbols() == ["H", "C", "N"]
    # the hydrogen went from carbon to nitrogen, around the C-N bond
    assert path[0].get_distance(0, 1) < 1.2 and path[-1].get_distance(0, 2) < 1.1
    assert len(read(smiles_project / "data/02_intermediate/md_seeds.extxyz", index=":")) == 4


@pytest.mark.slow
@pytest.mark.parametrize(("params", "expected"), [
    ("systems.hcn_smiles.charge=-1", "systems.hcn_smiles.reactant_smiles: the formal charges"),
    # in its own folder: on the campaign's folder another setting stops at the identity check
    ("data_engineering.reference_path.repair.min_distance=3.0,data_root=data/strict",
     "the interpolated path brings atoms"),
])
def test_broken_reaction_stops_with_one_line_and_keeps_data(smiles_project, params, expected):
    from .conftest import kedro

    path = smiles_project / "data/03_primary/reference_path.extxyz"
    before = path.read_bytes()
    result = kedro(smiles_project, "--pipelines", "data_engineering", "--params", params)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("reactive_al: conf/base/parameters_systems.yml: systems.hcn_smiles")
    assert expected in last
    assert path.read_bytes() == before
