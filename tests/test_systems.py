from pathlib import Path

import pytest
import yaml

from reactive_al.systems import SystemDefinitionError, load_system

from .conftest import PROJECT_ROOT

SYSTEMS = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_systems.yml").read_text())["systems"]


def _system(tmp_path: Path, reactant: str, product: str | None = None, **kw) -> dict:
    (tmp_path / "r.xyz").write_text(reactant)
    spec = {"reactant": str(tmp_path / "r.xyz"), "charge": 0, "multiplicity": 1, **kw}
    if product is not None:
        (tmp_path / "p.xyz").write_text(product)
        spec["product"] = str(tmp_path / "p.xyz")
    return {"s": spec}


WATER = "3\n\nO 0 0 0\nH 0.96 0 0\nH -0.24 0.93 0\n"


def test_shipped_systems_load():
    sn2 = load_system("sn2_cl_ch3cl", SYSTEMS, PROJECT_ROOT)
    assert sn2.charge == -1 and sn2.multiplicity == 1
    assert sn2.symbols == ["H", "C", "Cl"]
    assert sn2.level.basis == "6-31+g*"
    assert sn2.product.get_chemical_symbols() == sn2.reactant.get_chemical_symbols()
    h3 = load_system("h3_exchange", SYSTEMS, PROJECT_ROOT)
    assert h3.multiplicity == 2 and h3.symbols == ["H"]


@pytest.mark.parametrize(
    ("reactant", "kwargs", "expected"),
    [
        (WATER, {"multiplicity": 2}, "parity"),
        (WATER, {"charge": 1, "multiplicity": 1}, "parity"),
        ("3\n\nO 0 0 0\nH 0.2 0 0\nH -0.24 0.93 0\n", {}, "Å apart"),
        ("3\n\nO 0 0 0\nXq 0.96 0 0\nH -0.24 0.93 0\n", {}, "unknown element 'Xq'"),
        ("3\n\nO 0 0 0\nH nan 0 0\nH -0.24 0.93 0\n", {}, "non-finite"),
        ("0\n\n", {}, "r.xyz"),
    ],
)
def test_broken_definitions_give_one_line_naming_the_file(tmp_path, reactant, kwargs, expected):
    with pytest.raises(SystemDefinitionError) as err:
        load_system("s", _system(tmp_path, reactant, **kwargs))
    msg = str(err.value)
    assert expected in msg
    assert "\n" not in msg
    assert "r.xyz" in msg


def test_missing_file_and_unknown_system(tmp_path):
    with pytest.raises(SystemDefinitionError, match=r"nope\.xyz: geometry file not found"):
        load_system("s", {"s": {"reactant": str(tmp_path / "nope.xyz"), "charge": 0,
                                "multiplicity": 1}})
    with pytest.raises(SystemDefinitionError, match="unknown system 'x'"):
        load_system("x", {"s": {}})


def test_product_must_match_reactant_atoms(tmp_path):
    other = "3\n\nH 0 0 0\nO 0.96 0 0\nH -0.24 0.93 0\n"
    with pytest.raises(SystemDefinitionError, match="p.xyz: atoms differ"):
        load_system("s", _system(tmp_path, WATER, other))


def test_unknown_level_setting_and_basis(tmp_path):
    with pytest.raises(SystemDefinitionError, match="unknown setting"):
        load_system("s", _system(tmp_path, WATER, level_of_theory={"functional": "pbe"}))
    with pytest.raises(SystemDefinitionError, match="basis 'no-such-basis'"):
        load_system("s", _system(tmp_path, WATER, level_of_theory={"basis": "no-such-basis"}))


@pytest.mark.parametrize(("lot", "expected"), [
    ({"program": "orca"}, "level_of_theory: unknown program 'orca' (registered: "),
    ({"program": "xtb", "grid_level": 3}, "unknown setting(s) ['grid_level'] for program 'xtb'"),
])
def test_unknown_program_or_key_is_one_line_naming_the_entry(tmp_path, lot, expected):
    with pytest.raises(SystemDefinitionError) as err:
        load_system("s", _system(tmp_path, WATER, level_of_theory=lot))
    msg = str(err.value)
    assert msg.startswith("conf/base/parameters_systems.yml: systems.s.level_of_theory: ")
    assert expected in msg and "\n" not in msg


def test_level_is_the_oracles_typed_object(tmp_path):
    from reactive_al.oracles.xtb import XTBLevel

    rs = load_system("s", _system(tmp_path, WATER, level_of_theory={"program": "xtb"}))
    assert rs.level == XTBLevel() and rs.level.program == "xtb" and rs.level.name == "gfn2-xtb"
    sn2 = load_system("sn2_cl_ch3cl", SYSTEMS, PROJECT_ROOT)
    assert sn2.level.name == "b3lyp-6-31+g*" and sn2.level.as_dict()["grid_level"] == 3
