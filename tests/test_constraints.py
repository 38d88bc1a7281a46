import keras
import numpy as np
import pytest

from kgan import constraints, gan, networks


def test_weight_clip_clips_and_serialises():
    clip = constraints.WeightClip(0.05)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(clip(np.array([-1.0, 0.01, 0.2]))), [-0.05, 0.01, 0.05])
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(clip))
    assert isinstance(restored, constraints.WeightClip) and restored.clip_value == 0.05
    assert constraints.WeightClip.from_config(clip.get_config()).clip_value == 0.05


@pytest.mark.parametrize("bad", [0, -0.1, "x", None])
def test_weight_clip_rejects_non_positive(bad):
    with pytest.raises(ValueError, match="positive"):
        constraints.WeightClip(bad)


def test_after_a_training_step_d_weights_are_clipped_and_g_weights_are_not():
    keras.utils.set_random_seed(0)
    generator, discriminator = networks.build((8, 8, 1), 16)
    model = gan.GAN(generator, discriminator, seed=0)
    c = 0.01
    model.compile(
        keras.optimizers.Adam(0.5), keras.optimizers.Adam(0.5), loss="wasserstein", weight_clip=c
    )
    data = np.random.default_rng(0).uniform(-1, 1, (32, 8, 8, 1)).astype("float32")
    model.fit(data, batch_size=16, epochs=1, verbose=0, shuffle=False)
    d_max = max(float(np.max(np.abs(v.numpy()))) for v in discriminator.trainable_variables)
    g_max = max(float(np.max(np.abs(v.numpy()))) for v in generator.trainable_variables)
    assert d_max <= c + 1e-7
    assert d_max > c / 2  # the huge learning rate pushed weights to the bound: clipping did work
    assert g_max > 10 * c
    assert all(isinstance(v.constraint, constraints.WeightClip) for v in discriminator.trainable_variables)
