"""Reference data built once per system and level of theory: the QM reaction path and MD wells.

* :func:`qm_neb_path` relaxes a climbing-image NEB between reactant and product with the QM
  oracle. Every force call of an NEB step goes through :func:`label_structures`, so the images
  of a step are computed in parallel and cached: an interrupted NEB replays from the cache
  (same geometries, same forces, same optimizer steps) and only pays for the steps it lost.
* :func:`thermal_frames` samples the wells by Langevin MD on a cheap driver (any registered
  oracle's calculator, GFN2-xTB by default, or any ASE calculator) at a ladder of
  temperatures, recording the kinetic temperature each run held; the frames are labeled at
  the campaign's level.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from reactive_al.exploration.band import superposition
from reactive_al.exploration.basins import MD_ATTEMPTS, langevin_frames, on_driver
from reactive_al.oracles.base import Level, get_oracle, parse_level
from reactive_al.oracles.labeling import LabelingConfig, label_structures
from reactive_al.systems import identity

log = logging.getLogger(__name__)


class ReferencePathError(RuntimeError):
    """The QM reference path could not be computed; the message is one line."""


class _ImageFailure(Exception):
    """Images of the current NEB step without a label after every rescue."""

    def __init__(self, failed: list[dict[str, Any]]):
        super().__init__(f"{len(failed)} image(s) failed")
        self.failed = failed


class _PathOracle:
    """Labels every image of the current NEB step in one cached, parallel batch.

    An image that fails is rescued before the band is touched: first again from the
    converged orbitals of the same image one step earlier (or of its nearest neighbour), for
    oracles that take orbital files, then at the oracle's rescue levels (broken-symmetry
    unrestricted for PySCF). Every failure is recorded in ``events`` with its cause and what
    rescued it; images still without a label raise :class:`_ImageFailure`.
    """

    def __init__(self, images: list[Atoms], cfg: LabelingConfig, orbital_dir: Path | None):
        self.images = images
        self.cfg = cfg
        self.results: dict[bytes, tuple[float, np.ndarray, np.ndarray]] = {}
        self.rescue_cfg: dict[bytes, LabelingConfig] = {}
        self.events: list[dict[str, Any]] = []
        self.n_batches = 0
        oracle = get_oracle(cfg.level.program)
        self.orbital_dir = orbital_dir if "chkfile" in oracle.options else None
        if self.orbital_dir:
            self.orbital_dir.mkdir(parents=True, exist_ok=True)
        self.rescue_levels = oracle.rescue_levels(cfg.level)
        self.step = 0

    @staticmethod
    def _key(atoms: Atoms) -> bytes:
        """The internal geometry (pair distances): a rigidly moved image is not computed again.

        With ``remove_rotation`` the NEB turns images to their neighbours before each step.
        """
        pos = atoms.get_positions()
        iu = np.triu_indices(len(pos), k=1)
        return np.round(np.linalg.norm(pos[iu[0]] - pos[iu[1]], axis=1), 8).tobytes()

    def _store(self, atoms: Atoms, energy: float, forces: np.ndarray) -> None:
        self.results[self._key(atoms)] = (energy, np.asarray(forces), atoms.get_positions())

    def _lookup(self, atoms: Atoms) -> tuple[float, np.ndarray] | None:
        """The stored result of ``atoms`` with its forces turned into its frame, or None."""
        hit = self.results.get(self._key(atoms))
        if hit is None:
            return None
        energy, forces, ref = hit
        pos = atoms.get_positions()
        rot = superposition(ref, pos)
        a, b = ref - ref.mean(0), pos - pos.mean(0)
        if np.abs(a @ rot - b).max() > 1e-6:  # a mirror image: the same distances, not a turn
            return None
        return energy, forces @ rot

    def computed_positions(self, atoms: Atoms) -> np.ndarray:
        """The positions at which the label of ``atoms`` (up to a rigid turn) was computed."""
        return self.results[self._key(atoms)][2]

    def _chk(self, k: int) -> str | None:
        return str(self.orbital_dir / f"image_{k}.chk") if self.orbital_dir and k >= 0 else None

    def _frame(self, atoms: Atoms, k: int, guess: str | None = None) -> Atoms:
        frame = Atoms(atoms.numbers, atoms.positions, pbc=False, info=dict(atoms.info))
        frame.info["neb_image"] = k
        if self._chk(k):
            frame.info["qm_options"] = {"chkfile": self._chk(k), "guess_chkfile": guess}
        return frame

    def _guess(self, k: int) -> str | None:
        """The orbital file of image ``k``, else of its nearest neighbour that has one."""
        for j in sorted(range(len(self.images)), key=lambda j: abs(j - k)):
            chk = self._chk(j)
            if chk and Path(chk).is_file():
                return chk
        return None

    def _rescue(self, k: int, atoms: Atoms, failure: dict[str, Any]) -> bool:
        event = {"step": self.step, "image": k, "category": failure["category"],
                 "message": failure["message"], "rescued_by": None}
        self.events.append(event)
        if failure["category"] == "geometry_invalid":
            return False
        attempts = []
        guess = self._guess(k)
        if guess:
            attempts.append(("previous_orbitals", self.cfg, True))
        attempts += [(f"level {lvl.as_dict()}", replace(self.cfg, level=lvl), False)
                     for lvl in self.rescue_levels]
        for name, cfg, retry in attempts:
            labeled, _ = label_structures([self._frame(atoms, k, guess)], cfg,
                                          retry_failed=retry)
            if labeled:
                self._store(atoms, labeled[0].get_potential_energy(), labeled[0].get_forces())
                if cfg is not self.cfg:
                    self.rescue_cfg[self._key(atoms)] = cfg
                event["rescued_by"] = name
                log.warning("NEB image %d (%s) rescued by %s", k, failure["category"], name)
                return True
        return False

    def result(self, atoms: Atoms) -> tuple[float, np.ndarray]:
        if self._lookup(atoms) is None:
            todo = [(k, a) for k, a in enumerate(self.images) if self._lookup(a) is None]
            if not any(self._key(a) == self._key(atoms) for _, a in todo):
                todo.append((-1, atoms))
            frames = [self._frame(a, k) for k, a in todo]
            labeled, failures = label_structures(frames, self.cfg)
            self.n_batches += 1
            failed = {f["index"]: f for f in failures}
            done = iter(labeled)
            for i, (_, a) in enumerate(todo):
                if i not in failed:
                    lab = next(done)
                    self._store(a, lab.get_potential_energy(), lab.get_forces())
            lost = [{"image": todo[i][0], **f} for i, f in failed.items()
                    if not self._rescue(todo[i][0], todo[i][1], f)]
            if lost:
                raise _ImageFailure(lost)
        return self._lookup(atoms)


class _ImageCalculator(Calculator):
    implemented_properties = ["energy", "forces"]

    def __init__(self, oracle: _PathOracle):
        super().__init__()
        self.oracle = oracle

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        energy, forces = self.oracle.result(self.atoms)
        self.results = {"energy": energy, "forces": np.array(forces)}


def _orbital_dir(cfg: LabelingConfig, reactant: Atoms) -> Path:
    """Where the NEB images' orbitals live: next to the label cache, one folder per band."""
    tag = json.dumps([cfg.settings(), cfg.charge, cfg.multiplicity,
                      reactant.get_atomic_numbers().tolist()], sort_keys=True, default=str)
    digest = hashlib.sha1(tag.encode()).hexdigest()[:12]
    return Path(cfg.cache_path).parent / "neb_orbitals" / digest


def _relax(images: list[Atoms], oracle: _PathOracle, climb: bool, fmax: float, steps: int,
           rng: np.random.Generator, max_repairs: int, where: str,
           on_step=None, remove_rotation: bool = False) -> tuple[bool, int, int]:
    """Relax a band, repairing images that fail; (converged, steps, repairs).

    A failed interior image is moved to the midpoint of its neighbours plus a small seeded
    perturbation (0.02 Å) and the optimizer restarts; a failed end point, or more than
    ``max_repairs`` repairs, raises :class:`ReferencePathError` (one line). The optimizer
    is BFGS (0.1 Å steps); with ``remove_rotation`` it is MDMin (0.05 Å steps): the NEB turns
    the images before each step, which breaks BFGS's curvature memory (on a hydrogen shift
    around a linear molecule BFGS diverged on some runs, MDMin converged on all).
    """
    from ase.mep import NEB
    from ase.optimize import BFGS, MDMin

    for img in images:
        img.calc = _ImageCalculator(oracle)
    neb = NEB(images, climb=climb, method="improvedtangent",
              remove_rotation_and_translation=remove_rotation)
    total, repairs = 0, 0
    while True:
        # images turned before each step break BFGS's curvature memory; MDMin keeps none
        opt = (MDMin(neb, logfile=None, dt=0.05, maxstep=0.05) if remove_rotation
               else BFGS(neb, logfile=None, maxstep=0.1))
        try:
            for _ in opt.irun(fmax=fmax, steps=steps - total):
                oracle.step = total + opt.nsteps
                if on_step:
                    on_step(total + opt.nsteps, neb)
            total += opt.nsteps
            fmax_now = float(np.sqrt((neb.get_forces() ** 2).sum(axis=1).max()))
            return fmax_now < fmax, total, repairs
        except _ImageFailure as exc:
            total += opt.nsteps
            first = exc.failed[0]
            ends = [f["image"] for f in exc.failed if f["image"] in (0, len(images) - 1)]
            if ends:
                name = "reactant" if ends[0] == 0 else "product"
                raise ReferencePathError(
                    f"{where}: the {name} fails at the QM level ({first['category']}: "
                    f"{first['message']}); check its geometry, charge, multiplicity and level"
                ) from None
            repairs += 1
            if repairs > max_repairs or total >= steps:
                raise ReferencePathError(
                    f"{where}: image {first['image']} still fails after {repairs - 1} band "
                    f"repairs ({first['category']}: {first['message']}); give a ts_guess: or "
                    "intermediates: geometry in the system definition") from None
            for f in exc.failed:
                k = f["image"]
                img = images[k]
                img.positions = (0.5 * (images[k - 1].positions + images[k + 1].positions)
                                 + rng.normal(0.0, 0.02, img.positions.shape))
                oracle.events[-1]["repair"] = "midpoint of neighbours"
                log.warning("NEB image %d failed (%s): moved to its neighbours' midpoint",
                            k, f["category"])


def qm_neb_path(
    reactant: Atoms,
    product: Atoms,
    cfg: LabelingConfig,
    n_images: int = 7,
    fmax: float = 0.05,
    steps: int = 150,
    prerelax: dict[str, Any] | None = None,
    band: list[Atoms] | None = None,
    max_repairs: int = 3,
    seed: int = 0,
    where: str = "QM reference path",
    remove_rotation: bool = False,
) -> tuple[list[Atoms], dict[str, Any]]:
    """Climbing-image NEB with the QM oracle; returns (labeled path incl. end points, stats).

    The path starts from ``band`` (see :func:`reactive_al.exploration.band.build_band`: the
    checked, repaired IDPP interpolation, seeded by any guesses) or, without one, from the
    IDPP interpolation, and is relaxed with BFGS (on small reactions it needs about a third of
    FIRE's steps, and every step costs a batch of QM single points; MDMin when rotation is
    removed, see :func:`_relax`). With ``prerelax`` (a
    level of theory such as ``{"program": "xtb", "method": "gfn2-xtb"}``, plus optional
    ``fmax``/``steps``) a plain NEB on that cheap level first relaxes the band (default to
    0.1 eV/Å), which saves QM steps. An image that fails is rescued (previous orbitals, the
    oracle's rescue levels) or repaired (see :func:`_relax`); every failure is in
    ``stats["image_failures"]``. Images are tagged ``origin = path/qm_neb`` and
    ``subset = path``; ``neb_image`` is the image index and the image of highest energy gets
    ``info["ts"] = True``. ``remove_rotation`` removes rigid rotation and translation from
    the NEB steps (a hydrogen circling a linear molecule otherwise turns the images).
    Raises :class:`ReferencePathError` (one line, starting with ``where``) when the path
    cannot be built.
    """
    if band is None:
        from reactive_al.exploration.band import build_band

        band, _ = build_band(reactant, product, n_images, where=where)
    images = [img.copy() for img in band]
    for img in images:
        img.pbc = False
        img.calc = None
    rng = np.random.default_rng(seed)
    stats: dict[str, Any] = {"n_images": len(images) - 2, "fmax": fmax,
                             "remove_rotation": remove_rotation}
    if prerelax:
        pre = dict(prerelax)
        pre_fmax = float(pre.pop("fmax", 0.1))
        pre_steps = int(pre.pop("steps", 300))
        cheap = LabelingConfig(charge=cfg.charge, multiplicity=cfg.multiplicity, level=pre,
                               cache_path=cfg.cache_path, scheduler="synchronous",
                               progress=False, min_distance=cfg.min_distance,
                               max_failure_fraction=1.0)
        start = [img.positions.copy() for img in images]
        oracle = _PathOracle(images, cheap, None)
        try:
            conv, n, _ = _relax(images, oracle, False, pre_fmax, pre_steps, rng, max_repairs,
                                f"{where} (prerelaxation at {pre})",
                                remove_rotation=remove_rotation)
            stats.update({"prerelax_converged": conv, "prerelax_steps": n})
            log.info("prerelaxed the path at %s in %d steps", pre, n)
        except ReferencePathError as exc:  # the cheap level is a help, never a blocker
            log.warning("%s; starting the QM NEB from the unrelaxed band", exc)
            stats["prerelax_failed"] = str(exc)
            for img, pos in zip(images, start, strict=True):
                img.positions = pos
        stats["prerelax_failures"] = oracle.events

    def report(step: int, neb) -> None:
        if step and step % 5 == 0:
            log.info("QM NEB step %d: max force %.3f eV/Å", step,
                     float(np.sqrt((neb.get_forces() ** 2).sum(axis=1).max())))

    # a failed image is repaired, not counted against the campaign's failure budget
    oracle = _PathOracle(images, replace(cfg, max_failure_fraction=1.0),
                         _orbital_dir(cfg, reactant))
    converged, n_steps, repairs = _relax(images, oracle, True, fmax, steps, rng, max_repairs,
                                         where, on_step=report,
                                         remove_rotation=remove_rotation)
    energies = np.array([img.get_potential_energy() for img in images])
    ts = int(np.argmax(energies))
    path = []
    for k, img in enumerate(images):  # as computed (a turned image's label is that geometry's)
        a = Atoms(img.numbers, oracle.computed_positions(img), pbc=False)
        a.info = identity(reactant)
        a.info.update({"origin": "path/qm_neb", "subset": "path", "neb_image": k,
                       "ts": k == ts})
        path.append(a)
    labeled: list[Atoms] = [None] * len(path)
    groups: dict[int, tuple[LabelingConfig, list[int]]] = {}
    for k, a in enumerate(path):  # cache hits: labels + provenance (rescued at their level)
        level_cfg = oracle.rescue_cfg.get(oracle._key(a), cfg)
        groups.setdefault(id(level_cfg), (level_cfg, []))[1].append(k)
    for level_cfg, ks in groups.values():
        got, failures = label_structures([path[k] for k in ks], level_cfg)
        if failures:
            raise ReferencePathError(f"{where}: image {ks[failures[0]['index']]} lost its label "
                                     f"({failures[0]['category']})")
        for k, a in zip(ks, got, strict=True):
            labeled[k] = a
    stats.update({"converged": converged, "steps": n_steps, "band_repairs": repairs,
                  "image_failures": oracle.events,
                  "qm_batches": oracle.n_batches, "ts_image": ts,
                  "barrier_ev": float(energies[ts] - energies[0]),
                  "reaction_energy_ev": float(energies[-1] - energies[0])})
    if not converged:
        log.warning("QM NEB did not converge to %.3f eV/Å in %d steps", fmax, steps)
    return labeled, stats


def thermal_frames(
    wells: list[Atoms],
    calc_factory,
    temperatures_K: list[float],
    n_per_well: int,
    rng: np.random.Generator,
    n_steps: int = 600,
    timestep_fs: float = 0.5,
    friction_per_fs: float = 0.02,
    subset_names: dict[float, str] | None = None,
) -> tuple[list[Atoms], list[dict[str, Any]]]:
    """Frames of Langevin MD in each well, ``n_per_well`` per well and temperature (K).

    ``calc_factory()`` makes the driver's ASE calculator (see :func:`driver_factory`); the
    dynamics is the project's :func:`~reactive_al.exploration.md.start_langevin` (timestep in
    fs, friction in 1/fs, the thermostat noise seeded by one draw of ``rng``). Frames are taken
    evenly over the second half of each trajectory (the first half equilibrates) by
    :func:`~reactive_al.exploration.basins.langevin_frames`: each records
    ``md_kinetic_temperature_K``, the mean kinetic temperature over that half (K), and
    ``kinetic_temperature_K``, its own. ``subset`` is ``thermal_<T>K`` unless
    ``subset_names`` maps T to a name. Also returns the runs the driver failed: each gets
    :data:`~reactive_al.exploration.basins.MD_ATTEMPTS` and is then recorded and left out
    (:func:`~reactive_al.exploration.basins.on_driver`).
    """
    frames: list[Atoms] = []
    failures: list[dict[str, Any]] = []
    for temp in temperatures_K:
        subset = (subset_names or {}).get(temp, f"thermal_{int(temp)}K")
        for well in wells:
            run = on_driver(lambda w=well, t=temp: langevin_frames(
                w, calc_factory(), t, n_per_well, rng, n_steps, timestep_fs,
                friction_per_fs)[0], failures, MD_ATTEMPTS, subset=subset,
                start=well.info.get("subset", "reactant"), temperature_K=float(temp)) or []
            for a in run:
                kinetic = dict(a.info)
                a.info = identity(well)
                a.info.update({"origin": f"{subset}/md", "subset": subset,
                               "md_temperature_K": float(temp),
                               "well": well.info.get("subset", "reactant"), **kinetic})
            frames += run
    return frames, failures


def driver_factory(charge: int, multiplicity: int, level: Level):
    """A factory of ASE calculators of the registered oracle of ``level.program`` (MD drivers)."""
    oracle = get_oracle(level.program)

    def make():
        return oracle.calculator(charge, multiplicity, level)

    return make


#: Where the thermal-MD driver is configured (named in its one-line errors).
THERMAL_DRIVER = "conf/base/parameters_data_engineering.yml: data_engineering.thermal.driver"


def thermal_driver(thermal: dict[str, Any] | None, symbols: list[str]) -> Level | None:
    """The level of theory of the thermal-MD driver, or None when no thermal frames are made.

    See :func:`md_driver`.
    """
    if not thermal or not thermal.get("n_per_well"):
        return None
    return md_driver(thermal, symbols)


def md_driver(thermal: dict[str, Any] | None, symbols: list[str]) -> Level:
    """The level of theory of the test set's MD (thermal frames, basins): ``thermal.driver``.

    A registered program name (``xtb``, its default level; the default) or a level mapping
    with ``program:``. Raises ``SystemDefinitionError`` (one line) for an unknown one.
    """
    driver = (thermal or {}).get("driver", "xtb")
    spec = {"program": driver} if isinstance(driver, str) else dict(driver)
    return parse_level(spec, THERMAL_DRIVER, symbols)
