"""Test-set errors of a committee, overall and per reaction region (subset), and forgetting."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from ase import Atoms
from ase.units import GPa
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
    out.update(_stress_errors(p, test_set, subsets))
    out["mean_energy_uncertainty_ev_per_atom"] = float(np.mean(p["energy_std"]))
    out["mean_force_uncertainty_ev_per_a"] = float(np.mean(f_unc))
    return out


def _stress_errors(pred: dict[str, Any], test_set: list[Atoms],
                   subsets: np.ndarray) -> dict[str, float]:
    """Stress MAE (GPa, over the 9 tensor components) of the crystals with stress labels.

    Overall (``stress_mae_gpa``) and per subset; nothing for a test set without them.
    """
    has = np.array([bool(np.all(a.pbc)) and a.calc is not None and "stress" in a.calc.results
                    for a in test_set])
    if "stress" not in pred or not has.any():
        return {}
    err = np.abs(pred["stress"] - np.array([a.get_stress(voigt=False) if h else np.zeros((3, 3))
                                            for a, h in zip(test_set, has, strict=True)])) / GPa
    out = {"stress_mae_gpa": float(err[has].mean()), "n_stress": int(has.sum())}
    for name in sorted(set(subsets[has])):
        out[f"{name}/stress_mae_gpa"] = float(err[has & (subsets == name)].mean())
    return out


def forgetting_ratio(
    initial_domain_errors_by_iteration: Sequence[float] | np.ndarray,
) -> np.ndarray:
    """Error on the initial domain after each iteration relative to after the first (k = 0).

    Values above 1 mean the model got worse where it started (catastrophic forgetting) while
    it learned the new regions that exploration found.
    """
    err = np.asarray(initial_domain_errors_by_iteration, dtype=float).ravel()
    if err.size == 0:
        raise ValueError("no errors given")
    if not err[0] > 0:
        raise ValueError(f"the first iteration's error must be positive, got {err[0]}")
    return err / err[0]
