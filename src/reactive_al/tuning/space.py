"""The search-space language of ``tuning.search_space``: checks, Optuna suggestions, baseline.

A search-space entry names a dotted path into the nested query settings
``{"selection": {...}, "training": {...}, "replay": {...}}`` (``selection.batch_size``) and
gives its type (``int``, ``float``, ``categorical``), range or choices and, optionally, a
``when`` condition on earlier entries.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from reactive_al.nested import deep_merge, get_path
from reactive_al.selection import STRATEGIES
from reactive_al.tuning.replay import EXPLORATION_KEYS, PARAMS_FILE, QUERY_DEFAULTS
from reactive_al.uncertainty import CRITERIA, METHODS

if TYPE_CHECKING:
    import optuna

#: Blocks a search-space path may start with.
TUNABLE_BLOCKS = ("selection", "training", "replay")
#: Categorical paths whose values the replay must understand.
KNOWN_CHOICES = {"selection.strategy": tuple(STRATEGIES),
                 "selection.uncertainty.method": tuple(METHODS),
                 "selection.criterion": tuple(CRITERIA)}


def plain(value: Any) -> Any:
    """Numpy scalars → python scalars, so YAML/JSON/MLflow accept the value."""
    return value.item() if isinstance(value, np.generic) else value


def validate_search_space(space: Mapping[str, Mapping[str, Any]]) -> None:
    """Raise ``ValueError`` naming the parameter file for a malformed search-space entry."""
    seen: set[str] = set()
    for path, spec in space.items():
        where = f"{PARAMS_FILE}: tuning.search_space.{path}"
        if path.split(".", 1)[0] not in TUNABLE_BLOCKS or "." not in path:
            raise ValueError(f"{where}: a path must start with one of {list(TUNABLE_BLOCKS)}")
        kind = spec.get("type")
        if kind in ("int", "float"):
            if not spec.get("low", 0) < spec.get("high", 0):
                raise ValueError(f"{where}: need low < high")
            if spec.get("log") and spec.get("step") not in (None, 1):
                raise ValueError(f"{where}: log and step cannot be combined")
        elif kind == "categorical":
            choices = spec.get("choices") or []
            if not choices or any(isinstance(c, list | dict) for c in choices):
                raise ValueError(f"{where}: choices must be a non-empty list of scalars")
            known = KNOWN_CHOICES.get(path)
            if known and set(choices) - set(known):
                raise ValueError(f"{where}: unknown choice(s) {sorted(set(choices) - set(known))}"
                                 f" (choose from {list(known)})")
        else:
            raise ValueError(f"{where}: type must be int, float or categorical, got {kind!r}")
        for dep in (spec.get("when") or {}):
            if dep in space and dep not in seen:
                raise ValueError(f"{where}: 'when' refers to {dep}, which is tuned, so it "
                                 f"must be an earlier entry of the search space")
        seen.add(path)


def _active(spec: Mapping[str, Any], values: Mapping[str, Any], base: Mapping[str, Any]) -> bool:
    """Whether a conditional entry applies: any ``when`` path holds one of its listed values."""
    when = spec.get("when")
    if not when:
        return True
    for path, allowed in when.items():
        current = values[path] if path in values else get_path(base, path)
        if current in (allowed if isinstance(allowed, list) else [allowed]):
            return True
    return False


def suggest(trial: optuna.trial.BaseTrial, space: Mapping[str, Mapping[str, Any]],
            base: Mapping[str, Any]) -> dict[str, Any]:
    """Ask ``trial`` for every active search-space entry; returns ``{path: value}``.

    Entries are visited in file order, so a ``when`` condition sees earlier suggestions (or the
    ``base`` value of a path that is not tuned).
    """
    values: dict[str, Any] = {}
    for path, spec in space.items():
        if not _active(spec, values, base):
            continue
        kind = spec["type"]
        if kind == "int":
            v = trial.suggest_int(path, int(spec["low"]), int(spec["high"]),
                                  step=int(spec.get("step") or 1), log=bool(spec.get("log")))
        elif kind == "float":
            v = trial.suggest_float(path, float(spec["low"]), float(spec["high"]),
                                    step=spec.get("step"), log=bool(spec.get("log")))
        else:
            v = trial.suggest_categorical(path, list(spec["choices"]))
        values[path] = plain(v)
    return values


def _in_space(spec: Mapping[str, Any], value: Any) -> bool:
    if spec["type"] == "categorical":
        return value in spec["choices"]
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    low, high, step = spec["low"], spec["high"], spec.get("step")
    if not low <= value <= high:
        return False
    if spec["type"] == "int":
        return value == int(value) and (int(value) - int(low)) % int(step or 1) == 0
    return step is None or math.isclose((value - low) / step, round((value - low) / step))


def baseline_params(space: Mapping[str, Mapping[str, Any]],
                    base: Mapping[str, Any]) -> dict[str, Any]:
    """The current settings (``base``) expressed as trial params, for ``study.enqueue_trial``.

    Paths whose base value lies outside the search space are left for the sampler.
    """
    out: dict[str, Any] = {}
    for path, spec in space.items():
        if not _active(spec, out, base):
            continue
        value = get_path(base, path)
        if value is not None and _in_space(spec, value):
            out[path] = value
    return out


def base_config(
    tuning: Mapping[str, Any],
    selection: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Settings every trial starts from, before its suggestions are applied.

    ``selection``: :data:`QUERY_DEFAULTS` ← the campaign's ``selection`` block ←
    ``tuning.query``. ``training``: the campaign's ``training`` block ← ``tuning.training``
    (small, fast settings). ``replay``: ``tuning.replay``.
    """
    sel = deep_merge(deep_merge(QUERY_DEFAULTS, selection), tuning.get("query"))
    for key in EXPLORATION_KEYS:
        sel.pop(key, None)
    return {
        "selection": sel,
        "training": deep_merge(training or {}, tuning.get("training")),
        "replay": dict(tuning.get("replay") or {}),
    }
