"""The generator as a TensorFlow SavedModel that any TensorFlow runtime (or TF Serving) can call.

The export needs neither kgan nor Keras to load:

    model = tf.saved_model.load(path)
    images = model.signatures["serving_default"](latent=z)["images"]        # float32 in [-1, 1]
    out = model.signatures["sample"](num=tf.constant(16), seed=tf.constant(0, tf.int64),
                                     truncation=tf.constant(0.7))          # uint8 images

Signatures (N is the number of samples; D the latent size; [H, W, C] or [P] one sample):

    serving_default: latent float32 [N, D] -> images float32 [N, H, W, C] (or [N, P]) in the
        generator's output range ([-1, 1] for image generators; raw values for point generators).
    sample: num int32 [], seed int64 [], truncation float32 [] ->
        images uint8 [N, H, W, C] (image generators), or points float32 [N, P] (point generators),
        and latents float32 [N, D] (the latent vectors used). The same (num, seed, truncation)
        gives the same outputs; `truncation` t > 0 draws every latent component from a standard
        normal restricted to [-t, t] (the truncation trick), 0 draws plain standard normals.

A CONDITIONAL generator (inputs [latent, labels], `kgan train --conditional`) gets a `labels`
input in both signatures: int32 [N] class ids in [0, num_classes) for `serving_default`, and for
`sample` int32 [L] where L is `num` (one class per sample) or 0 (classes 0, 1, ..., K-1, 0, ...
in turn). Out-of-range labels fail with "labels must be in [0, num_classes)".

The latent size and the sample shape are the static shapes of these signatures
(`saved_model_cli show --all` prints them). The run's config.json, when given, is stored as the
asset `assets/config.json` (object attribute `config_json`, a `tf.saved_model.Asset`).

Requests of the wrong shape or dtype fail with `tf.errors.InvalidArgumentError` (HTTP 400 with
an "error" field from TF Serving) whose message names what was expected:
    wrong latent size:  "Shape of tensor latent [2,5] is not compatible with expected shape [?,16]"
    wrong dtype:        "... input #0(zero-based) was expected to be a float tensor but is a
                        double tensor"
    negative num:       "sample: `num` must be >= 0"; negative truncation: "sample:
                        `truncation` must be >= 0 (0: none)".

The export is written to a temporary directory next to its destination and renamed into
place (`kgan.atomic`), so a crash or a full disk while exporting leaves the previous export intact.
"""

import os

import keras
import numpy as np
import tensorflow as tf

from kgan import atomic

WEIGHTS_FILE = "gan.weights.h5"
CONFIG_FILE = "config.json"


def truncated_normal(shape, seed, truncation=0.0):
    """Standard-normal latents, optionally restricted to [-truncation, truncation]; stateless.

    Draws u ~ Uniform(0, 1) with `tf.random.stateless_uniform` (seed `[seed, 0]`) and maps it
    through the inverse normal CDF restricted to [Phi(-t), Phi(t)] (in float64). This samples
    the standard normal conditioned on |z| <= t exactly: the distribution that "resample every
    component beyond t until it is within" produces, without a loop. With t = 0 (no truncation)
    it is a plain standard normal. The same seed gives the same latents, and for one seed each
    component moves monotonically as t changes (a truncation sweep is smooth).

    Args:
        shape: int32 vector, e.g. `[num, latent_dim]`.
        seed: int64 scalar.
        truncation: float32 scalar t >= 0; 0 means no truncation.

    Returns:
        float32 tensor of `shape`, every component within [-t, t] when t > 0.
    """
    seed = tf.stack([tf.cast(seed, tf.int64), tf.constant(0, tf.int64)])
    u = tf.random.stateless_uniform(shape, seed=seed, dtype=tf.float64)
    u = u + 2.0**-53  # float64 uniforms are multiples of 2^-52 in [0, 1): centre them in (0, 1)
    t = tf.cast(truncation, tf.float64)
    # Phi(-t) = erfc(t / sqrt 2) / 2; t = 0 means "no truncation": the full range (0, 1).
    low = tf.where(t > 0, 0.5 * tf.math.erfc(t / np.sqrt(2.0)), tf.constant(0.0, tf.float64))
    z = tf.math.ndtri(low + u * (1.0 - 2.0 * low))
    z = tf.where(t > 0, tf.clip_by_value(z, -t, t), z)  # guards float rounding at the bounds only
    return tf.cast(z, tf.float32)


def save_gan_weights(gan, run_dir):
    """Saves the whole GAN's weights to `<run_dir>/gan.weights.h5` (what `kgan export` reads).

    Written to a temporary file and renamed, like the export. Returns the path.
    """
    path = os.path.join(run_dir, WEIGHTS_FILE)
    with atomic.path(path) as staging:
        gan.save_weights(staging)
    return path


def export_generator(generator, path, latent_dim=None, config_path=None, num_classes=None):
    """Exports `generator` as a SavedModel at `path` (atomically), with the signatures above.

    Args:
        generator: a built Keras model, latent [N, latent_dim] -> samples [N, H, W, C] in
            [-1, 1] (images) or [N, P] (points); a conditional one takes [latent, labels].
        path: destination directory; an existing export there is replaced.
        latent_dim: input size (default: read from the generator).
        config_path: optional run config.json, stored as the asset `assets/config.json`.
        num_classes: number of classes of a conditional generator (required for one).

    Returns:
        `path`.
    """
    conditional = len(generator.inputs) == 2
    if conditional and not num_classes:
        raise ValueError("a conditional generator (inputs [latent, labels]) needs num_classes to be exported")
    if latent_dim is None:
        latent_dim = generator.inputs[0].shape[-1]
    latent_dim = int(latent_dim)
    sample_shape = tuple(generator.output_shape[1:])
    is_image = len(sample_shape) == 3
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)

    def generate(latent, labels=None):
        # A clear error for a wrong latent size (TF's own would be a MatMul size mismatch).
        latent = tf.ensure_shape(latent, [None, latent_dim], name="latent_shape")
        if conditional:
            checks = [
                tf.debugging.assert_non_negative(labels, message="labels must be in [0, num_classes)"),
                tf.debugging.assert_less(labels, num_classes, message="labels must be in [0, num_classes)"),
                tf.debugging.assert_equal(tf.shape(labels)[0], tf.shape(latent)[0],
                                          message="latent and labels must have the same number of rows"),
            ]
            with tf.control_dependencies(checks):
                samples = generator([latent, labels], training=False)
        else:
            samples = generator(latent, training=False)
        return tf.ensure_shape(tf.cast(samples, tf.float32), [None, *sample_shape])

    def serve(latent, labels=None):
        return {"images": generate(latent, labels)}

    def sample(num, seed, truncation, labels=None):
        checks = [
            tf.debugging.assert_non_negative(num, message="sample: `num` must be >= 0"),
            tf.debugging.assert_non_negative(truncation, message="sample: `truncation` must be >= 0 (0: none)"),
        ]
        with tf.control_dependencies(checks):
            latents = truncated_normal(tf.stack([num, latent_dim]), seed, truncation)
        if conditional:  # no labels: classes 0, 1, ..., K-1, 0, ... in turn
            labels = tf.cond(tf.size(labels) > 0, lambda: labels, lambda: tf.range(num) % num_classes)
        samples = generate(latents, labels)
        outputs = {"latents": latents, **({"labels": labels} if conditional else {})}
        if not is_image:
            return {"points": samples, **outputs}
        images = tf.cast(tf.round((tf.clip_by_value(samples, -1.0, 1.0) + 1.0) * 127.5), tf.uint8)
        return {"images": images, **outputs}

    archive = keras.export.ExportArchive()
    archive.track(generator)
    if config_path is not None:
        # `archive.track(asset)` does not save a bare Asset (Keras 3.15); an attribute of the
        # archive's root object does, as `assets/config.json` and `loaded.config_json`.
        archive._tf_trackable.config_json = tf.saved_model.Asset(os.path.abspath(config_path))
    labels_spec = [tf.TensorSpec([None], tf.int32, name="labels")] if conditional else []
    archive.add_endpoint(
        name="serving_default",
        fn=serve,
        input_signature=[tf.TensorSpec([None, latent_dim], tf.float32, name="latent"), *labels_spec],
    )
    archive.add_endpoint(
        name="sample",
        fn=sample,
        input_signature=[
            tf.TensorSpec([], tf.int32, name="num"),
            tf.TensorSpec([], tf.int64, name="seed"),
            tf.TensorSpec([], tf.float32, name="truncation"),
            *labels_spec,
        ],
    )
    with atomic.path(path, directory=True) as staging:  # kgan.atomic: whole or not at all
        archive.write_out(staging, verbose=False)
    return path

