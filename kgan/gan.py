"""`GAN`: a `keras.Model` whose `train_step` alternates discriminator and generator updates.

Follows the Keras custom-train-step guide: trackers made in `__init__` and listed by `metrics`,
noise from a `keras.random.SeedGenerator`, `compile()` with explicit keyword arguments, and
`call(z)` running the generator so the model is built and exportable.

Distribution: the per-example losses are reduced in ONE place, `_average`, with
`tf.nn.compute_average_loss` (sum / GLOBAL batch). Keras' optimizer sums gradients across
replicas, so this makes a step on R replicas equal a step on one with the same global batch.
Noise is drawn for the GLOBAL batch on every replica from the same seed and each replica keeps
its own slice, so the noise, too, does not depend on the number of replicas. Each kind of draw
(latent noise, fake labels, instance noise) has its own `keras.random.SeedGenerator`, seeded
from the run seed by `kgan.seeds.stream_seed`, so no two streams repeat one another.

The stabilisation toolbox (all off by default; off, the step is the plain one bit for bit):
class-conditional training (`num_classes`), an exponential moving average of the generator's
weights (`ema`, sampled from by `sampler`, `call` and `generate`), feature matching
(`feature_matching`), differentiable augmentation of every discriminator input (`augment`),
unrolled discriminator updates in the generator's loss (`unroll`), gradient-norm clipping
(`clip_grad_norm`) and historical averaging (`historical_averaging`). Per-model scalars (feature
matching, historical averaging) and clipping are made replica-correct where they are computed;
see the methods' docstrings.
"""

import weakref

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from kgan import augment as augment_lib
from kgan import constraints, distribute, losses, penalties, regularizers, seeds, unrolled
from kgan.networks import layers as networks_layers

#: GAN -> the plain SGD its `unroll_optimizer="sgd"` simulates (not a model attribute: not saved).
_UNROLL_SGD = weakref.WeakKeyDictionary()


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


@keras.saving.register_keras_serializable(package="kgan")
class GAN(keras.Model):
    """A generator and a discriminator trained adversarially by `fit`.

    Each `train_step` makes `d_steps` discriminator updates, each on its own real batch, then
    one generator update. Feed it batches of `d_steps * batch_size` examples (the data pipeline
    does); the step takes examples k, k + d_steps, k + 2 d_steps, ... for critic update k, which
    keeps the batches identical however the global batch is split across replicas. A
    conditional GAN takes batches `(images, labels)`, the labels split like the images.

    Stabilisation options (defaults off):

    - `num_classes`: class-conditional GAN (Mirza & Osindero 2014,
      https://arxiv.org/abs/1411.1784): G takes `[latent, labels]`, D takes
      `[samples, labels]` (`kgan.networks.build(..., num_classes=...)` makes such a pair). The
      fake labels are uniform over the classes, drawn for the GLOBAL batch from the model's
      seed generator and sliced per replica, like the latent noise.
    - `ema`: an exponential moving average of the generator's weights (Karras et al. 2018,
      https://arxiv.org/abs/1710.10196; Yazici et al. 2019, "The Unusual Effectiveness of
      Averaging in GAN Training", https://arxiv.org/abs/1806.04498). `ema_generator` is a
      non-trainable clone of the generator; after generator update t (t = 1, 2, ...)
      every trainable weight becomes `decay_s * avg + (1 - decay_s) * w` if t > `ema_start`,
      else `w` (the copy tracks the raw weights exactly until averaging starts), with the
      warm-up of TensorFlow's `ExponentialMovingAverage(num_updates=s)`:
      `decay_s = min(ema, (1 + s) / (10 + s))`, s = t - ema_start the number of averaged
      updates so far (s = 1 at the first: `(2/11) avg + (9/11) w`), so the initial weights are
      forgotten within the first tens of updates instead of weighing `ema^t`. Non-trainable
      weights (batch-norm moving statistics) are copied from the generator. `sampler` (so
      `call`, `generate` and what callers export) is then the averaged generator.
    - `feature_matching`: weight of Salimans et al.'s feature-matching term in G's loss
      ("Improved Techniques for Training GANs", 2016, https://arxiv.org/abs/1606.03498):
      `weight * || mean_batch f(real) - mean_batch f(fake) ||_2^2`, f the output of D's
      `features` layer, the means over the GLOBAL batch. The real batch is the last critic
      update's; its features need no gradient. Logged as `feature_matching`.
    - `augment`: a `kgan.augment.Augment` (DiffAugment, Zhao et al. 2020,
      https://arxiv.org/abs/2006.10738; ADA, Karras et al. 2020,
      https://arxiv.org/abs/2006.06676) applied to every discriminator input, real and
      generated, in both updates, before instance noise; `augment.update(real_outputs,
      threshold=loss.decision_threshold)` after each discriminator update (ADA's r_t compares
      D's outputs on reals with the loss's decision threshold; `compile` refuses ADA with a
      loss that has none, i.e. Wasserstein); its probability is logged as `augment_p` (the
      value at the end of the step). A gradient penalty sees the augmented discriminator `D(augment(x))` (as
      ADA's R1, which differentiates through the augmentation): the penalty is taken with
      respect to the un-augmented interpolates or reals.
    - Penalties and instance noise: a penalty differentiates the discriminator as it is trained,
      `D(augment(x) + noise)` (a fresh instance-noise draw), so R1 and the gradient penalty
      regularise D where its loss is evaluated, on the noise-smoothed distributions.
    - Conditional gradient penalty: the penalty's fakes are generated with the REAL batch's
      labels (same latents as the update's fakes), so each interpolate mixes a real image and
      a fake of the same class and is scored under that class (as conditional WGAN-GP
      implementations do). Penalties that use no fakes (R1) skip this generator call.
    - `unroll`: K > 0 computes G's adversarial loss on the outputs of a discriminator unrolled
      by K simulated updates (Metz et al. 2017, "Unrolled Generative Adversarial Networks",
      https://arxiv.org/abs/1611.02163) via `kgan.unrolled.unrolled_outputs`: by default of D's
      own optimizer with its current state (Adam's moments and step count); with
      `unroll_optimizer="sgd"`, plain SGD at its own learning rate `unroll_lr`. Neither D's
      weights nor its optimizer change.
    - `clip_grad_norm`: clip the global norm of each player's GLOBAL gradient (summed over
      replicas, loss scaling undone) to this value before the update (Pascanu et al. 2013, "On
      the difficulty of training recurrent neural networks", https://arxiv.org/abs/1211.5063).
    - `historical_averaging`: weight of Salimans et al.'s historical-averaging penalty
      `weight * sum ||theta - mean_past(theta)||^2`, one `kgan.regularizers.HistoricalAveraging`
      per player, added to its loss; the averages are updated after each of its updates.

    Args:
        generator: Keras model, latent [B, latent_dim] (and labels [B] when conditional) ->
            samples.
        discriminator: Keras model, samples (and labels [B] when conditional) -> outputs
            [B, 1] (logits or critic values).
        latent_dim: size of the generator input (inferred from the generator if None).
        d_steps: discriminator updates per generator update (n_critic; 5 for WGAN).
        instance_noise: std of Gaussian noise added to every discriminator input, real and
            generated (Sonderby et al. 2016; Arjovsky & Bottou 2017); 0 disables it.
        seed: the run seed (int) of the noise: latent, fake labels and instance noise each draw
            their own stream (`kgan.seeds.stream_seed(seed, "latent" | "labels" |
            "instance_noise")`).
        track_gradient_norms: log `d_grad_norm` and `g_grad_norm`, the global norms of the
            discriminator's and generator's gradients (before clipping; mean over the epoch's
            updates), to the history and TensorBoard: the diagnostic of the Minkowski paper's
            Figure 1.
        num_classes: None, or the number of classes (int >= 1) of a conditional GAN.
        ema: None, or the EMA decay in [0, 1) (e.g. 0.999).
        ema_start: generator updates before averaging starts (int >= 0).
        feature_matching: weight (>= 0) of the feature-matching term; 0 disables it.
        augment: None, or a `kgan.augment.Augment` (an instance, a name or a config dict).
        unroll: number K (>= 0) of unrolled discriminator steps in G's loss; 0 disables it.
        unroll_optimizer: the optimizer the unrolling simulates: "discriminator" (D's own,
            the paper) or "sgd" (plain SGD at `unroll_lr`).
        unroll_lr: the SGD learning rate (> 0) of `unroll_optimizer="sgd"`; None otherwise.
        clip_grad_norm: None, or the largest global gradient norm (> 0) of each update.
        historical_averaging: weight (>= 0) of the historical-averaging penalty; 0 disables it.

    Example:

        gan = GAN(generator, discriminator, ema=0.999)
        gan.compile(
            d_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5),
            g_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5),
            loss=kgan.losses.Minkowski(p=4),
        )
        gan.fit(dataset, epochs=10)
        images = gan.generate(16, seed=0)   # from the averaged generator
    """

    def __init__(
        self,
        generator,
        discriminator,
        latent_dim=None,
        d_steps=1,
        instance_noise=0.0,
        seed=None,
        track_gradient_norms=False,
        num_classes=None,
        ema=None,
        ema_start=0,
        feature_matching=0.0,
        augment=None,
        unroll=0,
        clip_grad_norm=None,
        historical_averaging=0.0,
        unroll_optimizer="discriminator",
        unroll_lr=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if latent_dim is None:
            shape = generator.input_shape
            latent_dim = (shape[0] if isinstance(shape, list) else shape)[-1]
        if int(d_steps) < 1:
            raise ValueError(f"d_steps must be >= 1; got {d_steps}")
        if instance_noise < 0:
            raise ValueError(f"instance_noise must be >= 0; got {instance_noise}")
        if num_classes is not None and (isinstance(num_classes, bool) or int(num_classes) < 1):
            raise ValueError(f"num_classes must be None or an int >= 1; got {num_classes!r}")
        if ema is not None and not 0.0 <= float(ema) < 1.0:
            raise ValueError(f"ema must be None or a decay in [0, 1); got {ema}")
        if int(ema_start) < 0:
            raise ValueError(f"ema_start must be >= 0; got {ema_start}")
        if feature_matching < 0:
            raise ValueError(f"feature_matching must be >= 0; got {feature_matching}")
        if int(unroll) < 0:
            raise ValueError(f"unroll must be >= 0; got {unroll}")
        if unroll_optimizer not in ("discriminator", "sgd"):
            raise ValueError(f"unroll_optimizer must be 'discriminator' or 'sgd'; got {unroll_optimizer!r}")
        if unroll_optimizer == "sgd" and (unroll_lr is None or not unroll_lr > 0):
            raise ValueError(f"unroll_optimizer 'sgd' needs its own learning rate unroll_lr > 0; got {unroll_lr}")
        if unroll_optimizer == "discriminator" and unroll_lr is not None:
            raise ValueError("unroll_lr is the learning rate of unroll_optimizer 'sgd'; "
                             "the discriminator's optimizer is simulated with its own")
        if clip_grad_norm is not None and not clip_grad_norm > 0:
            raise ValueError(f"clip_grad_norm must be None or > 0; got {clip_grad_norm}")
        if historical_averaging < 0:
            raise ValueError(f"historical_averaging must be >= 0; got {historical_averaging}")
        self.generator = generator
        self.discriminator = discriminator
        self.latent_dim = int(latent_dim)
        self.d_steps = int(d_steps)
        self.instance_noise = float(instance_noise)
        self.seed = seed
        self.seed_generator = seeds.seed_generator(seed, "latent", name="noise_seed")
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.penalty_tracker = keras.metrics.Mean(name="penalty")
        self.track_gradient_norms = bool(track_gradient_norms)
        self.d_grad_norm_tracker = keras.metrics.Mean(name="d_grad_norm")
        self.g_grad_norm_tracker = keras.metrics.Mean(name="g_grad_norm")
        self.num_classes = None if num_classes is None else int(num_classes)
        # One stream per kind of draw (made only when used: the plain GAN has the latent one).
        if self.num_classes is not None:
            self.label_seed_generator = seeds.seed_generator(seed, "labels", name="label_seed")
        if self.instance_noise:
            self.instance_noise_seed_generator = seeds.seed_generator(seed, "instance_noise",
                                                                      name="instance_noise_seed")
        self.ema = None if ema is None else float(ema)
        self.ema_start = int(ema_start)
        self.feature_matching = float(feature_matching)
        self.augment = augment_lib.get(augment)
        self.unroll = int(unroll)
        self.unroll_optimizer = unroll_optimizer
        self.unroll_lr = None if unroll_lr is None else float(unroll_lr)
        self.clip_grad_norm = None if clip_grad_norm is None else float(clip_grad_norm)
        self.historical_averaging = float(historical_averaging)
        self.feature_matching_tracker = keras.metrics.Mean(name="feature_matching")
        if self.ema is not None:
            # A clone with its own (non-trainable) variables, built in the caller's scope.
            self.ema_generator = keras.models.clone_model(generator)
            self.ema_generator.set_weights(generator.get_weights())
            self.ema_generator.trainable = False
        if self.feature_matching:
            # A function, not a tracked sub-model: D's layers stay saved once, under `discriminator`.
            self._features = feature_network(discriminator).__call__
        if self.historical_averaging:
            self.d_historical = regularizers.HistoricalAveraging(self.historical_averaging)
            self.d_historical.build(discriminator.trainable_variables)
            self.g_historical = regularizers.HistoricalAveraging(self.historical_averaging)
            self.g_historical.build(generator.trainable_variables)
        self.loss_fn = None
        self.penalty = None
        self.weight_clip = None
        self.step_log = None  # set by kgan.callbacks.StepLog during fit
        # The GAN has no weights of its own: it is built when its two networks are.
        self.built = generator.built and discriminator.built

    def compile(
        self,
        d_optimizer,
        g_optimizer,
        loss="non_saturating",
        penalty=None,
        weight_clip=None,
        **kwargs,
    ):
        """Configures the model for training.

        Args:
            d_optimizer: optimizer of the discriminator (a Keras optimizer instance).
            g_optimizer: optimizer of the generator; a different learning rate from D's gives
                the two time-scale update rule (Heusel et al. 2017).
            loss: a `kgan.losses` identifier: name, config dict or `Loss` instance.
            penalty: None or a `kgan.penalties` identifier (`GradientPenalty`, `R1`).
            weight_clip: None or c > 0: clip every discriminator weight to [-c, c] after each
                update (`kgan.constraints.WeightClip`, applied by the optimizer).
            **kwargs: passed to `keras.Model.compile` (e.g. `jit_compile`, `steps_per_execution`).

        Raises:
            ValueError: ADA (`kgan.augment.AdaptiveAugment`) with a loss that has no decision
                threshold (Wasserstein: D's outputs are defined up to a constant).
        """
        loss_fn = losses.get(loss)
        if getattr(self.augment, "adaptive", False) and loss_fn.decision_threshold is None:
            raise ValueError(
                f"ADA (--augment ada) needs a loss with a decision threshold; {type(loss_fn).__name__}'s critic "
                "values are defined up to a constant, so sign(D(real) - threshold) carries no overfitting signal"
            )
        super().compile(**kwargs)
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer
        self.loss_fn = loss_fn
        self.penalty = penalties.get(penalty)
        self.weight_clip = weight_clip
        if weight_clip is not None:
            constraints.attach_weight_clip(self.discriminator, weight_clip)
        # Build optimizer slots now, in the (strategy) scope compile is called in, not in the
        # first replica-context step.
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.g_optimizer.build(self.generator.trainable_variables)
        if self.unroll:
            if self.unroll_optimizer == "sgd":
                # Held outside the model's attributes: the saved weights stay those of every GAN.
                _UNROLL_SGD[self] = keras.optimizers.SGD(self.unroll_lr)
                _UNROLL_SGD[self].build(self.discriminator.trainable_variables)
            # The functional twin is made here, in the strategy scope, not in the first step.
            unrolled.functional_optimizer(self._unrolled_optimizer(), self.discriminator.trainable_variables)

    def _unrolled_optimizer(self):
        """The optimizer `unroll` simulates: D's own, or the SGD of `unroll_lr`."""
        return _UNROLL_SGD[self] if self.unroll_optimizer == "sgd" else self.d_optimizer

    def get_compile_config(self):
        """What `compile` was given, serialised (so `keras.saving.load_model` can re-compile)."""
        if self.loss_fn is None:
            return None
        return {
            "d_optimizer": keras.optimizers.serialize(self.d_optimizer),
            "g_optimizer": keras.optimizers.serialize(self.g_optimizer),
            "loss": losses.serialize(self.loss_fn),
            "penalty": penalties.serialize(self.penalty),
            "weight_clip": self.weight_clip,
        }

    def compile_from_config(self, config):
        self.compile(
            d_optimizer=keras.optimizers.deserialize(config["d_optimizer"]),
            g_optimizer=keras.optimizers.deserialize(config["g_optimizer"]),
            loss=config["loss"],
            penalty=config["penalty"],
            weight_clip=config["weight_clip"],
        )

    @property
    def metrics(self):
        trackers = [self.d_loss_tracker, self.g_loss_tracker]
        if self.penalty is not None:
            trackers.append(self.penalty_tracker)
        if self.track_gradient_norms:
            trackers += [self.d_grad_norm_tracker, self.g_grad_norm_tracker]
        if self.feature_matching:
            trackers.append(self.feature_matching_tracker)
        return trackers

    def seed_generators(self):
        """The model's `keras.random.SeedGenerator`s by name, so a checkpoint can save their state.

        The latent noise's (`noise`), the fake labels' and the instance noise's (when used), the
        penalty's (when it draws) and the augmentation's (`augment`). Each draws its own stream
        (`kgan.seeds`).
        """
        found = {"noise": self.seed_generator}
        for name, attribute in (("labels", "label_seed_generator"),
                                ("instance_noise", "instance_noise_seed_generator")):
            generator = getattr(self, attribute, None)
            if generator is not None:
                found[name] = generator
        seed = getattr(self.penalty, "seed", None)
        if isinstance(seed, keras.random.SeedGenerator):
            found["penalty"] = seed
        if self.augment is not None:
            found["augment"] = self.augment.seed_generator
        return found

    @property
    def sampler(self):
        """The generator to sample from and export: the EMA copy when `ema` is set, else G."""
        return self.ema_generator if self.ema is not None else self.generator

    def call(self, z, training=False):
        """Runs `sampler` on latents `z` (`[z, labels]` for a conditional GAN)."""
        return self.sampler(z, training=training)

    # ------------------------------------------------------------------------------------------
    # Training.

    def _average(self, per_example):
        """The replica-aware mean: sum over this replica's examples / GLOBAL batch size."""
        return tf.nn.compute_average_loss(per_example)

    def _noise(self, local_batch):
        """Latent noise for this replica: its slice of a global [R * B, latent] draw."""
        return distribute.replica_slice(
            lambda n: keras.random.normal((n, self.latent_dim), seed=self.seed_generator), local_batch)

    def _fake_labels(self, local_batch):
        """Uniform class labels (int32) for this replica: its slice of a global [R * B] draw."""
        return distribute.replica_slice(
            lambda n: keras.random.randint((n,), 0, self.num_classes, seed=self.label_seed_generator, dtype="int32"),
            local_batch)

    def _perturb(self, x):
        """Instance noise on a discriminator input (identity when instance_noise is 0)."""
        if not self.instance_noise:
            return x
        noise = distribute.replica_slice(
            lambda n: keras.random.normal((n, *x.shape[1:]), stddev=self.instance_noise,
                                          seed=self.instance_noise_seed_generator),
            ops.shape(x)[0])
        return x + ops.cast(noise, x.dtype)

    def _augment(self, x):
        """The augmentation of a discriminator input (identity without `augment`)."""
        return x if self.augment is None else self.augment(x, training=True)

    @staticmethod
    def _with_labels(x, labels):
        """A network's inputs: `x`, or `[x, labels]` for a conditional network."""
        return x if labels is None else [x, labels]

    def _d_inputs(self, x, labels=None):
        """What the discriminator sees of samples `x`: augmented, then instance noise."""
        return self._with_labels(self._perturb(self._augment(x)), labels)

    def _critic(self, labels):
        """The discriminator a gradient penalty differentiates: x -> D(augment(x) + noise, labels).

        What D is trained on: augmented, then instance noise (a fresh draw). The penalty's
        interpolates (or reals) take the real batch's labels. Without augmentation, instance
        noise or labels, the discriminator itself.
        """
        if self.augment is None and labels is None and not self.instance_noise:
            return self.discriminator

        def critic(x, training=True):
            return self.discriminator(self._d_inputs(x, labels), training=training)

        return critic

    def _global_mean(self, values):
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

    def _feature_matching_loss(self, real_features, fake_features):
        """weight * ||mean f(real) - mean f(fake)||^2 (global means; a per-model scalar)."""
        difference = ops.stop_gradient(self._global_mean(real_features)) - self._global_mean(fake_features)
        return self.feature_matching * ops.sum(ops.square(difference))

    def _historical_penalty(self, regularizer, variables):
        """The historical-averaging penalty, a per-model scalar: / replicas before their sum."""
        _, num_replicas = distribute.replica()
        return ops.cast(regularizer(variables), "float32") / num_replicas

    def _discriminator_step(self, real, labels=None):
        batch = ops.shape(real)[0]
        z = self._noise(batch)
        fake_labels = None if labels is None else self._fake_labels(batch)
        fake = self.generator(self._with_labels(z, fake_labels), training=True)
        with tf.GradientTape() as tape:
            real_outputs = self.discriminator(self._d_inputs(real, labels), training=True)
            fake_outputs = self.discriminator(self._d_inputs(fake, fake_labels), training=True)
            per_example = self.loss_fn.discriminator_loss(real_outputs, fake_outputs)
            self.d_loss_tracker.update_state(per_example)
            if self.penalty is not None:
                penalty_fake = fake
                if labels is not None and getattr(self.penalty, "uses_fake", True):  # fakes of the real classes
                    penalty_fake = self.generator(self._with_labels(z, labels), training=True)
                penalty = self.penalty(self._critic(labels), real, penalty_fake, training=True)
                self.penalty_tracker.update_state(penalty)
                per_example = per_example + penalty
            loss = self._average(per_example)
            if self.historical_averaging:
                loss = loss + self._historical_penalty(self.d_historical, self.discriminator.trainable_variables)
            loss = self.d_optimizer.scale_loss(loss)
        variables = self.discriminator.trainable_variables
        gradients = tape.gradient(loss, variables)
        self._apply(self.d_optimizer, self.d_grad_norm_tracker, gradients, variables)
        if self.historical_averaging:
            self.d_historical.update(variables)
        if self.augment is not None:
            self.augment.update(real_outputs, threshold=self.loss_fn.decision_threshold or 0.0)
        return real_outputs

    def _generator_step(self, batch, real_outputs, real=None, labels=None):
        """One generator update; `real` (and `labels`) are the last critic update's real batch.

        The real batch is used by feature matching and unrolling only.
        """
        if self.feature_matching:  # no gradient: before the tape
            real_features = self._features(self._d_inputs(real, labels), training=True)[0]
        with tf.GradientTape() as tape:
            z = self._noise(batch)
            fake_labels = None if self.num_classes is None else self._fake_labels(batch)
            fake = self.generator(self._with_labels(z, fake_labels), training=True)
            fake_inputs = self._d_inputs(fake, fake_labels)
            if self.feature_matching:
                fake_features, fake_outputs = self._features(fake_inputs, training=True)
            else:
                fake_outputs = self.discriminator(fake_inputs, training=True)
            if self.unroll:
                fake_outputs = unrolled.unrolled_outputs(
                    self.discriminator, self.loss_fn, self._d_inputs(real, labels), fake_inputs, fake_inputs,
                    steps=self.unroll, optimizer=self._unrolled_optimizer(), training=True,
                )
            per_example = self.loss_fn.generator_loss(fake_outputs, real_outputs)
            self.g_loss_tracker.update_state(per_example)
            loss = self._average(per_example)
            if self.feature_matching:
                matching = self._feature_matching_loss(real_features, fake_features)
                self.feature_matching_tracker.update_state(matching)
                loss = loss + matching
            if self.historical_averaging:
                loss = loss + self._historical_penalty(self.g_historical, self.generator.trainable_variables)
            loss = self.g_optimizer.scale_loss(loss)
        variables = self.generator.trainable_variables
        gradients = tape.gradient(loss, variables)
        self._apply(self.g_optimizer, self.g_grad_norm_tracker, gradients, variables)
        if self.historical_averaging:
            self.g_historical.update(variables)

    def _apply(self, optimizer, tracker, gradients, variables):
        """Logs the gradient norm, clips it (options), and applies the gradients.

        Both the norm and the clipping concern the GLOBAL-batch gradient: each replica holds a
        partial sum, so they are all-reduced (an extra all-reduce, only when an option needs
        it) and loss scaling is undone for the norm. Clipped, the global gradient is scaled by
        `clip / max(norm, clip)` (`tf.clip_by_global_norm`) and divided by the number of
        replicas, since the optimizer sums what every replica gives it.

        Sparse gradients (`tf.IndexedSlices`, e.g. of a conditional network's class embedding)
        are made dense first: Keras 3.15's Adam squares an IndexedSlices row by row before
        summing duplicate indices, so a batch with a repeated label updated the second moment
        with sum(g_i^2) instead of (sum g_i)^2 (tests/test_gan.py).
        """
        gradients = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in gradients]
        if self.track_gradient_norms or self.clip_grad_norm is not None:
            _, num_replicas = distribute.replica()
            present = [i for i, g in enumerate(gradients) if g is not None]
            total = distribute.all_reduce_sum([gradients[i] for i in present])
            norm = tf.linalg.global_norm([ops.cast(g, "float32") for g in total])
            scale = getattr(optimizer, "dynamic_scale", None)  # LossScaleOptimizer (float16)
            if scale is not None:
                norm = norm / ops.cast(scale, "float32")
            if self.track_gradient_norms:
                tracker.update_state(norm)
            if self.clip_grad_norm is not None:
                clipped, _ = tf.clip_by_global_norm(total, self.clip_grad_norm, use_norm=norm)
                gradients = list(gradients)
                for i, g in zip(present, clipped, strict=False):
                    gradients[i] = g / num_replicas if num_replicas > 1 else g
        optimizer.apply(gradients, variables)

    def ema_decay(self, updates):
        """The decay of averaged update s = `updates` (>= 1): min(ema, (1 + s) / (10 + s))."""
        s = ops.cast(updates, "float32")
        return ops.minimum(ops.cast(self.ema, "float32"), (1.0 + s) / (10.0 + s))

    def _update_ema(self):
        """ema <- decay_s * ema + (1 - decay_s) * w once averaging has started, else ema <- w.

        Run after the generator update, so `g_optimizer.iterations` is t, the number of
        generator updates made, and s = t - ema_start (`ema_decay`). `iterations` is
        checkpointed, so a resumed run continues the warm-up. Every replica computes the same
        values from its (mirrored) weights.
        """
        updates = ops.convert_to_tensor(self.g_optimizer.iterations) - self.ema_start
        started = ops.greater(updates, 0)
        decay = self.ema_decay(ops.maximum(updates, 1))
        for raw, average in zip(self.generator.weights, self.ema_generator.weights, strict=False):
            value = ops.convert_to_tensor(raw)
            if raw.trainable:
                d = ops.cast(decay, value.dtype)
                mixed = d * ops.convert_to_tensor(average) + (1.0 - d) * value
                value = ops.where(started, mixed, value)
            average.assign(value)

    def _unpack(self, data):
        """(samples, labels or None) from a batch; labels only for a conditional GAN."""
        if isinstance(data, dict) or (isinstance(data, (tuple, list)) and isinstance(data[0], dict)):
            raise ValueError("GAN.train_step takes a batch of examples (optionally (x, y)), not a dict.")
        if self.num_classes is None:
            return (data[0] if isinstance(data, (tuple, list)) else data), None
        if not isinstance(data, (tuple, list)) or len(data) < 2 or data[1] is None:
            raise ValueError(
                f"A conditional GAN (num_classes={self.num_classes}) takes batches (samples, labels); "
                "load the data with labels (kgan.data.load(..., with_labels=True))."
            )
        return data[0], ops.cast(data[1], "int32")

    def train_step(self, data):
        if self.loss_fn is None:
            raise RuntimeError("GAN must be compiled (d_optimizer, g_optimizer, loss) before training.")
        real, labels = self._unpack(data)
        # [d_steps * B, ...] -> [B, d_steps, ...]: critic update k uses real[:, k].
        real = ops.reshape(real, (-1, self.d_steps, *real.shape[1:]))
        if labels is not None:
            labels = ops.reshape(labels, (-1, self.d_steps))
        real_outputs = None
        for k in range(self.d_steps):
            if labels is None:
                real_outputs = self._discriminator_step(real[:, k])
            else:
                real_outputs = self._discriminator_step(real[:, k], labels[:, k])
        last_labels = None if labels is None else labels[:, -1]
        self._generator_step(ops.shape(real)[0], real_outputs, real[:, -1], last_labels)
        if self.ema is not None:
            self._update_ema()
        results = {m.name: m.result() for m in self.metrics}
        if self.augment is not None:
            results["augment_p"] = ops.convert_to_tensor(self.augment.p)
        if self.step_log is not None:  # kgan.callbacks.StepLog: every step's values, kept in the graph
            self.step_log.record(results)
        if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
            # Keras 3.15 reduces logged values across workers with strategy.reduce(axis=0),
            # which fails on scalars: return shape [1] (the reduction gives back a scalar).
            results = {name: ops.reshape(value, (1,)) for name, value in results.items()}
        return results

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Skipped: the GAN is built with its networks and its optimizers by `compile`.

        (Keras' symbolic build draws a batch and, under MultiWorkerMirroredStrategy, fails on
        `strategy.reduce("MEAN", <distributed batch>)` in Keras 3.15.)
        """
        if not self.built:
            super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    # ------------------------------------------------------------------------------------------
    # Sampling and serialisation.

    def generate(self, n, seed=None, batch_size=256, labels=None):
        """Returns `n` generated samples as a NumPy array (`sampler` in inference mode).

        Args:
            n: number of samples.
            seed: int for reproducible samples (the same seed gives the same samples).
            batch_size: samples generated per call of the generator.
            labels: conditional GAN only: int class labels [n] in [0, num_classes); default
                the classes in turn, 0, 1, ..., num_classes - 1, 0, 1, ...

        Raises:
            ValueError: labels for an unconditional GAN, or labels of the wrong shape or range.
        """
        z = keras.random.normal((n, self.latent_dim), seed=seed)
        if self.num_classes is None:
            if labels is not None:
                raise ValueError("labels are for a conditional GAN (num_classes); this GAN is unconditional")
        else:
            labels = np.arange(n) % self.num_classes if labels is None else np.asarray(labels)
            if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
                raise ValueError(f"labels must be {n} ints; got shape {labels.shape}, dtype {labels.dtype}")
            if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
                raise ValueError(f"labels must be in [0, {self.num_classes}); got {labels.min()}..{labels.max()}")
            labels = ops.convert_to_tensor(labels, "int32")
        outputs = []
        for i in range(0, n, batch_size):
            inputs = self._with_labels(z[i : i + batch_size], None if labels is None else labels[i : i + batch_size])
            outputs.append(ops.convert_to_numpy(ops.cast(self.sampler(inputs, training=False), "float32")))
        return np.concatenate(outputs, axis=0)

    def get_config(self):
        return {
            "generator": keras.saving.serialize_keras_object(self.generator),
            "discriminator": keras.saving.serialize_keras_object(self.discriminator),
            "latent_dim": self.latent_dim,
            "d_steps": self.d_steps,
            "instance_noise": self.instance_noise,
            "seed": self.seed,
            "track_gradient_norms": self.track_gradient_norms,
            "num_classes": self.num_classes,
            "ema": self.ema,
            "ema_start": self.ema_start,
            "feature_matching": self.feature_matching,
            "augment": augment_lib.serialize(self.augment),
            "unroll": self.unroll,
            "unroll_optimizer": self.unroll_optimizer,
            "unroll_lr": self.unroll_lr,
            "clip_grad_norm": self.clip_grad_norm,
            "historical_averaging": self.historical_averaging,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["generator"] = keras.saving.deserialize_keras_object(config["generator"])
        config["discriminator"] = keras.saving.deserialize_keras_object(config["discriminator"])
        if config.get("augment") is not None:
            config["augment"] = augment_lib.get(config["augment"])
        return cls(**config)
