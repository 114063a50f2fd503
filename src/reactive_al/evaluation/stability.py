"""MD stability of a potential: Langevin steps until a frame is unphysical."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

from reactive_al.exploration.md import WalkerConfig, frame_is_broken, start_langevin
from reactive_al.models import Committee
from reactive_al.models.batching import run_lockstep
from reactive_al.systems import working_copy


def steps_until_unphysical(
    atoms: Atoms, calc: Calculator, temperature_K: float, max_steps: int, min_distance: float,
    max_force: float, rng: np.random.Generator, timestep_fs: float = 0.5,
    friction_per_fs: float = 0.02,
) -> int:
    """Langevin MD step at which a frame first becomes unphysical, or ``max_steps`` if never.

    Unphysical means two atoms closer than ``min_distance`` (Å) or an atomic force norm above
    ``max_force`` (eV/Å), the same test the exploration walkers use; the start frame is not
    tested, so the earliest possible answer is step 1. The Langevin set-up is the walkers'
    (:func:`~reactive_al.exploration.md.start_langevin`).
    """
    cfg = WalkerConfig(min_distance=min_distance, max_force=max_force)
    a = working_copy(atoms)
    a.calc = calc
    dyn = start_langevin(a, temperature_K, timestep_fs, friction_per_fs, rng)
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
    # one stream per walker, and all walkers together: one batched model call per MD step
    # each job is steps_until_unphysical waiting for its calculator (second positional)
    jobs = [partial(steps_until_unphysical, starts[i % len(starts)], temperature_K=temperature_K,
                    max_steps=max_steps, min_distance=min_distance, max_force=max_force,
                    rng=stream, timestep_fs=timestep_fs)
            for i, stream in enumerate(rng.spawn(n_walkers))]
    steps = run_lockstep(jobs, calc)
    arr = np.array(steps)
    return {"median_steps": float(np.median(arr)), "all_steps": [int(s) for s in steps],
            "fraction_stable": float(np.mean(arr >= max_steps)), "max_steps": int(max_steps)}


def md_stability_metrics(
    committee: Committee, labeled_set: list[Atoms], params: dict[str, Any]
) -> dict[str, Any]:
    """MD stability of the committee: median steps until unphysical, from the wells.

    Walkers start from the first reactant- and product-subset structures of ``labeled_set``
    (any structure if it has none) and alternate between them.
    """
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
