"""Figures for the science evaluation: parity, learning curves, profiles, calibration, coverage.

Every function returns a :class:`matplotlib.figure.Figure` and never shows it, so figures can
be saved by Kedro's matplotlib dataset or logged to MLflow on a headless machine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from reactive_al.evaluation.ramachandran import quadtree_coverage

_DEFAULT_UNITS = {"energy": "eV", "force": "eV/Å"}


def _flat(values: np.ndarray | Sequence[np.ndarray] | Sequence[float]) -> np.ndarray:
    """Concatenate per-frame arrays (forces of molecules of different sizes) into one vector."""
    if isinstance(values, np.ndarray):
        return values.astype(float).ravel()
    if len(values) == 0:
        return np.zeros(0)
    return np.concatenate([np.asarray(v, dtype=float).ravel() for v in values])


def parity_plot(
    ref: np.ndarray | Sequence[np.ndarray], pred: np.ndarray | Sequence[np.ndarray],
    quantity: str = "energy", units: str | None = None,
) -> Figure:
    """Model vs reference scatter with the y = x line and MAE/RMSE in the corner.

    ``quantity`` is ``"energy"`` or ``"force"``; forces may be a list of [N_i, 3] arrays, and
    every Cartesian component becomes one point. ``units`` defaults to eV or eV/Å.
    """
    if quantity not in _DEFAULT_UNITS:
        raise ValueError(f"quantity must be 'energy' or 'force', got {quantity!r}")
    units = units or _DEFAULT_UNITS[quantity]
    r, p = _flat(ref), _flat(pred)
    if r.shape != p.shape:
        raise ValueError(f"reference and prediction differ in size: {r.size} vs {p.size}")
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    ax.scatter(r, p, s=6, alpha=0.5, edgecolors="none")
    if r.size:
        lo, hi = float(min(r.min(), p.min())), float(max(r.max(), p.max()))
        pad = 0.05 * (hi - lo or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=1, label="y = x")
        err = p - r
        ax.text(0.04, 0.96, f"MAE {np.mean(np.abs(err)):.3g} {units}\n"
                f"RMSE {np.sqrt(np.mean(err**2)):.3g} {units}\nn = {r.size}",
                transform=ax.transAxes, va="top", fontsize=8)
    ax.set_xlabel(f"reference {quantity} ({units})")
    ax.set_ylabel(f"model {quantity} ({units})")
    ax.set_aspect("equal", adjustable="datalim")
    fig.tight_layout()
    return fig


def learning_curves(
    panels: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]],
    log_y: bool = False,
    bands: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[float]]]]
    | None = None,
) -> Figure:
    """Test errors vs QM labels: one axes per panel, one line per curve (the one such plot).

    ``panels`` maps a y-axis label (e.g. ``"test force MAE (eV/Å)"``) to curves, each a name
    (a strategy, or a test subset) → ``(n_labels, error)``. Used by the campaign's learning
    curve and by the comparison of query methods. ``bands`` (same keys, e.g. mean ± std over
    seeds) → ``(n_labels, low, high)`` in the panel's units, shaded in the curve's colour.
    """
    n = max(1, len(panels))
    fig, axes = plt.subplots(1, n, figsize=(4.5 * n, 3.6), squeeze=False)
    for ax, (ylabel, curves) in zip(axes[0], panels.items(), strict=False):
        for name, (n_labels, err) in curves.items():
            (line,) = ax.plot(np.asarray(n_labels, dtype=float), np.asarray(err, dtype=float),
                              marker="o", label=name)
            band = ((bands or {}).get(ylabel) or {}).get(name)
            if band is not None:
                ax.fill_between(*(np.asarray(b, dtype=float) for b in band),
                                color=line.get_color(), alpha=0.2, lw=0)
        ax.set_xlabel("QM labels")
        ax.set_ylabel(ylabel)
        if log_y:
            ax.set_yscale("log")
        if curves:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def energy_profile(
    coord: Sequence[float] | np.ndarray, e_ref: Sequence[float] | np.ndarray,
    e_model: Sequence[float] | np.ndarray, sigma_model: Sequence[float] | np.ndarray | None = None,
    relative: bool = True, coord_label: str = "reaction coordinate",
) -> Figure:
    """QM and model energies along a path, with the model's ±2σ band if ``sigma_model`` is given.

    With ``relative`` each profile is shifted to its own first image, so the curves show the
    barrier and reaction energy each method predicts. ``sigma_model`` is the total-energy
    spread in eV (e.g. from ``committee_path_energies``), not the per-atom ``energy_std``.
    """
    s = np.asarray(coord, dtype=float)
    r = np.asarray(e_ref, dtype=float)
    m = np.asarray(e_model, dtype=float)
    if not (s.shape == r.shape == m.shape):
        raise ValueError("coordinate, reference and model energies need the same length")
    if relative:
        r, m = r - r[0], m - m[0]
    fig, ax = plt.subplots(figsize=(5.0, 3.6))
    ax.plot(s, r, "k-o", ms=4, label="QM reference")
    ax.plot(s, m, "-s", color="C1", ms=4, label="model")
    if sigma_model is not None:
        sig = np.asarray(sigma_model, dtype=float)
        ax.fill_between(s, m - 2 * sig, m + 2 * sig, color="C1", alpha=0.25, label="model ±2σ")
    ax.set_xlabel(coord_label)
    ax.set_ylabel("relative energy (eV)" if relative else "energy (eV)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def calibration_plot(
    expected: Sequence[float] | np.ndarray, observed: Sequence[float] | np.ndarray,
    label: str | None = None, area: float | None = None,
) -> Figure:
    """Observed vs expected coverage of the uncertainty intervals, with the ideal diagonal.

    Below the diagonal the uncertainty is overconfident; ``area`` (miscalibration area) is
    shown in the title when given.
    """
    fig, ax = plt.subplots(figsize=(4.0, 4.0))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="ideal")
    ax.plot(np.asarray(expected), np.asarray(observed), "-", color="C0", label=label or "model")
    ax.fill_between(np.asarray(expected), np.asarray(expected), np.asarray(observed),
                    color="C0", alpha=0.15)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("expected coverage")
    ax.set_ylabel("observed coverage")
    if area is not None:
        ax.set_title(f"miscalibration area {area:.3f}", fontsize=9)
    ax.set_aspect("equal")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def ramachandran_coverage(
    phi_psi_by_label: Mapping[str, np.ndarray], depth: int = 5,
) -> Figure:
    """Side-by-side Ramachandran maps (e.g. biased vs unbiased sampling) with quadtree coverage.

    Each panel shows visits per cell of the finest quadtree level (2^depth bins per axis) as a
    heat map, the points on top, and the coverage in its title.
    """
    n = max(1, len(phi_psi_by_label))
    fig, axes = plt.subplots(1, n, figsize=(3.8 * n, 3.8), squeeze=False)
    edges = np.linspace(-180.0, 180.0, 2**depth + 1)
    for ax, (label, pts) in zip(axes[0], phi_psi_by_label.items(), strict=False):
        pts = np.asarray(pts, dtype=float).reshape(-1, 2)
        counts, _, _ = np.histogram2d(pts[:, 0], pts[:, 1], bins=[edges, edges])
        # empty cells stay white, so unexplored regions stand out
        ax.pcolormesh(edges, edges, np.ma.masked_equal(counts.T, 0), cmap="viridis",
                      shading="flat")
        ax.scatter(pts[:, 0], pts[:, 1], s=2, c="k", alpha=0.4)
        ax.set_title(f"{label}: coverage {quadtree_coverage(pts, depth):.3f}", fontsize=9)
        ax.set_xlim(-180, 180)
        ax.set_ylim(-180, 180)
        ax.set_xticks([-180, -90, 0, 90, 180])
        ax.set_yticks([-180, -90, 0, 90, 180])
        ax.set_xlabel("φ (deg)")
        ax.set_ylabel("ψ (deg)")
        ax.set_aspect("equal")
    fig.tight_layout()
    return fig


def evaluation_figures(products: Mapping[str, Any]) -> dict[str, Figure]:
    """Parity plots, the QM-path energy profile and calibration plots (PNG name → Figure).

    ``products`` are what the evaluate node computed (nothing is recomputed here):
    ``energy_ref``/``energy_pred`` (eV/atom), ``forces_ref``/``forces_pred`` (eV/Å, per
    frame), ``profile`` (see :func:`~reactive_al.evaluation.barriers.path_profile`, or None)
    and ``calibration_curves`` (name → (expected, observed)).
    """
    figs = {
        "parity_energy.png": parity_plot(products["energy_ref"], products["energy_pred"],
                                         "energy", "eV/atom"),
        "parity_forces.png": parity_plot(products["forces_ref"], products["forces_pred"],
                                         "force"),
    }
    prof = products.get("profile")
    if prof is not None:
        figs["path_profile.png"] = energy_profile(
            prof["coord"], prof["e_ref"], prof["e_model"], prof["sigma"],
            coord_label="QM NEB path coordinate")
    for name, (expected, observed) in (products.get("calibration_curves") or {}).items():
        figs[f"calibration_{name}.png"] = calibration_plot(expected, observed, label=name)
    return figs


def comparison_figures(name: str, out: Mapping[str, Any],
                       phi_psi: Mapping[str, np.ndarray] | None = None,
                       volumes: Mapping[str, Sequence[float]] | None = None,
                       forms: Mapping[str, float] | None = None) -> dict[str, Figure]:
    """Figures of a query-method comparison (``out`` of ``reactive_al.benchmark``), by kind.

    ``learning_curves`` (mean ± std bands over several seeds); with explored ``phi_psi``
    (degrees, per method) ``ramachandran``; with explored cell ``volumes`` (Å³, per method)
    ``volumes``: their histograms, the crystal's ``forms`` (name → volume, Å³) marked.
    """
    from reactive_al.evaluation.comparison import learning_curve_bands, learning_curve_panels

    if len(out["seeds"]) > 1:
        panels, bands = learning_curve_bands(out["aggregate"])
    else:
        panels, bands = learning_curve_panels(out["methods"]), None
    fig = learning_curves(panels, bands=bands)
    for ax, label in zip(fig.axes, panels, strict=False):
        if label.startswith("NEB"):
            ax.axhline(0.0, color="k", lw=0.8)
    seeds = f", mean ± std over {len(out['seeds'])} seeds" if bands else ""
    fig.suptitle(f"{name}: query methods at equal label budget{seeds}")
    fig.tight_layout()
    figs = {"learning_curves": fig}
    maps = {m: a for m, a in (phi_psi or {}).items() if len(a)}
    if maps:
        figs["ramachandran"] = ramachandran_coverage(maps)
    vols = {m: np.asarray(v, dtype=float) for m, v in (volumes or {}).items() if len(v)}
    if vols:
        fig, ax = plt.subplots(figsize=(6.0, 3.6))
        every = np.concatenate(list(vols.values()) + [np.array(list((forms or {}).values()))])
        bins = np.linspace(every.min() - 20.0, every.max() + 20.0, 40)
        for method, v in vols.items():
            ax.hist(v, bins=bins, histtype="step", lw=1.5, label=f"{method} ({len(v)} frames)")
        for form, v in (forms or {}).items():
            ax.axvline(v, color="k", ls="--", lw=0.8)
            ax.annotate(form, (v, ax.get_ylim()[1] * 0.95), ha="center", fontsize=8)
        ax.set(xlabel="cell volume (Å³)", ylabel="explored frames",
               title=f"{name}: cell volumes the walkers explored")
        ax.legend(fontsize=8)
        fig.tight_layout()
        figs["volumes"] = fig
    return figs
