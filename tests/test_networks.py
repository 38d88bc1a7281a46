import keras
import numpy as np
import pytest

from kgan import networks


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
    def count(model, cls):
        return sum(isinstance(layer, cls) for layer in model.layers)

    _, with_bn = networks.build((16, 16, 1), 8)
    _, without_bn = networks.build((16, 16, 1), 8, batch_norm=False)
    _, sn = networks.build((16, 16, 1), 8, spectral_norm=True)
    assert count(with_bn, keras.layers.BatchNormalization) == 1
    assert count(without_bn, keras.layers.BatchNormalization) == 0
    assert count(sn, keras.layers.BatchNormalization) == 0
    assert count(sn, keras.layers.SpectralNormalization) == 3  # 2 convolutions + the output


def test_mlp_pair_for_points():
    generator, discriminator = networks.build((2,), latent_dim=2)
    assert generator.output_shape == (None, 2) and discriminator.output_shape == (None, 1)
    dense = [layer for layer in generator.layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.units for layer in dense] == [400, 400, 400, 400, 2]  # PacGAN's G
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in generator.layers) == 4


@pytest.mark.parametrize("shape", [(12, 12, 1), (8, 16, 1), (8, 8, 2), (2, 3)])
def test_unsupported_shapes(shape):
    with pytest.raises(ValueError):
        networks.build(shape, 4)
