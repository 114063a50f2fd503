from dataclasses import replace

import numpy as np
import pytest

from reactive_al.oracles import OracleError, parse_level
from reactive_al.oracles.pyscf import PySCFCalculator, PySCFLevel, pyscf_single_point

from .conftest import HF_STO3G, water

HF = parse_level(HF_STO3G, "test")


def test_forces_are_minus_energy_gradient_in_ev_per_angstrom():
    atoms = water(0.05)
    atoms.calc = PySCFCalculator(charge=0, multiplicity=1, level=HF)
    forces = atoms.get_forces()
    h = 1e-3
    fd = []
    for coord in (0, 1):  # x and y of the first hydrogen
        e = []
        for sign in (1, -1):
            a = water(0.05)
            a.positions[1, coord] += sign * h
            a.calc = PySCFCalculator(charge=0, multiplicity=1, level=HF)
            e.append(a.get_potential_energy())
        fd.append(-(e[0] - e[1]) / (2 * h))
    np.testing.assert_allclose(forces[1, :2], fd, atol=2e-3)
    # HF/STO-3G water is about -74.96 Hartree = -2039.8 eV
    assert -2045 < atoms.get_potential_energy() < -2035
    assert atoms.calc.provenance["qm_converged"] is True
    assert atoms.calc.provenance["qm_scf_step"] == "default"


def test_open_shell_records_spin_contamination():
    from ase import Atoms

    out = pyscf_single_point(Atoms("H3", positions=[[0, 0, 0], [0.74, 0, 0], [2.5, 0, 0]]),
                             0, 2, HF)
    assert 0.74 < out["provenance"]["qm_s2"] < 0.9


def test_unconverged_scf_is_an_oracle_error(monkeypatch):
    from pyscf import scf

    def factory_never_converges(mol, method, grid_level, conv_tol, density_fit, unrestricted):
        mf = scf.RHF(mol)
        mf.max_cycle = 1
        mf.conv_tol = 1e-14
        return mf

    monkeypatch.setattr("reactive_al.oracles.pyscf._make_scf", factory_never_converges)
    monkeypatch.setattr(
        "reactive_al.oracles.pyscf._ladder",
        lambda f, guess=None: iter([("default", f(), None), ("newton", f(), None)]),
    )
    with pytest.raises(OracleError) as err:
        pyscf_single_point(water(0.4), 0, 1, HF)
    assert err.value.category == "scf_not_converged"


def test_scf_timeout_is_its_own_failure_category():
    with pytest.raises(OracleError) as err:
        pyscf_single_point(water(), 0, 1, HF, timeout_s=1e-9)
    assert err.value.category == "timeout"


def test_ladder_moves_on_when_a_step_fails(monkeypatch):
    from reactive_al.oracles import pyscf as pyscf_oracle

    real_ladder = pyscf_oracle._ladder

    def ladder_with_broken_first_step(factory, guess=None):
        mf = factory()
        mf.max_cycle = 1
        mf.conv_tol = 1e-14
        yield "default", mf, None
        steps = real_ladder(factory)
        next(steps)
        yield from steps

    monkeypatch.setattr(pyscf_oracle, "_ladder", ladder_with_broken_first_step)
    out = pyscf_single_point(water(), 0, 1, HF)
    assert out["provenance"]["qm_scf_step"] == "damping_level_shift"


def test_stretched_singlet_broken_symmetry_with_stability_check():
    from ase import Atoms

    h2 = Atoms("H2", positions=[[0, 0, 0], [2.5, 0, 0]])
    restricted = pyscf_single_point(h2, 0, 1, replace(HF, unrestricted="never"))
    broken = pyscf_single_point(h2, 0, 1, replace(HF, unrestricted="always"))
    prov = broken["provenance"]
    assert prov["qm_reference"] == "unrestricted" and prov["qm_stable"] is True
    # the stable unrestricted solution of dissociating H2 is lower and spin contaminated
    assert broken["energy"] < restricted["energy"] - 0.5
    assert prov["qm_s2"] > 0.8


def test_xtb_backend_through_the_same_interface():
    pytest.importorskip("tblite")
    from reactive_al.oracles import single_point

    out = single_point(water(0.05), 0, 1, {"program": "xtb", "method": "gfn2-xtb"})
    assert out["provenance"]["qm_program"] == "tblite"
    # GFN2-xTB water is about -5.07 Hartree = -138 eV
    assert -140 < out["energy"] < -136
    assert out["forces"].shape == (3, 3)
    assert abs(out["forces"].sum(0)).max() < 1e-6  # no net force on an isolated molecule


def test_levels_carry_their_defaults_once_and_the_cache_form_is_unchanged():
    from reactive_al.oracles.xtb import XTBLevel

    level = parse_level({"method": "B3LYP", "basis": "6-31+G*"}, "here", ["H", "O"])
    assert level == PySCFLevel()
    assert level.program == "pyscf" and level.name == "b3lyp-6-31+g*"
    assert level.as_dict() == {"program": "pyscf", "method": "b3lyp", "basis": "6-31+g*",
                               "grid_level": 3, "conv_tol": 1e-8, "density_fit": False,
                               "unrestricted": "auto"}
    xtb = parse_level({"program": "xtb", "method": "GFN2-xTB"}, "here")
    assert xtb == XTBLevel() and xtb.name == "gfn2-xtb"
    assert xtb.as_dict() == {"program": "xtb", "method": "gfn2-xtb"}
    assert parse_level(xtb, "here") is xtb


@pytest.mark.parametrize(("spec", "expected"), [
    ({"program": "gaussian"}, "unknown program 'gaussian' (registered: "),
    ({"functional": "pbe"}, "unknown setting(s) ['functional'] for program 'pyscf'"),
    ({"program": "xtb", "basis": "sto-3g"}, "unknown setting(s) ['basis'] for program 'xtb'"),
    ({"program": "xtb", "method": "gfn0"}, "unknown xTB method 'gfn0'"),
    ({"unrestricted": "sometimes"}, "unrestricted must be one of auto/always/never"),
    ({"basis": "no-such-basis"}, "basis 'no-such-basis' has no functions for H"),
])
def test_bad_level_is_one_line_naming_where(spec, expected):
    from reactive_al.systems import SystemDefinitionError

    with pytest.raises(SystemDefinitionError) as err:
        parse_level(spec, "conf/x.yml: systems.s.level_of_theory", ["H", "O"])
    msg = str(err.value)
    assert msg.startswith("conf/x.yml: systems.s.level_of_theory: ")
    assert expected in msg and "\n" not in msg


def test_every_program_gives_an_md_driver_calculator():
    pytest.importorskip("tblite")
    from reactive_al.oracles import get_oracle

    atoms = water(0.05)
    atoms.calc = get_oracle("xtb").calculator(0, 1, parse_level({"program": "xtb"}, "here"))
    assert -140 < atoms.get_potential_energy() < -136
    pyscf_calc = get_oracle("pyscf").calculator(0, 1, HF)
    assert isinstance(pyscf_calc, PySCFCalculator)
