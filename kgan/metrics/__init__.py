"""Metrics you can trust: FID / FCD, KID, Inception Score, precision / recall, density /
coverage, mode counts, and the feature networks that produce the activations.

The maths (frechet, kernel, inception_score, manifold, modes) are pure NumPy functions on
activation arrays, accumulate in float64 and return plain Python floats (or dicts of them).
The feature networks (features, classifier) map images to those activations, and each carries
a `label` that reports print beside the numbers. Importing this package does not import
TensorFlow; the feature networks import it when built.

Example:

```python
from kgan import metrics

net = metrics.get_feature_extractor("classifier:digits")   # trains once, then cached
real = net.features(real_images)                            # [N, 128]
fake = net.features(generated_images)
print(net.distance_name, metrics.frechet_distance(real, fake), "-", net.label)
print(metrics.kernel_inception_distance(real, fake), metrics.precision_recall(real, fake))
```
"""

from kgan.metrics.classifier import (
    Classifier,
    build_classifier,
    classifier_datasets,
    load_classifier,
    load_digits_split,
    register_classifier_dataset,
    train_classifier,
)
from kgan.metrics.features import (
    INCEPTION_FINAL_POOL,
    INCEPTION_FROZEN_GRAPH,
    INCEPTION_INPUT,
    INCEPTION_TAR_URL,
    FeatureExtractor,
    FeatureNetworkUnavailableError,
    InceptionGraph,
    KerasInception,
    default_cache_dir,
    get_feature_extractor,
    resolve_inception_graph,
)
from kgan.metrics.frechet import (
    ActivationStatistics,
    frechet_distance,
    frechet_distance_from_statistics,
    trace_sqrt_product,
)
from kgan.metrics.inception_score import inception_score
from kgan.metrics.kernel import kernel_inception_distance, polynomial_mmd2_unbiased
from kgan.metrics.manifold import density_coverage, precision_recall
from kgan.metrics.modes import (
    Mixture,
    mixture_mode_metrics,
    mixture_modes,
    mode_metrics,
    stacked_digit_modes,
    stacked_mode_metrics,
)

__all__ = [
    "INCEPTION_FINAL_POOL",
    "INCEPTION_FROZEN_GRAPH",
    "INCEPTION_INPUT",
    "INCEPTION_TAR_URL",
    "ActivationStatistics",
    "Classifier",
    "FeatureExtractor",
    "FeatureNetworkUnavailableError",
    "InceptionGraph",
    "KerasInception",
    "Mixture",
    "build_classifier",
    "classifier_datasets",
    "default_cache_dir",
    "density_coverage",
    "frechet_distance",
    "frechet_distance_from_statistics",
    "get_feature_extractor",
    "inception_score",
    "kernel_inception_distance",
    "load_classifier",
    "load_digits_split",
    "mixture_mode_metrics",
    "mixture_modes",
    "mode_metrics",
    "polynomial_mmd2_unbiased",
    "precision_recall",
    "register_classifier_dataset",
    "resolve_inception_graph",
    "stacked_digit_modes",
    "stacked_mode_metrics",
    "trace_sqrt_product",
    "train_classifier",
]
