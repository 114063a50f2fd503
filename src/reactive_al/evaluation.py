"""Test-set errors of a committee, overall and per reaction region (subset)."""

from __future__ import annotations

from typing import Any

import numpy as np
from ase import Atoms
from scipy.stats import spearmanr

from reactive_al.models import Committee


def error_metrics(
    e_pred: np.ndarray, e_ref: np.ndarray, n_atoms: np.ndarray,
    f_pred: list[np.ndarray], f_ref: list[np.ndarray],
) -> dict[str, float]:
    """Energy MAE/RMSE (meV/atom) and force MAE/RMSE (eV/Å, over Cartesian components)."""
    de = (np.asarray(e_pred) - np.asarray(e_ref)) / np.asarray(n_atoms) * 1000.0
    df = np.concatenate([(p - r).ravel() for p, r in zip(f_pred, f_ref, strict=True)])
    return {
        "energy_mae_mev_per_atom": float(np.mean(np.abs(de))),
        "energy_rmse_mev_per_atom": float(np.sqrt(np.mean(de**2))),
        "force_mae_ev_per_a": float(np.mean(np.abs(df))),
        "force_rmse_ev_per_a": float(np.sqrt(np.mean(df**2))),
    }


def evaluate_committee(
    committee: Committee, test_set: list[Atoms], pred: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Errors of the committee mean on ``test_set``: overall and per ``info['subset']``.

    Also reports how well the committee spread ranks the true errors (Spearman correlation of
    energy spread vs per-atom energy error, and of the largest atomic force spread vs the
    structure's largest atomic force error).
    """
    if not test_set:
        raise ValueError("the test set is empty: nothing to evaluate")
    p = pred if pred is not None else committee.predict(test_set)
    e_ref = np.array([a.get_potential_energy() for a in test_set])
    f_ref = [a.get_forces() for a in test_set]
    n_atoms = np.array([len(a) for a in test_set])
    subsets = np.array([a.info.get("subset", "unknown") for a in test_set])
    out: dict[str, Any] = {"n_test": len(test_set)}
    out.update(error_metrics(p["energy"], e_ref, n_atoms, p["forces"], f_ref))
    for name in sorted(set(subsets)):
        idx = np.flatnonzero(subsets == name)
        sub = error_metrics(p["energy"][idx], e_ref[idx], n_atoms[idx],
                            [p["forces"][i] for i in idx], [f_ref[i] for i in idx])
        out.update({f"{name}/{k}": v for k, v in sub.items()})
        out[f"{name}/n_test"] = int(len(idx))
    e_err = np.abs(p["energy"] - e_ref) / n_atoms
    f_err = np.array([np.linalg.norm(pf - rf, axis=1).max()
                      for pf, rf in zip(p["forces"], f_ref, strict=True)])
    f_unc = np.array([s.max() for s in p["forces_std"]])
    if len(test_set) > 2:
        out["spearman_energy_uncertainty_error"] = float(spearmanr(p["energy_std"], e_err)[0])
        out["spearman_force_uncertainty_error"] = float(spearmanr(f_unc, f_err)[0])
    out["mean_energy_uncertainty_ev_per_atom"] = float(np.mean(p["energy_std"]))
    out["mean_force_uncertainty_ev_per_a"] = float(np.mean(f_unc))
    return out


def calibration_metrics(
    committee: Committee, test_set: list[Atoms], labeled_set: list[Atoms],
    pred: dict[str, Any] | None = None, gradient_features: dict[str, Any] | None = None,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """How well the committee's calibrated uncertainties describe its test errors.

    The spreads are turned into Gaussian σ by one scale fitted (maximum likelihood) on the
    committee's validation split; on the test set we report the Spearman correlation of σ with
    the error, the coverage of the nominal 95% interval and the miscalibration area, for
    per-atom force errors (RMS over x, y, z) and per-atom energy errors. Returns (metrics,
    calibration curves {"force": (expected, observed), "energy": ...}).

    With ``gradient_features`` (``enabled`` plus the ``num_features``, ``layers``, ``sigma_n``
    of :class:`~reactive_al.uncertainty.UncertaintyConfig`), the calibrated gradient-feature
    energy uncertainty of the same committee is scored the same way (``gf_energy_*``), so the
    two uncertainties are compared on one model and one test set.
    """
    from reactive_al.science_metrics import (
        calibration_curve,
        interval_coverage,
        miscalibration_area,
        spearman,
    )
    from reactive_al.uncertainty import UncertaintyConfig, UncertaintyEstimator

    est = UncertaintyEstimator(committee, labeled_set,
                               UncertaintyConfig(method="committee", calibration="gaussian_ml"))
    p = pred if pred is not None else committee.predict(test_set)
    f_err = np.concatenate([np.sqrt(((pf - a.get_forces()) ** 2).mean(1))
                            for pf, a in zip(p["forces"], test_set, strict=True)])
    f_sig = est.force_cal(np.concatenate(p["forces_std"]))
    n = np.array([len(a) for a in test_set])
    e_err = np.abs(p["energy"] - [a.get_potential_energy() for a in test_set]) / n
    e_sig = est.energy_cal(np.asarray(p["energy_std"]))
    scored = [("force", f_err, f_sig), ("energy", e_err, e_sig)]
    out = {"calibration/force_scale": est.force_cal.scale,
           "calibration/energy_scale": est.energy_cal.scale}
    gf = dict(gradient_features or {})
    if gf.pop("enabled", bool(gf)):
        gf_est = UncertaintyEstimator(
            committee, labeled_set,
            UncertaintyConfig(method="gradient_features", calibration="gaussian_ml", **gf))
        scored.append(("gf_energy", e_err, gf_est.scores(test_set)["energy"]))
        out["calibration/gf_energy_scale"] = gf_est.energy_cal.scale
    curves = {}
    for name, err, sig in scored:
        ok = sig > 0
        out[f"calibration/{name}_spearman"] = spearman(sig[ok], err[ok])
        out[f"calibration/{name}_coverage_95"] = interval_coverage(err[ok], sig[ok], 0.95)
        out[f"calibration/{name}_miscalibration_area"] = miscalibration_area(err[ok], sig[ok])
        curves[name] = calibration_curve(err[ok], sig[ok])
    return out, curves


def path_profile(committee: Committee, reference_path: list[Atoms] | None) -> dict[str, Any] | None:
    """QM vs committee energies along the QM NEB reference path (None without a path).

    The committee is evaluated on the QM images themselves: ``path/qm_path_*`` metrics compare
    the highest image relative to the first, model against QM, on identical geometries.
    """
    from reactive_al.science_metrics import (
        barrier_error_kcal,
        committee_path_energies,
        path_coordinate,
    )

    if not reference_path or len(reference_path) < 3:
        return None
    e_ref = np.array([a.get_potential_energy() for a in reference_path])
    e_model, sigma = committee_path_energies(committee, reference_path)
    err = barrier_error_kcal(e_model, e_ref)
    return {"coord": path_coordinate(reference_path), "e_ref": e_ref, "e_model": e_model,
            "sigma": sigma,
            "metrics": {"path/qm_path_barrier_error_kcal_mol": err["barrier_error_kcal_mol"],
                        "path/qm_path_model_barrier_kcal_mol": err["model_barrier_kcal_mol"]}}


def neb_barrier_metrics(
    committee: Committee, reference_path: list[Atoms], fmax: float = 0.05, steps: int = 300
) -> dict[str, Any]:
    """Barrier height and reaction energy from a climbing-image NEB on the committee mean.

    The model NEB runs between the reference's end points with as many images; its barrier
    (highest image − reactant) and reaction energy (product − reactant) are compared with the
    QM climbing-image NEB reference. Errors are signed (model − QM), in kcal/mol.
    """
    from reactive_al.exploration import neb_candidates
    from reactive_al.science_metrics import EV_TO_KCAL_MOL, barrier_and_reaction_energy

    e_qm = np.array([a.get_potential_energy() for a in reference_path])
    qm = barrier_and_reaction_energy(e_qm)
    frames, stats = neb_candidates(reference_path[0], reference_path[-1], committee.calculator,
                                   n_images=len(reference_path) - 2, fmax=fmax, steps=steps,
                                   climb=True)
    e_model = np.array(stats["neb_energies_ev"])
    model = barrier_and_reaction_energy(e_model)
    k = EV_TO_KCAL_MOL
    return {
        "neb/qm_barrier_kcal_mol": qm["barrier_ev"] * k,
        "neb/model_barrier_kcal_mol": model["barrier_ev"] * k,
        "neb/barrier_error_kcal_mol": (model["barrier_ev"] - qm["barrier_ev"]) * k,
        "neb/abs_barrier_error_kcal_mol": abs(model["barrier_ev"] - qm["barrier_ev"]) * k,
        "neb/reaction_energy_error_kcal_mol":
            (model["reaction_energy_ev"] - qm["reaction_energy_ev"]) * k,
        "neb/model_converged": bool(stats["neb_converged"]),
        "neb/model_steps": int(stats["neb_steps"]),
    }


def md_stability_metrics(
    committee: Committee, labeled_set: list[Atoms], params: dict[str, Any]
) -> dict[str, Any]:
    """MD stability of the committee: median steps until unphysical, from the wells.

    Walkers start from the first reactant- and product-subset structures of ``labeled_set``
    (any structure if it has none) and alternate between them.
    """
    from reactive_al.science_metrics import md_stability

    starts = []
    for subset in ("reactant", "product"):
        starts += [a for a in labeled_set if a.info.get("subset") == subset][:1]
    starts = starts or list(labeled_set[:1])
    out = md_stability(starts, committee.calculator(), float(params.get("temperature_K", 600)),
                       int(params["n_walkers"]), max_steps=int(params.get("max_steps", 1000)),
                       min_distance=float(params.get("min_distance", 0.6)),
                       max_force=float(params.get("max_force", 25.0)),
                       rng=np.random.default_rng(int(params.get("seed", 0))),
                       timestep_fs=float(params.get("timestep_fs", 0.5)))
    return {"md_stability/median_steps": out["median_steps"],
            "md_stability/fraction_stable": out["fraction_stable"],
            "md_stability/max_steps": out["max_steps"],
            "md_stability/temperature_K": float(params.get("temperature_K", 600))}


def evaluation_figures(
    committee: Committee, test_set: list[Atoms], labeled_set: list[Atoms] | None = None,
    reference_path: list[Atoms] | None = None,
    gradient_features: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Parity plots, the QM-path energy profile and calibration plots (PNG names → Figure).

    Calibration plots need the committee's training set (``labeled_set``);
    ``gradient_features`` adds the gradient-feature energy uncertainty's plot
    (see :func:`calibration_metrics`).
    """
    from reactive_al import plots

    p = committee.predict(test_set)
    curves = (calibration_metrics(committee, test_set, labeled_set, p, gradient_features)[1]
              if labeled_set else {})
    n = np.array([len(a) for a in test_set])
    figs = {
        "parity_energy.png": plots.parity_plot(
            np.array([a.get_potential_energy() for a in test_set]) / n, p["energy"] / n,
            "energy", "eV/atom"),
        "parity_forces.png": plots.parity_plot([a.get_forces() for a in test_set],
                                               p["forces"], "force"),
    }
    prof = path_profile(committee, reference_path)
    if prof is not None:
        figs["path_profile.png"] = plots.energy_profile(
            prof["coord"], prof["e_ref"], prof["e_model"], prof["sigma"],
            coord_label="QM NEB path coordinate")
    for name, (expected, observed) in curves.items():
        figs[f"calibration_{name}.png"] = plots.calibration_plot(expected, observed, label=name)
    return figs
