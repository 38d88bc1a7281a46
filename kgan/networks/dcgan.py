"""DCGAN generator and discriminator sized from the image shape (8x8 up to 64x64, any channels).

Radford et al., "Unsupervised Representation Learning with Deep Convolutional GANs", 2016
(https://arxiv.org/abs/1511.06434): strided convolutions instead of pooling, batch norm, ReLU in
G with a tanh output, LeakyReLU(0.2) in D. G starts from 4x4 and doubles the resolution with
4x4 stride-2 transposed convolutions; D mirrors it. The widest layer has `base * 2^(n - 1)`
channels where n = log2(size / 4), e.g. 64-128-256 at 32x32.

Options from the stabilisation toolbox (see `kgan.networks.layers`): class-conditional batch
norm in G and a projection head in D (`num_classes`), one SAGAN self-attention block at a
chosen resolution (`self_attention`), and ProGAN's minibatch standard deviation in D
(`minibatch_std`). D's penultimate feature vector is the output of its `features` layer.
"""

import math

import keras
from keras import layers

from kgan.networks.layers import LeakyReLU, MinibatchStdDev, SelfAttention, discriminator_output, normalize, spectral

SIZES = (8, 16, 32, 64)


def _num_doublings(image_shape, family="DCGAN"):
    """log2(size / 4) for a supported image shape; ValueError naming `family` otherwise."""
    height, width, channels = image_shape
    if height != width or height not in SIZES:
        raise ValueError(f"{family} networks take square images of size {SIZES}; got {height}x{width}")
    if channels < 1:  # images have 1 or 3; a PacGAN discriminator's packed examples m times that
        raise ValueError(f"{family} networks take images of >= 1 channels; got {channels}")
    return int(math.log2(height // 4))


def attention_resolutions(image_shape):
    """Feature-map sizes where `self_attention` may go: 4 .. size / 2 (the same in G and D)."""
    n = _num_doublings(image_shape)
    return tuple(4 * 2**i for i in range(n))


def check_attention(self_attention, valid):
    """Raises ValueError unless `self_attention` is None or one of the `valid` resolutions."""
    if self_attention is not None and self_attention not in valid:
        raise ValueError(
            f"self_attention={self_attention}: no feature map of that size; valid resolutions: "
            f"{', '.join(map(str, valid))}"
        )


def label_input(num_classes):
    """The int32 [B] input named `labels` of a conditional network, or None."""
    return keras.Input((), dtype="int32", name="labels") if num_classes else None


def dcgan_generator(latent_dim, image_shape, base_filters=64, num_classes=None, self_attention=None, name="generator"):
    """Returns a DCGAN generator: latent [B, latent_dim] -> images [B, H, W, C] in [-1, 1] (float32).

    Args:
        latent_dim: size of the latent input.
        image_shape: (H, W, C), H = W in 8..64, C in (1, 3).
        base_filters: channels of the last transposed convolution but one; doubled per level.
        num_classes: if an int, the model takes `[latent, labels]` (labels int32 [B]) and every
            batch norm is a `ConditionalBatchNormalization`.
        self_attention: None, or a feature-map size in `attention_resolutions(image_shape)`
            after which one `SelfAttention` block (named `attention`) is inserted.
    """
    n = _num_doublings(image_shape)
    check_attention(self_attention, attention_resolutions(image_shape))
    filters = base_filters * 2 ** (n - 1)
    inputs = keras.Input((latent_dim,), name="latent")
    labels = label_input(num_classes)
    x = layers.Dense(4 * 4 * filters, use_bias=False, name="project")(inputs)
    x = normalize(x, "project_bn", labels, num_classes)
    x = layers.ReLU(name="project_relu")(x)
    x = layers.Reshape((4, 4, filters), name="reshape")(x)
    if self_attention == 4:
        x = SelfAttention(name="attention")(x)
    for i in range(n - 1):
        filters //= 2
        x = layers.Conv2DTranspose(filters, 4, strides=2, padding="same", use_bias=False, name=f"up_{i}")(x)
        x = normalize(x, f"up_{i}_bn", labels, num_classes)
        x = layers.ReLU(name=f"up_{i}_relu")(x)
        if self_attention == 4 * 2 ** (i + 1):
            x = SelfAttention(name="attention")(x)
    x = layers.Conv2DTranspose(image_shape[-1], 4, strides=2, padding="same", name="to_image")(x)
    outputs = layers.Activation("tanh", dtype="float32", name="tanh")(x)
    return keras.Model([inputs, labels] if num_classes else inputs, outputs, name=name)


def down_stage(x, i, base_filters, batch_norm, spectral_norm):
    """Stage `i` of DCGAN's discriminator on `x`, halving its resolution (Radford et al. 2016).

    A 4x4 stride-2 convolution `down_{i}` with `base_filters * 2^i` channels (wrapped in
    `SpectralNormalization` if `spectral_norm`), then batch norm `down_{i}_bn` if `batch_norm`
    and i > 0 (the convolution has no bias then), then LeakyReLU(0.2) `down_{i}_lrelu`. Shared
    with `kgan.networks.progressive`, whose discriminator has DCGAN's layers and names.
    """
    conv = layers.Conv2D(
        base_filters * 2**i, 4, strides=2, padding="same", use_bias=not (batch_norm and i > 0), name=f"down_{i}"
    )
    x = spectral(conv, spectral_norm)(x)
    if batch_norm and i > 0:
        x = layers.BatchNormalization(name=f"down_{i}_bn")(x)
    return LeakyReLU(0.2, name=f"down_{i}_lrelu")(x)


def dcgan_discriminator(
    image_shape,
    base_filters=64,
    batch_norm=True,
    spectral_norm=False,
    num_classes=None,
    self_attention=None,
    minibatch_std=False,
    name="discriminator",
):
    """Returns a DCGAN discriminator: images [B, H, W, C] -> logits [B, 1] (float32).

    Args:
        image_shape: (H, W, C), H = W in 8..64 (C: m times the images' with PacGAN's packing).
        base_filters: channels of the first convolution; doubled at each halving.
        batch_norm: batch norm after every convolution but the first. Turn it off with a
            gradient penalty (the penalty is per example; batch norm mixes examples).
        spectral_norm: wrap every convolution and the output layer in
            `keras.layers.SpectralNormalization` (Miyato et al. 2018); implies no batch norm.
        num_classes: if an int, the model takes `[images, labels]` (labels int32 [B]) and ends
            with a projection head (Miyato & Koyama 2018) on the flattened features.
        self_attention: None, or a feature-map size in `attention_resolutions(image_shape)`
            after which one `SelfAttention` block (named `attention`) is inserted.
        minibatch_std: insert `MinibatchStdDev` (named `minibatch_std`) before the last
            convolution, as ProGAN does before its last convolution stage.
    """
    n = _num_doublings(image_shape)
    check_attention(self_attention, attention_resolutions(image_shape))
    batch_norm = batch_norm and not spectral_norm
    inputs = keras.Input(image_shape, name="images")
    labels = label_input(num_classes)
    x = inputs
    for i in range(n):
        if minibatch_std and i == n - 1:
            x = MinibatchStdDev(name="minibatch_std")(x)
        x = down_stage(x, i, base_filters, batch_norm, spectral_norm)
        if self_attention == image_shape[0] // 2 ** (i + 1):
            x = SelfAttention(spectral_norm=spectral_norm, name="attention")(x)
    x = layers.Flatten(name="flatten")(x)
    outputs = discriminator_output(x, labels, num_classes, spectral_norm)
    return keras.Model([inputs, labels] if num_classes else inputs, outputs, name=name)
