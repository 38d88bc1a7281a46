"""Metrics you can trust: FID / FCD, KID, Inception Score, precision / recall, density /
coverage, mode counts, and the feature networks that produce the activations.

The maths (frechet, kernel, inception_score, manifold, modes) are pure NumPy functions on
activation arrays, accumulate in float64 and return plain Python floats (or dicts of them).
The feature networks (features, classifier) map images to those activations, and each carries
a `label` that reports print beside the numbers. Importing this package imports nothing:
each name is loaded from its submodule on first use, and the feature networks import TensorFlow
when built.

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

from kgan import lazy_getattr

# Eager (NumPy only): the function and its submodule share the name, and a lazy load of the
# submodule would rebind the package attribute to the module.
from kgan.metrics.inception_score import inception_score

_SUBMODULES = ("classifier", "extractor", "features", "frechet", "kernel", "manifold", "modes")
#: Public name -> the submodule that defines it. Imported on first use (PEP 562), so importing
#: one leaf (kgan.metrics.modes) does not load the others (SciPy, the feature networks).
_NAMES = {
    "Classifier": "classifier",
    "build_classifier": "classifier",
    "classifier_datasets": "classifier",
    "load_classifier": "classifier",
    "load_digits_split": "classifier",
    "register_classifier_dataset": "classifier",
    "train_classifier": "classifier",
    "INCEPTION_FINAL_POOL": "features",
    "INCEPTION_FROZEN_GRAPH": "features",
    "INCEPTION_INPUT": "features",
    "INCEPTION_TAR_URL": "features",
    "FeatureExtractor": "features",
    "FeatureNetworkUnavailableError": "features",
    "InceptionGraph": "features",
    "KerasInception": "features",
    "default_cache_dir": "features",
    "get_feature_extractor": "features",
    "resolve_inception_graph": "features",
    "ActivationStatistics": "frechet",
    "frechet_distance": "frechet",
    "frechet_distance_from_statistics": "frechet",
    "trace_sqrt_product": "frechet",
    "KernelReference": "kernel",
    "kernel_inception_distance": "kernel",
    "polynomial_mmd2_unbiased": "kernel",
    "density_coverage": "manifold",
    "precision_recall": "manifold",
    "Mixture": "modes",
    "mixture_mode_metrics": "modes",
    "mixture_modes": "modes",
    "mode_metrics": "modes",
    "stacked_digit_modes": "modes",
    "stacked_mode_metrics": "modes",
}


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
    "KernelReference",
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


__getattr__ = lazy_getattr(__name__, _SUBMODULES, _NAMES)
