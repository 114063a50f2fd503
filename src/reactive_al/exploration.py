"""Exploration with the current model: Langevin MD walkers that produce candidate structures."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

log = logging.getLogger(__name__)


@dataclass
class WalkerConfig:
    """Langevin NVT walker settings."""

    temperatures_K: tuple[float, ...] = (300.0, 600.0)
    n_steps: int = 300
    timestep_fs: float = 0.5
    friction_per_fs: float = 0.02
    sample_every: int = 10
    min_distance: float = 0.6  # Å: closer atoms make a frame unphysical
    max_force: float = 25.0  # eV/Å: larger forces make a frame unphysical
    #: stop a walker (keeping that frame) once the calculator's calibrated atomic force
    #: uncertainty ``results['forces_std']`` (eV/Å) exceeds this; None never stops
    max_atomic_uncertainty: float | None = None


def frame_is_broken(atoms: Atoms, forces: np.ndarray, cfg: WalkerConfig) -> str | None:
    """Return why a frame is unphysical (``too_close`` / ``huge_force``), or None."""
    if len(atoms) > 1:
        d = atoms.get_all_distances()
        if d[np.triu_indices(len(atoms), 1)].min() < cfg.min_distance:
            return "too_close"
    if np.linalg.norm(forces, axis=1).max() > cfg.max_force:
        return "huge_force"
    return None


def run_walker(
    start: Atoms, calc: Calculator, temperature_K: float, cfg: WalkerConfig,
    rng: np.random.Generator, walker_id: str,
) -> tuple[list[Atoms], str, int]:
    """Run one Langevin walker; return (sampled frames, stop reason, steps run).

    ``fixcm=False``: with ASE's default centre-of-mass fix, a small molecule runs far hotter
    than the target temperature.
    """
    atoms = start.copy()
    atoms.pbc = False
    atoms.calc = calc
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)
    Stationary(atoms)
    dyn = Langevin(atoms, timestep=cfg.timestep_fs * units.fs, temperature_K=temperature_K,
                   friction=cfg.friction_per_fs / units.fs, fixcm=False, rng=rng)
    frames: list[Atoms] = []
    reason, steps = "max_steps", 0
    for steps in range(1, cfg.n_steps + 1):
        dyn.run(1)
        forces = atoms.get_forces()
        broken = frame_is_broken(atoms, forces, cfg)
        if broken:
            reason = broken
            break
        unc = calc.results.get("forces_std")
        too_uncertain = (cfg.max_atomic_uncertainty is not None and unc is not None
                         and float(np.max(unc)) > cfg.max_atomic_uncertainty)
        if too_uncertain or steps % cfg.sample_every == 0:
            frame = Atoms(atoms.get_atomic_numbers(), atoms.get_positions(), pbc=False)
            frame.info = {k: v for k, v in start.info.items()
                          if k in ("charge", "multiplicity", "system")}
            frame.info.update({
                "origin": f"md/{start.info.get('origin', 'seed')}",
                "walker": walker_id,
                "md_step": steps,
                "temperature_K": float(temperature_K),
                "kinetic_temperature_K": float(atoms.get_temperature()),
            })
            if unc is not None:
                frame.info["walker_max_atomic_uncertainty"] = float(np.max(unc))
            frames.append(frame)
        if too_uncertain:
            reason = "uncertainty"
            break
    return frames, reason, steps


def explore(
    seeds: list[Atoms], calc: Calculator, cfg: WalkerConfig, rng: np.random.Generator
) -> tuple[list[Atoms], dict[str, Any]]:
    """Run one walker per (seed, temperature); return candidates and walker statistics."""
    candidates: list[Atoms] = []
    reasons: Counter[str] = Counter()
    temps: dict[float, list[float]] = {t: [] for t in cfg.temperatures_K}
    n_steps = 0
    for i, seed in enumerate(seeds):
        for t in cfg.temperatures_K:
            frames, reason, steps = run_walker(seed, calc, t, cfg, rng,
                                               walker_id=f"w{i}_{int(t)}K")
            candidates += frames
            reasons[reason] += 1
            n_steps += steps
            temps[t] += [f.info["kinetic_temperature_K"] for f in frames]
    stats = {
        "n_walkers": int(sum(reasons.values())),
        "n_md_steps": n_steps,
        "n_candidates": len(candidates),
        "walker_stop_reasons": dict(reasons),
        # measured, not assumed: a thermostat that runs hot shows up here
        "mean_kinetic_temperature_K": {
            f"{t:g}": float(np.mean(v)) if v else float("nan") for t, v in temps.items()},
    }
    log.info("explored %d walkers -> %d candidates (%s)", stats["n_walkers"], len(candidates),
             dict(reasons))
    return candidates, stats


def finite_difference_hessian(atoms: Atoms, calc: Calculator, delta: float = 0.005) -> np.ndarray:
    """Cartesian Hessian (eV/Å²) by central differences of ``calc``'s forces."""
    a = atoms.copy()
    a.calc = calc
    n = len(a)
    hess = np.zeros((3 * n, 3 * n))
    for k in range(3 * n):
        i, c = divmod(k, 3)
        f = []
        for sign in (1, -1):
            a.positions[i, c] += sign * delta
            f.append(a.get_forces().ravel())
            a.positions[i, c] -= sign * delta
        hess[k] = -(f[0] - f[1]) / (2 * delta)
    return hess


def model_normal_mode_samples(
    minima: list[Atoms], calc: Calculator, n_per_minimum: int, temperature_K: float,
    rng: np.random.Generator,
) -> list[Atoms]:
    """Thermal samples along the current model's normal modes around each minimum."""
    from reactive_al.sampling import modes_from_hessian, normal_mode_perturbations

    frames: list[Atoms] = []
    for m in minima:
        modes = modes_from_hessian(finite_difference_hessian(m, calc), m.get_masses(),
                                   m.positions)
        subset = m.info.get("subset", "reactant")
        frames += normal_mode_perturbations(m, n_per_minimum, temperature_K, rng, subset,
                                            modes=modes, origin="model_normal_mode")
    return frames


def neb_candidates(
    reactant: Atoms, product: Atoms, calc_factory, n_images: int = 7, fmax: float = 0.1,
    steps: int = 200, climb: bool = True,
) -> tuple[list[Atoms], dict[str, Any]]:
    """Relax an NEB (IDPP start, climbing image) on the current model; images are candidates.

    ``calc_factory()`` returns a fresh calculator per image. Returns (interior images,
    statistics: converged flag, steps, model barrier in eV).
    """
    from ase.mep import NEB
    from ase.optimize import FIRE

    images = [reactant.copy()] + [reactant.copy() for _ in range(n_images)] + [product.copy()]
    for img in images:
        img.pbc = False
        img.calc = calc_factory()
    neb = NEB(images, climb=climb, method="improvedtangent")
    neb.interpolate(method="idpp")
    opt = FIRE(neb, logfile=None)
    converged = bool(opt.run(fmax=fmax, steps=steps))
    energies = [img.get_potential_energy() for img in images]
    frames = []
    for k, img in enumerate(images[1:-1], start=1):
        f = Atoms(img.get_atomic_numbers(), img.get_positions(), pbc=False)
        f.info = {key: v for key, v in reactant.info.items()
                  if key in ("charge", "multiplicity", "system")}
        f.info.update({"origin": "neb/model", "subset": "path", "neb_image": k})
        frames.append(f)
    stats = {"neb_converged": converged, "neb_steps": int(opt.nsteps),
             "neb_model_barrier_ev": float(max(energies) - energies[0]),
             "neb_energies_ev": [float(e) for e in energies]}
    return frames, stats
