"""Nodes of the ``training`` pipeline."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import numpy as np
from ase import Atoms

from reactive_al.models import Committee, CommitteeSpec, TrainingConfig, train_committee
from reactive_al.models.baseline import Baseline, baseline_level, resolve_baseline
from reactive_al.models.pretraining import PretrainConfig, pretrain_pool
from reactive_al.models.training import retrains_at
from reactive_al.oracles import parse_level
from reactive_al.oracles.labeling import LabelingConfig, label_structures
from reactive_al.systems import is_crystal, load_system

log = logging.getLogger(__name__)

#: Where pre-training is configured (named in its one-line errors).
PRETRAIN_WHERE = "parameters_training.yml: training.pretrain.level"


def label_at_level(
    frames: list[Atoms], level: dict[str, Any], charge: int, multiplicity: int,
    labeling: dict[str, Any],
) -> tuple[list[Atoms], list[dict[str, Any]]]:
    """Label ``frames`` at a cheap ``level`` through the label cache, in process.

    xTB calls take milliseconds: a Dask cluster would cost more than they do.
    """
    cfg = LabelingConfig(charge=charge, multiplicity=multiplicity, level=level,
                         **{**labeling, "scheduler": "synchronous"})
    return label_structures(frames, cfg)


def baseline_labels(
    frames: list[Atoms], baseline: Baseline, labeling: dict[str, Any]
) -> tuple[list[Atoms], tuple[np.ndarray, list[np.ndarray]], dict[str, Any]]:
    """The baseline's labels of ``frames`` through the label cache (computed once each).

    Returns the frames that have one (a structure the baseline program fails on is left out
    of training and reported), their energies (eV) and forces (eV/Å), and the cost record:
    structures, failures and the wall time (s) their baseline calculations took (once each,
    in this run or an earlier one). Baseline calls take milliseconds: they run in process.
    """
    labeled, failures = label_at_level(frames, baseline.level, baseline.charge,
                                       baseline.multiplicity, labeling)
    walls = [float(a.info.get("qm_wall_time_s", 0.0)) for a in labeled]
    keep = [frames[i] for i in sorted(set(range(len(frames))) - {f["index"] for f in failures})]
    for f in failures:
        log.warning("baseline failed for training frame %d (%s): %s; left out of training",
                    f["index"], f.get("origin"), f.get("message"))
    cost = {"level": baseline.level, "n_structures": len(frames),
            "n_failed": len(failures), "wall_time_s": round(sum(walls), 3)}
    return keep, (np.array([a.get_potential_energy() for a in labeled]),
                  [a.get_forces() for a in labeled]), cost


def train(
    labeled_set: list[Atoms],
    system: str,
    systems: dict[str, Any],
    training: dict[str, Any],
    labeling: dict[str, Any] | None = None,
    previous_committee: Committee | None = None,
    pretrained_committee: Committee | None = None,
    iteration: int | None = None,
    last: bool = False,
) -> Committee:
    """Train a committee for the system's elements and level of theory on ``labeled_set``.

    With ``training.fit.mode: warm_start`` and a ``previous_committee`` (the AL iteration
    before), the members continue from its weights, except where ``retrain_every`` or
    ``retrain_last`` of ``training.fit`` make AL iteration ``iteration`` (``last``: the
    campaign's last) train from scratch (:func:`~reactive_al.models.training.retrains_at`);
    otherwise they train from scratch, or
    from the ``pretrained_committee``'s networks (``training.pretrain``). With
    ``training.baseline`` (e.g. ``xtb``; ``auto``: :func:`~reactive_al.models.baseline.
    resolve_baseline`) the committee learns the QM labels minus the baseline's, whose labels
    come through the label cache (``labeling`` settings).
    """
    rs = load_system(system, systems)
    spec = CommitteeSpec(symbols=rs.symbols, lot=rs.level.name, **training["model"])
    fit = TrainingConfig(**training["fit"])
    if previous_committee is not None and retrains_at(fit, iteration, last):
        log.info("iteration %s trains from scratch (training.fit.retrain_every: %s, "
                 "retrain_last: %s)", iteration, fit.retrain_every, fit.retrain_last)
        fit = dataclasses.replace(fit, mode="retrain")
    baseline = resolve_baseline(training.get("baseline"), rs.level, is_crystal(rs.reactant))
    if not baseline:
        return train_committee(labeled_set, spec, fit, previous=previous_committee,
                               init=pretrained_committee)
    base = Baseline.for_system(baseline, rs.charge, rs.multiplicity)
    spec.baseline = base.to_dict()
    frames, labels, cost = baseline_labels(labeled_set, base, labeling or {})
    committee = train_committee(frames, spec, fit, previous=previous_committee,
                                baseline_labels=labels, init=pretrained_committee)
    committee.history["baseline_cost"] = cost
    if len(frames) < len(labeled_set):  # indices into labeled_set, as calibration reads them
        kept = [i for i, a in enumerate(labeled_set) if any(a is f for f in frames)]
        committee.history["val_indices"] = [kept[i] for i in committee.history["val_indices"]]
    return committee


def warm_up(
    initial_pool: list[Atoms], system: str, systems: dict[str, Any], training: dict[str, Any],
    labeling: dict[str, Any], *running: Any,
) -> dict[str, Any]:
    """What the first training pays once per process, done while the initial pool is labeled.

    With a Δ baseline (``training.baseline``): the baseline's labels of ``initial_pool``
    through the label cache (the first training reads them there) and one epoch of a
    throwaway committee of ``training.model`` on them, which imports and initialises what
    torch and TorchANI load on first use (measured 1.5-2 s of the first training, SN2). It
    changes no result. ``running`` (the initial pool's label job) only orders it after the
    QM has started. Returns its wall time (s) and the number of baseline labels; a failure is
    logged and returned, never raised (the first training then pays the cost itself).
    """
    start = time.perf_counter()
    rs = load_system(system, systems)
    baseline = resolve_baseline(training.get("baseline"), rs.level, is_crystal(rs.reactant))
    if not baseline:
        return {"skipped": "no baseline", "wall_time_s": 0.0}
    try:
        base = Baseline.for_system(baseline, rs.charge, rs.multiplicity)
        labeled, failures = label_at_level(list(initial_pool), base.level, base.charge,
                                           base.multiplicity, labeling)
        spec = CommitteeSpec(symbols=rs.symbols, lot=rs.level.name, **training["model"])
        fit = TrainingConfig(**{**training["fit"], "max_epochs": 1, "min_epochs": 0,
                                "mode": "retrain", "progress": False})
        train_committee(labeled, spec, fit)
    except Exception as exc:  # noqa: BLE001 - a warm-up that fails costs only its time
        log.warning("warm-up of the first training failed (%s: %s); it pays that cost itself",
                    type(exc).__name__, exc)
        return {"error": f"{type(exc).__name__}: {exc}",
                "wall_time_s": round(time.perf_counter() - start, 2)}
    return {"baseline_labels": len(labeled), "baseline_failures": len(failures),
            "wall_time_s": round(time.perf_counter() - start, 2)}


def _pretrain_config(training: dict[str, Any]) -> PretrainConfig:
    return PretrainConfig(**(training.get("pretrain") or {}))


def build_pretrain_pool(system: str, systems: dict[str, Any],
                        training: dict[str, Any]) -> list[Atoms]:
    """The unlabeled pre-training pool (``training.pretrain``; MD on the pre-training level)."""
    rs = load_system(system, systems)
    cfg = _pretrain_config(training)
    level = parse_level(baseline_level(cfg.level, PRETRAIN_WHERE), PRETRAIN_WHERE)
    pool = pretrain_pool(rs, cfg, level)
    log.info("pre-training pool: %d structures", len(pool))
    return pool


def label_pretrain_pool(
    pool: list[Atoms], system: str, systems: dict[str, Any], training: dict[str, Any],
    labeling: dict[str, Any],
) -> tuple[list[Atoms], dict[str, Any]]:
    """The pool labeled at the pre-training level (label cache) and its cost record."""
    rs = load_system(system, systems)
    level = baseline_level(_pretrain_config(training).level, PRETRAIN_WHERE)
    labeled, failures = label_at_level(pool, level, rs.charge, rs.multiplicity, labeling)
    return labeled, {"level": level, "n_structures": len(pool), "n_labeled": len(labeled),
                     "n_failed": len(failures), "failures": failures,
                     "wall_time_s": round(sum(float(a.info.get("qm_wall_time_s", 0.0))
                                              for a in labeled), 3)}


def pretrain(pretrain_labels: list[Atoms], system: str, systems: dict[str, Any],
             training: dict[str, Any]) -> Committee:
    """A committee trained from scratch on the cheap labels; iterations fine-tune its networks.

    ``training.pretrain.fit`` overrides ``training.fit`` for this run.
    """
    rs = load_system(system, systems)
    cfg = _pretrain_config(training)
    level = baseline_level(cfg.level, PRETRAIN_WHERE)
    spec = CommitteeSpec(symbols=rs.symbols, lot=str(level.get("method", level["program"])),
                         **training["model"])
    fit = TrainingConfig(**{**training["fit"], **cfg.fit, "mode": "retrain"})
    return train_committee(pretrain_labels, spec, fit)
