"""Structure generators that need no model: displacements, normal-mode-like, IDPP path.

Every generated structure records ``origin`` (how it was made) and ``subset`` (``reactant``,
``product`` or ``path``: the region of the reaction it represents) in ``atoms.info``.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.neighborlist import natural_cutoffs, neighbor_list
from ase.units import kB

from reactive_al.systems import identity, is_crystal

#: Spring constants (eV/Å²) of the harmonic model behind normal-mode-like sampling.
BOND_SPRING = 25.0
NONBOND_SPRING = 1.5
NONBOND_RANGE = 3.5
#: crystals: standard deviation of the random symmetric strain of each displaced sample (the
#: cell varies too, so the labels carry stress information)
CRYSTAL_STRAIN = 0.02
#: crystals: largest atomic displacement (Å) of a normal-mode sample. The spring model has no
#: angle terms, so a framework's librations (an O–H or C–H turning about its bond) are nearly
#: free and a thermal draw along them can crush a bond; a larger sample is scaled down to this.
CRYSTAL_MODE_MAX_DISPLACEMENT = 0.3


def _tagged(atoms: Atoms, origin: str, subset: str) -> Atoms:
    out = atoms.copy()
    out.calc = None
    out.info = identity(atoms)
    out.info.update({"origin": origin, "subset": subset})
    return out


def random_displacements(
    atoms: Atoms, n: int, sigma: float, rng: np.random.Generator, subset: str
) -> list[Atoms]:
    """``n`` copies with independent Gaussian displacements of ``sigma`` Å per coordinate.

    A crystal's copies are also strained: a random symmetric strain of standard deviation
    :data:`CRYSTAL_STRAIN` per component, atoms moving with the cell.
    """
    frames = []
    for _ in range(n):
        a = _tagged(atoms, f"{subset}/displaced", subset)
        if is_crystal(a):
            e = rng.normal(0.0, CRYSTAL_STRAIN, (3, 3))
            a.set_cell(a.cell @ (np.eye(3) + 0.5 * (e + e.T)), scale_atoms=True)
        a.positions += rng.normal(0.0, sigma, a.positions.shape)
        frames.append(a)
    return frames


def _rigid_body_basis(positions: np.ndarray, masses: np.ndarray,
                      rotations: bool = True) -> np.ndarray:
    """Orthonormal mass-weighted translations and rotations ([3N, 6], or 5 if linear).

    ``rotations=False`` (a crystal: rotating it moves atoms against their images): the three
    translations only.
    """
    sqrt_m = np.sqrt(masses)
    r = positions - (masses[:, None] * positions).sum(0) / masses.sum()
    vecs = []
    for axis in np.eye(3):
        vecs.append((sqrt_m[:, None] * axis[None, :]).ravel())
        if rotations:
            vecs.append((sqrt_m[:, None] * np.cross(axis, r)).ravel())
    u, s, _ = np.linalg.svd(np.array(vecs).T, full_matrices=False)
    return u[:, s > 1e-8 * s.max()]


def modes_from_hessian(hessian: np.ndarray, masses: np.ndarray,
                       positions: np.ndarray | None = None,
                       rel_cutoff: float = 1e-6,
                       rotations: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Normal modes of a Cartesian Hessian (eV/Å²): (ω², displacement vectors [k, N, 3]).

    With ``positions`` the rigid-body motions are projected out first, so the small spurious
    curvature a finite-difference Hessian has along rotations cannot pass for a soft mode.
    Modes with ω² at or below ``rel_cutoff`` × the largest (rigid-body, or imaginary at a
    saddle point) are dropped. ``rotations=False`` for crystals (translations only).
    """
    n = len(masses)
    inv_sqrt_m = 1.0 / np.sqrt(np.repeat(masses, 3))
    mw = 0.5 * (hessian + hessian.T) * inv_sqrt_m[:, None] * inv_sqrt_m[None, :]
    if positions is not None:
        rigid = _rigid_body_basis(np.asarray(positions), np.asarray(masses), rotations)
        proj = np.eye(3 * n) - rigid @ rigid.T
        mw = proj @ mw @ proj
    w2, vecs = np.linalg.eigh(mw)
    keep = w2 > rel_cutoff * max(w2.max(), 1e-12)
    modes = (vecs[:, keep] * inv_sqrt_m[:, None]).T.reshape(-1, n, 3)
    return w2[keep], modes


def harmonic_modes(atoms: Atoms) -> tuple[np.ndarray, np.ndarray]:
    """Vibrational modes of a spring model: bonds (natural cutoffs) plus weak contacts.

    Returns (ω² in eV/(Å²·amu), Cartesian displacement vectors [n_modes, N, 3]) for the
    non-rigid modes; the six (five if linear) rigid-body modes are dropped. A crystal's springs
    reach periodic images, and only its three translations are rigid.
    """
    n = len(atoms)
    if is_crystal(atoms):
        return _crystal_harmonic_modes(atoms)
    i_b, j_b = neighbor_list("ij", atoms, natural_cutoffs(atoms, mult=1.15))
    bonded = {(int(i), int(j)) for i, j in zip(i_b, j_b, strict=True)}
    hess = np.zeros((3 * n, 3 * n))
    pos = atoms.positions
    for i in range(n):
        for j in range(i + 1, n):
            r = pos[j] - pos[i]
            d = np.linalg.norm(r)
            if (i, j) in bonded:
                k = BOND_SPRING
            elif d < NONBOND_RANGE:
                k = NONBOND_SPRING
            else:
                continue
            block = k * np.outer(r, r) / d**2
            for a, b, s in ((i, i, 1), (j, j, 1), (i, j, -1), (j, i, -1)):
                hess[3 * a:3 * a + 3, 3 * b:3 * b + 3] += s * block
    return modes_from_hessian(hess, atoms.get_masses(), atoms.positions)


def _crystal_harmonic_modes(atoms: Atoms) -> tuple[np.ndarray, np.ndarray]:
    """:func:`harmonic_modes` of a crystal: the same springs, to the nearest images too.

    Contacts reach 1.2× the nearest-neighbour distance at least.

    Every spring appears twice in ASE's neighbour list (i→j and j→i with the opposite
    image), so each entry adds half of its Hessian block.
    """
    n = len(atoms)
    hess = np.zeros((3 * n, 3 * n))
    bonded = set()
    i_b, j_b, s_b = neighbor_list("ijS", atoms, natural_cutoffs(atoms, mult=1.15))
    for i, j, shift in zip(i_b, j_b, s_b, strict=True):
        bonded.add((int(i), int(j), *map(int, shift)))
    # contacts reach at least the nearest neighbours (a rare-gas or ionic crystal has no bonds)
    nearest = float(neighbor_list("d", atoms, 2 * NONBOND_RANGE).min())
    reach = max(NONBOND_RANGE, 1.2 * nearest)
    for i, j, shift, d_vec in zip(*neighbor_list("ijSD", atoms, reach), strict=True):
        d = float(np.linalg.norm(d_vec))
        k = BOND_SPRING if (int(i), int(j), *map(int, shift)) in bonded else NONBOND_SPRING
        block = 0.5 * k * np.outer(d_vec, d_vec) / d**2
        for a, b, sign in ((i, i, 1), (j, j, 1), (i, j, -1), (j, i, -1)):
            hess[3 * a:3 * a + 3, 3 * b:3 * b + 3] += sign * block
    return modes_from_hessian(hess, atoms.get_masses(), atoms.positions, rotations=False)


def normal_mode_perturbations(
    atoms: Atoms, n: int, temperature_K: float, rng: np.random.Generator, subset: str,
    modes: tuple[np.ndarray, np.ndarray] | None = None, origin: str = "normal_mode",
) -> list[Atoms]:
    """``n`` classical thermal samples along normal modes (the spring model's by default).

    Each mode coordinate q_k is drawn from N(0, k_B T / ω_k²), so stiff bonds move little and
    soft modes (the ion–molecule distance, bends) move more, as they would at ``temperature_K``.
    ``modes`` = (ω², vectors) from :func:`modes_from_hessian`, e.g. of the current model.
    A crystal's samples move no atom by more than :data:`CRYSTAL_MODE_MAX_DISPLACEMENT`.
    """
    w2, modes = harmonic_modes(atoms) if modes is None else modes
    cap = CRYSTAL_MODE_MAX_DISPLACEMENT if is_crystal(atoms) else np.inf
    frames = []
    for _ in range(n):
        q = rng.normal(0.0, np.sqrt(kB * temperature_K / w2))
        a = _tagged(atoms, f"{subset}/{origin}", subset)
        # modes are orthonormal in mass-weighted space; q is in Å·√amu
        step = np.tensordot(q, modes, axes=1)
        largest = float(np.linalg.norm(step, axis=1).max())
        a.positions += step * min(1.0, cap / largest) if largest > 0 else step
        frames.append(a)
    return frames


def cell_path(start: Atoms, end: Atoms, n_images: int,
              include_end: bool = False) -> list[Atoms]:
    """Crystals: ``n_images`` interior images between two forms of the same atoms.

    The cell matrix and the fractional coordinates are interpolated linearly (each atom's
    fractional step wrapped to the nearest image, so no atom crosses the cell). Images are
    tagged ``origin`` ``cell_path`` and keep ``start``'s identity; ``include_end`` appends a
    copy of ``end`` tagged the same way.
    """
    frac0 = start.get_scaled_positions(wrap=False)
    dfrac = end.get_scaled_positions(wrap=False) - frac0
    dfrac -= np.round(dfrac)
    images = []
    for k in range(1, n_images + 1):
        t = k / (n_images + 1)
        a = _tagged(start, "cell_path", "cell_path")
        a.set_cell((1 - t) * start.cell.array + t * end.cell.array)
        a.set_scaled_positions(frac0 + t * dfrac)
        images.append(a)
    if include_end:
        last = _tagged(end, "cell_path", "cell_path")
        last.info.update(identity(start))
        images.append(last)
    return images


def idpp_path(reactant: Atoms, product: Atoms, n_images: int,
              band: list[Atoms] | None = None) -> list[Atoms]:
    """Interior images of the checked IDPP band (:func:`build_band`), or of ``band``."""
    from reactive_al.exploration.band import build_band

    images = band if band is not None else build_band(reactant, product, n_images)[0]
    return [_tagged(img, "path/idpp", "path") for img in images[1:-1]]


def path_perturbations(
    path: list[Atoms], n_per_image: int, sigma: float, rng: np.random.Generator,
    origin: str = "path/idpp_displaced",
) -> list[Atoms]:
    """Gaussian perturbations (``sigma`` Å) of each path image."""
    frames = []
    for img in path:
        for _ in range(n_per_image):
            a = _tagged(img, origin, "path")
            a.positions += rng.normal(0.0, sigma, a.positions.shape)
            frames.append(a)
    return frames


def structure_set(
    reactant: Atoms,
    product: Atoms | None,
    n_displaced: int,
    n_normal_mode: int,
    n_path_images: int,
    n_path_perturbed: int,
    sigma: float,
    temperature_K: float,
    rng: np.random.Generator,
    include_path_images: bool = True,
) -> list[Atoms]:
    """A mixed set: displaced and normal-mode samples of each well, plus path structures.

    Without a product only the reactant well is sampled.
    """
    wells = [("reactant", reactant)] + ([("product", product)] if product is not None else [])
    frames: list[Atoms] = []
    for subset, geom in wells:
        frames += random_displacements(geom, n_displaced, sigma, rng, subset)
        frames += normal_mode_perturbations(geom, n_normal_mode, temperature_K, rng, subset)
    if product is not None and n_path_images > 0:
        path = idpp_path(reactant, product, n_path_images)
        if include_path_images:
            frames += path
        frames += path_perturbations(path, n_path_perturbed, sigma, rng)
    return frames
