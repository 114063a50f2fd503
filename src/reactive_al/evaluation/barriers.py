"""Barrier heights and reaction energies: model against the QM reference path.

Units: energies eV; barrier errors kcal/mol, the unit in which chemical accuracy (1 kcal/mol)
is stated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator
from scipy.interpolate import CubicSpline

if TYPE_CHECKING:
    from reactive_al.models import Committee

#: 1 eV in kcal/mol (≈ 23.0605)
EV_TO_KCAL_MOL = 1.0 / (units.kcal / units.mol)


def barrier_and_reaction_energy(path_energies: Sequence[float] | np.ndarray) -> dict[str, Any]:
    """Forward barrier and reaction energy (eV) of a reactant → product energy profile.

    Barrier = max − first image, reaction energy = last − first; ``ts_index`` is the image of
    the maximum. Energies are along a path ordered from reactant to product.
    """
    e = np.asarray(path_energies, dtype=float).ravel()
    if e.size < 2:
        raise ValueError(f"need at least 2 path energies (reactant and product), got {e.size}")
    if not np.all(np.isfinite(e)):
        raise ValueError("path energies contain non-finite values")
    ts = int(np.argmax(e))
    return {"barrier_ev": float(e[ts] - e[0]), "reaction_energy_ev": float(e[-1] - e[0]),
            "ts_index": ts}


def barrier_error_kcal(
    model_energies: Sequence[float] | np.ndarray, reference_energies: Sequence[float] | np.ndarray
) -> dict[str, float]:
    """Signed barrier and reaction-energy errors (model − reference) in kcal/mol.

    Each profile's barrier is taken at its own maximum: a model that moves the transition state
    to another image is judged on the barrier it predicts, not on the reference's TS image.
    """
    m = np.asarray(model_energies, dtype=float).ravel()
    r = np.asarray(reference_energies, dtype=float).ravel()
    if m.shape != r.shape:
        raise ValueError(f"model and reference paths differ in length: {m.size} vs {r.size}")
    bm, br = barrier_and_reaction_energy(m), barrier_and_reaction_energy(r)
    k = EV_TO_KCAL_MOL
    return {
        "barrier_error_kcal_mol": (bm["barrier_ev"] - br["barrier_ev"]) * k,
        "reaction_energy_error_kcal_mol":
            (bm["reaction_energy_ev"] - br["reaction_energy_ev"]) * k,
        "model_barrier_kcal_mol": bm["barrier_ev"] * k,
        "reference_barrier_kcal_mol": br["barrier_ev"] * k,
    }


def path_energies(images: Sequence[Atoms], calc: Calculator) -> np.ndarray:
    """Potential energies (eV) of fixed ``images`` evaluated with one ASE calculator.

    The images are copied, so their own (e.g. reference single-point) calculators survive.
    """
    out = np.empty(len(images))
    for i, img in enumerate(images):
        a = img.copy()
        a.calc = calc
        out[i] = a.get_potential_energy()
    return out


def committee_path_energies(
    committee: Committee, images: Sequence[Atoms]
) -> tuple[np.ndarray, np.ndarray]:
    """Committee-mean energies (eV) along a path and the committee spread of the total energy.

    The spread is the members' standard deviation of the total energy (eV), not the per-atom
    ``energy_std`` of :meth:`Committee.predict`, so it can be drawn as a band on the profile.
    """
    p = committee.predict(list(images))
    members = p["energy_members"]
    ddof = 1 if members.shape[0] > 1 else 0
    return p["energy"], members.std(0, ddof=ddof)


def path_coordinate(images: Sequence[Atoms], normalize: bool = True) -> np.ndarray:
    """Cumulative Cartesian arc length along the images (Å), scaled to [0, 1] if ``normalize``."""
    pos = np.array([a.get_positions() for a in images])
    steps = np.linalg.norm((pos[1:] - pos[:-1]).reshape(len(pos) - 1, -1), axis=1)
    s = np.concatenate([[0.0], np.cumsum(steps)])
    if normalize and s[-1] > 0:
        s = s / s[-1]
    return s


def interpolate_max(
    path_coordinate: Sequence[float] | np.ndarray, energies: Sequence[float] | np.ndarray
) -> dict[str, float]:
    """Barrier refined by a cubic spline through the image energies.

    NEB images rarely sit exactly on the saddle; the spline maximum estimates the barrier
    between images. Returns ``coordinate_max`` (where the spline peaks), ``energy_max_ev`` and
    ``barrier_ev`` (spline maximum − first energy). The coordinate must increase strictly.
    """
    s = np.asarray(path_coordinate, dtype=float).ravel()
    e = np.asarray(energies, dtype=float).ravel()
    if s.shape != e.shape or s.size < 2:
        raise ValueError("path coordinate and energies need the same length (at least 2)")
    if np.any(np.diff(s) <= 0):
        raise ValueError("the path coordinate must increase strictly (duplicate images?)")
    spline = CubicSpline(s, e)
    # the maximum of a cubic piece is at an interior stationary point or at a knot
    candidates = np.concatenate([s, spline.derivative().roots(extrapolate=False)])
    candidates = candidates[(candidates >= s[0]) & (candidates <= s[-1])]
    values = spline(candidates)
    k = int(np.argmax(values))
    return {"coordinate_max": float(candidates[k]), "energy_max_ev": float(values[k]),
            "barrier_ev": float(values[k] - e[0])}


def path_profile(committee: Committee, reference_path: list[Atoms] | None) -> dict[str, Any] | None:
    """QM vs committee energies along the QM NEB reference path (None without a path).

    The committee is evaluated on the QM images themselves: ``path/qm_path_*`` metrics compare
    the highest image relative to the first, model against QM, on identical geometries.
    """
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
    from reactive_al.exploration.samplers import neb_candidates

    e_qm = np.array([a.get_potential_energy() for a in reference_path])
    qm = barrier_and_reaction_energy(e_qm)
    frames, stats = neb_candidates(reference_path[0], reference_path[-1], committee.calculator(),
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
