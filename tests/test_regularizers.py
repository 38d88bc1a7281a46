"""kgan.regularizers: historical averaging against NumPy means, its gradient, saving, replicas.

The 2-replica check runs in a subprocess (`python -m tests.test_regularizers`): the CPU must be
split into 2 logical devices before TensorFlow initialises, which the pytest process has done.
"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from kgan.regularizers import HistoricalAveraging


def _dense(seed=0):
    layer = keras.layers.Dense(2)
    layer.build((None, 3))
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(size=(3, 2)).astype("float32"), rng.normal(size=(2,)).astype("float32")])
    return layer


def _history(seed, n):
    """n hand-set values of a Dense(2) on 3 inputs: [(kernel, bias), ...]."""
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(3, 2)).astype("float32"), rng.normal(size=(2,)).astype("float32")) for _ in range(n)]


def test_running_mean_is_the_mean_of_the_history():
    layer = _dense()
    history = [tuple(layer.get_weights())]  # the initial weights count as the first value
    regularizer = HistoricalAveraging(0.5)
    regularizer.build(layer.trainable_variables)
    assert len(regularizer.weights) == 3  # two means and the count, not the Dense's variables
    update = tf.function(lambda: regularizer.update(layer.trainable_variables))
    for i, values in enumerate(_history(1, 6)):
        layer.set_weights(list(values))
        if i % 2:
            update()  # in a graph
        else:
            regularizer.update(layer.trainable_variables)
        history.append(values)
        for j, mean in enumerate(regularizer.means):
            np.testing.assert_allclose(mean.numpy(), np.mean([h[j] for h in history], axis=0), rtol=1e-6, atol=1e-6)
    assert int(regularizer.count.numpy()) == 7


def test_penalty_is_zero_until_the_weights_move():
    layer = _dense()
    regularizer = HistoricalAveraging(3.0)
    regularizer.build(layer.trainable_variables)
    assert float(regularizer(layer.trainable_variables)) == 0.0
    regularizer.update(layer.trainable_variables)  # the same values again: still zero
    assert float(regularizer(layer.trainable_variables)) == 0.0


def test_penalty_and_gradient_equal_numpy():
    weight = 0.7
    layer = _dense()
    initial = layer.get_weights()
    regularizer = HistoricalAveraging(weight)
    regularizer.build(layer.trainable_variables)
    history = _history(2, 3)
    for values in history:
        layer.set_weights(list(values))
        regularizer.update(layer.trainable_variables)
    current = _history(3, 1)[0]
    layer.set_weights(list(current))
    means = [np.mean([initial[j]] + [h[j] for h in history], axis=0).astype("float64") for j in range(2)]

    with tf.GradientTape() as tape:
        penalty = regularizer(layer.trainable_variables)
    gradients = tape.gradient(penalty, layer.trainable_variables)

    expected = weight * sum(np.sum((c.astype("float64") - m) ** 2) for c, m in zip(current, means, strict=False))
    assert penalty.dtype == "float32" and penalty.shape == ()
    np.testing.assert_allclose(float(penalty), expected, rtol=1e-5)
    for gradient, c, m in zip(gradients, current, means, strict=False):
        np.testing.assert_allclose(gradient.numpy(), 2 * weight * (c - m), rtol=1e-5, atol=1e-6)
    # In a graph too.
    np.testing.assert_allclose(float(tf.function(lambda: regularizer(layer.trainable_variables))()), expected,
                               rtol=1e-5)


def test_mixed_precision_state_and_penalty_are_float32():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        layer = _dense()
        regularizer = HistoricalAveraging(1.0)
        regularizer.build(layer.trainable_variables)
    finally:
        keras.config.set_dtype_policy(previous)
    assert all(mean.dtype == "float32" for mean in regularizer.means)
    values = [tf.cast(v + 1.0, "bfloat16") for v in layer.trainable_variables]  # every entry moved by 1
    penalty = regularizer(values)
    assert penalty.dtype == "float32"
    np.testing.assert_allclose(float(penalty), 3 * 2 + 2, rtol=1e-2)  # 8 entries, (1 +- bf16 rounding)^2
    regularizer.update(values)
    assert int(regularizer.count.numpy()) == 2


class Holder(keras.Model):
    """A model holding a regularizer as an attribute, as GAN does."""

    def __init__(self, seed):
        super().__init__()
        self.dense = _dense(seed)
        self.historical = HistoricalAveraging(0.1)
        self.historical.build(self.dense.trainable_variables)
        self.built = True


def test_save_and_load_weights_restore_mean_and_count(tmp_path):
    model = Holder(seed=0)
    for values in _history(4, 3):
        model.dense.set_weights(list(values))
        model.historical.update(model.dense.trainable_variables)
    path = str(tmp_path / "holder.weights.h5")
    model.save_weights(path)

    restored = Holder(seed=1)
    assert int(restored.historical.count.numpy()) == 1
    assert np.abs(restored.historical.means[0].numpy() - model.historical.means[0].numpy()).max() > 0.1
    restored.load_weights(path)
    assert int(restored.historical.count.numpy()) == 4
    for a, b in zip(restored.historical.means, model.historical.means, strict=False):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(restored.dense.kernel.numpy(), model.dense.kernel.numpy())
    assert float(restored.historical(restored.dense.trainable_variables)) == pytest.approx(
        float(model.historical(model.dense.trainable_variables)))


def test_config_round_trip_and_build_config():
    regularizer = HistoricalAveraging(0.25, name="d_historical")
    config = regularizer.get_config()
    assert config["weight"] == 0.25 and config["name"] == "d_historical"
    clone = HistoricalAveraging.from_config(config)
    assert clone.weight == 0.25 and clone.name == "d_historical"
    serialized = keras.saving.serialize_keras_object(regularizer)
    assert serialized["registered_name"] == "kgan>HistoricalAveraging"
    assert keras.saving.deserialize_keras_object(serialized).weight == 0.25

    regularizer.build(_dense().trainable_variables)
    assert regularizer.get_build_config() == {"shapes": [[3, 2], [2]]}
    rebuilt = HistoricalAveraging.from_config(config)
    rebuilt.build_from_config(regularizer.get_build_config())
    assert [tuple(m.shape) for m in rebuilt.means] == [(3, 2), (2,)]


def test_errors():
    with pytest.raises(ValueError, match=">= 0"):
        HistoricalAveraging(-1.0)
    layer = _dense()
    regularizer = HistoricalAveraging(1.0)
    with pytest.raises(ValueError, match="built"):
        regularizer(layer.trainable_variables)
    regularizer.build(layer.trainable_variables)
    with pytest.raises(ValueError, match="2 variables"):
        regularizer(layer.trainable_variables[:1])
    with pytest.raises(ValueError, match="2 variables"):
        regularizer.update(layer.trainable_variables[:1])


# ----------------------------------------------------------------------------------------------
# Two replicas (subprocess).


def replicas(num_replicas):
    """Penalty and updates in replica context (as GAN.train_step), on `num_replicas` CPUs."""
    from kgan import distribute

    strategy = distribute.get_strategy("mirrored", devices=2) if num_replicas > 1 else tf.distribute.get_strategy()
    with strategy.scope():
        layer = _dense()
        regularizer = HistoricalAveraging(0.5)
        regularizer.build(layer.trainable_variables)
    history = _history(5, 3)

    @tf.function
    def step(kernel, bias):
        def replica_fn():
            layer.kernel.assign(kernel)  # the same (mirrored) values on every replica
            layer.bias.assign(bias)
            regularizer.update(layer.trainable_variables)
            return regularizer(layer.trainable_variables)

        return strategy.run(replica_fn)

    for kernel, bias in history:
        step(tf.constant(kernel), tf.constant(bias))
    layer.kernel.assign(np.zeros((3, 2), "float32"))
    layer.bias.assign(np.zeros((2,), "float32"))
    penalties = strategy.experimental_local_results(step(tf.zeros((3, 2)), tf.zeros((2,))))
    return {
        "replicas": strategy.num_replicas_in_sync,
        "means": [[np.asarray(v).tolist() for v in strategy.experimental_local_results(mean.value)]
                  for mean in regularizer.means],
        "count": [int(v) for v in strategy.experimental_local_results(regularizer.count.value)],
        "penalty": [float(p) for p in penalties],
    }


@pytest.mark.slow
def test_two_replicas_hold_the_same_state_as_one(two_replicas):
    one, two = replicas(1), two_replicas
    assert two["replicas"] == 2 and one["replicas"] == 1
    assert one["count"] == [5] and two["count"] == [5, 5]
    for mean_one, mean_two in zip(one["means"], two["means"], strict=False):
        for local in mean_two:  # each replica's copy equals the single replica's
            np.testing.assert_allclose(local, mean_one[0], rtol=1e-6, atol=1e-7)
    initial = _dense().get_weights()
    expected_mean = [np.mean([initial[j]] + [h[j] for h in _history(5, 3)] + [np.zeros_like(initial[j])], axis=0)
                     for j in range(2)]
    np.testing.assert_allclose(one["means"][0][0], expected_mean[0], rtol=1e-6, atol=1e-7)
    expected_penalty = 0.5 * sum(np.sum(m.astype("float64") ** 2) for m in expected_mean)
    np.testing.assert_allclose(two["penalty"], [expected_penalty] * 2, rtol=1e-5)
    np.testing.assert_allclose(one["penalty"], [expected_penalty], rtol=1e-5)


if __name__ == "__main__":
    print(json.dumps(replicas(2)))
