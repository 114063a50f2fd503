"""Nodes of the ``data_engineering`` pipeline."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from ase import Atoms

from reactive_al.evaluation.barriers import EV_TO_KCAL_MOL
from reactive_al.evaluation.ramachandran import alanine_dipeptide_phi_psi_indices
from reactive_al.evaluation.test_sets import subset_lines, subset_stats
from reactive_al.exploration.band import DEFAULT_BAND_MIN_DISTANCE, build_band
from reactive_al.exploration.basins import BASIN_MD_DEFAULTS, basin_frames, parse_basins
from reactive_al.exploration.structures import (
    cell_path,
    idpp_path,
    path_perturbations,
    random_displacements,
    structure_set,
)
from reactive_al.oracles.base import DRIVER_ERRORS, as_oracle_error
from reactive_al.oracles.labeling import LabelingConfig
from reactive_al.oracles.reference import (
    driver_factory,
    md_driver,
    qm_neb_path,
    thermal_driver,
    thermal_frames,
)
from reactive_al.systems import SystemDefinitionError, load_system

log = logging.getLogger(__name__)

#: Rigid rotation (degrees) between neighbouring band images above which ``auto`` removes it.
MAX_TURN_DEG = 5.0
#: Keys of ``data_engineering.test`` that configure the basin subsets (not ``structure_set``).
BASIN_KEYS = ("basins", "n_per_basin", "basin_md")
#: Where the basins are configured (named in their one-line errors).
BASINS_WHERE = "conf/base/parameters_data_engineering.yml: data_engineering.test.basins"


def reference_path(
    system: str, systems: dict[str, Any], labeling: dict[str, Any], params: dict[str, Any]
) -> tuple[list[Atoms], dict[str, Any]]:
    """The QM climbing-image NEB path of the system (labeled, end points included) and stats.

    Built once per system and level of theory: every NEB force call is a cached label, so a
    rerun (or a resumed run) replays it from the label cache. A system without a product has
    no path: the result is empty.
    """
    rs = load_system(system, systems)
    if rs.product is None:
        return [], {"skipped": "the system has no product"}
    ref = params["reference_path"]
    cfg = LabelingConfig(charge=rs.charge, multiplicity=rs.multiplicity, level=rs.level,
                         **labeling)
    band, band_report = _band(rs, ref, int(ref["n_images"]))
    repair = ref.get("repair") or {}
    path, stats = qm_neb_path(rs.reactant, rs.product, cfg, fmax=float(ref["fmax"]),
                              steps=int(ref["steps"]), prerelax=ref.get("prerelax"), band=band,
                              max_repairs=int(repair.get("max_repairs", 3)),
                              seed=int(repair.get("seed", 0)),
                              where=f"{system}: QM reference path",
                              remove_rotation=_remove_rotation(ref, band_report))
    for a in path:
        rs.tag(a)
    stats["band"] = band_report
    stats["barrier_kcal_mol"] = stats["barrier_ev"] * EV_TO_KCAL_MOL
    return path, stats


def _remove_rotation(ref: dict[str, Any], band_report: dict[str, Any]) -> bool:
    """``reference_path.remove_rotation``: true/false, or ``auto``.

    ``auto``: for bands that were repaired, seeded by guesses or turn the molecule (more than
    ``MAX_TURN_DEG`` between neighbouring images).
    """
    choice = ref.get("remove_rotation", "auto")
    if choice == "auto":
        return bool(band_report["repaired"] or band_report["n_guesses"]
                    or band_report["max_turn_deg"] > MAX_TURN_DEG)
    return bool(choice)


def _band(rs, ref: dict[str, Any], n_images: int) -> tuple[list[Atoms], dict[str, Any]]:
    """The checked starting band of the system (its guesses as knots, repaired if needed)."""
    repair = ref.get("repair") or {}
    return build_band(rs.reactant, rs.product, n_images, ts_guess=rs.ts_guess,
                      intermediates=rs.intermediates,
                      min_distance=float(repair.get("min_distance", DEFAULT_BAND_MIN_DISTANCE)),
                      seed=int(repair.get("seed", 0)),
                      where=f"conf/base/parameters_systems.yml: systems.{rs.name}")


def _streams(params: dict[str, Any]) -> list[np.random.Generator]:
    """The five random streams of ``data_engineering.seed``: initial, test, MD, basins, cell.

    Streams 4 and 5 (the basins, the cell path) came after the first three; a SeedSequence's
    k-th child does not depend on how many are spawned, so adding them changed nothing.
    """
    return [np.random.default_rng(s) for s in np.random.SeedSequence(params["seed"]).spawn(5)]


def build_training_pools(
    system: str, systems: dict[str, Any], params: dict[str, Any],
) -> tuple[list[Atoms], list[Atoms]]:
    """The initial training pool and the MD seeds of the selected system.

    MD seeds are the end points and ``md_seed_path_images`` IDPP images (unlabeled starting
    points). The pool uses its own random stream (:func:`_streams`), so no test structure of
    :func:`build_test_pool` is also an initial one.
    """
    rs = load_system(system, systems)
    rng_init = _streams(params)[0]
    common = {"sigma": params["sigma"], "temperature_K": params["temperature_K"]}
    initial = structure_set(rs.reactant, rs.product, rng=rng_init, **params["initial"], **common)
    seeds = [rs.reactant.copy()] + ([rs.product.copy()] if rs.product is not None else [])
    seeds[0].info = {"origin": "reactant", "subset": "reactant"}
    if rs.product is not None:
        seeds[1].info = {"origin": "product", "subset": "product"}
        n_img = int(params.get("md_seed_path_images", 0))
        if n_img:
            band, _ = _band(rs, params.get("reference_path") or {}, n_img)
            seeds += idpp_path(rs.reactant, rs.product, n_img, band=band)
    for frames in (initial, seeds):
        for a in frames:
            rs.tag(a)
    return initial, seeds


def build_test_pool(
    system: str, systems: dict[str, Any], params: dict[str, Any],
    reference: list[Atoms] | None = None,
) -> tuple[list[Atoms], list[dict[str, Any]]]:
    """The held-out test pool of the selected system and the driver runs that failed.

    Its path subset is the QM NEB ``reference`` path (interior images) and perturbations of
    them; its thermal subsets come from MD in the wells (``params["thermal"]``); its basin
    subsets (``params["test"]["basins"]``, none by default) from MD in dihedral basins
    (:func:`reactive_al.exploration.basins.basin_frames`); a crystal's ``test_path`` subsets
    from the cell path to its other form (:func:`_cell_path_test_frames`). An MD run or
    relaxation the driver fails is left out and recorded
    (:func:`~reactive_al.exploration.basins.on_driver`); ``describe_test_pool`` reports them.
    A node of its own, stored with the test set: every seed of a comparison shares it, so a
    seed's run with ``--only-missing-outputs`` does not run its MD again.
    """
    rs = load_system(system, systems)
    _, rng_test, rng_md, rng_basin, rng_cell = _streams(params)
    common = {"sigma": params["sigma"], "temperature_K": params["temperature_K"]}
    test_params = {k: v for k, v in params["test"].items() if k not in BASIN_KEYS}
    test = structure_set(rs.reactant, rs.product, rng=rng_test, **test_params, **common)
    if reference:
        images = [a.copy() for a in reference[1:-1]]
        for a in images:
            a.calc = None
        test += images
        n_pert = int(params.get("reference_path", {}).get("n_perturbed", 0))
        test += path_perturbations(images, n_pert, params["sigma"], rng_test,
                                   origin="path/qm_neb_displaced")
    thermal, failed_thermal = _thermal_test_frames(rs, params.get("thermal"), rng_md)
    basins, failed_basins = _basin_test_frames(rs, params["test"], params.get("thermal"),
                                               rng_basin)
    test += thermal + basins + _cell_path_test_frames(rs, params["sigma"], rng_cell)
    for a in test:
        rs.tag(a)
    return test, failed_thermal + failed_basins


def _thermal_test_frames(rs, thermal: dict[str, Any] | None, rng: np.random.Generator
                         ) -> tuple[list[Atoms], list[dict[str, Any]]]:
    """Thermal test frames of Langevin MD in the wells on the ``thermal.driver`` oracle.

    Also the runs the driver failed (see :func:`~reactive_al.oracles.reference.thermal_frames`).
    """
    level = thermal_driver(thermal, rs.reactant.get_chemical_symbols())
    if level is None:
        return [], []
    wells = [rs.reactant] + ([rs.product] if rs.product is not None else [])
    for w, name in zip(wells, ("reactant", "product"), strict=False):
        w.info["subset"] = name
    temps = [float(t) for t in thermal.get("temperatures_K", [])]
    names = {}
    hot = thermal.get("hot_temperature_K")
    if hot:
        temps.append(float(hot))
        names[float(hot)] = f"hot_{int(hot)}K"
    return thermal_frames(wells, driver_factory(rs.charge, rs.multiplicity, level), temps,
                          int(thermal["n_per_well"]), rng,
                          n_steps=int(thermal.get("n_steps", 600)),
                          timestep_fs=float(thermal.get("timestep_fs", 0.5)),
                          subset_names=names)


def _cell_path_test_frames(rs, sigma: float, rng: np.random.Generator) -> list[Atoms]:
    """Held-out frames between a crystal's two forms (its ``test_path``; none without one).

    Each interior image of :func:`~reactive_al.exploration.structures.cell_path` is relaxed in
    its fixed cell on the system's own level (``relax_steps`` BFGS steps to ``relax_fmax``
    eV/Å), so it is near that level's minimum at its volume; it and ``n_per_image``
    displaced, strained copies of it (``sigma`` Å) form subset ``cell_path_<k>``; the other
    form and its copies are subset ``<stem of its file>``.
    """
    spec = rs.test_path
    if not spec:
        return []
    from ase.optimize import BFGS

    make = driver_factory(rs.charge, rs.multiplicity, rs.level)
    images = cell_path(rs.reactant, spec["to"], spec["n_images"], include_end=True)
    frames: list[Atoms] = []
    for k, image in enumerate(images, start=1):
        last = k == len(images)  # the other form: a minimum of the level already
        name = spec["name"] if last else f"cell_path_{k}"
        origin = "relaxed"
        if not last and spec["relax_steps"]:
            start = image.positions.copy()
            image.calc = make()
            try:
                BFGS(image, logfile=None).run(fmax=spec["relax_fmax"],
                                              steps=spec["relax_steps"])
            except DRIVER_ERRORS as exc:  # a driver failure: keep the image as it is
                log.warning("test pool: %s: relaxation failed (%s); kept unrelaxed", name,
                            as_oracle_error(exc))
                image.positions = start
                origin = "interpolated"
            image.calc = None
        image.info.update({"subset": name, "origin": f"{name}/{origin}"})
        frames += [image, *random_displacements(image, spec["n_per_image"], sigma, rng, name)]
    log.info("test pool: cell path of %d images to %s: volumes %s Å³", len(images),
             spec["name"], ", ".join(f"{a.get_volume():.0f}" for a in images))
    return frames


def _basin_test_frames(rs, test: dict[str, Any], thermal: dict[str, Any] | None,
                       rng: np.random.Generator) -> tuple[list[Atoms], list[dict[str, Any]]]:
    """Frames of the ``test.basins`` (φ, ψ) basins on the ``thermal.driver`` oracle.

    Also the relaxations and runs the driver failed (see
    :func:`~reactive_al.exploration.basins.basin_frames`).
    """
    try:
        basins = parse_basins(test.get("basins"))
    except ValueError as exc:
        raise SystemDefinitionError(f"{BASINS_WHERE}: {exc}") from None
    if not basins:
        return [], []
    try:
        dihedrals = alanine_dipeptide_phi_psi_indices(rs.reactant)
    except ValueError as exc:
        raise SystemDefinitionError(f"{BASINS_WHERE}: the reactant of {rs.name} has no "
                                    f"(phi, psi) backbone: {exc}") from None
    md = {**BASIN_MD_DEFAULTS, **(test.get("basin_md") or {})}
    level = md_driver(thermal, rs.reactant.get_chemical_symbols())
    return basin_frames(rs.reactant, driver_factory(rs.charge, rs.multiplicity, level),
                        basins, dihedrals, int(test.get("n_per_basin", 2)), rng,
                        temperatures_K=[float(t) for t in md["temperatures_K"]],
                        n_steps=int(md["n_steps"]), timestep_fs=float(md["timestep_fs"]),
                        friction_per_fs=float(md["friction_per_fs"]),
                        relax_steps=int(md["relax_steps"]),
                        relax_fmax=float(md["relax_fmax"]))


def describe_test_pool(test_pool: list[Atoms],
                       md_failures: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Per-subset sizes, origins, mean kinetic temperatures and basin (φ, ψ) of the test pool.

    See :func:`reactive_al.evaluation.test_sets.subset_stats`; each subset is also logged in
    one line, so a run shows whether its MD held the set temperature and reached the basins.
    ``md_failures`` (from :func:`build_test_pool`) become ``md_failures``: the driver runs
    that gave no frames, with their subset, temperature, attempts and cause.
    """
    stats = subset_stats(test_pool)
    for line in subset_lines(stats):
        log.info("test pool: %s", line)
    stats["md_failures"] = list(md_failures or [])
    for f in stats["md_failures"]:
        log.warning("test pool: %s: a driver run gave no frames after %d attempt(s): %s: %s",
                    f.get("subset"), f["attempts"], f["category"], f["message"])
    return stats
