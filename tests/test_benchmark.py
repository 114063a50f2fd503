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
    _flatten,
    _param_arg,
    campaign_catalog,
    report_only,
    write_comparison,
)
from reactive_al.evaluation.comparison import labels_to_reach, markdown_summary

PROJECT = Path(__file__).resolve().parents[1]
ROOT = Path("data/benchmark/toy")


@pytest.fixture
def project(tmp_path):
    """A project with the real configuration (catalog, parameters) and no data."""
    shutil.copytree(PROJECT / "conf/base", tmp_path / "conf/base")
    (tmp_path / "conf/local").mkdir()
    return tmp_path


def test_labels_to_reach_interpolates_between_iterations():
    curve = pd.DataFrame({"n_labels": [10, 20, 30], "force_mae_ev_per_a": [0.4, 0.2, 0.1]})
    assert labels_to_reach(curve, 0.3) == pytest.approx(15.0)
    assert labels_to_reach(curve, 0.1) == pytest.approx(30.0)
    assert labels_to_reach(curve, 0.5) == 10.0
    assert labels_to_reach(curve, 0.05) is None


def test_method_overrides_become_nested_kedro_params():
    flat = _flatten({"selection": {"strategy": "max_det", "walkers": {"bias": {"enabled": True}}}})
    assert flat == {"selection.strategy": "max_det", "selection.walkers.bias.enabled": True}
    assert _param_arg(flat) == "selection.strategy=max_det,selection.walkers.bias.enabled=true"


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
    params = {"systems": {"alanine_dipeptide": {"reactant": "x.xyz"}}}
    out = write_comparison("alanine_dipeptide", project, root, ["random"], {"random": {}}, {},
                           params=params)
    assert "ramachandran_coverage" not in out["methods"]["random"]


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
