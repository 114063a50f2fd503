"""Gradient-feature uncertainty: exactness of the features and of the GP posterior."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms

from reactive_al.models import Committee, CommitteeSpec, build_model
from reactive_al.uncertainty.gradient_features import (
    GradientFeatureMap,
    GradientFeatureUncertainty,
    frames_to_species_coords,
)

SPEC = CommitteeSpec(symbols=["H", "O"], ensemble_size=2, hidden=[8, 6])


def water(rng: np.random.Generator, noise: float, stretch: float = 0.0) -> Atoms:
    a = Atoms("OH2", positions=[[0, 0, 0], [0.96 + stretch, 0, 0], [-0.24, 0.93, 0]])
    a.positions += rng.normal(0, noise, a.positions.shape)
    return a


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(SPEC)


@pytest.fixture(scope="module")
def train_frames() -> list[Atoms]:
    rng = np.random.default_rng(0)
    return [water(rng, 0.04) for _ in range(12)]


@pytest.fixture(scope="module")
def test_frames() -> list[Atoms]:
    rng = np.random.default_rng(1)
    frames = [water(rng, 0.04) for _ in range(3)] + [water(rng, 0.04, 0.4) for _ in range(2)]
    frames.append(Atoms("H2", positions=[[0, 0, 0], [0.75, 0.02, 0]]))
    return frames


def _autograd_feature(model, member: int, frame: Atoms) -> torch.Tensor:
    """∂E/∂θ / N for member ``member`` of a copy of ``model`` with zero biases added."""
    import copy

    m = copy.deepcopy(model)
    nets = m.potentials["nnp"].neural_networks.members[member].atomics
    params = []
    for net in nets.values():
        for lin in [*net.layers, net.final_layer]:
            lin.bias = torch.nn.Parameter(torch.zeros(lin.out_features))
            params.append((lin.weight, lin.bias))
    species, coords = frames_to_species_coords([frame])
    _, energies = m((species, coords.float()), ensemble_values=True)
    flat = [p for pair in params for p in pair]
    grads = torch.autograd.grad(energies[member, 0], flat, allow_unused=True)
    blocks = []
    for k, (w, b) in enumerate(params):
        gw, gb = grads[2 * k], grads[2 * k + 1]
        gw = torch.zeros_like(w) if gw is None else gw
        gb = torch.zeros_like(b) if gb is None else gb
        blocks.append(torch.cat([gw, gb[:, None]], dim=1).flatten())
    return torch.cat(blocks).double() / len(frame)


@pytest.mark.parametrize("member", [0, 1])
def test_exact_features_equal_autograd_weight_gradients(model, test_frames, member):
    fmap = GradientFeatureMap.from_model(model, num_features=None, member=member)
    assert fmap.dim == 2 * (8 * 129 + 6 * 9 + 1 * 7)
    for frame in test_frames:
        expected = _autograd_feature(model, member, frame)
        actual = fmap.structure(*frames_to_species_coords([frame]))[0]
        err = float((actual - expected).norm() / expected.norm())
        assert err < 1e-4, (frame.get_chemical_formula(), err)
    h2 = fmap.structure(*frames_to_species_coords([test_frames[-1]]))[0]
    o_block = h2[fmap._offsets[1]:]
    assert torch.all(o_block == 0), "an H-only structure must not touch the O network block"


def test_last_layer_features_are_the_final_blocks(model, test_frames):
    full = GradientFeatureMap.from_model(model, num_features=None)
    last = GradientFeatureMap.from_model(model, num_features=None, layers="last")
    assert last.dim == 2 * 7
    sc = frames_to_species_coords(test_frames)
    f_full, f_last = full.structure(*sc), last.structure(*sc)
    per_net = 8 * 129 + 6 * 9 + 7
    for e in range(2):
        start = e * per_net + per_net - 7
        torch.testing.assert_close(f_last[:, 7 * e:7 * (e + 1)], f_full[:, start:start + 7])


@pytest.mark.parametrize("num_features", [None, 64])
def test_posterior_equals_explicit_kernel_gp(model, train_frames, test_frames, num_features):
    uq = GradientFeatureUncertainty(num_features=num_features).fit(model, train_frames)
    x_train = uq.train_features
    assert np.mean((x_train ** 2).sum(1)) == pytest.approx(1.0, rel=1e-12)
    s2 = uq.sigma_n ** 2
    for frames in (test_frames, train_frames[:4]):
        x = uq.features(frames)
        k = x_train @ x_train.T
        kx = x @ x_train.T
        var = (x * x).sum(1) - np.einsum(
            "ij,ji->i", kx, np.linalg.solve(k + s2 * np.eye(len(k)), kx.T)
        )
        np.testing.assert_allclose(uq.energy_variance(frames), var, rtol=1e-6)
    cov = uq.posterior_covariance()
    x = uq.features(test_frames)
    np.testing.assert_allclose(np.einsum("ij,jk,ik->i", x, cov, x),
                               uq.energy_variance(test_frames), rtol=1e-8)


def test_sketch_approximates_exact_kernel(model, test_frames):
    sc = frames_to_species_coords(test_frames)
    exact = GradientFeatureMap.from_model(model, num_features=None).structure(*sc)
    sketch = GradientFeatureMap.from_model(model, num_features=8192, seed=3).structure(*sc)
    k_exact, k_sketch = exact @ exact.T, sketch @ sketch.T
    rel = float((k_sketch - k_exact).norm() / k_exact.norm())
    assert rel < 0.1, rel


def test_atomic_features_average_to_structure_features(model, train_frames, test_frames):
    uq = GradientFeatureUncertainty(num_features=128).fit(model, train_frames)
    atomic = uq.atomic_features(test_frames)
    structure = uq.features(test_frames)
    for a, f, s in zip(test_frames, atomic, structure, strict=True):
        assert f.shape == (len(a), 128)
        np.testing.assert_allclose(f.mean(0), s, rtol=1e-10, atol=1e-12)
    sig = uq.atomic_uncertainty(test_frames)
    assert [len(s) for s in sig] == [len(a) for a in test_frames]
    assert all(np.all(s >= 0) for s in sig)


def test_uncertainty_grows_far_from_training(model, train_frames):
    rng = np.random.default_rng(7)
    near = [water(rng, 0.04) for _ in range(5)]
    far = [water(rng, 0.04, stretch) for stretch in (0.5, 0.8, 1.2)]
    committee = Committee(model, SPEC)
    uq = GradientFeatureUncertainty(num_features=256).fit(committee, train_frames)
    post_near, post_far = uq.energy_uncertainty(near), uq.energy_uncertainty(far)
    dist_near, dist_far = uq.distance_uncertainty(near), uq.distance_uncertainty(far)
    assert post_far.min() > post_near.max()
    assert dist_far.min() > dist_near.max()
    assert uq.energy_uncertainty(train_frames).max() < uq.sigma_n < post_far.min()


@pytest.mark.parametrize("kind", ["posterior", "distance"])
def test_uncertainty_gradient_matches_finite_differences(model, train_frames, kind):
    uq = GradientFeatureUncertainty(num_features=64).fit(model, train_frames)
    frame = water(np.random.default_rng(11), 0.05, 0.2)
    u, grad = uq.uncertainty_and_gradient(frame, kind)
    species, coords = frames_to_species_coords([frame])
    h = 1e-5
    fd = np.zeros_like(grad)
    with torch.no_grad():
        for i in range(len(frame)):
            for d in range(3):
                plus, minus = coords.clone(), coords.clone()
                plus[0, i, d] += h
                minus[0, i, d] -= h
                fd[i, d] = float(uq.uncertainty_tensor(species, plus, kind)[0]
                                 - uq.uncertainty_tensor(species, minus, kind)[0]) / (2 * h)
    assert u == pytest.approx(float(uq.uncertainty_tensor(species, coords, kind)[0]))
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-7 * np.abs(fd).max())


def test_member_selection_is_checked(model):
    with pytest.raises(IndexError):
        GradientFeatureMap.from_model(model, member=2)
    with pytest.raises(RuntimeError):
        GradientFeatureUncertainty().energy_uncertainty([])
