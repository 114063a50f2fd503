"""Held-out test sets: requested subset sizes, no overlap with training pools, measured MD.

Real methods throughout: the H3 exchange reference path is a QM NEB at the system's level
(HF/STO-3G), the thermal and basin MD runs on GFN2-xTB, the kinetic-temperature check on EMT.
"""

from __future__ import annotations

import copy
import time
from collections import Counter

import numpy as np
import pytest
import yaml
from ase.cluster import Icosahedron

from reactive_al.checks import ParameterError, check_parameters
from reactive_al.evaluation.comparison import seed_overrides
from reactive_al.evaluation.ramachandran import (
    alanine_dipeptide_phi_psi_indices,
    dihedral_phi_psi,
)
from reactive_al.exploration.basins import (
    langevin_frames,
    restrained_relax,
    set_dihedrals,
    wrap_deg,
)
from reactive_al.oracles.reference import driver_factory, md_driver
from reactive_al.pipelines.data_engineering.nodes import (
    build_test_pool,
    build_training_pools,
    describe_test_pool,
    reference_path,
)
from reactive_al.settings import load_parameters
from reactive_al.systems import SystemDefinitionError, load_system

from .conftest import PROJECT_ROOT

CONF = PROJECT_ROOT / "conf/base"
SYSTEMS = yaml.safe_load((CONF / "parameters_systems.yml").read_text())["systems"]
BASE = yaml.safe_load((CONF / "parameters_data_engineering.yml").read_text())["data_engineering"]
#: Ramachandran basin centres (phi, psi in degrees), as in parameters_benchmark.yml.
BASINS = {"C7eq": (-83, 73), "C5": (-155, 160), "C7ax": (75, -60), "alphaR": (-70, -40),
          "PII": (-75, 145)}


def _params(seed: int | None = None, **test) -> dict:
    """Data-engineering parameters of the H3 tests: small sizes, short thermal MD."""
    params = copy.deepcopy(BASE)
    params["test"].update({"n_displaced": 3, "n_normal_mode": 2, **test})
    params["reference_path"].update({"n_images": 3, "n_perturbed": 2, "prerelax": None})
    params["thermal"].update({"n_per_well": 2, "temperatures_K": [300, 600],
                              "hot_temperature_K": 1200, "n_steps": 40})
    if seed is not None:
        params["seed"] = seed
    return params


@pytest.fixture(scope="module")
def h3_reference(tmp_path_factory) -> list:
    """The QM climbing-image NEB of H + H2 at HF/STO-3G (3 interior images, about 5 s)."""
    labeling = {"cache_path": str(tmp_path_factory.mktemp("cache") / "labels.db"),
                "scheduler": "synchronous", "progress": False}
    path, stats = reference_path("h3_exchange", SYSTEMS, labeling, _params())
    assert stats["converged"] and len(path) == 5
    return path


@pytest.fixture(autouse=True)
def _project_cwd(monkeypatch):
    monkeypatch.chdir(PROJECT_ROOT)  # geometry paths in the systems file are project-relative


def test_test_pool_has_exactly_the_requested_subset_sizes(h3_reference):
    test, failed = build_test_pool("h3_exchange", SYSTEMS, _params(), h3_reference)
    counts = Counter(a.info["subset"] for a in test)
    assert counts == {"reactant": 3 + 2, "product": 3 + 2,
                      "path": 3 + 3 * 2,  # the QM NEB's interior images + 2 perturbations each
                      "thermal_300K": 2 * 2, "thermal_600K": 2 * 2, "hot_1200K": 2 * 2}
    origins = Counter(a.info["origin"] for a in test)
    assert origins["path/qm_neb"] == 3 and origins["path/qm_neb_displaced"] == 6
    assert failed == []
    stats = describe_test_pool(test, failed)
    assert stats["n_frames"] == len(test) == 31 and stats["md_failures"] == []
    assert {k: v["n"] for k, v in stats["subsets"].items()} == counts


def test_thermal_frames_record_the_kinetic_temperature_of_their_run(h3_reference):
    test, _ = build_test_pool("h3_exchange", SYSTEMS, _params(), h3_reference)
    md = [a for a in test if a.info["subset"].startswith(("thermal_", "hot_"))]
    assert len(md) == 12
    runs: dict[tuple, set] = {}
    for a in md:
        assert a.info["md_kinetic_temperature_K"] > 0 and a.info["kinetic_temperature_K"] > 0
        runs.setdefault((a.info["md_temperature_K"], a.info["well"]), set()).add(
            a.info["md_kinetic_temperature_K"])
    assert all(len(v) == 1 for v in runs.values())  # one run mean per (temperature, well)
    stats = describe_test_pool(test)["subsets"]
    for name, temp in (("thermal_300K", 300.0), ("thermal_600K", 600.0), ("hot_1200K", 1200.0)):
        mine = [a.info["md_kinetic_temperature_K"] for a in md if a.info["subset"] == name]
        assert stats[name]["md_temperature_K"] == temp
        assert stats[name]["mean_kinetic_temperature_K"] == pytest.approx(np.mean(mine))


def test_run_mean_kinetic_temperature_is_that_of_the_second_half():
    from ase.calculators.emt import EMT

    cluster = Icosahedron("Cu", 2)  # 13 atoms: EMT is instant
    frames, mean_t = langevin_frames(cluster, EMT(), 300.0, 5, np.random.default_rng(0),
                                     n_steps=400, timestep_fs=2.0)
    assert len(frames) == 5
    assert all(a.info["md_kinetic_temperature_K"] == mean_t for a in frames)
    inst = [a.info["kinetic_temperature_K"] for a in frames]
    assert len(set(inst)) == 5 and mean_t not in inst
    assert 0.75 * 300 < mean_t < 1.25 * 300  # the run mean: far less noisy than one frame


def test_a_well_the_driver_cannot_compute_is_retried_recorded_and_left_out():
    """GFN2-xTB (tblite) rejects a geometry with two atoms on one spot at every step."""
    from ase import Atoms

    from reactive_al.exploration.basins import MD_ATTEMPTS
    from reactive_al.oracles.reference import thermal_frames

    good = Atoms("H3", positions=[[0, 0, 0], [0.93, 0, 0], [1.86, 0, 0]],
                 info={"subset": "reactant"})
    bad = Atoms("H3", positions=[[0, 0, 0], [0, 0, 0], [1.86, 0, 0]],
                info={"subset": "product"})
    make = driver_factory(0, 2, md_driver(None, ["H"]))
    frames, failed = thermal_frames([good, bad], make, [300.0], 2, np.random.default_rng(0),
                                    n_steps=20)
    assert len(frames) == 2 and {a.info["well"] for a in frames} == {"reactant"}
    assert failed == [{"subset": "thermal_300K", "start": "product", "temperature_K": 300.0,
                       "attempts": MD_ATTEMPTS, "category": "exception",
                       "message": "Too close interatomic distances found"}]
    stats = describe_test_pool(frames, failed)
    assert stats["md_failures"] == failed and stats["subsets"]["thermal_300K"]["n"] == 2


def test_a_transient_driver_failure_is_run_again_with_fresh_draws():
    from ase.calculators.calculator import CalculationFailed

    from reactive_al.exploration.basins import on_driver

    rng, draws, failures = np.random.default_rng(0), [], []

    def run():  # fails on its first call only, like an SCF that did not converge once
        draws.append(rng.random())
        if len(draws) == 1:
            raise CalculationFailed("SCF did not converge in 250 iterations")
        return ["frame"]

    assert on_driver(run, failures, 2, subset="thermal_300K") == ["frame"]
    assert failures == [] and draws[0] != draws[1]
    draws.clear()
    assert on_driver(run, failures, 1, subset="thermal_300K") is None
    assert failures == [{"subset": "thermal_300K", "attempts": 1,
                         "category": "scf_not_converged",
                         "message": "SCF did not converge in 250 iterations"}]
    with pytest.raises(ZeroDivisionError):  # not a driver error: a bug is not swallowed
        on_driver(lambda: 1 / 0, failures, 2, subset="thermal_300K")


def test_test_pool_never_overlaps_any_initial_pool(h3_reference):
    """Seed 0's test set (shared by every benchmark seed) against seeds 0-2's initial pools."""
    params = load_parameters(PROJECT_ROOT)
    bench = [seed_overrides(params, s, ["data_engineering.seed"]).get(
        "data_engineering.seed", params["data_engineering"]["seed"]) for s in range(3)]
    seeds = sorted({0, 1, 2, *bench})
    test, _ = build_test_pool("h3_exchange", SYSTEMS, _params(seed=0), h3_reference)
    test_pos = np.array([a.positions for a in test])
    for seed in seeds:
        initial, _ = build_training_pools("h3_exchange", SYSTEMS, _params(seed=seed))
        init_pos = np.array([a.positions for a in initial])
        gap = np.abs(test_pos[:, None] - init_pos[None]).max(axis=(2, 3))
        assert gap.min() > 1e-6, f"seed {seed}: a test frame is an initial frame"


def test_basins_are_reached_and_sampled_on_alanine_with_xtb():
    rs = load_system("alanine_dipeptide", SYSTEMS, PROJECT_ROOT)
    phi_idx, psi_idx = alanine_dipeptide_phi_psi_indices(rs.reactant)
    make = driver_factory(0, 1, md_driver(None, rs.reactant.get_chemical_symbols()))
    start = time.perf_counter()
    for name, target in BASINS.items():  # the restrained relaxation keeps the set dihedrals
        turned = set_dihedrals(rs.reactant, list(zip((phi_idx, psi_idx), target, strict=True)))
        relaxed, _, _ = restrained_relax(turned, make(), (phi_idx, psi_idx))
        phi, psi = dihedral_phi_psi(relaxed, phi_idx, psi_idx)
        assert np.abs(wrap_deg(np.array([phi, psi]) - target)).max() < 25.0, name

    params = copy.deepcopy(BASE)
    params["thermal"] = None  # the basins' driver is thermal.driver's default, GFN2-xTB
    params["test"].update({
        "basins": {name: {"phi": phi, "psi": psi} for name, (phi, psi) in BASINS.items()},
        "n_per_basin": 2, "basin_md": {"temperatures_K": [300], "n_steps": 100}})
    test, failed = build_test_pool("alanine_dipeptide", SYSTEMS, params)
    elapsed = time.perf_counter() - start
    assert failed == []
    basin = [a for a in test if a.info["subset"].startswith("basin_")]
    assert Counter(a.info["subset"] for a in basin) == {f"basin_{n}": 2 for n in BASINS}
    for a in basin:
        name = a.info["subset"].removeprefix("basin_")
        measured = dihedral_phi_psi(a, phi_idx, psi_idx)
        np.testing.assert_allclose(a.info["phi_psi_deg"], measured)
        assert np.abs(wrap_deg(np.array(measured) - BASINS[name])).max() < 40.0, name
        assert a.info["origin"] == f"basin_{name}/md" and a.info["md_kinetic_temperature_K"] > 0
        assert a.info["system"] == "alanine_dipeptide" and len(a) == 22
    stats = describe_test_pool(test)["subsets"]
    for name, target in BASINS.items():
        s = stats[f"basin_{name}"]
        assert s["basin_phi_psi_deg"] == list(map(float, target))
        assert np.abs(wrap_deg(np.array(s["mean_phi_psi_deg"]) - target)).max() < 25.0
    assert elapsed < 60.0


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("data_engineering.test.basins", {"C7eq": [-83]}, "basin 'C7eq' must be [phi, psi]"),
    ("data_engineering.test.basins", {"C5": {"phi": -155, "psy": 160}},
     "exactly the keys phi and psi"),
    ("data_engineering.test.basins", {"C7ax": [75, -260]}, "in [-180, 180]"),
    ("data_engineering.test.basins", [[-83, 73]], "must map basin names"),
    ("data_engineering.test.n_per_basin", 0, "integer >= 1"),
    ("data_engineering.test.basin_md", {"temperature_K": [300]}, "unknown keys ['temperature_K']"),
    ("data_engineering.test.basin_md", {"temperatures_K": []}, "temperatures > 0 K"),
])
def test_bad_basin_configuration_is_one_line(key, value, expected):
    from reactive_al.nested import set_path

    params = copy.deepcopy(load_parameters(PROJECT_ROOT))
    set_path(params, key, value)
    with pytest.raises(ParameterError) as err:
        check_parameters(params)
    msg = str(err.value)
    assert "\n" not in msg and expected in msg and msg.startswith(
        "conf/base/parameters_data_engineering.yml: data_engineering.test.")


def test_basins_on_a_system_without_a_backbone_is_one_line(h3_reference):
    params = _params(basins={"C7eq": [-83, 73]})
    with pytest.raises(SystemDefinitionError) as err:
        build_test_pool("h3_exchange", SYSTEMS, params, h3_reference)
    assert "data_engineering.test.basins: the reactant of h3_exchange has no (phi, psi)" in str(
        err.value)
    assert "\n" not in str(err.value)


def test_shipped_benchmark_basins_and_sizes_pass_the_checks():
    from reactive_al.nested import deep_merge

    params = load_parameters(PROJECT_ROOT)
    for system in ("alanine_dipeptide", "sn2_cl_ch3cl"):
        check_parameters(deep_merge(params, params["benchmark"]["systems"][system]["params"]))
    basins = params["benchmark"]["systems"]["alanine_dipeptide"]["params"][
        "data_engineering"]["test"]["basins"]
    assert {k: (v["phi"], v["psi"]) for k, v in basins.items()} == BASINS
