"""k-nearest-neighbour manifold metrics: improved precision / recall and density / coverage.

Both estimate each distribution's support as a union of balls around its samples, the ball of
sample x reaching its k-th nearest neighbour in the same set (excluding x itself: the (k+1)-th
smallest distance, since the distance of x to itself is 0).

- Kynkaanniemi et al., 2019, "Improved Precision and Recall Metric for Assessing Generative
  Models" (https://arxiv.org/abs/1904.06991): precision = share of fake samples inside the real
  support; recall = share of real samples inside the fake support; k = 3. A point on a ball's
  boundary counts as inside (`<=`, as in the authors' code).
- Naeem et al., 2020, "Reliable Fidelity and Diversity Metrics for Generative Models"
  (https://arxiv.org/abs/2002.09797): density = mean over fakes of (number of real balls
  containing it) / k; coverage = share of real samples whose ball contains at least one fake;
  k = 5. Boundaries are exclusive (`<`, as in the authors' `prdc` code).

Distances are squared Euclidean, computed in float64 blocks of `batch_size` rows (about
`batch_size x n x 8` bytes at a time: 80 MB for 1024 x 10,000), so 10k x 10k never needs a full
distance matrix.
"""

import numpy as np

from kgan.metrics._validation import (
    as_activations,
    check_positive_int,
    check_same_features,
)

_DEFAULT_BATCH_SIZE = 1024


def _squared_distances(x, y, x_sq, y_sq):
    d = x_sq[:, None] + y_sq[None, :] - 2.0 * (x @ y.T)
    return np.maximum(d, 0.0, out=d)


def _block_rows(n, batch_size):
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def knn_radii_squared(x, k, batch_size=_DEFAULT_BATCH_SIZE):
    """Squared distance of each row of `x` to its k-th nearest other row.

    Args:
        x: float64 `[n, d]` with n >= k + 1.
        k: neighbour index (>= 1); the row itself (distance 0) is not counted.
        batch_size: rows per distance block.

    Returns:
        float64 `[n]`.
    """
    x_sq = np.einsum("ij,ij->i", x, x)
    radii = np.empty(x.shape[0], np.float64)
    for rows in _block_rows(x.shape[0], batch_size):
        d = _squared_distances(x[rows], x, x_sq[rows], x_sq)
        radii[rows] = np.partition(d, k, axis=1)[:, k]  # index 0 is the row itself
    return radii


def _prepare(real, fake, k, batch_size, min_fake):
    k = check_positive_int(k, "k")
    batch_size = check_positive_int(batch_size, "batch_size")
    real = as_activations(real, "real", min_samples=k + 1)
    fake = as_activations(fake, "fake", min_samples=min_fake(k))
    check_same_features(real, fake, "real", "fake")
    return real, fake, k, batch_size


def precision_recall(real, fake, k=3, batch_size=_DEFAULT_BATCH_SIZE):
    """Improved precision and recall (Kynkaanniemi et al., 2019).

    Paper: https://arxiv.org/abs/1904.06991. precision = P(fake sample lies in some real
    k-NN ball); recall = P(real sample lies in some fake k-NN ball). Ball boundaries count as
    inside.

    Args:
        real: real activations `[n_real, d]`, n_real >= k + 1.
        fake: generated activations `[n_fake, d]`, n_fake >= k + 1.
        k: neighbourhood size (the paper uses 3).
        batch_size: rows per float64 distance block.

    Returns:
        `{"precision": float, "recall": float}`, each in [0, 1].

    Raises:
        ValueError: on bad shapes, non-finite values, too few samples, or bad `k`.
    """
    real, fake, k, batch_size = _prepare(real, fake, k, batch_size, lambda k: k + 1)
    real_radii = knn_radii_squared(real, k, batch_size)
    fake_radii = knn_radii_squared(fake, k, batch_size)
    real_sq = np.einsum("ij,ij->i", real, real)
    fake_sq = np.einsum("ij,ij->i", fake, fake)
    fake_in_real = np.zeros(fake.shape[0], bool)
    real_in_fake = np.zeros(real.shape[0], bool)
    for rows in _block_rows(real.shape[0], batch_size):
        d = _squared_distances(real[rows], fake, real_sq[rows], fake_sq)  # [block, n_fake]
        fake_in_real |= np.any(d <= real_radii[rows, None], axis=0)
        real_in_fake[rows] = np.any(d <= fake_radii[None, :], axis=1)
    return {"precision": float(fake_in_real.mean()), "recall": float(real_in_fake.mean())}


def density_coverage(real, fake, k=5, batch_size=_DEFAULT_BATCH_SIZE):
    """Density and coverage (Naeem et al., 2020).

    Paper: https://arxiv.org/abs/2002.09797. density = (1 / (k n_fake)) sum_j
    #{i : fake_j inside real ball i}; coverage = (1 / n_real) #{i : real ball i contains a
    fake}. Balls are real-sample k-NN balls (k + 1 neighbours searched, the first being the
    sample itself); boundaries are exclusive. Density is unbounded above (about 1 when the
    distributions match); coverage is in [0, 1].

    Args:
        real: real activations `[n_real, d]`, n_real >= k + 1.
        fake: generated activations `[n_fake, d]`, n_fake >= 1.
        k: neighbourhood size (the paper uses 5).
        batch_size: rows per float64 distance block.

    Returns:
        `{"density": float, "coverage": float}`.

    Raises:
        ValueError: on bad shapes, non-finite values, too few samples, or bad `k`.
    """
    real, fake, k, batch_size = _prepare(real, fake, k, batch_size, lambda k: 1)
    real_radii = knn_radii_squared(real, k, batch_size)
    real_sq = np.einsum("ij,ij->i", real, real)
    fake_sq = np.einsum("ij,ij->i", fake, fake)
    counts = np.zeros(fake.shape[0], np.int64)
    covered = np.zeros(real.shape[0], bool)
    for rows in _block_rows(real.shape[0], batch_size):
        inside = _squared_distances(real[rows], fake, real_sq[rows], fake_sq) < real_radii[
            rows, None
        ]
        counts += inside.sum(axis=0)
        covered[rows] = inside.any(axis=1)
    return {"density": float(counts.mean() / k), "coverage": float(covered.mean())}
