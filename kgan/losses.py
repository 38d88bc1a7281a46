"""Adversarial losses: pure functions of discriminator outputs, and the classes that configure them.

Every function takes discriminator OUTPUTS (logits, shape `[B]` or `[B, 1]`) and returns a
PER-EXAMPLE loss of shape `[B]`; the model reduces it (replica-aware) in one place. The classes
carry the options (targets, smoothing, p), serialise with `get_config`, and are looked up by
name with `get()`:

    get("minkowski")                                   # Minkowski(p=4)
    get({"class_name": "Minkowski", "config": {"p": 2}})
    get(Minkowski(p=3))

The names are `kgan.names.LOSSES`, each the snake_case of its class (`LOSS_REGISTRY`, a
`kgan.registry.Registry`, holds them; the classes are Keras-serialisable as `kgan>ClassName`).

Discriminator losses of the probability family (minimax, non-saturating, Minkowski with a
sigmoid) treat the output as a logit; Wasserstein, hinge and least squares use it raw.

Each loss declares its `decision_threshold`: the output of a discriminator that cannot tell real
from generated data (the minimiser of its loss when both are the same distribution: the midpoint
of its real and fake targets, in its output space), against which ADA's overfitting heuristic
r_t = E[sign(D(real) - threshold)] is measured (`kgan.augment.AdaptiveAugment`):

| loss | D's output | targets (real, fake) | threshold |
|---|---|---|---|
| minimax, non-saturating | logit | probabilities 1 - smoothing, 0 | logit((1 - smoothing) / 2): 0 unsmoothed |
| hinge | raw | margins +1, -1 | 0 |
| least squares | raw | b - smoothing, a | (b - smoothing + a) / 2: 0.5 by default |
| Minkowski, linear | raw | t_real - smoothing, t_fake | (t_real - smoothing + t_fake) / 2 |
| Minkowski, sigmoid | logit | probabilities t_real - smoothing, t_fake | logit of their midpoint: 0 by default |
| Wasserstein | critic value | none (defined up to a constant) | None: ADA is refused |
"""

import math

import keras
from keras import ops

from kgan import names
from kgan.registry import Configurable, Registry


def _flat(outputs):
    """[B] or [B, 1] outputs as float32 [B] (losses are computed in float32 under mixed precision)."""
    outputs = ops.cast(outputs, "float32")
    if len(outputs.shape) == 2 and outputs.shape[-1] == 1:
        outputs = ops.squeeze(outputs, axis=-1)
    if len(outputs.shape) != 1:
        raise ValueError(
            f"Discriminator outputs must have shape [batch] or [batch, 1]; got {outputs.shape}"
        )
    return outputs


def _logit(probability):
    """log(q / (1 - q)): the logit whose sigmoid is `probability` (a Python float in (0, 1))."""
    return math.log(probability / (1.0 - probability))


def _sigmoid_cross_entropy(logits, target):
    """-t log sigmoid(x) - (1 - t) log(1 - sigmoid(x)), stable for any logit."""
    return target * ops.softplus(-logits) + (1.0 - target) * ops.softplus(logits)


# ----------------------------------------------------------------------------------------------
# Minimax (Goodfellow et al. 2014) and non-saturating.


def minimax_discriminator_loss(real_outputs, fake_outputs, label_smoothing=0.0):
    """Discriminator loss of the original GAN: -log D(x) - log(1 - D(G(z))).

    Goodfellow et al., "Generative Adversarial Nets", 2014 (https://arxiv.org/abs/1406.2661).
    One-sided label smoothing (Salimans et al. 2016) moves the real target to 1 - smoothing.

    Args:
        real_outputs: logits of D on real data, shape [B] or [B, 1].
        fake_outputs: logits of D on generated data, same shape.
        label_smoothing: float in [0, 1): amount taken off the real target.

    Returns:
        Per-example loss, shape [B].
    """
    real = _flat(real_outputs)
    fake = _flat(fake_outputs)
    return _sigmoid_cross_entropy(real, 1.0 - label_smoothing) + _sigmoid_cross_entropy(fake, 0.0)


def minimax_generator_loss(fake_outputs):
    """Saturating generator loss of the original GAN: log(1 - D(G(z))) = -softplus(logit).

    Goodfellow et al. 2014. Its gradient vanishes when D confidently rejects the samples,
    which is why the non-saturating form is used in practice; kept for the comparison.
    """
    return -ops.softplus(_flat(fake_outputs))


def non_saturating_generator_loss(fake_outputs):
    """Non-saturating generator loss: -log D(G(z)) = softplus(-logit). Goodfellow et al. 2014."""
    return ops.softplus(-_flat(fake_outputs))


# ----------------------------------------------------------------------------------------------
# Wasserstein (Arjovsky et al. 2017) and hinge (Lim & Ye 2017; Miyato et al. 2018).


def wasserstein_discriminator_loss(real_outputs, fake_outputs):
    """Critic loss of WGAN: D(G(z)) - D(x). Arjovsky et al. 2017 (https://arxiv.org/abs/1701.07875)."""
    return _flat(fake_outputs) - _flat(real_outputs)


def wasserstein_generator_loss(fake_outputs):
    """Generator loss of WGAN: -D(G(z))."""
    return -_flat(fake_outputs)


def hinge_discriminator_loss(real_outputs, fake_outputs):
    """Hinge loss: relu(1 - D(x)) + relu(1 + D(G(z))). Lim & Ye 2017; used by SNGAN (Miyato 2018)."""
    return ops.relu(1.0 - _flat(real_outputs)) + ops.relu(1.0 + _flat(fake_outputs))


def hinge_generator_loss(fake_outputs):
    """Generator loss of the hinge GAN: -D(G(z))."""
    return -_flat(fake_outputs)


# ----------------------------------------------------------------------------------------------
# Least squares (Mao et al. 2017).


def least_squares_discriminator_loss(real_outputs, fake_outputs, real_target=1.0, fake_target=0.0):
    """LSGAN: 1/2 (D(x) - b)^2 + 1/2 (D(G(z)) - a)^2. Mao et al. 2017 (https://arxiv.org/abs/1611.04076)."""
    real = _flat(real_outputs)
    fake = _flat(fake_outputs)
    return 0.5 * ops.square(real - real_target) + 0.5 * ops.square(fake - fake_target)


def least_squares_generator_loss(fake_outputs, real_target=1.0):
    """LSGAN generator loss: 1/2 (D(G(z)) - c)^2."""
    return 0.5 * ops.square(_flat(fake_outputs) - real_target)


# ----------------------------------------------------------------------------------------------
# Minkowski (L_p) distance loss: the core paper.


def _minkowski_term(outputs, target, p, activation):
    """|target - D|^p with D = sigmoid(outputs) or the raw outputs.

    For the sigmoid and targets 0 or 1 the power is taken in log space
    (|1 - sigmoid(x)|^p = exp(p log_sigmoid(-x))), which is exact and finite for any logit.
    """
    if activation == "sigmoid":
        if target == 1.0:
            return ops.exp(p * ops.log_sigmoid(-outputs))
        if target == 0.0:
            return ops.exp(p * ops.log_sigmoid(outputs))
        outputs = ops.sigmoid(outputs)
    return ops.power(ops.abs(target - outputs), p)


def minkowski_discriminator_loss(
    real_outputs, fake_outputs, p=4.0, activation="sigmoid", real_target=1.0, fake_target=0.0
):
    """Minkowski-distance discriminator loss: 1/p |t_real - D(x)|^p + 1/p |D(G(z)) - t_fake|^p.

    The Minkowski-distance GAN loss (see shared/PAPER.md): the cross-entropy terms of the
    original GAN replaced by the L_p distance between D's output and its targets; 1/p makes the
    leading coefficient of the derivative 1. The same family is "least k-th order GAN"
    (Bhatia et al.). With p = 2 and a linear output it is LSGAN with 1/2 factors.

    Args:
        real_outputs: logits (activation "sigmoid") or raw outputs ("linear") on real data, [B].
        fake_outputs: the same on generated data, [B].
        p: order of the distance, a finite number >= 1.
        activation: "sigmoid" (D is a probability, the paper) or "linear" (raw output).
        real_target: target for real data (e.g. 0.9 for one-sided label smoothing).
        fake_target: target for generated data.

    Returns:
        Per-example loss, shape [B].
    """
    real = _flat(real_outputs)
    fake = _flat(fake_outputs)
    return (
        _minkowski_term(real, real_target, p, activation)
        + _minkowski_term(fake, fake_target, p, activation)
    ) / p


def minkowski_generator_loss(fake_outputs, p=4.0, activation="sigmoid", real_target=1.0):
    """Minkowski-distance generator loss: 1/p |t_real - D(G(z))|^p."""
    return _minkowski_term(_flat(fake_outputs), real_target, p, activation) / p


# ----------------------------------------------------------------------------------------------
# Classes.


class Loss(Configurable):
    """Base class: a pair of per-example discriminator and generator losses.

    Subclasses implement `discriminator_loss(real_outputs, fake_outputs)` and
    `generator_loss(fake_outputs, real_outputs=None)`, both returning shape [B], and
    `get_config()` returning exactly their constructor arguments.
    """

    #: Whether one-sided label smoothing has a meaning for this loss.
    supports_label_smoothing = False

    @property
    def decision_threshold(self):
        """D's output when undecided (the midpoint of its targets), or None if it has none.

        ADA's r_t = E[sign(D(real) - decision_threshold)]; see the module docstring's table.
        """
        return 0.0

    def discriminator_loss(self, real_outputs, fake_outputs):
        raise NotImplementedError

    def generator_loss(self, fake_outputs, real_outputs=None):
        raise NotImplementedError

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()


#: The losses by name (`kgan.names.LOSSES`) and class name.
LOSS_REGISTRY = Registry("loss", base=Loss, keras_saving=True)


def _check_smoothing(label_smoothing):
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1); got {label_smoothing}")
    return float(label_smoothing)


@LOSS_REGISTRY.register("minimax")
@keras.saving.register_keras_serializable(package="kgan")
class Minimax(Loss):
    """The original GAN loss with the saturating generator loss log(1 - D(G(z)))."""

    supports_label_smoothing = True

    def __init__(self, label_smoothing=0.0):
        self.label_smoothing = _check_smoothing(label_smoothing)

    @property
    def decision_threshold(self):
        """logit((1 - smoothing) / 2): 0 without smoothing."""
        return _logit((1.0 - self.label_smoothing) / 2.0)

    def discriminator_loss(self, real_outputs, fake_outputs):
        return minimax_discriminator_loss(real_outputs, fake_outputs, self.label_smoothing)

    def generator_loss(self, fake_outputs, real_outputs=None):
        return minimax_generator_loss(fake_outputs)

    def get_config(self):
        return {"label_smoothing": self.label_smoothing}


@LOSS_REGISTRY.register("non_saturating")
@keras.saving.register_keras_serializable(package="kgan")
class NonSaturating(Minimax):
    """The original GAN discriminator loss with the non-saturating generator loss -log D(G(z))."""

    def generator_loss(self, fake_outputs, real_outputs=None):
        return non_saturating_generator_loss(fake_outputs)


@LOSS_REGISTRY.register("wasserstein")
@keras.saving.register_keras_serializable(package="kgan")
class Wasserstein(Loss):
    """WGAN critic loss; pair it with weight clipping or a gradient penalty.

    No `decision_threshold` (None): adding a constant to the critic changes no loss, so the
    sign of its output carries no information.
    """

    decision_threshold = None

    def discriminator_loss(self, real_outputs, fake_outputs):
        return wasserstein_discriminator_loss(real_outputs, fake_outputs)

    def generator_loss(self, fake_outputs, real_outputs=None):
        return wasserstein_generator_loss(fake_outputs)


@LOSS_REGISTRY.register("hinge")
@keras.saving.register_keras_serializable(package="kgan")
class Hinge(Loss):
    """Hinge loss (SNGAN)."""

    def discriminator_loss(self, real_outputs, fake_outputs):
        return hinge_discriminator_loss(real_outputs, fake_outputs)

    def generator_loss(self, fake_outputs, real_outputs=None):
        return hinge_generator_loss(fake_outputs)


@LOSS_REGISTRY.register("least_squares")
@keras.saving.register_keras_serializable(package="kgan")
class LeastSquares(Loss):
    """LSGAN with targets a (fake) = 0, b (real) = 1, c (generator) = 1 by default.

    `label_smoothing` lowers the discriminator's real target b to 1 - smoothing.
    """

    supports_label_smoothing = True

    def __init__(self, real_target=1.0, fake_target=0.0, label_smoothing=0.0):
        self.real_target = float(real_target)
        self.fake_target = float(fake_target)
        self.label_smoothing = _check_smoothing(label_smoothing)

    @property
    def decision_threshold(self):
        """(b - smoothing + a) / 2, the midpoint of D's targets."""
        return (self.real_target - self.label_smoothing + self.fake_target) / 2.0

    def discriminator_loss(self, real_outputs, fake_outputs):
        return least_squares_discriminator_loss(
            real_outputs,
            fake_outputs,
            real_target=self.real_target - self.label_smoothing,
            fake_target=self.fake_target,
        )

    def generator_loss(self, fake_outputs, real_outputs=None):
        return least_squares_generator_loss(fake_outputs, self.real_target)

    def get_config(self):
        return {
            "real_target": self.real_target,
            "fake_target": self.fake_target,
            "label_smoothing": self.label_smoothing,
        }


MINKOWSKI_ACTIVATIONS = names.MINKOWSKI_ACTIVATIONS


@LOSS_REGISTRY.register("minkowski")
@keras.saving.register_keras_serializable(package="kgan")
class Minkowski(Loss):
    """Minkowski-distance (L_p) GAN loss; p = 4 is the paper's best.

    L_D = 1/p E|t_real - D(x)|^p + 1/p E|D(G(z)) - t_fake|^p,  L_G = 1/p E|t_real - D(G(z))|^p,
    with D = sigmoid(logits) ("sigmoid") or the raw output ("linear"). `label_smoothing`
    lowers the discriminator's real target to t_real - smoothing (one-sided: the generator's
    target stays t_real).

    Args:
        p: finite number >= 1 (below 1 the L_p "distance" is not a metric).
        activation: "sigmoid" or "linear".
        real_target: target for real data and for the generator.
        fake_target: target for generated data.
        label_smoothing: float in [0, 1).

    Raises:
        ValueError: if p is not a finite number >= 1, or activation is unknown.
    """

    supports_label_smoothing = True

    def __init__(
        self, p=4.0, activation="sigmoid", real_target=1.0, fake_target=0.0, label_smoothing=0.0
    ):
        try:
            p = float(p)
        except (TypeError, ValueError):
            raise ValueError(f"Minkowski p must be a finite number >= 1; got {p!r}") from None
        if not math.isfinite(p) or p < 1.0:
            raise ValueError(f"Minkowski p must be a finite number >= 1; got {p}")
        if activation not in MINKOWSKI_ACTIVATIONS:
            raise ValueError(
                f"Minkowski activation must be one of {MINKOWSKI_ACTIVATIONS}; got {activation!r}"
            )
        self.p = p
        self.activation = activation
        self.real_target = float(real_target)
        self.fake_target = float(fake_target)
        self.label_smoothing = _check_smoothing(label_smoothing)

    @property
    def decision_threshold(self):
        """The midpoint of D's targets: raw (linear), or its logit (sigmoid: D outputs logits)."""
        midpoint = (self.real_target - self.label_smoothing + self.fake_target) / 2.0
        return _logit(midpoint) if self.activation == "sigmoid" else midpoint

    def discriminator_loss(self, real_outputs, fake_outputs):
        return minkowski_discriminator_loss(
            real_outputs,
            fake_outputs,
            p=self.p,
            activation=self.activation,
            real_target=self.real_target - self.label_smoothing,
            fake_target=self.fake_target,
        )

    def generator_loss(self, fake_outputs, real_outputs=None):
        return minkowski_generator_loss(
            fake_outputs, p=self.p, activation=self.activation, real_target=self.real_target
        )

    def get_config(self):
        return {
            "p": self.p,
            "activation": self.activation,
            "real_target": self.real_target,
            "fake_target": self.fake_target,
            "label_smoothing": self.label_smoothing,
        }


def serialize(loss):
    """The `keras.saving` config dict of a `Loss`."""
    return LOSS_REGISTRY.serialize(loss)


def deserialize(config):
    """The `Loss` a `serialize` (or `{"class_name": ..., "config": ...}`) dict describes."""
    return LOSS_REGISTRY.deserialize(config)


def get(identifier):
    """Returns a `Loss` from a name (`kgan.names.LOSSES` or a class name), a config dict, a
    `Loss` class or an instance.

    Raises:
        ValueError: if the identifier is none of these.
    """
    return LOSS_REGISTRY.get(identifier)
