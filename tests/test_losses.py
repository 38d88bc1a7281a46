"""Losses against TF-GAN's losses_impl (independent reference) and hand-computed values."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from kgan import losses, names

REAL = np.array([0.0, 2.0, -1.0, 0.5, -3.0], dtype="float32")
FAKE = np.array([0.0, -3.0, 1.5, -0.2, 4.0], dtype="float32")


def np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x.astype("float64")))


def value(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype="float64")


# ---- TF-GAN reference ---------------------------------------------------------------------


def test_minimax_discriminator_matches_tfgan(tfgan):
    losses_impl, _ = tfgan
    ref = losses_impl.minimax_discriminator_loss(tf.constant(REAL), tf.constant(FAKE), label_smoothing=0.0)
    ours = losses.Minimax().discriminator_loss(REAL, FAKE)
    assert ours.shape == (5,)
    np.testing.assert_allclose(value(ours).mean(), float(ref), rtol=1e-6)


def test_minimax_generator_matches_tfgan_up_to_its_constant(tfgan):
    # TF-GAN's minimax generator loss is -(softplus(-1) + mean softplus(fake)): it evaluates the
    # real-data term on a constant logit 1. Ours drops that constant: log(1 - D(G(z))).
    losses_impl, _ = tfgan
    ref = float(losses_impl.minimax_generator_loss(tf.constant(FAKE), label_smoothing=0.0))
    ours = value(losses.Minimax().generator_loss(FAKE)).mean()
    np.testing.assert_allclose(ours, ref + math.log1p(math.exp(-1.0)), rtol=1e-6)
    np.testing.assert_allclose(value(losses.Minimax().generator_loss(FAKE)), np.log(1 - np_sigmoid(FAKE)), rtol=1e-5)


def test_non_saturating_matches_tfgan_modified(tfgan):
    losses_impl, _ = tfgan
    d_ref = losses_impl.modified_discriminator_loss(tf.constant(REAL), tf.constant(FAKE), label_smoothing=0.0)
    g_ref = losses_impl.modified_generator_loss(tf.constant(FAKE), label_smoothing=0.0)
    loss = losses.NonSaturating()
    np.testing.assert_allclose(value(loss.discriminator_loss(REAL, FAKE)).mean(), float(d_ref), rtol=1e-6)
    np.testing.assert_allclose(value(loss.generator_loss(FAKE)).mean(), float(g_ref), rtol=1e-6)


def test_label_smoothing_is_one_sided_and_matches_tfgan_convention(tfgan):
    # TF-GAN smooths labels to 1 - s/2 (tf.losses convention); kgan's one-sided smoothing
    # (Salimans et al.) sets the real target to 1 - s: kgan(s) == TF-GAN(2 s).
    losses_impl, _ = tfgan
    ref = losses_impl.minimax_discriminator_loss(tf.constant(REAL), tf.constant(FAKE), label_smoothing=0.2)
    ours = losses.Minimax(label_smoothing=0.1).discriminator_loss(REAL, FAKE)
    np.testing.assert_allclose(value(ours).mean(), float(ref), rtol=1e-6)


def test_wasserstein_matches_tfgan(tfgan):
    losses_impl, _ = tfgan
    loss = losses.Wasserstein()
    d_ref = losses_impl.wasserstein_discriminator_loss(tf.constant(REAL), tf.constant(FAKE))
    g_ref = losses_impl.wasserstein_generator_loss(tf.constant(FAKE))
    np.testing.assert_allclose(value(loss.discriminator_loss(REAL, FAKE)).mean(), float(d_ref), rtol=1e-6)
    np.testing.assert_allclose(value(loss.generator_loss(FAKE)).mean(), float(g_ref), rtol=1e-6)


def test_least_squares_matches_tfgan(tfgan):
    losses_impl, _ = tfgan
    loss = losses.LeastSquares()
    d_ref = losses_impl.least_squares_discriminator_loss(tf.constant(REAL), tf.constant(FAKE))
    g_ref = losses_impl.least_squares_generator_loss(tf.constant(FAKE))
    np.testing.assert_allclose(value(loss.discriminator_loss(REAL, FAKE)).mean(), float(d_ref), rtol=1e-6)
    np.testing.assert_allclose(value(loss.generator_loss(FAKE)).mean(), float(g_ref), rtol=1e-6)


# ---- hand-computed ---------------------------------------------------------------------------


def test_hinge_hand_computed():
    # relu(1 - r) + relu(1 + f): r=0,f=0 -> 2; r=2,f=-3 -> 0; r=-1,f=1.5 -> 2 + 2.5;
    # r=0.5,f=-0.2 -> 0.5 + 0.8; r=-3,f=4 -> 4 + 5.
    loss = losses.Hinge()
    np.testing.assert_allclose(value(loss.discriminator_loss(REAL, FAKE)), [2.0, 0.0, 4.5, 1.3, 9.0], rtol=1e-6)
    np.testing.assert_allclose(value(loss.generator_loss(FAKE)), -FAKE, rtol=1e-6)


def test_minkowski_hand_values_at_logit_zero():
    # sigmoid(0) = 1/2: L_D = (1/2^p + 1/2^p) / p, L_G = 1/2^p / p.
    zero = np.zeros(3, dtype="float32")
    for p in (1, 2, 4):
        loss = losses.Minkowski(p=p)
        np.testing.assert_allclose(value(loss.discriminator_loss(zero, zero)), [2 * 0.5**p / p] * 3, rtol=1e-6)
        np.testing.assert_allclose(value(loss.generator_loss(zero)), [0.5**p / p] * 3, rtol=1e-6)
    np.testing.assert_allclose(value(losses.Minkowski(p=4).discriminator_loss(zero, zero)), [0.03125] * 3)


@pytest.mark.parametrize("p", [1, 2, 3, 4, 5, 6, 7, 8, 2.5])
@pytest.mark.parametrize("activation", ["sigmoid", "linear"])
def test_minkowski_against_numpy(p, activation):
    squash = np_sigmoid if activation == "sigmoid" else (lambda x: x.astype("float64"))
    d_real, d_fake = squash(REAL), squash(FAKE)
    expected_d = (np.abs(1 - d_real) ** p + np.abs(d_fake - 0) ** p) / p
    expected_g = np.abs(1 - d_fake) ** p / p
    loss = losses.Minkowski(p=p, activation=activation)
    np.testing.assert_allclose(value(loss.discriminator_loss(REAL, FAKE)), expected_d, rtol=2e-5, atol=1e-12)
    np.testing.assert_allclose(value(loss.generator_loss(FAKE)), expected_g, rtol=2e-5, atol=1e-12)


def test_minkowski_targets_and_label_smoothing():
    p = 3
    loss = losses.Minkowski(p=p, real_target=0.9, fake_target=0.1, label_smoothing=0.05)
    d_real, d_fake = np_sigmoid(REAL), np_sigmoid(FAKE)
    expected_d = (np.abs(0.85 - d_real) ** p + np.abs(d_fake - 0.1) ** p) / p
    expected_g = np.abs(0.9 - d_fake) ** p / p  # one-sided: the generator's target is not smoothed
    np.testing.assert_allclose(value(loss.discriminator_loss(REAL, FAKE)), expected_d, rtol=2e-5)
    np.testing.assert_allclose(value(loss.generator_loss(FAKE)), expected_g, rtol=2e-5)


def test_minkowski_p2_linear_is_least_squares():
    mink = losses.Minkowski(p=2, activation="linear")
    lsq = losses.LeastSquares()
    np.testing.assert_allclose(value(mink.discriminator_loss(REAL, FAKE)), value(lsq.discriminator_loss(REAL, FAKE)), rtol=1e-6)
    np.testing.assert_allclose(value(mink.generator_loss(FAKE)), value(lsq.generator_loss(FAKE)), rtol=1e-6)


@pytest.mark.parametrize("name", names.LOSSES)
def test_extreme_logits_are_finite_with_finite_gradients(name):
    loss = losses.get(name)
    real = tf.Variable([100.0, -100.0, 0.0])
    fake = tf.Variable([-100.0, 100.0, 0.0])
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(loss.discriminator_loss(real, fake)) + tf.reduce_sum(loss.generator_loss(fake))
    grads = tape.gradient(total, [real, fake])
    assert np.isfinite(float(total))
    for g in grads:
        assert np.all(np.isfinite(g.numpy()))


@pytest.mark.parametrize("p", [0, 0.5, -1, float("inf"), float("nan"), "four"])
def test_minkowski_rejects_bad_p(p):
    with pytest.raises(ValueError, match="finite number >= 1"):
        losses.Minkowski(p=p)


def test_outputs_of_shape_b_by_1_and_bad_shapes():
    loss = losses.NonSaturating()
    assert loss.discriminator_loss(REAL[:, None], FAKE[:, None]).shape == (5,)
    with pytest.raises(ValueError, match="shape"):
        loss.discriminator_loss(np.zeros((2, 3)), np.zeros((2, 3)))


def test_get_and_config_round_trip():
    assert isinstance(losses.get("minkowski"), losses.Minkowski)
    assert losses.get("minkowski").p == 4.0
    loss = losses.get({"class_name": "Minkowski", "config": {"p": 2, "activation": "linear"}})
    assert (loss.p, loss.activation) == (2.0, "linear")
    assert losses.deserialize(losses.serialize(loss)) == loss
    assert losses.get(loss) is loss
    for name in names.LOSSES:
        instance = losses.get(name)
        assert type(instance).from_config(instance.get_config()) == instance
    with pytest.raises(ValueError, match="Could not interpret loss identifier"):
        losses.get("nope")
