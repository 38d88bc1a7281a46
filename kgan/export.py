"""The generator as a TensorFlow SavedModel that any TensorFlow runtime can serve.

The export needs neither kgan nor Keras to load: `tf.saved_model.load(path)` and call
`signatures["serving_default"](latent=z)["images"]`. It is written to a temporary directory
next to its destination and renamed into place, so a crash while exporting leaves the previous
export intact.
"""

import os
import shutil
import tempfile

import keras
import tensorflow as tf


def _replace_directory(source, destination):
    """Moves directory `source` to `destination`, replacing it with two renames."""
    previous = None
    if os.path.exists(destination):
        previous = tempfile.mkdtemp(prefix=os.path.basename(destination) + ".old-", dir=os.path.dirname(destination))
        os.rmdir(previous)
        os.rename(destination, previous)
    os.rename(source, destination)
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)


def export_generator(generator, path, latent_dim=None):
    """Exports `generator` as a SavedModel at `path` (atomically).

    Signatures:
        serving_default: `latent` float32 [N, latent_dim] -> {"images": float32 [N, ...] in the
            generator's output range ([-1, 1] for image generators)}.

    Args:
        generator: a built Keras model, latent [N, latent_dim] -> samples.
        path: destination directory; an existing export there is replaced.
        latent_dim: input size (default: read from the generator).

    Returns:
        `path`.
    """
    latent_dim = latent_dim or generator.input_shape[-1]
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)

    def serve(latent):
        return {"images": tf.cast(generator(latent, training=False), tf.float32)}

    archive = keras.export.ExportArchive()
    archive.track(generator)
    archive.add_endpoint(
        name="serving_default",
        fn=serve,
        input_signature=[tf.TensorSpec([None, latent_dim], tf.float32, name="latent")],
    )
    staging = tempfile.mkdtemp(prefix=os.path.basename(path) + ".tmp-", dir=parent)
    try:
        archive.write_out(staging, verbose=False)
        _replace_directory(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path


def load_generator(path):
    """Loads an exported generator with plain TensorFlow; returns the `serving_default` function."""
    return tf.saved_model.load(path).signatures["serving_default"]
