"""Ramachandran (φ, ψ) coverage of explored frames (alanine dipeptide and other peptides)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ase import Atoms
from ase.neighborlist import natural_cutoffs, neighbor_list


def _wrap_deg(angle: np.ndarray | float) -> np.ndarray:
    return (np.asarray(angle, dtype=float) + 180.0) % 360.0 - 180.0


def dihedral_phi_psi(
    atoms: Atoms, phi_idx: Sequence[int], psi_idx: Sequence[int]
) -> tuple[float, float]:
    """Backbone dihedrals (φ, ψ) in degrees wrapped to [−180, 180) (IUPAC sign, as ASE)."""
    if len(phi_idx) != 4 or len(psi_idx) != 4:
        raise ValueError("phi_idx and psi_idx must each hold 4 atom indices")
    phi = atoms.get_dihedral(*[int(i) for i in phi_idx])
    psi = atoms.get_dihedral(*[int(i) for i in psi_idx])
    return float(_wrap_deg(phi)), float(_wrap_deg(psi))


def phi_psi_of_frames(
    frames: Sequence[Atoms], phi_idx: Sequence[int], psi_idx: Sequence[int]
) -> np.ndarray:
    """(φ, ψ) in degrees of every frame, shape [n_frames, 2]."""
    return np.array([dihedral_phi_psi(a, phi_idx, psi_idx) for a in frames],
                    dtype=float).reshape(-1, 2)


def quadtree_level_fractions(phi_psi_deg: np.ndarray, depth: int = 5) -> np.ndarray:
    """Fraction of the 4^h cells over [−180°, 180°]² visited at each level h = 1..depth."""
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    pts = np.asarray(phi_psi_deg, dtype=float).reshape(-1, 2)
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    fractions = np.zeros(depth)
    if pts.size == 0:
        return fractions
    # +180° is the same angle as −180° but callers may not wrap; clip keeps it in the last cell
    unit = np.clip((pts + 180.0) / 360.0, 0.0, 1.0)
    for h in range(1, depth + 1):
        n = 2**h
        cells = np.minimum((unit * n).astype(np.int64), n - 1)
        n_visited = np.unique(cells[:, 0] * n + cells[:, 1]).size
        fractions[h - 1] = n_visited / 4**h
    return fractions


def quadtree_coverage(phi_psi_deg: np.ndarray, depth: int = 5) -> float:
    """Quadtree coverage of the Ramachandran plane in [0, 1].

    Level h (1..depth) splits [−180°, 180°]² into 4^h cells; every visited cell adds 1/4^h and
    the total is divided by ``depth``. Coarse levels reward reaching new basins, fine levels
    reward filling them, so one long stay in a single basin scores low.
    """
    return float(np.mean(quadtree_level_fractions(phi_psi_deg, depth)))


def alanine_dipeptide_phi_psi_indices(
    atoms: Atoms,
) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    """Atom indices of φ (C(=O)–N–Cα–C) and ψ (N–Cα–C–N) of Ace-Ala-NMe from connectivity.

    Bonds come from ASE's covalent radii (``natural_cutoffs``, 20 % margin), so the atom order
    of the file does not matter. Cα is the carbon bonded to an amide N and to a carbonyl C,
    where that N also belongs to the preceding peptide bond and that C starts the next one.
    """
    sym = atoms.get_chemical_symbols()
    # bare radii sums miss real bonds (C–H 1.09 Å vs 0.76 + 0.31 Å); a 20 % margin still stays
    # well below 1–3 distances (≥ 1.7 Å)
    i, j = neighbor_list("ij", atoms, natural_cutoffs(atoms, mult=1.2))
    nbrs: dict[int, set[int]] = {k: set() for k in range(len(atoms))}
    for a, b in zip(i, j, strict=True):
        nbrs[int(a)].add(int(b))

    def bonded(k: int, element: str) -> list[int]:
        return sorted(n for n in nbrs[k] if sym[n] == element)

    carbonyl = {k for k in range(len(atoms))
                if sym[k] == "C" and bonded(k, "O") and bonded(k, "N")}
    found = []
    for ca in range(len(atoms)):
        if sym[ca] != "C" or ca in carbonyl:
            continue
        for n in bonded(ca, "N"):
            prev_c = [c for c in bonded(n, "C") if c in carbonyl]
            for c in bonded(ca, "C"):
                if c not in carbonyl:
                    continue
                next_n = [m for m in bonded(c, "N") if m != n]
                if prev_c and next_n:
                    found.append(((prev_c[0], n, ca, c), (n, ca, c, next_n[0])))
    if len(found) != 1:
        raise ValueError(f"expected one Cα between two peptide bonds (Ace-Ala-NMe), "
                         f"found {len(found)}")
    return found[0]
