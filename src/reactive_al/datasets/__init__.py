"""Kedro datasets for what kedro-datasets lacks: extxyz frame lists and committee checkpoints."""

from reactive_al.datasets.checkpoint import CommitteeCheckpointDataset
from reactive_al.datasets.extxyz import ExtXYZDataset

__all__ = ["CommitteeCheckpointDataset", "ExtXYZDataset"]
