"""Alanine dipeptide, the shipped conformational system: definition, geometry, structure sets."""

from __future__ import annotations

import yaml

from reactive_al.evaluation.ramachandran import (
    alanine_dipeptide_phi_psi_indices,
    dihedral_phi_psi,
)
from reactive_al.pipelines.data_engineering.nodes import build_test_pool, build_training_pools
from reactive_al.systems import load_system

from .conftest import PROJECT_ROOT

CONF = PROJECT_ROOT / "conf/base"
SYSTEMS = yaml.safe_load((CONF / "parameters_systems.yml").read_text())["systems"]


def test_alanine_dipeptide_loads_as_neutral_singlet_without_product():
    rs = load_system("alanine_dipeptide", SYSTEMS, PROJECT_ROOT)
    assert len(rs.reactant) == 22
    assert rs.reactant.get_chemical_formula() == "C6H12N2O2"
    assert (rs.charge, rs.multiplicity) == (0, 1)
    assert rs.product is None
    assert rs.symbols == ["H", "C", "N", "O"]
    assert rs.level.program == "pyscf"


def test_stored_geometry_sits_in_the_c7eq_well():
    rs = load_system("alanine_dipeptide", SYSTEMS, PROJECT_ROOT)
    phi_idx, psi_idx = alanine_dipeptide_phi_psi_indices(rs.reactant)
    phi, psi = dihedral_phi_psi(rs.reactant, phi_idx, psi_idx)
    # C7eq (φ ≈ −80°, ψ ≈ +70°); the C5 extended form lies at φ, ψ ≈ ±160°
    assert -110.0 < phi < -60.0
    assert 40.0 < psi < 100.0


def test_structure_sets_sample_only_the_reactant_well(monkeypatch):
    monkeypatch.chdir(PROJECT_ROOT)  # geometry paths in the systems file are project-relative
    params = yaml.safe_load((CONF / "parameters_data_engineering.yml").read_text())
    params = {**params["data_engineering"], "thermal": None}  # thermal MD runs xTB: not here
    initial, seeds = build_training_pools("alanine_dipeptide", SYSTEMS, params)
    test, failed = build_test_pool("alanine_dipeptide", SYSTEMS, params)
    assert failed == []
    assert initial and test
    for frames in (initial, test, seeds):
        assert {a.info["subset"] for a in frames} == {"reactant"}
        assert all(a.info["system"] == "alanine_dipeptide" and a.info["charge"] == 0
                   for a in frames)
        assert all(len(a) == 22 for a in frames)
    assert len(seeds) == 1


def test_thermal_driver_is_any_registered_program_and_unknown_is_one_line():
    import pytest

    from reactive_al.oracles.reference import thermal_driver
    from reactive_al.systems import SystemDefinitionError

    thermal = {"n_per_well": 1}
    assert thermal_driver({**thermal, "driver": "xtb"}, ["H"]).name == "gfn2-xtb"
    level = thermal_driver({**thermal, "driver": {"program": "pyscf", "basis": "sto-3g"}}, ["H"])
    assert level.program == "pyscf" and level.basis == "sto-3g"
    assert thermal_driver(None, ["H"]) is None
    with pytest.raises(SystemDefinitionError) as err:
        thermal_driver({**thermal, "driver": "gaussian"}, ["H"])
    assert str(err.value).startswith(
        "conf/base/parameters_data_engineering.yml: data_engineering.thermal.driver: "
        "unknown program 'gaussian'")
    assert "\n" not in str(err.value)
