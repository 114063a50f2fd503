"""Molecular dynamics with the current model: the one Langevin set-up, and walkers on it."""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator
from ase.md.langevin import Langevin
from ase.md.langevinbaoab import LangevinBAOAB
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
from scipy.spatial.distance import pdist
from tqdm.auto import tqdm

from reactive_al.models.batching import run_lockstep
from reactive_al.systems import bare, cell_widths, identity, is_crystal, working_copy

log = logging.getLogger(__name__)


def start_langevin(
    atoms: Atoms, temperature_K: float, timestep_fs: float, friction_per_fs: float,
    rng: np.random.Generator, independent_dynamics_rng: bool = False,
) -> Langevin:
    """Maxwell–Boltzmann velocities at ``temperature_K`` (no net momentum) and a Langevin NVT.

    ``atoms`` must carry its calculator. ``fixcm=False``: with ASE's default centre-of-mass fix
    a small molecule runs far hotter than the target (measured: 300 K aimed, ~790 K held).
    The thermostat's noise comes from ``rng``, or with ``independent_dynamics_rng`` from a
    generator seeded by one draw of ``rng`` after the velocities. Timestep in fs, friction in
    1/fs.
    """
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)
    Stationary(atoms)
    noise = np.random.default_rng(rng.integers(2**32)) if independent_dynamics_rng else rng
    return Langevin(atoms, timestep=timestep_fs * units.fs, temperature_K=temperature_K,
                    friction=friction_per_fs / units.fs, fixcm=False, rng=noise)


def start_npt(
    atoms: Atoms, temperature_K: float, pressure_bar: float, timestep_fs: float,
    friction_per_fs: float, rng: np.random.Generator,
) -> LangevinBAOAB:
    """Maxwell–Boltzmann velocities and a Langevin NPT with a fully flexible cell (crystals).

    ASE's ``LangevinBAOAB`` (Langevin on the atoms, Langevin–Hoover on the cell): stochastic
    like the NVT walkers, so each walker's own ``rng`` makes lockstep runs reproducible, and
    every cell component moves, so a framework can change its shape (breathing), not only its
    volume. Thermostat time 1/``friction_per_fs``; barostat time 20× that (ASE's default).
    ``pressure_bar`` is the external pressure (ASE's external stress is its negative).
    """
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)
    Stationary(atoms)
    t_tau = units.fs / friction_per_fs
    with warnings.catch_warnings():  # ASE announces its heuristic barostat mass
        warnings.simplefilter("ignore", UserWarning)
        return LangevinBAOAB(atoms, timestep_fs * units.fs, temperature_K=temperature_K,
                             externalstress=-pressure_bar * units.bar, T_tau=t_tau,
                             P_tau=20 * t_tau, rng=rng)


@dataclass
class WalkerConfig:
    """Langevin walker settings: NVT, and NPT for crystals with ``pressures_bar``."""

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
    #: a progress bar over the MD steps of all walkers (tqdm; off in batch jobs)
    progress: bool = True
    #: crystals: one NPT walker per (seed, temperature, pressure in bar); None: NVT
    pressures_bar: tuple[float, ...] | None = None
    #: crystals: a cell whose volume leaves [V0 / max_volume_ratio, V0 · max_volume_ratio]
    #: or whose perpendicular width falls below ``min_cell_width`` (Å) is unphysical
    max_volume_ratio: float = 2.0
    min_cell_width: float = 0.0
    #: with a Δ-learning baseline: its single points of one MD step (all walkers) on this
    #: many threads (the QM workers are idle while walkers run; see ``Baseline.parallel``)
    baseline_threads: int = 1


def frame_is_broken(atoms: Atoms, forces: np.ndarray, cfg: WalkerConfig,
                    start_volume: float | None = None) -> str | None:
    """Why a frame is unphysical (``too_close``, ``huge_force``, ``cell``), or None.

    Crystals: distances to the nearest periodic images, and with ``start_volume`` (Å³) the
    cell limits of ``cfg`` (volume ratio, perpendicular width).
    """
    crystal = is_crystal(atoms)
    if crystal and start_volume is not None:
        ratio = atoms.get_volume() / start_volume
        if not 1 / cfg.max_volume_ratio <= ratio <= cfg.max_volume_ratio:
            return "cell"
        if cell_widths(atoms).min() < cfg.min_cell_width:
            return "cell"
    if len(atoms) > 1:
        # a crystal: to the nearest images; a molecule: scipy's pair distances (one call per
        # MD step of every walker: a quarter of the time of ASE's distance matrix)
        closest = (atoms.get_all_distances(mic=True)[np.triu_indices(len(atoms), 1)].min()
                   if crystal else pdist(atoms.positions).min())
        if closest < cfg.min_distance:
            return "too_close"
    if np.linalg.norm(forces, axis=1).max() > cfg.max_force:
        return "huge_force"
    return None


def run_walker(
    start: Atoms, calc: Calculator, temperature_K: float, cfg: WalkerConfig,
    rng: np.random.Generator, walker_id: str, tick: Callable[[], Any] | None = None,
    pressure_bar: float | None = None,
) -> tuple[list[Atoms], str, int]:
    """Run one Langevin walker; return (frames, stop reason, steps).

    NVT (:func:`start_langevin`), or for a crystal with ``pressure_bar`` NPT
    (:func:`start_npt`; frames keep their cell, a walker stops on an unphysical cell).
    ``tick`` (e.g. a progress bar's update) is called after every MD step.
    """
    atoms = working_copy(start)
    crystal = is_crystal(atoms)
    atoms.calc = calc
    npt = crystal and pressure_bar is not None
    dyn = (start_npt(atoms, temperature_K, pressure_bar, cfg.timestep_fs, cfg.friction_per_fs,
                     rng) if npt else
           start_langevin(atoms, temperature_K, cfg.timestep_fs, cfg.friction_per_fs, rng))
    v0 = atoms.get_volume() if crystal else None
    frames: list[Atoms] = []
    reason, steps = "max_steps", 0
    for steps in range(1, cfg.n_steps + 1):
        dyn.run(1)
        if tick is not None:
            tick()
        forces = atoms.get_forces()
        broken = frame_is_broken(atoms, forces, cfg, v0)
        if broken:
            reason = broken
            break
        unc = calc.results.get("forces_std")
        too_uncertain = (cfg.max_atomic_uncertainty is not None and unc is not None
                         and float(np.max(unc)) > cfg.max_atomic_uncertainty)
        if too_uncertain or steps % cfg.sample_every == 0:
            frame = bare(atoms)
            frame.info = identity(start)
            frame.info.update({
                "origin": f"md/{start.info.get('origin', 'seed')}",
                "walker": walker_id,
                "md_step": steps,
                "temperature_K": float(temperature_K),
                "kinetic_temperature_K": float(atoms.get_temperature()),
            })
            if unc is not None:
                frame.info["walker_max_atomic_uncertainty"] = float(np.max(unc))
            if crystal:
                frame.info["volume_A3"] = float(atoms.get_volume())
                if npt:
                    frame.info["pressure_bar"] = float(pressure_bar)
            frames.append(frame)
        if too_uncertain:
            reason = "uncertainty"
            break
    return frames, reason, steps


def explore(
    seeds: list[Atoms], calc: Calculator, cfg: WalkerConfig, rng: np.random.Generator
) -> tuple[list[Atoms], dict[str, Any]]:
    """Run one walker per (seed, temperature); return candidates and walker statistics.

    The walkers run together (:func:`~reactive_al.models.batching.run_lockstep`): each MD step
    of all of them is one batched call of ``calc`` if it has ``evaluate_batch``.
    """
    candidates: list[Atoms] = []
    reasons: Counter[str] = Counter()
    temps: dict[float, list[float]] = {t: [] for t in cfg.temperatures_K}
    n_steps = 0
    # crystals with pressures: one NPT walker per (seed, temperature, pressure)
    walkers = [(i, seed, t, p) for i, seed in enumerate(seeds) for t in cfg.temperatures_K
               for p in (cfg.pressures_bar if cfg.pressures_bar and is_crystal(seed)
                         else (None,))]
    # every walker its own stream (velocities and thermostat noise), so the walkers can run
    # together (one batched model call per MD step) with results independent of timing
    streams = rng.spawn(len(walkers))
    bar = tqdm(total=len(walkers) * cfg.n_steps, desc=f"MD walkers ({len(walkers)})",
               disable=None if cfg.progress else True, leave=False)
    tick = partial(bar.update, 1)
    # each job is run_walker waiting for its calculator, the second positional argument
    jobs = [partial(run_walker, seed, temperature_K=t, cfg=cfg, rng=stream,
                    walker_id=f"w{i}_{int(t)}K" + ("" if p is None else f"_{p:g}bar"),
                    tick=tick, pressure_bar=p)
            for (i, seed, t, p), stream in zip(walkers, streams, strict=True)]
    results = run_lockstep(jobs, calc)
    bar.close()
    volumes: list[float] = []
    for (_, _, t, _), (frames, reason, steps) in zip(walkers, results, strict=True):
        candidates += frames
        reasons[reason] += 1
        n_steps += steps
        temps[t] += [f.info["kinetic_temperature_K"] for f in frames]
        volumes += [f.info["volume_A3"] for f in frames if "volume_A3" in f.info]
    stats = {
        "n_walkers": int(sum(reasons.values())),
        "n_md_steps": n_steps,
        "n_candidates": len(candidates),
        "walker_stop_reasons": dict(reasons),
        # measured, not assumed: a thermostat that runs hot shows up here
        "mean_kinetic_temperature_K": {
            f"{t:g}": float(np.mean(v)) if v else float("nan") for t, v in temps.items()},
    }
    if volumes:  # crystals: the cell volumes the walkers reached (Å³)
        stats["volume_range_A3"] = [float(min(volumes)), float(max(volumes))]
    log.info("explored %d walkers -> %d candidates (%s)", stats["n_walkers"], len(candidates),
             dict(reasons))
    return candidates, stats
