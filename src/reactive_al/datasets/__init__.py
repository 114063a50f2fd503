"""Kedro datasets: extxyz frame lists, committee checkpoints, atomic kedro-datasets files."""

from reactive_al.datasets.atomic import AtomicDataset
from reactive_al.datasets.checkpoint import CommitteeCheckpointDataset
from reactive_al.datasets.extxyz import ExtXYZDataset

__all__ = ["AtomicDataset", "CommitteeCheckpointDataset", "ExtXYZDataset"]
