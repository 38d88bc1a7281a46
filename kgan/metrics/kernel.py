"""Kernel Inception Distance (KID): unbiased MMD^2 with a cubic polynomial kernel.

Binkowski et al., 2018, "Demystifying MMD GANs" (https://arxiv.org/abs/1801.01401).
Unlike FID, the estimator is unbiased, so values from different sample sizes are comparable
and a value near 0 means "indistinguishable" (it can be slightly negative).
"""

import numpy as np

from kgan.metrics._validation import (
    as_activations,
    check_positive_int,
    check_same_features,
)


def _kernel(x, y):
    """k(x_i, y_j) = (x_i . y_j / d + 1)^3 for all pairs, `[m, n]`.

    The cube is two multiplications: `np.power(k, 3)` calls libm's `pow` per element, ~70x
    slower here (72 vs 0.7 ms for 1000 x 1000; 80% of an evaluation's KID). Each value may
    differ from `pow`'s in its last bit; KID's mean over 10^6 of them by about 1e-16 relative.
    """
    k = x @ y.T
    k /= x.shape[1]
    k += 1.0
    cube = k * k
    cube *= k
    return cube


def _within(x):
    """sum_{i != j} k(x_i, x_j) / (m (m - 1)): one set's term of MMD^2_u."""
    m = x.shape[0]
    k_xx = _kernel(x, x)
    return (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))


def polynomial_mmd2_unbiased(x, y, x_term=None):
    """Unbiased MMD^2 between two samples with k(u, v) = (u.v / d + 1)^3.

    MMD^2_u = sum_{i != j} k(x_i, x_j) / (m (m - 1)) + sum_{i != j} k(y_i, y_j) / (n (n - 1))
              - 2 sum_{i, j} k(x_i, y_j) / (m n)

    Args:
        x: `[m, d]`, m >= 2 (computed in float64).
        y: `[n, d]`, n >= 2.
        x_term: the first term for this `x`, if already known (`KernelReference`).

    Returns:
        The estimate as a Python float.

    Raises:
        ValueError: on non-2-D or non-finite input, fewer than 2 samples, or different
            feature dimensions.
    """
    x = as_activations(x, "x", min_samples=2)
    y = as_activations(y, "y", min_samples=2)
    check_same_features(x, y, "x", "y")
    term_xx = _within(x) if x_term is None else x_term
    return float(term_xx + _within(y) - 2.0 * _kernel(x, y).mean())


class KernelReference:
    """One set's activations for KID, with the kernel terms of its subsets kept once computed.

    `kernel_inception_distance(reference, b)` draws the same subsets of the reference for every
    `b` of the same size (the same seed), so its within-set term (a third of the work) is
    computed on the first call and reused, with bit-identical results.

    Args:
        activations: `[n, d]` (e.g. the real data's), n >= 2.
        max_terms: subsets whose terms are kept (beyond that, they are computed each time).
        name: the argument's name in error messages.
    """

    def __init__(self, activations, max_terms=1000, name="activations"):
        self.activations = as_activations(activations, name, min_samples=2, dtype=None)
        self.max_terms = int(max_terms)
        self._terms = {}

    def term(self, indices):
        """The within-set term of the subset `indices` (None: the whole set)."""
        key = None if indices is None else np.asarray(indices).tobytes()
        if key in self._terms:
            return self._terms[key]
        x = self.activations if indices is None else self.activations[indices]
        value = _within(as_activations(x, "x", min_samples=2))
        if len(self._terms) < self.max_terms:
            self._terms[key] = value
        return value


def kernel_inception_distance(a, b, subset_size=1000, num_subsets=100, seed=0):
    """Kernel Inception Distance: unbiased polynomial-kernel MMD^2 averaged over subsets.

    Binkowski et al., 2018 (https://arxiv.org/abs/1801.01401). Each of `num_subsets` rounds
    draws min(subset_size, n_a) rows of `a` and min(subset_size, n_b) rows of `b` without
    replacement and computes `polynomial_mmd2_unbiased` on them (as in the paper's code,
    stylegan2-ada and torch-fidelity). When both sets fit in one subset every round sees the
    same data, so the estimate is computed once and `std` is 0; it then equals TF-GAN's
    `kernel_classifier_distance_from_activations` (a single block). Cost per subset is about
    4 m^2 d flops in float64. When b fits in one subset (n_b <= subset_size, e.g. 1000
    generated samples scored against a larger real set) every subset holds all of b, so b's
    within-set term and the cross-kernel's row sums are computed once and each subset sums
    its rows of them (the cross-kernel only for the rows the subsets draw): the same estimator
    (within a few units in the last place of the subset-by-subset sums); 10 subsets of 1000
    generated vs 1797 real about 8x faster, vs 10,000 real about 2.5x.

    Args:
        a: activations `[n_a, d]`, n_a >= 2 (e.g. real), or a `KernelReference` of them
            (the same values, its subsets' terms computed once across calls).
        b: activations `[n_b, d]`, n_b >= 2 (e.g. generated).
        subset_size: rows per subset from each set (>= 2).
        num_subsets: number of subsets (>= 1).
        seed: seed of the subset sampler (NumPy `default_rng`).

    Returns:
        `{"mean": float, "std": float}`: the mean over subsets and the standard deviation
        of the per-subset estimates (ddof = 0; a spread, not a standard error).

    Raises:
        ValueError: on non-2-D or non-finite input, fewer than 2 samples, different feature
            dimensions, or bad `subset_size` / `num_subsets`.
    """
    reference = a if isinstance(a, KernelReference) else KernelReference(a, max_terms=0, name="a")
    a = reference.activations
    b = as_activations(b, "b", min_samples=2, dtype=None)
    check_same_features(a, b, "a", "b")
    subset_size = check_positive_int(subset_size, "subset_size", minimum=2)
    num_subsets = check_positive_int(num_subsets, "num_subsets")
    m_a = min(subset_size, a.shape[0])
    m_b = min(subset_size, b.shape[0])
    if m_a == a.shape[0] and m_b == b.shape[0]:
        # Every subset would be a permutation of the full sets: MMD is permutation invariant.
        value = polynomial_mmd2_unbiased(a, b, x_term=reference.term(None))
        return {"mean": value, "std": 0.0}
    rng = np.random.default_rng(seed)
    estimates = np.empty(num_subsets, np.float64)
    if m_b == b.shape[0]:  # every subset of b is all of b (in another order): its terms are computed once
        subsets = []  # the subsets' rows of a, drawn in the stream's order
        for _ in range(num_subsets):
            subsets.append(rng.choice(a.shape[0], m_a, replace=False))
            rng.choice(b.shape[0], m_b, replace=False)  # the order of b's rows: drawn to keep the stream
        whole_b = as_activations(b, "b", min_samples=2)  # float64, as each subset's computation
        used = np.unique(np.concatenate(subsets))  # the cross-kernel's rows, only those drawn
        cross = np.zeros(a.shape[0])
        cross[used] = _cross_row_sums(as_activations(a[used], "a", min_samples=1), whole_b)
        b_term = _within(whole_b)
        for i, rows in enumerate(subsets):
            estimates[i] = reference.term(rows) + b_term - 2.0 * cross[rows].sum() / (m_a * m_b)
        return {"mean": float(estimates.mean()), "std": float(estimates.std())}
    for i in range(num_subsets):
        rows = rng.choice(a.shape[0], m_a, replace=False)
        y = b[rng.choice(b.shape[0], m_b, replace=False)]
        estimates[i] = polynomial_mmd2_unbiased(a[rows], y, x_term=reference.term(rows))
    return {"mean": float(estimates.mean()), "std": float(estimates.std())}


def _cross_row_sums(x, y, chunk=4096):
    """sum_j k(x_i, y_j) for every row of x, `[m]` (the kernel built `chunk` rows at a time)."""
    return np.concatenate([_kernel(x[start:start + chunk], y).sum(axis=1) for start in range(0, x.shape[0], chunk)])
