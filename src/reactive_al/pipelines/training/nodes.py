"""Nodes of the ``training`` pipeline."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from ase import Atoms

from reactive_al.models import Committee, CommitteeSpec, TrainingConfig, train_committee
from reactive_al.models.baseline import Baseline
from reactive_al.oracles.labeling import LabelingConfig, label_structures
from reactive_al.systems import load_system

log = logging.getLogger(__name__)


def baseline_labels(
    frames: list[Atoms], baseline: Baseline, labeling: dict[str, Any]
) -> tuple[list[Atoms], tuple[np.ndarray, list[np.ndarray]], dict[str, Any]]:
    """The baseline's labels of ``frames`` through the label cache (computed once each).

    Returns the frames that have one (a structure the baseline program fails on is left out
    of training and reported), their energies (eV) and forces (eV/Å), and the cost record:
    structures, failures and the wall time (s) their baseline calculations took (once each,
    in this run or an earlier one). Baseline calls take milliseconds: they run in process.
    """
    cfg = LabelingConfig(charge=baseline.charge, multiplicity=baseline.multiplicity,
                         level=baseline.level, **{**labeling, "scheduler": "synchronous"})
    labeled, failures = label_structures(frames, cfg)
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
) -> Committee:
    """Train a committee for the system's elements and level of theory on ``labeled_set``.

    With ``training.fit.mode: warm_start`` and a ``previous_committee`` (the AL iteration
    before), the members continue from its weights; otherwise they train from scratch. With
    ``training.baseline`` (e.g. ``xtb``) the committee learns the QM labels minus the
    baseline's, whose labels come through the label cache (``labeling`` settings).
    """
    rs = load_system(system, systems)
    spec = CommitteeSpec(symbols=rs.symbols, lot=rs.level.name, **training["model"])
    fit = TrainingConfig(**training["fit"])
    if not training.get("baseline"):
        return train_committee(labeled_set, spec, fit, previous=previous_committee)
    base = Baseline.for_system(training["baseline"], rs.charge, rs.multiplicity)
    spec.baseline = base.to_dict()
    frames, labels, cost = baseline_labels(labeled_set, base, labeling or {})
    committee = train_committee(frames, spec, fit, previous=previous_committee,
                                baseline_labels=labels)
    committee.history["baseline_cost"] = cost
    return committee
