"""Held-out frames from short Langevin runs on a driver: in wells and in dihedral basins.

:func:`langevin_frames` is the one MD-frame sampler of the test set (thermal subsets of the
wells, :func:`reactive_al.oracles.reference.thermal_frames`, and the basins here). It records
the kinetic temperature the run actually held, because a thermostat can hold another one than
it was set to (see DESIGN.md, "Exploration traps").

A basin is a named target of two backbone dihedrals (φ, ψ in degrees; alanine dipeptide's C7eq
is at about (−83°, 73°)). :func:`basin_frames` sets the reactant's dihedrals to the target by
rotating the moving side of each central bond, relaxes the rest on the driver with both
dihedrals held (ASE ``FixInternals``, BFGS), then runs short Langevin MD from there *without*
the constraint: measured on alanine dipeptide at GFN2-xTB, ASE's Langevin with
``FixInternals`` held 357–382 K when set to 300 K (706–781 K for 600 K) and pins φ/ψ exactly,
so frames would have neither the set temperature nor any spread along the coordinates the
subset is about; unconstrained runs of 100 fs (friction 0.1/fs, :data:`BASIN_MD_DEFAULTS`) held
the set temperature within about 10 % and stayed within about 25° of every target, αR and PII
(not minima in vacuum) included.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
from ase import Atoms
from ase.neighborlist import natural_cutoffs, neighbor_list

from reactive_al.exploration.md import start_langevin
from reactive_al.oracles.base import DRIVER_ERRORS, as_oracle_error
from reactive_al.systems import bare, identity, working_copy

log = logging.getLogger(__name__)

#: Sampling settings of the basins (``data_engineering.test.basin_md``) and their defaults.
BASIN_MD_DEFAULTS: dict[str, Any] = {
    "temperatures_K": [300.0, 600.0],  # K, one MD run per basin and temperature
    "n_steps": 200,                    # MD steps per run; frames from its second half
    "timestep_fs": 0.5,                # fs
    # 1/fs: five times the wells' (0.02). A run of 100 fs from a relaxed geometry starts with
    # its potential energy at the bottom; at 0.02/fs its second half still held about 80 % of
    # the set temperature, at 0.1/fs it held it (measured, alanine dipeptide, GFN2-xTB), and
    # the stronger damping slows the drift out of basins that are not minima (αR, PII).
    # The frames are configurations, not dynamics.
    "friction_per_fs": 0.1,
    "relax_steps": 40,                 # BFGS steps of the restrained relaxation
    "relax_fmax": 0.1,                 # eV/Å
}

Dihedral = tuple[int, int, int, int]
T = TypeVar("T")

#: Attempts of one MD run on a driver: a run the driver fails (an SCF that does not converge
#: at a hot frame, say) starts again once from the same structure with the stream's next draws.
MD_ATTEMPTS = 2


def on_driver(run: Callable[[], T], failures: list[dict[str, Any]], attempts: int = 1,
              **what: Any) -> T | None:
    """``run()``, or None when the driver fails it ``attempts`` times in a row.

    A failure is a :data:`~reactive_al.oracles.base.DRIVER_ERRORS` error; each is logged in
    one line naming ``what`` (e.g. ``subset=``, ``start=``, ``temperature_K=``). After the
    last attempt ``failures`` gets ``{**what, "attempts", "category", "message"}`` (the test
    set statistics report it), and the caller goes on without this run's frames.
    """
    label = ", ".join(f"{k} {v}" for k, v in what.items())
    for attempt in range(1, attempts + 1):
        try:
            return run()
        except DRIVER_ERRORS as exc:
            err = as_oracle_error(exc)
            log.warning("driver run (%s) failed, attempt %d of %d: %s", label, attempt,
                        attempts, err)
    failures.append({**what, "attempts": attempts, "category": err.category,
                     "message": err.message})
    return None


def wrap_deg(angle: np.ndarray | float) -> np.ndarray:
    """Angles (degrees) wrapped to [−180, 180)."""
    return (np.asarray(angle, dtype=float) + 180.0) % 360.0 - 180.0


def circular_mean_deg(angles: np.ndarray, axis: int = 0) -> np.ndarray:
    """Mean of angles (degrees) on the circle, so −179° and 179° average to 180°, not 0°."""
    rad = np.radians(np.asarray(angles, dtype=float))
    return wrap_deg(np.degrees(np.angle(np.mean(np.exp(1j * rad), axis=axis))))


def parse_basins(spec: Mapping[str, Any] | None) -> dict[str, tuple[float, float]]:
    """``{name: (φ, ψ)}`` in degrees from ``{name: [φ, ψ]}`` or ``{name: {phi:, psi:}}``.

    The mapping form is what ``kedro run --params`` can carry (it splits values on commas).
    Raises ``ValueError`` (one line, naming the basin) for anything else; ``None`` or ``{}``
    is no basins.
    """
    if spec is None:
        return {}
    if not isinstance(spec, Mapping):
        raise ValueError("must map basin names to [phi, psi] in degrees")
    out: dict[str, tuple[float, float]] = {}
    for name, value in spec.items():
        if isinstance(value, Mapping):
            if set(value) != {"phi", "psi"}:
                raise ValueError(f"basin '{name}' must have exactly the keys phi and psi, "
                                 f"got {sorted(value)}")
            pair = [value["phi"], value["psi"]]
        elif isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
            pair = list(value)
        else:
            raise ValueError(f"basin '{name}' must be [phi, psi] or {{phi: , psi: }} in "
                             "degrees")
        if not all(isinstance(v, int | float) and not isinstance(v, bool)
                   and -180.0 <= v <= 180.0 for v in pair):
            raise ValueError(f"basin '{name}': phi and psi must be numbers in [-180, 180] "
                             "degrees")
        out[str(name)] = (float(pair[0]), float(pair[1]))
    return out


def langevin_frames(
    start: Atoms, calc, temperature_K: float, n_frames: int, rng: np.random.Generator,
    n_steps: int = 600, timestep_fs: float = 0.5, friction_per_fs: float = 0.02,
) -> tuple[list[Atoms], float]:
    """Frames of one Langevin run (:func:`start_langevin`) and its mean kinetic temperature.

    ``n_frames`` frames are taken evenly over the second half of ``n_steps`` (the first half
    equilibrates). Returns (frames, mean kinetic temperature in K over every step of that
    half). Each frame carries ``kinetic_temperature_K`` (its instantaneous value, noisy on a
    small molecule) and ``md_kinetic_temperature_K`` (the run's mean). The thermostat noise is
    seeded by one draw of ``rng`` after the velocities; timestep in fs, friction in 1/fs.
    """
    md_atoms = working_copy(start)
    md_atoms.calc = calc
    dyn = start_langevin(md_atoms, temperature_K, timestep_fs, friction_per_fs, rng,
                         independent_dynamics_rng=True)
    take = set(np.linspace(n_steps // 2, n_steps, n_frames).astype(int))
    frames, temps = [], []
    for step in range(1, n_steps + 1):
        dyn.run(1)
        if step >= n_steps // 2:
            temps.append(md_atoms.get_temperature())
        if step in take:
            a = bare(md_atoms)
            a.info["kinetic_temperature_K"] = float(md_atoms.get_temperature())
            frames.append(a)
    mean_t = float(np.mean(temps))
    for a in frames:
        a.info["md_kinetic_temperature_K"] = mean_t
    return frames, mean_t


def moving_side(atoms: Atoms, b: int, c: int) -> list[int]:
    """Atoms on ``c``'s side of the bond ``b``–``c`` (covalent radii, 20 % margin).

    Raises ``ValueError`` when ``b`` and ``c`` are not bonded or lie on a ring (no side).
    """
    i, j = neighbor_list("ij", atoms, natural_cutoffs(atoms, mult=1.2))
    nbrs: dict[int, set[int]] = {k: set() for k in range(len(atoms))}
    for x, y in zip(i, j, strict=True):
        nbrs[int(x)].add(int(y))
    if c not in nbrs[b]:
        raise ValueError(f"atoms {b} and {c} are not bonded: no dihedral rotates about them")
    side, todo = {c}, [c]
    while todo:
        k = todo.pop()
        for n in nbrs[k]:
            if n not in side and not (k == c and n == b):
                side.add(n)
                todo.append(n)
    if b in side:
        raise ValueError(f"the bond {b}-{c} lies on a ring: its dihedral cannot be set alone")
    return sorted(side)


def set_dihedrals(atoms: Atoms, targets: Sequence[tuple[Dihedral, float]]) -> Atoms:
    """A copy with each dihedral (indices, degrees) set by turning its bond's moving side.

    The sides are found once, on the bonds of ``atoms``: a contact a turn creates is not a
    bond.
    """
    out = atoms.copy()
    sides = [moving_side(atoms, idx[1], idx[2]) for idx, _ in targets]
    for (idx, angle), side in zip(targets, sides, strict=True):
        out.set_dihedral(*idx, angle, indices=side)
    return out


def restrained_relax(atoms: Atoms, calc, dihedrals: Sequence[Dihedral], fmax: float = 0.1,
                     steps: int = 40) -> tuple[Atoms, bool, int]:
    """BFGS relaxation (to ``fmax`` eV/Å, at most ``steps``) holding ``dihedrals`` fixed.

    Returns (relaxed copy without constraint or calculator, converged, steps taken).
    """
    from ase.constraints import FixInternals
    from ase.optimize import BFGS

    work = atoms.copy()
    work.pbc = False
    work.calc = calc
    work.set_constraint(FixInternals(
        dihedrals_deg=[[work.get_dihedral(*idx), list(idx)] for idx in dihedrals]))
    opt = BFGS(work, logfile=None, maxstep=0.1)
    converged = bool(opt.run(fmax=fmax, steps=steps))
    out = Atoms(work.numbers, work.positions, pbc=False, info=dict(atoms.info))
    return out, converged, int(opt.nsteps)


def phi_psi_deg(atoms: Atoms, dihedrals: Sequence[Dihedral]) -> list[float]:
    """The dihedrals of ``atoms`` in degrees, wrapped to [−180, 180)."""
    return [float(wrap_deg(atoms.get_dihedral(*idx))) for idx in dihedrals]


def basin_frames(
    reactant: Atoms,
    calc_factory: Callable[[], Any],
    basins: Mapping[str, tuple[float, float]],
    dihedrals: tuple[Dihedral, Dihedral],
    n_per_basin: int,
    rng: np.random.Generator,
    temperatures_K: Sequence[float] = (300.0, 600.0),
    n_steps: int = 200,
    timestep_fs: float = 0.5,
    friction_per_fs: float = 0.1,
    relax_steps: int = 40,
    relax_fmax: float = 0.1,
) -> tuple[list[Atoms], list[dict[str, Any]]]:
    """``n_per_basin`` frames per basin and temperature (K), and the driver's failures.

    See the module docstring. ``basins`` maps a name to its target (φ, ψ) in degrees,
    ``dihedrals`` are the atom indices of φ and ψ, ``calc_factory()`` makes the driver's ASE
    calculator. Frames get ``subset = basin_<name>``, ``origin = basin_<name>/md``,
    ``phi_psi_deg`` (measured), ``basin_phi_psi_deg`` (the target), ``md_temperature_K`` and
    the kinetic temperatures of :func:`langevin_frames`. A relaxation or MD run the driver
    fails is left out and recorded (:func:`on_driver`; an MD run gets :data:`MD_ATTEMPTS`).
    """
    frames: list[Atoms] = []
    failures: list[dict[str, Any]] = []
    for name, target in basins.items():
        subset = f"basin_{name}"
        start = set_dihedrals(reactant, list(zip(dihedrals, target, strict=True)))
        relax = on_driver(lambda s=start: restrained_relax(s, calc_factory(), dihedrals,
                                                           relax_fmax, relax_steps),
                          failures, subset=subset, stage="restrained relaxation")
        if relax is None:  # deterministic: no second attempt
            continue
        relaxed, converged, steps = relax
        log.info("basin %s: target (phi, psi) = (%.0f, %.0f) deg, relaxed to (%.1f, %.1f) in "
                 "%d steps%s", name, *target, *phi_psi_deg(relaxed, dihedrals), steps,
                 "" if converged else f" (not converged to {relax_fmax} eV/A)")
        for temp in temperatures_K:
            run = on_driver(lambda t=float(temp), r=relaxed: langevin_frames(
                r, calc_factory(), t, n_per_basin, rng, n_steps, timestep_fs,
                friction_per_fs)[0], failures, MD_ATTEMPTS, subset=subset, stage="md",
                temperature_K=float(temp)) or []
            for a in run:
                kinetic = dict(a.info)
                a.info = identity(reactant)
                a.info.update({"origin": f"{subset}/md", "subset": subset,
                               "md_temperature_K": float(temp), "well": "reactant",
                               "phi_psi_deg": phi_psi_deg(a, dihedrals),
                               "basin_phi_psi_deg": [float(t) for t in target], **kinetic})
            frames += run
    return frames, failures
