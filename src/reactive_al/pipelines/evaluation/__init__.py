"""Test-set errors overall and per reaction region."""

from reactive_al.pipelines.evaluation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
