"""Periodic labels with stress: GFN1-xTB through the labeling layer, cache and extxyz."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import PropertyNotImplementedError

from reactive_al.datasets.extxyz import ExtXYZDataset
from reactive_al.oracles import OracleError
from reactive_al.oracles.cache import LabelCache
from reactive_al.oracles.labeling import LabelingConfig, label_structures
from reactive_al.oracles.xtb import XTBLevel, xtb_single_point

from .conftest import HF_STO3G, water
from .test_labeling import count_qm_calls

GFN1 = {"program": "xtb", "method": "gfn1-xtb"}
#: symmetric strain of the finite differences
EPS = 1e-4
#: Voigt order of ASE's stress: xx, yy, zz, yz, xz, xy
VOIGT = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]


def _cfg(tmp_path, level=GFN1, **kw) -> LabelingConfig:
    return LabelingConfig(charge=0, multiplicity=1, level=level,
                          cache_path=str(tmp_path / "cache.db"), scheduler="synchronous",
                          progress=False, **kw)


def mgo() -> Atoms:
    """A rattled, sheared 2-atom rocksalt MgO cell: every stress component is nonzero."""
    atoms = bulk("MgO", "rocksalt", a=4.25)
    shear = np.array([[0.0, 0.02, -0.01], [0.02, 0.01, 0.03], [-0.01, 0.03, -0.02]])
    atoms.set_cell(atoms.cell @ (np.eye(3) + shear), scale_atoms=True)
    atoms.rattle(0.05, seed=7)
    atoms.info["origin"] = "test/mgo"
    return atoms


def strained(atoms: Atoms, i: int, j: int, e: float) -> Atoms:
    """``atoms`` under the symmetric strain ε_ij = ε_ji = e (atoms move with the cell)."""
    eps = np.eye(3)
    eps[i, j] += e
    if i != j:
        eps[j, i] += e
    out = atoms.copy()
    out.set_cell(atoms.cell @ eps, scale_atoms=True)
    out.info["origin"] = f"test/strain_{i}{j}_{e:+g}"
    return out


@pytest.fixture(scope="module")
def labeled_mgo(tmp_path_factory) -> tuple[Atoms, list[Atoms], LabelingConfig]:
    """MgO and its 12 strained copies labeled at GFN1-xTB in one batch (tmp cache)."""
    cfg = _cfg(tmp_path_factory.mktemp("periodic"))
    base = mgo()
    frames = [base] + [strained(base, i, j, s * EPS) for i, j in VOIGT for s in (1, -1)]
    labeled, failures = label_structures(frames, cfg)
    assert failures == [] and len(labeled) == len(frames)
    return labeled[0], labeled[1:], cfg


def test_periodic_stress_is_the_strain_derivative_of_the_labeled_energy(labeled_mgo):
    crystal, strained_frames, _ = labeled_mgo
    stress = crystal.get_stress(voigt=True)
    assert stress.shape == (6,)
    energies = [a.get_potential_energy() for a in strained_frames]
    volume = crystal.get_volume()
    fd = []
    for k, (i, j) in enumerate(VOIGT):
        e_plus, e_minus = energies[2 * k], energies[2 * k + 1]
        # a shear strain ε_ij = ε_ji moves two tensor components at once
        fd.append((e_plus - e_minus) / (2 * EPS) / volume / (1 if i == j else 2))
    np.testing.assert_allclose(stress, fd, rtol=0, atol=1e-5)  # eV/Å³
    assert np.abs(stress).min() > 1e-4  # every component is tested, none is zero by symmetry
    # computed in its cell: the periodic energy is not that of the same atoms as a cluster
    cluster_atoms = crystal.copy()
    cluster_atoms.pbc = False
    cluster = xtb_single_point(cluster_atoms, 0, 1, XTBLevel("gfn1-xtb"))
    assert abs(cluster["energy"] - crystal.get_potential_energy()) > 1.0
    assert "stress" not in cluster
    assert crystal.pbc.all() and np.allclose(crystal.cell, mgo().cell)


def test_stress_survives_the_cache_and_an_extxyz_round_trip(labeled_mgo, tmp_path,
                                                            monkeypatch):
    crystal, _, cfg = labeled_mgo
    calls = count_qm_calls(monkeypatch)
    again, failures = label_structures([mgo()], cfg)
    assert calls == [] and failures == []  # from the cache, nothing computed
    np.testing.assert_array_equal(again[0].get_stress(), crystal.get_stress())
    assert again[0].get_potential_energy() == crystal.get_potential_energy()
    row = LabelCache(cfg.cache_path).get(crystal.info["label_key"])
    assert row["status"] == "ok"
    np.testing.assert_array_equal(row["stress"], crystal.get_stress())

    ds = ExtXYZDataset(str(tmp_path / "frames.extxyz"))
    ds.save(again)
    (back,) = ds.load()
    np.testing.assert_allclose(back.get_stress(), crystal.get_stress(), rtol=1e-10, atol=0)
    np.testing.assert_allclose(back.get_forces(), crystal.get_forces(), rtol=0, atol=1e-8)
    assert back.get_potential_energy() == pytest.approx(crystal.get_potential_energy(),
                                                        abs=1e-8)
    np.testing.assert_allclose(np.asarray(back.cell), np.asarray(crystal.cell), atol=1e-8)
    assert back.pbc.tolist() == [True, True, True]
    assert back.info["label_key"] == crystal.info["label_key"]


def test_a_molecule_gets_no_stress_and_its_nonperiodic_energy(tmp_path):
    from tblite.ase import TBLite

    mol = water(0.02)
    mol.info["origin"] = "test/water"
    (labeled,), failures = label_structures([mol], _cfg(tmp_path))
    assert failures == []
    assert "stress" not in labeled.calc.results
    with pytest.raises(PropertyNotImplementedError):
        labeled.get_stress()
    assert not labeled.pbc.any()
    reference = mol.copy()
    reference.calc = TBLite(method="GFN1-xTB", charge=0.0, multiplicity=1, verbosity=0)
    assert labeled.get_potential_energy() == pytest.approx(reference.get_potential_energy(),
                                                           abs=1e-8)
    row = LabelCache(tmp_path / "cache.db").get(labeled.info["label_key"])
    assert row["status"] == "ok" and "stress" not in row
    # a box around a molecule does not make it periodic: same energy, still no stress
    boxed = mol.copy()
    boxed.cell = [6.0, 6.0, 6.0]
    (in_box,), _ = label_structures([boxed], _cfg(tmp_path))
    assert in_box.get_potential_energy() == pytest.approx(labeled.get_potential_energy(),
                                                          abs=1e-8)
    assert "stress" not in in_box.calc.results


def test_pyscf_given_a_crystal_records_a_deterministic_failure(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path, level=HF_STO3G)
    labeled, failures = label_structures([mgo()], cfg)
    assert labeled == []
    (failure,) = failures
    assert failure["category"] == "geometry_invalid" and failure["origin"] == "test/mgo"
    assert "program: xtb" in failure["message"] and "GFN1-xTB" in failure["message"]
    assert "\n" not in failure["message"]
    cached = LabelCache(cfg.cache_path).get(failure["label_key"])
    assert cached["status"] == "failed" and cached["category"] == "geometry_invalid"
    calls = count_qm_calls(monkeypatch)
    _, again = label_structures([mgo()], cfg)
    assert calls == [] and again[0]["message"] == failure["message"]


def test_xtb_rejects_a_periodic_structure_without_a_cell_volume():
    flat = Atoms("LiF", positions=[[0, 0, 0], [2.0, 0, 0]], cell=[4.0, 4.0, 0.0],
                 pbc=[True, True, False])
    with pytest.raises(OracleError) as err:
        xtb_single_point(flat, 0, 1, XTBLevel("gfn1-xtb"))
    assert err.value.category == "geometry_invalid" and "volume" in err.value.message


@pytest.mark.parametrize("method", ["gfn1-xtb", "gfn2-xtb"])
def test_xtb_labels_equal_tblites_own_ase_calculator(method):
    """The label path (tblite's calculation interface) gives the numbers of tblite's ASE
    calculator to the last bit, for a charged molecule and for a crystal with its stress."""
    from tblite.ase import TBLite

    tblite_names = {"gfn1-xtb": "GFN1-xTB", "gfn2-xtb": "GFN2-xTB"}
    ion = water()
    ion.rattle(0.05, seed=3)
    cases = [(ion, -1, 2)] + ([(mgo(), 0, 1)] if method == "gfn1-xtb" else [])  # GFN1: crystals
    for atoms, charge, mult in cases:
        record = xtb_single_point(atoms, charge, mult, XTBLevel(method))
        ref = atoms.copy()
        ref.calc = TBLite(method=tblite_names[method], charge=float(charge),
                          multiplicity=mult, verbosity=0)
        assert record["energy"] == ref.get_potential_energy()
        assert np.array_equal(record["forces"], ref.get_forces())
        if atoms.pbc.any():
            assert np.array_equal(record["stress"], ref.get_stress(voigt=True))
            assert np.abs(record["stress"]).max() > 1e-4
        else:
            assert "stress" not in record
