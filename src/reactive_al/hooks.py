"""Project hooks: environment defaults, and validating the reaction before anything runs."""

from __future__ import annotations

import logging
import os
import warnings

from kedro.framework.hooks import hook_impl

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
        SESSION_PARAMETERS = dict(context.params)

    @hook_impl
    def before_pipeline_run(self, run_params, pipeline, catalog) -> None:  # noqa: ANN001
        """Stop with one line if the system, thermal driver or selection block is broken.

        Runs before any node, so a broken reaction never overwrites data already computed.
        """
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
            raise SystemExit(f"reactive_al: {where}{error}") from None
