"""Kedro project settings, and the one loader of the project's configuration outside a run."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Any

from kedro.config import OmegaConfigLoader

from reactive_al.hooks import ReactiveALHooks


def quiet_telemetry() -> None:
    """Turn Kedro's and MLflow's usage telemetry off unless the environment sets them.

    A campaign sends nothing out. MLflow starts its telemetry client when it is imported,
    and under the ``kedro`` command kedro-mlflow's CLI imports it before this module, so the
    client is made again (none, once disabled).
    """
    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
    if "MLFLOW_DISABLE_TELEMETRY" in os.environ:
        return
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    if "mlflow" in sys.modules:
        from mlflow.telemetry import set_telemetry_client

        set_telemetry_client()


quiet_telemetry()
# Kedro 1.7's config loader registers its resolvers with a call OmegaConf 2.4 deprecates:
# two multi-line warnings on every run, about Kedro's code, not the project's
warnings.filterwarnings("ignore", message=r"register_new_resolver\(\) is deprecated")

HOOKS = (ReactiveALHooks(),)

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # an environment's parameter file may override single nested keys (e.g. one setting of
    # one system's level of theory) instead of replacing a whole top-level entry
    "merge_strategy": {"parameters": "soft"},
}


def config_loader(project: str | Path = ".", env: str | None = None,
                  runtime_params: dict[str, Any] | None = None) -> OmegaConfigLoader:
    """The project's config loader as ``kedro run`` builds it.

    ``env`` (else ``$KEDRO_ENV``, else ``local``) is merged over ``base`` with
    :data:`CONFIG_LOADER_ARGS`, so benchmark scripts, the pipeline registry and the comparison
    driver see the parameters a run sees; ``runtime_params`` are those of ``--params``.
    """
    env = env or os.environ.get("KEDRO_ENV") or None
    return CONFIG_LOADER_CLASS(conf_source=str(Path(project) / "conf"), env=env,
                               runtime_params=runtime_params or {}, **CONFIG_LOADER_ARGS)


def load_parameters(project: str | Path = ".", env: str | None = None) -> dict[str, Any]:
    """The project's merged parameters (base, then ``env`` or ``local``)."""
    return dict(config_loader(project, env)["parameters"])


def load_catalog(project: str | Path = ".", env: str | None = None,
                 runtime_params: dict[str, Any] | None = None):  # noqa: ANN201
    """The project's Kedro ``DataCatalog``, relative file paths resolved against ``project``.

    ``runtime_params`` fill the catalog's ``${runtime_params:...}`` roots (``data_root``,
    ``campaign_root``), so a driver reads a campaign's results where that campaign wrote them.
    """
    from kedro.io import DataCatalog

    root = Path(project).resolve()
    conf = {}
    for name, entry in config_loader(project, env, runtime_params)["catalog"].items():
        entry = dict(entry)
        path = entry.get("filepath")
        if isinstance(path, str) and "://" not in path and not Path(path).is_absolute():
            entry["filepath"] = str(root / path)
        conf[name] = entry
    return DataCatalog.from_config(conf)
