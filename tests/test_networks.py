"""Generator / discriminator pairs of kgan.networks.build: DCGAN and MLP shapes and widths, the
stabilisation toolbox's networks (issue #8: conditional pairs, the `features` layer, SNGAN
ResNets, where self-attention and minibatch standard deviation go), serialisation and bfloat16.
The layers themselves are tested in tests/test_layers.py."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kgan import distribute, networks
from kgan.networks import ConditionalBatchNormalization, GlobalSumPooling2D, Maxout, MinibatchStdDev, SelfAttention

RNG = np.random.default_rng(0)


def _count(model, cls):
    return sum(isinstance(layer, cls) for layer in model.layers)


def _dense_weights(model, name):
    """(kernel, bias) of the dense layer `name`, spectrally normalised or not, as NumPy."""
    names = [layer.name for layer in model.layers]
    layer = model.get_layer(name) if name in names else model.get_layer(f"sn_{name}").layer
    return layer.kernel.numpy(), (layer.bias.numpy() if layer.bias is not None else 0.0)


# --- DCGAN and MLP pairs ---------------------------------------------------------------------


@pytest.mark.parametrize("size", [8, 16, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_dcgan_shapes_and_output_range(size, channels):
    generator, discriminator = networks.build((size, size, channels), latent_dim=10)
    z = np.random.default_rng(0).normal(size=(3, 10)).astype("float32") * 50  # saturate tanh
    images = generator(z, training=False).numpy()
    assert images.shape == (3, size, size, channels)
    assert images.min() >= -1 and images.max() <= 1
    assert discriminator(images).shape == (3, 1)
    # G doubles from 4x4: log2(size / 4) transposed convolutions; D halves as many times.
    n = int(np.log2(size // 4))
    assert sum(isinstance(layer, keras.layers.Conv2DTranspose) for layer in generator.layers) == n
    assert sum(isinstance(layer, keras.layers.Conv2D) for layer in discriminator.layers) == n


def test_dcgan_32_widths_follow_the_dcgan_rule():
    generator, discriminator = networks.build((32, 32, 3), latent_dim=100)
    assert generator.get_layer("project").units == 4 * 4 * 256
    assert [discriminator.get_layer(f"down_{i}").filters for i in range(3)] == [64, 128, 256]


def test_discriminator_batch_norm_and_spectral_norm_options():
    _, with_bn = networks.build((16, 16, 1), 8)
    _, without_bn = networks.build((16, 16, 1), 8, batch_norm=False)
    _, sn = networks.build((16, 16, 1), 8, spectral_norm=True)
    assert _count(with_bn, keras.layers.BatchNormalization) == 1
    assert _count(without_bn, keras.layers.BatchNormalization) == 0
    assert _count(sn, keras.layers.BatchNormalization) == 0
    assert _count(sn, keras.layers.SpectralNormalization) == 3  # 2 convolutions + the output


def test_mlp_pair_for_points():
    generator, discriminator = networks.build((2,), latent_dim=2)
    assert generator.output_shape == (None, 2) and discriminator.output_shape == (None, 1)
    dense = [layer for layer in generator.layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.units for layer in dense] == [400, 400, 400, 400, 2]  # PacGAN's G
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in generator.layers) == 4


@pytest.mark.parametrize("pack", [1, 4])
def test_pacgan_pair_is_pacgans_2d_networks(pack):
    """--arch pacgan: PacGAN's 2-D networks (fjxmlzn/PacGAN pacgan_task.py, config.py): G 4 x 400
    (no bias, BN, ReLU) and a linear output; D 3 LinearMaxout layers of 200 units x 5 pieces and a
    linear output; every weight N(0, 0.02), every bias 0. D's logits equal a NumPy maxout MLP."""
    keras.utils.set_random_seed(0)
    generator, discriminator = networks.build((2,), latent_dim=2, arch="pacgan", pack=pack)
    g_dense = [layer for layer in generator.layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.units for layer in g_dense] == [400, 400, 400, 400, 2]
    assert [layer.use_bias for layer in g_dense] == [False] * 4 + [True]
    assert _count(generator, keras.layers.BatchNormalization) == 4
    d_dense = [layer for layer in discriminator.layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.units for layer in d_dense] == [1000, 1000, 1000, 1]
    assert [layer.pieces for layer in discriminator.layers if isinstance(layer, Maxout)] == [5, 5, 5]
    assert discriminator.input_shape == (None, 2 * pack)
    assert discriminator.count_params() == (2 * pack + 1) * 1000 + 2 * 201 * 1000 + 201
    for layer in g_dense[:4] + d_dense[:3]:  # the big layers: their sample std is within 2% of 0.02
        assert abs(float(np.std(layer.kernel.numpy())) - 0.02) < 0.0004, layer.name
    for layer in [*g_dense, *d_dense]:
        assert layer.bias is None or not np.any(layer.bias.numpy())
    for layer in d_dense:  # non-zero biases, so the comparison checks that they are added
        layer.bias.assign(RNG.normal(0, 0.1, size=layer.bias.shape))
    x = RNG.normal(size=(7, 2 * pack)).astype("float32")
    h = x.astype("float64")
    for layer in d_dense[:3]:
        h = (h @ layer.kernel.numpy() + layer.bias.numpy()).reshape(7, 200, 5).max(axis=-1)  # unit u: pieces 5u..5u+4
    expected = h @ d_dense[3].kernel.numpy() + d_dense[3].bias.numpy()
    np.testing.assert_allclose(discriminator(x).numpy(), expected, rtol=1e-5, atol=1e-7)


def test_maxout_takes_each_units_pieces_and_its_gradient_goes_to_the_winner():
    x = tf.constant([[1.0, 5.0, 2.0, -1.0, -3.0, -2.0]])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = Maxout(3)(x)
    np.testing.assert_array_equal(y.numpy(), [[5.0, -1.0]])
    np.testing.assert_array_equal(tape.gradient(y, x).numpy(), [[0, 1, 0, 1, 0, 0]])
    np.testing.assert_array_equal(Maxout(2)(tf.reshape(tf.range(12.0), (2, 1, 6))).numpy(),
                                  [[[1, 3, 5]], [[7, 9, 11]]])  # leading axes kept
    with pytest.raises(ValueError, match="pieces >= 1"):
        Maxout(0)
    with pytest.raises(ValueError, match="divisible by 3"):
        Maxout(3)(tf.zeros((2, 7)))


@pytest.mark.parametrize("shape", [(12, 12, 1), (8, 16, 1), (8, 8, 2), (2, 3)])
def test_unsupported_shapes(shape):
    with pytest.raises(ValueError):
        networks.build(shape, 4)


# --- conditional networks (Miyato & Koyama 2018) --------------------------------------------


@pytest.mark.parametrize("arch", networks.IMAGE_ARCHS)
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
@pytest.mark.parametrize("arch", networks.IMAGE_ARCHS)
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


# --- SNGAN ResNet (Miyato et al. 2018) -------------------------------------------------------


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_resnet_32_parameter_counts_match_sngan():
    """SNGAN's CIFAR-10 ResNet pair (arXiv:1802.05957 Table 4; the layers as in Mimicry's
    torch_mimicry/nets/sngan/sngan_32.py and modules/resblocks.py, which follow the authors'
    chainer code): z = 128, G width 256, D width 128, biases everywhere, BN gamma and beta
    trainable. Spectral norm's u vectors and BN's moving statistics are not parameters there
    (PyTorch buffers), so only trainable weights are counted."""
    generator, discriminator = networks.build((32, 32, 3), 128, arch="resnet")

    def conv(cin, cout, k):
        return cin * cout * k * k + cout

    g_block = 2 * 256 + conv(256, 256, 3) + 2 * 256 + conv(256, 256, 3) + conv(256, 256, 1)  # bn1 c1 bn2 c2 sc
    g = (128 * 4 * 4 * 256 + 4 * 4 * 256) + 3 * g_block + 2 * 256 + conv(256, 3, 3)
    d_optimized = conv(3, 128, 3) + conv(128, 128, 3) + conv(3, 128, 1)
    d_down = 2 * conv(128, 128, 3) + conv(128, 128, 1)
    d_plain = 2 * conv(128, 128, 3)  # identity shortcut: same width, no downsampling
    d = d_optimized + d_down + 2 * d_plain + (128 + 1)
    assert (g, d) == (4_276_739, 1_053_825)
    assert (_trainable(generator), _trainable(discriminator)) == (g, d)
    # The totals quoted for SNGAN-32 (G about 4.3M, D about 1.0M parameters).
    assert abs(g - 4.3e6) / 4.3e6 < 0.01 and abs(d - 1.0e6) / 1.0e6 < 0.06
    # Structure: 3 up blocks to 32x32; D: 8x8 maps before the sum pooling; spectral norm on
    # all 10 convolutions and the dense layer (SNGAN's default for this critic).
    assert [generator.get_layer(f"block_{i}").output.shape[1] for i in range(3)] == [8, 16, 32]
    assert discriminator.get_layer("relu").output.shape == (None, 8, 8, 128)
    assert _count(discriminator, keras.layers.SpectralNormalization) == 11
    assert isinstance(discriminator.get_layer("sum_pool"), GlobalSumPooling2D)
    _, plain = networks.build((32, 32, 3), 128, arch="resnet", spectral_norm=False)
    assert _count(plain, keras.layers.SpectralNormalization) == 0 and _trainable(plain) == d


@pytest.mark.parametrize("conditional", [False, True])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [8, 16, 32])
@pytest.mark.parametrize("arch", networks.IMAGE_ARCHS)
def test_shapes_and_ranges(arch, size, channels, conditional):
    num_classes = 4 if conditional else None
    generator, discriminator = networks.build((size, size, channels), 6, arch=arch, num_classes=num_classes)
    z = RNG.normal(size=(3, 6)).astype("float32") * 50  # saturate the tanh
    labels = np.array([0, 3, 1], dtype="int32")
    images = generator([z, labels] if conditional else z, training=False).numpy()
    assert images.shape == (3, size, size, channels) and images.dtype == np.float32
    assert images.min() >= -1 and images.max() <= 1
    logits = discriminator([images, labels] if conditional else images, training=False)
    assert logits.shape == (3, 1) and logits.dtype == "float32"


def test_resnet_generalises_by_size():
    for size, ups, last in [(8, 1, 4), (16, 2, 8), (64, 4, 8)]:
        generator, discriminator = networks.build((size, size, 3), 4, arch="resnet")
        assert sum(layer.name.startswith("block_") and isinstance(layer, keras.layers.Add)
                   for layer in generator.layers) == ups
        assert discriminator.get_layer("relu").output.shape[1:3] == (last, last)


def test_bad_arch_options():
    with pytest.raises(ValueError, match="Unknown arch 'stylegan'"):
        networks.build((8, 8, 1), 4, arch="stylegan")
    with pytest.raises(ValueError, match="takes images"):
        networks.build((2,), 4, arch="resnet")
    with pytest.raises(ValueError, match="needs feature maps"):
        networks.build((2,), 4, self_attention=4)
    with pytest.raises(ValueError, match="valid resolutions: 8, 16"):
        networks.build((32, 32, 3), 4, arch="resnet", self_attention=32)
    with pytest.raises(ValueError, match="valid resolutions: 4, 8, 16"):
        networks.build((32, 32, 3), 4, self_attention=32)
    with pytest.raises(ValueError, match="PacGAN's MLP pair for 2-D points"):
        networks.build((8, 8, 1), 4, arch="pacgan")
    assert networks.ARCHS == ("dcgan", "resnet", "pacgan")


# --- self-attention and minibatch standard deviation: where build puts them ---------------


@pytest.mark.parametrize("arch, size, resolution", [("dcgan", 16, 4), ("dcgan", 32, 16), ("resnet", 32, 8),
                                                    ("resnet", 32, 16), ("resnet", 16, 8)])
def test_build_inserts_one_attention_block_where_the_map_has_that_size(arch, size, resolution):
    generator, discriminator = networks.build((size, size, 3), 4, arch=arch, self_attention=resolution)
    for model, spectral in [(generator, False), (discriminator, arch == "resnet")]:
        assert _count(model, SelfAttention) == 1
        block = model.get_layer("attention")
        assert block.output.shape[1:3] == (resolution, resolution)
        assert block.spectral_norm == spectral
    assert resolution in networks.attention_resolutions((size, size, 3), arch)


@pytest.mark.parametrize("arch", networks.IMAGE_ARCHS)
def test_build_puts_minibatch_std_before_the_last_conv_stage(arch):
    _, discriminator = networks.build((32, 32, 3), 4, arch=arch, minibatch_std=True)
    layer = discriminator.get_layer("minibatch_std")
    assert layer.output.shape[-1] == layer.input.shape[-1] + 1
    names = [layer.name for layer in discriminator.layers]
    following = names[names.index("minibatch_std") + 1]
    # DCGAN: the last strided conv; ResNet: the last block (its shortcut learns C + 1 -> C).
    assert following == ("down_2" if arch == "dcgan" else "block_3_relu1")
    if arch == "resnet":
        assert "sn_block_3_shortcut" in names  # spectral norm: on by default for the ResNet critic
    images = RNG.uniform(-1, 1, size=(8, 32, 32, 3)).astype("float32")
    assert discriminator(images, training=True).shape == (8, 1)


# --- serialisation and precision -------------------------------------------------------------


def test_models_with_every_layer_round_trip_through_a_keras_file(tmp_path):
    generator, discriminator = networks.build((16, 16, 3), 6, arch="resnet", num_classes=3, self_attention=8,
                                              minibatch_std=True)
    z = RNG.normal(size=(4, 6)).astype("float32")
    labels = np.array([0, 1, 2, 1], dtype="int32")
    images = generator([z, labels], training=True).numpy()  # moves BN statistics, normalises SN kernels
    discriminator([images, labels], training=True)
    for layer in [*generator.layers, *discriminator.layers]:  # non-trivial values everywhere
        for weight in layer.trainable_weights:
            if "gamma" in weight.path or "beta" in weight.path:
                weight.assign(RNG.normal(0.5, 0.3, size=weight.shape))
    expected_g = generator([z, labels], training=False).numpy()
    expected_d = discriminator([images, labels], training=False).numpy()
    generator.save(tmp_path / "g.keras")
    discriminator.save(tmp_path / "d.keras")
    g, d = keras.models.load_model(tmp_path / "g.keras"), keras.models.load_model(tmp_path / "d.keras")
    kinds = {type(layer) for layer in [*g.layers, *d.layers]}
    assert {ConditionalBatchNormalization, SelfAttention, MinibatchStdDev, GlobalSumPooling2D} <= kinds
    np.testing.assert_array_equal(g([z, labels], training=False).numpy(), expected_g)
    np.testing.assert_array_equal(d([images, labels], training=False).numpy(), expected_d)
    _, maxout = networks.build((2,), 2, arch="pacgan", pack=2)
    points = RNG.normal(size=(5, 4)).astype("float32")
    maxout.save(tmp_path / "maxout.keras")
    np.testing.assert_array_equal(keras.models.load_model(tmp_path / "maxout.keras")(points).numpy(),
                                  maxout(points).numpy())


@pytest.fixture
def bfloat16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("arch", networks.IMAGE_ARCHS)
def test_mixed_bfloat16_forward_pass(bfloat16, arch):
    generator, discriminator = networks.build((16, 16, 3), 6, arch=arch, num_classes=3, self_attention=8,
                                              minibatch_std=True, spectral_norm=True)
    assert generator.get_layer("attention").compute_dtype == "bfloat16"
    z = RNG.normal(size=(4, 6)).astype("float32") * 50
    labels = np.array([0, 1, 2, 1], dtype="int32")
    images = generator([z, labels], training=True)
    assert images.dtype == "float32" and images.shape == (4, 16, 16, 3)
    assert -1 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 1
    logits = discriminator([images, tf.constant(labels)], training=True)
    assert logits.dtype == "float32" and logits.shape == (4, 1) and np.isfinite(logits.numpy()).all()
    for mlp_arch in ("dcgan", "pacgan"):
        _, mlp = networks.build((2,), 2, arch=mlp_arch, minibatch_std=True, spectral_norm=True)
        assert mlp(RNG.normal(size=(4, 2)).astype("float32"), training=True).dtype == "float32"
