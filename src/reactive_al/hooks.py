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

from reactive_al import tracking
from reactive_al.nested import flatten
from reactive_al.systems import SystemDefinitionError, load_system

log = logging.getLogger(__name__)

#: Parameters of the current Kedro session (``--env`` and ``--params`` applied), set when its
#: context is created, i.e. before the pipeline registry builds the pipelines.
SESSION_PARAMETERS: dict | None = None
#: A pipeline holding a node of this name (``iter_NN.<name>``) runs AL iterations: a campaign.
ITERATION_NODE = "summarize_iteration"
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
        os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
        # the AL pipeline refers to namespaced datasets (iter_00.summary) on purpose
        warnings.filterwarnings("ignore", message="One or more dataset names contain '.'")
        SESSION_PARAMETERS = dict(context.params)
        self._context = context
        import mlflow

        if mlflow.active_run() is not None:  # kedro-mlflow then ignores mlflow.yml
            return
        conf = _mlflow_yml(context)
        uri = (conf.get("server") or {}).get("mlflow_tracking_uri") or os.environ.get(
            "MLFLOW_TRACKING_URI")
        if tracking.sqlite_path(uri) is not None:
            experiment = ((conf.get("tracking") or {}).get("experiment") or {}).get("name")
            tracking.init_store(uri, experiment or context._package_name)

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
        if "params:selection" in inputs:
            from reactive_al.selection import check_selection

            try:
                check_selection(catalog.load("params:selection") or {})
            except ValueError as exc:
                log.error("%s", exc)
                raise SystemExit(f"reactive_al: {exc}") from None
        if "params:systems" not in inputs:
            return
        name = catalog.load("params:system")
        systems = catalog.load("params:systems")
        try:
            rs = load_system(name, systems)
            if "params:data_engineering" in pipeline.inputs():
                from reactive_al.oracles.reference import thermal_driver

                thermal = (catalog.load("params:data_engineering") or {}).get("thermal")
                thermal_driver(thermal, rs.reactant.get_chemical_symbols())
        except SystemDefinitionError as exc:
            log.error("%s", exc)
            raise SystemExit(f"reactive_al: {exc}") from None

    @hook_impl
    def on_pipeline_error(self) -> None:
        """Give the process its signal handlers back (kedro-mlflow ends its runs FAILED)."""
        tracking.restore_handlers(self._handlers)

    @hook_impl
    def on_node_error(self, error, node) -> None:  # noqa: ANN001
        """End the run with one line for an anticipated failure (no traceback).

        Everything computed before is already saved (labels in the cache, finished datasets);
        unanticipated exceptions keep their traceback, and ``REACTIVE_AL_TRACEBACK=1`` keeps
        it for every error.
        """
        from reactive_al.oracles.labeling import FailureBudgetExceeded
        from reactive_al.oracles.reference import ReferencePathError

        # the SystemExit bypasses kedro-mlflow's on_pipeline_error: the runs still open end
        # FAILED at exit (tracking.end_open_runs)
        anticipated = (SystemDefinitionError, ReferencePathError, FailureBudgetExceeded)
        if isinstance(error, anticipated) and not os.environ.get("REACTIVE_AL_TRACEBACK"):
            log.error("node %s: %s", node.name, error)
            where = "" if isinstance(error, SystemDefinitionError | ReferencePathError) else (
                f"{node.name}: ")
            raise SystemExit(f"reactive_al: {where}{error}") from None
