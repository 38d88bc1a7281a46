"""Dataset-specific classifiers as feature networks ("classifier:<dataset>").

A small CNN that kgan trains once on a labelled dataset, at a given resolution, and caches:

    <cache_dir>/classifier_<dataset>[_<size>px]/model.keras       the Keras model (logits output)
    <cache_dir>/classifier_<dataset>[_<size>px]/classifier.json   held-out test accuracy and settings

A GAN's images must be scored at the resolution it trains at: `kgan.data.load` gives mnist and
fashion_mnist at 32 x 32 (28 is not a DCGAN size) and digits at 8, 16 or 32. With `image_size`
the classifier's training and test images are resized as `kgan.data.load` resizes the GAN's
(digits: `tf.image.resize`, bilinear; tfds datasets: bilinear with antialiasing, then clipped to
[-1, 1]) and the cache (directory and key) is per size; the dataset's native size (digits 8,
mnist 28, cifar10 32) keeps the plain directory.

`cache_dir` defaults to saved_models/feature_extractors ($KGAN_FEATURE_EXTRACTORS_DIR). Its
penultimate layer ("features", 128-d) gives the Frechet Classifier Distance (FCD: the FID
formula on a classifier's activations, TF-GAN's name; not comparable with FID), its softmax the
class probabilities used for stacked-digit mode counts and the classifier score (IS formula).

Datasets: "digits" (scikit-learn's 8 x 8 digits, embedded, no download; >= 97% held-out
accuracy), and "mnist", "fashion_mnist", "cifar10" through tensorflow-datasets (downloaded once
where the network allows). Any other labelled data can be registered with
`register_classifier_dataset(name, loader)` or passed as `data=`.
"""

import json
import os
import time

import numpy as np

from kgan.metrics.extractor import (
    FeatureExtractor,
    FeatureNetworkUnavailableError,
    default_cache_dir,
)

ARCHITECTURE_VERSION = 1
FEATURE_DIM = 128
MODEL_FILE = "model.keras"
INFO_FILE = "classifier.json"
DIGITS_MIN_ACCURACY = 0.97


def load_digits_split(seed=0, test_fraction=0.2):
    """scikit-learn's 8 x 8 digits, split into a stratified, seeded train / held-out test set.

    Args:
        seed: seed of the split.
        test_fraction: share of the 1,797 images held out (0.2 -> 360 test images).

    Returns:
        `(x_train, y_train, x_test, y_test)`: images float32 `[N, 8, 8, 1]` in [-1, 1]
        (pixel values 0..16 mapped linearly), labels int64 `[N]` in 0..9.
    """
    from sklearn.model_selection import train_test_split

    from kgan.data import digits_arrays  # the same images (and scaling) the GANs train on

    images, labels = digits_arrays()
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_fraction, stratify=labels, random_state=seed
    )
    return x_train, y_train, x_test, y_test


def _scale_uint8(images):
    return images.astype(np.float32) / 127.5 - 1.0


def _tfds_loader(name):
    def load(seed=0):
        del seed  # the datasets' own train / test splits are used
        try:
            import tensorflow_datasets as tfds

            splits = []
            for split in ("train", "test"):
                batches = list(
                    tfds.as_numpy(tfds.load(name, split=split, as_supervised=True).batch(4096))
                )
                splits.append(
                    (np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches]))
                )
        except Exception as e:  # noqa: BLE001  (tfds raises many kinds offline)
            raise FeatureNetworkUnavailableError(
                f"Could not load the '{name}' dataset with tensorflow-datasets to train the "
                f"'classifier:{name}' feature network ({type(e).__name__}: {e}); run once "
                f"where the network allows, or pass data=(x_train, y_train, x_test, y_test)."
            ) from None
        (x_train, y_train), (x_test, y_test) = splits
        return (
            _scale_uint8(x_train), y_train.astype(np.int64),
            _scale_uint8(x_test), y_test.astype(np.int64),
        )

    return load


# name -> (loader(seed) -> (x_train, y_train, x_test, y_test), default epochs, num_classes)
_DATASETS = {
    "digits": (load_digits_split, 30, 10),
    "mnist": (_tfds_loader("mnist"), 3, 10),
    "fashion_mnist": (_tfds_loader("fashion_mnist"), 5, 10),
    "cifar10": (_tfds_loader("cifar10"), 15, 10),
}
#: Native image size, and whether `kgan.data.load` resizes it with antialiasing (tfds) or not.
_NATIVE = {"digits": (8, False), "mnist": (28, True), "fashion_mnist": (28, True), "cifar10": (32, True)}


def resize_images(images, image_size, antialias):
    """Images [N, H, W, C] in [-1, 1] resized to image_size x image_size as `kgan.data.load` does.

    Resizing is linear with weights summing to 1, so resizing the [-1, 1] images equals
    resizing the uint8 ones and then scaling (as the data loader does), up to round-off.
    """
    import tensorflow as tf

    images = np.asarray(images, np.float32)
    if images.shape[1:3] == (image_size, image_size):
        return images
    out = []
    for start in range(0, len(images), 4096):
        resized = tf.image.resize(images[start:start + 4096], (image_size, image_size), antialias=antialias)
        out.append(np.clip(resized.numpy(), -1.0, 1.0))
    return np.concatenate(out) if out else images.reshape((0, image_size, image_size, images.shape[-1]))


def register_classifier_dataset(name, loader, epochs=10, num_classes=None):
    """Makes "classifier:<name>" available.

    Args:
        name: dataset name (letters, digits, "_").
        loader: callable `loader(seed)` returning `(x_train, y_train, x_test, y_test)`: images
            float `[N, H, W, C]` in [-1, 1], integer labels `[N]` in 0..num_classes-1.
        epochs: default training epochs.
        num_classes: number of classes (default: 1 + the largest label).
    """
    if not name.replace("_", "").isalnum():
        raise ValueError(f"classifier dataset names are letters, digits and '_', got {name!r}.")
    _DATASETS[name] = (loader, int(epochs), num_classes)


def classifier_datasets():
    """Names usable in "classifier:<dataset>"."""
    return tuple(_DATASETS)


def build_classifier(input_shape, num_classes, seed=0):
    """The classifier CNN: conv 32 -> strided convs to <= 4 x 4 -> conv -> dense 128 -> logits.

    Every initializer and the dropout are seeded, so the same seed gives the same network.

    Args:
        input_shape: `(H, W, C)`.
        num_classes: number of classes.
        seed: weight-initialisation seed.

    Returns:
        A `keras.Model` images -> logits `[N, num_classes]`, with a 128-d ReLU layer named
        "features" before the (dropout and) logits layer.
    """
    import keras

    layers = keras.layers
    counter = iter(range(1000))

    def init():
        return keras.initializers.GlorotUniform(seed=seed * 1000 + next(counter))

    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = layers.Conv2D(32, 3, padding="same", activation="relu", kernel_initializer=init())(inputs)
    filters, size = 64, min(input_shape[0], input_shape[1])
    while True:
        x = layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu",
                          kernel_initializer=init())(x)
        size = (size + 1) // 2
        filters = min(filters * 2, 256)
        if size <= 4:
            break
    x = layers.Conv2D(filters, 3, padding="same", activation="relu", kernel_initializer=init())(x)
    x = layers.Flatten()(x)
    features = layers.Dense(FEATURE_DIM, activation="relu", kernel_initializer=init(),
                            name="features")(x)
    x = layers.Dropout(0.3, seed=seed)(features)
    logits = layers.Dense(num_classes, kernel_initializer=init(), name="logits")(x)
    return keras.Model(inputs, logits, name="kgan_classifier")


def train_classifier(x_train, y_train, x_test, y_test, *, num_classes=None, seed=0, epochs=30,
                     batch_size=64, verbose=0):
    """Trains `build_classifier` with Adam (1e-3) and reports held-out accuracy.

    Args:
        x_train: float `[N, H, W, C]` in [-1, 1].
        y_train: int `[N]`.
        x_test: float `[M, H, W, C]`.
        y_test: int `[M]`.
        num_classes: number of classes (default: 1 + the largest label).
        seed: initialisation and shuffling seed.
        epochs: passes over the training set.
        batch_size: training batch size.
        verbose: Keras `fit` verbosity.

    Returns:
        `(model, test_accuracy)`, accuracy a float in [0, 1].
    """
    import keras
    import tensorflow as tf

    x_train, x_test = np.asarray(x_train, np.float32), np.asarray(x_test, np.float32)
    y_train, y_test = np.asarray(y_train, np.int64), np.asarray(y_test, np.int64)
    if x_train.ndim != 4 or x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(
            f"classifier data must be images [N, H, W, C] with the same shape for train and "
            f"test, got {x_train.shape} and {x_test.shape}."
        )
    if len(x_train) != len(y_train) or len(x_test) != len(y_test) or len(x_test) == 0:
        raise ValueError("classifier data: images and labels differ in length or test is empty.")
    num_classes = int(num_classes or max(y_train.max(), y_test.max()) + 1)
    # The global seeds too: tf.data's shuffle order (and so the accuracy) depends on the global
    # TF seed whatever the op seed, and earlier code in the process may have set another one.
    keras.utils.set_random_seed(seed)
    model = build_classifier(x_train.shape[1:], num_classes, seed=seed)
    steps = epochs * -(-len(x_train) // batch_size)
    model.compile(
        # Cosine decay to 0: the last epochs settle instead of bouncing (held-out accuracy of
        # the digits classifier, seed 0: 96.1% with a constant 1e-3; 97.8, 99.2, 98.6% for seeds 0-2 with this).
        optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(1e-3, steps)),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    data = (
        tf.data.Dataset.from_tensor_slices((x_train, y_train))
        .shuffle(len(x_train), seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
    )
    model.fit(data, epochs=epochs, shuffle=False, verbose=verbose)  # the dataset shuffles
    predictions = np.argmax(model.predict(x_test, batch_size=256, verbose=0), axis=1)
    return model, float(np.mean(predictions == y_test))


class Classifier(FeatureExtractor):
    """A trained kgan classifier as a feature network: FCD features and class probabilities.

    Built by `load_classifier`; not usually constructed directly.

    Attributes:
        dataset: dataset name.
        model: the Keras model (images -> logits).
        test_accuracy: held-out accuracy in [0, 1].
        path: the cache directory.
        from_cache: True when loaded from the cache, False when trained by this call.
        info: the contents of classifier.json.
    """

    distance_name = "FCD"

    def __init__(self, dataset, model, info, path, from_cache, batch_size=256):
        super().__init__(batch_size)
        import keras

        self.name = f"classifier:{dataset}"
        self.dataset = dataset
        self.model = model
        self.info = dict(info)
        self.test_accuracy = float(info["test_accuracy"])
        self.path = path
        self.from_cache = bool(from_cache)
        self.image_size = info.get("image_size")
        self._both = keras.Model(
            model.input, [model.get_layer("features").output, model.output]
        )
        self.input_shape = tuple(int(s) for s in model.inputs[0].shape[1:])
        self._call = None
        self.feature_dim = int(self._both.outputs[0].shape[-1])
        self.num_classes = int(self._both.outputs[1].shape[-1])
        self.label = (
            f"kgan {dataset} classifier, penultimate layer ({self.feature_dim}-d), held-out "
            f"test accuracy {self.test_accuracy:.2%}: Frechet Classifier Distance (FCD), not "
            "comparable with FID"
        )

    def _run(self, batch, want_logits):
        if batch.shape[1:] != self.input_shape:
            raise ValueError(
                f"{self.name} takes images of shape [N, {', '.join(map(str, self.input_shape))}]"
                f", got {list(batch.shape)}: load it with image_size={batch.shape[1]} "
                "(kgan.metrics.load_classifier) to score images of that size."
            )
        if self._call is None:  # one graph call per batch (eager: one call per layer), any batch size
            import tensorflow as tf

            spec = tf.TensorSpec([None, *self.input_shape], "float32")
            self._call = tf.function(lambda images: self._both(images, training=False), input_signature=[spec],
                                     autograph=False)
        features, logits = self._call(batch)
        return np.asarray(features), np.asarray(logits)

    def describe(self):
        return {**super().describe(), "classifier_test_accuracy": self.test_accuracy}


def _cache_key(dataset, seed, epochs, image_size):
    return {
        "dataset": dataset,
        "seed": int(seed),
        "epochs": int(epochs),
        "architecture_version": ARCHITECTURE_VERSION,
        "image_size": image_size,
    }


def load_classifier(dataset="digits", *, data=None, cache_dir=None, seed=0, epochs=None,
                    retrain=False, batch_size=256, verbose=0, image_size=None):
    """The "classifier:<dataset>" feature network: loaded from the cache, or trained and cached.

    The cache is reused when its classifier.json has the same dataset, seed, epochs, image size
    and architecture version; otherwise (or with `retrain=True`) the classifier is trained again
    and the cache overwritten (model first, JSON last, each by atomic rename).

    Args:
        dataset: "digits", "mnist", "fashion_mnist", "cifar10", or a registered / new name.
        data: optional training data for this name: `(x_train, y_train, x_test, y_test)` or a
            callable `data(seed)` returning it (images `[N, H, W, C]` in [-1, 1]). Required
            for an unregistered name. Not part of the cache key.
        cache_dir: feature-network cache root (default `default_cache_dir()`).
        seed: initialisation / shuffling / split seed.
        epochs: training epochs (default: the dataset's; digits 30).
        retrain: train even if a matching cache exists.
        batch_size: images per call when extracting features.
        verbose: Keras `fit` verbosity while training.
        image_size: the resolution (int) of the images to score, e.g. a GAN's `--image-size`;
            the classifier is trained on the dataset's images resized to it. None: the
            dataset's native size (the images as loaded).

    Returns:
        A `Classifier` (`.from_cache` tells whether it was trained by this call).

    Raises:
        ValueError: for an unknown dataset without `data`, or malformed data.
        FeatureNetworkUnavailableError: the dataset cannot be loaded (e.g. offline tfds).
    """
    import keras

    if not isinstance(dataset, str) or not dataset.replace("_", "").isalnum():
        raise ValueError(f"classifier dataset names are letters, digits and '_', got {dataset!r}.")
    if data is None and dataset not in _DATASETS:
        raise ValueError(
            f"Unknown classifier dataset {dataset!r}; expected one of {classifier_datasets()} "
            "or pass data=(x_train, y_train, x_test, y_test)."
        )
    _, default_epochs, num_classes = _DATASETS.get(dataset, (None, 10, None))
    epochs = int(epochs or default_epochs)
    native, antialias = _NATIVE.get(dataset, (None, True))
    if image_size is not None:
        image_size = int(image_size)
        if image_size < 1:
            raise ValueError(f"classifier image_size must be a positive int, got {image_size}.")
    if image_size == native:
        image_size = None
    folder = f"classifier_{dataset}" if image_size is None else f"classifier_{dataset}_{image_size}px"
    path = os.path.join(cache_dir or default_cache_dir(), folder)
    model_path, info_path = os.path.join(path, MODEL_FILE), os.path.join(path, INFO_FILE)
    key = _cache_key(dataset, seed, epochs, image_size)

    if not retrain and os.path.isfile(info_path) and os.path.isfile(model_path):
        with open(info_path) as f:
            info = json.load(f)
        info.setdefault("image_size", None)  # caches made before sizes existed: native size
        if all(info.get(k) == v for k, v in key.items()):
            model = keras.saving.load_model(model_path, compile=False)
            return Classifier(dataset, model, info, path, from_cache=True, batch_size=batch_size)

    if data is None:
        data = _DATASETS[dataset][0]
    arrays = data(seed) if callable(data) else data
    x_train, y_train, x_test, y_test = arrays
    if image_size is not None:
        x_train = resize_images(x_train, image_size, antialias)
        x_test = resize_images(x_test, image_size, antialias)
    start = time.perf_counter()
    model, accuracy = train_classifier(
        x_train, y_train, x_test, y_test, num_classes=num_classes, seed=seed, epochs=epochs,
        verbose=verbose,
    )
    info = {
        **key,
        "test_accuracy": accuracy,
        "num_train": len(x_train),
        "num_test": len(x_test),
        "input_shape": [int(s) for s in np.shape(x_train)[1:]],
        "num_classes": int(model.outputs[0].shape[-1]),
        "feature_dim": FEATURE_DIM,
        "train_seconds": round(time.perf_counter() - start, 2),
        "keras_version": keras.__version__,
    }
    from kgan import atomic

    with atomic.path(model_path) as partial:  # model first, JSON last, each whole or not at all
        model.save(partial)
    atomic.write_json(info, info_path)
    return Classifier(dataset, model, info, path, from_cache=False, batch_size=batch_size)
