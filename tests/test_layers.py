"""The toolbox layers of kgan/networks/layers.py against NumPy: conditional batch norm (Miyato &
Koyama 2018), global sum pooling, self-attention (SAGAN), minibatch standard deviation (ProGAN);
their configs are their constructor arguments."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kgan.networks import ConditionalBatchNormalization, GlobalSumPooling2D, MinibatchStdDev, SelfAttention

RNG = np.random.default_rng(0)


# --- conditional batch normalisation (Miyato & Koyama 2018) -----------------------------------


@pytest.mark.parametrize("shape", [(3, 4, 4, 5), (6, 7)])
def test_conditional_batch_norm_equals_numpy(shape):
    x = RNG.normal(1.5, 2.0, size=shape).astype("float32")
    labels = np.array([0, 2, 1, 2, 0, 1][: shape[0]], dtype="int32")
    layer = ConditionalBatchNormalization(3, epsilon=1e-3)
    layer(x, labels)  # build
    gamma = RNG.normal(size=(3, shape[-1])).astype("float32")
    beta = RNG.normal(size=(3, shape[-1])).astype("float32")
    layer.gamma.embeddings.assign(gamma)
    layer.beta.embeddings.assign(beta)
    axes = tuple(range(len(shape) - 1))
    normalized = (x - x.mean(axis=axes)) / np.sqrt(x.var(axis=axes) + 1e-3)  # biased variance, as Keras
    index = (slice(None),) + (None,) * (len(shape) - 2)
    expected = gamma[labels][index] * normalized + beta[labels][index]
    np.testing.assert_allclose(layer(x, labels, training=True).numpy(), expected, atol=2e-5)
    # Fresh layer: gamma = 1, beta = 0 for every class, i.e. plain normalisation.
    fresh = ConditionalBatchNormalization(3, epsilon=1e-3)
    np.testing.assert_allclose(fresh(x, labels, training=True).numpy(), normalized, atol=2e-5)


# --- global sum pooling (SNGAN's critic) ------------------------------------------------------


def test_global_sum_pooling_sums():
    x = RNG.normal(size=(2, 3, 5, 4)).astype("float32")
    np.testing.assert_allclose(GlobalSumPooling2D()(x).numpy(), x.sum(axis=(1, 2)), rtol=1e-5, atol=1e-5)


# --- self-attention (SAGAN, Zhang et al. 2019) -----------------------------------------------


def _attention_numpy(x, wq, wk, wv, wo, gamma):
    b, h, w, c = x.shape
    flat = x.reshape(b, h * w, c).astype("float64")
    queries, keys, values = flat @ wq, flat @ wk, flat @ wv
    scores = queries @ keys.transpose(0, 2, 1)  # [B, j, i]
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)  # softmax over i: what j attends to
    return x + gamma * ((weights @ values) @ wo).reshape(b, h, w, c), (weights.transpose(0, 2, 1) @ values) @ wo


def test_self_attention_identity_at_init_and_numpy_maths():
    x = RNG.normal(size=(2, 4, 4, 16)).astype("float32")
    layer = SelfAttention()
    np.testing.assert_array_equal(layer(x).numpy(), x)  # gamma = 0: exactly the input
    kernels = {}
    for name, conv in [("q", layer.query), ("k", layer.key), ("v", layer.value), ("o", layer.attention_output)]:
        value = RNG.normal(0, 0.5, size=conv.kernel.shape).astype("float32")
        conv.kernel.assign(value)
        kernels[name] = value.reshape(value.shape[2], value.shape[3]).astype("float64")
    assert kernels["q"].shape == (16, 2) and kernels["v"].shape == (16, 8) and kernels["o"].shape == (8, 16)
    layer.gamma.assign(0.7)
    expected, wrong_axis = _attention_numpy(x, kernels["q"], kernels["k"], kernels["v"], kernels["o"], 0.7)
    outputs = layer(x).numpy()
    np.testing.assert_allclose(outputs, expected, rtol=1e-4, atol=1e-4)
    # The softmax axis matters: normalising over the queries instead gives something else.
    assert np.abs(outputs - (x + 0.7 * wrong_axis.reshape(x.shape))).max() > 0.1


def test_self_attention_spectral_norm_wraps_its_convolutions():
    layer = SelfAttention(spectral_norm=True)
    layer(RNG.normal(size=(1, 4, 4, 8)).astype("float32"))
    convs = [layer.query, layer.key, layer.value, layer.attention_output]
    assert all(isinstance(conv, keras.layers.SpectralNormalization) for conv in convs)


# --- minibatch standard deviation (ProGAN, Karras et al. 2018) -------------------------------


def _minibatch_std_numpy(x, group_size):
    batch = x.shape[0]
    group = min(group_size, batch)
    groups = batch // group
    feature = np.empty(batch)
    for g in range(groups):
        members = [b for b in range(batch) if b % groups == g]  # ProGAN's layout: strided groups
        std = np.sqrt(x[members].astype("float64").var(axis=0) + 1e-8)  # biased variance
        feature[members] = std.mean()
    return feature


@pytest.mark.parametrize("shape, group_size", [((8, 4, 4, 3), 4), ((3, 4, 4, 3), 4), ((12, 5), 4), ((6, 2, 2, 1), 2)])
def test_minibatch_std_equals_numpy(shape, group_size):
    scale = RNG.uniform(0.5, 2.0, size=(shape[0],) + (1,) * (len(shape) - 1))  # groups differ
    x = (RNG.normal(size=shape) * scale).astype("float32")
    outputs = MinibatchStdDev(group_size)(x).numpy()
    assert outputs.shape == (*shape[:-1], shape[-1] + 1)
    np.testing.assert_array_equal(outputs[..., :-1], x)
    expected = _minibatch_std_numpy(x, group_size)
    extra = outputs[..., -1].reshape(shape[0], -1)
    np.testing.assert_allclose(extra, np.repeat(expected[:, None], extra.shape[1], 1), rtol=1e-5)
    assert len(set(np.round(expected, 6))) == shape[0] // min(group_size, shape[0])  # one value per group
    # The same inside a graph whose batch size is unknown when traced.
    traced = tf.function(MinibatchStdDev(group_size).call).get_concrete_function(
        tf.TensorSpec((None, *shape[1:]), tf.float32))
    np.testing.assert_allclose(traced(tf.constant(x)).numpy(), outputs, rtol=1e-6)


def test_minibatch_std_needs_a_divisible_batch():
    with pytest.raises(ValueError, match="not divisible"):
        MinibatchStdDev(4)(np.zeros((6, 2, 2, 1), "float32"))


# --- serialisation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "layer, init_args",
    [
        (ConditionalBatchNormalization(7, momentum=0.9, epsilon=1e-5),
         {"num_classes": 7, "momentum": 0.9, "epsilon": 1e-5}),
        (SelfAttention(spectral_norm=True), {"spectral_norm": True}),
        (MinibatchStdDev(group_size=2), {"group_size": 2}),
        (GlobalSumPooling2D(), {}),
    ],
)
def test_layer_configs_are_their_init_args(layer, init_args):
    base = set(keras.layers.Layer().get_config())
    config = layer.get_config()
    assert {k: v for k, v in config.items() if k not in base} == init_args
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(clone) is type(layer) and clone.get_config() == config
