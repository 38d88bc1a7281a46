"""Keras callbacks for GAN training: sample pictures to TensorBoard."""

import os

import keras
import numpy as np
import tensorflow as tf

from kgan import plots


class SampleGrid(keras.callbacks.Callback):
    """Writes a picture of generated samples to TensorBoard at the end of every `every` epochs.

    The latent batch is fixed when training starts, so pictures are comparable across epochs.
    Images are tiled into an 8-column grid; 2-D points are drawn as a scatter plot over
    `reference` points.

    Args:
        logdir: TensorBoard directory of the run; pictures go to `<logdir>/samples`.
        num_samples: samples in each picture (64 for an 8x8 grid; points: e.g. 1000).
        every: epochs between pictures.
        seed: seed of the fixed latent batch.
        reference: optional real points [N, 2] drawn under 2-D samples.
    """

    def __init__(self, logdir, num_samples=64, every=1, seed=0, reference=None):
        super().__init__()
        self.logdir = os.path.join(logdir, "samples")
        self.num_samples = num_samples
        self.every = every
        self.seed = seed
        self.reference = reference
        self._writer = None
        self._latent = None

    def on_train_begin(self, logs=None):
        self._writer = tf.summary.create_file_writer(self.logdir)
        self._latent = keras.random.normal((self.num_samples, self.model.latent_dim), seed=self.seed)

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        samples = np.asarray(self.model.generator(self._latent, training=False), dtype="float32")
        picture = plots.sample_picture(samples, self.reference, title=f"epoch {epoch + 1}")
        # record_if(True): Keras' TensorBoard callback leaves a step-based record_if condition
        # active during training that would otherwise drop this summary.
        with self._writer.as_default(), tf.summary.record_if(True):
            tf.summary.image("samples", picture[None], step=epoch + 1)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
