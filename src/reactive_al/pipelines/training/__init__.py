"""Committees of TorchANI models trained on energies and forces."""

from reactive_al.pipelines.training.pipeline import create_pipeline

__all__ = ["create_pipeline"]
