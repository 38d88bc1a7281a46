"""SNGAN ResNet generator and critic (8x8 up to 64x64, any channels).

Miyato, Kataoka, Koyama & Yoshida, "Spectral Normalization for Generative Adversarial
Networks", 2018 (https://arxiv.org/abs/1802.05957), Table 4 (CIFAR-10 ResNet), as in the
authors' chainer code (pfnet-research/sngan_projection) and Mimicry's `sngan_32` (Lee & Town
2020, https://arxiv.org/abs/2005.02494). At 32x32:

    G: z -> dense 4*4*256 -> 3 x ResBlock-up(256) -> BN -> ReLU -> conv3x3(C) -> tanh
       ResBlock-up: BN, ReLU, nearest upsample, conv3x3, BN, ReLU, conv3x3;
                    shortcut: nearest upsample, conv1x1.
    D: OptimizedBlock(128, down) -> ResBlock(128, down) -> ResBlock(128) -> ResBlock(128)
       -> ReLU -> global sum pooling -> dense(1); spectral norm on every convolution and dense.
       OptimizedBlock: conv3x3, ReLU, conv3x3, avgpool; shortcut: avgpool, conv1x1.
       ResBlock: ReLU, conv3x3, ReLU, conv3x3 [, avgpool]; shortcut: conv1x1 [, avgpool] when
       it downsamples or changes the width, else the identity.

Other sizes: G has log2(size / 4) up blocks (so 1 at 8x8, 4 at 64x64), widths unchanged. D
halves max(1, log2(size) - 3) times (the first block plus further downsampling blocks) so its
last maps are 8x8 (4x4 at 8x8 input), then two blocks without downsampling; the global sum
pooling takes any map size. Residual convolutions use Glorot-uniform with gain sqrt(2), the
shortcuts and dense layers gain 1, as in the reference code. Convolutions keep their biases
(the published parameter counts include them).

Options as in `kgan.networks.dcgan`: `num_classes` (conditional batch norm in G, projection in
D; Miyato & Koyama 2018), `self_attention` (one SAGAN block), `minibatch_std` (before D's last
block). D's penultimate feature vector (after the sum pooling) is the output of its `features`
layer.
"""

import keras
from keras import layers

from kgan.networks.dcgan import _num_doublings, check_attention, label_input
from kgan.networks.layers import (
    GlobalSumPooling2D,
    MinibatchStdDev,
    ReLU,
    SelfAttention,
    discriminator_output,
    normalize,
    spectral,
)


def num_up_blocks(image_shape):
    """Up blocks of the generator: log2(size / 4) (sizes 8..64, as DCGAN)."""
    return _num_doublings(image_shape, "ResNet")


def num_down_blocks(image_shape):
    """Downsampling blocks of the critic: max(1, log2(size) - 3) (2 at 32x32)."""
    return max(1, num_up_blocks(image_shape) - 1)


def generator_resolutions(image_shape):
    """Feature-map sizes in G: 4 (after the dense layer), then the output of every up block."""
    return tuple(4 * 2**i for i in range(num_up_blocks(image_shape) + 1))


def discriminator_resolutions(image_shape):
    """Feature-map sizes after D's blocks: size / 2 .. size / 2^num_down_blocks."""
    return tuple(image_shape[0] // 2**i for i in range(1, num_down_blocks(image_shape) + 1))


def attention_resolutions(image_shape):
    """Feature-map sizes present in both G and D, where `self_attention` may go."""
    discriminator = set(discriminator_resolutions(image_shape))
    return tuple(r for r in generator_resolutions(image_shape) if r in discriminator)


def _residual_init():
    return keras.initializers.VarianceScaling(2.0, mode="fan_avg", distribution="uniform")  # Glorot, gain sqrt 2


def _conv(filters, kernel_size, name, residual=True):
    initializer = _residual_init() if residual else "glorot_uniform"
    return layers.Conv2D(filters, kernel_size, padding="same", kernel_initializer=initializer, name=name)


def _up_block(x, filters, name, labels=None, num_classes=None):
    h = normalize(x, f"{name}_bn1", labels, num_classes)
    h = layers.ReLU(name=f"{name}_relu1")(h)
    h = layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_up")(h)
    h = _conv(filters, 3, f"{name}_conv1")(h)
    h = normalize(h, f"{name}_bn2", labels, num_classes)
    h = layers.ReLU(name=f"{name}_relu2")(h)
    h = _conv(filters, 3, f"{name}_conv2")(h)
    shortcut = layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_shortcut_up")(x)
    shortcut = _conv(filters, 1, f"{name}_shortcut", residual=False)(shortcut)
    return layers.Add(name=name)([h, shortcut])


def _down_block(x, filters, name, downsample, spectral_norm, optimized=False):
    def conv(kernel_size, suffix, residual=True):
        return spectral(_conv(filters, kernel_size, f"{name}_{suffix}", residual), spectral_norm)

    h = x if optimized else ReLU(name=f"{name}_relu1")(x)
    h = conv(3, "conv1")(h)
    h = ReLU(name=f"{name}_relu2")(h)
    h = conv(3, "conv2")(h)
    if downsample:
        h = layers.AveragePooling2D(2, name=f"{name}_pool")(h)
    shortcut = x
    if optimized:  # pool first: the 1x1 convolution then runs on a quarter of the pixels
        shortcut = layers.AveragePooling2D(2, name=f"{name}_shortcut_pool")(shortcut)
        shortcut = conv(1, "shortcut", residual=False)(shortcut)
    elif downsample or x.shape[-1] != filters:
        shortcut = conv(1, "shortcut", residual=False)(shortcut)
        if downsample:
            shortcut = layers.AveragePooling2D(2, name=f"{name}_shortcut_pool")(shortcut)
    return layers.Add(name=name)([h, shortcut])


def resnet_generator(latent_dim, image_shape, filters=256, num_classes=None, self_attention=None, name="generator"):
    """Returns the SNGAN ResNet generator: latent [B, latent_dim] -> images [B, H, W, C] in [-1, 1].

    Args:
        latent_dim: size of the latent input (SNGAN: 128).
        image_shape: (H, W, C), H = W in 8..64, C in (1, 3).
        filters: width of every block (SNGAN CIFAR-10: 256).
        num_classes: if an int, the model takes `[latent, labels]` (labels int32 [B]) and every
            batch norm is a `ConditionalBatchNormalization` (Miyato & Koyama's code keeps the
            last one unconditional; kgan conditions all of them).
        self_attention: None, or a size in `attention_resolutions(image_shape)`: one
            `SelfAttention` block (named `attention`) after the map of that size is made.

    Returns:
        A `keras.Model` with float32 output (the tanh runs in float32 under any policy).
    """
    n = num_up_blocks(image_shape)
    check_attention(self_attention, generator_resolutions(image_shape))
    inputs = keras.Input((latent_dim,), name="latent")
    labels = label_input(num_classes)
    x = layers.Dense(4 * 4 * filters, name="project")(inputs)
    x = layers.Reshape((4, 4, filters), name="reshape")(x)
    if self_attention == 4:
        x = SelfAttention(name="attention")(x)
    for i in range(n):
        x = _up_block(x, filters, f"block_{i}", labels, num_classes)
        if self_attention == 4 * 2 ** (i + 1):
            x = SelfAttention(name="attention")(x)
    x = normalize(x, "out_bn", labels, num_classes)
    x = layers.ReLU(name="out_relu")(x)
    x = _conv(image_shape[-1], 3, "to_image", residual=False)(x)
    outputs = layers.Activation("tanh", dtype="float32", name="tanh")(x)
    return keras.Model([inputs, labels] if num_classes else inputs, outputs, name=name)


def resnet_discriminator(
    image_shape,
    filters=128,
    spectral_norm=True,
    num_classes=None,
    self_attention=None,
    minibatch_std=False,
    name="discriminator",
):
    """Returns the SNGAN ResNet critic: images [B, H, W, C] -> logits [B, 1] (float32).

    Args:
        image_shape: (H, W, C), H = W in 8..64 (C: m times the images' with PacGAN's packing).
        filters: width of every block (SNGAN CIFAR-10: 128).
        spectral_norm: spectral normalisation on every convolution and dense layer (SNGAN). The
            critic has no batch norm, so it suits per-example gradient penalties either way.
        num_classes: if an int, the model takes `[images, labels]` (labels int32 [B]) and ends
            with a projection head (Miyato & Koyama 2018) on the pooled features.
        self_attention: None, or a size in `attention_resolutions(image_shape)`: one
            `SelfAttention` block (named `attention`) after the first block whose output has
            that size.
        minibatch_std: insert `MinibatchStdDev` (named `minibatch_std`) before the last block
            (whose shortcut then becomes a learned 1x1 convolution: C + 1 -> C channels).
    """
    downs = num_down_blocks(image_shape)
    check_attention(self_attention, discriminator_resolutions(image_shape))
    inputs = keras.Input(image_shape, name="images")
    labels = label_input(num_classes)
    x = inputs
    attended = self_attention is None
    blocks = downs + 2
    for i in range(blocks):
        if minibatch_std and i == blocks - 1:
            x = MinibatchStdDev(name="minibatch_std")(x)
        x = _down_block(x, filters, f"block_{i}", downsample=i < downs, spectral_norm=spectral_norm, optimized=i == 0)
        if not attended and x.shape[1] == self_attention:
            x = SelfAttention(spectral_norm=spectral_norm, name="attention")(x)
            attended = True
    x = ReLU(name="relu")(x)
    x = GlobalSumPooling2D(name="sum_pool")(x)
    outputs = discriminator_output(x, labels, num_classes, spectral_norm)
    return keras.Model([inputs, labels] if num_classes else inputs, outputs, name=name)
