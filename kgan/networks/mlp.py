"""MLP generator and discriminator for low-dimensional data (the 2-D mixture benchmarks).

Sized after PacGAN's 2-D experiments (Lin et al. 2018): G has 4 dense layers of 400 units with
batch norm and ReLU; D has 3 dense layers. PacGAN's D uses maxout (200 units x 5 pieces); kgan
uses dense 200 + LeakyReLU(0.2) as a stand-in (BENCHMARKS.md allows it, and says so).
D's penultimate feature vector is the output of its `features` layer.
"""

import keras
from keras import layers

from kgan.networks.layers import LeakyReLU, MinibatchStdDev, discriminator_output, spectral


def mlp_generator(latent_dim=2, output_dim=2, units=400, num_layers=4, batch_norm=True, name="generator"):
    """Returns a Keras MLP generator: latent [B, latent_dim] -> samples [B, output_dim] (linear output)."""
    inputs = keras.Input((latent_dim,), name="latent")
    x = inputs
    for i in range(num_layers):
        x = layers.Dense(units, use_bias=not batch_norm, name=f"dense_{i}")(x)
        if batch_norm:
            x = layers.BatchNormalization(name=f"bn_{i}")(x)
        x = layers.ReLU(name=f"relu_{i}")(x)
    outputs = layers.Dense(output_dim, dtype="float32", name="output")(x)
    return keras.Model(inputs, outputs, name=name)


def mlp_discriminator(input_dim=2, units=200, num_layers=3, spectral_norm=False, minibatch_std=False,
                      name="discriminator"):
    """Returns a Keras MLP discriminator: samples [B, input_dim] -> logits [B, 1] (float32).

    Args:
        input_dim: size of one sample.
        units, num_layers: width and number of the hidden dense layers.
        spectral_norm: spectral normalisation on every dense layer.
        minibatch_std: append ProGAN's minibatch standard deviation (`MinibatchStdDev`, named
            `minibatch_std`) as one extra feature before the output layer.
    """
    inputs = keras.Input((input_dim,), name="samples")
    x = inputs
    for i in range(num_layers):
        x = spectral(layers.Dense(units, name=f"dense_{i}"), spectral_norm)(x)
        x = LeakyReLU(0.2, name=f"lrelu_{i}")(x)
    if minibatch_std:
        x = MinibatchStdDev(name="minibatch_std")(x)
    outputs = discriminator_output(x, spectral_norm=spectral_norm)
    return keras.Model(inputs, outputs, name=name)
