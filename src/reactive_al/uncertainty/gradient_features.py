"""Ensemble-free uncertainty from (sketched) gradient features of a TorchANI model.

The method of uncertainty-biased MD (Zaverkin et al., npj Comput. Mater. 2024): a structure is
represented by the gradient of its predicted energy with respect to the network weights,
averaged over its atoms. For a linear layer with input x̃ = (x, 1) and output y, the weight
gradient of atom i's energy is the outer product g ⊗ x̃ with g = ∂E_i/∂y, so it never has to be
materialised: it is sketched with fixed Gaussian matrices U, V as (x̃U) ⊙ (gV) / √p, whose
inner products are unbiased estimates of the gradient inner products. The constant 1 in x̃
stands for a bias, which the project's networks do not have (``bias=False``); it is kept as a
virtual parameter so that the features match those of a network with zero-initialised biases.

The features define a linear-kernel Gaussian process whose posterior variance
σ²(x) = σ_n² φ(x)ᵀ(ΦᵀΦ + σ_n² I)⁻¹φ(x) is the (uncalibrated) uncertainty. Everything is
computed in float64 from a snapshot of the model taken at :meth:`fit` time, and the result is
differentiable with respect to positions, so biasing forces follow from autograd.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from ase import Atoms
from torch import Tensor

LayerChoice = Literal["all", "last"]
UncertaintyKind = Literal["posterior", "distance"]


def _resolve_model(committee_or_model: Any) -> Any:
    """The TorchANI model inside a :class:`~reactive_al.models.Committee`, or the model itself."""
    if hasattr(committee_or_model, "spec") and hasattr(committee_or_model, "model"):
        return committee_or_model.model
    return committee_or_model


def _element_networks(model: Any, member: int) -> list[torch.nn.Module]:
    """Atomic networks of one committee member, in element-index order."""
    nn = model.potentials["nnp"].neural_networks
    if hasattr(nn, "members"):
        if not 0 <= member < len(nn.members):
            raise IndexError(f"member {member} out of range for {len(nn.members)} members")
        nn = nn.members[member]
    elif member != 0:
        raise IndexError(f"member {member} requested but the model has a single member")
    if not hasattr(nn, "atomics"):
        raise TypeError(f"unsupported atomic container {type(nn).__name__}: need ANINetworks")
    return list(nn.atomics.values())


def frames_to_species_coords(frames: list[Atoms]) -> tuple[Tensor, Tensor]:
    """Atomic numbers (−1 padded, [B, A]) and float64 coordinates ([B, A, 3], Å) of frames.

    Unlike :func:`reactive_al.models.frames_to_tensors` the coordinates stay in float64, which
    finite-difference checks and smooth biasing forces rely on.
    """
    n_max = max(len(a) for a in frames)
    species = torch.full((len(frames), n_max), -1, dtype=torch.long)
    coords = torch.zeros((len(frames), n_max, 3), dtype=torch.float64)
    for i, a in enumerate(frames):
        species[i, : len(a)] = torch.as_tensor(a.get_atomic_numbers())
        coords[i, : len(a)] = torch.as_tensor(a.get_positions(), dtype=torch.float64)
    return species, coords


@dataclass
class _Layer:
    weight: Tensor  # (out, in)
    bias: Tensor | None  # (out,) when the network has real biases
    use: bool  # whether this layer contributes to the features
    u: Tensor | None  # ((in + 1), p) sketch, already scaled by 1/√p
    v: Tensor | None  # (out, p) sketch; None for single-output layers

    @property
    def block_size(self) -> int:
        out, inp = self.weight.shape
        return out * (inp + 1)


class GradientFeatureMap:
    """Per-atom and per-structure gradient features of one member of a TorchANI model.

    Build with :meth:`from_model`. ``num_features=None`` gives the exact, unsketched features:
    the flattened gradient blocks ``[∂E/∂W | ∂E/∂b]`` (shape out × (in+1), row-major) of every
    used layer, concatenated over layers and then over element networks.
    """

    def __init__(
        self,
        species_converter: torch.nn.Module,
        aev_computer: torch.nn.Module,
        networks: list[tuple[list[_Layer], torch.nn.Module]],
        num_features: int | None,
        layers: LayerChoice,
        member: int,
        seed: int,
        species_are_indices: bool = False,
    ):
        self.species_converter = species_converter
        self.species_are_indices = species_are_indices
        self.aev_computer = aev_computer
        self.networks = networks
        self.num_features = num_features
        self.layers = layers
        self.member = member
        self.seed = seed
        self._offsets: list[int] = []
        size = 0
        for net_layers, _ in networks:
            self._offsets.append(size)
            size += sum(layer.block_size for layer in net_layers if layer.use)
        self.exact_dim = size

    @classmethod
    def from_model(
        cls,
        committee_or_model: Any,
        num_features: int | None = 512,
        layers: LayerChoice = "all",
        member: int = 0,
        seed: int = 0,
    ) -> GradientFeatureMap:
        """Snapshot a model's AEV computer and member ``member``'s networks in float64.

        Sketch matrices are drawn once from ``torch.Generator().manual_seed(seed)``, with
        independent U, V for every (element network, layer) block: per atom only its own
        element's block of the full gradient is non-zero, so summing per-block sketches equals
        sketching the block-concatenated gradient. ``layers="last"`` uses the final layer only.
        """
        if layers not in ("all", "last"):
            raise ValueError(f"layers must be 'all' or 'last', got {layers!r}")
        if num_features is not None and num_features < 1:
            raise ValueError(f"num_features must be positive or None, got {num_features}")
        model = _resolve_model(committee_or_model)
        nnp = model.potentials["nnp"]
        aev = copy.deepcopy(nnp.aev_computer).to(torch.float64)
        converter = copy.deepcopy(model.species_converter)
        gen = torch.Generator().manual_seed(seed)
        networks = []
        for net in _element_networks(model, member):
            linears = [*net.layers, net.final_layer]
            net_layers = []
            for k, lin in enumerate(linears):
                use = layers == "all" or k == len(linears) - 1
                w = lin.weight.detach().to(torch.float64).clone()
                b = None if lin.bias is None else lin.bias.detach().to(torch.float64).clone()
                u = v = None
                if use and num_features is not None:
                    out, inp = w.shape
                    u = torch.randn(inp + 1, num_features, generator=gen, dtype=torch.float64)
                    u /= math.sqrt(num_features)
                    if out > 1:
                        v = torch.randn(out, num_features, generator=gen, dtype=torch.float64)
                net_layers.append(_Layer(w, b, use, u, v))
            networks.append((net_layers, copy.deepcopy(net.activation)))
        return cls(converter, aev, networks, num_features, layers, member, seed,
                   species_are_indices=not getattr(model, "periodic_table_index", True))

    @property
    def dim(self) -> int:
        """Feature dimension: ``num_features`` when sketched, the parameter count otherwise."""
        return self.num_features if self.num_features is not None else self.exact_dim

    def _element_features(
        self, net_layers: list[_Layer], activation: torch.nn.Module, x: Tensor,
        create_graph: bool,
    ) -> Tensor:
        xs, ys = [], []
        for k, layer in enumerate(net_layers):
            y = x @ layer.weight.T
            if layer.bias is not None:
                y = y + layer.bias
            if not y.requires_grad:
                # Nothing upstream needs a gradient: make y a leaf so ∂E/∂y still exists.
                y.requires_grad_(True)
            xs.append(x)
            ys.append(y)
            x = activation(y) if k < len(net_layers) - 1 else y
        used = [k for k, layer in enumerate(net_layers) if layer.use]
        # Each atom's energy depends on its own row only, so the gradient of the summed energy
        # gives every atom's g = ∂E_i/∂y_i in one pass.
        gs = torch.autograd.grad(x.sum(), [ys[k] for k in used], create_graph=create_graph)
        parts = []
        for k, g in zip(used, gs, strict=True):
            layer = net_layers[k]
            xt = torch.cat([xs[k], xs[k].new_ones(xs[k].shape[0], 1)], dim=1)
            if self.num_features is None:
                parts.append((g[:, :, None] * xt[:, None, :]).flatten(1))
            elif layer.v is None:
                parts.append(g * (xt @ layer.u))
            else:
                parts.append((xt @ layer.u) * (g @ layer.v))
        if self.num_features is None:
            return torch.cat(parts, dim=1)
        return torch.stack(parts).sum(0)

    def atomic(
        self, species: Tensor, coords: Tensor, create_graph: bool = False,
        cell: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Raw per-atom features ([B, A, dim], zero for padding) and the real-atom mask [B, A].

        ``species`` holds atomic numbers (−1 padding), or element indices for models built
        with ``periodic_table_index=False``, as the model itself expects. With
        ``create_graph`` the features keep their graph to ``coords`` (which must then require
        grad), so they can be differentiated; otherwise they are detached. ``cell`` ([3, 3]
        Å, float64, rows the lattice vectors): the structures are crystals in that one cell.
        """
        elem_idxs = self.species_converter(species, nop=self.species_are_indices)
        pbc = None if cell is None else torch.ones(3, dtype=torch.bool)
        coords = coords.to(torch.float64)
        if not create_graph:
            coords = coords.detach()
        # g = ∂E/∂y needs autograd even when the caller runs under torch.no_grad().
        with torch.enable_grad():
            aevs = self.aev_computer(elem_idxs, coords, cell, pbc)
            flat_idx = elem_idxs.flatten()
            flat_aev = aevs.flatten(0, 1)
            feats = flat_aev.new_zeros(flat_idx.shape[0], self.dim)
            for e, (net_layers, activation) in enumerate(self.networks):
                sel = (flat_idx == e).nonzero().view(-1)
                if sel.numel() == 0:
                    continue
                f = self._element_features(
                    net_layers, activation, flat_aev.index_select(0, sel), create_graph
                )
                if self.num_features is None:
                    off = self._offsets[e]
                    f = torch.nn.functional.pad(f, (off, self.dim - off - f.shape[1]))
                feats = feats.index_add(0, sel, f)
        if not create_graph:
            feats = feats.detach()
        mask = elem_idxs >= 0
        return feats.view(*elem_idxs.shape, self.dim), mask

    def structure(self, species: Tensor, coords: Tensor, create_graph: bool = False,
                  cell: Tensor | None = None) -> Tensor:
        """Raw per-structure features [B, dim]: the mean of the per-atom features.

        Unsketched, this is ∂E/∂θ / N_atoms for the member's parameters θ (plus the virtual
        biases). ``cell``: as in :meth:`atomic`.
        """
        feats, mask = self.atomic(species, coords, create_graph, cell)
        n_atoms = mask.sum(1, keepdim=True).to(feats.dtype)
        return feats.sum(1) / n_atoms


class GradientFeatureUncertainty:
    """Gaussian-process uncertainty on gradient features of a trained model.

    ``fit`` snapshots the model, computes the training features, normalises them so their mean
    squared norm is 1 (``scale`` is the stored divisor) and factorises ΦᵀΦ + σ_n² I. All
    uncertainties are uncalibrated (see :mod:`reactive_al.calibration`).
    """

    def __init__(
        self,
        num_features: int | None = 512,
        layers: LayerChoice = "all",
        sigma_n: float = 0.01,
        member: int = 0,
        seed: int = 0,
        batch_size: int = 128,
    ):
        self.num_features = num_features
        self.layers = layers
        self.sigma_n = float(sigma_n)
        self.member = member
        self.seed = seed
        self.batch_size = batch_size
        self.feature_map: GradientFeatureMap | None = None
        self.scale = 1.0
        self.train_features = np.zeros((0, 0))
        self._train_t: Tensor | None = None
        self._chol: Tensor | None = None

    # -- fitting -----------------------------------------------------------------------------
    def fit(self, committee_or_model: Any, train_frames: list[Atoms]) -> GradientFeatureUncertainty:
        """Snapshot the model and condition the GP on the features of ``train_frames``."""
        if not train_frames:
            raise ValueError("need at least one training frame")
        self.feature_map = GradientFeatureMap.from_model(
            committee_or_model, self.num_features, self.layers, self.member, self.seed
        )
        raw = self._raw_features(train_frames)
        self.scale = float(torch.sqrt((raw ** 2).sum(1).mean()))
        if not self.scale > 0:
            raise ValueError("training features are all zero; cannot normalise")
        phi = raw / self.scale
        a = phi.T @ phi + self.sigma_n ** 2 * torch.eye(phi.shape[1], dtype=torch.float64)
        self._chol = torch.linalg.cholesky(a)
        self._train_t = phi
        self.train_features = phi.numpy()
        return self

    def _require_fit(self) -> GradientFeatureMap:
        if self.feature_map is None:
            raise RuntimeError("call fit() first")
        return self.feature_map

    def _chunks(self, frames: list[Atoms]):  # noqa: ANN202
        """(frames, species, coords, cell) per call: molecules batched, crystals one by one."""
        molecules = [a for a in frames if not np.all(a.pbc)]
        for start in range(0, len(molecules), self.batch_size):
            chunk = molecules[start:start + self.batch_size]
            yield (chunk, *frames_to_species_coords(chunk), None)
        for a in frames:
            if np.all(a.pbc):
                yield ([a], *frames_to_species_coords([a]),
                       torch.as_tensor(np.asarray(a.cell), dtype=torch.float64))

    def _in_order(self, frames: list[Atoms], parts: list[tuple[list[Atoms], Any]]) -> list[Any]:
        """Per-frame results of :meth:`_chunks` order, back in the order of ``frames``."""
        where = {id(a): r for chunk, res in parts for a, r in zip(chunk, res, strict=True)}
        return [where[id(a)] for a in frames]

    def _raw_features(self, frames: list[Atoms]) -> Tensor:
        fmap = self._require_fit()
        parts = [(chunk, list(fmap.structure(sp, xyz, cell=cell)))
                 for chunk, sp, xyz, cell in self._chunks(frames)]
        return torch.stack(self._in_order(frames, parts))

    # -- features ----------------------------------------------------------------------------
    def features(self, frames: list[Atoms]) -> np.ndarray:
        """Normalised per-structure features [n, dim] (the training set has mean ‖φ‖² = 1)."""
        self._require_fit()
        if not frames:
            return np.zeros((0, self.feature_map.dim))
        return (self._raw_features(frames) / self.scale).numpy()

    def atomic_features(self, frames: list[Atoms]) -> list[np.ndarray]:
        """Normalised per-atom features, one [N_i, dim] array per frame (same scale)."""
        fmap = self._require_fit()
        parts = []
        for chunk, sp, xyz, cell in self._chunks(frames):
            feats = (fmap.atomic(sp, xyz, cell=cell)[0] / self.scale).numpy()
            parts.append((chunk, [feats[i, : len(a)] for i, a in enumerate(chunk)]))
        return self._in_order(frames, parts)

    # -- uncertainties -----------------------------------------------------------------------
    def _variance_t(self, phi: Tensor) -> Tensor:
        z = torch.linalg.solve_triangular(self._chol, phi.T, upper=False)
        return self.sigma_n ** 2 * (z ** 2).sum(0)

    def _distance_t(self, phi: Tensor) -> Tensor:
        d = torch.cdist(phi, self._train_t, compute_mode="donot_use_mm_for_euclid_dist")
        return d.min(1).values

    def _normalised(self, frames: list[Atoms]) -> Tensor | None:
        """Normalised structure features of ``frames`` (None for no frames)."""
        self._require_fit()
        return self._raw_features(frames) / self.scale if frames else None

    def energy_variance(self, frames: list[Atoms]) -> np.ndarray:
        """GP posterior variance σ² per structure."""
        phi = self._normalised(frames)
        return np.zeros(0) if phi is None else self._variance_t(phi).numpy()

    def energy_uncertainty(self, frames: list[Atoms]) -> np.ndarray:
        """GP posterior standard deviation σ per structure (uncalibrated)."""
        return np.sqrt(np.clip(self.energy_variance(frames), 0.0, None))

    def atomic_uncertainty(self, frames: list[Atoms]) -> list[np.ndarray]:
        """Posterior σ of every atom's own feature, one [N_i] array per frame."""
        out = []
        for f in self.atomic_features(frames):
            var = self._variance_t(torch.as_tensor(f)).numpy()
            out.append(np.sqrt(np.clip(var, 0.0, None)))
        return out

    def distance_uncertainty(self, frames: list[Atoms]) -> np.ndarray:
        """Euclidean distance from each structure's feature to the nearest training feature."""
        phi = self._normalised(frames)
        return np.zeros(0) if phi is None else self._distance_t(phi).numpy()

    def uncertainty_tensor(
        self, species: Tensor, coords: Tensor, kind: UncertaintyKind = "posterior",
        cell: Tensor | None = None,
    ) -> Tensor:
        """Per-structure uncertainty [B] as a torch tensor carrying the graph to ``coords``.

        ``kind="posterior"`` gives σ, ``"distance"`` the nearest-training-feature distance.
        ``coords`` should be a float64 tensor with ``requires_grad=True``; the gradient
        features are built with ``create_graph=True`` so that ∂u/∂R exists (the distance is
        only piecewise smooth: the nearest training point can switch). ``cell``: one crystal
        cell for all structures (as in :meth:`GradientFeatureMap.atomic`).
        """
        fmap = self._require_fit()
        graph = coords.requires_grad or (cell is not None and cell.requires_grad)
        phi = fmap.structure(species, coords, create_graph=graph, cell=cell) / self.scale
        if kind == "posterior":
            return torch.sqrt(torch.clamp(self._variance_t(phi), min=0.0))
        if kind == "distance":
            return self._distance_t(phi)
        raise ValueError(f"kind must be 'posterior' or 'distance', got {kind!r}")

    def uncertainty_and_gradient(
        self, frames: Atoms | list[Atoms], kind: UncertaintyKind = "posterior"
    ) -> tuple[Any, Any]:
        """Uncertainty of structures and its gradient ∂u/∂R ([N, 3], per Å) by autograd.

        One structure: ``(float, [N, 3] array)``. A list: ``(array [n], list of [N_i, 3])``
        from one batched pass over the molecules (each structure's uncertainty depends on its
        own atoms only, so the gradient of their sum is every structure's own gradient) and
        one pass per crystal.
        """
        u, grads, _ = self.uncertainty_gradient_strain(frames, kind)
        return u, grads

    def uncertainty_gradient_strain(
        self, frames: Atoms | list[Atoms], kind: UncertaintyKind = "posterior"
    ) -> tuple[Any, Any, Any]:
        """As :meth:`uncertainty_and_gradient`, plus each crystal's strain derivative.

        The third element is (1/V) ∂u/∂ε ([3, 3] array, per Å³; None for a molecule): the
        derivative under a symmetric strain of positions and cell together, from which a
        bias energy's stress follows as it does for a model energy.
        """
        one = isinstance(frames, Atoms)
        batch = [frames] if one else list(frames)
        parts = []
        for chunk, species, coords, cell in self._chunks(batch):
            coords.requires_grad_(True)
            if cell is None:
                u = self.uncertainty_tensor(species, coords, kind)
                (grad,) = torch.autograd.grad(u.sum(), coords)
                strain = [None] * len(chunk)
            else:
                eps = torch.zeros((3, 3), dtype=torch.float64, requires_grad=True)
                deform = torch.eye(3, dtype=torch.float64) + 0.5 * (eps + eps.T)
                u = self.uncertainty_tensor(species, coords @ deform, kind, cell @ deform)
                grad, g_eps = torch.autograd.grad(u.sum(), (coords, eps))
                strain = [(g_eps / torch.linalg.det(cell).abs()).numpy()]
            parts.append((chunk, [(float(u[i].detach()), grad[i, : len(a)].numpy(), strain[i])
                                  for i, a in enumerate(chunk)]))
        rows = self._in_order(batch, parts)
        u_np = np.array([r[0] for r in rows])
        grads, strains = [r[1] for r in rows], [r[2] for r in rows]
        return (float(u_np[0]), grads[0], strains[0]) if one else (u_np, grads, strains)

    def posterior_covariance(self) -> np.ndarray:
        """Posterior covariance in feature space, Σ = σ_n² (ΦᵀΦ + σ_n² I)⁻¹ ([dim, dim])."""
        self._require_fit()
        return (self.sigma_n ** 2 * torch.cholesky_inverse(self._chol)).numpy()
