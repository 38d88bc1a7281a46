"""Tests of kgan.metrics' maths: reference values (TF-GAN, closed forms, hand-worked sets)."""

import math

import numpy as np
import pytest
import scipy.linalg

from kgan import metrics


def _random_activations(n, d, seed, shift=0.0, scale=1.0):
    """Correlated, non-Gaussian activations (ReLU of a random linear map), float64."""
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((d, d)) / np.sqrt(d)
    return np.maximum(rng.standard_normal((n, d)) @ mixing * scale + shift, 0.0)


def _assert_plain_floats(result):
    values = result.values() if isinstance(result, dict) else [result]
    for value in values:
        assert type(value) is float, (result, type(value))


# ------------------------------------------------------------------------------------------
# Frechet distance.


def _tf(x):
    import tensorflow as tf

    return tf.constant(x, dtype=tf.float64)


@pytest.mark.parametrize("method", ["eigh", "cholesky"])
@pytest.mark.parametrize("n_a, n_b, d", [(200, 300, 16), (400, 350, 64)])
def test_frechet_distance_matches_tfgan(tfgan, n_a, n_b, d, method):
    _, classifier_metrics = tfgan
    a = _random_activations(n_a, d, seed=1)
    b = _random_activations(n_b, d, seed=2, shift=0.3, scale=1.2)
    expected = float(classifier_metrics.frechet_classifier_distance_from_activations(_tf(a), _tf(b)))
    value = metrics.frechet_distance(a, b, method=method)
    _assert_plain_floats(value)
    assert value == pytest.approx(expected, rel=1e-6)
    assert value > 0.1  # a real difference, not two zeros agreeing


def test_frechet_distance_diagonal_gaussians_closed_form():
    # For diagonal covariances the matrices commute and
    # d^2 = ||mu1 - mu2||^2 + sum_i (sqrt(s1_i) - sqrt(s2_i))^2.
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.standard_normal(32), rng.standard_normal(32)
    s1, s2 = rng.uniform(0.1, 3.0, 32), rng.uniform(0.1, 3.0, 32)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    value = metrics.frechet_distance_from_statistics(mu1, np.diag(s1), mu2, np.diag(s2))
    _assert_plain_floats(value)
    assert value == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_commuting_full_covariances_closed_form():
    # S1 = Q diag(a) Q^T, S2 = Q diag(b) Q^T share eigenvectors, so
    # Tr(S1 + S2 - 2 (S1 S2)^(1/2)) = sum (sqrt a - sqrt b)^2, with non-diagonal matrices.
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.standard_normal((48, 48)))
    a, b = rng.uniform(0.0, 2.0, 48), rng.uniform(0.0, 2.0, 48)
    a[:5] = 0.0  # rank-deficient S1: eigenvalues at (or round-off below) 0 are clipped
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    mu = rng.standard_normal(48)
    expected = 1.0 + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)  # ||mu - (mu + e_0)||^2 = 1
    shifted = mu.copy()
    shifted[0] += 1.0
    value = metrics.frechet_distance_from_statistics(mu, s1, shifted, s2)
    assert value == pytest.approx(expected, rel=1e-8)
    # The Cholesky route cannot factor the singular S1 and falls back to the eigh route;
    # with the roles swapped S2 is positive definite and it factors.
    cholesky = metrics.frechet_distance_from_statistics(mu, s1, shifted, s2, method="cholesky")
    assert cholesky == pytest.approx(expected, rel=1e-8)
    swapped = metrics.frechet_distance_from_statistics(shifted, s2, mu, s1, method="cholesky")
    assert swapped == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_agrees_with_sqrtm_route_and_is_zero_on_itself():
    a = _random_activations(300, 32, seed=3)
    b = _random_activations(300, 32, seed=4, shift=0.1)
    mu1, s1 = a.mean(0), np.cov(a, rowvar=False)
    mu2, s2 = b.mean(0), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    reference = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    assert metrics.frechet_distance(a, b) == pytest.approx(reference, rel=1e-8)
    assert abs(metrics.frechet_distance(a, a)) < 1e-9
    # The trace term alone, by the symmetric route, against the definition.
    assert metrics.trace_sqrt_product(s1, s2) == pytest.approx(np.trace(covmean), rel=1e-8)


def test_frechet_distance_accepts_statistics():
    a = _random_activations(100, 8, seed=5)
    b = _random_activations(120, 8, seed=6, shift=0.5)
    stats_b = metrics.ActivationStatistics.from_activations(b, batch_size=7)
    assert metrics.frechet_distance(a, stats_b) == pytest.approx(
        metrics.frechet_distance(a, b), rel=1e-12
    )


def test_streaming_statistics_equal_numpy_on_the_full_array():
    rng = np.random.default_rng(7)
    # A large common offset: naive sum-of-squares accumulation would lose digits here.
    data = 1e4 + rng.standard_normal((1000, 24)) @ rng.standard_normal((24, 24))
    stats = metrics.ActivationStatistics()
    start = 0
    for size in (1, 2, 97, 300, 600):  # uneven batches, including a single row
        stats.update(data[start:start + size].astype(np.float32 if size == 300 else np.float64))
        start += size
    assert stats.num_samples == 1000 and stats.num_features == 24
    float32_rows = data.copy()
    float32_rows[100:400] = data[100:400].astype(np.float32)
    np.testing.assert_allclose(stats.mean, float32_rows.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.cov, np.cov(float32_rows, rowvar=False), rtol=1e-9, atol=1e-9)


def test_streaming_statistics_merge_and_save_load(tmp_path):
    data = _random_activations(500, 12, seed=8)
    first = metrics.ActivationStatistics.from_activations(data[:123])
    first.merge(metrics.ActivationStatistics.from_activations(data[123:], batch_size=50))
    np.testing.assert_allclose(first.cov, np.cov(data, rowvar=False), rtol=1e-10, atol=1e-14)
    first.save(tmp_path / "stats.npz")
    loaded = metrics.ActivationStatistics.load(tmp_path / "stats.npz")
    assert loaded.num_samples == 500
    np.testing.assert_array_equal(loaded.mean, first.mean)
    np.testing.assert_array_equal(loaded.cov, first.cov)


def test_frechet_distance_validates_inputs():
    a = np.zeros((10, 4))
    with pytest.raises(ValueError, match="same number of features"):
        metrics.frechet_distance(a, np.zeros((10, 5)))
    with pytest.raises(ValueError, match="at least 2 samples"):
        metrics.frechet_distance(a, np.zeros((1, 4)))
    with pytest.raises(ValueError, match="2-D"):
        metrics.frechet_distance(np.zeros(10), a)
    with pytest.raises(ValueError, match="NaN"):
        metrics.frechet_distance(np.full((10, 4), np.nan), a)
    with pytest.raises(ValueError, match="method must be"):
        metrics.frechet_distance(a + np.arange(10)[:, None], a * 2 + 1, method="sqrtm")
    with pytest.raises(ValueError, match=r"\[d, d\]"):
        metrics.frechet_distance_from_statistics(np.zeros(3), np.eye(4), np.zeros(3), np.eye(3))
    stats = metrics.ActivationStatistics().update(np.ones((3, 4)))
    with pytest.raises(ValueError, match="batch has 5 features"):
        stats.update(np.ones((3, 5)))
    with pytest.raises(ValueError, match="at least 2 samples"):
        _ = metrics.ActivationStatistics().update(np.ones((1, 4))).cov


# ------------------------------------------------------------------------------------------
# KID.


@pytest.mark.parametrize("n_a, n_b, d", [(150, 200, 16), (300, 300, 64)])
def test_kid_matches_tfgan(tfgan, n_a, n_b, d):
    # With every sample in one subset (n <= subset_size) kgan's estimate is the single-block
    # unbiased MMD^2 that TF-GAN computes for n <= max_block_size.
    _, classifier_metrics = tfgan
    a = _random_activations(n_a, d, seed=10)
    b = _random_activations(n_b, d, seed=11, shift=0.2)
    expected = float(
        classifier_metrics.kernel_classifier_distance_from_activations(_tf(a), _tf(b))
    )
    result = metrics.kernel_inception_distance(a, b)
    _assert_plain_floats(result)
    assert result["mean"] == pytest.approx(expected, rel=1e-6)
    assert result["std"] == 0.0
    assert expected > 1e-3


def test_the_polynomial_kernel_is_the_cube_to_the_last_bits():
    from kgan.metrics import kernel

    x, y = _random_activations(50, 8, seed=1), _random_activations(40, 8, seed=2, shift=0.3)
    closed_form = np.array([[(xi @ yj / 8 + 1.0) ** 3 for yj in y] for xi in x])  # libm pow, element by element
    got = kernel._kernel(x, y)
    assert got.shape == (50, 40) and got.dtype == np.float64
    np.testing.assert_allclose(got, closed_form, rtol=4e-16, atol=0)  # at most ~1.5 units in the last place


def _kid_by_hand(a, b, subset_size, num_subsets, seed):
    """Each subset's unbiased MMD^2, the subsets rebuilt with KID's sampler (same seed, same order)."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(num_subsets):
        x = a[rng.choice(len(a), min(subset_size, len(a)), replace=False)]
        y = b[rng.choice(len(b), min(subset_size, len(b)), replace=False)]
        values.append(metrics.polynomial_mmd2_unbiased(x, y))
    return values


def test_kid_subsets_average_the_unbiased_estimator():
    a = _random_activations(400, 16, seed=12)
    b = _random_activations(300, 16, seed=13, shift=0.2)
    result = metrics.kernel_inception_distance(a, b, subset_size=100, num_subsets=20, seed=3)
    values = _kid_by_hand(a, b, 100, 20, seed=3)
    assert result["mean"] == pytest.approx(np.mean(values), rel=1e-12)
    assert result["std"] == pytest.approx(np.std(values), rel=1e-12)
    assert result["std"] > 0
    # Same seed, same answer; the subset mean estimates the full-data value.
    assert metrics.kernel_inception_distance(a, b, 100, 20, seed=3) == result
    full = metrics.kernel_inception_distance(a, b)["mean"]
    assert abs(result["mean"] - full) < 4 * result["std"]


def test_kid_with_all_of_b_in_every_subset_is_the_subset_by_subset_average():
    # n_b <= subset_size < n_a: each subset holds all of b, so b's terms are computed once;
    # the estimate is the one polynomial_mmd2_unbiased gives subset by subset (summation order apart).
    a = _random_activations(500, 16, seed=15).astype("float32")
    b = _random_activations(150, 16, seed=16, shift=0.2).astype("float32")
    result = metrics.kernel_inception_distance(a, b, subset_size=200, num_subsets=12, seed=4)
    values = _kid_by_hand(a, b, 200, 12, seed=4)
    assert result["mean"] == pytest.approx(np.mean(values), rel=1e-12)
    assert result["std"] == pytest.approx(np.std(values), rel=1e-9)
    assert result["std"] > 0
    reference = metrics.KernelReference(a)
    assert metrics.kernel_inception_distance(reference, b, 200, 12, seed=4) == result


def test_a_kid_reference_gives_the_same_bits_and_computes_its_subsets_terms_once(monkeypatch):
    from kgan.metrics import kernel

    a = _random_activations(400, 16, seed=12).astype("float32")
    reference = metrics.KernelReference(a)
    calls = []
    within = kernel._within
    monkeypatch.setattr(kernel, "_within", lambda x: calls.append(len(x)) or within(x))
    for shift in (0.1, 0.2):
        b = _random_activations(300, 16, seed=13, shift=shift).astype("float32")
        for subset_size, num_subsets in ((100, 20), (1000, 1)):
            assert metrics.kernel_inception_distance(reference, b, subset_size, num_subsets, seed=3) == (
                metrics.kernel_inception_distance(a, b, subset_size, num_subsets, seed=3))
    # Plain arrays: both sets' terms in every call; the reference's: once, for both b.
    assert calls.count(100) == 2 * (20 + 20) + (20 + 2 * 20) and calls.count(400) == 2 + 1


def test_kid_is_unbiased_near_zero_for_one_distribution():
    a = _random_activations(1000, 8, seed=14)
    # Two halves of one sample: the unbiased estimate straddles 0 (it can be negative).
    value = metrics.kernel_inception_distance(a[:500], a[500:])["mean"]
    separated = metrics.kernel_inception_distance(a[:500], a[500:] + 0.5)["mean"]
    assert abs(value) < 0.02 * separated


def test_kid_validates_inputs():
    with pytest.raises(ValueError, match="subset_size"):
        metrics.kernel_inception_distance(np.ones((5, 2)), np.ones((5, 2)), subset_size=1)
    with pytest.raises(ValueError, match="num_subsets"):
        metrics.kernel_inception_distance(np.ones((5, 2)), np.ones((5, 2)), num_subsets=0)
    with pytest.raises(ValueError, match="same number of features"):
        metrics.kernel_inception_distance(np.ones((5, 2)), np.ones((5, 3)))


# ------------------------------------------------------------------------------------------
# Inception Score.


def test_inception_score_matches_tfgan_classifier_score(tfgan):
    _, classifier_metrics = tfgan
    rng = np.random.default_rng(20)
    logits = 3.0 * rng.standard_normal((500, 10))
    expected = float(classifier_metrics.classifier_score_from_logits(_tf(logits)))
    from_logits = metrics.inception_score(logits, splits=1, from_logits=True)
    _assert_plain_floats(from_logits)
    assert from_logits["mean"] == pytest.approx(expected, rel=1e-6)
    assert from_logits["std"] == 0.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert metrics.inception_score(probs, splits=1)["mean"] == pytest.approx(expected, rel=1e-6)
    # Ten splits: mean / std (ddof 0) of TF-GAN's score on each consecutive tenth.
    parts = [
        float(classifier_metrics.classifier_score_from_logits(_tf(logits[i * 50:(i + 1) * 50])))
        for i in range(10)
    ]
    ten = metrics.inception_score(logits, from_logits=True)
    assert ten["mean"] == pytest.approx(np.mean(parts), rel=1e-6)
    assert ten["std"] == pytest.approx(np.std(parts), rel=1e-5)


def test_inception_score_extremes():
    # One-hot predictions spread evenly over C classes: KL = log C for every sample -> IS = C.
    probs = np.eye(10)[np.arange(200) % 10]
    ten_classes = metrics.inception_score(probs, splits=2)
    assert ten_classes["mean"] == pytest.approx(10.0) and ten_classes["std"] < 1e-12
    # Every sample predicted the same: p(y|x) = p(y) -> IS = 1.
    same = np.tile([0.7, 0.2, 0.1], (30, 1))
    assert metrics.inception_score(same, splits=3)["mean"] == pytest.approx(1.0)


def test_inception_score_validates_inputs():
    with pytest.raises(ValueError, match="from_logits=True"):
        metrics.inception_score(np.ones((20, 3)), splits=2)
    with pytest.raises(ValueError, match="at least 10 samples"):
        metrics.inception_score(np.eye(3), splits=10)
    with pytest.raises(ValueError, match="splits"):
        metrics.inception_score(np.eye(3), splits=0)


# ------------------------------------------------------------------------------------------
# Precision / recall, density / coverage (1-D points as [N, 1] so distances are exact).


def _column(values):
    return np.asarray(values, np.float64)[:, None]


@pytest.mark.parametrize("batch_size", [1, 2, 1024])
def test_precision_recall_hand_worked(batch_size):
    # real = {0, 1, 10, 11, 20, 21}; k = 1: every real ball has radius 1 (its nearest other
    # real point is 1 away).
    # fake = {0, 0.25, 30, 30.5}; k = 1 radii: 0 -> 0.25, 0.25 -> 0.25, 30 -> 0.5, 30.5 -> 0.5.
    # precision: 0 (dist 0 to real 0) and 0.25 (dist 0.25) are inside real balls, 30 and
    #   30.5 (9 and 9.5 from real 21) are not -> 2/4 = 0.5.
    # recall: only real 0 is inside a fake ball (dist 0 <= 0.25); real 1 is 0.75 from fake
    #   0.25, the rest are far -> 1/6.
    real = _column([0, 1, 10, 11, 20, 21])
    fake = _column([0, 0.25, 30, 30.5])
    result = metrics.precision_recall(real, fake, k=1, batch_size=batch_size)
    _assert_plain_floats(result)
    assert result == {"precision": 0.5, "recall": pytest.approx(1 / 6)}


def test_precision_recall_k3_identical_and_disjoint_sets():
    # k = 3 on a 4 x 4 integer grid: with fake == real every fake point is the centre of a
    # real ball (distance 0) and vice versa -> precision = recall = 1. Shifted by 100 units
    # (radii are at most sqrt(5)) no point is inside any ball -> 0 and 0.
    grid = np.stack(np.meshgrid(np.arange(4.0), np.arange(4.0)), axis=-1).reshape(-1, 2)
    assert metrics.precision_recall(grid, grid) == {"precision": 1.0, "recall": 1.0}
    assert metrics.precision_recall(grid, grid + 100.0) == {"precision": 0.0, "recall": 0.0}
    # k = 3 (the paper's default): the radius of corner (0, 0) is its 3rd neighbour distance,
    # sqrt(2) (neighbours at 1, 1, sqrt 2); fake (-1.2, 0) is 1.2 from (0, 0): inside.
    # Edge point (1, 0): neighbours 1, 1, 1 -> radius 1, and (-1.2, 0) is 2.2 away.
    # So precision of {(-1.2, 0), (50, 50), (60, 60), (70, 70)} is 1/4.
    fake = np.array([[-1.2, 0.0], [50.0, 50.0], [60.0, 60.0], [70.0, 70.0]])
    assert metrics.precision_recall(grid, fake)["precision"] == 0.25


@pytest.mark.parametrize("batch_size", [1, 4, 1024])
def test_density_coverage_hand_worked(batch_size):
    # real = {0, 1, 10, 11, 20, 21}, k = 1: radius 1 each (k + 1 = 2nd smallest distance,
    # the smallest being the point itself). Boundaries are exclusive (d < r).
    # fake = {0.5, 0.25, 10.5, 50}:
    #   0.5 is inside the balls of 0 and 1 (0.5 < 1 each)    -> 2
    #   0.25 inside 0 (0.25) and 1 (0.75)                     -> 2
    #   10.5 inside 10 and 11                                 -> 2
    #   50 inside none                                        -> 0
    # density = (2 + 2 + 2 + 0) / (k * 4) = 1.5
    # coverage: real balls holding a fake: 0, 1, 10, 11 (not 20, 21) -> 4/6
    real = _column([0, 1, 10, 11, 20, 21])
    fake = _column([0.5, 0.25, 10.5, 50])
    result = metrics.density_coverage(real, fake, k=1, batch_size=batch_size)
    _assert_plain_floats(result)
    assert result == {"density": 1.5, "coverage": pytest.approx(4 / 6)}


def test_density_coverage_boundary_and_identical_sets():
    # Evenly spaced real points 0..9, k = 1: radius 1. fake == real: each fake lies only in
    # its own ball (neighbours are exactly 1 away and the boundary is exclusive) -> density
    # 1/k = 1, coverage 1. A fake at exactly 1 from real 9 (fake 10) is in no ball.
    real = _column(np.arange(10))
    assert metrics.density_coverage(real, real, k=1) == {"density": 1.0, "coverage": 1.0}
    assert metrics.density_coverage(real, _column([10.0]), k=1) == {
        "density": 0.0,
        "coverage": 0.0,
    }
    # k = 5 (the paper's default) with a far-away fake set: nothing is covered.
    assert metrics.density_coverage(real, real + 1000.0) == {"density": 0.0, "coverage": 0.0}


def test_manifold_metrics_validate_inputs():
    with pytest.raises(ValueError, match="at least 4 samples"):
        metrics.precision_recall(np.zeros((3, 2)), np.zeros((10, 2)), k=3)
    with pytest.raises(ValueError, match="fake needs at least 4"):
        metrics.precision_recall(np.zeros((10, 2)), np.zeros((3, 2)), k=3)
    with pytest.raises(ValueError, match="at least 6 samples"):
        metrics.density_coverage(np.zeros((5, 2)), np.zeros((10, 2)))
    with pytest.raises(ValueError, match="same number of features"):
        metrics.density_coverage(np.zeros((10, 2)), np.zeros((10, 3)))
    with pytest.raises(ValueError, match="k must be"):
        metrics.precision_recall(np.zeros((10, 2)), np.zeros((10, 2)), k=0)


# ------------------------------------------------------------------------------------------
# Mode metrics.


def test_mixture_modes_are_the_benchmark_protocol():
    ring = metrics.mixture_modes("ring8")
    assert ring.std == 0.01 and ring.means.shape == (8, 2)
    angles = 2 * np.pi * np.arange(8) / 8
    np.testing.assert_allclose(ring.means, np.stack([np.cos(angles), np.sin(angles)], 1))
    # 8 distinct modes on the unit circle (linspace with its endpoint would repeat one).
    assert len({tuple(np.round(m, 6)) for m in ring.means}) == 8
    np.testing.assert_allclose(np.linalg.norm(ring.means, axis=1), 1.0)
    grid = metrics.mixture_modes("grid25")
    assert grid.std == 0.05
    axis = [-4, -2, 0, 2, 4]
    assert {tuple(m) for m in grid.means} == {(x, y) for x in axis for y in axis}
    with pytest.raises(ValueError, match="Unknown mixture"):
        metrics.mixture_modes("ring7")
    # The data pipeline samples around these same centres.
    from kgan import data

    assert data.mixture_modes is metrics.mixture_modes


def test_ring8_mode_metrics_hand_placed():
    means = metrics.mixture_modes("ring8").means
    # Every mode twice: 8 modes, 100% high quality, uniform histogram -> KL 0.
    all_modes = metrics.mode_metrics(np.repeat(means, 2, axis=0), "ring8")
    _assert_plain_floats(all_modes)
    assert all_modes == {
        "modes_captured": 8.0,
        "high_quality_percent": 100.0,
        "reverse_kl": 0.0,
        "num_modes": 8.0,
        "num_samples": 16.0,
    }
    # All samples on mode 0: p = (1, 0, ..., 0) -> KL(p || u) = 1 * log(1 / (1/8)) = log 8.
    one_mode = metrics.mode_metrics(np.repeat(means[:1], 10, axis=0), "ring8")
    assert one_mode["modes_captured"] == 1.0
    assert one_mode["reverse_kl"] == pytest.approx(math.log(8))
    # One sample per mode plus 2 at the origin (1 = 100 std from every mode): 8/10 high
    # quality; the high-quality histogram is still uniform -> KL 0.
    off = np.concatenate([means, np.zeros((2, 2))])
    result = metrics.mode_metrics(off, "ring8")
    assert result["modes_captured"] == 8.0
    assert result["high_quality_percent"] == pytest.approx(80.0)
    assert result["reverse_kl"] == pytest.approx(0.0, abs=1e-12)
    # 3 samples on mode 0 and 1 on mode 1: p = (3/4, 1/4), zero-count modes contribute 0:
    # KL = 3/4 log(3/4 * 8) + 1/4 log(1/4 * 8) = 3/4 log 6 + 1/4 log 2.
    skewed = metrics.mode_metrics(means[[0, 0, 0, 1]], "ring8")
    assert skewed["modes_captured"] == 2.0
    assert skewed["reverse_kl"] == pytest.approx(0.75 * math.log(6) + 0.25 * math.log(2))
    # High quality means < 3 std (0.03) from the nearest mode: 2.9 std in, 3.1 std out.
    edge = means[[2, 2]] + np.array([[0.029, 0.0], [0.031, 0.0]])
    edge_result = metrics.mode_metrics(edge, "ring8")
    assert edge_result["high_quality_percent"] == 50.0
    assert edge_result["modes_captured"] == 1.0
    # Nothing high quality: no modes, 0%, and the reverse KL is undefined (NaN).
    nothing = metrics.mode_metrics(np.full((5, 2), 3.0), "ring8")
    assert nothing["modes_captured"] == 0.0 and nothing["high_quality_percent"] == 0.0
    assert math.isnan(nothing["reverse_kl"])


@pytest.mark.parametrize("name", ["ring8", "grid25"])
def test_mode_metrics_on_true_mixture_samples(name):
    # 2,500 samples of the true mixture (PacGAN's protocol size). In 2-D the squared
    # Mahalanobis distance is chi^2 with 2 degrees of freedom, so P(distance < 3) =
    # 1 - exp(-9 / 2) = 98.89% (binomial std 0.2% at N = 2,500); all modes are hit and the
    # histogram is close to uniform (KL about (modes - 1) / (2 N) < 0.01).
    means, std = metrics.mixture_modes(name)
    rng = np.random.default_rng(0)
    samples = means[rng.integers(len(means), size=2500)] + std * rng.standard_normal((2500, 2))
    result = metrics.mode_metrics(samples, name)
    assert result["modes_captured"] == len(means)
    assert result["high_quality_percent"] == pytest.approx(100 * (1 - math.exp(-4.5)), abs=1.0)
    assert 0.0 < result["reverse_kl"] < 0.01


def test_grid25_mode_metrics_hand_placed():
    means = metrics.mixture_modes("grid25").means
    result = metrics.mode_metrics(means, "grid25")
    assert (result["modes_captured"], result["high_quality_percent"], result["reverse_kl"]) == (
        25.0,
        100.0,
        0.0,
    )
    # std 0.05: (2.14, 0) is 2.8 std from mode (2, 0) -> high quality; (2.16, 0) is 3.2 std
    # away -> not; (1, 1) is 1 / 0.05 = 20 std from four modes -> not.
    points = np.array([[2.14, 0.0], [2.16, 0.0], [1.0, 1.0], [-4.0, -4.0]])
    partial = metrics.mode_metrics(points, "grid25")
    assert partial["modes_captured"] == 2.0
    assert partial["high_quality_percent"] == 50.0
    # Two modes with one high-quality sample each: KL = log(25 / 2).
    assert partial["reverse_kl"] == pytest.approx(math.log(12.5))


def test_stacked_digit_modes_hand_worked():
    every = np.array([[i // 100, (i // 10) % 10, i % 10] for i in range(1000)])
    result = metrics.stacked_digit_modes(every)
    _assert_plain_floats(result)
    assert result["modes_captured"] == 1000.0 and result["reverse_kl"] == pytest.approx(0.0)
    single = metrics.stacked_digit_modes(np.tile([3, 1, 4], (50, 1)))
    assert single["modes_captured"] == 1.0
    assert single["reverse_kl"] == pytest.approx(math.log(1000))
    # Two triples, half each: KL = 2 * (1/2) log(1/2 * 1000) = log 500.
    two = metrics.stacked_digit_modes(np.array([[0, 0, 0], [9, 9, 9]] * 7))
    assert two["modes_captured"] == 2.0 and two["reverse_kl"] == pytest.approx(math.log(500))
    with pytest.raises(ValueError, match=r"in \[0, 10\)"):
        metrics.stacked_digit_modes(np.array([[0, 0, 10]]))
    with pytest.raises(ValueError, match="integers"):
        metrics.stacked_digit_modes(np.zeros((3, 3)))


def test_mode_metrics_stacked_digits_with_a_given_classifier():
    # A stand-in classifier reads the digit from a channel's constant grey level:
    # class c <-> pixel value -1 + 2 c / 9.
    def classifier(images):
        classes = np.rint((images.mean(axis=(1, 2, 3)) + 1.0) * 4.5).astype(int)
        return np.eye(10)[classes]

    triples = np.array([[1, 2, 3], [1, 2, 3], [4, 5, 6], [0, 0, 9]])
    images = np.broadcast_to((-1.0 + 2.0 * triples / 9.0)[:, None, None, :], (4, 8, 8, 3))
    result = metrics.mode_metrics(images, "stacked_digits", classifier=classifier)
    # 3 distinct triples; p = (1/2, 1/4, 1/4): KL = 1/2 log 500 + 2 * 1/4 log 250.
    assert result["modes_captured"] == 3.0
    assert result["reverse_kl"] == pytest.approx(0.5 * math.log(500) + 0.5 * math.log(250))
    assert result["num_samples"] == 4.0
    with pytest.raises(ValueError, match=r"\[N, H, W, 3\]"):
        metrics.mode_metrics(images[..., :1], "stacked_digits", classifier=classifier)


def test_mode_metrics_validates_inputs():
    with pytest.raises(ValueError, match="Unknown mode-metrics dataset"):
        metrics.mode_metrics(np.zeros((4, 2)), "ring9")
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        metrics.mode_metrics(np.zeros((4, 3)), "ring8")
    with pytest.raises(ValueError, match="at least 1 samples"):
        metrics.mode_metrics(np.zeros((0, 2)), "grid25")


def test_frechet_docstrings_name_the_real_default_method():
    import inspect

    for function in (metrics.frechet_distance, metrics.frechet_distance_from_statistics):
        default = inspect.signature(function).parameters["method"].default
        assert default == "cholesky" and f'"{default}" (default' in function.__doc__, function.__name__
