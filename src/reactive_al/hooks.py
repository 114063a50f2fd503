"""Project hooks: environment defaults, pre-run checks, MLflow run hygiene.

The MLflow helpers live in :mod:`reactive_al.tracking`.

kedro-mlflow is a plugin: pluggy calls its hooks before the project's unless ours are marked
``tryfirst``. Ours are, so that (1) the store's schema is created under a file lock before
kedro-mlflow opens the store (after_context_created), and (2) a run rejected by the pre-run
checks never creates an MLflow run, and the parent run is chosen before kedro-mlflow starts it
(before_pipeline_run: we set kedro-mlflow's ``tracking.run.id``, which it then resumes).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import warnings
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

from reactive_al import profiling, tracking
from reactive_al.checks import (
    ParameterError,
    check_parameters,
    container_conflict,
    is_yaml_error,
    yaml_message,
)
from reactive_al.nested import flatten
from reactive_al.systems import SystemDefinitionError, check_cell, is_crystal, load_system

log = logging.getLogger(__name__)

#: Parameters of the current Kedro session (``--env`` and ``--params`` applied), set when its
#: context is created, i.e. before the pipeline registry builds the pipelines.
SESSION_PARAMETERS: dict | None = None
#: A pipeline holding a node of this name (``iter_NN.<name>``) runs AL iterations: a campaign.
ITERATION_NODE = "summarize_iteration"
#: What OmegaConf says when a list meets a mapping (2.4, then 2.3).
MERGE_ERRORS = ("Cannot merge incompatible container types", "Cannot merge DictConfig with")
#: Where kedro-mlflow reads its configuration (the same patterns it registers).
MLFLOW_PATTERNS = ["mlflow*", "mlflow*/**", "**/mlflow*"]


def _mlflow_yml(context) -> dict[str, Any]:  # noqa: ANN001
    """The session's ``mlflow.yml`` (``--env`` applied), empty when there is none."""
    from kedro.config import MissingConfigException

    loader = context.config_loader
    loader.config_patterns.setdefault("mlflow", MLFLOW_PATTERNS)
    try:
        return dict(loader["mlflow"] or {})
    except MissingConfigException:
        return {}


def campaign_key(project_path: str | Path, params: dict[str, Any], pipeline) -> str:  # noqa: ANN001
    """What identifies a campaign across sessions, hashed: the MLflow tag of its parent run.

    The project, the absolute data roots (``data_root``, ``seed_root``, ``campaign_root``) and
    the system; a pipeline without AL iterations (``--pipelines training``, a partial run) is
    told apart from the campaign by the nodes it runs.
    """
    project = Path(project_path).resolve()
    data = params.get("data_root") or "data"
    seed = params.get("seed_root") or data
    campaign = params.get("campaign_root") or seed
    roots = [str((project / r).resolve()) for r in (data, seed, campaign)]
    names = sorted(n.name for n in pipeline.nodes)
    scope = "campaign" if any(n.rsplit(".", 1)[-1] == ITERATION_NODE for n in names) else names
    payload = {"project": str(project), "roots": roots, "system": params.get("system"),
               "scope": scope}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def logged_params(pipeline, catalog, options) -> dict[str, str]:  # noqa: ANN001
    """The parameters kedro-mlflow logs for ``pipeline``'s nodes, as MLflow stores them.

    ``options`` is kedro-mlflow's ``tracking.params`` (dict flattening, separator); names are
    sanitised and values truncated as it does (``long_params_strategy: truncate``).
    """
    out: dict[str, str] = {}
    for name in sorted(pipeline.inputs()):
        if not (name.startswith("params:") or name == "parameters"):
            continue
        key, value = name.removeprefix("params:"), catalog.load(name)
        dicts = options.dict_params
        if dicts.flatten and isinstance(value, dict):
            items = (flatten({key: value}, sep=dicts.sep) if dicts.recursive else
                     {f"{key}{dicts.sep}{k}": v for k, v in value.items()})
        else:
            items = {key: value}
        for k, v in items.items():
            out[re.sub(r"[^/\w.\- :]", "_", k)] = str(v)[:tracking.MAX_PARAM_LENGTH]
    return out


class ReactiveALHooks:
    """Process-wide defaults, a pre-run check of the selected system, MLflow run hygiene."""

    def __init__(self) -> None:
        self._context = None
        self._handlers: dict[int, Any] = {}

    @hook_impl(tryfirst=True)
    def after_context_created(self, context) -> None:  # noqa: ANN001
        """Set environment defaults, keep the session's parameters, prepare the MLflow store.

        Creating the schema and the experiment here, under a file lock, serialises campaigns
        started together on one new ``mlflow.db``.
        """
        global SESSION_PARAMETERS
        os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")
        # the AL pipeline refers to namespaced datasets (iter_00.summary) on purpose
        warnings.filterwarnings("ignore", message="One or more dataset names contain '.'")
        try:
            SESSION_PARAMETERS = dict(context.params)
            context.config_loader["catalog"]  # a broken catalog file is found here, too
            conf = _mlflow_yml(context)  # and a broken mlflow.yml
        except Exception as exc:
            _stop(_configuration_message(context, exc))
        try:
            check_parameters(SESSION_PARAMETERS)
        except ParameterError as exc:
            _stop(str(exc))
        _check_mlflow_yml(context, conf)
        _rebuild_pipelines_if_stale()
        _check_requested_pipelines()
        self._context = context
        import mlflow

        if mlflow.active_run() is not None:  # kedro-mlflow then ignores mlflow.yml
            return
        uri = (conf.get("server") or {}).get("mlflow_tracking_uri") or os.environ.get(
            "MLFLOW_TRACKING_URI")
        if tracking.sqlite_path(uri) is not None:
            experiment = ((conf.get("tracking") or {}).get("experiment") or {}).get("name")
            tracking.init_store(uri, experiment or context._package_name)

    @hook_impl(tryfirst=True)
    def after_catalog_created(self, catalog) -> None:  # noqa: ANN001
        """Stop with one line for a catalog entry that cannot be built (type, arguments).

        Kedro builds the datasets lazily; kedro-mlflow's hook (after ours) builds them all,
        and a broken entry would end there with a traceback.
        """
        from kedro.io import DatasetError

        try:
            catalog.values()  # builds every dataset
        except DatasetError as exc:
            _stop(_catalog_message(self._context, exc))

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params, pipeline, catalog) -> None:  # noqa: ANN001
        """Check the inputs, then choose the parent MLflow run kedro-mlflow will start.

        Stops with one line if the system, thermal driver or selection block is broken; this
        runs before any node (a broken reaction never overwrites data already computed) and
        before kedro-mlflow starts its run (a rejected run leaves no MLflow run).
        """
        self._check_inputs(pipeline, catalog)
        self._choose_run(run_params, pipeline, catalog)
        self._handlers = tracking.install_interrupt_handlers()

    @hook_impl
    def before_node_run(self, node) -> None:  # noqa: ANN001
        """Start the node's wall-time record (:mod:`reactive_al.profiling`)."""
        profiling.node_started(node.name)

    @hook_impl
    def after_node_run(self, node) -> None:  # noqa: ANN001
        """Write the node's wall-time record when profiling is on."""
        profiling.node_finished(node.name)

    @hook_impl
    def before_dataset_loaded(self, dataset_name) -> None:  # noqa: ANN001
        """Start a dataset-load wall-time record (profiling only)."""
        profiling.io_started(dataset_name)

    @hook_impl
    def after_dataset_loaded(self, dataset_name, node) -> None:  # noqa: ANN001
        """Write the dataset-load record when profiling is on."""
        profiling.io_finished(dataset_name, "load", node.name)

    @hook_impl
    def before_dataset_saved(self, dataset_name) -> None:  # noqa: ANN001
        """Start a dataset-save wall-time record (profiling only)."""
        profiling.io_started(dataset_name)

    @hook_impl
    def after_dataset_saved(self, dataset_name, node) -> None:  # noqa: ANN001
        """Write the dataset-save record when profiling is on."""
        profiling.io_finished(dataset_name, "save", node.name)

    @hook_impl
    def after_pipeline_run(self) -> None:
        """Give the process its signal handlers back."""
        tracking.restore_handlers(self._handlers)

    def _choose_run(self, run_params, pipeline, catalog) -> None:  # noqa: ANN001
        """Point kedro-mlflow at the campaign's parent run (:func:`tracking.campaign_run`)."""
        import mlflow

        config = getattr(self._context, "mlflow", None)  # kedro-mlflow's, set on the context
        if config is None or mlflow.active_run() is not None or config.tracking.run.id:
            return
        names = run_params.get("pipeline_names") or ["__default__"]
        if all(n in config.tracking.disable_tracking.pipelines for n in names):
            return
        from mlflow.tracking import MlflowClient

        uri = config.server.mlflow_tracking_uri
        experiment = MlflowClient(tracking_uri=uri).get_experiment_by_name(
            config.tracking.experiment.name)
        if experiment is None:
            return
        key = campaign_key(run_params["project_path"], SESSION_PARAMETERS or {}, pipeline)
        run_id, _ = tracking.campaign_run(
            uri, experiment.experiment_id, key, config.tracking.run.name or "+".join(names),
            logged_params(pipeline, catalog, config.tracking.params))
        config.tracking.run.id = run_id

    @staticmethod
    def _check_inputs(pipeline, catalog) -> None:  # noqa: ANN001
        """Stop with one line if the system, thermal driver or selection block is broken."""
        inputs = pipeline.inputs()
        if "params:systems" not in inputs:
            return
        name = catalog.load("params:system")
        systems = catalog.load("params:systems")
        try:
            rs = load_system(name, systems)
            if is_crystal(rs.reactant) and "params:training" in inputs:
                from reactive_al.models import CommitteeSpec

                training = catalog.load("params:training") or {}
                model = training.get("model") or {}
                check_cell(rs.reactant, rs.reactant_file, cutoff=float(
                    model.get("radial_cutoff", CommitteeSpec.radial_cutoff)))
                from reactive_al.models.baseline import resolve_baseline

                asked = {"baseline": resolve_baseline(training.get("baseline"), rs.level, True),
                         "pretrain": training.get("pretrain")}
                for option, value in asked.items():
                    if value:
                        raise SystemDefinitionError(
                            f"conf/base/parameters_training.yml: training.{option}: not "
                            f"available for crystals yet ({rs.name} is periodic); set null")
            _check_roots(rs)
            if "params:data_engineering" in pipeline.inputs():
                from reactive_al.oracles.reference import thermal_driver

                thermal = (catalog.load("params:data_engineering") or {}).get("thermal")
                thermal_driver(thermal, rs.reactant.get_chemical_symbols())
        except SystemDefinitionError as exc:
            _stop(str(exc))

    @hook_impl
    def on_node_error(self, error, node) -> None:  # noqa: ANN001
        """End the run with one line for an anticipated failure (no traceback).

        Everything computed before is already saved (labels in the cache, finished datasets);
        unanticipated exceptions keep their traceback, and ``REACTIVE_AL_TRACEBACK=1`` keeps
        it for every error.
        """
        from reactive_al.oracles.cache import LabelCacheError
        from reactive_al.oracles.labeling import FailureBudgetExceeded
        from reactive_al.oracles.reference import ReferencePathError

        # the SystemExit bypasses kedro-mlflow's on_pipeline_error: the runs still open end
        # FAILED at exit (tracking.end_open_runs)
        anticipated = (SystemDefinitionError, ReferencePathError, FailureBudgetExceeded,
                       LabelCacheError)
        if isinstance(error, anticipated) and not os.environ.get("REACTIVE_AL_TRACEBACK"):
            log.error("node %s: %s", node.name, error)
            # these name their file or system themselves
            named = SystemDefinitionError | ReferencePathError | LabelCacheError
            where = "" if isinstance(error, named) else f"{node.name}: "
            _stop(f"{where}{error}")

    @hook_impl
    def on_pipeline_error(self, error, run_params, pipeline, catalog) -> None:  # noqa: ANN001
        """Give the signal handlers back; a dataset error ends the run in one line.

        kedro-mlflow ends its runs FAILED. Kedro wraps the dataset's own message (file and
        problem) in a ``DatasetError``; the line printed is that message.
        """
        from kedro.io import DatasetError

        tracking.restore_handlers(self._handlers)

        if isinstance(error, DatasetError) and not os.environ.get("REACTIVE_AL_TRACEBACK"):
            lines = [ln for ln in str(error).splitlines() if ln.strip()]
            _stop(lines[-1] if lines else type(error).__name__)


def _rebuild_pipelines_if_stale() -> None:
    """Rebuild the pipelines if they were built before this session's parameters were known.

    Kedro's parameter validation loads the pipeline registry while the context is created,
    i.e. before this hook, so ``--params active_learning.n_iterations=N`` (or
    ``active_learning.lookahead``, ``training.pretrain``) would be ignored.
    """
    from kedro.framework.project import pipelines

    from reactive_al.pipeline_registry import BUILT_WITH, built_with

    wanted = built_with(SESSION_PARAMETERS or {})
    if any(BUILT_WITH.get(k, v) != v for k, v in wanted.items()):
        requested = pipelines._requested_pipelines  # keep the CLI's lazy selection
        pipelines.configure(pipelines._pipelines_module)
        if requested:
            pipelines.set_requested(requested)


def _check_requested_pipelines() -> None:
    """Stop with one line if ``--pipelines`` names a pipeline the registry does not build."""
    from difflib import get_close_matches

    from kedro.framework.project import pipelines

    requested = pipelines._requested_pipelines or []
    known = sorted(pipelines.keys()) if requested else []
    for name in requested:
        if name not in known:
            close = get_close_matches(name, known)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            _stop(f"kedro run --pipelines: unknown pipeline '{name}' ({hint}registered: "
                  f"{', '.join(known)})")


def _check_mlflow_yml(context, conf: dict[str, Any]) -> None:  # noqa: ANN001
    """Stop with one line if ``mlflow.yml`` is not a configuration kedro-mlflow accepts."""
    from kedro_mlflow.config.kedro_mlflow_config import KedroMlflowConfig
    from pydantic import ValidationError

    try:
        KedroMlflowConfig.model_validate({**conf})
    except ValidationError as exc:
        loc, msg = exc.errors()[0]["loc"], exc.errors()[0]["msg"]
        where = _conf_file(context, "mlflow*", str(loc[0]) if loc else "")
        _stop(f"{where}: {'.'.join(map(str, loc))}: {msg}")


def _conf_file(context, pattern: str, key: str) -> str:  # noqa: ANN001
    """The file ``conf/<env>/<pattern>.yml`` (run environment first) that defines ``key``."""
    import yaml

    loader = context.config_loader
    source = Path(loader.conf_source)
    envs = [e for e in (loader.env or loader.default_run_env, loader.base_env) if e]
    for env in envs:
        for path in sorted((source / env).glob(f"**/{pattern}.y*ml")):
            try:
                if key in (yaml.safe_load(path.read_text()) or {}):
                    return str(path.relative_to(source.parent))
            except (OSError, yaml.YAMLError, TypeError, ValueError):
                continue
    return f"{source.name}/{envs[0] if envs else 'base'}/{pattern}.yml"


def _catalog_message(context, exc: BaseException) -> str:  # noqa: ANN001
    """``<catalog file>: dataset '<name>': <problem>`` from Kedro's multi-line DatasetError."""
    text = str(exc)
    found = re.search(r"[Dd]ataset '([^']+)'", text)
    name = found.group(1) if found else "?"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    problem = next((ln for ln in lines if not ln.startswith("An exception occurred")),
                   type(exc).__name__)
    problem = problem.split(". Please install")[0].rstrip(".:")
    where = _conf_file(context, "catalog*", name) if context is not None else "catalog"
    return f"{where}: dataset '{name}': {problem}; fix its type and arguments"


def _configuration_message(context, exc: BaseException) -> str:  # noqa: ANN001
    """The one line for configuration Kedro cannot load; re-raise an unanticipated error.

    Anticipated: invalid YAML, an unknown ``--env``, a key set in two files, a list for a mapping.
    """
    from kedro.config import MissingConfigException

    if isinstance(exc, TypeError) and any(m in str(exc) for m in MERGE_ERRORS):
        return _merge_conflict(context)
    if is_yaml_error(exc):
        return yaml_message(exc)
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    if isinstance(exc, MissingConfigException):
        found = re.search(r"not a valid directory: (\S+)", first)
        if found:
            conf = Path(found.group(1))
            envs = ", ".join(sorted(p.name for p in conf.parent.iterdir() if p.is_dir()))
            return (f"{conf}: no such configuration environment (--env {conf.name}); "
                    f"environments: {envs}")
        return f"configuration: {first}"
    if isinstance(exc, ValueError) and first.startswith("Duplicate keys found in "):
        pair = first.removeprefix("Duplicate keys found in ")
        return f"{pair} (set in both files); set each key in one file of an environment"
    raise exc


def _merge_conflict(context) -> str:  # noqa: ANN001
    """Where ``--params`` (or an environment's file) puts a list over a mapping, or back."""
    from reactive_al.settings import config_loader

    loader = context.config_loader
    env = loader.env or loader.default_run_env
    try:
        files = dict(config_loader(Path(loader.conf_source).parent, loader.env)["parameters"])
    except TypeError:
        return (f"conf/{env}: a parameter file gives a list where conf/{loader.base_env} has "
                "a mapping, or the reverse; give the keys of a mapping one by one")
    path = container_conflict(files, dict(context._runtime_params or {}))
    return (f"--params {path or '?'}: a list where the configuration has a mapping, or the "
            f"reverse; give the keys of a mapping one by one (--params {path or 'key'}"
            ".<key>=<value>)")


def _check_roots(rs) -> None:  # noqa: ANN001
    """The data root and the campaign root hold this system's and these settings' results."""
    from reactive_al.checks import campaign_identity, check_identity

    params = SESSION_PARAMETERS or {}
    data = str(params.get("data_root", "data"))
    campaign = str(params.get("campaign_root", params.get("seed_root", data)))
    identity = campaign_identity(params, rs)
    try:
        check_identity(data, identity["data"], "data")
        check_identity(campaign, identity["campaign"], "campaign")
    except ParameterError as exc:
        _stop(str(exc))


def _stop(message: str) -> None:
    """End the run with ``reactive_al: <message>`` (one line) and a non-zero exit code."""
    line = " ".join(message.split())
    log.error("%s", line)
    raise SystemExit(f"reactive_al: {line}") from None
