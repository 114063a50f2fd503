import json
import shutil
import sys
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ase.io import read

from reactive_al import __main__ as cli
from reactive_al.benchmark import (
    _check_budget,
    budget_overrides,
    campaign_catalog,
    campaign_params,
    comparison_name,
    param_arg,
    report_only,
    seed_root,
    write_comparison,
)
from reactive_al.evaluation.comparison import (
    aggregate_seeds,
    labels_to_reach,
    learning_curve_bands,
    markdown_summary,
    method_result,
    seed_overrides,
    spread,
)
from reactive_al.nested import flatten
from reactive_al.settings import load_parameters

PROJECT = Path(__file__).resolve().parents[1]
ROOT = Path("data/benchmark/toy")


@pytest.fixture
def project(tmp_path):
    """A project with the real configuration (catalog, parameters), its inputs and no data."""
    shutil.copytree(PROJECT / "conf/base", tmp_path / "conf/base")
    shutil.copytree(PROJECT / "data/01_raw", tmp_path / "data/01_raw")
    (tmp_path / "conf/local").mkdir()
    return tmp_path


def test_labels_to_reach_interpolates_between_iterations():
    curve = pd.DataFrame({"n_labels": [10, 20, 30], "force_mae_ev_per_a": [0.4, 0.2, 0.1]})
    assert labels_to_reach(curve, 0.3) == pytest.approx(15.0)
    assert labels_to_reach(curve, 0.1) == pytest.approx(30.0)
    assert labels_to_reach(curve, 0.5) == 10.0
    assert labels_to_reach(curve, 0.05) is None


def test_method_overrides_become_nested_kedro_params():
    flat = flatten({"selection": {"strategy": "max_det", "walkers": {"bias": {"enabled": True}}}},
                   sep=".")
    assert flat == {"selection.strategy": "max_det", "selection.walkers.bias.enabled": True}
    assert param_arg(flat) == "selection.strategy=max_det,selection.walkers.bias.enabled=true"


def _campaign(project, name, maes, path_maes=None, barrier_errors=None, root=ROOT):
    """A finished campaign: its learning curve, saved where the catalog puts it."""
    curve = pd.DataFrame({"iteration": range(len(maes)),
                          "n_labels": [16 + 8 * k for k in range(len(maes))],
                          "test/force_mae_ev_per_a": maes,
                          "test/path/force_mae_ev_per_a": path_maes or maes,
                          "test/neb/barrier_error_kcal_mol": barrier_errors or [5.0] * len(maes)})
    campaign_catalog(project, root, name).save("learning_curve", curve)


def test_campaign_results_are_read_where_the_catalog_writes_them(project):
    _campaign(project, "random", [0.30, 0.20])
    # the catalog's campaign_root: data/benchmark/<system>/<method>/08_reporting
    assert (project / ROOT / "random/08_reporting/learning_curve.csv").is_file()


def test_comparison_reports_label_fraction_against_the_random_baseline(project):
    _campaign(project, "random", [0.30, 0.25, 0.20, 0.15])
    _campaign(project, "smart", [0.30, 0.15, 0.10, 0.08])
    shared = campaign_catalog(project, ROOT)
    shared.save("reference_path_stats", {"barrier_kcal_mol": 12.5, "converged": True,
                                         "steps": 40})
    defs = {"random": {"description": "r"}, "smart": {"description": "s"}}
    out = write_comparison("toy", project, ROOT, ["random", "smart"], defs,
                           {"random": 10.0, "smart": 12.0})
    smart = out["methods"]["smart"]
    # random ends at 0.15 eV/Å with 40 labels; smart gets there at 24 labels
    assert smart["labels_to_reach_reference_final"] == pytest.approx(24.0)
    assert smart["label_fraction_of_reference"] == pytest.approx(24 / 40)
    assert smart["acquired_fraction_of_reference"] == pytest.approx(8 / 24)
    assert smart["complete"] is True and smart["description"] == "s"
    assert out["methods"]["random"]["label_fraction_of_reference"] == pytest.approx(1.0)
    assert out["reference_path"]["barrier_kcal_mol"] == 12.5
    saved = json.loads((project / "data/08_reporting/benchmark_toy.json").read_text())
    assert saved["methods"]["smart"]["wall_time_s"] == 12.0
    assert saved == json.loads(json.dumps(out))
    assert "ramachandran_coverage" not in smart  # toy has no reporting key
    assert (project / "data/08_reporting/benchmark_toy_learning_curves.png").exists()
    assert not (project / "data/08_reporting/benchmark_toy_ramachandran.png").exists()
    assert "barrier 12.50 kcal/mol" in markdown_summary(out)


def test_markdown_summary_lists_every_method(project):
    _campaign(project, "random", [0.30, 0.20])
    _campaign(project, "smart", [0.30, 0.10])
    out = write_comparison("toy", project, ROOT, ["random", "smart"],
                           {"random": {}, "smart": {}}, {})
    table = markdown_summary(out)
    assert "| random | 24 | 0.200 |" in table and "| smart | 24 | 0.100 |" in table
    assert (project / "data/08_reporting/benchmark_toy.md").read_text() == table


def test_comparison_counts_labels_where_the_reaction_happens(project):
    # equal overall curves, but "smart" learns the path region and the barrier sooner
    _campaign(project, "random", [0.30, 0.25, 0.20], path_maes=[0.40, 0.30, 0.20],
              barrier_errors=[10.0, 6.0, 0.5])
    _campaign(project, "smart", [0.30, 0.25, 0.20], path_maes=[0.40, 0.10, 0.08],
              barrier_errors=[10.0, -3.0, -0.2])
    out = write_comparison("toy", project, ROOT, ["random", "smart"],
                           {"random": {}, "smart": {}}, {})
    smart, random = out["methods"]["smart"], out["methods"]["random"]
    assert out["reference_final_path_force_mae_ev_per_a"] == pytest.approx(0.20)
    # path MAE 0.40 -> 0.10 between 16 and 24 labels crosses 0.20 at 16 + 8 * 2/3
    assert smart["labels_to_reach_reference_final_path"] == pytest.approx(16 + 8 * 2 / 3)
    assert random["labels_to_reach_reference_final_path"] == pytest.approx(32.0)
    # |barrier error| 10 -> 3 -> 0.2: within 1 kcal/mol at 24 + 8 * 2/2.8 labels
    assert smart["labels_to_barrier_within_1_kcal_mol"] == pytest.approx(24 + 8 * 2 / 2.8)
    assert random["labels_to_barrier_within_1_kcal_mol"] == pytest.approx(24 + 8 * 5 / 5.5)
    assert "| smart | 32 | 0.200 | 0.080 | -0.20 |" in markdown_summary(out)


def _alanine_frames(n):
    reactant = read(PROJECT / "data/01_raw/alanine_dipeptide/reactant.xyz")
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(n):
        a = reactant.copy()
        a.positions += rng.normal(0.0, 0.05, a.positions.shape)
        frames.append(a)
    return frames


def test_unfinished_campaign_reports_its_evaluated_iterations(project):
    shared = campaign_catalog(project, ROOT)
    camp = campaign_catalog(project, ROOT, "committee")  # a method of benchmark.methods
    # iteration 0 summarised; iteration 1 evaluated (metrics, labels) but not summarised
    shared.save("labeled_set_0", _alanine_frames(16))
    shared.save("iter_00.metrics", {"force_mae_ev_per_a": 0.5})
    camp.save("iter_00.summary", {"iteration": 0, "n_labels": 16,
                                  "test/force_mae_ev_per_a": 0.3})
    camp.save("labeled_set_1", _alanine_frames(24))
    camp.save("iter_01.metrics", {"force_mae_ev_per_a": 0.2})
    camp.save("iter_00.candidates", _alanine_frames(3))
    camp.save("iter_01.candidates", _alanine_frames(2))
    # iteration 0 is shared, the rest under the method's campaign_root
    assert (project / ROOT / "03_primary/labeled_set_0.extxyz").is_file()
    assert (project / ROOT / "08_reporting/iter_00/metrics.json").is_file()
    assert (project / ROOT / "committee/03_primary/labeled_set_1.extxyz").is_file()
    assert (project / ROOT / "committee/05_model_input/iter_01/candidates.extxyz").is_file()
    out = report_only("toy", project)  # picks the campaigns that started: committee only
    res = out["methods"]["committee"]
    assert list(out["methods"]) == ["committee"]
    assert res["complete"] is False
    assert res["curve"]["n_labels"] == [16.0, 24.0]
    assert res["curve"]["force_mae_ev_per_a"] == pytest.approx([0.3, 0.2])
    assert res["n_explored_frames"] == 5
    assert "Stopped before the last iteration" in markdown_summary(out)


def test_ramachandran_coverage_is_a_system_reporting_key(project):
    root = Path("data/benchmark/alanine_dipeptide")
    _campaign(project, "random", [0.30, 0.20], root=root)
    campaign_catalog(project, root, "random").save("iter_00.candidates", _alanine_frames(4))
    out = write_comparison("alanine_dipeptide", project, root, ["random"], {"random": {}}, {})
    cov = out["methods"]["random"]["ramachandran_coverage"]
    assert 0.0 < cov < 1.0
    assert (project / "data/08_reporting/benchmark_alanine_dipeptide_ramachandran.png").exists()
    # the same system without the key: no coverage
    params = load_parameters(project)
    params["systems"]["alanine_dipeptide"].pop("reporting")
    out = write_comparison("alanine_dipeptide", project, root, ["random"], {"random": {}}, {},
                           params=params)
    assert "ramachandran_coverage" not in out["methods"]["random"]


def test_a_crystal_comparison_reports_the_volumes_its_walkers_explored(project):
    root = Path("data/benchmark/mil53_al")
    lp = read(PROJECT / "data/01_raw/mil53_al/lp.extxyz")
    v_lp, v_np = lp.get_volume(), read(PROJECT / "data/01_raw/mil53_al/np.extxyz").get_volume()
    # per-volume errors: the per-subset energy and stress MAE reach the comparison too
    for method, scales in (("unbiased_gf_maxdet", [1.0, 0.98]), ("biased_gf_maxdet",
                                                                 [1.0, 0.9, 0.75, 0.68])):
        curve = pd.DataFrame({"iteration": [0, 1], "n_labels": [24, 32],
                              "test/force_mae_ev_per_a": [0.3, 0.2],
                              "test/stress_mae_gpa": [0.5, 0.4],
                              "test/np/energy_mae_mev_per_atom": [40.0, 30.0],
                              "test/np/stress_mae_gpa": [0.9, 0.7]})
        camp = campaign_catalog(project, root, method)
        camp.save("learning_curve", curve)
        frames = []
        for f in scales:
            a = lp.copy()
            a.set_cell(lp.cell.array * f ** (1 / 3), scale_atoms=True)
            frames.append(a)
        camp.save("iter_00.candidates", frames)
    params = load_parameters(project)
    methods = params["benchmark"]["systems"]["mil53_al"]["methods"]
    assert methods == ["unbiased_gf_maxdet", "biased_gf_maxdet"]  # the system's own methods
    out = write_comparison("mil53_al", project, root, methods, params["benchmark"]["methods"],
                           {}, params=params)
    plain, biased = (out["methods"][m]["explored_volume"] for m in methods)
    assert plain["form_volumes"] == pytest.approx({"lp": v_lp, "np": v_np})
    assert plain["reached"] == {"lp": True, "np": False}
    assert biased["reached"] == {"lp": True, "np": True}
    assert biased["min"] == pytest.approx(0.68 * v_lp) and biased["max"] == pytest.approx(v_lp)
    assert biased["nearest_form_fraction"]["np"] == pytest.approx(0.5)  # 0.75 and 0.68 · V_lp
    final = out["methods"]["biased_gf_maxdet"]["final"]
    assert final["np_stress_mae_gpa"] == 0.7 and final["stress_mae_gpa"] == 0.4
    assert final["np_energy_mae_mev_per_atom"] == 30.0
    agg = out["aggregate"]["methods"]["biased_gf_maxdet"]
    assert agg["explored_volume_A3"]["min"]["mean"] == pytest.approx(0.68 * v_lp)
    assert "nearest np" in markdown_summary(out)
    assert (project / "data/08_reporting/benchmark_mil53_al_volumes.png").exists()


def test_list_overrides_reach_kedro_run_as_interpolations(project):
    from omegaconf import OmegaConf

    from reactive_al.settings import config_loader

    params = load_parameters(project)
    args = campaign_params(params, "mil53_al", Path("data/benchmark/mil53_al"), 0,
                           "biased_gf_maxdet")
    key = "selection.walkers.pressures_bar"
    assert args[key] == "${benchmark.systems.mil53_al.params." + key + "}"
    runtime = OmegaConf.to_container(OmegaConf.from_dotlist(param_arg(args).split(",")))
    resolved = config_loader(project, None, runtime)["parameters"]
    assert resolved["selection"]["walkers"]["pressures_bar"] == [-2500, 0, 2500]
    assert resolved["selection"]["walkers"]["bias"]["enabled"] is True


def test_console_script_has_the_benchmark_subcommand(monkeypatch, capsys):
    scripts = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["reactive-al"] == "reactive_al.__main__:main"
    monkeypatch.setattr(sys, "argv", ["reactive-al", "benchmark", "--help"])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 0
    usage = capsys.readouterr().out
    assert "reactive-al benchmark" in usage and "--system" in usage and "--parallel" in usage


def test_console_script_without_subcommand_is_kedro_run(monkeypatch):
    calls = []
    monkeypatch.setattr(cli, "configure_project", lambda name: None)
    monkeypatch.setattr(cli, "find_run_command",
                        lambda name: lambda *a, **kw: calls.append((a, kw)))
    monkeypatch.setattr(sys, "argv", ["reactive-al", "run", "--pipelines", "training"])
    cli.main()
    monkeypatch.setattr(sys, "argv", ["reactive-al", "--pipelines", "training"])
    cli.main()
    assert calls[0][1]["args"] == ["--pipelines", "training"]
    assert "args" not in calls[1][1]  # kedro run reads sys.argv itself, as before


# --- replicate seeds, levels, budgets -------------------------------------------------------

N_LABELS = [16, 24, 32]
OFFSETS = {0: -0.02, 1: 0.0, 2: 0.02}  # three seeds: the same line shifted up and down


def _linear_result(maes, wall=None, thermal=None):
    """A finished campaign's method_result from a learning curve of force MAEs (eV/Å)."""
    table = pd.DataFrame({"n_labels": N_LABELS, "test/force_mae_ev_per_a": maes,
                          "test/path/force_mae_ev_per_a": maes,
                          "test/thermal_300K/force_mae_ev_per_a": thermal or maes,
                          "test/energy_mae_mev_per_atom": [10 * m for m in maes]})
    res = method_result(table, True, [])
    res["wall_time_s"] = wall
    return res


def _three_seeds():
    by_seed = {}
    for s, off in OFFSETS.items():
        by_seed[s] = {
            "random": _linear_result([0.30 + off, 0.20 + off, 0.10 + off], wall=100.0 * (s + 1)),
            "smart": _linear_result([0.30 + off, 0.10 + off, 0.05 + off], wall=60.0)}
    return by_seed


def test_seed_aggregation_of_linear_curves_has_the_known_statistics():
    agg = aggregate_seeds(_three_seeds())
    rnd = agg["methods"]["random"]
    assert rnd["seeds"] == [0, 1, 2] and rnd["n_labels"] == N_LABELS
    mae = rnd["curves"]["force_mae_ev_per_a"]
    assert mae["mean"] == pytest.approx([0.30, 0.20, 0.10])
    assert mae["std"] == pytest.approx([0.02, 0.02, 0.02])  # ddof=1 of (-0.02, 0, +0.02)
    assert mae["min"] == pytest.approx([0.28, 0.18, 0.08])
    assert mae["max"] == pytest.approx([0.32, 0.22, 0.12])
    assert mae["n"] == [3, 3, 3]
    assert mae["per_seed"]["2"] == pytest.approx([0.32, 0.22, 0.12])
    # per subset and energy, the same statistics
    assert rnd["curves"]["thermal_300K_force_mae_ev_per_a"]["mean"] == pytest.approx(mae["mean"])
    assert rnd["curves"]["energy_mae_mev_per_atom"]["std"] == pytest.approx([0.2] * 3)
    assert rnd["final"]["force_mae_ev_per_a"]["mean"] == pytest.approx(0.10)
    wall = rnd["wall_time_s"]
    assert wall["per_seed"] == {"0": 100.0, "1": 200.0, "2": 300.0}
    assert (wall["mean"], wall["std"], wall["min"], wall["max"]) == pytest.approx(
        (200.0, 100.0, 100.0, 300.0))


def test_labels_to_reach_random_mean_final_error_per_seed_with_spread():
    agg = aggregate_seeds(_three_seeds())
    assert agg["reference_mean_final_force_mae_ev_per_a"] == pytest.approx(0.10)
    need = agg["methods"]["smart"]["labels_to_reach_reference_final"]
    # smart's seeds cross 0.10 at 16 + 8 * 0.18/0.20, exactly 24, and 24 + 8 * 0.02/0.05
    per_seed = [16 + 8 * 0.9, 24.0, 24 + 8 * 0.4]
    assert [need["per_seed"][str(s)] for s in OFFSETS] == pytest.approx(per_seed)
    assert need["mean"] == pytest.approx(np.mean(per_seed))
    assert need["std"] == pytest.approx(np.std(per_seed, ddof=1))
    assert (need["min"], need["max"], need["n"]) == pytest.approx((23.2, 27.2, 3))
    frac = agg["methods"]["smart"]["acquired_fraction_of_reference"]
    assert frac["mean"] == pytest.approx((np.mean(per_seed) - 16) / 16)
    # random's seeds against their own mean: seed 0 gets below it before 32 labels, seed 2
    # never (left out of the statistics)
    rnd = agg["methods"]["random"]["labels_to_reach_reference_final"]
    assert rnd["per_seed"]["0"] == pytest.approx(24 + 8 * 0.08 / 0.1)
    assert rnd["per_seed"]["2"] is None and rnd["n"] < 3


def test_one_seed_has_no_std_and_missing_values_are_left_out():
    assert spread({0: 1.0})["std"] is None
    st = spread({0: 1.0, 1: None, 2: float("nan"), 3: 3.0})
    assert (st["n"], st["mean"], st["std"]) == pytest.approx((2, 2.0, np.sqrt(2)))
    assert st["per_seed"] == {"0": 1.0, "1": None, "2": None, "3": 3.0}
    agg = aggregate_seeds({0: _three_seeds()[0]})
    assert agg["methods"]["smart"]["curves"]["force_mae_ev_per_a"]["std"] == [None] * 3
    panels, bands = learning_curve_bands(agg)
    assert bands == {} and list(panels["test force MAE (eV/Å)"]) == ["random", "smart"]


def test_bands_are_mean_plus_minus_std_and_drawn():
    from matplotlib.collections import PolyCollection

    from reactive_al.evaluation import plots

    panels, bands = learning_curve_bands(aggregate_seeds(_three_seeds()))
    n, lo, hi = bands["test force MAE (eV/Å)"]["random"]
    assert n == N_LABELS and lo == pytest.approx([0.28, 0.18, 0.08])
    assert hi == pytest.approx([0.32, 0.22, 0.12])
    fig = plots.learning_curves(panels, bands=bands)
    shaded = [c for c in fig.axes[0].collections if isinstance(c, PolyCollection)]
    assert len(shaded) == 2  # one band per method


def test_seed_parameters_are_derived_per_seed_and_seed_0_keeps_the_defaults():
    from reactive_al.nested import get_path
    from reactive_al.settings import load_parameters

    params = load_parameters(PROJECT)
    names = params["benchmark"]["seed_parameters"]
    assert {"data_engineering.seed", "training.fit.seed", "selection.seed"} <= set(names)
    assert seed_overrides(params, 0, names) == {}
    one, two = seed_overrides(params, 1, names), seed_overrides(params, 2, names)
    assert set(one) == set(two) == set(names)
    for name in names:
        assert one[name] != two[name] != get_path(params, name, 0)
        assert 0 <= one[name] < 2**31
    assert len(set(one.values())) == len(names)  # no two parameters share a stream
    assert seed_overrides(params, 1, names) == one  # deterministic


def test_seed_0_runs_with_todays_parameters_and_other_seeds_share_test_set(project):
    from reactive_al.settings import load_parameters

    params = load_parameters(project)
    root = Path("data/benchmark/sn2_cl_ch3cl")
    stage = campaign_params(params, "sn2_cl_ch3cl", root, 0)
    # the system's benchmark overrides (its larger held-out set), nothing else
    system = flatten(params["benchmark"]["systems"]["sn2_cl_ch3cl"]["params"], sep=".")
    assert system["data_engineering.test.n_displaced"] == 6
    assert stage == {"system": "sn2_cl_ch3cl", "data_root": str(root), "seed_root": str(root),
                     **system}
    run = campaign_params(params, "sn2_cl_ch3cl", root, 0, "random")
    assert run == {**stage, "campaign_root": str(root / "random"),
                   "selection.strategy": "random"}
    run1 = campaign_params(params, "sn2_cl_ch3cl", root, 1, "random")
    assert run1["data_root"] == str(root) and run1["seed_root"] == str(root / "seed_1")
    assert run1["campaign_root"] == str(root / "seed_1/random")
    assert run1["selection.seed"] != params["selection"]["seed"]

    def where(seed, name):
        ds = campaign_catalog(project, root, "random", seed=seed).get(name)
        return Path(ds._describe()["filepath"])

    # the unlabeled test pool too: a seed's stage finds it and does not run its MD again
    for name in ("test_set", "reference_path", "reference_path_stats", "test_label_failures",
                 "test_pool", "test_pool_md_failures", "test_set_stats"):
        assert where(0, name) == where(1, name) == project / root / where(0, name).relative_to(
            project / root)
    for name in ("initial_pool", "labeled_set_0", "iter_00.metrics", "iter_00.committee",
                 "initial_label_failures", "md_seeds"):
        assert where(1, name) == project / root / "seed_1" / where(0, name).relative_to(
            project / root)
    assert where(1, "learning_curve").is_relative_to(project / root / "seed_1/random")
    # a plain `kedro run` keeps everything under data/
    default = campaign_catalog(project, Path("data"))
    assert default.get("labeled_set_0")._describe()["filepath"].endswith(
        "data/03_primary/labeled_set_0.extxyz")


def test_level_override_replaces_the_whole_level_of_theory(project):
    from omegaconf import OmegaConf

    from reactive_al.oracles import parse_level
    from reactive_al.oracles.xtb import XTBLevel
    from reactive_al.settings import config_loader, load_parameters

    params = load_parameters(project)
    root = Path("data/benchmark") / comparison_name("sn2_cl_ch3cl", "xtb")
    assert root.name == "sn2_cl_ch3cl_xtb" and comparison_name("sn2_cl_ch3cl") == "sn2_cl_ch3cl"
    args = campaign_params(params, "sn2_cl_ch3cl", root, 0, "committee", level="xtb")
    # what `kedro run --params` makes of the argument string
    runtime = OmegaConf.to_container(OmegaConf.from_dotlist(param_arg(args).split(",")))
    resolved = config_loader(project, None, runtime)["parameters"]
    spec = resolved["systems"]["sn2_cl_ch3cl"]
    assert spec["level_of_theory"] == {"program": "xtb", "method": "gfn2-xtb"}
    assert spec["charge"] == -1  # the rest of the system as it is
    level = parse_level(spec["level_of_theory"], "test", ["Cl", "C", "H"])
    assert isinstance(level, XTBLevel) and level.method == "gfn2-xtb"
    assert resolved["selection"]["uncertainty"]["method"] == "committee"
    with pytest.raises(ValueError, match="unknown level 'dft9'"):
        campaign_params(params, "sn2_cl_ch3cl", root, 0, level="dft9")


def test_budget_comes_from_the_arguments_else_the_benchmark_parameters(project):
    params = {"benchmark": {"budget": {"n_iterations": 16, "batch_size": None}},
              "active_learning": {"n_iterations": 5}, "selection": {"batch_size": 8}}
    assert budget_overrides(params) == {"active_learning.n_iterations": 16}
    assert budget_overrides(params, 4, 2) == {"active_learning.n_iterations": 4,
                                              "selection.batch_size": 2}
    (project / ROOT).mkdir(parents=True)
    _check_budget(project, ROOT, params, budget_overrides(params))
    assert json.loads((project / ROOT / "budget.json").read_text()) == {"n_iterations": 16,
                                                                        "batch_size": 8}
    _check_budget(project, ROOT, params, budget_overrides(params))  # the same: fine
    with pytest.raises(ValueError, match="budget"):
        _check_budget(project, ROOT, params, budget_overrides(params, batch_size=4))


def test_comparison_over_seeds_writes_aggregate_bands_and_table(project):
    maes = {"random": [0.30, 0.20, 0.10], "committee": [0.30, 0.10, 0.05]}
    for s, off in OFFSETS.items():
        for method, m in maes.items():
            # saved at <root>/<method> with root = the seed's directory
            _campaign(project, method, [v + off for v in m], root=seed_root(ROOT, s))
        sroot = project / seed_root(ROOT, s)
        (sroot / "wall_time_s.json").write_text(json.dumps({"random": 10.0 + s, "committee": 5.0}))
    assert campaign_catalog(project, ROOT, "committee", seed=2).exists("learning_curve")
    out = report_only("toy", project)  # finds the seed directories
    assert out["seeds"] == [0, 1, 2] and set(out["by_seed"]) == {"0", "1", "2"}
    assert out["methods"] == out["by_seed"]["0"]  # the first seed, as a single-seed report
    qbc = out["aggregate"]["methods"]["committee"]
    assert qbc["curves"]["force_mae_ev_per_a"]["std"] == pytest.approx([0.02] * 3)
    assert qbc["wall_time_s"]["per_seed"] == {"0": 5.0, "1": 5.0, "2": 5.0}
    assert out["aggregate"]["methods"]["random"]["wall_time_s"]["per_seed"]["2"] == 12.0
    saved = json.loads((project / "data/08_reporting/benchmark_toy.json").read_text())
    assert saved == json.loads(json.dumps(out))
    assert "## Over seeds 0, 1, 2" in markdown_summary(out)
    assert "0.050 ± 0.020 [0.030, 0.070] (n=3)" in markdown_summary(out)
    assert (project / "data/08_reporting/benchmark_toy_learning_curves.png").exists()
    # two seeds only, and a level: its own report name
    out = write_comparison("toy", project, ROOT, ["random", "committee"],
                           {"random": {}, "committee": {}}, {}, seeds=[0, 1], level="xtb")
    assert out["name"] == "toy_xtb" and out["level_of_theory"] == {"program": "xtb",
                                                                    "method": "gfn2-xtb"}
    assert out["aggregate"]["methods"]["committee"]["seeds"] == [0, 1]
    assert (project / "data/08_reporting/benchmark_toy_xtb.json").exists()


def test_cli_has_seed_level_and_budget_options(capsys):
    from reactive_al.benchmark import main

    with pytest.raises(SystemExit):
        main(["--help"])
    usage = capsys.readouterr().out
    for flag in ("--seeds", "--level", "--iterations", "--batch-size"):
        assert flag in usage
