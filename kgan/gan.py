"""`GAN`: a `keras.Model` whose `train_step` alternates discriminator and generator updates (or
makes them simultaneously, as PacGAN's code does).

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

The step, after the keras-io guide's GAN, reads top to bottom: `train_step` makes `d_steps`
`_discriminator_step`s and one `_generator_step`; each draws latents (and fake labels), runs
the networks, adds the adversarial loss (and the gradient penalty) and hands the loss to
`_update`. With `updates="simultaneous"` one `_simultaneous_step` takes both players' gradients
from one forward pass at the same weights and then applies both (PacGAN's training, ALI's
`ali_algorithm`). The optional techniques (all off by default; off, the step is the plain one bit for
bit) are small objects from `kgan.techniques`, one class each, that contribute through hooks at
fixed points of the step (a discriminator-input transform, a loss term, a gradient transform,
an after-update or end-of-step hook; see that module): class-conditional training
(`num_classes`), differentiable augmentation of every discriminator input (`augment`), instance
noise (`instance_noise`), PacGAN packing of those inputs (`pack`), feature matching
(`feature_matching`), an exponential moving average of the generator's weights (`ema`, sampled
from by `sampler`, `call` and `generate`), unrolled
discriminator updates in the generator's loss (`unroll`), historical averaging
(`historical_averaging`) and gradient-norm clipping (`clip_grad_norm`). Each technique makes its
per-model scalars and its clipping replica-correct where it computes them.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from kgan import constraints, distribute, losses, names, penalties, seeds, techniques
from kgan.techniques import feature_network  # noqa: F401  (kgan.gan.feature_network, as before)


@keras.saving.register_keras_serializable(package="kgan")
class GAN(keras.Model):
    """A generator and a discriminator trained adversarially by `fit`.

    Each `train_step` makes `d_steps` discriminator updates, each on its own real batch, then
    one generator update. Feed it batches of `d_steps * batch_size` examples (the data pipeline
    does); the step takes examples k, k + d_steps, k + 2 d_steps, ... for critic update k, which
    keeps the batches identical however the global batch is split across replicas. A
    conditional GAN takes batches `(images, labels)`, the labels split like the images. With
    `pack` m, batches hold `d_steps * batch_size * m` samples: critic update k's `batch_size * m`
    samples make `batch_size` packed examples of m consecutive ones each.

    Stabilisation options (defaults off), each a `kgan.techniques` class whose docstring has the
    details:

    - `num_classes`: class-conditional GAN (Mirza & Osindero 2014,
      https://arxiv.org/abs/1411.1784), `ConditionalLabels`: G takes `[latent, labels]`, D takes
      `[samples, labels]`; fake labels uniform over the classes, from their own stream.
    - `ema`: an exponential moving average of the generator's weights (Karras et al. 2018,
      https://arxiv.org/abs/1710.10196; Yazici et al. 2019, https://arxiv.org/abs/1806.04498),
      `ExponentialMovingAverage`: `ema_generator`, averaged after each generator update past
      `ema_start` with TensorFlow's warm-up `decay_s = min(ema, (1 + s) / (10 + s))`; `sampler`
      (so `call`, `generate` and what callers export) is then the average.
    - `feature_matching`: weight of Salimans et al.'s feature-matching term in G's loss
      ("Improved Techniques for Training GANs", 2016, https://arxiv.org/abs/1606.03498),
      `FeatureMatching`: `weight * || mean f(real) - mean f(fake) ||^2` over the GLOBAL batch, f
      D's `features` layer. Logged as `feature_matching`.
    - `augment`: a `kgan.augment.Augment` (DiffAugment, Zhao et al. 2020,
      https://arxiv.org/abs/2006.10738; ADA, Karras et al. 2020,
      https://arxiv.org/abs/2006.06676), `Augmentation`: applied to every discriminator input,
      real and generated, in both updates, before instance noise; updated after each
      discriminator update (`compile` refuses ADA with a loss that has no decision threshold);
      its probability is logged as `augment_p`.
    - Penalties and instance noise (`InstanceNoise`): a penalty differentiates the
      discriminator as it is trained, `D(augment(x) + noise)` (a fresh instance-noise draw), so
      R1 and the gradient penalty regularise D where its loss is evaluated (as ADA's R1, which
      differentiates through the augmentation); the penalty is taken with respect to the
      un-augmented interpolates or reals.
    - Conditional gradient penalty: the penalty's fakes are generated with the REAL batch's
      labels (same latents as the update's fakes), so each interpolate mixes a real image and
      a fake of the same class and is scored under that class (as conditional WGAN-GP
      implementations do). Penalties that use no fakes (R1) skip this generator call.
    - `unroll`: K > 0 computes G's adversarial loss on the outputs of a discriminator unrolled
      by K simulated updates (Metz et al. 2017, "Unrolled Generative Adversarial Networks",
      https://arxiv.org/abs/1611.02163), `Unrolling`: of D's own optimizer, or with
      `unroll_optimizer="sgd"` of plain SGD at `unroll_lr`. Neither D's weights nor its
      optimizer change.
    - `clip_grad_norm`: clip the global norm of each player's GLOBAL gradient to this value
      before the update (Pascanu et al. 2013, https://arxiv.org/abs/1211.5063),
      `GradientNormClipping`.
    - `pack`: m >= 2 packs m samples into each discriminator input (PacGAN, Lin et al. 2018,
      https://arxiv.org/abs/1712.04086), `Packing`: points joined along the feature axis,
      images along the channel axis (D takes `m * C` channels); the batch counts packed
      examples, so feed `d_steps * batch_size * m` samples per step (G then makes `m` fakes
      per packed example). The penalty interpolates packed inputs; the generator is unchanged.
    - `historical_averaging`: weight of Salimans et al.'s historical-averaging penalty
      `weight * sum ||theta - mean_past(theta)||^2` in each player's loss,
      `HistoricalAveraging` (`d_historical`, `g_historical`).

    `techniques` lists the techniques in use, in the order their hooks run; `technique(name)`
    finds one.

    Args:
        generator: Keras model, latent [B, latent_dim] (and labels [B] when conditional) ->
            samples.
        discriminator: Keras model, samples (and labels [B] when conditional) -> outputs
            [B, 1] (logits or critic values).
        latent_dim: size of the generator input (inferred from the generator if None).
        d_steps: discriminator updates per generator update (n_critic; 5 for WGAN).
        updates: "alternating" (the default: D's update, then G's against the updated D) or
            "simultaneous" (both players' gradients from ONE forward pass on one latent draw,
            both at the step's starting weights, then both applied: the procedure of PacGAN's
            code, Lin et al. 2018, whose `ali_algorithm` takes one gradient step on D's loss + G's
            loss). Needs `d_steps=1`; not with the techniques that change G's forward pass
            (`feature_matching`, `unroll`).
        instance_noise: std of Gaussian noise added to every discriminator input, real and
            generated (Sonderby et al. 2016; Arjovsky & Bottou 2017); 0 disables it.
        seed: the run seed (int) of the noise: latent, fake labels and instance noise each draw
            their own stream (`kgan.seeds.stream_seed(seed, "latent" | "labels" |
            "instance_noise")`).
        track_gradient_norms: log `d_grad_norm` and `g_grad_norm`, the global norms of the
            discriminator's and generator's gradients (before clipping; mean over the epoch's
            updates), to the history and TensorBoard: the diagnostic of the Minkowski paper's
            Figure 1.
        **kwargs: the techniques' options (`kgan.techniques.OPTIONS`, each declared by its
            technique; neutral by default), then `keras.Model`'s (e.g. `name`):
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
        pack: samples per discriminator input (int >= 1; PacGAN's m); 1 disables it.

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

    def __init__(self, generator, discriminator, latent_dim=None, d_steps=1, seed=None, track_gradient_norms=False,
                 updates="alternating", **kwargs):
        options = techniques.options_from(kwargs)  # the techniques' options; the rest is keras.Model's
        super().__init__(**kwargs)
        if latent_dim is None:
            shape = generator.input_shape
            latent_dim = (shape[0] if isinstance(shape, list) else shape)[-1]
        if int(d_steps) < 1:
            raise ValueError(f"d_steps must be >= 1; got {d_steps}")
        self.generator = generator
        self.discriminator = discriminator
        self.latent_dim = int(latent_dim)
        self.d_steps = int(d_steps)
        if updates not in names.UPDATES:
            raise ValueError(f"updates must be one of {', '.join(names.UPDATES)}; got {updates!r}")
        if updates == "simultaneous" and self.d_steps != 1:
            raise ValueError(f"simultaneous updates need d_steps = 1; got {self.d_steps}")
        self.updates = updates
        self.seed = seed
        self.seed_generator = seeds.seed_generator(seed, "latent", name="noise_seed")
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.penalty_tracker = keras.metrics.Mean(name="penalty")
        self.track_gradient_norms = bool(track_gradient_norms)
        self.d_grad_norm_tracker = keras.metrics.Mean(name="d_grad_norm")
        self.g_grad_norm_tracker = keras.metrics.Mean(name="g_grad_norm")
        # The techniques' options, as given (`get_config`; e.g. `gan.ema`); the techniques below.
        self._options = options
        for name, value in options.items():
            setattr(self, name, value)
        self.techniques = techniques.build(generator, discriminator, seed=seed, **options)
        for technique in self.techniques:  # their Keras state, saved under these attribute names
            for name, value in technique.tracked().items():
                setattr(self, name, value)
        if updates == "simultaneous":
            for technique in self.techniques:
                if technique.changes_generator_pass():
                    raise ValueError(f"simultaneous updates do not support {technique.name}: it changes G's "
                                     "forward pass, which simultaneous updates share with D's")
        self._conditional = self.technique("conditional")
        self._packing = self.technique("pack")
        self.loss_fn = None
        self.penalty = None
        self.weight_clip = None
        self.step_log = None  # set by kgan.callbacks.StepLog during fit
        # The GAN has no weights of its own: it is built when its two networks are.
        self.built = generator.built and discriminator.built

    def technique(self, name):
        """The technique (`kgan.techniques.Technique`) named `name` if the GAN uses it, else None."""
        return next((t for t in self.techniques if t.name == name), None)

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
            ValueError: a loss a technique cannot work with: ADA (`kgan.augment.AdaptiveAugment`)
                with a loss that has no decision threshold (Wasserstein: D's outputs are defined
                up to a constant).
        """
        loss_fn = losses.get(loss)
        for technique in self.techniques:
            technique.check_loss(loss_fn)
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
        for technique in self.techniques:
            technique.on_compile(self)

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
        for technique in self.techniques:
            trackers += technique.trackers()
        return trackers

    def seed_generators(self):
        """The model's `keras.random.SeedGenerator`s by name, so a checkpoint can save their state.

        The latent noise's (`noise`), the penalty's (when it draws) and the techniques' (fake
        `labels`, `instance_noise`, `augment`), in the order of their streams (`kgan.seeds`):
        each draws its own.
        """
        found = {"noise": self.seed_generator}
        seed = getattr(self.penalty, "seed", None)
        if isinstance(seed, keras.random.SeedGenerator):
            found["penalty"] = seed
        for technique in self.techniques:
            found.update(technique.seed_generators())
        order = {name: i for i, name in enumerate(("noise", *seeds.STREAMS[1:]))}
        return dict(sorted(found.items(), key=lambda item: order.get(item[0], len(order))))

    @property
    def sampler(self):
        """The generator to sample from and export: the EMA copy when `ema` is set, else G."""
        return self.ema_generator if self.ema is not None else self.generator

    def call(self, z, training=False):
        """Runs `sampler` on latents `z` (`[z, labels]` for a conditional GAN)."""
        return self.sampler(z, training=training)

    # ------------------------------------------------------------------------------------------
    # Training: train_step, the two updates, and what they share.

    def train_step(self, data):
        """`d_steps` discriminator updates, each on its own real batch, then one generator update
        (or, `updates="simultaneous"`, both updates from one forward pass)."""
        if self.loss_fn is None:
            raise RuntimeError("GAN must be compiled (d_optimizer, g_optimizer, loss) before training.")
        real, labels = self._unpack(data)
        if self.updates == "simultaneous":
            self._simultaneous_step(real, labels)
        else:
            # [d_steps * B, ...] -> [B, d_steps, ...]: critic update k uses real[:, k] (and labels[:, k]).
            real = ops.reshape(real, (-1, self.d_steps, *real.shape[1:]))
            labels = None if labels is None else ops.reshape(labels, (-1, self.d_steps))
            for k in range(self.d_steps):
                batch = (real[:, k],) if labels is None else (real[:, k], labels[:, k])
                real_outputs = self._discriminator_step(*batch)
            self._generator_step(ops.shape(real)[0], real_outputs, *batch)
        for technique in self.techniques:
            technique.after_step(self)
        return self._logs()

    def _discriminator_step(self, real, labels=None):
        """One discriminator update on a real batch (and its labels); returns D's outputs on it."""
        update = techniques.Update(self, techniques.DISCRIMINATOR, lambda: self._d_inputs(real, labels))
        z, fake_labels = self._latents(ops.shape(real)[0])
        fake = self.generator(self._with_labels(z, fake_labels), training=True)
        with tf.GradientTape() as tape:
            loss, real_outputs, _ = self._discriminator_loss(update, real, labels, z, fake, fake_labels)
        self._update(update, tape, loss, real_outputs)
        return real_outputs

    def _discriminator_loss(self, update, real, labels, z, fake, fake_labels):
        """D's loss on a real batch and fakes (with the penalty), and D's outputs on both."""
        real_outputs = self.discriminator(update.real_inputs(), training=True)
        fake_outputs = self.discriminator(self._d_inputs(fake, fake_labels), training=True)
        per_example = self.loss_fn.discriminator_loss(real_outputs, fake_outputs)
        self.d_loss_tracker.update_state(per_example)
        if self.penalty is not None:
            per_example = per_example + self._penalty(real, labels, z, fake)
        return self._loss(update, per_example), real_outputs, fake_outputs

    def _generator_step(self, batch, real_outputs, real=None, labels=None):
        """One generator update; `real` (and `labels`) are the last critic update's real batch.

        The real batch is for the techniques that use it (feature matching, unrolling): they
        make D's inputs of it when they need them (`Update.real_inputs`).
        """
        update = techniques.Update(self, techniques.GENERATOR, lambda: self._d_inputs(real, labels))
        for technique in self.techniques:
            technique.before_generator_update(update)
        with tf.GradientTape() as tape:
            z, fake_labels = self._latents(batch)
            fake = self.generator(self._with_labels(z, fake_labels), training=True)
            fake_inputs = self._d_inputs(fake, fake_labels)
            fake_outputs = None
            for technique in self.techniques:
                fake_outputs = technique.fake_outputs(update, fake_inputs, fake_outputs)
            if fake_outputs is None:
                fake_outputs = self.discriminator(fake_inputs, training=True)
            per_example = self.loss_fn.generator_loss(fake_outputs, real_outputs)
            self.g_loss_tracker.update_state(per_example)
            loss = self._loss(update, per_example)
        self._update(update, tape, loss)

    def _simultaneous_step(self, real, labels=None):
        """PacGAN's update: D's and G's gradients from one forward pass (one latent draw, one real
        batch), both at the step's starting weights, then both applied, D's first."""
        real_inputs = lambda: self._d_inputs(real, labels)  # noqa: E731
        d_update = techniques.Update(self, techniques.DISCRIMINATOR, real_inputs)
        g_update = techniques.Update(self, techniques.GENERATOR, real_inputs)
        with tf.GradientTape() as d_tape, tf.GradientTape() as g_tape:
            z, fake_labels = self._latents(ops.shape(real)[0])
            fake = self.generator(self._with_labels(z, fake_labels), training=True)
            d_loss, real_outputs, fake_outputs = self._discriminator_loss(d_update, real, labels, z, fake, fake_labels)
            g_per_example = self.loss_fn.generator_loss(fake_outputs, real_outputs)
            self.g_loss_tracker.update_state(g_per_example)
            g_loss = self._loss(g_update, g_per_example)
        d_gradients = d_tape.gradient(d_loss, d_update.network.trainable_variables)
        g_gradients = g_tape.gradient(g_loss, g_update.network.trainable_variables)
        self._apply_update(d_update, d_gradients, real_outputs)
        self._apply_update(g_update, g_gradients)

    def _penalty(self, real, labels, z, fake):
        """The gradient penalty per example, of the discriminator as it is trained (`_critic`).

        A conditional GAN's penalty fakes are G(z, real labels), z the update's latents, unless
        the penalty uses no fakes (R1): see the class docstring.
        """
        if labels is not None and getattr(self.penalty, "uses_fake", True):  # fakes of the real classes
            fake = self.generator(self._with_labels(z, labels), training=True)
        if self._packing is not None:  # PacGAN: interpolate packed reals and packed fakes
            real, fake = self._packing.transform(real), self._packing.transform(fake)
        penalty = self.penalty(self._critic(labels), real, fake, training=True)
        self.penalty_tracker.update_state(penalty)
        return penalty

    def _loss(self, update, per_example):
        """A player's loss: the replica-aware mean, plus the techniques' terms, scaled for its optimizer."""
        loss = self._average(per_example)
        for technique in self.techniques:
            term = technique.loss(update)
            if term is not None:
                loss = loss + term
        return self._optimizer(update.player).scale_loss(loss)

    def _update(self, update, tape, loss, real_outputs=None):
        """Applies the player's gradients of `loss`, then the techniques' `after_update` hooks."""
        self._apply_update(update, tape.gradient(loss, update.network.trainable_variables), real_outputs)

    def _apply_update(self, update, gradients, real_outputs=None):
        """Applies the player's `gradients`, then the techniques' `after_update` hooks."""
        discriminator = update.player == techniques.DISCRIMINATOR
        tracker = self.d_grad_norm_tracker if discriminator else self.g_grad_norm_tracker
        self._apply(self._optimizer(update.player), tracker, gradients, update.network.trainable_variables)
        for technique in self.techniques:
            technique.after_update(update, real_outputs)

    def _optimizer(self, player):
        return self.d_optimizer if player == techniques.DISCRIMINATOR else self.g_optimizer

    def _apply(self, optimizer, tracker, gradients, variables):
        """Logs the gradient norm (option), lets the techniques transform the gradients, applies them.

        The norm is that of the GLOBAL-batch gradient (`kgan.techniques.GlobalGradient`, loss
        scaling undone), computed only when `track_gradient_norms` or a technique (clipping)
        needs it.

        Sparse gradients (`tf.IndexedSlices`, e.g. of a conditional network's class embedding)
        are made dense first: Keras 3.15's Adam squares an IndexedSlices row by row before
        summing duplicate indices, so a batch with a repeated label updated the second moment
        with sum(g_i^2) instead of (sum g_i)^2 (tests/test_gan.py).
        """
        gradients = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in gradients]
        global_gradient = None
        if self.track_gradient_norms or any(t.needs_global_gradient for t in self.techniques):
            global_gradient = techniques.GlobalGradient(gradients, optimizer)
            if self.track_gradient_norms:
                tracker.update_state(global_gradient.norm)
        for technique in self.techniques:
            gradients = technique.transform_gradients(gradients, global_gradient)
        optimizer.apply(gradients, variables)

    def _logs(self):
        """The step's logged values: the trackers' results, then the techniques' (`augment_p`)."""
        results = {m.name: m.result() for m in self.metrics}
        for technique in self.techniques:
            results.update(technique.logs())
        if self.step_log is not None:  # kgan.callbacks.StepLog: every step's values, kept in the graph
            self.step_log.record(results)
        if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
            # Keras 3.15 reduces logged values across workers with strategy.reduce(axis=0),
            # which fails on scalars: return shape [1] (the reduction gives back a scalar).
            results = {name: ops.reshape(value, (1,)) for name, value in results.items()}
        return results

    def _average(self, per_example):
        """The replica-aware mean: sum over this replica's examples / GLOBAL batch size."""
        return tf.nn.compute_average_loss(per_example)

    def _latents(self, local_batch):
        """Latent noise and, for a conditional GAN, fake labels (else None) for this replica."""
        z = self._noise(local_batch)
        return z, None if self._conditional is None else self._conditional.fake_labels(local_batch)

    def _noise(self, local_batch):
        """Latent noise for this replica: its slice of a global [R * B, latent] draw."""
        return distribute.replica_slice(
            lambda n: keras.random.normal((n, self.latent_dim), seed=self.seed_generator), local_batch)

    @staticmethod
    def _with_labels(x, labels):
        """A network's inputs: `x`, or `[x, labels]` for a conditional network."""
        return x if labels is None else [x, labels]

    def _d_inputs(self, x, labels=None):
        """What the discriminator sees of samples `x`: the techniques' transforms (augmentation,
        then instance noise), with the labels."""
        for technique in self.techniques:
            x = technique.transform(x)
        return self._with_labels(x, labels)

    def _critic(self, labels):
        """The discriminator a gradient penalty differentiates: x -> D(transform(x), labels).

        What D is trained on: augmented, then instance noise (a fresh draw). The penalty's
        interpolates (or reals) take the real batch's labels. Without input transforms or
        labels, the discriminator itself. With packing, x is packed (the penalty interpolates
        packed examples): its samples are unpacked, transformed each, and packed again.
        """
        if labels is None and not any(t.transforms_inputs for t in self.techniques):
            return self.discriminator

        def critic(x, training=True):
            if self._packing is not None:
                x = self._packing.unpack(x)
            return self.discriminator(self._d_inputs(x, labels), training=training)

        return critic

    def _unpack(self, data):
        """(samples, labels or None) from a batch; labels only for a conditional GAN."""
        if isinstance(data, dict) or (isinstance(data, (tuple, list)) and isinstance(data[0], dict)):
            raise ValueError("GAN.train_step takes a batch of examples (optionally (x, y)), not a dict.")
        if self._conditional is None:
            return (data[0] if isinstance(data, (tuple, list)) else data), None
        return self._conditional.unpack(data)

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
        if self._conditional is not None:
            labels = self._conditional.sampling_labels(n, labels)
        elif labels is not None:
            raise ValueError("labels are for a conditional GAN (num_classes); this GAN is unconditional")
        if getattr(self, "_sample", None) is None:  # one graph call per batch (eager: one call per layer)
            self._sample = tf.function(lambda inputs: self.sampler(inputs, training=False), reduce_retracing=True,
                                       autograph=False)
        outputs = []
        for i in range(0, n, batch_size):
            inputs = self._with_labels(z[i : i + batch_size], None if labels is None else labels[i : i + batch_size])
            outputs.append(ops.convert_to_numpy(ops.cast(self._sample(inputs), "float32")))
        return np.concatenate(outputs, axis=0)

    def get_config(self):
        return {
            "generator": keras.saving.serialize_keras_object(self.generator),
            "discriminator": keras.saving.serialize_keras_object(self.discriminator),
            "latent_dim": self.latent_dim,
            "d_steps": self.d_steps,
            "updates": self.updates,
            "seed": self.seed,
            "track_gradient_norms": self.track_gradient_norms,
            **techniques.serialize_options(self._options),
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["generator"] = keras.saving.deserialize_keras_object(config["generator"])
        config["discriminator"] = keras.saving.deserialize_keras_object(config["discriminator"])
        return cls(**config)  # a serialised `augment` is deserialised by its Option
