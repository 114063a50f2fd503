"""Training a committee on energies and forces: from scratch, or warm-started with replay."""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms
from ase.units import Hartree
from tqdm.auto import tqdm

from reactive_al.models.baseline import Baseline, residual_frames
from reactive_al.models.committee import (
    Committee,
    CommitteeSpec,
    build_model,
    frames_to_tensors,
    is_periodic,
    member_terms,
)
from reactive_al.models.features import (
    MAX_JACOBIAN_BYTES,
    PrecomputedFeatures,
    jacobian_bytes,
)

log = logging.getLogger(__name__)

TRAINING_MODES = ("retrain", "warm_start")
#: learning-rate schedules of a warm start
WARM_START_SCHEDULES = ("plateau", "cosine")


@dataclass
class TrainingConfig:
    """Optimisation settings for a committee.

    ``mode`` chooses how an AL iteration gets its committee: ``retrain`` trains fresh members
    on the whole labeled set; ``warm_start`` continues every member of the previous committee
    for at most ``warm_start_epochs`` on the new structures plus a replay of old ones (see
    :func:`train_committee`). ``replay_fraction`` is the share of the old training structures
    drawn afresh into every warm-start epoch (1.0: fine-tune on everything; 0.0: new only).
    """

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
    mode: str = "retrain"
    replay_fraction: float = 0.5
    warm_start_epochs: int = 100
    #: a warm start's own early stopping: it starts from a committee that already fits the
    #: old labels, so a short wait is enough (``None``: ``patience``)
    warm_start_min_epochs: int = 0
    warm_start_patience: int | None = None
    #: learning-rate schedule of a warm start: ``plateau`` (halve on a validation plateau, as
    #: from scratch) or ``cosine`` (anneal from ``learning_rate`` to 1% of it over
    #: ``warm_start_epochs``: a short run that still ends at a small step)
    warm_start_schedule: str = "plateau"
    #: warm starts in an AL campaign: iteration k trains from scratch instead when
    #: ``retrain_every`` divides k (None: only iteration 0), and the campaign's last
    #: iteration does with ``retrain_last`` (the committee a campaign ends with is then
    #: trained as by ``retrain``, the ones between are the fast warm starts)
    retrain_every: int | None = None
    retrain_last: bool = True
    #: a progress bar over the epochs (tqdm; off in batch jobs)
    progress: bool = True
    #: weight of the stress term of crystals' labels (None: 1.0); the term is the squared
    #: virial error per √atom, (σ − σ_ref)·V/√N in eV, like the energy term
    stress_weight: float | None = None

    def __post_init__(self) -> None:
        where = "parameters_training.yml: training.fit"
        if self.mode not in TRAINING_MODES:
            raise ValueError(f"{where}.mode must be one of {list(TRAINING_MODES)}, "
                             f"got {self.mode!r}")
        if not 0.0 <= float(self.replay_fraction) <= 1.0:
            raise ValueError(f"{where}.replay_fraction must lie in [0, 1], "
                             f"got {self.replay_fraction!r}")
        if self.warm_start_schedule not in WARM_START_SCHEDULES:
            raise ValueError(f"{where}.warm_start_schedule must be one of "
                             f"{list(WARM_START_SCHEDULES)}, got {self.warm_start_schedule!r}")
        if self.retrain_every is not None and int(self.retrain_every) < 1:
            raise ValueError(f"{where}.retrain_every must be >= 1 or null, "
                             f"got {self.retrain_every!r}")
        if int(self.warm_start_epochs) < 1:
            raise ValueError(f"{where}.warm_start_epochs must be >= 1, "
                             f"got {self.warm_start_epochs!r}")


def retrains_at(cfg: TrainingConfig, iteration: int | None, last: bool) -> bool:
    """Whether a warm-starting campaign's AL iteration ``iteration`` trains from scratch.

    ``last``: it is the campaign's last iteration (``cfg.retrain_last``); ``cfg.retrain_every``
    divides the others it retrains. Always False outside warm-start mode or outside a
    campaign (``iteration`` None).
    """
    if cfg.mode != "warm_start" or iteration is None:
        return False
    every = cfg.retrain_every
    return bool((every and iteration % int(every) == 0) or (last and cfg.retrain_last))


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


def _split(n: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    idx = rng.permutation(n)
    n_val = max(1, int(round(fraction * n))) if n >= 5 else 0
    return idx[n_val:], idx[:n_val]


#: Hex digits of a frame key kept in a committee's history (64 bits: no collisions in practice).
KEY_LENGTH = 16


def frame_key(atoms: Atoms) -> str:
    """Identity of a labeled frame: its ``label_key`` (label cache) or a hash of its content.

    The content hash covers atomic numbers, positions (to 1e-6 Å) and the energy label, so a
    frame read back from extxyz keeps its key.
    """
    key = atoms.info.get("label_key")
    if not key:
        h = hashlib.sha256(np.asarray(atoms.get_atomic_numbers(), dtype=np.int64).tobytes())
        h.update(np.round(atoms.get_positions(), 6).astype(np.float64).tobytes())
        if atoms.calc is not None and "energy" in atoms.calc.results:
            h.update(np.float64(round(float(atoms.get_potential_energy()), 8)).tobytes())
        key = h.hexdigest()
    return str(key)[:KEY_LENGTH]


def check_same_architecture(spec: CommitteeSpec, previous: CommitteeSpec,
                            ignore: tuple[str, ...] = ("self_energies",),
                            how: str = "warm start") -> None:
    """Raise ``ValueError`` listing the fields where two specs differ (``ignore`` aside).

    A warm start loads the previous committee's weights, so every architectural setting must
    match; the self energies are taken from the previous committee anyway.
    """
    a, b = spec.to_dict(), previous.to_dict()
    diff = {k: (b.get(k), a.get(k)) for k in {*a, *b}
            if k not in ignore and a.get(k) != b.get(k)}
    if diff:
        detail = ", ".join(f"{k}: previous {old!r} vs now {new!r}"
                           for k, (old, new) in diff.items())
        raise ValueError(f"{how} needs the previous committee's architecture "
                         f"(parameters_training.yml: training.model); differs in {detail}. "
                         "Set training.fit.mode: retrain to train from scratch instead.")


def _networks(model) -> torch.nn.Module:  # noqa: ANN001
    """The member networks of a committee model (all its trainable parameters)."""
    return model.potentials["nnp"].neural_networks


def _previous_split(
    previous: Committee, frames: list[Atoms]
) -> tuple[set[str], set[str]]:
    """Keys of the frames the previous committee trained on and of those it held out."""
    h = previous.history
    keys = h.get("train_keys")
    if keys is None:
        # a checkpoint from before frame keys were recorded: merge_labeled appends, so the
        # previous training set is the first n_train + n_val frames of this one
        n_prev = int(h.get("n_train", 0)) + int(h.get("n_val", 0))
        if not 0 < n_prev <= len(frames):
            raise ValueError(f"cannot match the previous committee's {n_prev} training frames "
                             f"to {len(frames)} labeled frames; retrain once first")
        log.warning("previous committee has no train_keys: taking the first %d labeled "
                    "frames as its training set", n_prev)
        keys = [frame_key(a) for a in frames[:n_prev]]
    val = {keys[i] for i in h.get("val_indices", [])}
    return set(keys) - val, val


def _warm_split(
    frames: list[Atoms], previous: Committee, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Old training, new training and validation indices of ``frames`` for a warm start.

    Frames the previous committee held out stay held out (its weights never saw them, so
    they still measure generalisation). Random new frames join them until the validation set
    is ``fraction`` of all frames again, as in a split from scratch; a batch too small for
    its own share then still adds to validation over the iterations.
    """
    old_train, old_val = _previous_split(previous, frames)
    keys = [frame_key(a) for a in frames]
    old = np.array([i for i, k in enumerate(keys) if k in old_train], dtype=int)
    val = [i for i, k in enumerate(keys) if k in old_val]
    new = rng.permutation([i for i, k in enumerate(keys)
                           if k not in old_train and k not in old_val]).astype(int)
    target = max(1, int(round(fraction * len(frames)))) if len(frames) >= 5 else 0
    n_new_val = min(len(new), max(0, target - len(val)))
    val_idx = np.array(sorted([*val, *new[:n_new_val].tolist()]), dtype=int)
    return old, np.sort(new[n_new_val:]), val_idx


def train_committee(
    frames: list[Atoms],
    spec: CommitteeSpec,
    cfg: TrainingConfig,
    previous: Committee | None = None,
    baseline_labels: tuple[np.ndarray, list[np.ndarray]] | None = None,
    init: Committee | None = None,
) -> Committee:
    """Train a committee on labeled frames (energies and forces) with early stopping.

    With ``spec.baseline`` (Δ-learning) the members learn the labels minus the baseline's:
    ``baseline_labels`` (energies eV, forces eV/Å per frame, e.g. from the label cache) or,
    if None, direct baseline calls. Self energies are then fitted to the residual.

    ``init`` (a committee pre-trained on a cheap level, same architecture): training from
    scratch starts from its member networks instead of random weights (fine-tuning); the
    self energies are fitted to these labels as always.

    ``cfg.mode == "retrain"`` (or no ``previous`` committee): self energies are fitted to the
    data first; all members share one split and see the same mini-batches but start from
    different random weights.

    ``cfg.mode == "warm_start"`` with a ``previous`` committee of the same architecture: every
    member starts from its previous weights and the previous self energies (the energy
    shifter the weights were fitted against). Frames are matched to the previous training set
    by :func:`frame_key`, so order does not matter. Each epoch trains on all new training
    frames plus a fresh random ``replay_fraction`` of the old training frames (experience
    replay: resampled every epoch, so the whole old set is revisited over the run at a
    fraction of the cost per epoch), for at most ``warm_start_epochs``. Old validation frames
    stay in validation (see :func:`_warm_split`).

    The state with the lowest validation loss is kept (training loss when there are too few
    frames to hold any out). The history records the mode and the frame keys in training
    order, which the next warm start matches against.
    """
    if len(frames) < 2:
        raise ValueError(f"need at least 2 labeled frames to train, got {len(frames)}")
    base = Baseline.from_dict(spec.baseline) if spec.baseline else None
    if base is not None and any(is_periodic(a) for a in frames):
        raise ValueError("parameters_training.yml: training.baseline: Δ-learning is not "
                         "available for periodic systems yet; set training.baseline: null")
    if base is not None and spec.repulsion:
        # the baseline has its own short-range repulsion: TorchANI's xTB repulsion on top
        # counts it twice (SN2, 16 B3LYP labels: test force MAE 0.24 eV/Å with it, 0.08
        # without)
        spec = copy.deepcopy(spec)
        spec.repulsion = False
    if base is not None:
        e_base, f_base = baseline_labels or base.evaluate(frames)
        base.remember(frames, e_base, f_base)
        frames = residual_frames(frames, e_base, f_base)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    warm = cfg.mode == "warm_start" and previous is not None
    if cfg.mode == "warm_start" and previous is None:
        log.info("training.fit.mode is warm_start but there is no previous committee: "
                 "training from scratch")
    if warm:
        check_same_architecture(spec, previous.spec)
        spec = copy.deepcopy(previous.spec)
        model = build_model(spec)
        model.load_state_dict(previous.model.state_dict())
        old_idx, train_idx, val_idx = _warm_split(frames, previous, cfg.validation_fraction, rng)
        n_replay = int(round(cfg.replay_fraction * len(old_idx)))
        max_epochs = int(cfg.warm_start_epochs)
        min_epochs = min(int(cfg.warm_start_min_epochs), max_epochs)
        patience = int(cfg.warm_start_patience or cfg.patience)
    else:
        spec = copy.deepcopy(spec)
        spec.self_energies = fit_self_energies(frames, spec.symbols)
        model = build_model(spec)
        if init is not None:
            # the networks are what is carried over: the level, the baseline and the
            # parameter-free terms (self energies, repulsion) may differ
            check_same_architecture(spec, init.spec,
                                    ("self_energies", "lot", "baseline", "repulsion"),
                                    how="fine-tuning a pre-trained committee")
            _networks(model).load_state_dict(_networks(init.model).state_dict())
        train_idx, val_idx = _split(len(frames), cfg.validation_fraction, rng)
        old_idx, n_replay = np.array([], dtype=int), 0
        max_epochs, min_epochs, patience = cfg.max_epochs, cfg.min_epochs, cfg.patience
    data = frames_to_tensors(frames)
    n_atoms = (data["species"] >= 0).sum(1).double()
    # the AEVs and their Jacobians once for the whole run (the networks are all that train),
    # unless they would not fit in memory
    # (crystals: each in its cell, with the strain Jacobians for the stress)
    periodic = "periodic" in data
    features = (PrecomputedFeatures(model, data["species"], data["coordinates"],
                                    cells=data.get("cells"), periodic=data.get("periodic"))
                if jacobian_bytes(model, data["species"]) <= MAX_JACOBIAN_BYTES else None)
    stress_weight = 1.0 if cfg.stress_weight is None else float(cfg.stress_weight)
    if periodic:
        volumes = torch.linalg.det(data["cells"].double()).abs()
    fit_idx = np.concatenate([old_idx, train_idx])  # every frame the weights are fitted to
    # fused: one kernel updates every parameter tensor (half the optimiser's cost here)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate,
                            weight_decay=cfg.weight_decay, fused=True)
    cosine = warm and cfg.warm_start_schedule == "cosine"
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max_epochs,
                                                        eta_min=0.01 * cfg.learning_rate)
             if cosine else
             torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5,
                                                        patience=max(5, patience // 3)))

    def loss_on(idx: np.ndarray, create_graph: bool) -> tuple[torch.Tensor, dict[str, float]]:
        sp = data["species"][idx]
        s = None
        if features is not None:
            e, f, s = features.terms(idx, create_graph)
        else:
            e, f, s = member_terms(model, data, idx, create_graph)
        de = (e.double() - data["energies"][idx]) * Hartree / n_atoms[idx].sqrt()
        mask = (sp >= 0)[None, :, :, None]
        df = (f - data["forces"][idx]) * Hartree * mask
        n_comp = mask.sum() * 3
        e_loss = (de ** 2).mean(1).sum()
        f_loss = (df ** 2).sum((1, 2, 3)).sum() / n_comp
        loss = e_loss + cfg.force_weight * f_loss
        m = e.shape[0]
        stats = {"energy_rmse": float((e_loss.detach() / m).sqrt()),
                 "force_rmse": float((f_loss.detach() / m).sqrt())}
        if s is not None and bool(data["has_stress"][idx].any()):
            has = data["has_stress"][idx]
            scale = (volumes[idx] / n_atoms[idx].sqrt())[has][None, :, None, None] * Hartree
            dw = (s[:, has].double() - data["stress"][idx][has].double()) * scale
            s_loss = (dw ** 2).mean((2, 3)).mean(1).sum()
            loss = loss + stress_weight * s_loss
            stats["virial_rmse"] = float((s_loss.detach() / m).sqrt())
        return loss, stats

    monitor_idx = val_idx if len(val_idx) else fit_idx
    # the starting weights are no candidate: the previous committee was selected on the old
    # validation frames, so they would favour it and the new labels could go unlearned
    best = (math.inf, copy.deepcopy(model.state_dict()), 0)
    start = time.perf_counter()
    epochs_run, steps = 0, 0
    curve = []
    bar = tqdm(total=max_epochs, desc=f"training ({'warm start' if warm else 'retrain'})",
               disable=None if cfg.progress else True, leave=False)
    for epoch in range(max_epochs):
        model.train()
        epoch_idx = train_idx
        if n_replay:
            epoch_idx = np.concatenate([train_idx, rng.choice(old_idx, n_replay, replace=False)])
        perm = rng.permutation(epoch_idx)
        for b in range(0, len(perm), cfg.batch_size):
            loss, _ = loss_on(perm[b:b + cfg.batch_size], create_graph=True)
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
        epochs_run = epoch + 1
        model.eval()
        val_loss, stats = loss_on(monitor_idx, create_graph=False)
        v = float(val_loss.detach())
        sched.step() if cosine else sched.step(v)
        curve.append(v)
        if v < best[0] * (1 - 1e-4):
            best = (v, copy.deepcopy(model.state_dict()), epoch)
        bar.update()
        bar.set_postfix(val_loss=f"{v:.3g}", refresh=False)
        if epoch + 1 >= min_epochs and epoch - best[2] >= patience:
            break
        if (time.perf_counter() - start) / 60 > cfg.max_minutes:
            log.warning("training stopped at the %.1f min time limit", cfg.max_minutes)
            break
    bar.close()
    model.load_state_dict(best[1])
    model.eval()
    _, val_stats = loss_on(monitor_idx, create_graph=False)
    history = {
        "mode": "warm_start" if warm else "retrain",
        "init": "previous" if warm else ("pretrained" if init is not None else "random"),
        "n_train": int(len(fit_idx)),
        "n_val": int(len(val_idx)),
        # which frames of the training set were held out: calibration uses them later
        "val_indices": [int(i) for i in sorted(val_idx)],
        "epochs": int(epochs_run),
        "steps": int(steps),
        "best_epoch": int(best[2]),
        "wall_time_s": round(time.perf_counter() - start, 2),
        "val_energy_rmse_ev_per_sqrt_atom": val_stats["energy_rmse"],
        "val_force_rmse_ev_per_a": val_stats["force_rmse"],
        # crystals with stress labels: the virial error per √atom (eV)
        **({"val_virial_rmse_ev_per_sqrt_atom": val_stats["virial_rmse"]}
           if "virial_rmse" in val_stats else {}),
        "val_loss_curve": [float(x) for x in curve],
        # what the next warm start matches its frames against, in training-set order
        "train_keys": [frame_key(a) for a in frames],
    }
    if warm:
        history.update({"replay_fraction": float(cfg.replay_fraction),
                        "n_new_train": int(len(train_idx)), "n_old_train": int(len(old_idx)),
                        "n_replay_per_epoch": int(n_replay)})
    log.info("trained (%s) %d-member committee on %d frames: %d epochs, %.1f s, "
             "val F-RMSE %.3f eV/Å", history["mode"], spec.ensemble_size, len(frames),
             epochs_run, history["wall_time_s"], val_stats["force_rmse"])
    committee = Committee(model, spec, history)
    if base is not None and committee.baseline is not None:
        committee.baseline = base  # already knows the training frames' baseline labels
    return committee
