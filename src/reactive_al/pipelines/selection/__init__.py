"""Exploration with the current committee and query-by-committee batch selection."""

from reactive_al.pipelines.selection.pipeline import create_pipeline

__all__ = ["create_pipeline"]
