"""MLP generator and discriminator for low-dimensional data (the 2-D mixture benchmarks).

Sized after PacGAN's 2-D experiments (Lin et al. 2018): G has 4 dense layers of 400 units with
batch norm and ReLU; D has 3 hidden layers of 200 units. Two discriminators:

- the default (`arch="dcgan"` in `kgan.networks.build`): dense 200 + LeakyReLU(0.2), Glorot
  initialisation, a stand-in for PacGAN's (BENCHMARKS.md allows it). It does not reproduce
  PacGAN's packing: on grid25 a pack-4 D built so stayed at chance for 100,000 steps, where
  PacGAN's own D left it after 30,000-35,000 (docs/results/README.md);
- `arch="pacgan"`: PacGAN's own 2-D networks (fjxmlzn/PacGAN, synthetic_data_experiments,
  `pacgan_task.py` and `config.py`): D is 3 `LinearMaxout` layers of 200 units x 5 pieces and a
  linear output; every weight of G and D drawn from N(0, 0.02), every bias 0 (`PACGAN_INIT`).

D's penultimate feature vector is the output of its `features` layer.
"""

import keras
from keras import layers

from kgan.networks.layers import LeakyReLU, Maxout, MinibatchStdDev, discriminator_output, spectral

#: PacGAN's initialisation of its 2-D networks: `IsotropicGaussian(0.02)` weights, `Constant(0)` biases.
PACGAN_INIT = {"kernel_initializer": {"class_name": "RandomNormal", "config": {"stddev": 0.02}},
               "bias_initializer": "zeros"}


def _initializers(init):
    """Dense layer initialiser arguments: Keras' defaults (None) or fresh ones from a dict like `PACGAN_INIT`."""
    return {} if init is None else {key: keras.initializers.get(value) for key, value in init.items()}


def mlp_generator(latent_dim=2, output_dim=2, units=400, num_layers=4, batch_norm=True, init=None,
                  name="generator"):
    """Returns a Keras MLP generator: latent [B, latent_dim] -> samples [B, output_dim] (linear output).

    `init`: None (Keras' Glorot-uniform weights, zero biases) or `PACGAN_INIT`.
    """
    inputs = keras.Input((latent_dim,), name="latent")
    x = inputs
    for i in range(num_layers):
        x = layers.Dense(units, use_bias=not batch_norm, name=f"dense_{i}", **_initializers(init))(x)
        if batch_norm:
            x = layers.BatchNormalization(name=f"bn_{i}")(x)
        x = layers.ReLU(name=f"relu_{i}")(x)
    outputs = layers.Dense(output_dim, dtype="float32", name="output", **_initializers(init))(x)
    return keras.Model(inputs, outputs, name=name)


def mlp_discriminator(input_dim=2, units=200, num_layers=3, spectral_norm=False, minibatch_std=False,
                      maxout_pieces=None, init=None, name="discriminator"):
    """Returns a Keras MLP discriminator: samples [B, input_dim] -> logits [B, 1] (float32).

    Args:
        input_dim: size of one sample.
        units, num_layers: width and number of the hidden layers.
        spectral_norm: spectral normalisation on every dense layer.
        minibatch_std: append ProGAN's minibatch standard deviation (`MinibatchStdDev`, named
            `minibatch_std`) as one extra feature before the output layer.
        maxout_pieces: None: each hidden layer is dense `units` + LeakyReLU(0.2). k: each is a
            maxout layer (Goodfellow et al. 2013; PacGAN's `LinearMaxout`): dense `units * k`,
            then the max of each unit's k pieces (`Maxout`).
        init: None (Keras' Glorot-uniform weights, zero biases) or `PACGAN_INIT`.
    """
    inputs = keras.Input((input_dim,), name="samples")
    x = inputs
    width = units * (maxout_pieces or 1)
    for i in range(num_layers):
        x = spectral(layers.Dense(width, name=f"dense_{i}", **_initializers(init)), spectral_norm)(x)
        x = LeakyReLU(0.2, name=f"lrelu_{i}")(x) if not maxout_pieces else Maxout(maxout_pieces, name=f"maxout_{i}")(x)
    if minibatch_std:
        x = MinibatchStdDev(name="minibatch_std")(x)
    outputs = discriminator_output(x, spectral_norm=spectral_norm, initializers=_initializers(init))
    return keras.Model(inputs, outputs, name=name)


def pacgan_pair(latent_dim=2, output_dim=2, pack=1, spectral_norm=False, minibatch_std=False):
    """PacGAN's 2-D networks (Lin et al. 2018): `(generator, discriminator)` with D taking `pack` samples.

    G: 4 x (dense 400 without bias, batch norm, ReLU), linear output. D: 3 maxout layers of 200
    units x 5 pieces, linear output. All weights N(0, 0.02), all biases 0.
    """
    return (
        mlp_generator(latent_dim, output_dim, init=PACGAN_INIT),
        mlp_discriminator(output_dim * int(pack), spectral_norm=spectral_norm, minibatch_std=minibatch_std,
                          maxout_pieces=5, init=PACGAN_INIT),
    )
