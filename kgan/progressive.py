"""The "simple to complex" curriculum of progressive growing: the phase and fade-in state.

Karras et al., "Progressive Growing of GANs for Improved Quality, Stability, and Variation",
2018 (https://arxiv.org/abs/1710.10196). Training starts at 4x4 and doubles the resolution
phase by phase; each new resolution is faded in (alpha from 0 to 1) and then stabilised.

kgan keeps every tensor shape constant (no retracing, one `fit` call, `tf.distribute`,
`save_weights`): the networks of `kgan.networks.progressive` always compute every resolution
and blend them by two non-trainable variables held by ONE `Curriculum` shared by the generator
and the discriminator:

    curriculum = Curriculum(num_phases=4, steps_per_phase=2000, fade_steps=1000)  # 32x32
    generator = progressive_generator(latent_dim, (32, 32, 3), curriculum)
    discriminator = progressive_discriminator((32, 32, 3), curriculum)
    gan.fit(..., callbacks=[ProgressiveCallback(curriculum), keras.callbacks.TensorBoard(...)])

`ProgressiveCallback` sets the phase and alpha before every step from the generator's update
counter (`gan.g_optimizer.iterations`), so a run restored from a checkpoint resumes in the right
phase with no state of its own.

Saving: `save_weights` / `load_weights` (and so `kgan.checkpoint`) store the shared variables
once and restore them into networks rebuilt with one shared curriculum. A whole-model
`keras.saving.save_model` of the GAN does not round-trip: Keras 3.15 deserialises the two
networks with a curriculum each (the sharing of a layer between two nested functional models is
not recorded), and loading fails with "Layer 'curriculum' expected 2 variables".
"""

import keras
from keras import ops

#: Name of the generator layer holding the curriculum (`ProgressiveCallback` and the runner find it by it).
CURRICULUM_LAYER = "curriculum"


@keras.saving.register_keras_serializable(package="kgan")
class Curriculum(keras.layers.Layer):
    """The phase (resolution index) and fade-in alpha of progressive growing, and their schedule.

    Phase k (resolution 4 * 2^k) lasts `steps_per_phase` generator steps; during the first
    `fade_steps` of every phase but the first, alpha rises linearly from 0 to 1 (ProGAN's fade-in),
    then stays 1 (stabilisation). The last phase lasts for the rest of training. Phase 0 has
    alpha 1 (nothing to fade from).

    The state lives in two non-trainable variables, `phase` (int32) and `alpha` (float32). The
    curriculum is a layer that both progressive networks call (on their inputs, which it
    ignores), so the variables are tracked by both and stored once by `save_weights`. Called, it
    returns `[phase, alpha]` as a float32 vector of shape [2] (the phase is a small integer,
    exact in float32).

    Args:
        num_phases: number of resolutions, >= 1 (log2(H / 4) + 1 for H x H images).
        steps_per_phase: generator steps of every phase but the last, >= 1.
        fade_steps: steps of linear fade-in at the start of phases 1, 2, ...; in
            [0, steps_per_phase] (0: switch resolution at once).
        **kwargs: base layer arguments (name, dtype).

    Example:

        curriculum = Curriculum(3, steps_per_phase=10, fade_steps=4)
        curriculum.state(12)   # (1, 0.5): phase 1, half faded in
        curriculum.set_step(12)
    """

    def __init__(self, num_phases, steps_per_phase, fade_steps, **kwargs):
        kwargs.setdefault("name", CURRICULUM_LAYER)
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if int(num_phases) < 1:
            raise ValueError(f"num_phases must be >= 1; got {num_phases}")
        if int(steps_per_phase) < 1:
            raise ValueError(f"steps_per_phase must be >= 1; got {steps_per_phase}")
        if not 0 <= int(fade_steps) <= int(steps_per_phase):
            raise ValueError(f"fade_steps must be in [0, steps_per_phase = {steps_per_phase}]; got {fade_steps}")
        self.num_phases = int(num_phases)
        self.steps_per_phase = int(steps_per_phase)
        self.fade_steps = int(fade_steps)
        self.phase = self.add_weight(
            shape=(), initializer="zeros", dtype="int32", trainable=False, autocast=False, name="phase"
        )
        self.alpha = self.add_weight(
            shape=(), initializer="ones", dtype="float32", trainable=False, autocast=False, name="alpha"
        )
        self.built = True

    def state(self, step):
        """The (phase, alpha) of generator step `step` (0-based): a pure function of the step.

        Args:
            step: int >= 0, the number of generator updates made before this step.

        Returns:
            (phase, alpha): int in [0, num_phases), float in [0, 1].
        """
        step = int(step)
        if step < 0:
            raise ValueError(f"step must be >= 0; got {step}")
        phase = min(step // self.steps_per_phase, self.num_phases - 1)
        into = step - phase * self.steps_per_phase
        if phase == 0 or into >= self.fade_steps:
            return phase, 1.0
        return phase, into / self.fade_steps

    def set_step(self, step):
        """Sets the variables to `state(step)`; returns (phase, alpha)."""
        phase, alpha = self.state(step)
        self.set_state(phase, alpha)
        return phase, alpha

    def set_state(self, phase, alpha=1.0):
        """Sets the phase and alpha directly (e.g. to sample at a given resolution)."""
        if not 0 <= int(phase) < self.num_phases or not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"phase must be in [0, {self.num_phases}) and alpha in [0, 1]; got {phase}, {alpha}")
        self.phase.assign(int(phase))
        self.alpha.assign(float(alpha))

    def call(self, inputs):
        del inputs  # called on a network's input only to be part of its graph
        return ops.stack([ops.cast(self.phase, "float32"), ops.cast(self.alpha, "float32")])

    def compute_output_shape(self, input_shape):
        return (2,)

    def get_config(self):
        return {
            **super().get_config(),
            "num_phases": self.num_phases,
            "steps_per_phase": self.steps_per_phase,
            "fade_steps": self.fade_steps,
        }


class ProgressiveCallback(keras.callbacks.Callback):
    """Advances a `Curriculum` during `fit`: phase and alpha from the generator's step counter.

    Before every training step it sets the curriculum to `state(gan.g_optimizer.iterations)`,
    so the state follows the optimizer (restored with the weights by a checkpoint) and needs no
    state of its own. At the end of every epoch it adds `phase` and `alpha` (the values the
    epoch's last step used) to the epoch logs: put it BEFORE the callback that writes them
    (`keras.callbacks.TensorBoard`, kgan's `EpochLog`) for them to reach TensorBoard (callbacks
    share one `logs` dict, in order).
    With `steps_per_execution = k > 1` Keras calls the batch hooks once per k steps, so the
    state is then updated every k steps.

    Args:
        curriculum: the `Curriculum` shared by the model's generator and discriminator.
    """

    def __init__(self, curriculum):
        super().__init__()
        self.curriculum = curriculum

    def _step(self):
        return int(ops.convert_to_numpy(self.model.g_optimizer.iterations))

    def on_train_begin(self, logs=None):
        self.curriculum.set_step(self._step())

    def on_train_batch_begin(self, batch, logs=None):
        self.curriculum.set_step(self._step())

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["phase"] = float(ops.convert_to_numpy(self.curriculum.phase))
            logs["alpha"] = float(ops.convert_to_numpy(self.curriculum.alpha))
