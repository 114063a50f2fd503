"""TorchANI committees: architecture and prediction (committee), training (training)."""

from reactive_al.models.committee import (
    CHECKPOINT_FORMAT,
    Committee,
    CommitteeCalculator,
    CommitteeSpec,
    build_model,
    frames_to_tensors,
)
from reactive_al.models.training import (
    TRAINING_MODES,
    TrainingConfig,
    fit_self_energies,
    frame_key,
    train_committee,
)

__all__ = ["CHECKPOINT_FORMAT", "TRAINING_MODES", "Committee", "CommitteeCalculator",
           "CommitteeSpec", "TrainingConfig", "build_model", "fit_self_energies", "frame_key",
           "frames_to_tensors", "train_committee"]
