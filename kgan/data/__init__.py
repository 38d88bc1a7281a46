"""Datasets by name, and the tf.data pipeline that feeds `GAN.fit`.

Names:
    digits            scikit-learn's 8x8 handwritten digits (1,797 real images, shipped with
                      scikit-learn: no download). The default.
    stacked_digits    three independent digits as the three channels of an 8x8x3 image: 1,000
                      modes (the embedded stand-in for Stacked MNIST), 50k examples.
    ring8, grid25     the 2-D Gaussian mixtures of the mode-collapse benchmarks (PacGAN/VEEGAN
                      protocol, shared/BENCHMARKS.md), 100k samples.
    mnist, fashion_mnist, cifar10, svhn_cropped, celeb_a
                      TensorFlow Datasets (downloaded once, or read from `data_dir`).
    folder:PATH       a directory of images (png/jpg/bmp/gif), searched recursively.

Importing kgan.data does not import TensorFlow (the functions that build a `tf.data` pipeline
import it), so TF-free code can read `NUM_CLASSES`, `MIXTURES` and the mixtures.

Every dataset yields single examples, float32, images in [-1, 1] of shape [H, W, C] (square,
8..64 pixels: DCGAN sizes) or points of shape [2]. With `load(..., with_labels=True)` (for
conditional GANs) a labelled dataset yields `(example, label)` pairs, the label an int32 class
id in [0, num_classes).
"""

import dataclasses
import os
import socket

import numpy as np

from kgan.data.mixtures import MIXTURE_SAMPLES, mixture_modes, mixture_samples
from kgan.errors import UsageError
from kgan.names import DATASETS as NAMES
from kgan.names import IMAGE_SIZES, MIXTURES, NUM_CLASSES

TFDS_NAMES = tuple(name for name in NAMES if name not in ("digits", "stacked_digits", *MIXTURES))
STACKED_SAMPLES = 50_000


@dataclasses.dataclass
class Dataset:
    """A dataset of single examples and what the rest of kgan needs to know about it.

    Attributes:
        name: registry name.
        data: `tf.data.Dataset` of float32 examples (no batch axis).
        shape: shape of one example, (D,) or (H, W, C).
        num_examples: number of examples in one epoch.
        labels: int class labels aligned with `data` where the dataset has them, else None
            (only kept for in-memory datasets).
        num_classes: number of classes when `data` yields `(example, label)` pairs
            (`load(..., with_labels=True)`), else None.
    """

    name: str
    data: "tf.data.Dataset"  # noqa: F821 - TensorFlow is imported where a dataset is built
    shape: tuple
    num_examples: int
    labels: np.ndarray = None
    num_classes: int = None

    @property
    def kind(self):
        return "points" if len(self.shape) == 1 else "images"


def validate_name(name):
    """Raises UsageError unless `name` is a registered dataset or `folder:PATH`."""
    if name in NAMES or name.startswith("folder:"):
        return name
    raise UsageError(
        f"unknown dataset {name!r}: choose one of {', '.join(NAMES)}, or folder:PATH"
    )


def load(name, data_dir=None, image_size=None, seed=0, with_labels=False):
    """Loads a dataset by name.

    Args:
        name: a name from `NAMES` or `folder:PATH`.
        data_dir: TensorFlow Datasets directory (prepared data is read from there; downloads go
            there).
        image_size: output size for image datasets (8, 16, 32 or 64); default: the dataset's
            own size rounded up to a DCGAN size (digits 8, mnist 32, cifar10 32, celeb_a 64).
        seed: seed for the synthetic mixtures.
        with_labels: yield `(example, label int32)` pairs (conditional GANs); only for the
            datasets in `NUM_CLASSES`.

    Returns:
        A `Dataset`.

    Raises:
        UsageError: unknown name, missing folder, a download that cannot be made, or labels
            asked of a dataset without class labels.
    """
    validate_name(name)
    if image_size is not None and image_size not in IMAGE_SIZES:
        raise UsageError(f"image size must be one of {IMAGE_SIZES}; got {image_size}")
    if with_labels and name not in NUM_CLASSES:
        raise UsageError(f"--conditional needs a dataset with one class label per example "
                         f"({', '.join(NUM_CLASSES)}); {name!r} has none")
    if name == "digits":
        return _digits(image_size, with_labels)
    if name == "stacked_digits":
        return _stacked_digits(STACKED_SAMPLES, seed, image_size)
    if name in MIXTURES:
        return _mixture(name, MIXTURE_SAMPLES, seed)
    if name.startswith("folder:"):
        return _folder(name[len("folder:"):], image_size or 64)
    return _tfds(name, data_dir, image_size, with_labels)


# ----------------------------------------------------------------------------------------------
# Embedded data.


def digits_arrays():
    """scikit-learn's digits as (images [1797, 8, 8, 1] float32 in [-1, 1], labels [1797] int)."""
    table = _digits_table()
    images = (table[:, :-1].reshape(-1, 8, 8).astype("float32") / 8.0 - 1.0)[..., None]  # pixels are 0..16
    return images, table[:, -1].astype("int64")


def _digits_table():
    """The digits as scikit-learn ships them: [1797, 65] float64, 64 pixels then the label.

    Read from scikit-learn's own file (`load_digits` reads the same file the same way) without
    importing scikit-learn (0.6 s of the main job's start here); `load_digits` when the file is
    not where scikit-learn keeps it.
    """
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(root, "datasets", "data", "digits.csv.gz")
        if os.path.isfile(path):
            return np.loadtxt(path, delimiter=",")
    from sklearn.datasets import load_digits

    digits = load_digits()
    return np.concatenate([digits.data, digits.target[:, None]], axis=1)


def _digits(image_size, with_labels=False):
    import tensorflow as tf

    images, labels = digits_arrays()
    data = tf.data.Dataset.from_tensor_slices(images)
    if image_size not in (None, 8):
        data = data.map(lambda x: tf.image.resize(x, (image_size, image_size)))
    if with_labels:
        data = tf.data.Dataset.zip(data, tf.data.Dataset.from_tensor_slices(labels.astype("int32")))
    size = image_size or 8
    return Dataset("digits", data, (size, size, 1), len(images), labels,
                   NUM_CLASSES["digits"] if with_labels else None)


def stacked_digits_arrays(n, seed=0):
    """`n` stacked digits: (images [n, 8, 8, 3] in [-1, 1], labels [n, 3] class per channel).

    Each channel is an independently, uniformly drawn digit image (Stacked MNIST's recipe,
    Metz et al. 2017), so there are 10^3 = 1000 modes.
    """
    images, labels = digits_arrays()
    which = np.random.default_rng(seed).integers(len(images), size=(n, 3))
    return np.concatenate([images[which[:, c]] for c in range(3)], axis=-1), labels[which]


def _stacked_digits(n, seed, image_size):
    import tensorflow as tf

    images, labels = stacked_digits_arrays(n, seed)
    data = tf.data.Dataset.from_tensor_slices(images)
    if image_size not in (None, 8):
        data = data.map(lambda x: tf.image.resize(x, (image_size, image_size)))
    size = image_size or 8
    return Dataset("stacked_digits", data, (size, size, 3), n, labels)


def _mixture(name, n, seed):
    import tensorflow as tf

    points, which = mixture_samples(name, n, seed)
    return Dataset(name, tf.data.Dataset.from_tensor_slices(points), (2,), n, which)


# ----------------------------------------------------------------------------------------------
# Images from files.


def _to_unit_range(image):
    import tensorflow as tf

    return tf.cast(image, tf.float32) / 127.5 - 1.0


def _default_size(height):
    """The smallest DCGAN size >= the image's size, capped at 64."""
    return next((s for s in IMAGE_SIZES if s >= height), IMAGE_SIZES[-1])


#: Image files `folder:PATH` reads (Keras' image_dataset_from_directory's formats).
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")


def check_image_files(path):
    """Decodes every image file under `path` once; raises UsageError naming the ones that fail.

    Run when the folder is indexed, before anything is written: a truncated PNG or a text file
    named .png otherwise fails at the first training step with a TensorFlow traceback.
    """
    import tensorflow as tf

    bad, count = [], 0
    for root, _, names in os.walk(path, followlinks=True):
        for name in sorted(names):
            if not name.lower().endswith(IMAGE_EXTENSIONS):
                continue
            count += 1
            file = os.path.join(root, name)
            try:
                image = tf.io.decode_image(tf.io.read_file(file), channels=3, expand_animations=False)
                if min(image.shape[:2]) < 1:
                    raise ValueError("empty image")
            except (tf.errors.OpError, ValueError) as error:
                message = getattr(error, "message", None) or str(error)
                bad.append((file, " ".join(message.split())[:80]))
    if bad:
        first, why = bad[0]
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise UsageError(f"image folder {path!r}: {len(bad)} of {count} files cannot be decoded: {first} ({why})"
                         f"{more}; remove or fix them")
    return count


def _folder(path, image_size):
    import tensorflow as tf

    if not os.path.isdir(path):
        raise UsageError(f"image folder {path!r} does not exist or is not a directory")
    check_image_files(path)
    try:
        data = tf.keras.utils.image_dataset_from_directory(
            path, labels=None, image_size=(image_size, image_size), batch_size=None,
            shuffle=False, crop_to_aspect_ratio=True, verbose=False,
        )
    except ValueError as error:  # "No images found in directory ..."
        raise UsageError(f"image folder {path!r}: {error}") from None
    num_examples = int(data.cardinality())
    data = data.map(_to_unit_range, num_parallel_calls=tf.data.AUTOTUNE)
    return Dataset(f"folder:{path}", data, (image_size, image_size, 3), num_examples)


def _network_available(host="storage.googleapis.com", port=443, timeout=3.0):
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def _tfds(name, data_dir, image_size, with_labels=False):
    import tensorflow as tf
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
        where = data_dir or "~/tensorflow_datasets"
        hint = (
            f"prepare it where there is a network (python -c \"import tensorflow_datasets as tfds; "
            f"tfds.load('{name}')\") and pass --data-dir with that directory"
        )
        # Offline, tfds retries every file with back-off for minutes before failing: probe first.
        if not _network_available():
            raise UsageError(f"dataset {name!r} is not in {where} and there is no network to download it: {hint}")
        try:
            builder.download_and_prepare()
        except Exception as error:  # noqa: BLE001 - any download failure gets the same advice
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise UsageError(f"could not download dataset {name!r} into {where} ({first_line[:200]}): {hint}") from None
    split = "train"
    data = builder.as_dataset(split=split)
    try:
        num_examples = builder.info.splits[split].num_examples
    except KeyError:  # split metadata absent (tfds.testing.mock_data): count the examples
        num_examples = int(data.reduce(0, lambda count, _: count + 1))
    height, _, channels = builder.info.features["image"].shape
    size = image_size or _default_size(height)

    def prepare(example):
        image = example["image"]
        if name == "celeb_a":  # the usual face crop, then resize
            image = tf.image.crop_to_bounding_box(image, 40, 15, 148, 148)
        image = tf.image.resize(image, (size, size), antialias=True)
        image = tf.clip_by_value(_to_unit_range(image), -1.0, 1.0)
        return (image, tf.cast(example["label"], tf.int32)) if with_labels else image

    data = data.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    return Dataset(name, data, (size, size, channels), num_examples,
                   num_classes=NUM_CLASSES[name] if with_labels else None)


# ----------------------------------------------------------------------------------------------
# Pipeline.


def pipeline(dataset, batch_size, d_steps=1, seed=None, shuffle_buffer=None, cache=True, initial_epoch=None,
             epochs=None, steps_per_epoch=None):
    """The training pipeline: cache, shuffle each epoch, batch `d_steps * batch_size`, prefetch.

    Batches are dropped at the remainder so every step sees full batches (a step's d_steps
    critic updates each take `batch_size` of them).

    With `initial_epoch` and `epochs` (ints) the pipeline is EPOCH-DETERMINISTIC, for resumable
    training: epochs `initial_epoch .. epochs - 1` one after the other, epoch e shuffled with its
    own seed derived from (`seed`, e), so epoch e has the same batches whether or not training
    was interrupted before it. Give `fit` `steps_per_epoch=steps_per_epoch(...)` (Keras then
    keeps the iterator across epochs). `steps_per_epoch` (default: one pass) makes an epoch that
    many batches of the stream of passes (pass k shuffled with its seed from (`seed`, k)), so a
    resume at epoch e skips to the same batch.

    Args:
        dataset: a `Dataset`.
        batch_size: examples per discriminator update (global across replicas).
        d_steps: discriminator updates per step.
        seed: shuffle seed (deterministic epochs for a given seed).
        shuffle_buffer: default: the whole dataset, up to 100k examples.
        cache: cache decoded examples in memory after the first epoch.

    Returns:
        A `tf.data.Dataset` of batches [d_steps * batch_size, ...].

    Raises:
        UsageError: if the dataset is smaller than one step.
    """
    import tensorflow as tf

    step = batch_size * d_steps
    if dataset.num_examples < step:
        raise UsageError(
            f"dataset {dataset.name!r} has {dataset.num_examples} examples, fewer than one step "
            f"needs (batch size {batch_size} x d_steps {d_steps} = {step})"
        )
    data = dataset.data
    if cache:
        data = data.cache()
    buffer = shuffle_buffer or min(dataset.num_examples, 100_000)
    if initial_epoch is not None:
        # Python-int seeds per pass over the data, concatenated (a tensor seed from
        # Dataset.range().flat_map breaks tf's seed logic under op determinism when the global
        # seed is 0). With `steps_per_epoch` an epoch is that many batches of the passes' stream.
        base, seed = data, int(seed or 0)
        per_pass = dataset.num_examples // step
        per_epoch = int(steps_per_epoch or per_pass)
        first, last = int(initial_epoch) * per_epoch, max(int(epochs), int(initial_epoch) + 1) * per_epoch
        chain = None
        for e in range(first // per_pass, -(-last // per_pass)):
            epoch_seed = (seed * 1_000_003 + e) % (2**31 - 1)
            batches = base.shuffle(buffer, seed=epoch_seed, reshuffle_each_iteration=False).batch(step, drop_remainder=True)
            chain = batches if chain is None else chain.concatenate(batches)
        chain = chain.skip(first % per_pass) if first % per_pass else chain
        return chain.prefetch(tf.data.AUTOTUNE)
    data = data.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    data = data.batch(step, drop_remainder=True)
    return data.prefetch(tf.data.AUTOTUNE)


def steps_per_epoch(dataset, batch_size, d_steps=1):
    return dataset.num_examples // (batch_size * d_steps)


__all__ = [
    "Dataset", "NAMES", "load", "pipeline", "mixture_modes", "mixture_samples",
    "digits_arrays", "steps_per_epoch", "validate_name",
]
