"""Gradient penalties on the discriminator, computed with an inner `tf.GradientTape`.

A penalty is called inside the discriminator's outer tape, so its value (which depends on
input gradients of D) is itself differentiated with respect to D's weights: a second-order
gradient. Every penalty returns a PER-EXAMPLE tensor of shape [B], already multiplied by its
weight; the model adds it to the discriminator loss before the replica-aware reduction.

Penalties are looked up by name (`kgan.names.PENALTIES`; `gp` is short for `gradient_penalty`)
in `PENALTY_REGISTRY`, a `kgan.registry.Registry`; the classes are Keras-serialisable.
"""

import keras
import tensorflow as tf
from keras import ops

from kgan import distribute, seeds
from kgan.registry import Configurable, Registry


def _squared_input_gradient_norm(discriminator, inputs, training):
    """sum over non-batch axes of (dD(x)/dx)^2, per example, in float32."""
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        outputs = ops.cast(discriminator(inputs, training=training), "float32")
    gradients = ops.cast(tape.gradient(outputs, inputs), "float32")
    return ops.sum(ops.square(gradients), axis=list(range(1, len(gradients.shape))))


class Penalty(Configurable):
    """Base class: `penalty(discriminator, real, fake, training=True) -> Tensor[B]`."""

    #: Whether the penalty uses the generated batch (a conditional GAN then generates the
    #: penalty's fakes with the real labels, see `kgan.gan.GAN`).
    uses_fake = True

    def __call__(self, discriminator, real, fake, training=True):
        raise NotImplementedError


#: The penalties by name (`kgan.names.PENALTIES`) and class name.
PENALTY_REGISTRY = Registry("penalty", base=Penalty, keras_saving=True)


@PENALTY_REGISTRY.register("gradient_penalty", aliases=("gp",))
@keras.saving.register_keras_serializable(package="kgan")
class GradientPenalty(Penalty):
    """WGAN-GP: weight * (||grad D(x_hat)|| / target - 1)^2 on random interpolates.

    Gulrajani et al., "Improved Training of Wasserstein GANs", 2017
    (https://arxiv.org/abs/1704.00028); the one-sided variant from Petzka et al. 2018
    (https://arxiv.org/abs/1709.08894). As TF-GAN's `wasserstein_gradient_penalty`:
    x_hat = real + alpha (fake - real) with alpha ~ U[0, 1) drawn once PER SAMPLE, the norm is
    sqrt(sum g^2 + 1e-10) (epsilon inside the root, so the gradient at g = 0 is finite).

    Args:
        weight: lambda, >= 0 (10 in the paper).
        target: the norm the penalty pulls towards, > 0.
        one_sided: penalise only norms above the target.
        seed: the run seed (an int: alpha is drawn from its `penalty` stream,
            `kgan.seeds.stream_seed(seed, "penalty")`, independent of the run's other draws) or
            a `keras.random.SeedGenerator` (used as given).
    """

    def __init__(self, weight=10.0, target=1.0, one_sided=False, seed=None):
        if weight < 0:
            raise ValueError(f"GradientPenalty weight must be >= 0; got {weight}")
        if target <= 0:
            raise ValueError(f"GradientPenalty target must be > 0; got {target}")
        self.weight = float(weight)
        self.target = float(target)
        self.one_sided = bool(one_sided)
        self.seed = seed if isinstance(seed, keras.random.SeedGenerator) else (
            seeds.seed_generator(seed, "penalty")
        )
        self._seed_arg = None if isinstance(seed, keras.random.SeedGenerator) else seed

    def interpolate(self, real, fake, alpha=None):
        """x_hat = real + alpha (fake - real), alpha of shape [B, 1, ..., 1]."""
        # Real data may be float32 and generated data bfloat16: interpolate in float32.
        real = ops.cast(real, "float32")
        fake = ops.cast(fake, "float32")
        if alpha is None:
            # Drawn for the GLOBAL batch on every replica (same seed), each keeping its slice:
            # the interpolates do not depend on the number of replicas.
            replica_id, num_replicas = distribute.replica()
            batch = ops.shape(real)[0]
            shape = (batch * num_replicas,) + (1,) * (len(real.shape) - 1)
            alpha = keras.random.uniform(shape, seed=self.seed)[replica_id * batch : (replica_id + 1) * batch]
        return real + alpha * (fake - real)

    def __call__(self, discriminator, real, fake, training=True, alpha=None):
        interpolates = self.interpolate(real, fake, alpha)
        slopes = ops.sqrt(_squared_input_gradient_norm(discriminator, interpolates, training) + 1e-10)
        penalties = slopes / self.target - 1.0
        if self.one_sided:
            penalties = ops.relu(penalties)
        return self.weight * ops.square(penalties)

    def get_config(self):
        return {
            "weight": self.weight,
            "target": self.target,
            "one_sided": self.one_sided,
            "seed": self._seed_arg,
        }


@PENALTY_REGISTRY.register("r1")
@keras.saving.register_keras_serializable(package="kgan")
class R1(Penalty):
    """R1 regulariser: gamma / 2 * ||grad D(x)||^2 on REAL data.

    Mescheder et al., "Which Training Methods for GANs do actually Converge?", 2018
    (https://arxiv.org/abs/1801.04406).

    Args:
        gamma: the weight, >= 0 (10 is common for images).
    """

    uses_fake = False

    def __init__(self, gamma=10.0):
        if gamma < 0:
            raise ValueError(f"R1 gamma must be >= 0; got {gamma}")
        self.gamma = float(gamma)

    def __call__(self, discriminator, real, fake=None, training=True):
        real = ops.cast(real, "float32")
        return 0.5 * self.gamma * _squared_input_gradient_norm(discriminator, real, training)

    def get_config(self):
        return {"gamma": self.gamma}


def get(identifier):
    """Returns a `Penalty` (or None) from None, a name, a config dict, a `Penalty` class or an
    instance.

    Raises:
        ValueError: if the identifier is none of these.
    """
    return PENALTY_REGISTRY.get(identifier, allow_none=True)


def serialize(penalty):
    """The `keras.saving` config dict of a `Penalty`, or None for None."""
    return PENALTY_REGISTRY.serialize(penalty)
