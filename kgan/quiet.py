"""Importing TensorFlow without its start-up log (the CLI and compare's worker processes)."""

import contextlib
import importlib.abc
import os
import sys


@contextlib.contextmanager
def quiet_stderr():
    """Sends file descriptor 2 to /dev/null (TensorFlow's C++ start-up lines bypass Python)."""
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow_quietly():
    """Imports TensorFlow and Keras without their start-up log, unless the user asked for it with
    TF_CPP_MIN_LOG_LEVEL=0. (TensorFlow 2.21 prints its oneDNN and CUDA lines through absl before
    it reads the level, so a level the user set to 1-3 does not silence them: stderr does.)
    Keras' optional imports of scikit-learn and matplotlib are skipped (`without_keras_extras`)."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(without_keras_extras())
        if os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3") != "0":
            stack.enter_context(quiet_stderr())
        import keras  # noqa: F401
        import tensorflow  # noqa: F401


class _Skip(importlib.abc.MetaPathFinder):
    """An import finder that makes `packages` look not installed."""

    def __init__(self, packages):
        self.packages = packages

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.packages:
            raise ModuleNotFoundError(f"No module named {name!r} (skipped by kgan.quiet while importing)", name=name)
        return None


@contextlib.contextmanager
def without_keras_extras(packages=("sklearn", "matplotlib")):
    """While Keras is first imported, scikit-learn and matplotlib look not installed.

    Keras 3 imports both at import time when they are installed, for features kgan never uses
    (its scikit-learn wrappers, `keras.visualization`): 1.2-1.5 s of a 4-5 s TensorFlow import
    here. Keras supports their absence (it sets them to None). Once Keras is imported they are
    importable again, and kgan imports what it uses of them (matplotlib for plots) when it uses
    it. A process that imported Keras, scikit-learn or matplotlib before is left as it is.
    """
    if "keras" in sys.modules:
        yield
        return
    with skipping(packages):
        yield


@contextlib.contextmanager
def skipping(packages):
    """While the block runs, `packages` look not installed, unless one of them is imported already."""
    if any(p in sys.modules for p in packages):
        yield
        return
    finder = _Skip(packages)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
