"""Differentiable augmentation of the discriminator's inputs: DiffAugment and ADA.

Zhao et al., "Differentiable Augmentation for Data-Efficient GAN Training", 2020
(https://arxiv.org/abs/2006.10738), and Karras et al., "Training Generative Adversarial
Networks with Limited Data", 2020 (https://arxiv.org/abs/2006.06676).

The same random, differentiable transformation family is applied to every image the
discriminator sees, real and generated, in both the discriminator's and the generator's updates;
the generator is trained through it (every op is differentiable with respect to the images), so
it learns the un-augmented distribution while D cannot memorise the few real images.

The maths follows the official `DiffAugment_tf.py` (images NHWC in [-1, 1]):

| op | official function | per example |
|---|---|---|
| `brightness` | `rand_brightness` | x + b, b ~ U(-0.5, 0.5) |
| `saturation` | `rand_saturation` | (x - mean_c(x)) s + mean_c(x), s ~ U(0, 2), mean over channels per pixel |
| `contrast` | `rand_contrast` | (x - mean_hwc(x)) c + mean_hwc(x), c ~ U(0.5, 1.5), mean over the image |
| `translation` | `rand_translation` | shift by integers in [-s, s], s = int(size / 8 + 0.5), zero fill |
| `cutout` | `rand_cutout` | zero a square of int(size / 2 + 0.5) at a random position (clipped) |

Policies: `color` = brightness, saturation, contrast; `translation`; `cutout`.

`Augment` gates each op per example with probability `p` (ADA's scheme: an op whose gate is off
leaves the example bit-for-bit unchanged); DiffAugment is `p = 1`. `AdaptiveAugment` adapts `p`
with ADA's overfitting heuristic r_t = E[sign(D(real) - threshold)], the threshold being the
loss's `decision_threshold` (`kgan.losses`: 0 for logits, the midpoint of the targets for
least squares; Karras et al.'s E[sign(D(real))] is the logit case).

Distribution: the random draws are made for the GLOBAL batch on every replica from the same
`keras.random.SeedGenerator` and each replica keeps its slice (as `kgan.gan.GAN._noise`, through
`kgan.distribute.replica` so that `kgan.gan` can import this module), so the augmentation does
not depend on the number of replicas; ADA's sums of signs are all-reduced so every replica holds
the same `p`.
"""

import keras
import tensorflow as tf
from keras import ops

from kgan import distribute, seeds
from kgan.names import AUGMENTS
from kgan.registry import Registry

TRANSLATION_RATIO = 0.125  # the official `rand_translation(x, ratio=0.125)`
CUTOUT_RATIO = 0.5  # the official `rand_cutout(x, ratio=0.5)`

# Policy name -> the ops it applies, in the official order.
POLICIES = {
    "color": ("brightness", "saturation", "contrast"),
    "translation": ("translation",),
    "cutout": ("cutout",),
}


# ----------------------------------------------------------------------------------------------
# The ops, with their random parameters given explicitly (pure functions, NHWC float tensors).


def _per_example(values, images):
    """[B] -> [B, 1, 1, 1] in the images' dtype."""
    return ops.reshape(ops.cast(values, images.dtype), (-1, 1, 1, 1))


def brightness(images, magnitude):
    """x + b per example (`rand_brightness`; b ~ U(-0.5, 0.5)).

    Args:
        images: [B, H, W, C] float.
        magnitude: [B], the brightness offset b of each example.
    """
    return images + _per_example(magnitude, images)


def saturation(images, factor):
    """(x - m) s + m, m the per-pixel mean over channels (`rand_saturation`; s ~ U(0, 2)).

    Args:
        images: [B, H, W, C] float.
        factor: [B], the saturation factor s of each example.
    """
    mean = ops.mean(images, axis=3, keepdims=True)
    return (images - mean) * _per_example(factor, images) + mean


def contrast(images, factor):
    """(x - m) c + m, m the mean of each image (`rand_contrast`; c ~ U(0.5, 1.5)).

    Args:
        images: [B, H, W, C] float.
        factor: [B], the contrast factor c of each example.
    """
    mean = ops.mean(images, axis=(1, 2, 3), keepdims=True)
    return (images - mean) * _per_example(factor, images) + mean


def _shift_axis(images, shift, axis):
    """Moves the content of each image by `shift[b]` along `axis` (1 or 2), filling with zeros.

    As the official code: pad one zero row on each side, then gather row clip(i - shift + 1,
    0, size + 1) of the padded image (out of range reads land on the zero padding). `tf.gather`
    with `batch_dims=1` (a per-example index [B, size]) is ~10x faster here than
    `ops.take_along_axis`, which broadcasts the index to the whole image.
    """
    size = images.shape[axis]
    padding = [[0, 0]] * 4
    padding[axis] = [1, 1]
    padded = ops.pad(images, padding)
    index = ops.clip(ops.arange(size, dtype="int32")[None, :] - ops.reshape(shift, (-1, 1)) + 1, 0, size + 1)
    return tf.gather(padded, index, axis=axis, batch_dims=1)


def translation(images, shift):
    """Translates each image by an integer shift with zero fill (`rand_translation`).

    out[b, i, j] = x[b, i - dy, j - dx] where that is inside the image, else 0: NumPy's
    `np.roll(x, (dy, dx), axis=(0, 1))` with zeros instead of wrap-around. (The official code
    reads x[i + t] with t ~ U{-s..s}; the distribution of shifts is symmetric, so it is the same.)

    Args:
        images: [B, H, W, C] float.
        shift: [B, 2] int, (dy, dx) of each example.
    """
    shift = ops.cast(shift, "int32")
    return _shift_axis(_shift_axis(images, shift[:, 0], axis=1), shift[:, 1], axis=2)


def cutout(images, corner, size):
    """Zeroes a `size` rectangle of each image whose top-left corner is `corner` (`rand_cutout`).

    The rectangle is clipped to the image (the corner may be negative): rows
    corner[b, 0] <= i < corner[b, 0] + size[0], columns likewise, all channels.

    Args:
        images: [B, H, W, C] float.
        corner: [B, 2] int, the (row, column) of each rectangle's top-left corner.
        size: (height, width) of the rectangle, Python ints.
    """
    corner = ops.cast(corner, "int32")
    rows = ops.arange(images.shape[1], dtype="int32")[None, :]
    cols = ops.arange(images.shape[2], dtype="int32")[None, :]
    top, left = corner[:, :1], corner[:, 1:]
    inside_rows = ops.logical_and(rows >= top, rows < top + size[0])  # [B, H]
    inside_cols = ops.logical_and(cols >= left, cols < left + size[1])  # [B, W]
    inside = ops.logical_and(inside_rows[:, :, None, None], inside_cols[:, None, :, None])
    return ops.where(inside, ops.zeros_like(images), images)


def translation_limit(image_size):
    """The largest shift along an axis of `image_size` pixels: int(size * 0.125 + 0.5)."""
    return int(image_size * TRANSLATION_RATIO + 0.5)


def cutout_size(image_size):
    """The cutout side along an axis of `image_size` pixels: int(size * 0.5 + 0.5)."""
    return int(image_size * CUTOUT_RATIO + 0.5)


def _randint(u, low, high):
    """Integers uniform in [low, high) from uniforms u in [0, 1)."""
    n = high - low
    return ops.cast(ops.minimum(ops.floor(u * n), n - 1), "int32") + low


def parameters(op, uniforms, image_shape):
    """The random parameter(s) of `op` for each example, from its uniforms in [0, 1).

    Distributions as the official code: brightness U(-0.5, 0.5), saturation U(0, 2), contrast
    U(0.5, 1.5); translation integers in [-s, s] per axis; cutout centre uniform over
    [0, size + 1 - cut % 2) per axis (the corner is the centre - cut // 2).

    Args:
        op: an op name (`brightness`, ..., `cutout`).
        uniforms: [B, 2] float32 in [0, 1) (ops with one parameter use the first column).
        image_shape: (H, W, C).
    """
    if op == "brightness":
        return uniforms[:, 0] - 0.5
    if op == "saturation":
        return uniforms[:, 0] * 2.0
    if op == "contrast":
        return uniforms[:, 0] + 0.5
    if op == "translation":
        limits = [translation_limit(n) for n in image_shape[:2]]
        return ops.stack([_randint(uniforms[:, k], -s, s + 1) for k, s in enumerate(limits)], axis=1)
    if op == "cutout":
        sides = [cutout_size(n) for n in image_shape[:2]]
        centres = [_randint(uniforms[:, k], 0, n + 1 - c % 2) for k, (n, c) in enumerate(zip(image_shape[:2], sides, strict=False))]
        return ops.stack([centre - c // 2 for centre, c in zip(centres, sides, strict=False)], axis=1)
    raise ValueError(f"Unknown augmentation op: {op}")


def apply(op, images, params):
    """Applies `op` with explicit parameters (as returned by `parameters`)."""
    if op == "translation":
        return translation(images, params)
    if op == "cutout":
        return cutout(images, params, [cutout_size(n) for n in images.shape[1:3]])
    return {"brightness": brightness, "saturation": saturation, "contrast": contrast}[op](images, params)


def _gated(op, images, gate, uniforms, image_shape):
    """`op` on the examples whose gate is on; the others are returned bit-for-bit unchanged.

    The op is computed only if some example of this replica's batch is gated on (none are at
    p = 0, where ADA starts); the result is the same either way.
    """

    def augmented():
        params = parameters(op, uniforms, image_shape)
        return ops.where(ops.reshape(gate, (-1, 1, 1, 1)), apply(op, images, params), images)

    return ops.cond(ops.any(gate), augmented, lambda: images)


def parse_policy(policy):
    """Splits a policy string, "color,translation" -> ("color", "translation").

    Raises:
        ValueError: one line naming the valid policies, for an unknown or empty policy.
    """
    names = tuple(name.strip() for name in str(policy).split(",") if name.strip())
    bad = [name for name in names if name not in POLICIES]
    if bad or not names:
        raise ValueError(
            f"Unknown augmentation policy {policy!r}: use a comma-separated list of {', '.join(POLICIES)}."
        )
    return names


# ----------------------------------------------------------------------------------------------
# Layers.


#: The augmentations by name (`kgan.names.AUGMENTS`) and class name.
AUGMENT_REGISTRY = Registry("augment", keras_saving=True)


@AUGMENT_REGISTRY.register("diffaugment")
@keras.saving.register_keras_serializable(package="kgan")
class Augment(keras.layers.Layer):
    """DiffAugment with ADA-style per-example gating: each op applied with probability `p`.

    Zhao et al., "Differentiable Augmentation for Data-Efficient GAN Training", 2020
    (https://arxiv.org/abs/2006.10738); per-example gating as in Karras et al. 2020
    (https://arxiv.org/abs/2006.06676). With `p = 1` this is DiffAugment: every op on every
    example. Each op of the policy (brightness, saturation, contrast, translation, cutout) is
    gated independently per example; where a gate is off the example passes through that op
    bit-for-bit unchanged, so `p = 0` is exactly the identity.

    Apply it to every discriminator input, real and generated, in both updates. Images keep
    their dtype (float32 or bfloat16; the maths is float32 inside).

    Args:
        policy: comma-separated policies: `color`, `translation`, `cutout`.
        p: probability in [0, 1] of applying each op to each example. Held in a non-trainable
            float32 weight `p` (checkpointed with the model; `AdaptiveAugment` adapts it).
        seed: the run seed (int) or None: the `seed_generator` (a `keras.random.SeedGenerator`)
            draws the run's `augment` stream, `kgan.seeds.stream_seed(seed, "augment")`.

    Example:

        augment = Augment("color,translation,cutout")
        x = augment(images, training=True)   # [B, H, W, C] in [-1, 1]
    """

    def __init__(self, policy="color,translation,cutout", p=1.0, seed=None, **kwargs):
        kwargs.setdefault("autocast", False)  # keep the images' dtype (no cast to the policy's)
        super().__init__(**kwargs)
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"Augment p must be in [0, 1]; got {p}")
        self.policy = ",".join(parse_policy(policy))
        self.ops = tuple(op for name in self.policy.split(",") for op in POLICIES[name])
        self.seed = seed
        self._initial_p = float(p)
        self.seed_generator = seeds.seed_generator(seed, "augment", name="augment_seed")
        # Under MirroredStrategy, `AdaptiveAugment.update` assigns p in replica context; every
        # replica computes the same value (its inputs are all-reduced), so the first replica's
        # value is the value (checked with 2 replicas in tests/test_augment.py).
        self._p = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(float(p)), dtype="float32",
            trainable=False, autocast=False, aggregation="only_first_replica", name="p",
        )
        self.built = True  # no weights depend on the input shape

    @property
    def p(self):
        """The probability of applying each op (a float32 variable)."""
        return self._p

    def _uniform(self, local_batch, n):
        """This replica's slice of a GLOBAL [R * B, n] draw of U[0, 1)."""
        return distribute.replica_slice(lambda rows: keras.random.uniform((rows, n), seed=self.seed_generator),
                                        local_batch)

    def call(self, images, training=True):
        if not training:
            return images
        x = ops.cast(images, "float32")
        image_shape = tuple(x.shape[1:])
        if len(image_shape) != 3 or None in image_shape[:2]:
            raise ValueError(f"Augment takes NHWC images with a static size; got shape {tuple(images.shape)}")
        batch = ops.shape(x)[0]
        p = ops.convert_to_tensor(self._p)
        for op in self.ops:
            u = self._uniform(batch, 3)  # gate, then up to two parameters
            x = _gated(op, x, u[:, 0] < p, u[:, 1:], image_shape)
        return ops.cast(x, images.dtype)

    #: Whether `update` adapts p (ADA): the GAN then needs a loss with a decision threshold.
    adaptive = False

    def update(self, real_outputs, threshold=0.0):
        """Called once per discriminator update with D's outputs on real data: a no-op here."""
        del real_outputs, threshold

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"policy": self.policy, "p": self._initial_p, "seed": self.seed})
        return config


@AUGMENT_REGISTRY.register("ada")
@keras.saving.register_keras_serializable(package="kgan")
class AdaptiveAugment(Augment):
    """ADA: `Augment` whose p follows D's overfitting heuristic r_t = E[sign(D(real) - threshold)].

    Karras et al., "Training Generative Adversarial Networks with Limited Data", 2020
    (https://arxiv.org/abs/2006.06676), section 3 and the official `ada_target`, `ada_interval`,
    `ada_kimg`. `update(real_outputs, threshold)` accumulates sign(D(x_real) - threshold) over
    the discriminator updates (threshold: the loss's `decision_threshold`, D's output when it
    cannot tell real from fake; Karras et al.'s logits have 0); every `interval` updates

        r_t = mean of the accumulated signs
        p <- clip(p + sign(r_t - target) * N / (speed_kimg * 1000), 0, 1)

    with N the number of real outputs accumulated (global batch x interval): p can move from 0
    to 1 in `speed_kimg` thousand real images. The accumulators are non-trainable weights
    updated with `assign`, so this runs inside `tf.function` / `fit`; under MirroredStrategy
    the sums are all-reduced across replicas, so every replica computes the same `p`.

    Args:
        policy: comma-separated policies: `color`, `translation`, `cutout`.
        p: the initial probability (ADA starts at 0).
        target: the r_t to hold (0.6 in the paper).
        interval: discriminator updates between adjustments (ADA's 4).
        speed_kimg: thousands of real images for p to move by 1 (ADA's `ada_kimg` = 500).
        seed: int seed of the `seed_generator`.
    """

    def __init__(self, policy="color,translation,cutout", p=0.0, target=0.6, interval=4, speed_kimg=500.0,
                 seed=None, **kwargs):
        super().__init__(policy=policy, p=p, seed=seed, **kwargs)
        if int(interval) < 1:
            raise ValueError(f"AdaptiveAugment interval must be >= 1; got {interval}")
        if float(speed_kimg) <= 0:
            raise ValueError(f"AdaptiveAugment speed_kimg must be > 0; got {speed_kimg}")
        self.target = float(target)
        self.interval = int(interval)
        self.speed_kimg = float(speed_kimg)

        def state(name, dtype="float32"):
            return self.add_weight(shape=(), initializer="zeros", dtype=dtype, trainable=False, autocast=False,
                                   aggregation="only_first_replica", name=name)

        self._sign_sum = state("sign_sum")  # sum of sign(D(real) - threshold) since the last adjustment
        self._count = state("count")  # number of real outputs summed
        self._updates = state("updates", "int64")  # discriminator updates seen
        self._r_t = state("r_t")  # the heuristic at the last adjustment

    adaptive = True

    @property
    def r_t(self):
        """E[sign(D(real) - threshold)] over the last completed interval (a float32 variable)."""
        return self._r_t

    def update(self, real_outputs, threshold=0.0):
        """Accumulates sign(D(real) - threshold); every `interval` calls, adjusts p and resets the sums.

        Args:
            real_outputs: D's raw outputs (logits or raw values) on this replica's real batch,
                [B, 1] or [B].
            threshold: D's output when undecided, the loss's `decision_threshold` (a float).
        """
        signs = ops.sign(ops.cast(real_outputs, "float32") - float(threshold))
        sums = ops.stack([ops.sum(signs), ops.cast(ops.size(signs), "float32")])
        sums = distribute.all_reduce_sum(sums)
        sign_sum = self._sign_sum + sums[0]
        count = self._count + sums[1]
        updates = self._updates + 1
        adjust = ops.equal(updates % self.interval, 0)
        r_t = sign_sum / ops.maximum(count, 1.0)
        step = ops.sign(r_t - self.target) * count / (self.speed_kimg * 1000.0)
        self._p.assign(ops.where(adjust, ops.clip(self._p + step, 0.0, 1.0), self._p))
        self._r_t.assign(ops.where(adjust, r_t, self._r_t))
        self._sign_sum.assign(ops.where(adjust, 0.0, sign_sum))
        self._count.assign(ops.where(adjust, 0.0, count))
        self._updates.assign(updates)

    def get_config(self):
        config = super().get_config()
        config.update({"target": self.target, "interval": self.interval, "speed_kimg": self.speed_kimg})
        return config


# ----------------------------------------------------------------------------------------------
# Identifiers.

def serialize(augment):
    """The `keras.saving` config dict of an `Augment`, or None for None."""
    return AUGMENT_REGISTRY.serialize(augment)


def get(identifier):
    """An `Augment` from None, a name (`kgan.names.AUGMENTS`: `diffaugment`, `ada`), a config
    dict, an `Augment` class or an instance.

    Raises:
        ValueError: if the identifier cannot be interpreted.
    """
    return AUGMENT_REGISTRY.get(identifier, allow_none=True)


def from_flag(augment=None, policy="color,translation,cutout", p=None, target=0.6, seed=None):
    """The augmentation a command line asks for, or None.

    Args:
        augment: None (no augmentation), `diffaugment` (fixed p, default 1) or `ada` (adaptive
            p, starting at `p`, default 0).
        policy: comma-separated policies: `color`, `translation`, `cutout`.
        p: the fixed (diffaugment) or initial (ada) probability; None for the default.
        target: ADA's r_t target.
        seed: int seed of the augmentation's draws.

    Raises:
        ValueError: one line, for an unknown `augment`, policy, or p outside [0, 1].
    """
    if augment is None or augment == "none":
        return None
    parse_policy(policy)
    if p is not None and not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"Augmentation probability must be in [0, 1]; got {p}")
    if augment not in AUGMENTS:
        raise ValueError(f"Unknown augmentation {augment!r}: use {' or '.join(AUGMENTS)}.")
    if augment == "diffaugment":
        return Augment(policy, p=1.0 if p is None else p, seed=seed)
    return AdaptiveAugment(policy, p=0.0 if p is None else p, target=target, seed=seed)
