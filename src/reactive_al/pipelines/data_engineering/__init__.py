"""Structure pools and the fixed test set from a reaction definition."""

from reactive_al.pipelines.data_engineering.pipeline import create_pipeline

__all__ = ["create_pipeline"]
