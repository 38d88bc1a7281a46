"""Statistics for comparing GAN runs over seeds: NumPy only (no TensorFlow), pure functions.

- `mean_stderr`: mean and standard error over seeds (PacGAN's "mean +- standard error").
- `paired_bootstrap`: a paired comparison of two settings run on the same seeds, the mean of the
  per-seed differences with a percentile bootstrap confidence interval (Efron & Tibshirani 1993,
  ch. 13; `scipy.stats.bootstrap(..., paired=True, method="percentile")` is the reference the
  tests check it against) and the exact sign-flip test's p-value (`sign_flip_p`; Fisher's
  randomisation test of paired differences, reference `scipy.stats.permutation_test(...,
  permutation_type="samples")`). A difference is significant only when both agree: the percentile
  interval alone is too narrow for a few seeds (at 95% it leaves out 0 for 49% of equal settings
  on 2 seeds, 15% on 5, 10% on 10: docs/results/scripts/claims_level.py), the sign-flip test
  keeps its level at any n.
- `oscillation_index`: how much a loss curve still moves at the end of training (the Minkowski
  paper's Figures 2-3 claim, quantified); `swing`: how far a metric moves from one evaluation to
  the next at the end of training (an oscillating sample quality, not a rising one).
- `steps_to_quality`: the first evaluation at which a run captured every mode at the
  high-quality threshold (time to quality).
"""

import numpy as np


def _finite(values):
    return np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype="float64")


def mean_stderr(values):
    """`(mean, standard error with ddof 1, n)` of the finite values; stderr is nan for n < 2."""
    values = _finite(values)
    if values.size == 0:
        return float("nan"), float("nan"), 0
    stderr = float(values.std(ddof=1) / np.sqrt(values.size)) if values.size > 1 else float("nan")
    return float(values.mean()), stderr, int(values.size)


def format_mean_stderr(cell, digits=2):
    """A `mean_stderr` cell as table text: "mean+-stderr", the mean alone for one value, "-" for none."""
    mean, stderr, n = cell
    if n == 0:
        return "-"
    if not np.isfinite(stderr):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f}+-{stderr:.{digits}f}"


def sign_flip_p(diffs, resamples=100000, seed=0):
    """Two-sided p-value of the paired randomisation test that the differences are centred on 0.

    Under the null hypothesis each seed's difference is as likely to have either sign; the p-value
    is the share of the 2^n sign assignments whose mean is at least as far from 0 as the observed
    mean (exact for n <= 16; beyond, `resamples` random assignments, seeded). Its smallest value
    is 2 / 2^n, so fewer than 6 pairs can never reach 0.05. nan for no differences.
    """
    diffs = np.asarray(diffs, dtype="float64")
    n = diffs.size
    if n == 0:
        return float("nan")
    if n <= 16:
        signs = 1 - 2 * ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1)
    else:
        signs = np.random.default_rng(seed).choice([-1, 1], size=(resamples, n))
    observed = abs(diffs.mean())
    means = np.abs((signs * diffs).mean(axis=1))
    return float(np.mean(means >= observed * (1 - 1e-12)))


def min_pairs_for(confidence=0.95):
    """The fewest pairs whose sign-flip test can reach significance at `confidence` (6 for 95%)."""
    n = 1
    while 2.0 ** (1 - n) >= 1 - confidence:
        n += 1
    return n


def paired_bootstrap(a, b, confidence=0.95, resamples=10000, seed=0):
    """Mean of `a - b` over paired seeds, with a percentile bootstrap interval and a sign-flip test.

    Args:
        a, b: sequences of one metric, `a[i]` and `b[i]` from the same seed. Pairs where either
            value is missing or not finite (a diverged run) are dropped.
        confidence: the interval's coverage, in (0, 1).
        resamples: bootstrap resamples of the seeds (with replacement).
        seed: NumPy seed of the resampling, so a table regenerates to the same digits.

    Returns:
        A dict: `diff` (mean of a - b), `low`, `high` (the interval), `n` (pairs used), `p` (the
        exact sign-flip test's p-value, `sign_flip_p`) and `significant`: the interval excludes 0
        and p < 1 - confidence. With fewer than 2 pairs the interval is nan.

    Raises:
        ValueError: if `a` and `b` differ in length or `confidence` is not in (0, 1).
    """
    if len(a) != len(b):
        raise ValueError(f"paired_bootstrap needs one value of each setting per seed; got {len(a)} and {len(b)}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}")
    pairs = [(x, y) for x, y in zip(a, b, strict=True)
             if x is not None and y is not None and np.isfinite(x) and np.isfinite(y)]
    diffs = np.asarray([x - y for x, y in pairs], dtype="float64")
    result = {"diff": float(diffs.mean()) if diffs.size else float("nan"), "low": float("nan"),
              "high": float("nan"), "n": int(diffs.size), "p": sign_flip_p(diffs), "significant": False}
    if diffs.size < 2:
        return result
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, diffs.size, size=(resamples, diffs.size))].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    excludes_zero = low > 0 or high < 0
    result.update(low=float(low), high=float(high), significant=bool(excludes_zero and result["p"] < 1 - confidence))
    return result


def oscillation_index(curve, tail=0.5):
    """Standard deviation of the last `tail` of a curve, relative to its mean magnitude.

    `std(c[-k:]) / (|mean(c[-k:])| + 1e-12)` with k = ceil(tail * len(c)). 0 for a curve that
    has settled; ~1 or more for one that still swings by its own size. Wasserstein critics'
    losses cross zero, where the ratio blows up: compare those by `oscillation_std` instead.

    Raises:
        ValueError: if `tail` is not in (0, 1] or the curve has no finite value in its tail.
    """
    values = _tail(curve, tail)
    return float(values.std() / (abs(values.mean()) + 1e-12))


def oscillation_std(curve, tail=0.5):
    """Standard deviation of the last `tail` of a curve (the absolute oscillation)."""
    return float(_tail(curve, tail).std())


def swing(curve, tail=0.5):
    """Mean absolute change between consecutive values in the last `tail` of a curve.

    `mean(|c[i+1] - c[i]|)` over the tail's k = ceil(tail * len(c)) values: how far a metric moves
    from one evaluation to the next. Unlike the tail's standard deviation it hardly sees a steady
    trend (a curve rising by 1 a step swings by 1), so it separates a metric that still climbs from
    one that oscillates. Non-finite values are dropped first.

    Raises:
        ValueError: if `tail` is not in (0, 1] or the tail has fewer than two finite values.
    """
    values = _tail(curve, tail)
    if values.size < 2:
        raise ValueError("the curve's tail has fewer than two finite values")
    return float(np.abs(np.diff(values)).mean())


def _tail(curve, tail):
    if not 0 < tail <= 1:
        raise ValueError(f"tail must be in (0, 1]; got {tail}")
    curve = np.asarray(curve, dtype="float64")
    values = curve[len(curve) - int(np.ceil(tail * len(curve))):]
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("the curve has no finite value in its tail")
    return values


def steps_to_quality(steps, modes, high_quality, num_modes, min_high_quality):
    """The first step at which all `num_modes` modes were captured with HQ >= the threshold.

    Args:
        steps: the evaluation steps, increasing.
        modes: modes captured at each evaluation.
        high_quality: high-quality percent at each evaluation.
        num_modes: the mixture's number of modes (8 for ring8, 25 for grid25).
        min_high_quality: the HQ percent a run must reach as well (e.g. 90).

    Returns:
        The step (int), or None if no evaluation reached it.
    """
    for step, m, hq in zip(steps, modes, high_quality, strict=True):
        if m is not None and hq is not None and m >= num_modes and hq >= min_high_quality:
            return int(step)
    return None
