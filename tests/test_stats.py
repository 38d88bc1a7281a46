"""kgan.stats: against hand-computed values and SciPy's bootstrap."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from kgan import stats


def test_mean_stderr_is_the_mean_and_the_ddof1_standard_error_of_the_finite_values():
    mean, stderr, n = stats.mean_stderr([1.0, 2.0, 6.0, None, float("nan")])
    assert n == 3
    assert mean == pytest.approx(3.0)
    assert stderr == pytest.approx(math.sqrt(7.0) / math.sqrt(3.0))  # var ddof 1 = (4 + 1 + 9) / 2 = 7
    assert math.isnan(stats.mean_stderr([5.0])[1])


def test_paired_bootstrap_matches_scipy_percentile_bootstrap_of_the_mean_difference():
    rng = np.random.default_rng(3)
    a = rng.normal(1.0, 1.0, size=12)
    b = a - 0.5 + rng.normal(0.0, 0.3, size=12)
    ours = stats.paired_bootstrap(a, b, resamples=20000, seed=1)
    reference = scipy_stats.bootstrap((a, b), lambda x, y: np.mean(x - y), paired=True, vectorized=False,
                                      method="percentile", n_resamples=20000, random_state=2)
    assert ours["diff"] == pytest.approx(np.mean(a - b))
    assert ours["n"] == 12
    # Two independent Monte Carlo estimates of the same quantiles: equal to 0.01 (measured 2e-4).
    assert ours["low"] == pytest.approx(reference.confidence_interval.low, abs=0.01)
    assert ours["high"] == pytest.approx(reference.confidence_interval.high, abs=0.01)
    assert ours["low"] < ours["diff"] < ours["high"]
    assert ours["significant"]  # a 0.5 shift with noise 0.3 over 12 seeds


@pytest.mark.parametrize("n", [3, 6, 10, 20])
def test_sign_flip_p_matches_scipys_paired_permutation_test(n):
    rng = np.random.default_rng(n)
    a = rng.normal(0.3, 1.0, size=n)
    b = rng.normal(0.0, 1.0, size=n)
    ours = stats.sign_flip_p(a - b)
    # permutation_type="samples" swaps each pair's members: the sign of each difference. SciPy is
    # exact up to n_resamples; at n = 20 (2^20 assignments) both are Monte Carlo estimates.
    reference = scipy_stats.permutation_test((a, b), lambda x, y, axis: np.mean(x - y, axis=axis), vectorized=True,
                                             permutation_type="samples", n_resamples=2 ** 16, random_state=0).pvalue
    assert ours == pytest.approx(reference, abs=0.0 if n <= 16 else 0.01)


def test_sign_flip_p_by_hand_and_the_fewest_pairs_that_can_be_significant():
    assert stats.sign_flip_p([1.0, 2.0, 3.0]) == 2 / 8  # only all-plus and all-minus reach |mean| 2
    assert stats.sign_flip_p([1.0, -1.0]) == 1.0  # every assignment has |mean| >= 0
    assert stats.sign_flip_p([3.0, 1.0]) == 2 / 4  # |mean| 2 at ++ and --, 1 at +- and -+
    assert math.isnan(stats.sign_flip_p([]))
    assert stats.min_pairs_for(0.95) == 6 and stats.min_pairs_for(0.99) == 8  # 2 / 2^6 < 0.05, 2 / 2^8 < 0.01


def test_paired_bootstrap_is_significant_only_when_the_sign_flip_test_agrees():
    five = stats.paired_bootstrap([3.0] * 5, [1.0] * 5)  # the interval is [2, 2], p = 2 / 32
    assert (five["low"], five["high"], five["p"]) == (2.0, 2.0, 0.0625) and not five["significant"]
    six = stats.paired_bootstrap([3.0] * 6, [1.0] * 6)
    assert six["p"] == 2 / 64 and six["significant"]


def test_paired_bootstrap_drops_incomplete_pairs_and_is_not_significant_for_equal_settings():
    result = stats.paired_bootstrap([1.0, 2.0, None, 4.0], [1.0, 2.0, 3.0, float("nan")])
    assert result["n"] == 2 and result["diff"] == 0.0
    assert result["low"] == result["high"] == 0.0 and not result["significant"]
    single = stats.paired_bootstrap([1.0], [0.0])
    assert single["diff"] == 1.0 and math.isnan(single["low"])
    with pytest.raises(ValueError, match="one value of each setting per seed"):
        stats.paired_bootstrap([1.0, 2.0], [1.0])


def test_paired_bootstrap_is_reproducible_by_seed():
    a, b = [3.0, 1.0, 4.0, 1.0, 5.0], [2.0, 7.0, 1.0, 8.0, 2.0]
    assert stats.paired_bootstrap(a, b, seed=5) == stats.paired_bootstrap(a, b, seed=5)


def test_oscillation_index_of_hand_made_curves():
    settled = [5.0, 3.0, 1.0, 1.0, 1.0, 1.0]
    assert stats.oscillation_index(settled) == pytest.approx(0.0)
    swinging = [0.0, 0.0, 0.0, 0.0, 1.0, 3.0, 1.0, 3.0]  # last half: mean 2, std 1
    assert stats.oscillation_index(swinging) == pytest.approx(0.5)
    assert stats.oscillation_std(swinging) == pytest.approx(1.0)
    assert stats.oscillation_index([9.0, 1.0, 3.0], tail=0.5) == pytest.approx(0.5)  # ceil(1.5) = 2 values
    with pytest.raises(ValueError, match="tail"):
        stats.oscillation_index(swinging, tail=0)


def test_swing_is_the_mean_change_between_evaluations_and_hardly_sees_a_trend():
    oscillating = [0.0, 0.0, 90.0, 60.0, 90.0, 60.0]  # last half [60, 90, 60]: changes 30, 30
    assert stats.swing(oscillating) == pytest.approx(30.0)
    rising = [0.0, 10.0, 20.0, 30.0, 40.0, 50.0]  # last half [30, 40, 50]: std 8.2, swing 10
    assert stats.swing(rising) == pytest.approx(10.0)
    assert stats.swing([1.0, 5.0, 2.0, float("nan"), 4.0], tail=1.0) == pytest.approx((4 + 3 + 2) / 3)
    with pytest.raises(ValueError, match="fewer than two"):
        stats.swing([1.0, 2.0, 3.0], tail=0.3)


def test_steps_to_quality_is_the_first_evaluation_with_all_modes_at_the_threshold():
    steps = [1000, 2000, 3000, 4000]
    modes = [6, 8, 8, 8]
    hq = [95.0, 80.0, 91.0, 99.0]
    assert stats.steps_to_quality(steps, modes, hq, num_modes=8, min_high_quality=90) == 3000
    assert stats.steps_to_quality(steps, modes, hq, num_modes=8, min_high_quality=99.5) is None
