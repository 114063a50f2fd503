"""Nodes of the ``data_engineering`` pipeline."""

from __future__ import annotations

from typing import Any

import numpy as np
from ase import Atoms

from reactive_al.sampling import idpp_path, structure_set
from reactive_al.systems import load_system


def build_structure_sets(
    system: str, systems: dict[str, Any], params: dict[str, Any]
) -> tuple[list[Atoms], list[Atoms], list[Atoms]]:
    """Initial training pool, held-out test pool and MD seeds for the selected system.

    The test pool uses its own random stream, so no test structure is also an initial one.
    MD seeds are the end points and a few IDPP images (unlabeled starting points).
    """
    rs = load_system(system, systems)
    rng_init, rng_test = (np.random.default_rng(s) for s in
                          np.random.SeedSequence(params["seed"]).spawn(2))
    common = {"sigma": params["sigma"], "temperature_K": params["temperature_K"]}
    initial = structure_set(rs.reactant, rs.product, rng=rng_init, **params["initial"], **common)
    test = structure_set(rs.reactant, rs.product, rng=rng_test, **params["test"], **common)
    seeds = [rs.reactant.copy()] + ([rs.product.copy()] if rs.product is not None else [])
    seeds[0].info = {"origin": "reactant", "subset": "reactant"}
    if rs.product is not None:
        seeds[1].info = {"origin": "product", "subset": "product"}
        n_img = int(params.get("md_seed_path_images", 0))
        if n_img:
            seeds += idpp_path(rs.reactant, rs.product, n_img)
    for frames in (initial, test, seeds):
        for a in frames:
            rs.tag(a)
    return initial, test, seeds
