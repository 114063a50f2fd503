"""Reference data built once per system and level of theory: the QM reaction path and MD wells.

* :func:`qm_neb_path` relaxes a climbing-image NEB between reactant and product with the QM
  oracle. Every force call of an NEB step goes through :func:`label_structures`, so the images
  of a step are computed in parallel and cached: an interrupted NEB replays from the cache
  (same geometries, same forces, same optimizer steps) and only pays for the steps it lost.
* :func:`thermal_frames` samples the wells by Langevin MD (:func:`start_langevin`) on a cheap
  driver (any registered oracle's calculator, GFN2-xTB by default, or any ASE calculator) at a
  ladder of temperatures; the frames are labeled at the campaign's level.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from reactive_al.exploration.md import start_langevin
from reactive_al.oracles.base import Level, get_oracle, parse_level
from reactive_al.oracles.labeling import LabelingConfig, label_structures
from reactive_al.systems import identity

log = logging.getLogger(__name__)


class ReferencePathError(RuntimeError):
    """The QM reference path could not be computed (an image failed at the QM level)."""


class _PathOracle:
    """Labels every image of the current NEB step in one cached, parallel batch."""

    def __init__(self, images: list[Atoms], cfg: LabelingConfig):
        self.images = images
        self.cfg = cfg
        self.results: dict[bytes, tuple[float, np.ndarray]] = {}
        self.n_batches = 0

    @staticmethod
    def _key(atoms: Atoms) -> bytes:
        return np.round(atoms.get_positions(), 10).tobytes()

    def result(self, atoms: Atoms) -> tuple[float, np.ndarray]:
        key = self._key(atoms)
        if key not in self.results:
            todo = [a for a in self.images if self._key(a) not in self.results]
            if not any(self._key(a) == key for a in todo):
                todo.append(atoms)
            frames = [Atoms(a.numbers, a.positions, pbc=False, info=dict(a.info)) for a in todo]
            labeled, failures = label_structures(frames, self.cfg)
            if failures:
                f = failures[0]
                raise ReferencePathError(
                    f"QM reference path: image {f['index']} failed ({f['category']}: "
                    f"{f['message']})")
            self.n_batches += 1
            for a in labeled:
                self.results[self._key(a)] = (a.get_potential_energy(), a.get_forces())
        return self.results[key]


class _ImageCalculator(Calculator):
    implemented_properties = ["energy", "forces"]

    def __init__(self, oracle: _PathOracle):
        super().__init__()
        self.oracle = oracle

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        energy, forces = self.oracle.result(self.atoms)
        self.results = {"energy": energy, "forces": np.array(forces)}


def qm_neb_path(
    reactant: Atoms,
    product: Atoms,
    cfg: LabelingConfig,
    n_images: int = 7,
    fmax: float = 0.05,
    steps: int = 150,
    prerelax: dict[str, Any] | None = None,
) -> tuple[list[Atoms], dict[str, Any]]:
    """Climbing-image NEB with the QM oracle; returns (labeled path incl. end points, stats).

    The path starts from an IDPP interpolation and is relaxed with BFGS (on small reactions it
    needs about a third of FIRE's steps, and every step costs a batch of QM single points).
    With ``prerelax`` (a level of theory such as ``{"program": "xtb", "method": "gfn2-xtb"}``,
    plus optional ``fmax``/``steps``) a plain NEB on that cheap level first relaxes the
    interpolation (default to 0.1 eV/Å), which saves QM steps. Images are
    tagged ``origin = path/qm_neb`` and ``subset = path``; ``neb_image`` is the image index and
    the image of highest energy gets ``info["ts"] = True``.
    """
    from ase.mep import NEB
    from ase.optimize import BFGS

    images = [reactant.copy()] + [reactant.copy() for _ in range(n_images)] + [product.copy()]
    for img in images:
        img.pbc = False
        img.calc = None
    NEB(images, method="improvedtangent").interpolate(method="idpp")
    stats: dict[str, Any] = {"n_images": n_images, "fmax": fmax}
    if prerelax:
        pre = dict(prerelax)
        pre_fmax = float(pre.pop("fmax", 0.1))
        pre_steps = int(pre.pop("steps", 300))
        cheap = LabelingConfig(charge=cfg.charge, multiplicity=cfg.multiplicity, level=pre,
                               cache_path=cfg.cache_path, scheduler="synchronous",
                               progress=False, min_distance=cfg.min_distance)
        oracle = _PathOracle(images, cheap)
        for img in images:
            img.calc = _ImageCalculator(oracle)
        neb = NEB(images, climb=False, method="improvedtangent")
        opt = BFGS(neb, logfile=None, maxstep=0.1)
        stats["prerelax_converged"] = bool(opt.run(fmax=pre_fmax, steps=pre_steps))
        stats["prerelax_steps"] = int(opt.nsteps)
        log.info("prerelaxed the path at %s in %d steps", pre, opt.nsteps)
    oracle = _PathOracle(images, cfg)
    for img in images:
        img.calc = _ImageCalculator(oracle)
    neb = NEB(images, climb=True, method="improvedtangent")
    opt = BFGS(neb, logfile=None, maxstep=0.1)
    for _ in opt.irun(fmax=fmax, steps=steps):
        if opt.nsteps and opt.nsteps % 5 == 0:
            log.info("QM NEB step %d: max force %.3f eV/Å", opt.nsteps,
                     float(np.sqrt((neb.get_forces() ** 2).sum(axis=1).max())))
    converged = bool(np.sqrt((neb.get_forces() ** 2).sum(axis=1).max()) < fmax)
    energies = np.array([img.get_potential_energy() for img in images])
    ts = int(np.argmax(energies))
    path = []
    for k, img in enumerate(images):
        a = Atoms(img.numbers, img.positions, pbc=False)
        a.info = identity(reactant)
        a.info.update({"origin": "path/qm_neb", "subset": "path", "neb_image": k,
                       "ts": k == ts})
        path.append(a)
    labeled, failures = label_structures(path, cfg)  # cache hits: attaches labels + provenance
    if failures:
        raise ReferencePathError(f"QM reference path: {len(failures)} images lost their labels")
    stats.update({"converged": converged, "steps": int(opt.nsteps),
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
) -> list[Atoms]:
    """Frames of Langevin MD in each well, ``n_per_well`` per well and temperature (K).

    ``calc_factory()`` makes the driver's ASE calculator (see :func:`driver_factory`); the
    dynamics is the project's :func:`start_langevin` (timestep in fs, friction in 1/fs, the
    thermostat noise seeded by one draw of ``rng``). Frames are taken evenly over the second
    half of each trajectory (the first half equilibrates). ``subset`` is ``thermal_<T>K``
    unless ``subset_names`` maps T to a name.
    """
    frames: list[Atoms] = []
    for temp in temperatures_K:
        subset = (subset_names or {}).get(temp, f"thermal_{int(temp)}K")
        for well in wells:
            md_atoms = well.copy()
            md_atoms.pbc = False
            md_atoms.calc = calc_factory()
            dyn = start_langevin(md_atoms, temp, timestep_fs, friction_per_fs, rng,
                                 independent_dynamics_rng=True)
            take = set(np.linspace(n_steps // 2, n_steps, n_per_well).astype(int))
            for step in range(1, n_steps + 1):
                dyn.run(1)
                if step in take:
                    a = Atoms(md_atoms.numbers, md_atoms.positions, pbc=False)
                    a.info = identity(well)
                    a.info.update({"origin": f"{subset}/md", "subset": subset,
                                   "md_temperature_K": float(temp),
                                   "well": well.info.get("subset", "reactant")})
                    frames.append(a)
    return frames


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

    ``thermal.driver`` is a registered program name (``xtb``, its default level) or a level
    mapping with ``program:``. Raises ``SystemDefinitionError`` (one line) for an unknown one.
    """
    if not thermal or not thermal.get("n_per_well"):
        return None
    driver = thermal.get("driver", "xtb")
    spec = {"program": driver} if isinstance(driver, str) else dict(driver)
    return parse_level(spec, THERMAL_DRIVER, symbols)
