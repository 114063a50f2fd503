"""Project hooks: environment defaults, and validating the reaction before anything runs."""

from __future__ import annotations

import logging
import os
import warnings

from kedro.framework.hooks import hook_impl

from reactive_al.systems import SystemDefinitionError, load_system

log = logging.getLogger(__name__)


class ReactiveALHooks:
    """Process-wide defaults and a pre-run check of the selected system."""

    @hook_impl
    def after_context_created(self, context) -> None:  # noqa: ANN001
        """Set environment defaults once per Kedro session."""
        os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")
        os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
        # the AL pipeline refers to namespaced datasets (iter_00.summary) on purpose
        warnings.filterwarnings("ignore", message="One or more dataset names contain '.'")

    @hook_impl
    def before_pipeline_run(self, run_params, pipeline, catalog) -> None:  # noqa: ANN001
        """Stop with a one-line message if the selected system definition is broken.

        Runs before any node, so a broken reaction never overwrites data already computed.
        """
        if "params:systems" not in pipeline.inputs():
            return
        name = catalog.load("params:system")
        systems = catalog.load("params:systems")
        try:
            load_system(name, systems)
        except SystemDefinitionError as exc:
            log.error("%s", exc)
            raise SystemExit(f"reactive_al: {exc}") from None
