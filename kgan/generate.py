"""`kgan generate`: samples and interpolations from an exported generator.

`generate` loads the model with plain `tf.saved_model.load` and calls its signatures (see
`kgan.export`), so it works on any kgan export. Exports made before the `sample` signature
existed are sampled with the same latents (`kgan.export.truncated_normal`) through
`serving_default`.
"""

import json
import math
import os
import shutil
import zipfile

import numpy as np

from kgan import atomic
from kgan.errors import UsageError

#: Samples generated per call of the export: any --num runs in bounded memory (.npz is streamed).
BATCH = 10_000
#: The most samples one PNG grid holds (more: write .npz).
PNG_LIMIT = 10_000
#: The most interpolation points (pairs x steps) one command makes.
INTERPOLATION_LIMIT = 10_000
INT64 = (-(2**63), 2**63 - 1)


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


def num_classes(model):
    """The number of classes of a conditional export (None for an unconditional one).

    Read from the export's `assets/config.json` (the run's dataset) when it has one, else found
    by asking `serving_default` which class ids it accepts (it rejects ids >= num_classes).
    """
    import tensorflow as tf

    if not is_conditional(model):
        return None
    asset = getattr(model, "config_json", None)
    if asset is not None:
        try:
            with open(asset.asset_path.numpy().decode()) as handle:
                dataset = json.load(handle)["config"]["dataset"]
            from kgan.data import NUM_CLASSES

            if dataset in NUM_CLASSES:
                return NUM_CLASSES[dataset]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
    serve = model.signatures["serving_default"]
    latent = tf.zeros([1, serve.structured_input_signature[1]["latent"].shape[-1]])

    def accepts(k):
        try:
            serve(latent=latent, labels=tf.constant([k], tf.int32))
            return True
        except tf.errors.InvalidArgumentError:
            return False

    low, high = 0, 1  # accepts(low), not accepts(high): the answer is high
    while accepts(high):
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if accepts(middle) else (low, middle)
    return high


def _batch_seed(seed, index):
    """The latent seed of batch `index` of a large `--num` (batch 0: `seed` itself)."""
    return int(seed) if index == 0 else (int(seed) + index * 0x9E3779B97F4A7C15) % 2**63


def sample_batches(model, num, seed=0, truncation=0.0, labels=None, batch=None):
    """`sample` in batches of at most `batch` (default `BATCH`; bounded memory); yields one dict per batch.

    The first `batch` samples are `sample(model, min(num, batch), seed, ...)`; batch k > 0 uses
    the seed `_batch_seed(seed, k)`. A conditional export without `labels` cycles the classes
    over the whole `num` (0, 1, ..., K-1, 0, ...).
    """
    batch = batch or BATCH
    classes = num_classes(model) if labels is None and num > batch else None
    for index, start in enumerate(range(0, num, batch)):
        count = min(batch, num - start)
        part = labels[start:start + count] if labels is not None else (
            [i % classes for i in range(start, start + count)] if classes else None)
        yield sample(model, count, _batch_seed(seed, index), truncation, part)


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
    if os.path.isdir(path):
        raise UsageError(f"--out {path} is a directory: name a file, e.g. {os.path.join(path, 'samples' + extension)}")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(f"--out: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"--out: directory {parent} is not writable")
    return extension


def _write_npz(path, arrays):
    """`np.savez` of a dict of arrays, atomically (kgan.atomic)."""
    with atomic.path(path) as staging:
        np.savez(staging, **arrays)


def _stream_npz(path, batches):
    """Writes batches (dicts of arrays with the same keys) to one .npz, in bounded memory.

    Each key's batches go to a `.npy` file on disk as they come, then the files are stored in
    the zip archive (what `np.load` reads). Returns the number of rows written.
    """
    parts = os.path.join(os.path.dirname(os.path.abspath(path)),
                         f"{atomic.PREFIX}{os.getpid()}-{os.urandom(4).hex()}-{os.path.basename(path)}.parts")
    os.mkdir(parts)
    try:
        files, layout, rows = {}, {}, 0
        try:
            for arrays in batches:
                for key, value in arrays.items():
                    if key not in files:
                        files[key] = open(os.path.join(parts, f"{key}.raw"), "wb")
                        layout[key] = (value.shape[1:], value.dtype)
                    files[key].write(np.ascontiguousarray(value, dtype=layout[key][1]).tobytes())
                rows += len(next(iter(arrays.values())))
        finally:
            for handle in files.values():
                handle.close()
        with atomic.path(path) as staging, zipfile.ZipFile(staging, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            for key, handle in files.items():
                shape, dtype = layout[key]
                header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                          "shape": (rows, *shape)}
                with archive.open(f"{key}.npy", "w", force_zip64=True) as member, open(handle.name, "rb") as raw:
                    np.lib.format.write_array_header_2_0(member, header)
                    shutil.copyfileobj(raw, member, length=1 << 20)
        return rows
    finally:
        shutil.rmtree(parts, ignore_errors=True)


def _check_numbers(num, seed, truncation, interpolate_steps, pairs, extension):
    if num < 1:
        raise UsageError(f"--num must be >= 1; got {num}")
    if not (math.isfinite(truncation) and truncation >= 0):
        raise UsageError(f"--truncation must be >= 0 (0: none) and finite; got {truncation}")
    if not INT64[0] <= seed <= INT64[1]:
        raise UsageError(f"--seed must be a 64-bit integer (|seed| < 2^63); got {seed}")
    if interpolate_steps is not None and interpolate_steps < 2:
        raise UsageError(f"--interpolate must be >= 2 (steps including both ends); got {interpolate_steps}")
    if pairs < 1:
        raise UsageError(f"--pairs must be >= 1; got {pairs}")
    if interpolate_steps is not None and interpolate_steps * pairs > INTERPOLATION_LIMIT:
        raise UsageError(f"--interpolate x --pairs must be <= {INTERPOLATION_LIMIT}; got {interpolate_steps} x {pairs}")
    if interpolate_steps is None and extension == ".png" and num > PNG_LIMIT:
        raise UsageError(f"--num {num} is too many for one PNG grid (at most {PNG_LIMIT}): write NAME.npz instead")


def generate(model_path, out, num=64, seed=0, truncation=0.0, interpolate_steps=None, pairs=4, columns=8,
             labels=None):
    """What `kgan generate` does. Returns a dict of the arrays written.

    `labels` (conditional generators): a list of class ids, repeated to `num` samples.
    """
    from kgan import plots

    extension = _check_out(out)
    _check_numbers(num, seed, truncation, interpolate_steps, pairs, extension)
    model = load_model(model_path)
    if labels is not None:
        if not is_conditional(model):
            raise UsageError(f"--labels needs a conditional generator (kgan train --conditional); {model_path} is not")
        classes = num_classes(model)
        if max(labels) >= classes:
            raise UsageError(f"--labels: class ids must be in [0, {classes}) for {model_path}; got {max(labels)}")
        labels = [int(labels[i % len(labels)]) for i in range(num)]

    if interpolate_steps is None:
        if extension == ".npz":
            if num <= BATCH:
                arrays = sample(model, num, seed, truncation, labels)
                _write_npz(out, arrays)
                return arrays
            _stream_npz(out, sample_batches(model, num, seed, truncation, labels))
            return np.load(out)  # lazy: each array is read when it is asked for
        parts = list(sample_batches(model, num, seed, truncation, labels))  # at most PNG_LIMIT samples
        arrays = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
        with atomic.path(out) as staging:
            if "images" in arrays:
                plots.save_png(plots.image_grid(arrays["images"].astype("float32") / 127.5 - 1.0, columns=columns),
                               staging)
            else:
                plots.save_png(plots.scatter_image(arrays["points"], title=f"{num} samples, seed {seed}"), staging)
        return arrays

    arrays = interpolate(model, interpolate_steps, pairs, seed, truncation)
    if extension == ".npz":
        _write_npz(out, arrays)
    elif arrays["linear"].ndim == 5:
        # Rows: pair 0 linear, pair 0 slerp, pair 1 linear, ...; columns: the steps.
        rows = np.stack([arrays["linear"], arrays["slerp"]], axis=1)  # [P, 2, K, H, W, C]
        with atomic.path(out) as staging:
            plots.save_png(plots.image_grid(rows.reshape(-1, *rows.shape[3:]), columns=interpolate_steps), staging)
    else:
        raise UsageError("--interpolate with a .png output needs an image generator; use --out NAME.npz for points")
    return arrays
