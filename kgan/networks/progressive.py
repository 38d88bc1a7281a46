"""Progressive-growing DCGAN generator and discriminator with constant tensor shapes.

Karras et al., "Progressive Growing of GANs for Improved Quality, Stability, and Variation",
2018 (https://arxiv.org/abs/1710.10196): train at 4x4 first and add a resolution at a time,
fading each new one in. Here the networks never change shape: they always compute every
resolution, and a shared `kgan.progressive.Curriculum` (phase p, alpha a) chooses what reaches
the output through `Fade` layers, arithmetic on the two variables (no Python branching on their
values, no retracing; works in one `fit` call, under `tf.distribute`, and with `save_weights`).

The layers are exactly DCGAN's (`kgan.networks.dcgan`, Radford et al. 2016), plus a toRGB
(1x1 convolution + tanh) after every generator stage below the full resolution and a fromRGB
(1x1 convolution + LeakyReLU) before every discriminator stage below it. At the last phase
(p = n, alpha = 1) both networks compute exactly the DCGAN pair; the unused branches then add
nothing (they are multiplied by 0 and get zero gradients), and the same holds for resolutions
not reached yet. With H = 4 * 2^n and resolutions R_r = 4 * 2^r, r = 0..n:

    G: o_0 = rgb_0;  o_r = (1 - w_r) * upsample2(o_{r-1}) + w_r * rgb_r,  w_r = clip(p - r + a, 0, 1)
       (rgb_n is DCGAN's own output layer), so the output is lerp(upsample2(rgb_{p-1}), rgb_p, a)
       nearest-upsampled to H x H: always [B, H, W, C] float32 in [-1, 1].
    D: x_r = the input average-pooled to R_r (real and generated images alike);
       h_{n-1} = (1 - c) * fromRGB_{n-1}(x_{n-1}) + c * down_0(x_n), and in general
       h_r = (1 - c_r) * fromRGB_r(x_r) + c_r * stage_{r+1}(h_{r+1}),  c_r = clip(p - r - 1 + a, 0, 1),
       then flatten -> "features" -> logit [B, 1] float32. D at phase p sees only x_p.

The weights depend only on p + a, so alpha = 0 at phase k is exactly phase k - 1 at alpha = 1.
Cost: every resolution is computed at every phase (about the DCGAN pair's cost throughout; no
ProGAN-style speed-up at low resolution, in exchange for constant shapes).
"""

import keras
from keras import layers, ops

from kgan.networks.dcgan import _num_doublings, down_stage
from kgan.networks.layers import LeakyReLU, discriminator_output, spectral


def num_phases(image_shape):
    """Number of curriculum phases for `image_shape` (H, W, C): resolutions 4, 8, ..., H."""
    return _num_doublings(image_shape) + 1


def _check(image_shape, curriculum):
    phases = num_phases(image_shape)
    if curriculum.num_phases != phases:
        size = image_shape[0]
        resolutions = ", ".join(str(4 * 2**r) for r in range(phases))
        raise ValueError(
            f"a {size}x{size} image has {phases} phases ({resolutions}); the curriculum has {curriculum.num_phases}"
        )
    return phases - 1


@keras.saving.register_keras_serializable(package="kgan")
class Fade(keras.layers.Layer):
    """Blends an existing branch with one that fades in from phase `index` on.

    Called on `[old, new, state]` (`state` = `[phase, alpha]` from a `Curriculum`), returns
    `(1 - w) * old + w * new` with `w = clip(phase - index + alpha, 0, 1)`: `old` before phase
    `index`, the fade-in lerp during it, `new` after it. `w` is exactly 0 or 1 outside the fade,
    and `1 * x + 0 * y` is exactly x for finite y, so inactive branches change nothing.

    Args:
        index: the phase at which `new` fades in (int >= 1).
        **kwargs: base layer arguments (name, dtype).
    """

    def __init__(self, index, **kwargs):
        super().__init__(**kwargs)
        self.index = int(index)

    def call(self, inputs):
        old, new, state = inputs
        weight = ops.clip((state[0] - float(self.index)) + state[1], 0.0, 1.0)
        weight = ops.cast(weight, old.dtype)
        return (1 - weight) * old + weight * ops.cast(new, old.dtype)

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]

    def get_config(self):
        return {**super().get_config(), "index": self.index}


def progressive_generator(latent_dim, image_shape, curriculum, base_filters=64, name="generator"):
    """Returns a progressive DCGAN generator: latent [B, latent_dim] -> images [B, H, W, C].

    Karras et al. 2018 (https://arxiv.org/abs/1710.10196) on DCGAN's generator: a 4x4
    projection, then 4x4 stride-2 transposed convolutions (batch norm, ReLU) doubling the
    resolution up to H, with a toRGB (1x1 convolution + tanh) after every stage below H. At
    phase p with fade-in alpha a the output is lerp(upsample2(rgb_{p-1}), rgb_p, a) nearest-
    upsampled to H x H, so its shape never depends on the phase.

    Args:
        latent_dim: size of the latent input.
        image_shape: (H, W, C), H = W in 8..64, C in (1, 3).
        curriculum: the `kgan.progressive.Curriculum` shared with the discriminator, with
            `num_phases(image_shape)` phases.
        base_filters: DCGAN's width: the 4x4 stage has `base_filters * 2^(n - 1)` channels,
            halved at each doubling.
        name: model name.

    Returns:
        A `keras.Model`; its output is float32 in [-1, 1] whatever the dtype policy.
    """
    n = _check(image_shape, curriculum)
    channels = image_shape[-1]
    filters = base_filters * 2 ** (n - 1)
    inputs = keras.Input((latent_dim,), name="latent")
    state = curriculum(inputs)

    def to_rgb(x, r):
        x = layers.Conv2D(channels, 1, name=f"to_rgb_{r}")(x)
        return layers.Activation("tanh", dtype="float32", name=f"to_rgb_{r}_tanh")(x)

    def grow(images, rgb, r):  # resolution r fades in at phase r
        images = layers.UpSampling2D(2, dtype="float32", name=f"upsample_{r}")(images)
        return Fade(r, dtype="float32", name=f"fade_{r}")([images, rgb, state])

    # DCGAN's layers, with the same names.
    x = layers.Dense(4 * 4 * filters, use_bias=False, name="project")(inputs)
    x = layers.BatchNormalization(name="project_bn")(x)
    x = layers.ReLU(name="project_relu")(x)
    x = layers.Reshape((4, 4, filters), name="reshape")(x)
    images = to_rgb(x, 0)
    for i in range(n - 1):
        filters //= 2
        x = layers.Conv2DTranspose(filters, 4, strides=2, padding="same", use_bias=False, name=f"up_{i}")(x)
        x = layers.BatchNormalization(name=f"up_{i}_bn")(x)
        x = layers.ReLU(name=f"up_{i}_relu")(x)
        images = grow(images, to_rgb(x, i + 1), i + 1)
    x = layers.Conv2DTranspose(channels, 4, strides=2, padding="same", name="to_image")(x)
    rgb = layers.Activation("tanh", dtype="float32", name="tanh")(x)
    outputs = grow(images, rgb, n)
    return keras.Model(inputs, outputs, name=name)


def progressive_discriminator(
    image_shape, curriculum, base_filters=64, batch_norm=True, spectral_norm=False, name="discriminator"
):
    """Returns a progressive DCGAN discriminator: images [B, H, W, C] -> logits [B, 1] (float32).

    Karras et al. 2018 (https://arxiv.org/abs/1710.10196) on DCGAN's discriminator. The input
    is average-pooled to every resolution 4..H (real and generated images alike, so the GAN's
    step needs no change); at phase p the network reads the pooled image x_p through
    fromRGB_p (1x1 convolution + LeakyReLU(0.2)), fading in from fromRGB_{p-1} of x_{p-1}
    (ProGAN's fade-in), then DCGAN's remaining 4x4 stride-2 stages down to 4x4, a flatten
    (the `"features"` layer, for feature matching) and a dense logit.

    Args:
        image_shape: (H, W, C), H = W in 8..64, C in (1, 3), times m with PacGAN's packing.
        curriculum: the `kgan.progressive.Curriculum` shared with the generator.
        base_filters: channels at H / 2, doubled at each halving (DCGAN's widths).
        batch_norm: batch norm after every strided convolution but the one on the full-
            resolution image (as DCGAN). Turn it off with a gradient penalty.
        spectral_norm: wrap every convolution (fromRGB included) and the output layer in
            `keras.layers.SpectralNormalization` (Miyato et al. 2018); implies no batch norm.
        name: model name.

    Returns:
        A `keras.Model`.
    """
    n = _check(image_shape, curriculum)
    batch_norm = batch_norm and not spectral_norm

    def from_rgb(x, r):  # features at resolution r: the channels DCGAN's stage there takes
        x = spectral(layers.Conv2D(base_filters * 2 ** (n - 1 - r), 1, name=f"from_rgb_{r}"), spectral_norm)(x)
        return LeakyReLU(0.2, name=f"from_rgb_{r}_lrelu")(x)

    inputs = keras.Input(image_shape, name="images")
    state = curriculum(inputs)
    pooled = [inputs]  # pooled[j]: the input at resolution n - j
    for r in range(n - 1, -1, -1):
        pooled.append(layers.AveragePooling2D(2, name=f"pool_{r}")(pooled[-1]))
    x = inputs
    for i in range(n):  # DCGAN's stage i: resolution n - i -> n - i - 1
        x = down_stage(x, i, base_filters, batch_norm, spectral_norm)
        r = n - i - 1  # the resolution x is at; the stage that made it fades in at phase r + 1
        x = Fade(r + 1, name=f"fade_{r}")([from_rgb(pooled[i + 1], r), x, state])
    x = layers.Flatten(name="flatten")(x)
    outputs = discriminator_output(x, spectral_norm=spectral_norm)  # "features" -> "logits"
    return keras.Model(inputs, outputs, name=name)
