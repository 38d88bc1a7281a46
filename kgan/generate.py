"""`kgan generate` and `kgan export`: samples and interpolations from an exported generator.

`generate` loads the model with plain `tf.saved_model.load` and calls its signatures (see
`kgan.export`), so it works on any kgan export. Exports made before the `sample` signature
existed are sampled with the same latents (`kgan.export.truncated_normal`) through
`serving_default`.
"""

import json
import os

import numpy as np

from kgan.errors import UsageError


def load_model(path):
    """`tf.saved_model.load(path)`, with missing or unreadable exports raised as UsageError."""
    import tensorflow as tf

    if not os.path.isdir(path):
        raise UsageError(f"no exported model at {path}: pass the generator directory of a run "
                         "(saved_models/<run>/generator), or re-export one with `kgan export --run NAME`")
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        raise UsageError(f"{path} is not a SavedModel (no saved_model.pb): pass saved_models/<run>/generator")
    try:
        model = tf.saved_model.load(path)
    except Exception as error:  # noqa: BLE001 - any load failure is the file's fault
        detail = " ".join(str(error).split())[:200] or type(error).__name__
        raise UsageError(f"cannot load the SavedModel at {path} ({detail}): re-export it with `kgan export`") from None
    if "serving_default" not in model.signatures:
        raise UsageError(f"{path} has no serving_default signature: is it a kgan generator export?")
    return model


def is_conditional(model):
    """True when the export's signatures take class `labels` (a conditional generator)."""
    return "labels" in model.signatures["serving_default"].structured_input_signature[1]


def sample(model, num, seed=0, truncation=0.0, labels=None):
    """Calls the export's `sample` signature: a dict of NumPy arrays (images or points, latents).

    `labels` (conditional exports only): one class id per sample, or None for 0, 1, ..., K-1, 0, ...
    """
    import tensorflow as tf

    if "sample" in model.signatures:
        extra = {}
        if is_conditional(model):
            extra["labels"] = tf.constant([] if labels is None else labels, tf.int32)
        out = model.signatures["sample"](
            num=tf.constant(num, tf.int32), seed=tf.constant(seed, tf.int64), truncation=tf.constant(truncation, tf.float32),
            **extra,
        )
        return {key: value.numpy() for key, value in out.items()}
    from kgan.export import truncated_normal  # an export older than the `sample` signature

    spec = model.signatures["serving_default"].structured_input_signature[1]["latent"]
    latents = truncated_normal([num, spec.shape[-1]], seed, truncation)
    samples = model.signatures["serving_default"](latent=latents)["images"].numpy()
    if samples.ndim != 4:
        return {"points": samples, "latents": latents.numpy()}
    images = np.round((np.clip(samples, -1.0, 1.0) + 1.0) * 127.5).astype("uint8")
    return {"images": images, "latents": latents.numpy()}


def slerp(a, b, t):
    """Spherical interpolation between latent rows `a` and `b` [P, D] at fractions `t` [K].

    Returns [P, K, D]; exactly `a` at t = 0 and `b` at t = 1. Nearly parallel pairs fall back to
    linear interpolation.
    """
    a, b, t = (np.asarray(x, dtype="float64") for x in (a, b, t))
    cos = np.sum(a * b, axis=-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12)
    omega = np.arccos(np.clip(cos, -1.0, 1.0))[:, None, None]  # [P, 1, 1]
    t = t[None, :, None]
    sin = np.sin(omega)
    safe = np.where(sin > 1e-6, sin, 1.0)
    spherical = (np.sin((1.0 - t) * omega) / safe) * a[:, None] + (np.sin(t * omega) / safe) * b[:, None]
    linear = (1.0 - t) * a[:, None] + t * b[:, None]
    return np.where(sin > 1e-6, spherical, linear).astype("float32")


def lerp(a, b, t):
    """Linear interpolation [P, K, D] between latent rows `a` and `b` [P, D] at fractions `t` [K]."""
    a, b, t = (np.asarray(x, dtype="float64") for x in (a, b, t))
    return ((1.0 - t)[None, :, None] * a[:, None] + t[None, :, None] * b[:, None]).astype("float32")


def interpolate(model, steps, pairs=4, seed=0, truncation=0.0):
    """Latent interpolations between `pairs` random pairs of latents, `steps` points each.

    Returns a dict of NumPy arrays: `endpoints` [pairs, 2, D] (from the `sample` signature with
    this seed and truncation), `linear` and `slerp`, each [pairs, steps, ...] float32 samples from
    `serving_default`; index 0 and steps - 1 are the generator at the two endpoints.
    """
    drawn = sample(model, 2 * pairs, seed, truncation)
    latents = drawn["latents"]
    a, b = latents[0::2], latents[1::2]
    t = np.linspace(0.0, 1.0, steps)
    serve = model.signatures["serving_default"]
    out = {"endpoints": np.stack([a, b], axis=1)}
    extra = {}
    if "labels" in drawn:  # conditional: each path keeps the class of its first endpoint
        extra["labels"] = np.repeat(drawn["labels"][0::2], steps).astype("int32")
    for name, path in (("linear", lerp(a, b, t)), ("slerp", slerp(a, b, t))):
        flat = serve(latent=path.reshape(pairs * steps, -1), **extra)["images"].numpy()
        out[name] = flat.reshape(pairs, steps, *flat.shape[1:])
    return out


def _check_out(path):
    extension = os.path.splitext(path)[1].lower()
    if extension not in (".png", ".npz"):
        raise UsageError(f"--out must end in .png (a picture) or .npz (arrays); got {path}")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(f"--out: directory {parent} does not exist")
    return extension


def _write_npz(path, arrays):
    staging = f"{path}.tmp-{os.getpid()}.npz"
    np.savez(staging, **arrays)
    os.replace(staging, path)


def generate(model_path, out, num=64, seed=0, truncation=0.0, interpolate_steps=None, pairs=4, columns=8,
             labels=None):
    """What `kgan generate` does. Returns a dict of the arrays written.

    `labels` (conditional generators): a list of class ids, repeated to `num` samples.
    """
    from kgan import plots

    if num < 1:
        raise UsageError(f"--num must be >= 1; got {num}")
    if truncation < 0:
        raise UsageError(f"--truncation must be >= 0 (0: none); got {truncation}")
    if interpolate_steps is not None and interpolate_steps < 2:
        raise UsageError(f"--interpolate must be >= 2 (steps including both ends); got {interpolate_steps}")
    if pairs < 1:
        raise UsageError(f"--pairs must be >= 1; got {pairs}")
    extension = _check_out(out)
    model = load_model(model_path)
    if labels is not None:
        if not is_conditional(model):
            raise UsageError(f"--labels needs a conditional generator (kgan train --conditional); {model_path} is not")
        labels = [int(labels[i % len(labels)]) for i in range(num)]

    if interpolate_steps is None:
        arrays = sample(model, num, seed, truncation, labels)
        if extension == ".npz":
            _write_npz(out, arrays)
        elif "images" in arrays:
            plots.save_png(plots.image_grid(arrays["images"].astype("float32") / 127.5 - 1.0, columns=columns), out)
        else:
            plots.save_png(plots.scatter_image(arrays["points"], title=f"{num} samples, seed {seed}"), out)
        return arrays

    arrays = interpolate(model, interpolate_steps, pairs, seed, truncation)
    if extension == ".npz":
        _write_npz(out, arrays)
    elif arrays["linear"].ndim == 5:
        # Rows: pair 0 linear, pair 0 slerp, pair 1 linear, ...; columns: the steps.
        rows = np.stack([arrays["linear"], arrays["slerp"]], axis=1)  # [P, 2, K, H, W, C]
        plots.save_png(plots.image_grid(rows.reshape(-1, *rows.shape[3:]), columns=interpolate_steps), out)
    else:
        raise UsageError("--interpolate with a .png output needs an image generator; use --out NAME.npz for points")
    return arrays


def export_run(run, output="saved_models"):
    """What `kgan export` does: rebuilds a run's GAN from its config.json and saved weights, and
    exports the generator again to `<output>/<run>/generator`. Returns the export path."""
    from kgan import export
    from kgan.config import TrainConfig

    run_dir = os.path.join(output, run)
    config_path = os.path.join(run_dir, export.CONFIG_FILE)
    weights_path = os.path.join(run_dir, export.WEIGHTS_FILE)
    for path in (config_path, weights_path):
        if not os.path.isfile(path):
            raise UsageError(f"no {os.path.basename(path)} in {run_dir}: is --run the name of a finished run "
                             f"under --output {output}?")
    try:
        with open(config_path) as handle:
            report = json.load(handle)
        config = TrainConfig.from_dict(report["config"])
        shape = tuple(report["dataset"]["shape"])
    except (ValueError, KeyError, TypeError) as error:
        raise UsageError(f"cannot read {config_path}: {error}") from None

    import keras

    from kgan import data
    from kgan import run as run_module

    num_classes = data.NUM_CLASSES.get(config.dataset) if config.conditional else None
    gan = run_module.build(config, shape, num_classes)
    if not gan.built:  # the GAN is built with its networks; this is a fallback
        gan(keras.ops.zeros((1, config.latent_dim)))
    try:
        gan.load_weights(weights_path)
    except Exception as error:  # noqa: BLE001 - a mismatched or truncated weights file
        detail = " ".join(str(error).split())[:200]
        raise UsageError(f"cannot load {weights_path} into the network {config_path} describes ({detail})") from None
    return export.export_generator(gan.sampler, os.path.join(run_dir, "generator"), config_path=config_path,
                                   num_classes=gan.num_classes)
