"""Candidate samplers beyond the MD walkers, a registry of them, and the exploration step.

A sampler turns the current committee into candidate structures. It is registered under the
name its YAML block has in ``selection.samplers`` (``neb``, ``normal_modes``); a block with
``enabled: true`` runs it after the walkers, in file order. To add one, write a function
``(context, settings) -> (frames, stats)`` and decorate it with :func:`register_sampler`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

from reactive_al.exploration.md import WalkerConfig, explore
from reactive_al.models.batching import attach_batched
from reactive_al.systems import identity

if TYPE_CHECKING:
    from reactive_al.models import Committee
    from reactive_al.uncertainty import UncertaintyEstimator

log = logging.getLogger(__name__)


@dataclass
class ExplorationContext:
    """What a sampler may use: the committee, its fitted estimator, the seeds and the rng."""

    committee: Committee
    md_seeds: list[Atoms]
    rng: np.random.Generator
    estimator: UncertaintyEstimator | None = None

    @property
    def wells(self) -> list[Atoms]:
        """The seeds that are minima (``subset`` reactant or product), in seed order."""
        return [s for s in self.md_seeds if s.info.get("subset") in ("reactant", "product")]


Sampler = Callable[[ExplorationContext, dict[str, Any]], tuple[list[Atoms], dict[str, Any]]]

#: ``selection.samplers`` name → sampler.
SAMPLERS: dict[str, Sampler] = {}


def register_sampler(name: str) -> Callable[[Sampler], Sampler]:
    """Decorator registering a sampler under its ``selection.samplers`` YAML name."""

    def deco(fn: Sampler) -> Sampler:
        SAMPLERS[name] = fn
        return fn

    return deco


def check_samplers(samplers: dict[str, Any] | None) -> None:
    """Raise ``ValueError`` (one line) for a ``selection.samplers`` name nobody registered."""
    unknown = sorted(set(samplers or {}) - set(SAMPLERS))
    if unknown:
        raise ValueError(f"parameters_selection.yml: unknown sampler(s) {unknown} under "
                         f"selection.samplers (registered: {sorted(SAMPLERS)})")


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
    from reactive_al.exploration.structures import modes_from_hessian, normal_mode_perturbations

    frames: list[Atoms] = []
    for m in minima:
        modes = modes_from_hessian(finite_difference_hessian(m, calc), m.get_masses(),
                                   m.positions)
        subset = m.info.get("subset", "reactant")
        frames += normal_mode_perturbations(m, n_per_minimum, temperature_K, rng, subset,
                                            modes=modes, origin="model_normal_mode")
    return frames


def neb_candidates(
    reactant: Atoms, product: Atoms, calc: Calculator, n_images: int = 7, fmax: float = 0.1,
    steps: int = 200, climb: bool = True,
) -> tuple[list[Atoms], dict[str, Any]]:
    """Relax an NEB (checked IDPP start, climbing image) on the model; images are candidates.

    All images share ``calc``; every NEB force call evaluates the moved images in one batch
    (:func:`~reactive_al.models.batching.attach_batched`). Returns (interior images,
    statistics: converged flag, steps, model barrier in eV).
    """
    from ase.mep import NEB
    from ase.optimize import FIRE

    from reactive_al.exploration.band import build_band

    images, band = build_band(reactant, product, n_images, strict=False)
    attach_batched(images, calc)
    neb = NEB(images, climb=climb, method="improvedtangent",
              remove_rotation_and_translation=band["repaired"])
    opt = FIRE(neb, logfile=None)
    converged = bool(opt.run(fmax=fmax, steps=steps))
    energies = [img.get_potential_energy() for img in images]
    frames = []
    for k, img in enumerate(images[1:-1], start=1):
        f = Atoms(img.get_atomic_numbers(), img.get_positions(), pbc=False)
        f.info = identity(reactant)
        f.info.update({"origin": "neb/model", "subset": "path", "neb_image": k})
        frames.append(f)
    stats = {"neb_converged": converged, "neb_steps": int(opt.nsteps),
             "neb_model_barrier_ev": float(max(energies) - energies[0]),
             "neb_energies_ev": [float(e) for e in energies]}
    return frames, stats


@register_sampler("neb")
def neb_sampler(ctx: ExplorationContext, settings: dict[str, Any]):
    """Interior images of a climbing-image NEB on the committee between the two wells."""
    wells = ctx.wells
    if len(wells) != 2:
        return [], {}
    frames, stats = neb_candidates(
        wells[0], wells[1], ctx.committee.calculator(), n_images=settings.get("n_images", 7),
        fmax=settings.get("fmax", 0.1), steps=settings.get("steps", 200))
    stats.pop("neb_energies_ev", None)
    return frames, stats


@register_sampler("normal_modes")
def normal_mode_sampler(ctx: ExplorationContext, settings: dict[str, Any]):
    """Thermal samples along the committee's normal modes around each well."""
    frames = model_normal_mode_samples(ctx.wells, ctx.committee.calculator(),
                                       settings["n_per_minimum"], settings["temperature_K"],
                                       ctx.rng)
    return frames, {"n_normal_mode_candidates": len(frames)}


def explore_candidates(
    committee: Committee, md_seeds: list[Atoms], selection: dict[str, Any],
    estimator: UncertaintyEstimator | None = None,
) -> tuple[list[Atoms], dict[str, Any]]:
    """Candidates of one AL iteration: committee-driven walkers, then the enabled samplers.

    Walkers (``selection.walkers``) run on the committee mean, or on the uncertainty-biased
    energy when ``walkers.bias.enabled``; ``estimator`` (fitted for this committee) supplies
    the calibrated force scale and the gradient features the bias needs.
    """
    from reactive_al.exploration.bias import walker_calculator

    check_samplers(selection.get("samplers"))
    walkers = dict(selection["walkers"])
    bias = walkers.pop("bias", {}) or {}
    walkers["temperatures_K"] = tuple(walkers["temperatures_K"])
    rng = np.random.default_rng(selection["seed"])
    cfg = WalkerConfig(**walkers)
    calc = walker_calculator(committee, estimator, bias,
                             calibrated=cfg.max_atomic_uncertainty is not None)
    with (committee.baseline.parallel(cfg.baseline_threads) if committee.baseline is not None
          else nullcontext()):
        candidates, stats = explore(md_seeds, calc, cfg, rng)
    stats["biased"] = bool(bias.get("enabled"))
    if bias.get("enabled"):
        stats["bias_tau"] = float(bias["tau"])
    ctx = ExplorationContext(committee, md_seeds, rng, estimator)
    for name, settings in (selection.get("samplers") or {}).items():
        if not (settings or {}).get("enabled"):
            continue
        frames, sampler_stats = SAMPLERS[name](ctx, dict(settings))
        candidates += frames
        stats.update(sampler_stats)
    stats["n_candidates"] = len(candidates)
    return candidates, stats
