"""Training-set AEVs computed once: features, their coordinate Jacobians, the fixed terms.

A committee's trainable parameters are all in its element networks; the AEV computer, the
self energies and TorchANI's xTB repulsion have none. So for a fixed training set the AEVs
``a(R)``, their Jacobians ``J = ∂a/∂R`` and the parameter-free energy and forces can be
computed once per training run, and every training step only evaluates the networks:

    E_m = NN_m(a) + E_fixed,        F_m = −Jᵀ ∂NN_m/∂a + F_fixed.

This is the same function as the model's own forward pass and force by autograd (equal to
float32 rounding), at about half the cost per step for small molecules: the AEV and its
double backward pass are no longer in every step, the members share one AEV, and their
networks of one element run stacked, one batched matrix product per layer for all members.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: above this size (bytes) of the Jacobians the training set is not precomputed
MAX_JACOBIAN_BYTES = 2 * 1024**3


def member_networks(model) -> list[torch.nn.Module]:  # noqa: ANN001
    """The committee's members: one ``ANINetworks`` (element networks) each."""
    nets = model.potentials["nnp"].neural_networks
    return list(getattr(nets, "members", [nets]))


def jacobian_bytes(model, species: Tensor) -> int:  # noqa: ANN001
    """Memory (bytes, float32) the Jacobians of these padded structures would take."""
    aev_dim = int(model.potentials["nnp"].aev_computer.out_dim)
    n, a = species.shape
    return 4 * n * a * aev_dim * a * 3


class StackedNetworks:
    """Every member's network energy at once, the members' layers stacked.

    The members' networks of one element are evaluated together: their layer weights are
    stacked (differentiably, so the gradients reach each member's own parameters) and applied
    by one batched matrix product per layer, as TorchANI's ``BmmEnsemble`` does for
    inference. The same function as calling each member's ``ANINetworks``; one set of
    operations per element and layer instead of one per member.
    """

    def __init__(self, model):  # noqa: ANN001
        atomics = [list(member.atomics.values()) for member in member_networks(model)]
        # per element, per layer: that layer of every member's network
        self._element_networks = [
            [[net.layers[k] for net in nets] for k in range(len(nets[0].layers))]
            + [[net.final_layer for net in nets]]
            for nets in zip(*atomics, strict=True)]
        self._activation = atomics[0][0].activation

    def __call__(self, elem: Tensor, aevs: Tensor) -> Tensor:
        """Network energies [M, b] (Hartree) of every member from AEVs [M, b, A, D].

        ``elem`` [b, A] are TorchANI's element indices (−1 padding); member m sees ``aevs[m]``.
        """
        m = aevs.shape[0]
        flat = elem.flatten()
        x = aevs.flatten(1, 2)
        atomic = x.new_zeros(m, flat.shape[0])
        for i, nets in enumerate(self._element_networks):
            sel = (flat == i).nonzero().view(-1)
            if not len(sel):
                continue
            h = x.index_select(1, sel)
            for k, layers in enumerate(nets):
                w = torch.stack([layer.weight for layer in layers]).transpose(1, 2)
                h = (torch.bmm(h, w) if layers[0].bias is None else
                     torch.baddbmm(torch.stack([layer.bias for layer in layers])[:, None], h, w))
                if k < len(nets) - 1:
                    h = self._activation(h)
            atomic = atomic.index_add(1, sel, h.squeeze(-1))
        return atomic.view(m, *elem.shape).sum(-1)


class PrecomputedFeatures:
    """AEVs, their Jacobians and the fixed energy/forces of padded structures (Hartree, Å).

    ``species`` are atomic numbers (−1 padding, as :func:`~reactive_al.models.frames_to_tensors`
    gives them) and ``coords`` [B, A, 3] in Å. ``chunk`` molecules are processed at a time.
    With ``cells`` [B, 3, 3] (Å) and ``periodic`` [B] (bool) the crystals are processed one
    by one in their cells, and the Jacobians of their AEVs with respect to a symmetric strain
    ε of positions and cell give the stress, (1/V) ∂E/∂ε, in the same way as the forces.
    """

    def __init__(self, model, species: Tensor, coords: Tensor, chunk: int = 64,  # noqa: ANN001
                 cells: Tensor | None = None, periodic: Tensor | None = None):
        self.members = member_networks(model)
        self.networks = StackedNetworks(model)
        self.elem = model.species_converter(species, nop=not model.periodic_table_index)
        n = len(species)
        crystal = (periodic if periodic is not None else torch.zeros(n, dtype=torch.bool))
        self.periodic = bool(crystal.any())
        parts: dict[int, tuple] = {}
        molecules = torch.nonzero(~crystal).flatten().tolist()
        for start in range(0, len(molecules), chunk):
            sl = molecules[start:start + chunk]
            terms = self._terms(model, species[sl], coords[sl], None)
            for k, i in enumerate(sl):
                parts[i] = tuple(t[k:k + 1] for t in terms)
        for i in torch.nonzero(crystal).flatten().tolist():
            parts[i] = self._terms(model, species[i:i + 1], coords[i:i + 1], cells[i])
        self.aevs, self.jac, self.jac_strain, self.e_fixed, self.f_fixed, self.s_fixed = (
            torch.cat([parts[i][k] for i in range(n)]) for k in range(6))
        if self.periodic:
            # molecules have no cell: their strain Jacobian is zero, their volume 1
            self.volumes = torch.where(crystal, torch.linalg.det(cells.double()).abs(),
                                       1.0).to(coords.dtype)

    def _terms(self, model, sp: Tensor, xyz: Tensor, cell: Tensor | None) -> tuple:  # noqa: ANN001
        """AEVs, their position and strain Jacobians, and the fixed energy, forces, stress."""
        nnp = model.potentials["nnp"]
        el = model.species_converter(sp, nop=not model.periodic_table_index)
        x = xyz.detach().clone().requires_grad_(True)
        eps = torch.zeros((3, 3), dtype=xyz.dtype, requires_grad=True)
        deform = torch.eye(3, dtype=xyz.dtype) + 0.5 * (eps + eps.T)
        pbc = None if cell is None else torch.ones(3, dtype=torch.bool)

        def strained() -> tuple[Tensor, Tensor | None]:
            return (x, None) if cell is None else (x @ deform, cell @ deform)

        a = nnp.aev_computer(el, *strained(), pbc)
        # J by forward-mode products built from two reverse passes: g(u) = Jᵀu is linear
        # in u, and ∂(g·v)/∂u = J v for each unit coordinate (or strain) direction v
        u = torch.zeros_like(a, requires_grad=True)
        wrt = (x,) if cell is None else (x, eps)
        g = torch.autograd.grad(a, wrt, grad_outputs=u, create_graph=True)
        n_at = x.shape[1]
        jac = a.new_zeros(*a.shape, n_at, 3)
        jac_strain = a.new_zeros(*a.shape, 3, 3)
        for j in range(n_at):
            for k in range(3):
                v = torch.zeros_like(x)
                v[:, j, k] = 1.0
                (jv,) = torch.autograd.grad(g[0], u, grad_outputs=v, retain_graph=True)
                jac[..., j, k] = jv
        if cell is not None:
            for j in range(3):
                for k in range(3):
                    v = torch.zeros_like(eps)
                    v[j, k] = 1.0
                    (jv,) = torch.autograd.grad(g[1], u, grad_outputs=v, retain_graph=True)
                    jac_strain[..., j, k] = jv
        # the fixed part: the whole model minus one member's network energy
        x = xyz.detach().clone().requires_grad_(True)
        eps = torch.zeros((3, 3), dtype=xyz.dtype, requires_grad=True)
        deform = torch.eye(3, dtype=xyz.dtype) + 0.5 * (eps + eps.T)
        y, c = strained()
        total = model((sp, y), cell=c, pbc=pbc, ensemble_values=True)[1][0]
        fixed = total - self.members[0](el, nnp.aev_computer(el, y, c, pbc))
        grads = torch.autograd.grad(fixed.sum(), (x, eps), allow_unused=True)
        s_fixed = (torch.zeros((len(sp), 3, 3), dtype=xyz.dtype) if cell is None or
                   grads[1] is None else (grads[1] / torch.linalg.det(cell).abs())[None])
        return (a.detach(), jac.detach(), jac_strain.detach(), fixed.detach(), -grads[0],
                s_fixed.detach())

    def energies_forces(self, idx, create_graph: bool) -> tuple[Tensor, Tensor]:  # noqa: ANN001
        """Energies [M, b] (Hartree) and forces [M, b, A, 3] (Hartree/Å) of every member."""
        e, f, _ = self.terms(idx, create_graph)
        return e, f

    def terms(self, idx, create_graph: bool):  # noqa: ANN001, ANN201
        """Energies [M, b], forces [M, b, A, 3] and stress [M, b, 3, 3] of every member.

        Hartree, Å; the stress (Hartree/Å³) is None without crystals, zero for molecules.
        """
        a, el = self.aevs[idx], self.elem[idx]
        # one copy of the AEVs per member, so that the gradient gives each member's own
        copies = a.expand(len(self.members), *a.shape).clone().requires_grad_(True)
        energies = self.networks(el, copies)
        (grads,) = torch.autograd.grad(energies.sum(), copies, create_graph=create_graph)
        forces = -torch.einsum("mbid,bidjk->mbjk", grads, self.jac[idx])
        stress = None
        if self.periodic:
            virial = torch.einsum("mbid,bidjk->mbjk", grads, self.jac_strain[idx])
            stress = virial / self.volumes[idx][None, :, None, None] + self.s_fixed[idx]
        return energies + self.e_fixed[idx], forces + self.f_fixed[idx], stress
