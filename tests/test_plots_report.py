"""Figures and the markdown report: right content, saveable, no display needed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from reactive_al.evaluation import calibration_curve, plots, report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _saved_png(fig: Figure, path: Path) -> bool:
    fig.savefig(path, dpi=60)
    plt.close(fig)
    return path.read_bytes()[:8] == PNG_MAGIC


def test_parity_plot_energy_and_forces(tmp_path):
    rng = np.random.default_rng(0)
    ref = rng.normal(size=20)
    fig = plots.parity_plot(ref, ref + 0.1, quantity="energy")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "reference energy (eV)"
    assert ax.get_ylabel() == "model energy (eV)"
    assert len(ax.lines) == 1  # the y = x line
    assert "MAE 0.1 eV" in ax.texts[0].get_text()
    assert _saved_png(fig, tmp_path / "parity_e.png")

    f_ref = [rng.normal(size=(3, 3)), rng.normal(size=(5, 3))]
    fig = plots.parity_plot(f_ref, [f + 0.05 for f in f_ref], quantity="force")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "reference force (eV/Å)"
    assert "n = 24" in ax.texts[0].get_text()
    assert _saved_png(fig, tmp_path / "parity_f.png")
    with pytest.raises(ValueError):
        plots.parity_plot(ref, ref, quantity="dipole")


def test_learning_curves_one_line_per_strategy(tmp_path):
    curves = {"active learning": ([10, 20, 40], [0.5, 0.3, 0.2]),
              "random": ([10, 20, 40], [0.5, 0.4, 0.35]),
              "MD only": ([10, 20, 40], [0.6, 0.5, 0.45])}
    fig = plots.learning_curves({"test force MAE (eV/Å)": curves,
                                 "test energy MAE (meV/atom)": {"random": ([10], [3.0])}},
                                log_y=True)
    assert len(fig.axes) == 2
    assert [line.get_label() for line in fig.axes[1].lines] == ["random"]
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.lines] == list(curves)
    assert ax.get_xlabel() == "QM labels"
    assert ax.get_ylabel() == "test force MAE (eV/Å)"
    assert ax.get_yscale() == "log"
    assert _saved_png(fig, tmp_path / "lc.png")


def test_energy_profile_with_band(tmp_path):
    s = np.linspace(0, 1, 7)
    e_ref = 10.0 + np.sin(np.pi * s) ** 2
    fig = plots.energy_profile(s, e_ref, e_ref + 0.05 * s, sigma_model=np.full(7, 0.02))
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.lines]
    assert labels == ["QM reference", "model"]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), e_ref - e_ref[0])
    assert len(ax.collections) == 1  # the ±2σ band
    assert ax.get_ylabel() == "relative energy (eV)"
    assert _saved_png(fig, tmp_path / "profile.png")
    fig = plots.energy_profile(s, e_ref, e_ref, relative=False)
    assert len(fig.axes[0].collections) == 0
    plt.close(fig)


def test_calibration_plot_has_diagonal(tmp_path):
    rng = np.random.default_rng(0)
    sigma = np.full(500, 0.1)
    expected, observed = calibration_curve(rng.normal(0, 0.1, 500), sigma, n_levels=19)
    fig = plots.calibration_plot(expected, observed, label="energy", area=0.012)
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.lines[0].get_xdata(), [0, 1])
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [0, 1])
    np.testing.assert_allclose(ax.lines[1].get_ydata(), observed)
    assert ax.get_xlabel() == "expected coverage"
    assert ax.get_ylabel() == "observed coverage"
    assert "0.012" in ax.get_title()
    assert _saved_png(fig, tmp_path / "calib.png")


def test_ramachandran_coverage_side_by_side(tmp_path):
    rng = np.random.default_rng(0)
    unbiased = rng.normal([-80, 60], 15, size=(200, 2))
    biased = rng.uniform(-180, 180, size=(200, 2))
    fig = plots.ramachandran_coverage({"unbiased": unbiased, "biased": biased}, depth=4)
    assert len(fig.axes) == 2
    assert [ax.get_xlabel() for ax in fig.axes] == ["φ (deg)", "φ (deg)"]
    assert fig.axes[0].get_title().startswith("unbiased: coverage")
    cov = [float(ax.get_title().rsplit(" ", 1)[1]) for ax in fig.axes]
    assert cov[1] > cov[0]
    assert _saved_png(fig, tmp_path / "rama.png")


# -- report ----------------------------------------------------------------------------------
@pytest.fixture
def report_inputs() -> dict:
    metrics = {"barrier_error_kcal_mol": 0.8312, "n_labels": 120,
               "calibration": {"miscalibration_area": 0.0421, "coverage_95": 0.93}}
    tables = {"learning curve": pd.DataFrame({"n_labels": [10, 20], "force_mae": [0.41, 0.22]}),
              "barriers": pd.DataFrame({"barrier_kcal_mol": [12.345678]},
                                       index=pd.Index(["AL"], name="strategy"))}
    figures = {"Learning curves": "figures/learning_curves.png",
               "Energy profile": Path("figures/profile.png")}
    return {"metrics": metrics, "tables": tables, "figures": figures}


@pytest.mark.parametrize("use_tabulate", [False, True])
def test_markdown_report(report_inputs, monkeypatch, use_tabulate):
    if use_tabulate and importlib.util.find_spec("tabulate") is None:
        pytest.skip("tabulate not installed")
    monkeypatch.setattr(report, "_has_tabulate", lambda: use_tabulate)
    md = report.markdown_report("SN2 evaluation", "sn2_cl_ch3cl", **report_inputs)
    assert md.startswith("# SN2 evaluation\n")
    assert "**System:** sn2_cl_ch3cl" in md
    for heading in ("## Headline numbers", "## Tables", "### learning curve", "### barriers",
                    "## Figures", "### Learning curves"):
        assert f"\n{heading}\n" in md
    assert "0.8312" in md and "120" in md
    assert "calibration/miscalibration_area" in md and "0.0421" in md
    assert "12.35" in md and "strategy" in md and "AL" in md
    assert "![Learning curves](figures/learning_curves.png)" in md
    assert "![Energy profile](figures/profile.png)" in md


def test_own_markdown_table_formatter():
    df = pd.DataFrame({"name": ["a|b", "c"], "value": [1 / 3, float("nan")], "n": [1, 2]})
    md = report.dataframe_to_markdown(df, use_tabulate=False)
    lines = md.splitlines()
    assert lines[0] == "| name | value | n |"
    assert lines[1] == "|---|---|---|"
    assert lines[2] == "| a\\|b | 0.3333 | 1 |"
    assert lines[3] == "| c | nan | 2 |"
    assert report.format_value(None) == "—"
    assert report.format_value(True) == "True"
