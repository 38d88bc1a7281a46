"""The 2-D Gaussian mixtures of the mode-collapse benchmarks (ring8, grid25): their mode
centres, std and samples. TF-free (NumPy only), so the data pipeline (kgan.data) and the mode
metrics (kgan.metrics.modes) share one definition without importing each other.

PacGAN (Lin et al., 2018, https://arxiv.org/abs/1712.04086) / VEEGAN (Srivastava et al., 2017,
https://arxiv.org/abs/1705.07761) protocol:

- ring8: 8 Gaussians with means (cos 2 pi i / 8, sin 2 pi i / 8), i = 0..7, std 0.01.
- grid25: 25 Gaussians with means {-4, -2, 0, 2, 4}^2, std 0.05.
"""

from typing import NamedTuple

import numpy as np

from kgan.names import MIXTURES

#: Examples in one epoch of a mixture dataset.
MIXTURE_SAMPLES = 100_000


class Mixture(NamedTuple):
    """A 2-D isotropic Gaussian mixture with equal weights; unpacks as `means, std = ...`.

    Attributes:
        means: float64 `[num_modes, 2]` mode centres (grid25 in x-major order).
        std: per-coordinate standard deviation of every component.
    """

    means: np.ndarray
    std: float


def mixture_modes(name):
    """The centres and std of a standard 2-D mixture (PacGAN / VEEGAN protocol).

    Args:
        name: "ring8" (8 modes on the unit circle at angles 2 pi i / 8, std 0.01) or
            "grid25" (modes {-4, -2, 0, 2, 4}^2, std 0.05).

    Returns:
        A `Mixture(means [num_modes, 2] float64, std)`; a fresh array on every call.

    Raises:
        ValueError: for an unknown name.
    """
    if name == "ring8":
        angles = 2.0 * np.pi * np.arange(8) / 8.0  # not linspace(0, 2 pi, 8): 7 distinct modes
        return Mixture(np.stack([np.cos(angles), np.sin(angles)], axis=1), 0.01)
    if name == "grid25":
        axis = np.array([-4.0, -2.0, 0.0, 2.0, 4.0])
        xs, ys = np.meshgrid(axis, axis, indexing="ij")
        return Mixture(np.stack([xs.ravel(), ys.ravel()], axis=1), 0.05)
    raise ValueError(f"Unknown mixture: {name!r}; expected one of {MIXTURES}.")


def mixture_samples(name, n, seed=0):
    """`n` samples [n, 2] float32 of a benchmark mixture, modes chosen uniformly, and the mode
    index [n] of each."""
    modes, std = mixture_modes(name)
    rng = np.random.default_rng(seed)
    which = rng.integers(len(modes), size=n)
    return (modes[which] + std * rng.standard_normal((n, 2))).astype("float32"), which


__all__ = ["MIXTURES", "MIXTURE_SAMPLES", "Mixture", "mixture_modes", "mixture_samples"]
