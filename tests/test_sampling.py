import numpy as np
from ase import Atoms

from reactive_al.exploration.structures import (
    harmonic_modes,
    idpp_path,
    normal_mode_perturbations,
    structure_set,
)

from .conftest import PROJECT_ROOT


def _sn2():
    from ase.io import read

    r = read(PROJECT_ROOT / "data/01_raw/sn2_cl_ch3cl/reactant.xyz")
    p = read(PROJECT_ROOT / "data/01_raw/sn2_cl_ch3cl/product.xyz")
    return r, p


def test_harmonic_model_has_3n_minus_6_vibrations():
    r, _ = _sn2()
    w2, modes = harmonic_modes(r)
    assert len(w2) == 3 * len(r) - 6
    assert modes.shape == (len(w2), len(r), 3)
    assert np.all(w2 > 0)


def test_normal_mode_samples_scale_with_temperature():
    r, _ = _sn2()
    rms = []
    for t in (100, 900):
        frames = normal_mode_perturbations(r, 200, t, np.random.default_rng(0), "reactant")
        rms.append(np.sqrt(np.mean([(f.positions - r.positions) ** 2 for f in frames])))
        assert frames[0].info["origin"] == "reactant/normal_mode"
    assert 2.0 < rms[1] / rms[0] < 4.0  # amplitude ∝ √T: √9 = 3


def test_idpp_path_moves_the_carbon_between_the_chlorines():
    r, p = _sn2()
    path = idpp_path(r, p, 5)
    assert len(path) == 5
    # reaction coordinate d(C-Cl1) - d(C-Cl2) goes monotonically from reactant to product
    xi = [a.get_distance(0, 1) - a.get_distance(0, 2) for a in path]
    assert np.all(np.diff(xi) > 0)
    assert xi[0] > r.get_distance(0, 1) - r.get_distance(0, 2)
    assert abs(xi[2]) < 0.2  # the middle image is near the symmetric transition state
    assert {a.info["subset"] for a in path} == {"path"}


def test_structure_set_without_product_samples_reactant_only():
    a = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    frames = structure_set(a, None, 2, 3, 4, 1, 0.05, 300, np.random.default_rng(1))
    assert len(frames) == 5
    assert {f.info["subset"] for f in frames} == {"reactant"}
