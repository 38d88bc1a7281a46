"""The interface every feature network implements (`FeatureExtractor`: images -> activations,
logits, probabilities) and where trained networks are cached. A module of its own so that the
networks (features.py: Inception; classifier.py: the dataset classifiers) both build on it
without importing each other. TF-free (NumPy and SciPy).
"""

import os

import numpy as np

from kgan.errors import UsageError
from kgan.metrics.frechet import ActivationStatistics

CACHE_DIR_ENV = "KGAN_FEATURE_EXTRACTORS_DIR"


class FeatureNetworkUnavailableError(UsageError):
    """A feature network's graph, weights or training data is missing and cannot be fetched.

    The message is one line naming the missing file and how to provide it; as a
    `kgan.errors.UsageError` the CLI prints it and exits with status 2.
    """


def default_cache_dir():
    """Where feature networks are cached: $KGAN_FEATURE_EXTRACTORS_DIR or
    saved_models/feature_extractors (relative to the working directory)."""
    return os.environ.get(CACHE_DIR_ENV) or os.path.join("saved_models", "feature_extractors")


def _as_images(images):
    """Images as float32 [N, H, W, C] in [-1, 1] (C = 1 or 3), or ValueError."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(
            f"images must be [N, H, W, C] with C = 1 or 3, got shape {images.shape}."
        )
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 127.5 - 1.0
    images = images.astype(np.float32)
    if images.size:
        if not np.all(np.isfinite(images)):
            raise ValueError("images contain NaN or infinite values.")
        low, high = float(images.min()), float(images.max())
        if low < -1.5 or high > 1.5:
            raise ValueError(
                f"float images must be in [-1, 1] (uint8 images in [0, 255]); got values in "
                f"[{low:.4g}, {high:.4g}]."
            )
    return np.clip(images, -1.0, 1.0)


def _softmax(logits):
    logits = np.asarray(logits, np.float64)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


class FeatureExtractor:
    """Base class: maps images to activations (and, where the network has them, logits).

    Subclasses set `name`, `label`, `distance_name`, `feature_dim`, `num_classes` and
    implement `_run(batch, want_logits)` on float32 `[B, H, W, C]` images in [-1, 1], returning
    `(features [B, feature_dim], logits [B, num_classes] or None)` as NumPy arrays.

    Args:
        batch_size: images per network call.
    """

    name = "feature_extractor"
    distance_name = "FID"

    def __init__(self, batch_size=64):
        self.batch_size = int(batch_size)
        self.label = self.name
        self.feature_dim = None
        self.num_classes = None

    def _run(self, batch, want_logits):
        raise NotImplementedError

    def _map(self, images, batch_size, want_features, want_logits):
        images = _as_images(images)
        if want_logits and not self.num_classes:
            raise ValueError(f"{self.label}: this network has no class outputs.")
        batch_size = int(batch_size or self.batch_size)
        features, logits = [], []
        for start in range(0, images.shape[0], batch_size):
            f, lg = self._run(images[start:start + batch_size], want_logits)
            if want_features:
                features.append(np.asarray(f, np.float32).reshape(f.shape[0], -1))
            if want_logits:
                logits.append(np.asarray(lg, np.float32))
        empty_f = np.zeros((0, self.feature_dim or 0), np.float32)
        empty_l = np.zeros((0, self.num_classes or 0), np.float32)
        return (
            np.concatenate(features) if features else empty_f,
            np.concatenate(logits) if logits else empty_l,
        )

    def features(self, images, batch_size=None):
        """Activations of `images`.

        Args:
            images: `[N, H, W, C]` float in [-1, 1] or uint8 in [0, 255].
            batch_size: images per network call (default: the extractor's).

        Returns:
            float32 `[N, feature_dim]`.
        """
        return self._map(images, batch_size, True, False)[0]

    def logits(self, images, batch_size=None):
        """Class logits of `images`, float32 `[N, num_classes]` (ValueError if none)."""
        return self._map(images, batch_size, False, True)[1]

    def probabilities(self, images, batch_size=None):
        """Class probabilities of `images`, float64 `[N, num_classes]`."""
        return _softmax(self.logits(images, batch_size))

    def features_and_logits(self, images, batch_size=None):
        """`(features, logits)` from one pass over the images."""
        return self._map(images, batch_size, True, True)

    def statistics(self, images, batch_size=None, statistics=None):
        """Streams images through the network into an `ActivationStatistics`.

        Args:
            images: an image array `[N, H, W, C]`, or an iterable of such batches (e.g. a
                generator yielding generated batches), so N can exceed memory.
            batch_size: images per network call.
            statistics: an `ActivationStatistics` to add to (a new one by default).

        Returns:
            The `ActivationStatistics`.
        """
        stats = statistics if statistics is not None else ActivationStatistics()
        is_array = isinstance(images, np.ndarray) or hasattr(images, "numpy")
        batches = [images] if is_array else images
        for batch in batches:
            batch = np.asarray(batch)
            if batch.shape[0]:
                stats.update(self.features(batch, batch_size))
        return stats

    def describe(self):
        """What reports must print beside the numbers: a dict of strings and ints."""
        return {
            "feature_network": self.name,
            "feature_label": self.label,
            "distance_name": self.distance_name,
            "feature_dim": self.feature_dim,
        }

    def __repr__(self):
        return f"<{type(self).__name__} {self.name!r}: {self.label}>"
