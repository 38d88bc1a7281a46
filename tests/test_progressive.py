"""kgan.progressive (the curriculum) and kgan.networks.progressive (the progressive DCGAN pair).

Values are checked against hand-computed schedules, NumPy pooling / upsampling, the DCGAN pair
itself (same weights, same outputs at the last phase) and hand-counted parameters; a GAN trained
with the callback, checkpointed mid-fade and restored ends with the uninterrupted run's weights.
"""

import keras
import numpy as np
import pytest

from kgan import checkpoint, gan
from kgan.networks import dcgan
from kgan.networks.progressive import Fade, num_phases, progressive_discriminator, progressive_generator
from kgan.progressive import Curriculum, ProgressiveCallback

LATENT = 8


def _pair(size=32, channels=3, base=4, batch_norm=True, spectral_norm=False, seed=0, **schedule):
    keras.utils.set_random_seed(seed)
    shape = (size, size, channels)
    curriculum = Curriculum(num_phases(shape), **{"steps_per_phase": 10, "fade_steps": 4, **schedule})
    generator = progressive_generator(LATENT, shape, curriculum, base_filters=base)
    discriminator = progressive_discriminator(shape, curriculum, base_filters=base, batch_norm=batch_norm,
                                              spectral_norm=spectral_norm)
    return curriculum, generator, discriminator


def _latents(n=3):
    return np.random.default_rng(0).normal(size=(n, LATENT)).astype("float32")


def _images(n=3, size=32, channels=3):
    """Images whose values are multiples of 2^-7 in [-1, 1): every 2x2 average of them, and of
    those, is exact in float32, so pooling an upsampled pooled image gives back the same bits."""
    return (np.random.default_rng(1).integers(-128, 128, size=(n, size, size, channels)) / 128).astype("float32")


def _pool(x, factor):
    b, h, w, c = x.shape
    return x.reshape(b, h // factor, factor, w // factor, factor, c).mean(axis=(2, 4))


def _upsample(x, factor):
    return x.repeat(factor, axis=1).repeat(factor, axis=2)


# ----------------------------------------------------------------------------------------------
# The schedule.


def test_schedule_matches_hand_computed_phases_and_fades():
    curriculum = Curriculum(num_phases=3, steps_per_phase=10, fade_steps=4)
    expected = {
        0: (0, 1.0), 9: (0, 1.0),                                   # phase 0: nothing to fade from
        10: (1, 0.0), 11: (1, 0.25), 13: (1, 0.75), 14: (1, 1.0), 19: (1, 1.0),  # fade, then stabilise
        20: (2, 0.0), 22: (2, 0.5), 24: (2, 1.0), 29: (2, 1.0),
        30: (2, 1.0), 1000: (2, 1.0),                               # the last phase lasts the rest of training
    }
    for step, (phase, alpha) in expected.items():
        assert curriculum.state(step) == (phase, alpha), step
    assert Curriculum(3, 5, 0).state(5) == (1, 1.0)  # no fade: switch at once
    assert Curriculum(3, 5, 5).state(9) == (1, 0.8)  # fade over the whole phase
    assert Curriculum(1, 5, 0).state(10**6) == (0, 1.0)

    assert curriculum.set_step(12) == (1, 0.5)
    assert int(curriculum.phase.numpy()) == 1 and float(curriculum.alpha.numpy()) == 0.5
    assert not curriculum.phase.trainable and not curriculum.alpha.trainable
    assert curriculum.phase.dtype == "int32" and curriculum.alpha.dtype == "float32"
    assert Curriculum.from_config(curriculum.get_config()).state(12) == (1, 0.5)
    for bad in [(0, 10, 0), (3, 0, 0), (3, 10, 11), (3, 10, -1)]:
        with pytest.raises(ValueError):
            Curriculum(*bad)
    with pytest.raises(ValueError, match="a 32x32 image has 4 phases"):
        progressive_generator(LATENT, (32, 32, 3), Curriculum(3, 10, 4))


# ----------------------------------------------------------------------------------------------
# The networks.


def test_generator_at_phase_k_has_resolution_4_2k_at_full_shape_and_fades_linearly():
    curriculum, generator, _ = _pair(size=32)
    n = 3
    # toRGB outputs of every resolution (rgb_n is DCGAN's own output layer, "tanh").
    rgb_model = keras.Model(generator.input, [generator.get_layer(f"to_rgb_{r}_tanh").output for r in range(n)]
                            + [generator.get_layer("tanh").output])
    z = _latents()
    rgb = [np.asarray(x) for x in rgb_model(z, training=False)]
    for k in range(n + 1):
        curriculum.set_state(k, 1.0)
        images = generator(z, training=False).numpy()
        assert images.shape == (3, 32, 32, 3) and images.dtype == np.float32
        assert images.min() >= -1 and images.max() <= 1
        block = 2 ** (n - k)
        # Constant over block x block squares: effective resolution 4 * 2^k, and it IS rgb_k upsampled.
        np.testing.assert_array_equal(images, _upsample(images[:, ::block, ::block], block))
        np.testing.assert_array_equal(images, _upsample(rgb[k], block))
        if k < n:  # ... and not constant over larger squares (the resolution is not lower)
            assert np.abs(images - _upsample(images[:, :: 2 * block, :: 2 * block], 2 * block)).max() > 1e-3
        if k > 0:  # the fade-in: lerp(upsample2(rgb_{k-1}), rgb_k, alpha), upsampled to H x H
            for alpha in (0.25, 0.5):
                curriculum.set_state(k, alpha)
                expected = _upsample((1 - alpha) * _upsample(rgb[k - 1], 2) + alpha * rgb[k], block)
                np.testing.assert_allclose(generator(z, training=False).numpy(), expected, atol=1e-6)


def test_fade_in_is_continuous_alpha_0_at_phase_k_equals_phase_k_minus_1():
    curriculum, generator, discriminator = _pair(size=32)
    z, images = _latents(), _images()
    for k in range(1, 4):
        outputs = {}
        for phase, alpha in [(k, 0.0), (k - 1, 1.0)]:
            curriculum.set_state(phase, alpha)
            outputs[phase] = (generator(z, training=False).numpy(), discriminator(images, training=False).numpy())
        np.testing.assert_array_equal(outputs[k][0], outputs[k - 1][0])  # exactly: bit for bit
        np.testing.assert_array_equal(outputs[k][1], outputs[k - 1][1])
    # The check can fail: halfway through the fade, both networks differ from the previous phase.
    curriculum.set_state(3, 0.5)
    assert np.abs(generator(z, training=False).numpy() - outputs[2][0]).max() > 1e-3
    assert np.abs(discriminator(images, training=False).numpy() - outputs[2][1]).max() > 1e-5


@pytest.mark.parametrize("training", [False, True])
def test_discriminator_at_phase_k_sees_only_that_resolution(training):
    curriculum, _, discriminator = _pair(size=32)
    images = _images(n=4)
    for k in range(4):
        factor = 2 ** (3 - k)
        coarse = _upsample(_pool(images, factor), factor)  # what D can see at phase k
        coarser = _upsample(_pool(images, 2 * factor), 2 * factor)
        for alpha in (1.0, 0.5):
            curriculum.set_state(k, alpha)
            logits = discriminator(images, training=training).numpy()
            assert logits.shape == (4, 1) and logits.dtype == np.float32
            np.testing.assert_array_equal(discriminator(coarse, training=training).numpy(), logits)
            if k > 0 and alpha == 1.0:  # it does see that resolution: the next coarser image differs
                assert np.abs(discriminator(coarser, training=training).numpy() - logits).max() > 1e-5


def test_last_phase_is_exactly_the_dcgan_pair_plus_to_rgb_and_from_rgb_layers():
    shape = (16, 16, 3)
    curriculum, generator, discriminator = _pair(size=16, base=8)
    keras.utils.set_random_seed(1)
    reference_g = dcgan.dcgan_generator(LATENT, shape, base_filters=8)
    reference_d = dcgan.dcgan_discriminator(shape, base_filters=8)
    # Parameters by hand (latent 8, 16x16x3, base 8: n = 2, widths 16 at 4x4, 8 at 8x8).
    dcgan_g = (8 * 4 * 4 * 16                     # project (no bias)
               + 4 * 4 * 4 * 16                   # project_bn: gamma, beta, moving mean, moving variance
               + 4 * 4 * 16 * 8 + 4 * 8           # up_0 (no bias) + up_0_bn
               + 4 * 4 * 8 * 3 + 3)               # to_image
    to_rgb = (16 * 3 + 3) + (8 * 3 + 3)           # 1x1 convolutions at 4x4 and 8x8
    dcgan_d = (4 * 4 * 3 * 8 + 8                  # down_0
               + 4 * 4 * 8 * 16 + 4 * 16          # down_1 (no bias) + down_1_bn
               + 4 * 4 * 16 + 1)                  # logits
    from_rgb = (3 * 8 + 8) + (3 * 16 + 16)        # 1x1 convolutions at 8x8 and 4x4
    curriculum_variables = 2                      # phase and alpha, shared
    assert (dcgan_g, dcgan_d) == (5539, 2761)
    assert reference_g.count_params() == dcgan_g and reference_d.count_params() == dcgan_d
    assert generator.count_params() == dcgan_g + to_rgb + curriculum_variables == 5619
    assert discriminator.count_params() == dcgan_d + from_rgb + curriculum_variables == 2859
    # Same layers, same names and shapes; with the same weights the last phase computes DCGAN exactly.
    for progressive, reference in [(generator, reference_g), (discriminator, reference_d)]:
        for layer in reference.layers:
            target = progressive.get_layer(layer.name)
            assert [w.shape for w in target.weights] == [w.shape for w in layer.weights], layer.name
            target.set_weights(layer.get_weights())
    assert discriminator.get_layer("features").output.shape == (None, 4 * 4 * 16)
    curriculum.set_state(2, 1.0)
    z, images = _latents(), _images(size=16)
    np.testing.assert_array_equal(generator(z, training=False).numpy(), reference_g(z, training=False).numpy())
    np.testing.assert_array_equal(discriminator(images, training=False).numpy(),
                                  reference_d(images, training=False).numpy())
    np.testing.assert_array_equal(discriminator(images, training=True).numpy(),
                                  reference_d(images, training=True).numpy())


def test_shared_curriculum_is_stored_once_and_layers_serialise():
    curriculum, generator, discriminator = _pair(size=16, base=4)
    shared = [w for w in generator.weights if w is curriculum.phase] + [w for w in discriminator.weights
                                                                        if w is curriculum.phase]
    assert len(shared) == 2  # both networks track the one variable
    assert Fade.from_config(Fade(2, name="f").get_config()).index == 2
    restored = keras.Model.from_config(generator.get_config())
    restored.set_weights(generator.get_weights())
    restored.get_layer("curriculum").set_state(1, 0.5)
    curriculum.set_state(1, 0.5)
    z = _latents()
    np.testing.assert_array_equal(restored(z, training=False).numpy(), generator(z, training=False).numpy())


@pytest.mark.parametrize("spectral_norm", [False, True])
def test_mixed_bfloat16_outputs_float32_and_fades_continuously(spectral_norm):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        curriculum, generator, discriminator = _pair(size=16, base=4, spectral_norm=spectral_norm)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    wrapped = sum(isinstance(layer, keras.layers.SpectralNormalization) for layer in discriminator.layers)
    batch_norms = sum(isinstance(layer, keras.layers.BatchNormalization) for layer in discriminator.layers)
    # 16x16: down_0, down_1, from_rgb_1, from_rgb_0 and logits wrapped; else DCGAN's one batch norm.
    assert (wrapped, batch_norms) == ((5, 0) if spectral_norm else (0, 1))
    z = _latents()
    outputs = []
    for phase, alpha in [(1, 0.0), (0, 1.0)]:
        curriculum.set_state(phase, alpha)
        images = generator(z, training=False)
        logits = discriminator(images, training=False)
        assert images.dtype == "float32" and logits.dtype == "float32"
        outputs.append((images.numpy(), logits.numpy()))
    np.testing.assert_array_equal(outputs[0][0], outputs[1][0])
    np.testing.assert_array_equal(outputs[0][1], outputs[1][1])
    np.testing.assert_array_equal(outputs[1][0], _upsample(outputs[1][0][:, ::4, ::4], 4))  # 4x4 at phase 0


# ----------------------------------------------------------------------------------------------
# Training: the callback, gating, checkpoint and resume.

STEPS_PER_EPOCH, BATCH = 2, 4


def _gan(seed):
    # 16x16: phases 4, 8, 16; 3 steps per phase, the first 2 of phases 1 and 2 fading in.
    curriculum, generator, discriminator = _pair(size=16, channels=1, base=4, seed=seed,
                                                 steps_per_phase=3, fade_steps=2)
    model = gan.GAN(generator, discriminator, seed=0)
    model.compile(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-3))
    return model, curriculum


def _data():
    rng = np.random.default_rng(2)
    smooth = _upsample(rng.uniform(-1, 1, size=(STEPS_PER_EPOCH * BATCH, 4, 4, 1)), 4)
    return np.clip(smooth + 0.1 * rng.normal(size=smooth.shape), -1, 1).astype("float32")


def _weights(model):
    """Every variable of the GAN (networks, curriculum) and of its two optimizers, by path."""
    variables = {f"generator/{v.path}": v for v in model.generator.weights}
    variables.update({f"discriminator/{v.path}": v for v in model.discriminator.weights})
    # (optimizer variable paths carry the optimizer's unique name: key them by position)
    variables.update({f"d_optimizer/{i}": v for i, v in enumerate(model.d_optimizer.variables)})
    variables.update({f"g_optimizer/{i}": v for i, v in enumerate(model.g_optimizer.variables)})
    return {path: np.array(v.numpy()) for path, v in variables.items()}


def _scalars(logdir, tag):
    """The values of scalar `tag` in the TensorBoard event files of `logdir`, in step order."""
    import tensorflow as tf

    found = []
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            found += [(event.step, float(tf.make_ndarray(v.tensor))) for v in event.summary.value if v.tag == tag]
    return [value for _, value in sorted(found)]


def _fit(model, curriculum, epochs, initial_epoch=0, callbacks=()):
    return model.fit(_data(), batch_size=BATCH, epochs=epochs, initial_epoch=initial_epoch, shuffle=False,
                     verbose=0, callbacks=[ProgressiveCallback(curriculum), *callbacks])


def test_gan_follows_the_curriculum_and_resumes_mid_fade_from_a_checkpoint(tmp_path):
    # Uninterrupted: 4 epochs of 2 steps. Steps 0-2 phase 0; 3, 4, 5 phase 1 (alpha 0, 0.5, 1);
    # 6, 7 phase 2 (alpha 0, 0.5). Checkpoints after epochs 2 and 4 (kgan.checkpoint, as `kgan train`).
    model, curriculum = _gan(seed=0)
    snapshots = {-1: _weights(model)}
    keep = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: snapshots.__setitem__(epoch, _weights(model)))
    checkpoints = checkpoint.Checkpoints(str(tmp_path / "checkpoints"))
    save = checkpoint.CheckpointCallback(checkpoints, every=2)
    board = keras.callbacks.TensorBoard(str(tmp_path / "logs"), write_graph=False)  # after the curriculum's
    history = _fit(model, curriculum, epochs=4, callbacks=[keep, save, board]).history
    # The epoch logs carry the state of each epoch's last step (steps 1, 3, 5, 7), and reach TensorBoard.
    assert history["phase"] == [0.0, 1.0, 1.0, 2.0]
    assert history["alpha"] == [1.0, 0.0, 1.0, 0.5]
    assert _scalars(tmp_path / "logs" / "train", "epoch_phase") == [0.0, 1.0, 1.0, 2.0]
    assert _scalars(tmp_path / "logs" / "train", "epoch_alpha") == [1.0, 0.0, 1.0, 0.5]
    # Phase 0 (the first epoch): only the 4x4 path trains. Adam with zero gradients leaves
    # the higher-resolution layers exactly as initialised.
    initial, after_first_epoch = snapshots[-1], snapshots[0]
    for name in ("generator/up_0/kernel", "generator/to_image/kernel", "generator/to_rgb_1/kernel",
                 "discriminator/down_0/kernel", "discriminator/down_1/kernel", "discriminator/from_rgb_1/kernel"):
        np.testing.assert_array_equal(after_first_epoch[name], initial[name], err_msg=name)
    for name in ("generator/project/kernel", "generator/to_rgb_0/kernel", "discriminator/from_rgb_0/kernel",
                 "discriminator/logits/kernel"):
        assert np.abs(after_first_epoch[name] - initial[name]).max() > 1e-5, name
    uninterrupted = _weights(model)

    # The checkpoint after epoch 2 (4 steps: the next step is phase 1 at alpha 0.5), restored
    # into a fresh model (other initial weights) with a fresh callback, trained on.
    assert [epoch for epoch, _ in checkpoints.list()] == [2, 4]
    fresh, fresh_curriculum = _gan(seed=5)
    assert (int(fresh_curriculum.phase.numpy()), float(fresh_curriculum.alpha.numpy())) == (0, 1.0)
    state = checkpoints.restore(fresh, checkpoints.list()[0][1])
    assert state["step"] == 4 and fresh_curriculum.state(state["step"]) == (1, 0.5)
    saved, restored = snapshots[1], _weights(fresh)
    assert restored.keys() == saved.keys()
    for name in saved:  # phase / alpha / weights / optimizer slots, identical after restoring
        np.testing.assert_array_equal(restored[name], saved[name], err_msg=name)
    assert (int(fresh_curriculum.phase.numpy()), float(fresh_curriculum.alpha.numpy())) == (1, 0.0)
    phases = []
    probe = keras.callbacks.LambdaCallback(on_train_batch_begin=lambda batch, logs: phases.append(
        (int(fresh_curriculum.phase.numpy()), float(fresh_curriculum.alpha.numpy()))))
    history = _fit(fresh, fresh_curriculum, epochs=4, initial_epoch=2, callbacks=[probe]).history
    assert phases == [(1, 0.5), (1, 1.0), (2, 0.0), (2, 0.5)]
    assert history["phase"] == [1.0, 2.0] and history["alpha"] == [1.0, 0.5]
    resumed = _weights(fresh)
    difference = max(float(np.abs(resumed[k].astype("float64") - uninterrupted[k]).max()) for k in uninterrupted)
    print(f"progressive resume: max abs weight difference vs uninterrupted = {difference:g}")
    assert difference <= 1e-6


# ----------------------------------------------------------------------------------------------
# Two replicas equal one (a subprocess: the CPU must be split before TensorFlow initialises).


def _replicas_main():
    import json

    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from kgan import distribute

    images = np.clip(np.random.default_rng(0).normal(size=(32, 16, 16, 1)), -1, 1).astype("float32")

    def train(strategy):
        with strategy.scope():
            model, curriculum = _gan(seed=0)  # 3 phases of 3 steps, 2 fading
            distribute.synchronize_batch_norm(model.generator)  # global batch statistics
            distribute.synchronize_batch_norm(model.discriminator)
        data = tf.data.Dataset.from_tensor_slices(images).batch(8, drop_remainder=True)
        history = model.fit(data, epochs=2, verbose=0, callbacks=[ProgressiveCallback(curriculum)]).history
        return _weights(model), history

    one, history_one = train(tf.distribute.get_strategy())
    two, history_two = train(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    difference = max(float(np.abs(one[k].astype("float64") - two[k]).max()) for k in one)
    print(json.dumps({"difference": difference, "one": history_one, "two": history_two}))


@pytest.mark.slow
def test_two_replicas_train_through_the_curriculum_like_one():
    import json
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-m", "tests.test_progressive"], cwd=root, capture_output=True, text=True,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES=""), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"progressive, 2 replicas vs 1: max abs weight difference = {result['difference']:g}")
    # 8 steps: phase 0 (steps 0-2), 1 (3-5, fading at 3, 4), 2 (6, 7 fading).
    assert result["one"]["phase"] == result["two"]["phase"] == [1.0, 2.0]
    assert result["one"]["alpha"] == result["two"]["alpha"] == [0.0, 0.5]
    assert result["difference"] <= 1e-5
    np.testing.assert_allclose(result["two"]["d_loss"], result["one"]["d_loss"], rtol=1e-5)


if __name__ == "__main__":
    _replicas_main()
