"""Input checks shared by the metric functions: one clear ValueError per mistake."""

import numpy as np


def as_activations(x, name, min_samples=1, dtype=np.float64):
    """Returns `x` as a 2-D `[num_samples, num_features]` array, or raises ValueError.

    Args:
        x: array-like of shape `[num_samples, num_features]`.
        name: the argument's name, used in error messages.
        min_samples: the smallest allowed `num_samples`.
        dtype: the dtype to convert to; `None` keeps a floating dtype (no copy of a
            large float32 array), converting integers to float64.

    Returns:
        A finite 2-D numpy array.

    Raises:
        ValueError: if `x` is not 2-D, has too few rows, no columns, or non-finite values.
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array [num_samples, num_features], got shape {x.shape}."
        )
    if dtype is not None:
        x = x.astype(dtype, copy=False)
    elif not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    if x.shape[1] < 1:
        raise ValueError(f"{name} has no features (shape {x.shape}).")
    if x.shape[0] < min_samples:
        raise ValueError(
            f"{name} needs at least {min_samples} samples, got {x.shape[0]} (shape {x.shape})."
        )
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or infinite values.")
    return x


def check_same_features(a, b, name_a, name_b):
    """Raises ValueError unless `a` and `b` have the same number of features (columns)."""
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"{name_a} and {name_b} must have the same number of features, got "
            f"{a.shape[1]} ({name_a} shape {a.shape}) and {b.shape[1]} ({name_b} shape "
            f"{b.shape})."
        )


def check_positive_int(value, name, minimum=1):
    """Returns `value` as an int, or raises ValueError if it is not an integer >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)
