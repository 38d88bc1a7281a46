"""Networks of the stabilisation toolbox (issue #8): conditional pairs, the `features` layer,
SNGAN ResNets, self-attention, minibatch standard deviation; serialisation and bfloat16."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kgan import distribute, networks
from kgan.networks import ConditionalBatchNormalization, GlobalSumPooling2D, MinibatchStdDev, SelfAttention

RNG = np.random.default_rng(0)


def _count(model, cls):
    return sum(isinstance(layer, cls) for layer in model.layers)


def _dense_weights(model, name):
    """(kernel, bias) of the dense layer `name`, spectrally normalised or not, as NumPy."""
    names = [layer.name for layer in model.layers]
    layer = model.get_layer(name) if name in names else model.get_layer(f"sn_{name}").layer
    return layer.kernel.numpy(), (layer.bias.numpy() if layer.bias is not None else 0.0)


# --- conditional networks (Miyato & Koyama 2018) --------------------------------------------


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


@pytest.mark.parametrize("arch", networks.ARCHS)
def test_conditional_generator_takes_labels_and_uses_conditional_batch_norm(arch):
    plain, _ = networks.build((16, 16, 1), 8, arch=arch)
    generator, _ = networks.build((16, 16, 1), 8, arch=arch, num_classes=10)
    assert [t.name for t in generator.inputs] == ["latent", "labels"]
    assert generator.inputs[1].dtype == "int32" and generator.inputs[1].shape == (None,)
    # Every batch norm of the unconditional G became a conditional one, at the same place.
    bn = {layer.name for layer in plain.layers if isinstance(layer, keras.layers.BatchNormalization)}
    cbn = {layer.name for layer in generator.layers if isinstance(layer, ConditionalBatchNormalization)}
    assert bn == cbn and len(bn) == (2 if arch == "dcgan" else 2 * 2 + 1)  # 2 per up block + the last
    assert _count(generator, keras.layers.BatchNormalization) == 0
    # --sync-bn reaches the batch norm inside each conditional layer.
    assert distribute.synchronize_batch_norm(generator) == len(cbn)

    z = np.repeat(RNG.normal(size=(1, 8)).astype("float32"), 2, axis=0)
    labels = np.array([3, 7], dtype="int32")
    same = generator([z, labels], training=False).numpy()
    np.testing.assert_array_equal(same[0], same[1])  # at init every class has gamma 1, beta 0
    for layer in generator.layers:
        if isinstance(layer, ConditionalBatchNormalization):
            layer.gamma.embeddings.assign(RNG.normal(1.0, 0.5, size=layer.gamma.embeddings.shape))
    different = generator([z, labels], training=False).numpy()
    assert np.abs(different[0] - different[1]).max() > 1e-3


@pytest.mark.parametrize("spectral_norm", [False, True])
@pytest.mark.parametrize("arch", networks.ARCHS)
def test_projection_discriminator_equals_closed_form(arch, spectral_norm):
    _, discriminator = networks.build((16, 16, 3), 8, arch=arch, num_classes=5, spectral_norm=spectral_norm,
                                      batch_norm=False)
    assert [t.name for t in discriminator.inputs] == ["images", "labels"]
    images = RNG.uniform(-1, 1, size=(4, 16, 16, 3)).astype("float32")
    labels = np.array([4, 0, 2, 4], dtype="int32")
    discriminator([images, labels], training=True)  # spectral norm: normalise the kernels once
    outputs = discriminator([images, labels], training=False).numpy()
    h = keras.Model(discriminator.input, discriminator.get_layer("features").output)([images, labels]).numpy()
    kernel, bias = _dense_weights(discriminator, "logits")
    embed, _ = _dense_weights(discriminator, "embed")  # [num_classes, F]
    assert embed.shape == (5, h.shape[1])
    expected = h @ kernel + bias + np.sum(embed[labels] * h, axis=1, keepdims=True)
    assert outputs.shape == (4, 1) and outputs.dtype == np.float32
    np.testing.assert_allclose(outputs, expected, rtol=1e-4, atol=1e-4)
    # The projection term matters: another label changes the output by exactly (e_y' - e_y) . h.
    other = discriminator([images, np.array([1, 1, 1, 1], dtype="int32")], training=False).numpy()
    np.testing.assert_allclose(other - outputs, np.sum((embed[1] - embed[labels]) * h, 1, keepdims=True),
                               rtol=1e-4, atol=1e-4)


def test_conditional_mlp_is_refused():
    with pytest.raises(ValueError, match="not available for vector data"):
        networks.build((2,), 2, num_classes=3)


# --- the `features` layer -------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, options, width",
    [
        ((2,), {}, 200),
        ((2,), {"minibatch_std": True}, 201),
        ((16, 16, 1), {}, 4 * 4 * 128),
        ((16, 16, 1), {"spectral_norm": True}, 4 * 4 * 128),
        ((16, 16, 1), {"arch": "resnet"}, 128),
        ((16, 16, 1), {"arch": "resnet", "num_classes": 3}, 128),
    ],
)
def test_every_discriminator_exposes_its_penultimate_features(shape, options, width):
    _, discriminator = networks.build(shape, 4, **options)
    features = discriminator.get_layer("features")
    assert isinstance(features, keras.layers.Identity)
    assert features.output.shape == (None, width)
    x = RNG.uniform(-1, 1, size=(4, *shape)).astype("float32")
    inputs = [x, np.array([0, 1, 2, 0], dtype="int32")] if options.get("num_classes") else x
    h = keras.Model(discriminator.input, features.output)(inputs).numpy()
    if not options.get("num_classes"):  # the logits are a dense layer on exactly these features
        kernel, bias = _dense_weights(discriminator, "logits")
        np.testing.assert_allclose(discriminator(inputs).numpy(), h @ kernel + bias, rtol=1e-4, atol=1e-5)
