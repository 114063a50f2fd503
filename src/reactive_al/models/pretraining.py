"""Pre-training on a cheap level: a large pool labeled at GFN2-xTB before iteration 0.

The pool covers what the QM-labelled campaign has to find: displaced and normal-mode
samples of each well, the IDPP band between reactant and product with perturbations of its
images, and Langevin MD frames in the wells on the cheap level (:func:`pretrain_pool`). The
committee trained on it is the starting point of every iteration's training: its member
networks are fine-tuned on the QM labels (``train_committee(..., init=...)``), with the
self energies fitted to the QM labels. Selection still spends QM labels only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms

from reactive_al.exploration.structures import structure_set
from reactive_al.oracles.reference import driver_factory, thermal_frames

log = logging.getLogger(__name__)


@dataclass
class PretrainConfig:
    """``training.pretrain``: the cheap level, the pool (sizes per well / image) and the fit.

    ``fit`` overrides ``training.fit`` for the pre-training run (e.g. more epochs, another
    time limit in minutes).
    """

    level: str | dict[str, Any] = "xtb"
    seed: int = 11
    n_displaced: int = 60          # per well, Gaussian displacements of ``sigma`` Å
    n_normal_mode: int = 100       # per well, harmonic normal-mode samples at temperature_K
    n_path_images: int = 9         # IDPP images between reactant and product
    n_path_perturbed: int = 30     # per image, Gaussian perturbations of ``sigma`` Å
    sigma: float = 0.05            # Å
    temperature_K: float = 600.0   # normal-mode sampling temperature
    md_temperatures_K: list[float] = field(default_factory=lambda: [300.0, 600.0, 1200.0])
    md_frames_per_well: int = 20   # per well and temperature
    md_steps: int = 600
    fit: dict[str, Any] = field(default_factory=dict)

    @property
    def n_structures(self) -> int:
        """Pool size for a reaction (two wells); a system without a product has about half."""
        wells = 2 * (self.n_displaced + self.n_normal_mode
                     + len(self.md_temperatures_K) * self.md_frames_per_well)
        return wells + self.n_path_images * (1 + self.n_path_perturbed)


def pretrain_pool(rs, cfg: PretrainConfig, level) -> list[Atoms]:  # noqa: ANN001
    """The unlabeled pre-training pool of a loaded system ``rs`` (MD on ``level``)."""
    rng_set, rng_md = (np.random.default_rng(s) for s in
                       np.random.SeedSequence(int(cfg.seed)).spawn(2))
    pool = structure_set(rs.reactant, rs.product, n_displaced=cfg.n_displaced,
                         n_normal_mode=cfg.n_normal_mode, n_path_images=cfg.n_path_images,
                         n_path_perturbed=cfg.n_path_perturbed, sigma=cfg.sigma,
                         temperature_K=cfg.temperature_K, rng=rng_set)
    wells = [rs.reactant.copy()] + ([rs.product.copy()] if rs.product is not None else [])
    for w, name in zip(wells, ("reactant", "product"), strict=False):
        w.info["subset"] = name
    if cfg.md_frames_per_well and cfg.md_temperatures_K:
        frames, failed = thermal_frames(
            wells, driver_factory(rs.charge, rs.multiplicity, level),
            [float(t) for t in cfg.md_temperatures_K], int(cfg.md_frames_per_well), rng_md,
            n_steps=int(cfg.md_steps))
        pool += frames
        if failed:  # each failed run is logged by on_driver; the pool is smaller by these
            log.warning("pre-training pool: %d MD run(s) on %s failed and were left out: %s",
                        len(failed), level.name, failed)
    for a in pool:
        a.info["origin"] = f"pretrain/{a.info.get('origin', 'pool')}"
        rs.tag(a)
    return pool
