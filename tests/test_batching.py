"""Walkers and NEB images evaluated in batches give what one-by-one evaluation gives."""

from functools import partial

import numpy as np
import torch
from ase import Atoms
from ase.calculators.emt import EMT
from ase.mep import NEB

from reactive_al.exploration import WalkerConfig, run_walker
from reactive_al.models import Committee, CommitteeSpec, build_model
from reactive_al.models.batching import attach_batched, run_lockstep


def _methane(shift: float = 0.0) -> Atoms:
    return Atoms("CH4", positions=np.array([[0, 0, 0], [0.63, 0.63, 0.63], [-0.63, -0.63, 0.63],
                                            [-0.63, 0.63, -0.63], [0.63, -0.63, -0.63]])
                 + shift * np.eye(5, 3))


class _CountingEMT(EMT):
    """EMT with a batch method that counts its calls."""

    def __init__(self):
        super().__init__()
        self.batches: list[int] = []

    def evaluate_batch(self, frames):
        self.batches.append(len(frames))
        out = []
        for f in frames:
            a = f.copy()
            a.calc = EMT()
            out.append({"energy": a.get_potential_energy(), "forces": a.get_forces()})
        return out


def _own_member_terms(model, species, coords, create_graph):
    """The model's own forward pass per member and one autograd force per member."""
    x = coords.detach().clone().requires_grad_(True)
    _, e = model((species, x), ensemble_values=True)
    f = torch.stack([-torch.autograd.grad(e[k].sum(), x, retain_graph=True,
                                          create_graph=create_graph)[0]
                     for k in range(e.shape[0])])
    return e, f


def _job(start, t, n_steps, seed, calc):
    cfg = WalkerConfig(n_steps=n_steps, sample_every=5)
    return run_walker(start, calc, t, cfg, np.random.default_rng(seed), f"w{seed}")


def test_lockstep_walkers_equal_walkers_run_alone():
    # different lengths: the batch shrinks as walkers finish, and nobody waits forever
    specs = [(_methane(), 300.0, 40, 0), (_methane(0.05), 600.0, 25, 1),
             (_methane(), 450.0, 3, 2)]
    calc = _CountingEMT()
    together = run_lockstep([partial(_job, *s) for s in specs], calc)
    alone = [_job(*s, EMT()) for s in specs]
    for (fa, ra, na), (fb, rb, nb) in zip(together, alone, strict=True):
        assert (ra, na) == (rb, nb)
        assert len(fa) == len(fb)
        for a, b in zip(fa, fb, strict=True):
            np.testing.assert_allclose(a.positions, b.positions, atol=1e-10)
    assert sum(len(f) for f, _, _ in together) == 8 + 5
    assert max(calc.batches) == 3 and min(calc.batches) == 1
    assert sum(calc.batches) == sum(n + 1 for *_, n, _ in specs)  # +1: the start forces


def test_a_failing_batch_reaches_every_walker():
    class Broken(_CountingEMT):
        def evaluate_batch(self, frames):
            raise FloatingPointError("model exploded")

    jobs = [partial(_job, _methane(), 300.0, 5, s) for s in range(2)]
    try:
        run_lockstep(jobs, Broken())
    except RuntimeError as exc:
        assert isinstance(exc.__cause__, FloatingPointError)
    else:
        raise AssertionError("the batch error was swallowed")


def test_batched_committee_matches_single_structure_predictions():
    torch.manual_seed(0)
    spec = CommitteeSpec(symbols=["H", "C"], ensemble_size=3, hidden=[16, 8])
    committee = Committee(build_model(spec), spec)
    frames = [_methane(0.02 * k) for k in range(4)] + [Atoms("CH2", [[0, 0, 0], [1.1, 0, 0],
                                                                      [0, 1.1, 0]])]
    calc = committee.calculator(force_scale=2.0)
    batch = calc.evaluate_batch(frames)
    for frame, res in zip(frames, batch, strict=True):
        a = frame.copy()
        a.calc = committee.calculator(force_scale=2.0)
        assert abs(a.get_potential_energy() - res["energy"]) < 1e-5
        np.testing.assert_allclose(a.get_forces(), res["forces"], atol=1e-5)
        np.testing.assert_allclose(a.calc.results["forces_std"], res["forces_std"], atol=1e-5)
        assert res["forces"].shape == (len(frame), 3)


def test_batched_neb_images_get_their_own_forces():
    images = [_methane(0.1 * k) for k in range(5)]
    reference = [a.copy() for a in images]
    for a in reference:
        a.calc = EMT()
    calc = _CountingEMT()
    attach_batched(images, calc)
    f_batched = NEB(images).get_forces()
    f_alone = NEB(reference).get_forces()
    np.testing.assert_allclose(f_batched, f_alone, atol=1e-10)
    assert calc.batches[0] == 5  # every image in the first call, none again
    images[2].positions[0, 0] += 0.01
    images[2].get_forces()
    assert calc.batches[-1] == 1  # only the moved image


def test_precomputed_features_equal_the_models_own_energies_and_forces():
    # training evaluates only the networks on AEVs and Jacobians computed once; prediction
    # evaluates the members' networks stacked; both must be the model's own function, padding
    # (two compositions) and the xTB repulsion included
    from reactive_al.models import frames_to_tensors
    from reactive_al.models.committee import _member_energies_forces
    from reactive_al.models.features import PrecomputedFeatures

    torch.manual_seed(1)
    spec = CommitteeSpec(symbols=["H", "C"], ensemble_size=3, hidden=[16, 8])
    model = build_model(spec)
    frames = [_methane(0.03 * k) for k in range(5)] + [Atoms("CH2", [[0, 0, 0], [1.1, 0, 0],
                                                                      [0, 1.1, 0]])]
    t = frames_to_tensors(frames, with_labels=False)
    feats = PrecomputedFeatures(model, t["species"], t["coordinates"], chunk=4)
    idx = torch.tensor([5, 0, 3])
    sp, xyz = t["species"][idx], t["coordinates"][idx]
    e_ref, f_ref = _own_member_terms(model, sp, xyz, False)
    assert float(f_ref.abs().max()) > 1e-3  # not trivially zero
    assert float(e_ref.std(0).max()) > 1e-4  # the members differ
    for e, f in (feats.energies_forces(idx, create_graph=False),
                 _member_energies_forces(model, sp, xyz, False)):
        assert e.shape == e_ref.shape == (3, 3)
        assert float((e - e_ref).abs().max()) < 1e-6
        assert float((f - f_ref).abs().max()) < 1e-5
    # the members' networks run stacked: the training gradient must still reach every
    # member's own parameters, as the model's own loop over members gives it
    e_ref, f_ref = _own_member_terms(model, sp, xyz, True)
    slow = torch.autograd.grad(e_ref.sum() + f_ref.pow(2).sum(), list(model.parameters()))
    for e, f in (feats.energies_forces(idx, create_graph=True),
                 _member_energies_forces(model, sp, xyz, True)):
        fast = torch.autograd.grad(e.sum() + f.pow(2).sum(), list(model.parameters()))
        assert len(fast) == 3 * 2 * 3  # members × elements × layers
        for g, g_ref in zip(fast, slow, strict=True):
            assert float(g_ref.abs().max()) > 0
            torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-6)


def test_a_walker_calculator_recomputes_only_when_its_structure_changed():
    from reactive_al.models.batching import _Proxy

    asked: list[np.ndarray] = []

    def ask(atoms):  # noqa: ANN001, ANN202
        asked.append(atoms.positions.copy())
        return {"energy": 0.0, "forces": np.zeros((len(atoms), 3))}

    atoms = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])
    atoms.calc = _Proxy(["energy", "forces"], ask)
    atoms.get_forces()
    atoms.get_potential_energy()
    atoms.get_forces()
    assert len(asked) == 1  # the same structure: answered from the last results
    atoms.positions[1, 2] += 1e-12
    atoms.get_forces()
    assert len(asked) == 2
    for change in (lambda a: a.set_cell([5, 5, 5]), lambda a: a.set_pbc(True),
                   lambda a: a.set_atomic_numbers([1, 2])):
        change(atoms)
        atoms.get_forces()
    assert len(asked) == 5
    assert atoms.calc.check_state(atoms) == []
    assert atoms.calc.check_state(atoms[:1]) != []  # other atoms: everything changed
