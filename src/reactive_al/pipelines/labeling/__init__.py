"""QM labels (the system's oracle) for structure pools, cached and in parallel."""

from reactive_al.pipelines.labeling.pipeline import create_pipeline

__all__ = ["create_pipeline"]
