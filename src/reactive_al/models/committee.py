"""Committees of TorchANI models: architecture, assembly, prediction, ASE calculator.

Inside a model TorchANI's units hold (Hartree, Å), so its built-in xTB repulsion stays
consistent; at every boundary of this package energies are eV and forces eV/Å.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.units import Hartree

from reactive_al.models.baseline import Baseline

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
    #: the cheap level the committee is a correction to (Δ-learning;
    #: :meth:`~reactive_al.models.baseline.Baseline.to_dict`), None: no baseline
    baseline: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-python form (safe for ``torch.load(weights_only=True)``)."""
        d = asdict(self)
        d["hidden"] = [int(h) for h in self.hidden]
        if d["baseline"] is None:
            del d["baseline"]  # checkpoints without a baseline keep their earlier form
        return d


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
    """Energies [M, B] (Hartree) and forces [M, B, A, 3] (Hartree/Å) of every member.

    One backward pass for all members: the batch is replicated once per member, every
    member's energy is taken on its own copy, and the gradient of their sum with respect to
    the copies is each member's own gradient (2× faster than one backward per member for a
    single small structure, 1.2× for a training batch).
    """
    nets = model.neural_networks
    m = nets.get_active_members_num() if hasattr(nets, "get_active_members_num") else 1
    b = coords.shape[0]
    copies = coords.detach().unsqueeze(0).repeat(m, 1, 1, 1).requires_grad_(True)
    _, energies = model((species.repeat(m, 1), copies.reshape(m * b, *coords.shape[1:])),
                        ensemble_values=True)
    if energies.dim() == 1:
        energies = energies.unsqueeze(0)
    own = torch.diagonal(energies.reshape(m, m, b), dim1=0, dim2=1).T  # [member, frame]
    (grads,) = torch.autograd.grad(own.sum(), copies, create_graph=create_graph)
    return own, -grads


class Committee:
    """A trained TorchANI committee with its architecture and training record."""

    def __init__(self, model, spec: CommitteeSpec, history: dict[str, Any] | None = None):
        self.model = model
        self.spec = spec
        self.history = history or {}
        #: the Δ-learning baseline every prediction adds (None: the committee is the model)
        self.baseline = Baseline.from_dict(spec.baseline) if spec.baseline else None

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
        """Committee predictions for ``frames`` in eV and eV/Å (baseline included, if any).

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
        if self.baseline is not None:
            # a constant per structure for every member: the spreads stay the learned part's
            e_base, f_base = self.baseline.evaluate(frames)
            members = members + e_base[None, :]
            f_mean = [f + fb for f, fb in zip(f_mean, f_base, strict=True)]
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

    def evaluate_batch(self, frames: list[Atoms]) -> list[dict[str, Any]]:
        """Results of :meth:`calculate` for many structures from one committee call."""
        p = self.committee.predict(frames)
        return [{"energy": float(p["energy"][i]), "forces": p["forces"][i],
                 "energy_std": float(p["energy_std"][i]),
                 "forces_std": self.force_scale * p["forces_std"][i]}
                for i in range(len(frames))]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        """Fill energy (eV), forces (eV/Å), energy_std (eV/atom) and forces_std (eV/Å)."""
        super().calculate(atoms, properties, system_changes)
        self.results = self.evaluate_batch([self.atoms])[0]
