import numpy as np
import pytest

from reactive_al.oracles.pyscf_oracle import OracleError, PySCFCalculator, pyscf_single_point

from .conftest import HF_STO3G, water


def test_forces_are_minus_energy_gradient_in_ev_per_angstrom():
    atoms = water(0.05)
    atoms.calc = PySCFCalculator(charge=0, multiplicity=1, **HF_STO3G)
    forces = atoms.get_forces()
    h = 1e-3
    fd = []
    for coord in (0, 1):  # x and y of the first hydrogen
        e = []
        for sign in (1, -1):
            a = water(0.05)
            a.positions[1, coord] += sign * h
            a.calc = PySCFCalculator(charge=0, multiplicity=1, **HF_STO3G)
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
                             0, 2, **HF_STO3G)
    assert 0.74 < out["provenance"]["qm_s2"] < 0.9


def test_unconverged_scf_is_an_oracle_error(monkeypatch):
    from pyscf import scf

    def factory_never_converges(mol, method, grid_level, conv_tol, density_fit):
        mf = scf.RHF(mol)
        mf.max_cycle = 1
        mf.conv_tol = 1e-14
        return mf

    monkeypatch.setattr("reactive_al.oracles.pyscf_oracle._make_scf", factory_never_converges)
    monkeypatch.setattr(
        "reactive_al.oracles.pyscf_oracle._ladder",
        lambda f: iter([("default", f()), ("newton", f())]),
    )
    with pytest.raises(OracleError) as err:
        pyscf_single_point(water(0.4), 0, 1, **HF_STO3G)
    assert err.value.category == "scf_not_converged"
