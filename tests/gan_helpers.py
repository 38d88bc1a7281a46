"""Small GANs, data and readers shared by several test modules (not a test module)."""

import glob
import os

import keras
import numpy as np

from kgan import gan, networks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGES = np.random.default_rng(0).uniform(-1, 1, (32, 8, 8, 1)).astype("float32")
LABELS = np.random.default_rng(1).integers(0, 10, 32).astype("int32")
POINTS = np.random.default_rng(2).normal(size=(16, 2)).astype("float32")


def mlp_pair(latent=3, dim=2, batch_norm=False):
    generator = networks.mlp_generator(latent, dim, units=8, num_layers=2, batch_norm=batch_norm)
    discriminator = networks.mlp_discriminator(dim, units=8, num_layers=2)
    return generator, discriminator


def image_gan(lr=1e-3, penalty=None, optimizer=keras.optimizers.Adam, num_classes=None, **options):
    keras.utils.set_random_seed(0)
    generator, discriminator = networks.build((8, 8, 1), 16, batch_norm=penalty is None, num_classes=num_classes)
    model = gan.GAN(generator, discriminator, seed=0, num_classes=num_classes, **options)
    model.compile(optimizer(lr), optimizer(lr), loss="non_saturating", penalty=penalty)
    return model


def weights(model):
    return [np.array(v.numpy()) for v in model.generator.weights + model.discriminator.weights]


def assert_bit_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def read_scalars(directory):
    """{tag: [(step, value), ...]} of the scalar events in every TensorBoard event file under `directory`."""
    import tensorflow as tf

    scalars = {}
    for path in sorted(glob.glob(os.path.join(directory, "events.out.tfevents.*"))):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.HasField("tensor") and value.metadata.plugin_data.plugin_name == "scalars":
                    scalars.setdefault(value.tag, []).append((event.step, float(tf.make_ndarray(value.tensor))))
                elif value.HasField("simple_value"):
                    scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars
