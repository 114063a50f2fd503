"""Optuna tuning of the query hyperparameters by retrospective active learning (no new QM)."""

from reactive_al.pipelines.tuning.pipeline import create_pipeline

__all__ = ["create_pipeline"]
