"""reactive_al: active learning of reactive machine-learned interatomic potentials."""

__version__ = "0.1.0"
