import json

import pandas as pd
import pytest

from reactive_al.benchmark import (
    _flatten,
    _param_arg,
    labels_to_reach,
    markdown_summary,
    write_comparison,
)


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


def _campaign(root, name, maes, path_maes=None, barrier_errors=None):
    rep = root / name / "08_reporting"
    rep.mkdir(parents=True)
    pd.DataFrame({"iteration": range(len(maes)), "n_labels": [16 + 8 * k for k in
                                                               range(len(maes))],
                  "test/force_mae_ev_per_a": maes,
                  "test/path/force_mae_ev_per_a": path_maes or maes,
                  "test/neb/barrier_error_kcal_mol": barrier_errors or [5.0] * len(maes)}
                 ).to_csv(rep / "learning_curve.csv", index=False)


def test_comparison_reports_label_fraction_against_the_random_baseline(tmp_path):
    root = tmp_path / "data/benchmark/toy"
    _campaign(root, "random", [0.30, 0.25, 0.20, 0.15])
    _campaign(root, "smart", [0.30, 0.15, 0.10, 0.08])
    defs = {"random": {"description": "r"}, "smart": {"description": "s"}}
    out = write_comparison("toy", tmp_path, root.relative_to(tmp_path), ["random", "smart"],
                           defs, {"random": 10.0, "smart": 12.0})
    smart = out["methods"]["smart"]
    # random ends at 0.15 eV/Å with 40 labels; smart gets there at 24 labels
    assert smart["labels_to_reach_reference_final"] == pytest.approx(24.0)
    assert smart["label_fraction_of_reference"] == pytest.approx(24 / 40)
    assert smart["acquired_fraction_of_reference"] == pytest.approx(8 / 24)
    assert out["methods"]["random"]["label_fraction_of_reference"] == pytest.approx(1.0)
    saved = json.loads((tmp_path / "data/08_reporting/benchmark_toy.json").read_text())
    assert saved["methods"]["smart"]["wall_time_s"] == 12.0
    assert (tmp_path / "data/08_reporting/benchmark_toy_learning_curves.png").exists()


def test_markdown_summary_lists_every_method(tmp_path):
    root = tmp_path / "data/benchmark/toy"
    _campaign(root, "random", [0.30, 0.20])
    _campaign(root, "smart", [0.30, 0.10])
    out = write_comparison("toy", tmp_path, root.relative_to(tmp_path), ["random", "smart"],
                           {"random": {}, "smart": {}}, {})
    table = markdown_summary(out)
    assert "| random | 24 | 0.200 |" in table and "| smart | 24 | 0.100 |" in table
    assert (tmp_path / "data/08_reporting/benchmark_toy.md").read_text() == table


def test_comparison_counts_labels_where_the_reaction_happens(tmp_path):
    root = tmp_path / "data/benchmark/toy"
    # equal overall curves, but "smart" learns the path region and the barrier sooner
    _campaign(root, "random", [0.30, 0.25, 0.20], path_maes=[0.40, 0.30, 0.20],
              barrier_errors=[10.0, 6.0, 0.5])
    _campaign(root, "smart", [0.30, 0.25, 0.20], path_maes=[0.40, 0.10, 0.08],
              barrier_errors=[10.0, -3.0, -0.2])
    out = write_comparison("toy", tmp_path, root.relative_to(tmp_path), ["random", "smart"],
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
