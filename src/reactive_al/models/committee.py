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
from reactive_al.models.features import StackedNetworks, member_networks

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


def is_periodic(atoms: Atoms) -> bool:
    """True for a crystal (periodic in all three directions, with a cell)."""
    return bool(np.all(atoms.pbc))


def frames_to_tensors(frames: list[Atoms], with_labels: bool = True) -> dict[str, torch.Tensor]:
    """Pad frames into species (−1 padding), coordinates, energies and forces tensors.

    Periodic frames also give ``cells`` [n, 3, 3] (Å; zeros for molecules), ``periodic`` [n]
    (bool) and, with labels, ``stress`` [n, 3, 3] (Hartree/Å³; the label's stress where it has
    one) with ``has_stress`` [n] (bool).
    """
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
    periodic = [is_periodic(a) for a in frames]
    if any(periodic):
        out["periodic"] = torch.tensor(periodic)
        out["cells"] = torch.zeros((n, 3, 3), dtype=torch.float32)
        for i, a in enumerate(frames):
            if periodic[i]:
                out["cells"][i] = torch.as_tensor(np.asarray(a.cell), dtype=torch.float32)
        if with_labels:
            out["stress"] = torch.zeros((n, 3, 3), dtype=torch.float32)
            out["has_stress"] = torch.zeros(n, dtype=torch.bool)
            for i, a in enumerate(frames):
                if periodic[i] and "stress" in (a.calc.results if a.calc else {}):
                    out["stress"][i] = torch.as_tensor(a.get_stress(voigt=False) / Hartree,
                                                       dtype=torch.float32)
                    out["has_stress"][i] = True
    return out


def _periodic_member_terms(model, species, coords, cell, create_graph: bool):
    """Every member's energy, forces and stress for one crystal (Hartree, Å).

    Shapes [M, 1], [M, 1, A, 3] and [M, 1, 3, 3] (Hartree/Å³); ``cell`` [3, 3] Å, rows the
    lattice vectors.
    The stress is the strain derivative σ = (1/V) ∂E/∂ε at ε = 0, positions and cell strained
    together (x → x(1 + ε), cell → cell(1 + ε)): ASE's sign convention. TorchANI takes one cell
    per call, so a crystal is one call; every member's gradient is its own backward pass.
    """
    nets = model.neural_networks
    m = nets.get_active_members_num() if hasattr(nets, "get_active_members_num") else 1
    x = coords.detach().clone().requires_grad_(True)
    eps = torch.zeros((3, 3), dtype=coords.dtype, requires_grad=True)
    deform = torch.eye(3, dtype=coords.dtype) + 0.5 * (eps + eps.T)
    pbc = torch.ones(3, dtype=torch.bool)
    _, energies = model((species, x @ deform), cell=cell @ deform, pbc=pbc,
                        ensemble_values=True)
    energies = energies.reshape(m, -1)
    volume = torch.linalg.det(cell).abs()
    forces, stress = [], []
    for k in range(m):
        gx, ge = torch.autograd.grad(energies[k].sum(), (x, eps), retain_graph=True,
                                     create_graph=create_graph)
        forces.append(-gx)
        stress.append(ge.unsqueeze(0) / volume)
    return energies, torch.stack(forces), torch.stack(stress)


def member_terms(model, t: dict[str, torch.Tensor], idx, create_graph: bool):  # noqa: ANN001
    """Every member's energies [M, b], forces [M, b, A, 3] and (crystals) stress [M, b, 3, 3].

    ``t`` is :func:`frames_to_tensors` output and ``idx`` the frames to take (Hartree, Å).
    Molecules go through one batched call; each crystal through its own (its cell). The
    stress is None when no frame is periodic, zero for the molecules of a mixed batch.
    """
    sp, xyz = t["species"][idx], t["coordinates"][idx]
    if "periodic" not in t or not bool(t["periodic"][idx].any()):
        e, f = _member_energies_forces(model, sp, xyz, create_graph)
        return e, f, None
    periodic = t["periodic"][idx]
    cells = t["cells"][idx]
    mol = torch.nonzero(~periodic).flatten()
    parts: dict[int, tuple] = {}
    if len(mol):
        e, f = _member_energies_forces(model, sp[mol], xyz[mol], create_graph)
        for j, i in enumerate(mol.tolist()):
            parts[i] = (e[:, j:j + 1], f[:, j:j + 1], None)
    for i in torch.nonzero(periodic).flatten().tolist():
        parts[i] = _periodic_member_terms(model, sp[i:i + 1], xyz[i:i + 1], cells[i],
                                          create_graph)
    order = range(len(sp))
    e = torch.cat([parts[i][0] for i in order], dim=1)
    f = torch.cat([parts[i][1] for i in order], dim=1)
    zero = xyz.new_zeros((e.shape[0], 1, 3, 3))
    s = torch.cat([parts[i][2] if parts[i][2] is not None else zero for i in order], dim=1)
    return e, f, s


def _member_energies_forces(model, species, coords, create_graph: bool):
    """Energies [M, B] (Hartree) and forces [M, B, A, 3] (Hartree/Å) of every member.

    One backward pass for all members: the batch is replicated once per member, member m's
    energy is taken on its own copy (its networks stacked with the others',
    :class:`~reactive_al.models.features.StackedNetworks`), and the gradient of their sum
    with respect to the copies is each member's own gradient. The model's own sum of
    potentials (``ANI.compute_from_neighbors``) with one network call per element and layer
    instead of one per member and copy: 2× faster for a walker step, equal to float32.
    """
    from torchani.neighbors import discard_outside_cutoff

    m = len(member_networks(model))
    b = coords.shape[0]
    elem = model.species_converter(species, nop=not model.periodic_table_index)
    el = elem.repeat(m, 1)
    copies = coords.detach().unsqueeze(0).repeat(m, 1, 1, 1).requires_grad_(True)
    x = copies.reshape(m * b, *coords.shape[1:])
    everyone = model.neighborlist(model.cutoff, el, x, None, None)
    energies = x.new_zeros(m, b)
    for name, pot in model.potentials.items():
        if not pot._enabled:
            continue
        pairs = discard_outside_cutoff(everyone, pot.cutoff)
        if name == "nnp":
            aevs = pot.aev_computer.compute_from_neighbors(el, x, pairs)
            energies = energies + StackedNetworks(model)(elem, aevs.view(m, b, *aevs.shape[1:]))
        else:
            energies = energies + pot.compute_from_neighbors(el, x, pairs).energies.view(m, b)
    if model.energy_shifter._enabled:
        energies = energies + model.energy_shifter(elem)
    (grads,) = torch.autograd.grad(energies.sum(), copies, create_graph=create_graph)
    return energies, -grads


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
        [N_i, 3]), ``forces_std`` (per-atom spread √(mean_m ‖F_m − F̄‖²), [N_i]). When a
        frame is a crystal also ``stress`` (mean, [n, 3, 3], eV/Å³, ASE's sign; zero for
        molecules) and ``stress_std`` (√(mean_m ‖σ_m − σ̄‖²), [n], eV/Å³).
        """
        e_members, f_mean, f_std, s_members = [], [], [], []
        for start in range(0, len(frames), batch_size):
            chunk = frames[start:start + batch_size]
            t = frames_to_tensors(chunk, with_labels=False)
            e, f, s = member_terms(self.model, t, slice(None), False)
            if s is not None:
                s_members.append(s.detach().double().numpy() * Hartree)
            elif any(is_periodic(a) for a in frames):
                s_members.append(np.zeros((e.shape[0], len(chunk), 3, 3)))
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
        out = {
            "energy": members.mean(0),
            "energy_members": members,
            "energy_std": members.std(0, ddof=ddof) / np.sqrt(n_atoms),
            "forces": f_mean,
            "forces_std": f_std,
        }
        if s_members:
            stress = np.concatenate(s_members, axis=1)  # [M, n, 3, 3], eV/Å³
            out["stress"] = stress.mean(0)
            # spread of the members' stress tensors, √(mean_m ‖σ_m − σ̄‖²) (Frobenius)
            out["stress_std"] = np.sqrt(((stress - stress.mean(0)) ** 2).sum((2, 3)).mean(0))
        return out

    def calculator(self, force_scale: float = 1.0) -> CommitteeCalculator:
        """ASE calculator driven by the committee mean (``forces_std`` times ``force_scale``)."""
        return CommitteeCalculator(self, force_scale=force_scale)


class CommitteeCalculator(Calculator):
    """ASE calculator: committee-mean energy/forces plus the committee spreads in results."""

    implemented_properties = ["energy", "forces", "stress", "energy_std", "forces_std",
                              "stress_std"]

    def __init__(self, committee: Committee, force_scale: float = 1.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.committee = committee
        self.force_scale = force_scale

    def prefetch(self, atoms: Atoms) -> None:
        """Start the baseline single point of ``atoms`` (Δ-learning, in ``Baseline.parallel``).

        Called by lockstep walkers as each asks; :meth:`evaluate_batch` then uses it.
        """
        if self.committee.baseline is not None:
            self.committee.baseline.prefetch([atoms])

    def evaluate_batch(self, frames: list[Atoms]) -> list[dict[str, Any]]:
        """Results of :meth:`calculate` for many structures from one committee call."""
        from ase.stress import full_3x3_to_voigt_6_stress

        p = self.committee.predict(frames)
        results = [{"energy": float(p["energy"][i]), "forces": p["forces"][i],
                    "energy_std": float(p["energy_std"][i]),
                    "forces_std": self.force_scale * p["forces_std"][i]}
                   for i in range(len(frames))]
        for i, a in enumerate(frames):
            if is_periodic(a):
                results[i]["stress"] = full_3x3_to_voigt_6_stress(p["stress"][i])
                results[i]["stress_std"] = float(p["stress_std"][i])
        return results

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        """Fill energy (eV), forces (eV/Å), energy_std (eV/atom) and forces_std (eV/Å).

        For a crystal also stress (Voigt, eV/Å³) and stress_std (eV/Å³).
        """
        super().calculate(atoms, properties, system_changes)
        self.results = self.evaluate_batch([self.atoms])[0]
