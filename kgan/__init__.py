"""kgan: GAN training with Keras 3 custom train steps, the Minkowski-distance loss and
the standard GAN losses, gradient penalties, weight clipping, and SavedModel export.

Submodules are imported lazily, so `import kgan` (and `kgan --help`) does not import
TensorFlow until a TensorFlow-backed name is used.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "callbacks",
    "cli",
    "config",
    "constraints",
    "data",
    "export",
    "gan",
    "losses",
    "metrics",
    "networks",
    "penalties",
)
_NAMES = {
    "GAN": "gan",
    "TrainConfig": "config",
    "WeightClip": "constraints",
    "GradientPenalty": "penalties",
    "R1": "penalties",
    "Minkowski": "losses",
    "export_generator": "export",
}

__all__ = ["__version__", *_SUBMODULES, *_NAMES]


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"kgan.{name}")
    if name in _NAMES:
        return getattr(importlib.import_module(f"kgan.{_NAMES[name]}"), name)
    raise AttributeError(f"module 'kgan' has no attribute {name!r}")
