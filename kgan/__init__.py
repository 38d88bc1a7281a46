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
    "names",
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


def lazy_getattr(package, submodules, names):
    """A module `__getattr__` (PEP 562) for `package` that imports on first use: its
    `submodules` by name, and each public name of `names` ({name: submodule}) from its
    submodule. kgan and kgan.metrics load this way, so importing one leaf loads no other."""

    def __getattr__(name):
        if name in submodules:
            return importlib.import_module(f"{package}.{name}")
        if name in names:
            return getattr(importlib.import_module(f"{package}.{names[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


__getattr__ = lazy_getattr(__name__, _SUBMODULES, _NAMES)
