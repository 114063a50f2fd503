"""Project hooks: environment defaults, and validating the reaction before anything runs."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

from kedro.framework.hooks import hook_impl

from reactive_al.checks import ParameterError, check_parameters
from reactive_al.systems import SystemDefinitionError, load_system

log = logging.getLogger(__name__)

#: Parameters of the current Kedro session (``--env`` and ``--params`` applied), set when its
#: context is created, i.e. before the pipeline registry builds the pipelines.
SESSION_PARAMETERS: dict | None = None


class ReactiveALHooks:
    """Process-wide defaults and a pre-run check of the selected system."""

    @hook_impl
    def after_context_created(self, context) -> None:  # noqa: ANN001
        """Set environment defaults once per Kedro session and keep its parameters."""
        global SESSION_PARAMETERS
        os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")
        os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
        # the AL pipeline refers to namespaced datasets (iter_00.summary) on purpose
        warnings.filterwarnings("ignore", message="One or more dataset names contain '.'")
        try:
            SESSION_PARAMETERS = dict(context.params)
            context.config_loader["catalog"]  # a broken catalog file is found here, too
        except Exception as exc:
            if not _is_yaml_error(exc):
                raise
            _stop(_yaml_message(exc))
        try:
            check_parameters(SESSION_PARAMETERS)
        except ParameterError as exc:
            _stop(str(exc))
        _rebuild_pipelines_if_stale()

    @hook_impl
    def before_pipeline_run(self, run_params, pipeline, catalog) -> None:  # noqa: ANN001
        """Stop with one line if the system, thermal driver or selection block is broken.

        Runs before any node, so a broken reaction never overwrites data already computed.
        """
        inputs = pipeline.inputs()
        if "params:systems" not in inputs:
            return
        name = catalog.load("params:system")
        systems = catalog.load("params:systems")
        try:
            rs = load_system(name, systems)
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
        """A dataset that cannot be loaded or saved ends the run with its one-line problem.

        Kedro wraps the dataset's own message (file and problem) in a ``DatasetError``; the
        line printed is that message.
        """
        from kedro.io import DatasetError

        if isinstance(error, DatasetError) and not os.environ.get("REACTIVE_AL_TRACEBACK"):
            lines = [ln for ln in str(error).splitlines() if ln.strip()]
            _stop(lines[-1] if lines else type(error).__name__)


def _rebuild_pipelines_if_stale() -> None:
    """Rebuild the pipelines if they were built before this session's parameters were known.

    Kedro's parameter validation loads the pipeline registry while the context is created,
    i.e. before this hook, so ``--params active_learning.n_iterations=N`` would be ignored.
    """
    from kedro.framework.project import pipelines

    from reactive_al.pipeline_registry import BUILT_WITH

    wanted = int(((SESSION_PARAMETERS or {}).get("active_learning") or {}).get("n_iterations", 5))
    if BUILT_WITH.get("n_iterations", wanted) != wanted:
        requested = pipelines._requested_pipelines  # keep the CLI's lazy selection
        pipelines.configure(pipelines._pipelines_module)
        if requested:
            pipelines.set_requested(requested)


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


def _is_yaml_error(exc: BaseException) -> bool:
    import yaml
    from omegaconf.errors import OmegaConfBaseException

    return any(isinstance(e, yaml.YAMLError | OmegaConfBaseException) for e in _chain(exc))


def _chain(exc: BaseException | None):
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__


def _yaml_message(exc: BaseException) -> str:
    """``<file>: invalid YAML (line L, column C: problem)`` from Kedro's and PyYAML's errors."""
    import re

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
