"""Mode-collapse metrics: 2-D Gaussian mixtures (ring8, grid25) and stacked digits.

The protocols follow PacGAN (Lin et al., 2018, https://arxiv.org/abs/1712.04086) and VEEGAN
(Srivastava et al., 2017, https://arxiv.org/abs/1705.07761):

- ring8: 8 Gaussians with means (cos 2 pi i / 8, sin 2 pi i / 8), i = 0..7, std 0.01.
- grid25: 25 Gaussians with means {-4, -2, 0, 2, 4}^2, std 0.05.
- A generated sample is high quality when its Mahalanobis distance to the nearest mode
  (isotropic: Euclidean distance / std) is below 3. Modes captured = modes that are the
  nearest mode of at least one high-quality sample. High-quality % = 100 x share of samples
  that are high quality. Reverse KL = KL(p || uniform), p being the histogram of high-quality
  samples over the modes. Modes that received no sample contribute 0 (PacGAN's convention:
  KL(p || u) = sum over modes with p > 0 of p log(p / u), natural log); with no high-quality
  sample at all p is undefined and the reverse KL is NaN.
- Stacked digits (1,000 modes): the mode of a 3-channel sample is the triple of classes a digit
  classifier assigns to its channels. Reported: number of distinct triples and
  KL(p_gen || uniform over 1000), with the same p > 0 convention.

The mode centres live in kgan.data.mixtures (TF-free), shared with the data pipeline.
"""

import numpy as np

from kgan.data.mixtures import MIXTURES, Mixture, mixture_modes  # noqa: F401 - Mixture re-exported
from kgan.metrics._validation import as_activations, check_positive_int

STACKED_DATASETS = {"stacked_digits": "digits"}
HIGH_QUALITY_STDS = 3.0


def _kl_to_uniform(counts):
    """KL(p || uniform) with p = counts / sum, summing only modes with p > 0 (nan if empty)."""
    counts = np.asarray(counts, np.float64)
    total = counts.sum()
    if total == 0:
        return float("nan")
    p = counts[counts > 0] / total
    return float(np.sum(p * np.log(p * counts.size)))


def mixture_mode_metrics(samples, name, threshold=HIGH_QUALITY_STDS):
    """Mode metrics of 2-D samples against the ring8 or grid25 mixture.

    PacGAN protocol (https://arxiv.org/abs/1712.04086, Table 1), see the module docstring.

    Args:
        samples: generated points `[num_samples, 2]` (PacGAN uses 2,500).
        name: "ring8" or "grid25".
        threshold: high-quality radius in standard deviations (3).

    Returns:
        A dict of floats: `modes_captured` (0..num_modes), `high_quality_percent` (0..100),
        `reverse_kl` (>= 0; NaN when no sample is high quality), `num_modes`,
        `num_samples`.

    Raises:
        ValueError: for an unknown mixture or samples that are not a finite `[N, 2]` array.
    """
    mixture = mixture_modes(name)
    samples = as_activations(samples, "samples")
    if samples.shape[1] != 2:
        raise ValueError(f"samples for {name} must have shape [N, 2], got {samples.shape}.")
    distances = np.linalg.norm(samples[:, None, :] - mixture.means[None, :, :], axis=-1)
    nearest = np.argmin(distances, axis=1)
    high_quality = distances[np.arange(samples.shape[0]), nearest] / mixture.std < threshold
    counts = np.bincount(nearest[high_quality], minlength=len(mixture.means))
    return {
        "modes_captured": float(np.count_nonzero(counts)),
        "high_quality_percent": float(100.0 * high_quality.mean()),
        "reverse_kl": _kl_to_uniform(counts),
        "num_modes": float(len(mixture.means)),
        "num_samples": float(samples.shape[0]),
    }


def stacked_digit_modes(class_triples, num_classes=10):
    """Mode count and KL to uniform for stacked-digit samples, from their class triples.

    VEEGAN / PacGAN Stacked MNIST protocol: the mode of a sample is the triple of digit classes
    of its three channels; num_classes^3 (1000) modes in all.

    Args:
        class_triples: integer array `[num_samples, 3]`, entries in [0, num_classes).
        num_classes: classes per channel (10).

    Returns:
        A dict of floats: `modes_captured` (distinct triples), `reverse_kl`
        (KL(p_gen || uniform over num_classes^3), modes with p = 0 contribute 0),
        `num_modes` (num_classes^3), `num_samples`.

    Raises:
        ValueError: if the input is not an integer `[N, 3]` array with N >= 1 and entries in
            range.
    """
    num_classes = check_positive_int(num_classes, "num_classes")
    triples = np.asarray(class_triples)
    if triples.ndim != 2 or triples.shape[1] != 3 or triples.shape[0] < 1:
        raise ValueError(
            f"class_triples must be an integer array [num_samples >= 1, 3], got shape "
            f"{triples.shape}."
        )
    if not np.issubdtype(triples.dtype, np.integer):
        raise ValueError(f"class_triples must be integers, got dtype {triples.dtype}.")
    if triples.min() < 0 or triples.max() >= num_classes:
        raise ValueError(f"class_triples entries must be in [0, {num_classes}).")
    codes = (triples[:, 0] * num_classes + triples[:, 1]) * num_classes + triples[:, 2]
    counts = np.bincount(codes, minlength=num_classes**3)
    return {
        "modes_captured": float(np.count_nonzero(counts)),
        "reverse_kl": _kl_to_uniform(counts),
        "num_modes": float(num_classes**3),
        "num_samples": float(triples.shape[0]),
    }


def _predict_classes(classifier, images, batch_size):
    if hasattr(classifier, "probabilities"):
        scores = classifier.probabilities(images, batch_size=batch_size)
    elif callable(classifier):
        scores = classifier(images)
    else:
        raise ValueError(
            "classifier must be a feature extractor with .probabilities(images) or a callable "
            f"images -> [N, num_classes] scores, got {type(classifier).__name__}."
        )
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[0] != images.shape[0]:
        raise ValueError(
            f"classifier returned shape {scores.shape} for {images.shape[0]} images; "
            "expected [N, num_classes]."
        )
    return np.argmax(scores, axis=1), scores.shape[1]


def stacked_mode_metrics(images, classifier, batch_size=256):
    """Stacked-digit mode metrics of generated 3-channel images.

    Each channel is classified on its own (as a 1-channel image) by `classifier`, giving a
    class triple per sample; see `stacked_digit_modes`.

    Args:
        images: generated images `[N, H, W, 3]` in the classifier's input range ([-1, 1] for
            kgan's classifiers).
        classifier: a kgan `Classifier` (anything with `.probabilities(images, batch_size=)`)
            or a callable mapping `[N, H, W, 1]` images to `[N, num_classes]` probabilities or
            logits.
        batch_size: images per classifier call.

    Returns:
        The dict of `stacked_digit_modes`, plus `classifier_accuracy` when the classifier
        reports its held-out accuracy.

    Raises:
        ValueError: if `images` is not `[N, H, W, 3]` or the classifier output is malformed.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[0] < 1:
        raise ValueError(
            f"stacked-digit samples must be images [N, H, W, 3], got shape {images.shape}."
        )
    classes = []
    num_classes = None
    for channel in range(3):
        predicted, num_classes = _predict_classes(
            classifier, images[..., channel:channel + 1], batch_size
        )
        classes.append(predicted)
    result = stacked_digit_modes(np.stack(classes, axis=1), num_classes=num_classes)
    accuracy = getattr(classifier, "test_accuracy", None)
    if accuracy is not None:
        result["classifier_accuracy"] = float(accuracy)
    return result


def mode_metrics(samples, dataset, classifier=None, batch_size=256):
    """Mode-collapse metrics for "ring8", "grid25" or "stacked_digits".

    One entry point over `mixture_mode_metrics` (2-D points) and `stacked_mode_metrics`
    (3-channel images; protocols in the module docstring).

    Args:
        samples: `[N, 2]` points for ring8 / grid25; `[N, H, W, 3]` images in [-1, 1] for the
            stacked datasets.
        dataset: "ring8", "grid25" or "stacked_digits".
        classifier: for the stacked datasets, a kgan `Classifier` or a callable returning
            `[N, num_classes]` scores for `[N, H, W, 1]` images; `None` loads (training and
            caching on first use) kgan's classifier for the base dataset ("classifier:digits").
            Ignored for ring8 / grid25.
        batch_size: images per classifier call.

    Returns:
        A dict of plain floats (see `mixture_mode_metrics` / `stacked_digit_modes`).

    Raises:
        ValueError: for an unknown dataset or malformed samples.
    """
    if dataset in MIXTURES:
        return mixture_mode_metrics(samples, dataset)
    if dataset in STACKED_DATASETS:
        if classifier is None:
            from kgan.metrics.features import get_feature_extractor

            classifier = get_feature_extractor(f"classifier:{STACKED_DATASETS[dataset]}",
                                               image_size=int(np.shape(samples)[1]))
        return stacked_mode_metrics(samples, classifier, batch_size=batch_size)
    raise ValueError(
        f"Unknown mode-metrics dataset: {dataset!r}; expected one of "
        f"{MIXTURES + tuple(STACKED_DATASETS)}."
    )
