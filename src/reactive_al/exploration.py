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
        if steps % cfg.sample_every == 0:
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
            frames.append(frame)
    return frames, reason, steps


def explore(
    seeds: list[Atoms], calc: Calculator, cfg: WalkerConfig, rng: np.random.Generator
) -> tuple[list[Atoms], dict[str, Any]]:
    """Run one walker per (seed, temperature); return candidates and walker statistics."""
    candidates: list[Atoms] = []
    reasons: Counter[str] = Counter()
    temps: list[float] = []
    for i, seed in enumerate(seeds):
        for t in cfg.temperatures_K:
            frames, reason, _ = run_walker(seed, calc, t, cfg, rng, walker_id=f"w{i}_{int(t)}K")
            candidates += frames
            reasons[reason] += 1
            temps += [f.info["kinetic_temperature_K"] for f in frames]
    stats = {
        "n_walkers": int(sum(reasons.values())),
        "n_candidates": len(candidates),
        "walker_stop_reasons": dict(reasons),
        "mean_kinetic_temperature_K": float(np.mean(temps)) if temps else float("nan"),
    }
    log.info("explored %d walkers -> %d candidates (%s)", stats["n_walkers"], len(candidates),
             dict(reasons))
    return candidates, stats
