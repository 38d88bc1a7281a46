"""The optional techniques of `kgan.gan.GAN`'s train step, one small class each.

Each technique is an object in the manner of a Keras callback: `Technique` defines every hook as
doing nothing, and a technique overrides the hooks it needs. `GAN` holds the techniques its
options ask for (`build`), in a fixed order, and its step calls each hook on all of them, in that
order, at one place:

    check_loss(loss_fn)            compile: refuse a loss the technique cannot work with
    on_compile(gan)                compile: state that needs the optimizers (unrolling's SGD)
    transform(x)                   every discriminator input: augmentation, then instance noise
                                   (per sample), then PacGAN's packing
    before_generator_update(update)
                                   before G's tape: feature matching's real features
    fake_outputs(update, fake_inputs, outputs)
                                   D's outputs on G's fakes computed otherwise: through the
                                   feature network (feature matching), by the unrolled D
    loss(update)                   an extra term of a player's loss: feature matching (G),
                                   historical averaging (both)
    transform_gradients(gradients, global_gradient)
                                   before the optimizer: gradient-norm clipping
    after_update(update, real_outputs)
                                   after a player's update: ADA's p, historical averages
    after_step(gan)                after the generator update: the EMA copy of G
    logs()                         extra logged values: `augment_p`

`update` (an `Update`) is the player's update in progress: the GAN, which player, its real
batch's D inputs, and a dict for values a technique passes from one hook to the next. It is
made afresh for every update, so under `tf.distribute.MirroredStrategy` (whose replicas run the
step in parallel threads) each replica has its own; the technique objects hold no per-step
state. `update.real_inputs()` makes D's inputs of the real batch afresh at each call (a new draw
of augmentation and instance noise), so a technique draws them only when it needs them, and the
random streams are drawn in the same order as before the techniques were objects.

A technique's Keras state (variables, sub-models, seed generators, trackers) is listed by
`tracked()` and held by the GAN as attributes of those names, so `save_weights` stores it where
it always has (`ema_generator`, `d_historical`, `g_historical`, ...); the technique objects
themselves are plain Python objects, which Keras neither tracks nor saves.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from kgan import augment as augment_lib
from kgan import distribute, regularizers, seeds, unrolled
from kgan.networks import layers as networks_layers

#: The `player` names the hooks are given: the `GAN` attributes of the two networks.
DISCRIMINATOR, GENERATOR = "discriminator", "generator"


class Update:
    """One player's update in progress, as the hooks see it (one per update and replica).

    Attributes:
        gan: the `kgan.gan.GAN`.
        player: `DISCRIMINATOR` or `GENERATOR`, the name of the `GAN` attribute of the network
            being updated.
        real_inputs: a function making D's inputs of the update's real batch (the generator's:
            the last critic update's), a fresh augmentation and instance-noise draw each call.
        values: a dict in which a technique keeps what one of its hooks passes to a later one.
    """

    def __init__(self, gan, player, real_inputs=None):
        self.gan = gan
        self.player = player
        self.real_inputs = real_inputs
        self.values = {}

    @property
    def network(self):
        """The network being updated."""
        return getattr(self.gan, self.player)


def _optional(kind):
    """A converter that keeps None and converts anything else with `kind`."""
    return lambda value: None if value is None else kind(value)


def _nonnegative(options, name):
    """`options[name]`, checked >= 0 (0: the technique is off). Raises ValueError otherwise."""
    if options[name] < 0:
        raise ValueError(f"{name} must be >= 0; got {options[name]}")
    return options[name]


class Option:
    """One `GAN(...)` keyword argument a technique reads: its neutral default, the conversion
    of a given value (what `GAN` stores and `get_config` returns) and, for objects, how the
    config serialises it."""

    def __init__(self, default, convert=None, serialize=None):
        self.default = default
        self.convert = convert or (lambda value: value)
        self.serialize = serialize or (lambda value: value)


class Technique:
    """An optional part of the train step: every hook does nothing; subclasses override some.

    Attributes:
        name: the technique's name (`GAN.technique(name)` finds it).
        options: {`GAN` keyword argument: `Option`} this technique reads (`from_options`).
        transforms_inputs: True if `transform` changes D's inputs (a gradient penalty then
            differentiates `D(transform(x))` rather than D itself). Packing only rearranges
            them: the penalty is taken on packed inputs, of D itself (`GAN._critic`).
        needs_global_gradient: True if `transform_gradients` needs the GLOBAL gradient and
            its norm (computed once per update, shared with `track_gradient_norms`).
    """

    name = None
    options = {}
    transforms_inputs = False
    needs_global_gradient = False

    @classmethod
    def from_options(cls, options, generator, discriminator, seed):
        """The technique `options` (every GAN option, converted) ask for, or None when they
        leave it off. Raises ValueError for an invalid option."""
        raise NotImplementedError

    def tracked(self):
        """{GAN attribute name: Keras object} the GAN holds (and so saves) for this technique."""
        return {}

    def trackers(self):
        """`keras.metrics.Mean`s logged after the GAN's own, in this order."""
        return []

    def seed_generators(self):
        """{name: `keras.random.SeedGenerator`} of this technique's random streams."""
        return {}

    def check_loss(self, loss_fn):
        """Raises ValueError if the technique cannot work with `loss_fn` (called by `compile`)."""

    def on_compile(self, gan):
        """Makes state that needs the compiled GAN (called at the end of `compile`)."""

    def transform(self, x):
        """A discriminator input, transformed (real and generated, in both updates)."""
        return x

    def changes_generator_pass(self):
        """Whether the technique overrides how G's update runs D on the fakes (`before_generator_update`,
        `fake_outputs`): simultaneous updates share that pass with D's update, so cannot have it."""
        cls = type(self)
        return (cls.before_generator_update is not Technique.before_generator_update
                or cls.fake_outputs is not Technique.fake_outputs)

    def before_generator_update(self, update):
        """Called before the generator's tape (so no gradient flows through what it computes)."""

    def fake_outputs(self, update, fake_inputs, outputs):
        """D's outputs on the generator's fakes: `outputs` (None: not computed yet) or others."""
        return outputs

    def loss(self, update):
        """An extra scalar term of the player's loss (a per-model value; see `replica_share`), or None."""
        return None

    def transform_gradients(self, gradients, global_gradient):
        """The gradients the optimizer applies. `global_gradient`: a `GlobalGradient` or None."""
        return gradients

    def after_update(self, update, real_outputs=None):
        """Called after the player's optimizer update; `real_outputs`: D's, in D's updates."""

    def after_step(self, gan):
        """Called at the end of the train step, after the generator update."""

    def logs(self):
        """{name: scalar tensor} added to the step's logged values."""
        return {}


def replica_share(value):
    """A per-model scalar as one replica's share: `value / replicas`, so the sum over replicas
    (the optimizer sums their gradients) counts it once."""
    _, num_replicas = distribute.replica()
    return ops.cast(value, "float32") / num_replicas


def global_mean(values):
    """Mean over the GLOBAL batch of `values` [B, F] (float32), differentiable per replica.

    The value is the all-reduced sum / global batch; the gradient flows only into this
    replica's own examples, so the optimizer's sum over replicas gives the full gradient.
    """
    _, num_replicas = distribute.replica()
    values = ops.cast(values, "float32")
    local_sum = ops.sum(values, axis=0)
    if num_replicas > 1:
        total = distribute.all_reduce_sum(ops.stop_gradient(local_sum))
        local_sum = local_sum + ops.stop_gradient(total - local_sum)
    return local_sum / ops.cast(ops.shape(values)[0] * num_replicas, "float32")


class GlobalGradient:
    """A player's GLOBAL-batch gradient (summed over replicas) and its norm, loss scaling undone.

    Each replica holds a partial sum, so the gradients are all-reduced (an extra all-reduce,
    made only when `track_gradient_norms` or a technique needs it).

    Attributes:
        present: indices of the gradients that are not None.
        total: the all-reduced gradients at those indices.
        norm: their global norm (float32), divided by the optimizer's loss scale if any.
        num_replicas: the number of replicas in sync.
    """

    def __init__(self, gradients, optimizer):
        _, self.num_replicas = distribute.replica()
        self.present = [i for i, g in enumerate(gradients) if g is not None]
        self.total = distribute.all_reduce_sum([gradients[i] for i in self.present])
        norm = tf.linalg.global_norm([ops.cast(g, "float32") for g in self.total])
        scale = getattr(optimizer, "dynamic_scale", None)  # LossScaleOptimizer (float16)
        if scale is not None:
            norm = norm / ops.cast(scale, "float32")
        self.norm = norm


# ----------------------------------------------------------------------------------------------
# The techniques, in the order the GAN calls them (`build`).


class ConditionalLabels(Technique):
    """Class-conditional training (Mirza & Osindero 2014, https://arxiv.org/abs/1411.1784).

    G takes `[latent, labels]`, D takes `[samples, labels]` (`kgan.networks.build(...,
    num_classes=...)` makes such a pair); batches are `(samples, labels)`. The fake labels are
    uniform over the classes, drawn for the GLOBAL batch from their own stream
    (`kgan.seeds.stream_seed(seed, "labels")`) and sliced per replica, like the latent noise.

    Args:
        num_classes: the number of classes, an int >= 1.
        seed: the run seed (int) or None.
    """

    name = "conditional"

    options = {"num_classes": Option(None, _optional(int))}

    @classmethod
    def from_options(cls, options, generator, discriminator, seed):
        return None if options["num_classes"] is None else cls(options["num_classes"], seed)

    def __init__(self, num_classes, seed=None):
        if isinstance(num_classes, bool) or int(num_classes) < 1:
            raise ValueError(f"num_classes must be None or an int >= 1; got {num_classes!r}")
        self.num_classes = int(num_classes)
        self.seed_generator = seeds.seed_generator(seed, "labels", name="label_seed")

    def tracked(self):
        return {"label_seed_generator": self.seed_generator}

    def seed_generators(self):
        return {"labels": self.seed_generator}

    def unpack(self, data):
        """(samples, int32 labels) of a batch `(samples, labels)`; ValueError without labels."""
        if not isinstance(data, (tuple, list)) or len(data) < 2 or data[1] is None:
            raise ValueError(
                f"A conditional GAN (num_classes={self.num_classes}) takes batches (samples, labels); "
                "load the data with labels (kgan.data.load(..., with_labels=True))."
            )
        return data[0], ops.cast(data[1], "int32")

    def fake_labels(self, local_batch):
        """Uniform class labels (int32) for this replica: its slice of a global [R * B] draw."""
        return distribute.replica_slice(
            lambda n: keras.random.randint((n,), 0, self.num_classes, seed=self.seed_generator, dtype="int32"),
            local_batch)

    def sampling_labels(self, n, labels=None):
        """The int32 labels [n] of `n` samples: `labels` checked, or the classes in turn.

        Raises:
            ValueError: labels of the wrong shape or range.
        """
        labels = np.arange(n) % self.num_classes if labels is None else np.asarray(labels)
        if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be {n} ints; got shape {labels.shape}, dtype {labels.dtype}")
        if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f"labels must be in [0, {self.num_classes}); got {labels.min()}..{labels.max()}")
        return ops.convert_to_tensor(labels, "int32")


class Augmentation(Technique):
    """Differentiable augmentation of every discriminator input, real and generated.

    DiffAugment (Zhao et al. 2020, https://arxiv.org/abs/2006.10738) or ADA (Karras et al.
    2020, https://arxiv.org/abs/2006.06676), a `kgan.augment.Augment`, applied in both updates
    before instance noise. After each discriminator update, `augment.update(real_outputs,
    threshold=loss.decision_threshold)`: ADA's r_t compares D's outputs on reals with the loss's
    decision threshold, so `check_loss` refuses ADA with a loss that has none (Wasserstein). Its
    probability is logged as `augment_p` (the value at the end of the step). The augment layer
    stays the GAN's `augment` attribute (its p and seed are saved there).

    Args:
        augment: a `kgan.augment.Augment`.
    """

    name = "augment"
    transforms_inputs = True

    options = {"augment": Option(None, lambda value: augment_lib.get(value), lambda value: augment_lib.serialize(value))}

    @classmethod
    def from_options(cls, options, generator, discriminator, seed):
        return None if options["augment"] is None else cls(options["augment"])

    def __init__(self, augment):
        self.augment = augment

    def seed_generators(self):
        return {"augment": self.augment.seed_generator}

    def check_loss(self, loss_fn):
        if getattr(self.augment, "adaptive", False) and loss_fn.decision_threshold is None:
            raise ValueError(
                f"ADA (--augment ada) needs a loss with a decision threshold; {type(loss_fn).__name__}'s critic "
                "values are defined up to a constant, so sign(D(real) - threshold) carries no overfitting signal"
            )

    def transform(self, x):
        return self.augment(x, training=True)

    def after_update(self, update, real_outputs=None):
        if update.player == DISCRIMINATOR:
            self.augment.update(real_outputs, threshold=update.gan.loss_fn.decision_threshold or 0.0)

    def logs(self):
        return {"augment_p": ops.convert_to_tensor(self.augment.p)}


class InstanceNoise(Technique):
    """Gaussian instance noise on every discriminator input, real and generated.

    Sonderby et al. 2016, "Amortised MAP Inference for Image Super-resolution"
    (https://arxiv.org/abs/1610.04490); Arjovsky & Bottou 2017, "Towards Principled Methods for
    Training Generative Adversarial Networks" (https://arxiv.org/abs/1701.04862). Drawn for the
    GLOBAL batch from its own stream (`kgan.seeds.stream_seed(seed, "instance_noise")`), each
    replica keeping its slice; a fresh draw for every input.

    Args:
        stddev: the noise's standard deviation, > 0.
        seed: the run seed (int) or None.
    """

    name = "instance_noise"

    options = {"instance_noise": Option(0.0, float)}

    transforms_inputs = True

    @classmethod
    def from_options(cls, options, generator, discriminator, seed):
        stddev = _nonnegative(options, "instance_noise")
        return cls(stddev, seed) if stddev else None

    def __init__(self, stddev, seed=None):
        if not stddev > 0:
            raise ValueError(f"instance_noise must be >= 0; got {stddev}")
        self.stddev = float(stddev)
        self.seed_generator = seeds.seed_generator(seed, "instance_noise", name="instance_noise_seed")

    def tracked(self):
        return {"instance_noise_seed_generator": self.seed_generator}

    def seed_generators(self):
        return {"instance_noise": self.seed_generator}

    def transform(self, x):
        noise = distribute.replica_slice(
            lambda n: keras.random.normal((n, *x.shape[1:]), stddev=self.stddev, seed=self.seed_generator),
            ops.shape(x)[0])
        return x + ops.cast(noise, x.dtype)


class Packing(Technique):
    """PacGAN packing: the discriminator judges m samples at once, concatenated.

    Lin et al. 2018, "PacGAN: The power of two samples in generative adversarial networks"
    (https://arxiv.org/abs/1712.04086). Every discriminator input, real and generated, is a batch
    of B packed examples, each m consecutive samples of a batch of B * m joined along the last
    axis: the features of 2-D points (`[x1, y1, x2, y2]` for m = 2, PacGAN's `concatenate([G(z_1),
    ..., G(z_m)], axis=1)`), the channels of images (sample 1's channels first, as PacDCGAN). So
    the GAN is fed B * m real samples per critic update and its generator makes B * m fakes (its
    latents follow the real batch); the losses are D's on the B packed examples, the gradient
    penalty interpolates packed reals and packed fakes (one alpha per packed example), R1 takes
    the packed reals. Augmentation and instance noise act on each sample before packing (ADA's
    r_t and its step count D's outputs: packed examples). The generator is unchanged, so
    sampling and the export are. Packing holds no state and draws nothing; a conditional GAN
    cannot pack (its labels are per sample).

    Args:
        m: the number of samples per packed example, an int >= 2.
    """

    name = "pack"

    options = {"pack": Option(1, int)}

    @classmethod
    def from_options(cls, options, generator, discriminator, seed):
        if options["pack"] < 1:
            raise ValueError(f"pack must be >= 1; got {options['pack']}")
        if options["pack"] == 1:
            return None
        if options["num_classes"] is not None:
            raise ValueError("pack (PacGAN) cannot be combined with a conditional GAN (num_classes): D's labels "
                             "are per sample, a packed example holds several")
        return cls(options["pack"])

    def __init__(self, m):
        if not int(m) >= 2:
            raise ValueError(f"pack must be >= 1 (a Packing technique packs >= 2); got {m}")
        self.m = int(m)

    def transform(self, x):
        """Samples [B * m, ..., C] -> packed examples [B, ..., m * C], m consecutive samples each."""
        return pack(x, self.m)

    def unpack(self, x):
        """The inverse of `pack`: packed examples [B, ..., m * C] -> samples [B * m, ..., C]."""
        return unpack(x, self.m)


def pack(x, m):
    """m consecutive samples of `x` [B * m, ..., C] joined on the last axis: [B, ..., m * C].

    Points [B * m, F] -> [B, m * F] (sample 1's features first); images [B * m, H, W, C] ->
    [B, H, W, m * C] (sample 1's channels first).
    """
    shape = tuple(x.shape[1:])
    x = ops.reshape(x, (-1, m, *shape))
    x = ops.transpose(x, (0, *range(2, len(shape) + 1), 1, len(shape) + 1))  # the m axis before C
    return ops.reshape(x, (-1, *shape[:-1], m * shape[-1]))


def unpack(x, m):
    """The inverse of `pack`: [B, ..., m * C] -> [B * m, ..., C]."""
    shape = tuple(x.shape[1:])
    x = ops.reshape(x, (-1, *shape[:-1], m, shape[-1] // m))
    x = ops.transpose(x, (0, len(shape), *range(1, len(shape)), len(shape) + 1))  # the m axis after B
    return ops.reshape(x, (-1, *shape[:-1], shape[-1] // m))


def feature_network(discriminator):
    """`keras.Model`: D's inputs -> [features [B, F], D's outputs], sharing D's layers.

    The features are the output of D's layer named `features` (every `kgan.networks`
    discriminator has one: a `keras.layers.Identity` on its penultimate feature vector).

    Raises:
        ValueError: if `discriminator` has no layer named `features`.
    """
    try:
        features = discriminator.get_layer(networks_layers.FEATURES_LAYER)
    except ValueError:
        raise ValueError(
            f"feature_matching needs a discriminator with a layer named 'features' (its penultimate "
            f"feature vector, e.g. keras.layers.Identity(name='features')); {discriminator.name!r} has none"
        ) from None
    return keras.Model(discriminator.inputs, [features.output, discriminator.outputs[0]], name="features")


class FeatureMatching(Technique):
    """Salimans et al.'s feature-matching term in the generator's loss.

    "Improved Techniques for Training GANs", 2016 (https://arxiv.org/abs/1606.03498):
    `weight * || mean_batch f(real) - mean_batch f(fake) ||_2^2`, f the output of D's `features`
    layer, the means over the GLOBAL batch (`global_mean`: a per-model scalar, replica-correct).
    The real batch is the last critic update's; its features are computed before G's tape and
    need no gradient. D's outputs on the fakes come from the same forward pass as their
    features. Logged as `feature_matching`.

    Args:
        weight: the term's weight, > 0.
        discriminator: the GAN's discriminator, with a layer named `features`.
    """

    name = "feature_matching"

    options = {"feature_matching": Option(0.0, float)}

    @classmethod
    def from_options(cls, options, generator, discriminator, seed):
        weight = _nonnegative(options, "feature_matching")
        return cls(weight, discriminator) if weight else None

    def __init__(self, weight, discriminator):
        if not weight > 0:
            raise ValueError(f"feature_matching must be >= 0; got {weight}")
        self.weight = float(weight)
        self.tracker = keras.metrics.Mean(name="feature_matching")
        # Held here, not by the GAN: D's layers stay saved once, under `discriminator`.
        self.network = feature_network(discriminator)

    def tracked(self):
        return {"feature_matching_tracker": self.tracker}

    def trackers(self):
        return [self.tracker]

    def before_generator_update(self, update):
        update.values["real_features"] = self.network(update.real_inputs(), training=True)[0]

    def fake_outputs(self, update, fake_inputs, outputs):
        update.values["fake_features"], outputs = self.network(fake_inputs, training=True)
        return outputs

    def loss(self, update):
        if update.player != GENERATOR:
            return None
        real, fake = update.values["real_features"], update.values["fake_features"]
        difference = ops.stop_gradient(global_mean(real)) - global_mean(fake)
        matching = self.weight * ops.sum(ops.square(difference))
        self.tracker.update_state(matching)
        return matching


class ExponentialMovingAverage(Technique):
    """An exponential moving average of the generator's weights, `ema_generator`.

    Karras et al. 2018, https://arxiv.org/abs/1710.10196; Yazici et al. 2019, "The Unusual
    Effectiveness of Averaging in GAN Training", https://arxiv.org/abs/1806.04498. The average
    is a non-trainable clone of the generator; after generator update t (t = 1, 2, ...) every
    trainable weight becomes `decay_s * avg + (1 - decay_s) * w` if t > `start`, else `w` (the
    copy tracks the raw weights exactly until averaging starts), with the warm-up of
    TensorFlow's `ExponentialMovingAverage(num_updates=s)`: `decay_s = min(decay, (1 + s) /
    (10 + s))`, s = t - start the number of averaged updates so far (s = 1 at the first:
    `(2/11) avg + (9/11) w`), so the initial weights are forgotten within the first tens of
    updates instead of weighing `decay^t`. Non-trainable weights (batch-norm moving statistics)
    are copied from the generator. `GAN.sampler` is then the average.

    Args:
        generator: the GAN's generator (built).
        decay: the EMA decay in [0, 1) (e.g. 0.999).
        start: generator updates before averaging starts (int >= 0).
    """

    name = "ema"

    options = {"ema": Option(None, _optional(float)), "ema_start": Option(0, int)}

    @classmethod
    def from_options(cls, options, generator, discriminator, seed):
        check_ema_start(options["ema_start"])  # with or without ema, as always
        return None if options["ema"] is None else cls(generator, options["ema"], options["ema_start"])

    def __init__(self, generator, decay, start=0):
        check_ema_start(start)
        if not 0.0 <= float(decay) < 1.0:
            raise ValueError(f"ema must be None or a decay in [0, 1); got {decay}")
        self.max_decay = float(decay)
        self.start = int(start)
        # A clone with its own (non-trainable) variables, built in the caller's scope.
        self.average = keras.models.clone_model(generator)
        self.average.set_weights(generator.get_weights())
        self.average.trainable = False

    def tracked(self):
        return {"ema_generator": self.average}

    def decay(self, updates):
        """The decay of averaged update s = `updates` (>= 1): min(decay, (1 + s) / (10 + s))."""
        s = ops.cast(updates, "float32")
        return ops.minimum(ops.cast(self.max_decay, "float32"), (1.0 + s) / (10.0 + s))

    def after_step(self, gan):
        """average <- decay_s * average + (1 - decay_s) * w once averaging has started, else w.

        Run after the generator update, so `g_optimizer.iterations` is t, the number of
        generator updates made, and s = t - start (`decay`). `iterations` is checkpointed, so
        a resumed run continues the warm-up. Every replica computes the same values from its
        (mirrored) weights.
        """
        updates = ops.convert_to_tensor(gan.g_optimizer.iterations) - self.start
        started = ops.greater(updates, 0)
        decay = self.decay(ops.maximum(updates, 1))
        for raw, average in zip(gan.generator.weights, self.average.weights, strict=False):
            value = ops.convert_to_tensor(raw)
            if raw.trainable:
                d = ops.cast(decay, value.dtype)
                mixed = d * ops.convert_to_tensor(average) + (1.0 - d) * value
                value = ops.where(started, mixed, value)
            average.assign(value)


def check_ema_start(start):
    """Raises ValueError unless `start` >= 0 (checked with or without `ema`, as always)."""
    if int(start) < 0:
        raise ValueError(f"ema_start must be >= 0; got {start}")


class Unrolling(Technique):
    """G's adversarial loss on the outputs of a discriminator unrolled by K simulated updates.

    Metz et al. 2017, "Unrolled Generative Adversarial Networks",
    https://arxiv.org/abs/1611.02163, via `kgan.unrolled.unrolled_outputs`: by default of D's
    own optimizer with its current state (Adam's moments and step count); with
    `optimizer="sgd"`, plain SGD at its own learning rate `learning_rate`. Neither D's weights
    nor its optimizer change. The unrolled D sees the last critic update's real batch (a fresh
    augmentation and instance-noise draw) and the generator's fakes.

    Args:
        steps: the number K of simulated steps, >= 1.
        optimizer: "discriminator" (D's own, the paper) or "sgd".
        learning_rate: the SGD learning rate (> 0) of `optimizer="sgd"`; None otherwise.
    """

    name = "unroll"

    options = {"unroll": Option(0, int), "unroll_optimizer": Option("discriminator"),
               "unroll_lr": Option(None, _optional(float))}

    @classmethod
    def from_options(cls, options, generator, discriminator, seed):
        check_unroll_optimizer(options["unroll_optimizer"], options["unroll_lr"])
        if not _nonnegative(options, "unroll"):
            return None
        return cls(options["unroll"], options["unroll_optimizer"], options["unroll_lr"])

    def __init__(self, steps, optimizer="discriminator", learning_rate=None):
        check_unroll_optimizer(optimizer, learning_rate)
        if not int(steps) >= 1:
            raise ValueError(f"unroll must be >= 0; got {steps}")
        self.steps = int(steps)
        self.simulates = optimizer
        self.learning_rate = learning_rate
        # Held by this (untracked) object, not by the GAN: the saved weights stay those of every GAN.
        self.sgd = None

    def on_compile(self, gan):
        if self.simulates == "sgd":
            self.sgd = keras.optimizers.SGD(self.learning_rate)
            self.sgd.build(gan.discriminator.trainable_variables)
        # The functional twin is made here, in the strategy scope, not in the first step.
        unrolled.functional_optimizer(self.optimizer(gan), gan.discriminator.trainable_variables)

    def optimizer(self, gan):
        """The optimizer the unrolling simulates: D's own, or the SGD of `learning_rate`."""
        return self.sgd if self.simulates == "sgd" else gan.d_optimizer

    def fake_outputs(self, update, fake_inputs, outputs):
        gan = update.gan
        if outputs is None:
            # D's own pass on the fakes, as without unrolling (its stateful layers update alike).
            gan.discriminator(fake_inputs, training=True)
        return unrolled.unrolled_outputs(
            gan.discriminator, gan.loss_fn, update.real_inputs(), fake_inputs, fake_inputs,
            steps=self.steps, optimizer=self.optimizer(gan), training=True,
        )


def check_unroll_optimizer(optimizer, learning_rate):
    """Raises ValueError for an unknown `unroll_optimizer` or a learning rate it does not take."""
    if optimizer not in ("discriminator", "sgd"):
        raise ValueError(f"unroll_optimizer must be 'discriminator' or 'sgd'; got {optimizer!r}")
    if optimizer == "sgd" and (learning_rate is None or not learning_rate > 0):
        raise ValueError(f"unroll_optimizer 'sgd' needs its own learning rate unroll_lr > 0; got {learning_rate}")
    if optimizer == "discriminator" and learning_rate is not None:
        raise ValueError("unroll_lr is the learning rate of unroll_optimizer 'sgd'; "
                         "the discriminator's optimizer is simulated with its own")


class HistoricalAveraging(Technique):
    """Salimans et al.'s historical-averaging penalty in each player's loss.

    "Improved Techniques for Training GANs", 2016 (https://arxiv.org/abs/1606.03498):
    `weight * sum ||theta - mean_past(theta)||^2`, one `kgan.regularizers.HistoricalAveraging`
    per player (the GAN's `d_historical` and `g_historical`, saved with it), added to its loss
    as a per-model scalar (`replica_share`); the averages are updated after each of its updates.

    Args:
        weight: the penalty's weight, > 0.
        generator, discriminator: the GAN's networks (built).
    """

    name = "historical_averaging"

    options = {"historical_averaging": Option(0.0, float)}

    @classmethod
    def from_options(cls, options, generator, discriminator, seed):
        weight = _nonnegative(options, "historical_averaging")
        return cls(weight, generator, discriminator) if weight else None

    def __init__(self, weight, generator, discriminator):
        if not weight > 0:
            raise ValueError(f"historical_averaging must be >= 0; got {weight}")
        self.regularizers = {}
        for player, network in ((DISCRIMINATOR, discriminator), (GENERATOR, generator)):
            self.regularizers[player] = regularizers.HistoricalAveraging(float(weight))
            self.regularizers[player].build(network.trainable_variables)

    def tracked(self):
        return {"d_historical": self.regularizers[DISCRIMINATOR], "g_historical": self.regularizers[GENERATOR]}

    def loss(self, update):
        return replica_share(self.regularizers[update.player](update.network.trainable_variables))

    def after_update(self, update, real_outputs=None):
        self.regularizers[update.player].update(update.network.trainable_variables)


class GradientNormClipping(Technique):
    """Clips the global norm of each player's GLOBAL gradient before its update.

    Pascanu et al. 2013, "On the difficulty of training recurrent neural networks",
    https://arxiv.org/abs/1211.5063. The gradient summed over replicas (loss scaling undone for
    the norm, `GlobalGradient`) is scaled by `clip / max(norm, clip)` (`tf.clip_by_global_norm`)
    and divided by the number of replicas, since the optimizer sums what every replica gives it.

    Args:
        clip: the largest global gradient norm, > 0.
    """

    name = "clip_grad_norm"
    needs_global_gradient = True

    options = {"clip_grad_norm": Option(None, _optional(float))}

    @classmethod
    def from_options(cls, options, generator, discriminator, seed):
        return None if options["clip_grad_norm"] is None else cls(options["clip_grad_norm"])

    def __init__(self, clip):
        if not clip > 0:
            raise ValueError(f"clip_grad_norm must be None or > 0; got {clip}")
        self.clip = float(clip)

    def transform_gradients(self, gradients, global_gradient):
        clipped, _ = tf.clip_by_global_norm(global_gradient.total, self.clip, use_norm=global_gradient.norm)
        gradients = list(gradients)
        num_replicas = global_gradient.num_replicas
        for i, g in zip(global_gradient.present, clipped, strict=False):
            gradients[i] = g / num_replicas if num_replicas > 1 else g
        return gradients


#: Every technique, in the order their hooks are called: labels; augmentation before instance
#: noise, then packing (D's inputs: each sample transformed, then packed); feature matching before
#: unrolling (G's fake outputs) and before historical averaging (G's loss terms, summed in this
#: order); EMA at the end of the step.
TECHNIQUES = (ConditionalLabels, Augmentation, InstanceNoise, Packing, FeatureMatching, ExponentialMovingAverage,
              Unrolling, HistoricalAveraging, GradientNormClipping)
#: {GAN keyword argument: `Option`} of all techniques.
OPTIONS = {name: option for technique in TECHNIQUES for name, option in technique.options.items()}


def options_from(kwargs):
    """Pops every technique option from `kwargs` (GAN's keyword arguments) and returns them all,
    converted, with the neutral default for those not given."""
    return {name: option.convert(kwargs.pop(name, option.default)) for name, option in OPTIONS.items()}


def serialize_options(options):
    """The options as `GAN.get_config` returns them (objects serialised)."""
    return {name: OPTIONS[name].serialize(value) for name, value in options.items()}


def build(generator, discriminator, seed=None, **options):
    """The techniques `GAN`'s options ask for, in the order their hooks are called (`TECHNIQUES`).

    The options are `GAN`'s (see its docstring; `options_from` fills in the rest); neutral values
    (None, 0) give no technique, so the step is then the plain one.

    Raises:
        ValueError: for an invalid option (each technique checks its own).
    """
    options = options_from(dict(options))
    parts = [technique.from_options(options, generator, discriminator, seed) for technique in TECHNIQUES]
    return [part for part in parts if part is not None]
