"""Importing TensorFlow without its start-up log (the CLI and compare's worker processes)."""

import contextlib
import os


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
    it reads the level, so a level the user set to 1-3 does not silence them: stderr does.)"""
    if os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3") == "0":
        import tensorflow  # noqa: F401
        return
    with quiet_stderr():
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
