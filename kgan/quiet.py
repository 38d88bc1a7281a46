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
    """Imports TensorFlow and Keras without their start-up log, unless the user set the level."""
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        import tensorflow  # noqa: F401
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    with quiet_stderr():
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
