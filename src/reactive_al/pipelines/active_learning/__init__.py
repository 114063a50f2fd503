"""The AL loop: namespaced copies of one iteration template chained by labeled sets."""

from reactive_al.pipelines.active_learning.pipeline import create_pipeline

__all__ = ["create_pipeline"]
