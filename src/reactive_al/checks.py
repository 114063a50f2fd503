"""Parameters checked before any node runs: every problem is one line naming the key.

Sizes, budgets, worker counts, thresholds and temperatures are checked against the rules of
:data:`RULES`; the ``selection`` block against the registries (:func:`check_selection`); the
tuning search space by :func:`~reactive_al.tuning.space.validate_search_space`. The level of
theory of the system is checked by its oracle when the system is loaded (e.g. PySCF's
functional names).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from reactive_al.models.training import TRAINING_MODES, WARM_START_SCHEDULES
from reactive_al.nested import get_path


class ParameterError(ValueError):
    """A parameter that cannot be used; the message is one line naming the file and key."""


def _int(minimum: int, optional: bool = False) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        if v is None and optional:
            return None
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            return f"must be an integer >= {minimum}" + (" (or null)" if optional else "")
        return None
    return check


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        return None if v in choices else f"must be one of {list(choices)}"
    return check


def _number(low: float, high: float = math.inf, closed_low: bool = False,
            optional: bool = False) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        if v is None and optional:
            return None
        ok = (not isinstance(v, bool) and isinstance(v, int | float) and not math.isnan(v)
              and (v >= low if closed_low else v > low) and v <= high)
        if ok:
            return None
        bound = f"{'>=' if closed_low else '>'} {low:g}" + (f" and <= {high:g}"
                                                          if high < math.inf else "")
        return f"must be a number {bound}" + (" (or null)" if optional else "")
    return check


POSITIVE_INT, COUNT = _int(1), _int(0)
POSITIVE, FRACTION = _number(0.0), _number(0.0, 1.0, closed_low=True)


def _flag(v: Any) -> str | None:
    return None if isinstance(v, bool) else f"must be true or false, got {v!r}"


def _temperatures(v: Any) -> str | None:
    if isinstance(v, list | tuple) and v and all(POSITIVE(t) is None for t in v):
        return None
    return "must be a non-empty list of temperatures > 0 K"


def _basins(v: Any) -> str | None:
    from reactive_al.exploration.basins import parse_basins

    try:
        parse_basins(v)
    except ValueError as exc:
        return str(exc)
    return None


def _basin_md(v: Any) -> str | None:
    from reactive_al.exploration.basins import BASIN_MD_DEFAULTS

    if v is None:
        return None
    if not isinstance(v, Mapping):
        return f"must be a mapping with keys among {sorted(BASIN_MD_DEFAULTS)}"
    unknown = sorted(set(v) - set(BASIN_MD_DEFAULTS))
    return f"unknown keys {unknown} (known: {sorted(BASIN_MD_DEFAULTS)})" if unknown else None


#: ``labeling.scheduler`` values that start a cluster (anything else: a scheduler address)
SCHEDULERS = ("local", "synchronous", "slurm")


def _scheduler(v: Any) -> str | None:
    import re

    if v in SCHEDULERS or (isinstance(v, str) and (
            "://" in v or re.fullmatch(r"[\w.\-]+:\d+", v))):
        return None
    return f"must be {', '.join(SCHEDULERS)} or a scheduler address (tcp://host:port)"


def _baseline(v: Any, auto: bool = True) -> str | None:
    from reactive_al.models.baseline import AUTO, baseline_level

    if v is None or (auto and v == AUTO):
        return None
    try:
        baseline_level(v, "baseline")
    except ValueError as exc:
        return str(exc).removeprefix("baseline: ")
    return None


def _pretrain(v: Any) -> str | None:
    import dataclasses

    from reactive_al.models.pretraining import PretrainConfig

    if v is None:
        return None
    if not isinstance(v, Mapping):
        return "must be a mapping of pre-training settings (or null)"
    known = {f.name for f in dataclasses.fields(PretrainConfig)}
    unknown = sorted(set(v) - known)
    if unknown:
        return f"unknown settings {unknown} (known: {', '.join(sorted(known))})"
    return _baseline(v.get("level", "xtb"), auto=False)


def _known(settings: str, extra: tuple[str, ...] = ()) -> Callable[[Any], str | None]:
    """Check: a mapping whose keys are fields of the settings dataclass ``module:Class``.

    The class is imported when a value is checked (its module may import torch).
    """
    def check(v: Any) -> str | None:
        import dataclasses
        import importlib

        if not isinstance(v, Mapping):
            return "must be a mapping of settings"
        module, name = settings.split(":")
        known = {f.name for f in dataclasses.fields(getattr(importlib.import_module(module),
                                                              name))} | set(extra)
        unknown = sorted(set(v) - known)
        return f"unknown settings {unknown} (known: {', '.join(sorted(known))})" if unknown \
            else None

    return check


def _pressures(v: Any) -> str | None:
    if v is None:
        return None
    if (not isinstance(v, list | tuple) or not v
            or not all(isinstance(p, int | float) and not isinstance(p, bool)
                       and math.isfinite(p) for p in v)):
        return "must be a non-empty list of pressures in bar (or null)"
    return None


#: (dotted key, check, parameters file) — a key absent from the parameters is not checked.
RULES: tuple[tuple[str, Callable[[Any], str | None], str], ...] = (
    *((f"active_learning.{key}", check, "parameters_active_learning.yml") for key, check in (
        ("n_iterations", POSITIVE_INT), ("lookahead", _flag),
        ("early_first_batch", _number(0, 1, optional=True)))),
    ("labeling", _known("reactive_al.oracles.labeling:LabelingConfig"),
     "parameters_labeling.yml"),
    ("labeling.scheduler", _scheduler, "parameters_labeling.yml"),
    ("labeling.n_workers", POSITIVE_INT, "parameters_labeling.yml"),
    ("labeling.omp_threads", POSITIVE_INT, "parameters_labeling.yml"),
    ("labeling.timeout_s", _number(0.0, optional=True), "parameters_labeling.yml"),
    ("labeling.min_distance", POSITIVE, "parameters_labeling.yml"),
    ("labeling.max_failure_fraction", FRACTION, "parameters_labeling.yml"),
    ("training.model", _known("reactive_al.models.committee:CommitteeSpec"),
     "parameters_training.yml"),
    ("training.fit", _known("reactive_al.models.training:TrainingConfig"),
     "parameters_training.yml"),
    ("training.fit.stress_weight", _number(0.0, closed_low=True, optional=True),
     "parameters_training.yml"),
    ("training.model.ensemble_size", POSITIVE_INT, "parameters_training.yml"),
    ("training.model.radial_cutoff", POSITIVE, "parameters_training.yml"),
    ("training.model.angular_cutoff", POSITIVE, "parameters_training.yml"),
    ("training.fit.max_epochs", POSITIVE_INT, "parameters_training.yml"),
    ("training.fit.min_epochs", COUNT, "parameters_training.yml"),
    ("training.fit.batch_size", POSITIVE_INT, "parameters_training.yml"),
    ("training.fit.learning_rate", POSITIVE, "parameters_training.yml"),
    ("training.fit.patience", POSITIVE_INT, "parameters_training.yml"),
    ("training.fit.validation_fraction", _number(0.0, 1.0), "parameters_training.yml"),
    ("training.fit.replay_fraction", FRACTION, "parameters_training.yml"),
    ("training.fit.warm_start_epochs", POSITIVE_INT, "parameters_training.yml"),
    ("training.fit.warm_start_min_epochs", COUNT, "parameters_training.yml"),
    ("training.fit.warm_start_patience", _int(1, optional=True), "parameters_training.yml"),
    ("training.fit.retrain_every", _int(1, optional=True), "parameters_training.yml"),
    ("training.fit.retrain_last", _flag, "parameters_training.yml"),
    ("training.fit.mode", _one_of(TRAINING_MODES), "parameters_training.yml"),
    ("training.fit.warm_start_schedule", _one_of(WARM_START_SCHEDULES),
     "parameters_training.yml"),
    ("training.fit.max_minutes", _number(0.0, optional=True), "parameters_training.yml"),
    ("training.baseline", _baseline, "parameters_training.yml"),
    ("training.pretrain", _pretrain, "parameters_training.yml"),
    ("selection.walkers", _known("reactive_al.exploration.md:WalkerConfig", ("bias",)),
     "parameters_selection.yml"),
    ("selection.walkers.pressures_bar", _pressures, "parameters_selection.yml"),
    ("selection.walkers.temperatures_K", _temperatures, "parameters_selection.yml"),
    ("selection.walkers.n_steps", POSITIVE_INT, "parameters_selection.yml"),
    ("selection.walkers.timestep_fs", POSITIVE, "parameters_selection.yml"),
    ("selection.walkers.friction_per_fs", _number(0.0, closed_low=True),
     "parameters_selection.yml"),
    ("selection.walkers.sample_every", POSITIVE_INT, "parameters_selection.yml"),
    ("selection.walkers.baseline_threads", POSITIVE_INT, "parameters_selection.yml"),
    ("selection.walkers.min_distance", POSITIVE, "parameters_selection.yml"),
    ("selection.walkers.bias.tau", POSITIVE, "parameters_selection.yml"),
    ("selection.uncertainty.num_features", POSITIVE_INT, "parameters_selection.yml"),
    ("selection.uncertainty.alpha", _number(0.0, 1.0), "parameters_selection.yml"),
    ("data_engineering.sigma", POSITIVE, "parameters_data_engineering.yml"),
    ("data_engineering.temperature_K", POSITIVE, "parameters_data_engineering.yml"),
    ("data_engineering.reference_path.n_images", POSITIVE_INT,
     "parameters_data_engineering.yml"),
    ("data_engineering.reference_path.fmax", POSITIVE, "parameters_data_engineering.yml"),
    ("data_engineering.reference_path.steps", POSITIVE_INT, "parameters_data_engineering.yml"),
    ("data_engineering.reference_path.repair.min_distance", POSITIVE,
     "parameters_data_engineering.yml"),
    ("data_engineering.reference_path.repair.max_repairs", COUNT,
     "parameters_data_engineering.yml"),
    ("data_engineering.thermal.temperatures_K", _temperatures,
     "parameters_data_engineering.yml"),
    ("data_engineering.test.basins", _basins, "parameters_data_engineering.yml"),
    ("data_engineering.test.n_per_basin", POSITIVE_INT, "parameters_data_engineering.yml"),
    *((f"data_engineering.test.basin_md{key}", check, "parameters_data_engineering.yml")
      for key, check in (("", _basin_md), (".temperatures_K", _temperatures),
                         (".n_steps", POSITIVE_INT), (".timestep_fs", POSITIVE),
                         (".friction_per_fs", _number(0.0, closed_low=True)),
                         (".relax_steps", COUNT), (".relax_fmax", POSITIVE))),
)

_MISSING = object()


def check_parameters(params: Mapping[str, Any]) -> None:
    """Raise :class:`ParameterError` (one line) for the first unusable parameter.

    ``params`` are the session's parameters (``--params`` and ``--env`` applied). A block
    holding checked keys (``training``, ``training.fit``, ...) must be a mapping.
    """
    for key, _, where in RULES:
        parts = key.split(".")
        for depth in range(1, len(parts)):
            block = ".".join(parts[:depth])
            value = get_path(params, block, _MISSING)
            if value is not _MISSING and not isinstance(value, Mapping):
                raise ParameterError(f"conf/base/{where}: {block}: must be a mapping of "
                                     f"settings, got {value!r}")
    for key, rule, where in RULES:
        value = get_path(params, key, _MISSING)
        if value is _MISSING:
            continue
        problem = rule(value)
        if problem:
            raise ParameterError(f"conf/base/{where}: {key}: {problem}, got {value!r}")
    if "selection" in params:
        from reactive_al.selection import check_selection

        try:
            check_selection(params.get("selection") or {})
        except ValueError as exc:
            raise ParameterError(str(exc)) from None
    _check_baseline_is_cheaper(params)
    space = get_path(params, "tuning.search_space", None)
    if space:
        from reactive_al.tuning.space import validate_search_space

        try:
            validate_search_space(space)
        except ValueError as exc:
            raise ParameterError(f"conf/base/parameters_tuning.yml: {exc}") from None


def _check_baseline_is_cheaper(params: Mapping[str, Any]) -> None:
    """A Δ-learning baseline at the system's own level of theory leaves nothing to learn."""
    from reactive_al.models.baseline import AUTO, baseline_level
    from reactive_al.oracles import parse_level

    base = get_path(params, "training.baseline", None)
    system = (params.get("systems") or {}).get(params.get("system"))
    if (not base or base == AUTO or not isinstance(system, Mapping)
            or "level_of_theory" not in system):
        return  # auto resolves to none at the xTB level
    try:
        level = parse_level(system["level_of_theory"], "level_of_theory").as_dict()
    except ValueError:
        return  # the system check names it
    if baseline_level(base, "training.baseline") == level:
        raise ParameterError(
            f"conf/base/parameters_training.yml: training.baseline: {base!r} is the level of "
            f"theory of system '{params.get('system')}' itself, so the committee would learn "
            "zero; use a cheaper baseline or none (null)")


#: Parameter blocks (and active_learning keys) whose values change a campaign's results.
RESULT_BLOCKS = ("data_engineering", "training", "selection")
AL_RESULT_KEYS = ("lookahead", "early_first_batch")
#: Where a root keeps the identity of what it holds (``make clean-campaign`` removes it).
IDENTITY_FILE = "08_reporting/{what}_identity.json"


def _digest(value: Any) -> str:
    import hashlib
    import json

    blob = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


#: Options added after campaigns existed, off when null: a null one is left out of the
#: identity, so the campaigns made before it keep theirs.
OPTIONS_OFF_WHEN_NULL = ("training.baseline", "training.pretrain", "training.fit.stress_weight",
                         "selection.walkers.pressures_bar")


def _without_null(block: Any, path: list[str]) -> Any:
    """``block`` without the key at ``path`` when that key holds null (copies on the way)."""
    if not isinstance(block, Mapping) or path[0] not in block:
        return block
    if len(path) == 1:
        return block if block[path[0]] is not None else {
            k: v for k, v in block.items() if k != path[0]}
    return {**block, path[0]: _without_null(block[path[0]], path[1:])}


def _result_settings(params: Mapping[str, Any], system: Any = None) -> dict[str, Any]:
    """The result-changing blocks (and the lookahead), ``training.baseline: auto`` resolved.

    A campaign's identity is what it computes: ``auto`` counts as the baseline it resolves
    to (none for crystals and xTB-level systems, which keep the identity they had before).
    """
    settings = {k: params.get(k) for k in RESULT_BLOCKS}
    training = settings.get("training")
    if system is not None and isinstance(training, Mapping) and "baseline" in training:
        from reactive_al.models.baseline import resolve_baseline
        from reactive_al.systems import is_crystal

        settings["training"] = {**training, "baseline": resolve_baseline(
            training["baseline"], system.level, is_crystal(system.reactant))}
    for key in OPTIONS_OFF_WHEN_NULL:
        block, *path = key.split(".")
        settings[block] = _without_null(settings.get(block), path)
    if get_path(params, "active_learning.lookahead", False):  # plain-loop folders keep theirs
        block = params["active_learning"]  # and the early first batch only where it is set
        settings["active_learning"] = {k: block[k] for k in AL_RESULT_KEYS if block.get(k)}
    return settings


def campaign_identity(params: Mapping[str, Any], system: Any) -> dict[str, dict[str, Any]]:
    """What a data root and a campaign root hold: {"data": ..., "campaign": ...}.

    ``data`` (the reference path and test set of every seed and method): the system's name,
    charge, multiplicity, level of theory and geometries. ``campaign``: that plus a digest of
    the result-changing parameter blocks (:data:`RESULT_BLOCKS`). ``system`` is a loaded
    :class:`~reactive_al.systems.ReactionSystem`.
    """
    geometry = [None if a is None else a.get_positions().round(6).tolist()
                for a in (system.reactant, system.product)]
    data = {"system": system.name, "charge": system.charge,
            "multiplicity": system.multiplicity, "level_of_theory": system.level.as_dict(),
            "geometry": _digest(geometry)}
    settings = _result_settings(params, system)
    return {"data": data, "campaign": {**data, "settings": _digest(settings)}}


def check_identity(root: str, identity: Mapping[str, Any], what: str) -> None:
    """Record ``identity`` in ``root``, or stop if ``root`` holds another campaign's results.

    ``what`` is ``data`` or ``campaign``. Raises :class:`ParameterError` (one line naming the
    file, what differs and the two ways out) when ``root/08_reporting/<what>_identity.json``
    describes something else; writes it when absent.
    """
    import json
    from pathlib import Path

    path = Path(root) / IDENTITY_FILE.format(what=what)
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = None
        if old == dict(identity):
            return
        if old is not None:
            diff = sorted(k for k in {*old, *identity} if old.get(k) != identity.get(k))
            raise ParameterError(
                f"{path}: this folder holds the {what} of system '{old.get('system')}', which "
                f"differs from this run in {', '.join(diff)}; keep it and run elsewhere "
                f"(--params {'data_root' if what == 'data' else 'campaign_root'}=<new folder>) "
                "or clear it (make clean-campaign; QM labels stay in the cache)")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(identity), indent=1, sort_keys=True))


def container_conflict(base: Any, override: Any, prefix: str = "") -> str | None:
    """The first dotted key where one side is a mapping and the other a list."""
    if not (isinstance(base, Mapping) and isinstance(override, Mapping)):
        return None
    for key, value in override.items():
        if key not in base:
            continue
        path = f"{prefix}{key}"
        kinds = {isinstance(v, Mapping) for v in (base[key], value)
                 if isinstance(v, Mapping | list | tuple)}
        if len(kinds) == 2:
            return path
        found = container_conflict(base[key], value, f"{path}.")
        if found:
            return found
    return None


def is_yaml_error(exc: BaseException) -> bool:
    """True if ``exc`` or an exception it came from is a YAML or OmegaConf error."""
    import yaml
    from omegaconf.errors import OmegaConfBaseException

    return any(isinstance(e, yaml.YAMLError | OmegaConfBaseException) for e in _chain(exc))


def _chain(exc: BaseException | None):
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__


def yaml_message(exc: BaseException) -> str:
    """``<file>: invalid YAML (line L, column C: problem)`` from Kedro's and PyYAML's errors."""
    text = " ".join(str(exc).split())
    found = re.search(r"file (\S+?),? unable to read line (\d+), position (\d+)", text)
    problem = next((getattr(e, "problem", None) for e in _chain(exc)
                    if getattr(e, "problem", None)), None)
    if found:
        where, line, col = found.group(1), int(found.group(2)) + 1, int(found.group(3)) + 1
        try:
            text_line = Path(where).read_text().splitlines()[line - 1]
        except (OSError, IndexError):
            text_line = ""
        hint = "; indent with spaces, not tabs" if "\t" in text_line else ""
        return (f"{where}: invalid YAML (line {line}, column {col}"
                f"{': ' + problem if problem else ''}){hint}")
    return f"configuration: invalid YAML or parameters ({text[:300]})"
