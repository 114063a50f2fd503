"""Kedro project settings."""

from kedro.config import OmegaConfigLoader

from reactive_al.hooks import ReactiveALHooks

HOOKS = (ReactiveALHooks(),)

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # an environment's parameter file may override single nested keys (e.g. one setting of
    # one system's level of theory) instead of replacing a whole top-level entry
    "merge_strategy": {"parameters": "soft"},
}
