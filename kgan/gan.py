"""`GAN`: a `keras.Model` whose `train_step` alternates discriminator and generator updates.

Follows the Keras custom-train-step guide: trackers made in `__init__` and listed by `metrics`,
noise from a `keras.random.SeedGenerator`, `compile()` with explicit keyword arguments, and
`call(z)` running the generator so the model is built and exportable.

Distribution: the per-example losses are reduced in ONE place, `_average`, with
`tf.nn.compute_average_loss` (sum / GLOBAL batch). Keras' optimizer sums gradients across
replicas, so this makes a step on R replicas equal a step on one with the same global batch.
Noise is drawn for the GLOBAL batch on every replica from the same seed and each replica keeps
its own slice, so the noise, too, does not depend on the number of replicas.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from kgan import constraints, losses, penalties


def _replica():
    """(replica id, number of replicas) in the current replica context."""
    context = tf.distribute.get_replica_context()
    if context is None:  # cross-replica context: treat as a single replica
        return 0, 1
    return context.replica_id_in_sync_group, context.num_replicas_in_sync


@keras.saving.register_keras_serializable(package="kgan")
class GAN(keras.Model):
    """A generator and a discriminator trained adversarially by `fit`.

    Each `train_step` makes `d_steps` discriminator updates, each on its own real batch, then
    one generator update. Feed it batches of `d_steps * batch_size` examples (the data pipeline
    does); the step takes examples k, k + d_steps, k + 2 d_steps, ... for critic update k, which
    keeps the batches identical however the global batch is split across replicas.

    Args:
        generator: Keras model, latent [B, latent_dim] -> samples.
        discriminator: Keras model, samples -> outputs [B, 1] (logits or critic values).
        latent_dim: size of the generator input (inferred from the generator if None).
        d_steps: discriminator updates per generator update (n_critic; 5 for WGAN).
        instance_noise: std of Gaussian noise added to every discriminator input, real and
            generated (Sonderby et al. 2016; Arjovsky & Bottou 2017); 0 disables it.
        seed: int seed for the noise (latent, instance noise).
        track_gradient_norms: log `d_grad_norm` and `g_grad_norm`, the global norms of the
            discriminator's and generator's gradients (mean over the epoch's updates), to the
            history and TensorBoard: the diagnostic of the Minkowski paper's Figure 1.

    Example:

        gan = GAN(generator, discriminator)
        gan.compile(
            d_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5),
            g_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5),
            loss=kgan.losses.Minkowski(p=4),
        )
        gan.fit(dataset, epochs=10)
        images = gan.generate(16, seed=0)
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
        **kwargs,
    ):
        super().__init__(**kwargs)
        if latent_dim is None:
            latent_dim = generator.input_shape[-1]
        if int(d_steps) < 1:
            raise ValueError(f"d_steps must be >= 1; got {d_steps}")
        if instance_noise < 0:
            raise ValueError(f"instance_noise must be >= 0; got {instance_noise}")
        self.generator = generator
        self.discriminator = discriminator
        self.latent_dim = int(latent_dim)
        self.d_steps = int(d_steps)
        self.instance_noise = float(instance_noise)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed, name="noise_seed")
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.penalty_tracker = keras.metrics.Mean(name="penalty")
        self.track_gradient_norms = bool(track_gradient_norms)
        self.d_grad_norm_tracker = keras.metrics.Mean(name="d_grad_norm")
        self.g_grad_norm_tracker = keras.metrics.Mean(name="g_grad_norm")
        self.loss_fn = None
        self.penalty = None
        self.weight_clip = None
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
        """
        super().compile(**kwargs)
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer
        self.loss_fn = losses.get(loss)
        self.penalty = penalties.get(penalty)
        self.weight_clip = weight_clip
        if weight_clip is not None:
            constraints.attach_weight_clip(self.discriminator, weight_clip)
        # Build optimizer slots now, in the (strategy) scope compile is called in, not in the
        # first replica-context step.
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.g_optimizer.build(self.generator.trainable_variables)

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
        return trackers

    def call(self, z, training=False):
        return self.generator(z, training=training)

    # ------------------------------------------------------------------------------------------
    # Training.

    def _average(self, per_example):
        """The replica-aware mean: sum over this replica's examples / GLOBAL batch size."""
        return tf.nn.compute_average_loss(per_example)

    def _noise(self, local_batch):
        """Latent noise for this replica: its slice of a global [R * B, latent] draw."""
        replica_id, num_replicas = _replica()
        z = keras.random.normal((local_batch * num_replicas, self.latent_dim), seed=self.seed_generator)
        return z[replica_id * local_batch : (replica_id + 1) * local_batch]

    def _perturb(self, x):
        """Instance noise on a discriminator input (identity when instance_noise is 0)."""
        if not self.instance_noise:
            return x
        replica_id, num_replicas = _replica()
        local_batch = ops.shape(x)[0]
        noise = keras.random.normal(
            (local_batch * num_replicas, *x.shape[1:]), stddev=self.instance_noise, seed=self.seed_generator
        )
        return x + ops.cast(noise[replica_id * local_batch : (replica_id + 1) * local_batch], x.dtype)

    def _discriminator_step(self, real):
        batch = ops.shape(real)[0]
        fake = self.generator(self._noise(batch), training=True)
        with tf.GradientTape() as tape:
            real_outputs = self.discriminator(self._perturb(real), training=True)
            fake_outputs = self.discriminator(self._perturb(fake), training=True)
            per_example = self.loss_fn.discriminator_loss(real_outputs, fake_outputs)
            self.d_loss_tracker.update_state(per_example)
            if self.penalty is not None:
                penalty = self.penalty(self.discriminator, real, fake, training=True)
                self.penalty_tracker.update_state(penalty)
                per_example = per_example + penalty
            loss = self.d_optimizer.scale_loss(self._average(per_example))
        variables = self.discriminator.trainable_variables
        gradients = tape.gradient(loss, variables)
        self._track_norm(self.d_grad_norm_tracker, self.d_optimizer, gradients)
        self.d_optimizer.apply(gradients, variables)
        return real_outputs

    def _generator_step(self, batch, real_outputs):
        with tf.GradientTape() as tape:
            fake = self.generator(self._noise(batch), training=True)
            fake_outputs = self.discriminator(self._perturb(fake), training=True)
            per_example = self.loss_fn.generator_loss(fake_outputs, real_outputs)
            self.g_loss_tracker.update_state(per_example)
            loss = self.g_optimizer.scale_loss(self._average(per_example))
        variables = self.generator.trainable_variables
        gradients = tape.gradient(loss, variables)
        self._track_norm(self.g_grad_norm_tracker, self.g_optimizer, gradients)
        self.g_optimizer.apply(gradients, variables)

    def _track_norm(self, tracker, optimizer, gradients):
        """Logs the global norm of the GLOBAL-batch gradient (the paper's Figure 1 quantity).

        Each replica holds a partial sum of the gradient; the norm is taken of their sum
        (an extra all-reduce, only when tracking), and loss scaling is undone.
        """
        if not self.track_gradient_norms:
            return
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            gradients = context.all_reduce(tf.distribute.ReduceOp.SUM, gradients)
        norm = tf.linalg.global_norm([ops.cast(g, "float32") for g in gradients if g is not None])
        scale = getattr(optimizer, "dynamic_scale", None)  # LossScaleOptimizer (float16)
        if scale is not None:
            norm = norm / ops.cast(scale, "float32")
        tracker.update_state(norm)

    def train_step(self, data):
        if self.loss_fn is None:
            raise RuntimeError("GAN must be compiled (d_optimizer, g_optimizer, loss) before training.")
        real = data[0] if isinstance(data, (tuple, list)) else data
        if isinstance(real, dict):
            raise ValueError("GAN.train_step takes a batch of examples (optionally (x, y)), not a dict.")
        # [d_steps * B, ...] -> [B, d_steps, ...]: critic update k uses real[:, k].
        real = ops.reshape(real, (-1, self.d_steps, *real.shape[1:]))
        real_outputs = None
        for k in range(self.d_steps):
            real_outputs = self._discriminator_step(real[:, k])
        self._generator_step(ops.shape(real)[0], real_outputs)
        results = {m.name: m.result() for m in self.metrics}
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

    def generate(self, n, seed=None, batch_size=256):
        """Returns `n` generated samples as a NumPy array (generator in inference mode).

        Args:
            n: number of samples.
            seed: int for reproducible samples (the same seed gives the same samples).
            batch_size: samples generated per call of the generator.
        """
        z = keras.random.normal((n, self.latent_dim), seed=seed)
        outputs = [
            ops.convert_to_numpy(ops.cast(self.generator(z[i : i + batch_size], training=False), "float32"))
            for i in range(0, n, batch_size)
        ]
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
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["generator"] = keras.saving.deserialize_keras_object(config["generator"])
        config["discriminator"] = keras.saving.deserialize_keras_object(config["discriminator"])
        return cls(**config)
