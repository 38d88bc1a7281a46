"""Generator / discriminator builders: an MLP pair for vectors, a DCGAN pair for images."""

from kgan.networks.dcgan import dcgan_discriminator, dcgan_generator
from kgan.networks.mlp import mlp_discriminator, mlp_generator


def build(data_shape, latent_dim, batch_norm=True, spectral_norm=False):
    """Returns `(generator, discriminator)` suited to data of shape `data_shape` (no batch axis).

    Vectors ([D]) get the MLP pair; images ([H, W, C]) the DCGAN pair.

    Args:
        data_shape: shape of one example, (D,) or (H, W, C).
        latent_dim: size of the generator's input.
        batch_norm: batch norm in the discriminator (turn off with a gradient penalty).
        spectral_norm: spectral normalisation in the discriminator.
    """
    data_shape = tuple(data_shape)
    if len(data_shape) == 1:
        return (
            mlp_generator(latent_dim, data_shape[0]),
            mlp_discriminator(data_shape[0], spectral_norm=spectral_norm),
        )
    if len(data_shape) == 3:
        return (
            dcgan_generator(latent_dim, data_shape),
            dcgan_discriminator(data_shape, batch_norm=batch_norm, spectral_norm=spectral_norm),
        )
    raise ValueError(f"No network builder for data of shape {data_shape}: expected (D,) or (H, W, C)")


__all__ = ["build", "dcgan_discriminator", "dcgan_generator", "mlp_discriminator", "mlp_generator"]
