"""Gradient penalties against TF-GAN's wasserstein_gradient_penalty and closed forms."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kgan import networks, penalties


def linear_critic(weights, bias=0.3):
    """D(x) = w . flatten(x) + b: its input gradient is w for every x."""
    weights = np.asarray(weights, dtype="float32")
    model = keras.Sequential([keras.Input(weights.shape), keras.layers.Flatten(), keras.layers.Dense(1)])
    model.layers[-1].set_weights([weights.reshape(-1, 1), np.array([bias], dtype="float32")])
    return model


def small_conv_critic():
    keras.utils.set_random_seed(3)
    return keras.Sequential([
        keras.Input((6, 6, 2)),
        keras.layers.Conv2D(4, 3, activation="tanh"),
        keras.layers.Flatten(),
        keras.layers.Dense(1),
    ])


def test_gradient_penalty_matches_tfgan_with_the_same_alpha(tfgan, monkeypatch):
    losses_impl, _ = tfgan
    critic = small_conv_critic()
    rng = np.random.default_rng(0)
    real = rng.normal(size=(5, 6, 6, 2)).astype("float32")
    fake = rng.normal(size=(5, 6, 6, 2)).astype("float32")
    alpha = rng.uniform(size=(5, 1, 1, 1)).astype("float32")

    for target, one_sided in [(1.0, False), (0.5, False), (2.0, True)]:
        # TF-GAN draws alpha with tf.random.uniform inside a graph: substitute ours while tracing.
        monkeypatch.setattr(tf.random, "uniform", lambda shape, **kw: tf.constant(alpha))

        @tf.function
        def reference(target=target, one_sided=one_sided):
            return losses_impl.wasserstein_gradient_penalty(
                real, fake, None, lambda x, _: critic(x), "critic", target=target, one_sided=one_sided
            )

        expected = float(reference())
        monkeypatch.undo()
        ours = penalties.GradientPenalty(weight=1.0, target=target, one_sided=one_sided)(critic, real, fake, alpha=alpha)
        assert ours.shape == (5,)
        np.testing.assert_allclose(float(np.mean(ours)), expected, rtol=1e-5)


def test_gradient_penalty_on_a_linear_critic_is_closed_form():
    w = np.array([[0.6, -0.2], [0.3, 0.1]], dtype="float32")  # ||w|| = sqrt(0.5)
    critic = linear_critic(w)
    real = np.random.default_rng(1).normal(size=(4, 2, 2)).astype("float32")
    fake = np.random.default_rng(2).normal(size=(4, 2, 2)).astype("float32")
    norm = np.sqrt(np.sum(w.astype("float64") ** 2) + 1e-10)
    got = np.asarray(penalties.GradientPenalty(weight=10.0)(critic, real, fake))
    np.testing.assert_allclose(got, [10 * (norm - 1) ** 2] * 4, rtol=1e-5)
    # One-sided: a norm below the target is not penalised.
    assert np.allclose(penalties.GradientPenalty(one_sided=True)(critic, real, fake), 0.0)
    # Per-sample alpha: interpolates lie on the segment between each real and fake pair.
    gp = penalties.GradientPenalty(seed=0)
    x = np.asarray(gp.interpolate(real, fake))
    alpha = (x - real) / (fake - real)
    assert np.allclose(alpha, alpha[:, :1, :1], atol=1e-4)  # one alpha per sample
    assert np.all((alpha >= 0) & (alpha <= 1)) and np.std(alpha[:, 0, 0]) > 0


def test_gradient_penalty_differentiates_through_the_inner_tape():
    # d/dw of (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||: the outer tape must see the inner gradient.
    w = np.array([0.6, -0.8, 1.2], dtype="float32")
    critic = linear_critic(w)
    x = np.ones((2, 3), dtype="float32")
    with tf.GradientTape() as tape:
        pen = tf.reduce_mean(penalties.GradientPenalty(weight=1.0)(critic, x, x))
    grad = tape.gradient(pen, critic.layers[-1].kernel)
    norm = np.linalg.norm(w)
    np.testing.assert_allclose(grad.numpy()[:, 0], 2 * (norm - 1) * w / norm, rtol=1e-4)


def test_r1_is_half_gamma_squared_gradient_norm_on_real_data():
    w = np.array([0.5, -1.5, 2.0], dtype="float32")
    critic = linear_critic(w)
    real = np.zeros((3, 3), dtype="float32")
    np.testing.assert_allclose(np.asarray(penalties.R1(gamma=4.0)(critic, real)), [2.0 * np.sum(w**2)] * 3, rtol=1e-5)


def test_r1_on_a_nonlinear_critic_matches_a_finite_difference():
    critic = small_conv_critic()
    real = np.random.default_rng(5).normal(size=(1, 6, 6, 2)).astype("float64")
    eps = 1e-3
    grad = np.zeros_like(real)
    for idx in np.ndindex(real.shape[1:]):
        up, down = real.copy(), real.copy()
        up[(0, *idx)] += eps
        down[(0, *idx)] -= eps
        grad[(0, *idx)] = (float(critic(up.astype("float32"))[0, 0]) - float(critic(down.astype("float32"))[0, 0])) / (2 * eps)
    expected = 0.5 * 10.0 * np.sum(grad**2)
    np.testing.assert_allclose(float(penalties.R1(10.0)(critic, real.astype("float32"))[0]), expected, rtol=2e-2)


def test_penalty_validation_and_get():
    with pytest.raises(ValueError):
        penalties.GradientPenalty(weight=-1)
    with pytest.raises(ValueError):
        penalties.GradientPenalty(target=0)
    with pytest.raises(ValueError):
        penalties.R1(gamma=-1)
    assert penalties.get(None) is None
    assert isinstance(penalties.get("gp"), penalties.GradientPenalty)
    gp = penalties.get({"class_name": "GradientPenalty", "config": {"weight": 5.0, "one_sided": True}})
    assert (gp.weight, gp.one_sided) == (5.0, True)
    assert penalties.get(penalties.serialize(penalties.R1(3.0))).gamma == 3.0
    with pytest.raises(ValueError, match="Could not interpret penalty"):
        penalties.get("nope")


# --- the discriminators' activations: the penalty's exactly-zero second-order path is cut -----


def _conv_critic(activation):
    """A 2-layer conv critic with fixed weights whose activations are built by `activation()`."""
    keras.utils.set_random_seed(5)
    return keras.Sequential([
        keras.Input((8, 8, 3)),
        keras.layers.Conv2D(4, 3, strides=2, padding="same"),
        activation(),
        keras.layers.Conv2D(6, 3, strides=2, padding="same"),
        activation(),
        keras.layers.Flatten(),
        keras.layers.Dense(1),
    ])


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (lambda: networks.LeakyReLU(0.2), lambda: keras.layers.LeakyReLU(0.2)),
        (lambda: networks.ReLU(), lambda: keras.layers.ReLU()),
    ],
    ids=["leaky_relu", "relu"],
)
def test_mask_gradient_activations_give_keras_values_and_gradients_of_every_order(ours, theirs):
    fast, reference = _conv_critic(ours), _conv_critic(theirs)
    assert [w.shape for w in fast.weights] == [w.shape for w in reference.weights]
    rng = np.random.default_rng(4)
    real, fake = (rng.normal(size=(5, 8, 8, 3)).astype("float32") for _ in range(2))
    alpha = rng.uniform(size=(5, 1, 1, 1)).astype("float32")

    def penalty_and_gradients(critic):
        with tf.GradientTape() as tape:
            values = penalties.GradientPenalty(weight=10.0)(critic, real, fake, alpha=alpha)
            loss = tf.reduce_mean(values)
        gradients = tape.gradient(loss, critic.trainable_variables)
        return values.numpy(), [None if g is None else g.numpy() for g in gradients]

    np.testing.assert_array_equal(fast(real).numpy(), reference(real).numpy())
    values, gradients = penalty_and_gradients(fast)
    expected_values, expected_gradients = penalty_and_gradients(reference)
    np.testing.assert_allclose(values, expected_values, rtol=1e-6)
    assert np.all(values > 0)
    for variable, got, expected in zip(fast.trainable_variables, gradients, expected_gradients, strict=False):
        if got is None:  # the biases: the input gradient does not depend on them
            assert "bias" in variable.path
            assert expected is None or not np.any(expected)  # Keras: None (dense) or zeros (conv)
        else:
            assert np.abs(expected).max() > 0
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    assert sum(g is not None for g in gradients) == 3  # the three kernels


def test_mask_gradient_stops_the_zero_second_order_path():
    # Keras's LeakyReLU sends zeros_like(x) back from its gradient's gradient: the outer tape
    # then differentiates the whole forward pass again. Ours has no such path (None).
    x = tf.constant(np.linspace(-2.0, 2.0, 12, dtype="float32").reshape(3, 4))
    for layer, path in [(keras.layers.LeakyReLU(0.2), "zeros"), (networks.LeakyReLU(0.2), None),
                        (keras.layers.ReLU(), "zeros"), (networks.ReLU(), None)]:
        with tf.GradientTape() as outer:
            outer.watch(x)
            with tf.GradientTape() as inner:
                inner.watch(x)
                y = tf.reduce_sum(layer(x) * 3.0)
            first = inner.gradient(y, x)
            loss = tf.reduce_sum(tf.square(first))
        second = outer.gradient(loss, x)
        slope = 0.2 if "Leaky" in type(layer).__name__ else 0.0
        np.testing.assert_array_equal(first.numpy(), np.where(x.numpy() > 0, 3.0, 3.0 * slope).astype("float32"))
        if path is None:
            assert second is None
        else:
            np.testing.assert_array_equal(second.numpy(), np.zeros((3, 4), "float32"))


def test_mask_gradient_activations_serialize_and_fall_back():
    layer = keras.layers.deserialize(keras.layers.serialize(networks.LeakyReLU(0.3)))
    assert type(layer) is networks.LeakyReLU and layer.negative_slope == pytest.approx(0.3)
    x = np.array([[-2.0, -0.5, 0.0, 1.5, 7.0]], dtype="float32")
    np.testing.assert_allclose(layer(x), np.where(x > 0, x, 0.3 * x))
    # Non-default ReLU settings take Keras's implementation.
    np.testing.assert_allclose(networks.ReLU(max_value=1.0)(x), np.clip(x, 0.0, 1.0))
    np.testing.assert_allclose(networks.ReLU(negative_slope=0.1, threshold=0.5)(x),
                               keras.layers.ReLU(negative_slope=0.1, threshold=0.5)(x))
    # The networks use them in D only (G keeps Keras's ReLU: it is never differentiated twice).
    generator, discriminator = networks.build((16, 16, 1), 8, batch_norm=False)
    assert any(type(layer) is networks.LeakyReLU for layer in discriminator.layers)
    assert not any(type(layer) is keras.layers.LeakyReLU for layer in discriminator.layers)
    generator, discriminator = networks.build((16, 16, 1), 8, arch="resnet")
    assert any(type(layer) is networks.ReLU for layer in discriminator.layers)
    assert not any(isinstance(layer, networks.ReLU) for layer in generator.layers)
