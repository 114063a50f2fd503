"""Metrics that test the science, not just the fit: barriers, calibration, forgetting, stability.

Pure functions on arrays, ASE atoms and ASE calculators (no Kedro). Units: energies eV,
distances Å, forces eV/Å, angles degrees; barrier errors are also given in kcal/mol, the unit
in which chemical accuracy (1 kcal/mol) is stated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
from ase.neighborlist import natural_cutoffs, neighbor_list
from scipy.interpolate import CubicSpline
from scipy.stats import norm, spearmanr

from reactive_al.exploration import WalkerConfig, frame_is_broken

if TYPE_CHECKING:
    from reactive_al.models import Committee

#: 1 eV in kcal/mol (≈ 23.0605)
EV_TO_KCAL_MOL = 1.0 / (units.kcal / units.mol)


# -- barriers and reaction energies ----------------------------------------------------------
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


# -- calibration of the committee uncertainty ------------------------------------------------
def _errors_sigma(errors: np.ndarray, sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    e = np.abs(np.asarray(errors, dtype=float)).ravel()
    s = np.broadcast_to(np.asarray(sigma, dtype=float), np.shape(errors)).ravel()
    if e.size == 0:
        raise ValueError("no errors given")
    if np.any(s <= 0) or not np.all(np.isfinite(s)):
        raise ValueError("uncertainties must be finite and positive")
    return e, s


def spearman(u: Sequence[float] | np.ndarray, err: Sequence[float] | np.ndarray) -> float:
    """Spearman rank correlation of uncertainty vs error (NaN when undefined).

    Undefined means fewer than 3 points or a constant input: a rank correlation of a constant
    says nothing, and NaN keeps that visible in a metrics table.
    """
    u, err = np.asarray(u, dtype=float).ravel(), np.asarray(err, dtype=float).ravel()
    if u.shape != err.shape:
        raise ValueError(f"uncertainties and errors differ in length: {u.size} vs {err.size}")
    if u.size < 3 or np.ptp(u) == 0 or np.ptp(err) == 0:
        return float("nan")
    return float(spearmanr(u, err)[0])


def interval_coverage(
    errors: np.ndarray, sigma: np.ndarray | float, nominal: float = 0.95
) -> float:
    """Fraction of errors inside the two-sided Gaussian interval ±z·σ of level ``nominal``.

    z = Φ⁻¹((1 + nominal)/2), e.g. 1.96 for 95 %; a calibrated σ gives a fraction ≈ nominal.
    """
    if not 0 < nominal < 1:
        raise ValueError(f"nominal level must be in (0, 1), got {nominal}")
    e, s = _errors_sigma(errors, sigma)
    z = norm.ppf(0.5 + nominal / 2)
    return float(np.mean(e <= z * s))


def calibration_curve(
    errors: np.ndarray, sigma: np.ndarray | float, n_levels: int = 99
) -> tuple[np.ndarray, np.ndarray]:
    """Expected vs observed coverage of Gaussian ±z·σ intervals at ``n_levels`` levels in (0, 1).

    Levels are p_k = k/(n_levels + 1); observed is the fraction of |error| ≤ Φ⁻¹((1 + p)/2)·σ.
    A curve below the diagonal means overconfident σ (too small), above means underconfident.
    """
    if n_levels < 1:
        raise ValueError(f"need at least one level, got {n_levels}")
    e, s = _errors_sigma(errors, sigma)
    expected = np.arange(1, n_levels + 1) / (n_levels + 1)
    z = norm.ppf(0.5 + expected / 2)
    ratio = np.sort(e / s)
    observed = np.searchsorted(ratio, z, side="right") / ratio.size
    return expected, observed


def miscalibration_area(
    errors: np.ndarray, sigma: np.ndarray | float, n_levels: int = 99
) -> float:
    """Area between the observed-vs-expected coverage curve and the diagonal (0 = calibrated).

    Trapezoidal over the levels of :func:`calibration_curve` plus the end points (0, 0) and
    (1, 1), which every interval family passes through; the maximum possible area is 0.5.
    """
    expected, observed = calibration_curve(errors, sigma, n_levels)
    x = np.concatenate([[0.0], expected, [1.0]])
    gap = np.abs(np.concatenate([[0.0], observed - expected, [0.0]]))
    return float(np.trapezoid(gap, x))


# -- forgetting ------------------------------------------------------------------------------
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


# -- MD stability ----------------------------------------------------------------------------
def steps_until_unphysical(
    atoms: Atoms, calc: Calculator, temperature_K: float, max_steps: int, min_distance: float,
    max_force: float, rng: np.random.Generator, timestep_fs: float = 0.5,
    friction_per_fs: float = 0.02,
) -> int:
    """Langevin MD step at which a frame first becomes unphysical, or ``max_steps`` if never.

    Unphysical means two atoms closer than ``min_distance`` (Å) or an atomic force norm above
    ``max_force`` (eV/Å), the same test the exploration walkers use; the start frame is not
    tested, so the earliest possible answer is step 1. ``fixcm=False`` as in the walkers: with
    ASE's centre-of-mass fix a small molecule runs far hotter than the thermostat target.
    """
    cfg = WalkerConfig(min_distance=min_distance, max_force=max_force)
    a = atoms.copy()
    a.pbc = False
    a.calc = calc
    MaxwellBoltzmannDistribution(a, temperature_K=temperature_K, rng=rng)
    Stationary(a)
    dyn = Langevin(a, timestep=timestep_fs * units.fs, temperature_K=temperature_K,
                   friction=friction_per_fs / units.fs, fixcm=False, rng=rng)
    for step in range(1, max_steps + 1):
        dyn.run(1)
        if frame_is_broken(a, a.get_forces(), cfg):
            return step
    return max_steps


def md_stability(
    starts: Sequence[Atoms], calc: Calculator, temperature_K: float, n_walkers: int,
    max_steps: int = 1000, min_distance: float = 0.6, max_force: float = 25.0,
    rng: np.random.Generator | None = None, timestep_fs: float = 0.5,
) -> dict[str, Any]:
    """Steps until unphysical for ``n_walkers`` Langevin walkers, cycling over ``starts``.

    Returns ``median_steps``, ``all_steps`` (per walker), ``fraction_stable`` (walkers that
    reached ``max_steps``) and ``max_steps``; the median is robust to a single lucky walker.
    """
    if not starts:
        raise ValueError("no start structures given")
    if n_walkers < 1:
        raise ValueError(f"need at least one walker, got {n_walkers}")
    rng = rng if rng is not None else np.random.default_rng(0)
    steps = [steps_until_unphysical(starts[i % len(starts)], calc, temperature_K, max_steps,
                                    min_distance, max_force, rng, timestep_fs)
             for i in range(n_walkers)]
    arr = np.array(steps)
    return {"median_steps": float(np.median(arr)), "all_steps": [int(s) for s in steps],
            "fraction_stable": float(np.mean(arr >= max_steps)), "max_steps": int(max_steps)}


# -- Ramachandran coverage (alanine dipeptide) -----------------------------------------------
def _wrap_deg(angle: np.ndarray | float) -> np.ndarray:
    return (np.asarray(angle, dtype=float) + 180.0) % 360.0 - 180.0


def dihedral_phi_psi(
    atoms: Atoms, phi_idx: Sequence[int], psi_idx: Sequence[int]
) -> tuple[float, float]:
    """Backbone dihedrals (φ, ψ) in degrees wrapped to [−180, 180) (IUPAC sign, as ASE)."""
    if len(phi_idx) != 4 or len(psi_idx) != 4:
        raise ValueError("phi_idx and psi_idx must each hold 4 atom indices")
    phi = atoms.get_dihedral(*[int(i) for i in phi_idx])
    psi = atoms.get_dihedral(*[int(i) for i in psi_idx])
    return float(_wrap_deg(phi)), float(_wrap_deg(psi))


def phi_psi_of_frames(
    frames: Sequence[Atoms], phi_idx: Sequence[int], psi_idx: Sequence[int]
) -> np.ndarray:
    """(φ, ψ) in degrees of every frame, shape [n_frames, 2]."""
    return np.array([dihedral_phi_psi(a, phi_idx, psi_idx) for a in frames],
                    dtype=float).reshape(-1, 2)


def quadtree_level_fractions(phi_psi_deg: np.ndarray, depth: int = 5) -> np.ndarray:
    """Fraction of the 4^h cells over [−180°, 180°]² visited at each level h = 1..depth."""
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    pts = np.asarray(phi_psi_deg, dtype=float).reshape(-1, 2)
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    fractions = np.zeros(depth)
    if pts.size == 0:
        return fractions
    # +180° is the same angle as −180° but callers may not wrap; clip keeps it in the last cell
    unit = np.clip((pts + 180.0) / 360.0, 0.0, 1.0)
    for h in range(1, depth + 1):
        n = 2**h
        cells = np.minimum((unit * n).astype(np.int64), n - 1)
        n_visited = np.unique(cells[:, 0] * n + cells[:, 1]).size
        fractions[h - 1] = n_visited / 4**h
    return fractions


def quadtree_coverage(phi_psi_deg: np.ndarray, depth: int = 5) -> float:
    """Quadtree coverage of the Ramachandran plane in [0, 1].

    Level h (1..depth) splits [−180°, 180°]² into 4^h cells; every visited cell adds 1/4^h and
    the total is divided by ``depth``. Coarse levels reward reaching new basins, fine levels
    reward filling them, so one long stay in a single basin scores low.
    """
    return float(np.mean(quadtree_level_fractions(phi_psi_deg, depth)))


def alanine_dipeptide_phi_psi_indices(
    atoms: Atoms,
) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    """Atom indices of φ (C(=O)–N–Cα–C) and ψ (N–Cα–C–N) of Ace-Ala-NMe from connectivity.

    Bonds come from ASE's covalent radii (``natural_cutoffs``, 20 % margin), so the atom order
    of the file does not matter. Cα is the carbon bonded to an amide N and to a carbonyl C,
    where that N also belongs to the preceding peptide bond and that C starts the next one.
    """
    sym = atoms.get_chemical_symbols()
    # bare radii sums miss real bonds (C–H 1.09 Å vs 0.76 + 0.31 Å); a 20 % margin still stays
    # well below 1–3 distances (≥ 1.7 Å)
    i, j = neighbor_list("ij", atoms, natural_cutoffs(atoms, mult=1.2))
    nbrs: dict[int, set[int]] = {k: set() for k in range(len(atoms))}
    for a, b in zip(i, j, strict=True):
        nbrs[int(a)].add(int(b))

    def bonded(k: int, element: str) -> list[int]:
        return sorted(n for n in nbrs[k] if sym[n] == element)

    carbonyl = {k for k in range(len(atoms))
                if sym[k] == "C" and bonded(k, "O") and bonded(k, "N")}
    found = []
    for ca in range(len(atoms)):
        if sym[ca] != "C" or ca in carbonyl:
            continue
        for n in bonded(ca, "N"):
            prev_c = [c for c in bonded(n, "C") if c in carbonyl]
            for c in bonded(ca, "C"):
                if c not in carbonyl:
                    continue
                next_n = [m for m in bonded(c, "N") if m != n]
                if prev_c and next_n:
                    found.append(((prev_c[0], n, ca, c), (n, ca, c, next_n[0])))
    if len(found) != 1:
        raise ValueError(f"expected one Cα between two peptide bonds (Ace-Ala-NMe), "
                         f"found {len(found)}")
    return found[0]
