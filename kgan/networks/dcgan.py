"""DCGAN generator and discriminator sized from the image shape (8x8 up to 64x64, 1 or 3 channels).

Radford et al., "Unsupervised Representation Learning with Deep Convolutional GANs", 2016
(https://arxiv.org/abs/1511.06434): strided convolutions instead of pooling, batch norm, ReLU in
G with a tanh output, LeakyReLU(0.2) in D. G starts from 4x4 and doubles the resolution with
4x4 stride-2 transposed convolutions; D mirrors it. The widest layer has `base * 2^(n - 1)`
channels where n = log2(size / 4), e.g. 64-128-256 at 32x32.
"""

import math

import keras
from keras import layers

SIZES = (8, 16, 32, 64)


def _num_doublings(image_shape):
    height, width, channels = image_shape
    if height != width or height not in SIZES:
        raise ValueError(f"DCGAN networks take square images of size {SIZES}; got {height}x{width}")
    if channels not in (1, 3):
        raise ValueError(f"DCGAN networks take 1 or 3 channels; got {channels}")
    return int(math.log2(height // 4))


def dcgan_generator(latent_dim, image_shape, base_filters=64, name="generator"):
    """Returns a DCGAN generator: latent [B, latent_dim] -> images [B, H, W, C] in [-1, 1] (float32)."""
    n = _num_doublings(image_shape)
    filters = base_filters * 2 ** (n - 1)
    inputs = keras.Input((latent_dim,), name="latent")
    x = layers.Dense(4 * 4 * filters, use_bias=False, name="project")(inputs)
    x = layers.BatchNormalization(name="project_bn")(x)
    x = layers.ReLU(name="project_relu")(x)
    x = layers.Reshape((4, 4, filters), name="reshape")(x)
    for i in range(n - 1):
        filters //= 2
        x = layers.Conv2DTranspose(filters, 4, strides=2, padding="same", use_bias=False, name=f"up_{i}")(x)
        x = layers.BatchNormalization(name=f"up_{i}_bn")(x)
        x = layers.ReLU(name=f"up_{i}_relu")(x)
    x = layers.Conv2DTranspose(image_shape[-1], 4, strides=2, padding="same", name="to_image")(x)
    outputs = layers.Activation("tanh", dtype="float32", name="tanh")(x)
    return keras.Model(inputs, outputs, name=name)


def dcgan_discriminator(image_shape, base_filters=64, batch_norm=True, spectral_norm=False, name="discriminator"):
    """Returns a DCGAN discriminator: images [B, H, W, C] -> logits [B, 1] (float32).

    Args:
        image_shape: (H, W, C), H = W in 8..64.
        base_filters: channels of the first convolution; doubled at each halving.
        batch_norm: batch norm after every convolution but the first. Turn it off with a
            gradient penalty (the penalty is per example; batch norm mixes examples).
        spectral_norm: wrap every convolution and the output layer in
            `keras.layers.SpectralNormalization` (Miyato et al. 2018); implies no batch norm.
    """
    n = _num_doublings(image_shape)
    batch_norm = batch_norm and not spectral_norm

    def wrap(layer):
        return layers.SpectralNormalization(layer, name=f"sn_{layer.name}") if spectral_norm else layer

    inputs = keras.Input(image_shape, name="images")
    x = inputs
    for i in range(n):
        x = wrap(layers.Conv2D(base_filters * 2**i, 4, strides=2, padding="same", use_bias=not (batch_norm and i > 0), name=f"down_{i}"))(x)
        if batch_norm and i > 0:
            x = layers.BatchNormalization(name=f"down_{i}_bn")(x)
        x = layers.LeakyReLU(0.2, name=f"down_{i}_lrelu")(x)
    x = layers.Flatten(name="flatten")(x)
    outputs = wrap(layers.Dense(1, dtype="float32", name="logits"))(x)
    return keras.Model(inputs, outputs, name=name)
