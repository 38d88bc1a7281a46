"""Generator / discriminator builders: an MLP pair for vectors, DCGAN or SNGAN-ResNet pairs for images.

`build` picks and configures a pair; the per-architecture builders and the toolbox layers
(`ConditionalBatchNormalization`, `SelfAttention`, `MinibatchStdDev`, `GlobalSumPooling2D`, and
the discriminators' `LeakyReLU` / `ReLU`, cheaper under a gradient penalty) are public too.
Every discriminator has a `keras.layers.Identity` layer named `features` whose output is its
penultimate feature vector [B, F] (what feature matching compares).
"""

from kgan.names import ARCHS, IMAGE_ARCHS
from kgan.networks import dcgan, resnet
from kgan.networks.dcgan import dcgan_discriminator, dcgan_generator
from kgan.networks.layers import (
    FEATURES_LAYER,
    ConditionalBatchNormalization,
    GlobalSumPooling2D,
    LeakyReLU,
    Maxout,
    MinibatchStdDev,
    ReLU,
    SelfAttention,
)
from kgan.networks.mlp import PACGAN_INIT, mlp_discriminator, mlp_generator, pacgan_pair
from kgan.networks.resnet import resnet_discriminator, resnet_generator


def _check_arch(arch):
    if arch not in ARCHS:
        raise ValueError(f"Unknown arch {arch!r}: choose one of {', '.join(ARCHS)}")


def attention_resolutions(image_shape, arch="dcgan"):
    """Feature-map sizes where `build(..., self_attention=...)` can put its block (in G and D).

    DCGAN: 4 .. size / 2. ResNet: the sizes both G (4 .. size) and D (size / 2 .. its last
    map) produce, e.g. (8, 16) at 32x32.
    """
    _check_arch(arch)
    if arch == "pacgan":
        raise ValueError("arch='pacgan' is PacGAN's MLP pair for 2-D points: images take dcgan or resnet")
    return (dcgan if arch == "dcgan" else resnet).attention_resolutions(tuple(image_shape))


def packed_shape(data_shape, pack=1):
    """The shape of a PacGAN-packed example of `pack` samples of shape `data_shape`: the last
    axis (features of points, channels of images) `pack` times longer."""
    data_shape = tuple(data_shape)
    return (*data_shape[:-1], data_shape[-1] * int(pack))


def build(
    data_shape,
    latent_dim,
    batch_norm=True,
    spectral_norm=None,
    arch="dcgan",
    self_attention=None,
    minibatch_std=False,
    num_classes=None,
    pack=1,
):
    """Returns `(generator, discriminator)` suited to data of shape `data_shape` (no batch axis).

    Vectors ([D]) get the MLP pair; images ([H, W, C]) the pair named by `arch`.

    Args:
        data_shape: shape of one example, (D,) or (H, W, C).
        latent_dim: size of the generator's input.
        batch_norm: batch norm in the DCGAN discriminator (turn off with a gradient penalty).
            The MLP and ResNet discriminators have none.
        spectral_norm: spectral normalisation in the discriminator. None (the default): on for
            `arch="resnet"` (SNGAN's critic is spectrally normalised; it has no batch norm, so
            it suits a gradient penalty too), off for DCGAN and MLP. True / False force it.
        arch: "dcgan" (Radford et al. 2016) or "resnet" (SNGAN, Miyato et al. 2018) for images.
            Vectors get the MLP pair: with "dcgan" (the default) its LeakyReLU discriminator,
            with "pacgan" PacGAN's own maxout discriminator and N(0, 0.02) initialisation
            (`kgan.networks.mlp`); "resnet" on vectors and "pacgan" on images are errors.
        self_attention: None, or a feature-map size (see `attention_resolutions`) where one
            SAGAN `SelfAttention` block goes in both G and D.
        minibatch_std: ProGAN's minibatch standard deviation in D (before its last convolution
            stage; for the MLP, one extra feature before the output layer). Like batch norm it
            mixes the examples of a batch, so a per-example gradient penalty also sees the
            other examples through it (ProGAN trains it with WGAN-GP all the same).
        num_classes: None, or the number of classes for a conditional pair: G takes
            `[latent, labels]` and uses class-conditional batch norm, D takes
            `[images, labels]` and is a projection discriminator (labels int32 [B], input
            name "labels"). Not available for the MLP pair.
        pack: PacGAN's m (int >= 1): D takes packed examples of `pack` samples,
            `packed_shape(data_shape, pack)` (see `kgan.techniques.Packing`); G is unchanged.

    Returns:
        `(generator, discriminator)`: G outputs float32 (tanh in [-1, 1] for images, linear for
        vectors); D outputs float32 logits [B, 1].

    Raises:
        ValueError: an unsupported shape, an unknown `arch`, a resolution that does not occur,
            or an option the MLP pair lacks.
    """
    data_shape = tuple(data_shape)
    _check_arch(arch)
    if num_classes is not None and (isinstance(num_classes, bool) or int(num_classes) < 1):
        raise ValueError(f"num_classes must be None or an int >= 1; got {num_classes!r}")
    if len(data_shape) == 1:
        if arch == "resnet":
            raise ValueError(f"arch='resnet' takes images (H, W, C); data of shape {data_shape} gets the MLP pair")
        if num_classes:
            raise ValueError("Conditional networks (num_classes) are not available for vector data (the MLP pair)")
        if self_attention is not None:
            raise ValueError("self_attention needs feature maps: not available for vector data (the MLP pair)")
        if arch == "pacgan":
            return pacgan_pair(latent_dim, data_shape[0], pack=pack, spectral_norm=bool(spectral_norm),
                               minibatch_std=minibatch_std)
        return (
            mlp_generator(latent_dim, data_shape[0]),
            mlp_discriminator(data_shape[0] * int(pack), spectral_norm=bool(spectral_norm),
                              minibatch_std=minibatch_std),
        )
    if len(data_shape) == 3:
        if data_shape[-1] not in (1, 3):  # the images; D's packed examples have m times their channels
            raise ValueError(f"image networks take 1 or 3 channels; got {data_shape[-1]}")
        valid = attention_resolutions(data_shape, arch)
        dcgan.check_attention(self_attention, valid)
        options = dict(num_classes=num_classes, self_attention=self_attention)
        if arch == "resnet":
            return (
                resnet_generator(latent_dim, data_shape, **options),
                resnet_discriminator(
                    packed_shape(data_shape, pack),
                    spectral_norm=True if spectral_norm is None else spectral_norm,
                    minibatch_std=minibatch_std,
                    **options,
                ),
            )
        return (
            dcgan_generator(latent_dim, data_shape, **options),
            dcgan_discriminator(
                packed_shape(data_shape, pack),
                batch_norm=batch_norm,
                spectral_norm=bool(spectral_norm),
                minibatch_std=minibatch_std,
                **options,
            ),
        )
    raise ValueError(f"No network builder for data of shape {data_shape}: expected (D,) or (H, W, C)")


__all__ = [
    "ARCHS",
    "IMAGE_ARCHS",
    "PACGAN_INIT",
    "FEATURES_LAYER",
    "ConditionalBatchNormalization",
    "GlobalSumPooling2D",
    "LeakyReLU",
    "Maxout",
    "MinibatchStdDev",
    "ReLU",
    "SelfAttention",
    "attention_resolutions",
    "build",
    "dcgan_discriminator",
    "dcgan_generator",
    "mlp_discriminator",
    "mlp_generator",
    "pacgan_pair",
    "packed_shape",
    "resnet_discriminator",
    "resnet_generator",
]
