"""The starting band of a reaction path: interpolated, checked, repaired before any QM.

An image-dependent pair potential (IDPP) interpolation keeps every symmetry the end points
share. When a hydrogen migrates from one end of a linear molecule to the other (HCN → HNC),
the straight line carries it through the heavy atoms, and IDPP cannot leave the axis. So a
band is checked first: the closest contact of any two atoms on every image and on points
between neighbouring images (atoms that pass through each other between two images). A
segment that fails is repaired automatically by breaking the symmetry: the migrating atom (of
the closest pair, the one that moves more) is pushed off its straight line by a seeded,
sin-shaped displacement perpendicular to its motion, and the IDPP optimisation restarts from
there, with growing amplitudes. A band that still fails stops with one line naming what the
user can provide (``ts_guess:`` or ``intermediates:`` geometry files in the system definition),
and those guesses, when given, are knots of the band: each segment between consecutive knots
is interpolated and checked on its own.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from ase import Atoms

from reactive_al.systems import SystemDefinitionError

log = logging.getLogger(__name__)

#: Closest contact (Å) a band may have between any two atoms, on images and between them.
DEFAULT_BAND_MIN_DISTANCE = 0.7
#: Amplitudes (Å) of the symmetry-breaking displacement, tried in order.
REPAIR_AMPLITUDES = (0.3, 0.6, 1.0)


class PathConstructionError(SystemDefinitionError):
    """No sane starting band could be built; the message is one line with what to provide."""


def closest_contact(images: Sequence[Atoms], substeps: int = 4) -> tuple[float, int, int, int]:
    """Smallest interatomic distance along a band: (distance Å, image, atom i, atom j).

    Checked on every image and on ``substeps - 1`` linearly interpolated points between each
    pair of neighbours (two atoms that swap places between images pass through each other
    there). ``image`` is the index of the image nearest to the closest contact.
    """
    pos = [np.asarray(a.get_positions()) for a in images]
    n = len(pos[0])
    iu = np.triu_indices(n, k=1)
    best = (np.inf, 0, 0, 0)
    for k in range(len(pos)):
        fracs = [0.0] if k == len(pos) - 1 else np.arange(substeps) / substeps
        for f in fracs:
            p = pos[k] if f == 0.0 else (1 - f) * pos[k] + f * pos[k + 1]
            if n < 2:
                continue
            d = np.linalg.norm(p[iu[0]] - p[iu[1]], axis=1)
            m = int(np.argmin(d))
            if d[m] < best[0]:
                best = (float(d[m]), k + int(round(f)), int(iu[0][m]), int(iu[1][m]))
    return best


def _is_linear(pos: np.ndarray, tol: float = 0.1) -> bool:
    """All atoms within ``tol`` Å of one line (a rotation about it is undefined)."""
    c = pos - pos.mean(0)
    s = np.linalg.svd(c, compute_uv=False)
    return len(pos) < 3 or s[1] / np.sqrt(len(pos)) < tol


def superposition(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The proper rotation (Kabsch) that best turns centred ``a`` onto centred ``b``.

    Row vectors: ``(a - mean) @ rot ≈ b - mean``; a mirror image is not a rotation, so the
    residual then stays large.
    """
    a, b = a - a.mean(0), b - b.mean(0)
    u, _, vt = np.linalg.svd(a.T @ b)
    return u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))]) @ vt


def max_turn_deg(images: Sequence[Atoms]) -> float:
    """Largest rigid rotation (degrees) between neighbouring images of a band.

    The rotation is the best superposition (Kabsch) of one image on the next; pairs with a
    linear image are skipped. A band that turns the molecule needs the NEB to remove
    rigid rotation, or its images drift apart by rotating.
    """
    turns = [0.0]
    for a, b in zip(images[:-1], images[1:], strict=True):
        p, q = a.get_positions(), b.get_positions()
        if _is_linear(p) or _is_linear(q):
            continue
        rot = superposition(p, q)
        turns.append(float(np.degrees(np.arccos(np.clip((np.trace(rot) - 1) / 2, -1, 1)))))
    return max(turns)


def _idpp(images: list[Atoms]) -> None:
    """IDPP-optimise the interior of ``images`` in place, from their current positions.

    Tighter than ASE's default (0.1 eV/Å, 100 steps): a displaced start needs the steps to
    bring the bonds the migrating atom squeezed back to their interpolated lengths.
    """
    from ase.mep import NEB
    from ase.mep.neb import idpp_interpolate

    idpp_interpolate(NEB(images, method="improvedtangent"), traj=None, log=None, fmax=0.01,
                     steps=1000)


def _segment(start: Atoms, end: Atoms, n_interior: int) -> list[Atoms]:
    """The plain IDPP interpolation of one segment (end points included, copies)."""
    from ase.mep import NEB

    images = [start.copy()] + [start.copy() for _ in range(n_interior)] + [end.copy()]
    for img in images:
        img.calc = None
    NEB(images, method="improvedtangent").interpolate(method="idpp")
    return images


def _repaired_segment(start: Atoms, end: Atoms, n_interior: int, min_distance: float,
                      rng: np.random.Generator) -> tuple[list[Atoms], dict[str, Any]]:
    """A segment whose closest contact is at least ``min_distance`` Å, repaired if needed."""
    images = _segment(start, end, n_interior)
    d, k, i, j = closest_contact(images)
    if d >= min_distance or n_interior == 0:
        return images, {"closest_contact": d}
    shift = end.get_positions() - start.get_positions()
    mover = i if np.linalg.norm(shift[i]) >= np.linalg.norm(shift[j]) else j
    along = shift[mover] / max(np.linalg.norm(shift[mover]), 1e-12)
    u = rng.normal(size=3)
    u -= u.dot(along) * along
    u /= np.linalg.norm(u)
    report = {"closest_contact_idpp": d, "repaired_atom": int(mover),
              "repaired_pair": [int(i), int(j)]}
    for amp in REPAIR_AMPLITUDES:
        t = np.linspace(0.0, 1.0, n_interior + 2)[1:-1]
        for img, tk in zip(images[1:-1], t, strict=True):
            pos = (1 - tk) * start.get_positions() + tk * end.get_positions()
            pos[mover] += amp * np.sin(np.pi * tk) * u
            img.positions = pos
        _idpp(images)
        d, k, i, j = closest_contact(images)
        report.update({"repair_amplitude": amp, "closest_contact": d})
        if d >= min_distance:
            log.info("band repaired: atom %d pushed %.1f Å off its straight line "
                     "(closest contact %.2f Å)", mover, amp, d)
            return images, report
    report["failed_at"] = {"image": k, "atoms": [i, j]}
    return images, report


def _knots(reactant: Atoms, product: Atoms, ts_guess: Atoms | None,
           intermediates: Sequence[Atoms]) -> list[Atoms]:
    """Reactant, intermediates (in order), product; the TS guess where it lengthens least."""
    knots = [reactant, *intermediates, product]
    if ts_guess is None:
        return knots

    def length(seq: list[Atoms]) -> float:
        return sum(float(np.linalg.norm(b.positions - a.positions))
                   for a, b in zip(seq[:-1], seq[1:], strict=True))

    best = min(range(1, len(knots)), key=lambda s: length(knots[:s] + [ts_guess] + knots[s:]))
    return knots[:best] + [ts_guess] + knots[best:]


def _allocate(lengths: list[float], n_free: int) -> list[int]:
    """Free images per segment, proportional to the segment lengths (largest remainder)."""
    share = np.array(lengths) / max(sum(lengths), 1e-12) * n_free
    counts = np.floor(share).astype(int)
    for s in np.argsort(-(share - counts))[: n_free - int(counts.sum())]:
        counts[s] += 1
    return counts.tolist()


def build_band(
    reactant: Atoms,
    product: Atoms,
    n_images: int,
    ts_guess: Atoms | None = None,
    intermediates: Sequence[Atoms] = (),
    min_distance: float = DEFAULT_BAND_MIN_DISTANCE,
    seed: int = 0,
    where: str = "reaction path",
    strict: bool = True,
) -> tuple[list[Atoms], dict[str, Any]]:
    """A checked starting band: ``n_images`` interior images between the end points.

    Without guesses and with a sane IDPP interpolation the band is exactly ASE's IDPP
    interpolation. Guesses (``ts_guess``, ordered ``intermediates``) become interior images;
    the other images are spread over the segments by length. A segment closer than
    ``min_distance`` Å somewhere is repaired (symmetry broken with a displacement seeded by
    ``seed``). Returns (images incl. end points, report); raises
    :class:`PathConstructionError` (one line starting with ``where``) if no sane band results
    and ``strict`` (otherwise the best band found is returned, ``report["sane"]`` False).
    """
    knots = _knots(reactant, product, ts_guess, list(intermediates))
    n_free = n_images - (len(knots) - 2)
    if n_free < 0:
        raise PathConstructionError(
            f"{where}: {len(knots) - 2} guess geometries but only {n_images} images "
            "(raise reference_path.n_images)")
    lengths = [float(np.linalg.norm(b.positions - a.positions))
               for a, b in zip(knots[:-1], knots[1:], strict=True)]
    rng = np.random.default_rng(seed)
    band: list[Atoms] = [knots[0].copy()]
    report: dict[str, Any] = {"n_guesses": len(knots) - 2, "segments": []}
    for s, n_int in enumerate(_allocate(lengths, n_free)):
        images, seg = _repaired_segment(knots[s], knots[s + 1], n_int, min_distance, rng)
        report["segments"].append(seg)
        if seg["closest_contact"] < min_distance and strict:
            fail = seg.get("failed_at", {"atoms": [0, 0]})
            i, j = fail["atoms"]
            raise PathConstructionError(
                f"{where}: the interpolated path brings atoms {i} ({reactant[i].symbol}) and "
                f"{j} ({reactant[j].symbol}) to {seg['closest_contact']:.2f} Å (minimum "
                f"{min_distance} Å) even after repair; give a transition-state guess "
                "(ts_guess:) or intermediates: geometry files in the system definition")
        band += images[1:]
    for img in band:
        img.calc = None
        img.pbc = False
    report["closest_contact"] = closest_contact(band)[0]
    report["max_turn_deg"] = max_turn_deg(band)
    report["sane"] = report["closest_contact"] >= min_distance
    report["repaired"] = any("repair_amplitude" in s for s in report["segments"])
    return band, report
