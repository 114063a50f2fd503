"""Committees of TorchANI models: building, training on energies and forces, prediction.

Inside a model TorchANI's units hold (Hartree, Å), so its built-in xTB repulsion stays
consistent; at every boundary of this module energies are eV and forces eV/Å.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.units import Hartree

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "reactive_al.committee/1"


@dataclass
class CommitteeSpec:
    """Architecture of a committee; everything needed to rebuild it from a checkpoint."""

    symbols: list[str]
    lot: str = "b3lyp-6-31+g*"
    ensemble_size: int = 4
    hidden: list[int] = field(default_factory=lambda: [64, 48])
    activation: str = "gelu"
    radial_cutoff: float = 5.2
    angular_cutoff: float = 3.5
    radial_shifts: int = 16
    angular_shifts: int = 8
    angular_sections: int = 4
    repulsion: bool = True
    self_energies: dict[str, float] = field(default_factory=dict)  # Hartree per atom

    def to_dict(self) -> dict[str, Any]:
        """Plain-python form (safe for ``torch.load(weights_only=True)``)."""
        d = asdict(self)
        d["hidden"] = [int(h) for h in self.hidden]
        return d


@dataclass
class TrainingConfig:
    """Optimisation settings for a committee."""

    max_epochs: int = 400
    #: early stopping waits at least this long: a validation split of a few frames is noisy
    min_epochs: int = 0
    batch_size: int = 32
    learning_rate: float = 2e-3
    weight_decay: float = 1e-6
    force_weight: float = 1.0
    validation_fraction: float = 0.15
    patience: int = 50
    seed: int = 0
    max_minutes: float = 10.0


def build_model(spec: CommitteeSpec):
    """Assemble an ANI committee (``spec.ensemble_size`` members) from TorchANI parts.

    Same recipe as ``torchani.arch.simple_ani`` (linear radial/angular AEV cover, smooth
    cutoff, xTB repulsion), with per-element network widths from ``spec.hidden``.
    """
    from torchani.aev import ANIAngular, ANIRadial
    from torchani.arch import Assembler
    from torchani.nn import ANINetworks
    from torchani.potentials import RepulsionXTB

    asm = Assembler(periodic_table_index=True)
    asm.set_symbols(spec.symbols)
    asm.set_global_cutoff_fn("smooth")
    asm.set_aev_computer(
        radial=ANIRadial.cover_linearly(
            start=0.9, cutoff=spec.radial_cutoff, eta=19.7, num_shifts=spec.radial_shifts
        ),
        angular=ANIAngular.cover_linearly(
            start=0.9, eta=12.5, zeta=14.1, num_shifts=spec.angular_shifts,
            num_sections=spec.angular_sections, cutoff=spec.angular_cutoff,
        ),
        strategy="pyaev",
    )
    asm.set_atomic_networks(
        cls=ANINetworks,
        ctor="build",
        kwargs={"dims": {}, "default_dims": tuple(spec.hidden), "activation": spec.activation},
    )
    asm.set_neighborlist("all_pairs")
    if spec.self_energies:
        asm.set_self_energies({s: float(spec.self_energies[s]) for s in spec.symbols})
    else:
        asm.set_zeros_as_self_energies()
    if spec.repulsion:
        asm.add_potential(RepulsionXTB, name="repulsion_xtb", cutoff=spec.radial_cutoff)
    model = asm.assemble(spec.ensemble_size)
    return model.to(torch.float32)


def fit_self_energies(frames: list[Atoms], symbols: list[str]) -> dict[str, float]:
    """Least-squares per-element energies (Hartree) so that E ≈ Σ_i e(Z_i).

    With one composition only (a single reaction) the system is rank-deficient and the
    minimum-norm solution is used: it removes the mean energy, which is all that matters.
    """
    counts = np.array([[a.get_chemical_symbols().count(s) for s in symbols] for a in frames],
                      dtype=float)
    energies = np.array([a.get_potential_energy() for a in frames]) / Hartree
    coef, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    return {s: float(c) for s, c in zip(symbols, coef, strict=True)}


def frames_to_tensors(frames: list[Atoms], with_labels: bool = True) -> dict[str, torch.Tensor]:
    """Pad frames into species (−1 padding), coordinates, energies and forces tensors."""
    n = len(frames)
    n_max = max(len(a) for a in frames)
    species = torch.full((n, n_max), -1, dtype=torch.long)
    coords = torch.zeros((n, n_max, 3), dtype=torch.float32)
    out: dict[str, torch.Tensor] = {}
    if with_labels:
        out["energies"] = torch.zeros(n, dtype=torch.float64)
        out["forces"] = torch.zeros((n, n_max, 3), dtype=torch.float32)
    for i, a in enumerate(frames):
        k = len(a)
        species[i, :k] = torch.as_tensor(a.get_atomic_numbers())
        coords[i, :k] = torch.as_tensor(a.get_positions(), dtype=torch.float32)
        if with_labels:
            out["energies"][i] = a.get_potential_energy() / Hartree
            out["forces"][i, :k] = torch.as_tensor(a.get_forces() / Hartree, dtype=torch.float32)
    out["species"] = species
    out["coordinates"] = coords
    return out


def _member_energies_forces(model, species, coords, create_graph: bool):
    """Energies [M, B] (Hartree) and forces [M, B, A, 3] (Hartree/Å) of every member."""
    coords = coords.detach().requires_grad_(True)
    _, energies = model((species, coords), ensemble_values=True)
    if energies.dim() == 1:
        energies = energies.unsqueeze(0)
    m = energies.shape[0]
    grads = [
        torch.autograd.grad(energies[i].sum(), coords, create_graph=create_graph,
                            retain_graph=True)[0]
        for i in range(m)
    ]
    return energies, -torch.stack(grads)


class Committee:
    """A trained TorchANI committee with its architecture and training record."""

    def __init__(self, model, spec: CommitteeSpec, history: dict[str, Any] | None = None):
        self.model = model
        self.spec = spec
        self.history = history or {}

    # -- persistence -----------------------------------------------------------------------
    def to_checkpoint(self) -> dict[str, Any]:
        """Checkpoint dict loadable with ``torch.load(weights_only=True)``."""
        return {
            "format": CHECKPOINT_FORMAT,
            "spec": self.spec.to_dict(),
            "state_dict": self.model.state_dict(),
            "history": self.history,
        }

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any]) -> Committee:
        """Rebuild a committee from :meth:`to_checkpoint` output."""
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"not a reactive_al committee checkpoint: {ckpt.get('format')!r}")
        spec = CommitteeSpec(**ckpt["spec"])
        model = build_model(spec)
        model.load_state_dict(ckpt["state_dict"])
        model.eval()
        return cls(model, spec, ckpt.get("history", {}))

    # -- prediction ------------------------------------------------------------------------
    def predict(self, frames: list[Atoms], batch_size: int = 256) -> dict[str, Any]:
        """Committee predictions for ``frames`` in eV and eV/Å.

        Returns arrays: ``energy`` (mean, [n]), ``energy_members`` ([M, n]), ``energy_std``
        (committee std / √N_atoms, eV/atom, [n]), and per frame lists ``forces`` (mean,
        [N_i, 3]), ``forces_std`` (per-atom spread √(mean_m ‖F_m − F̄‖²), [N_i]).
        """
        e_members, f_mean, f_std = [], [], []
        for start in range(0, len(frames), batch_size):
            chunk = frames[start:start + batch_size]
            t = frames_to_tensors(chunk, with_labels=False)
            e, f = _member_energies_forces(self.model, t["species"], t["coordinates"], False)
            e = e.detach().double() * Hartree
            f = f.detach().double() * Hartree
            e_members.append(e.numpy())
            fm = f.mean(0)
            spread = ((f - fm) ** 2).sum(-1).mean(0).sqrt()
            for i, a in enumerate(chunk):
                f_mean.append(fm[i, : len(a)].numpy())
                f_std.append(spread[i, : len(a)].numpy())
        members = np.concatenate(e_members, axis=1)
        n_atoms = np.array([len(a) for a in frames], dtype=float)
        ddof = 1 if members.shape[0] > 1 else 0
        return {
            "energy": members.mean(0),
            "energy_members": members,
            "energy_std": members.std(0, ddof=ddof) / np.sqrt(n_atoms),
            "forces": f_mean,
            "forces_std": f_std,
        }

    def calculator(self, force_scale: float = 1.0) -> CommitteeCalculator:
        """ASE calculator driven by the committee mean (``forces_std`` times ``force_scale``)."""
        return CommitteeCalculator(self, force_scale=force_scale)


class CommitteeCalculator(Calculator):
    """ASE calculator: committee-mean energy/forces plus the committee spreads in results."""

    implemented_properties = ["energy", "forces", "energy_std", "forces_std"]

    def __init__(self, committee: Committee, force_scale: float = 1.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.committee = committee
        self.force_scale = force_scale

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        """Fill energy (eV), forces (eV/Å), energy_std (eV/atom) and forces_std (eV/Å)."""
        super().calculate(atoms, properties, system_changes)
        p = self.committee.predict([self.atoms])
        self.results = {
            "energy": float(p["energy"][0]),
            "forces": p["forces"][0],
            "energy_std": float(p["energy_std"][0]),
            "forces_std": self.force_scale * p["forces_std"][0],
        }


def _split(n: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    idx = rng.permutation(n)
    n_val = max(1, int(round(fraction * n))) if n >= 5 else 0
    return idx[n_val:], idx[:n_val]


def train_committee(
    frames: list[Atoms], spec: CommitteeSpec, cfg: TrainingConfig
) -> Committee:
    """Train a committee on labeled frames (energies and forces) with early stopping.

    Self energies are fitted to the data first; all members share one split and see the
    same mini-batches but start from different random weights. The state with the lowest
    validation loss is kept (training loss when there are too few frames to hold any out).
    """
    if len(frames) < 2:
        raise ValueError(f"need at least 2 labeled frames to train, got {len(frames)}")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    spec = copy.deepcopy(spec)
    spec.self_energies = fit_self_energies(frames, spec.symbols)
    model = build_model(spec)
    data = frames_to_tensors(frames)
    n_atoms = (data["species"] >= 0).sum(1).double()
    train_idx, val_idx = _split(len(frames), cfg.validation_fraction, rng)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate,
                            weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5,
                                                       patience=max(5, cfg.patience // 3))

    def loss_on(idx: np.ndarray, create_graph: bool) -> tuple[torch.Tensor, dict[str, float]]:
        sp, xyz = data["species"][idx], data["coordinates"][idx]
        e, f = _member_energies_forces(model, sp, xyz, create_graph)
        de = (e.double() - data["energies"][idx]) * Hartree / n_atoms[idx].sqrt()
        mask = (sp >= 0)[None, :, :, None]
        df = (f - data["forces"][idx]) * Hartree * mask
        n_comp = mask.sum() * 3
        e_loss = (de ** 2).mean(1).sum()
        f_loss = (df ** 2).sum((1, 2, 3)).sum() / n_comp
        loss = e_loss + cfg.force_weight * f_loss
        m = e.shape[0]
        return loss, {"energy_rmse": float((e_loss.detach() / m).sqrt()),
                      "force_rmse": float((f_loss.detach() / m).sqrt())}

    best = (math.inf, copy.deepcopy(model.state_dict()), 0)
    start = time.perf_counter()
    epochs_run, steps = 0, 0
    curve = []
    for epoch in range(cfg.max_epochs):
        model.train()
        perm = rng.permutation(train_idx)
        for b in range(0, len(perm), cfg.batch_size):
            loss, _ = loss_on(perm[b:b + cfg.batch_size], create_graph=True)
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
        epochs_run = epoch + 1
        model.eval()
        monitor_idx = val_idx if len(val_idx) else train_idx
        val_loss, stats = loss_on(monitor_idx, create_graph=False)
        v = float(val_loss)
        sched.step(v)
        curve.append(v)
        if v < best[0] * (1 - 1e-4):
            best = (v, copy.deepcopy(model.state_dict()), epoch)
        if epoch + 1 >= cfg.min_epochs and epoch - best[2] >= cfg.patience:
            break
        if (time.perf_counter() - start) / 60 > cfg.max_minutes:
            log.warning("training stopped at the %.1f min time limit", cfg.max_minutes)
            break
    model.load_state_dict(best[1])
    model.eval()
    _, val_stats = loss_on(val_idx if len(val_idx) else train_idx, create_graph=False)
    history = {
        "n_train": int(len(train_idx)),
        "n_val": int(len(val_idx)),
        # which frames of the training set were held out: calibration uses them later
        "val_indices": [int(i) for i in sorted(val_idx)],
        "epochs": int(epochs_run),
        "steps": int(steps),
        "best_epoch": int(best[2]),
        "wall_time_s": round(time.perf_counter() - start, 2),
        "val_energy_rmse_ev_per_sqrt_atom": val_stats["energy_rmse"],
        "val_force_rmse_ev_per_a": val_stats["force_rmse"],
        "val_loss_curve": [float(x) for x in curve],
    }
    log.info("trained %d-member committee on %d frames: %d epochs, %.1f s, val F-RMSE %.3f eV/Å",
             spec.ensemble_size, len(frames), epochs_run, history["wall_time_s"],
             val_stats["force_rmse"])
    return Committee(model, spec, history)
