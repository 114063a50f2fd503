"""Nodes of the ``tuning`` pipeline."""

from __future__ import annotations

from typing import Any

import pandas as pd
from ase import Atoms

from reactive_al.tuning import run_study


def tune_query(
    labeled_set: list[Atoms],
    test_set: list[Atoms],
    selection: dict[str, Any],
    training: dict[str, Any],
    tuning: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], pd.DataFrame]:
    """Run more trials of the tuning study on the labeled pool.

    Returns the best settings (shaped like the ``selection``/``training`` blocks), a summary
    of the study and one row per trial.
    """
    result = run_study(labeled_set, test_set, tuning, selection=selection, training=training)
    return result.best_params, result.summary, result.trials
