"""Training-set AEVs computed once: features, their coordinate Jacobians, the fixed terms.

A committee's trainable parameters are all in its element networks; the AEV computer, the
self energies and TorchANI's xTB repulsion have none. So for a fixed training set the AEVs
``a(R)``, their Jacobians ``J = ∂a/∂R`` and the parameter-free energy and forces can be
computed once per training run, and every training step only evaluates the networks:

    E_m = NN_m(a) + E_fixed,        F_m = −Jᵀ ∂NN_m/∂a + F_fixed.

This is the same function as the model's own forward pass and force by autograd (equal to
float32 rounding), at about half the cost per step for small molecules: the AEV and its
double backward pass are no longer in every step, and the members share one AEV.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: above this size (bytes) of the Jacobians the training set is not precomputed
MAX_JACOBIAN_BYTES = 2 * 1024**3


def _members(model) -> list[torch.nn.Module]:  # noqa: ANN001
    nets = model.potentials["nnp"].neural_networks
    return list(getattr(nets, "members", [nets]))


def jacobian_bytes(model, species: Tensor) -> int:  # noqa: ANN001
    """Memory (bytes, float32) the Jacobians of these padded structures would take."""
    aev_dim = int(model.potentials["nnp"].aev_computer.out_dim)
    n, a = species.shape
    return 4 * n * a * aev_dim * a * 3


class PrecomputedFeatures:
    """AEVs, their Jacobians and the fixed energy/forces of padded structures (Hartree, Å).

    ``species`` are atomic numbers (−1 padding, as :func:`~reactive_al.models.frames_to_tensors`
    gives them) and ``coords`` [B, A, 3] in Å. ``chunk`` structures are processed at a time.
    """

    def __init__(self, model, species: Tensor, coords: Tensor, chunk: int = 64):  # noqa: ANN001
        self.members = _members(model)
        nnp = model.potentials["nnp"]
        self.elem = model.species_converter(species, nop=not model.periodic_table_index)
        aevs, jacs, e_fixed, f_fixed = [], [], [], []
        for start in range(0, len(species), chunk):
            sl = slice(start, start + chunk)
            sp, el = species[sl], self.elem[sl]
            x = coords[sl].detach().clone().requires_grad_(True)
            a = nnp.aev_computer(el, x, None, None)
            # J by forward-mode products built from two reverse passes: g(u) = Jᵀu is linear
            # in u, and ∂(g·v)/∂u = J v for each unit coordinate direction v
            u = torch.zeros_like(a, requires_grad=True)
            (g,) = torch.autograd.grad(a, x, grad_outputs=u, create_graph=True)
            n_at = x.shape[1]
            jac = a.new_zeros(*a.shape, n_at, 3)
            for j in range(n_at):
                for k in range(3):
                    v = torch.zeros_like(x)
                    v[:, j, k] = 1.0
                    (jv,) = torch.autograd.grad(g, u, grad_outputs=v, retain_graph=True)
                    jac[..., j, k] = jv
            # the fixed part: the whole model minus one member's network energy
            y = coords[sl].detach().clone().requires_grad_(True)
            total = model((sp, y), ensemble_values=True)[1][0]
            fixed = total - self.members[0](el, nnp.aev_computer(el, y, None, None))
            (grad,) = torch.autograd.grad(fixed.sum(), y)
            aevs.append(a.detach())
            jacs.append(jac.detach())
            e_fixed.append(fixed.detach())
            f_fixed.append(-grad)
        self.aevs, self.jac = torch.cat(aevs), torch.cat(jacs)
        self.e_fixed, self.f_fixed = torch.cat(e_fixed), torch.cat(f_fixed)

    def energies_forces(self, idx, create_graph: bool) -> tuple[Tensor, Tensor]:  # noqa: ANN001
        """Energies [M, b] (Hartree) and forces [M, b, A, 3] (Hartree/Å) of every member."""
        a, el = self.aevs[idx], self.elem[idx]
        copies = [a.clone().requires_grad_(True) for _ in self.members]
        energies = torch.stack([net(el, c) for net, c in zip(self.members, copies,
                                                             strict=True)])
        grads = torch.autograd.grad(energies.sum(), copies, create_graph=create_graph)
        forces = -torch.einsum("mbid,bidjk->mbjk", torch.stack(grads), self.jac[idx])
        return energies + self.e_fixed[idx], forces + self.f_fixed[idx]
