"""GAN.train_step: every loss x penalty x clipping combination, learning, and the model API."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kgan import gan, losses, networks, penalties, seeds
from kgan.networks import mlp_discriminator, mlp_generator


def tiny_gan(loss="non_saturating", penalty=None, clip=None, d_steps=1, instance_noise=0.0, lr=1e-3):
    keras.utils.set_random_seed(0)
    generator, discriminator = networks.build((8, 8, 1), 16, batch_norm=penalty is None)
    model = gan.GAN(generator, discriminator, d_steps=d_steps, instance_noise=instance_noise, seed=0)
    model.compile(keras.optimizers.Adam(lr), keras.optimizers.Adam(lr), loss=loss, penalty=penalty, weight_clip=clip)
    return model


IMAGES = np.random.default_rng(0).uniform(-1, 1, (32, 8, 8, 1)).astype("float32")


@pytest.mark.parametrize("clip", [None, 0.01])
@pytest.mark.parametrize("penalty", [None, "gp"])
@pytest.mark.parametrize("loss", losses.NAMES)
def test_one_fit_step_for_every_combination(loss, penalty, clip):
    model = tiny_gan(loss, penalties.GradientPenalty(10.0, seed=0) if penalty else None, clip)
    d_before = [v.numpy().copy() for v in model.discriminator.trainable_variables]
    g_before = [v.numpy().copy() for v in model.generator.trainable_variables]
    history = model.fit(IMAGES, batch_size=32, epochs=1, verbose=0, shuffle=False).history
    expected_keys = {"d_loss", "g_loss"} | ({"penalty"} if penalty else set())
    assert set(history) == expected_keys
    assert all(np.isfinite(v[0]) for v in history.values())
    if penalty:
        assert history["penalty"][0] > 0
    assert int(model.d_optimizer.iterations) == 1 and int(model.g_optimizer.iterations) == 1
    assert any(not np.allclose(a, b.numpy()) for a, b in zip(d_before, model.discriminator.trainable_variables, strict=True))
    assert any(not np.allclose(a, b.numpy()) for a, b in zip(g_before, model.generator.trainable_variables, strict=True))
    if clip:
        assert max(float(np.abs(v.numpy()).max()) for v in model.discriminator.trainable_variables) <= clip + 1e-7


def test_logged_d_loss_is_the_loss_of_the_batch():
    # With lr 0 nothing moves, so the logged d_loss must equal the loss recomputed by hand.
    model = tiny_gan("minkowski", lr=0.0)
    model.fit(IMAGES, batch_size=32, epochs=1, verbose=0, shuffle=False)
    # Re-draw the same noise: a fresh seed generator with the model's seed.
    z = keras.random.normal((32, 16), seed=seeds.seed_generator(0, "latent"))
    fake = model.generator(z, training=True)
    expected = np.mean(losses.Minkowski().discriminator_loss(model.discriminator(IMAGES, training=True), model.discriminator(fake, training=True)))
    np.testing.assert_allclose(float(model.d_loss_tracker.result()), float(expected), rtol=1e-4)


def test_gradient_norms_are_the_global_norms_of_the_batch_gradients():
    # lr 0: the networks do not move, so the logged norms can be recomputed by hand.
    keras.utils.set_random_seed(0)
    generator, discriminator = networks.build((8, 8, 1), 16, batch_norm=False)
    model = gan.GAN(generator, discriminator, seed=0, track_gradient_norms=True)
    model.compile(keras.optimizers.SGD(0.0), keras.optimizers.SGD(0.0), loss="hinge")
    history = model.fit(IMAGES, batch_size=32, epochs=1, verbose=0, shuffle=False).history
    noise = seeds.seed_generator(0, "latent")  # the model's latent stream
    z_d, z_g = keras.random.normal((32, 16), seed=noise), keras.random.normal((32, 16), seed=noise)
    loss = losses.Hinge()
    with tf.GradientTape() as tape:
        d = tf.reduce_mean(loss.discriminator_loss(discriminator(IMAGES), discriminator(generator(z_d, training=True))))
    d_norm = tf.linalg.global_norm(tape.gradient(d, discriminator.trainable_variables))
    with tf.GradientTape() as tape:
        g = tf.reduce_mean(loss.generator_loss(discriminator(generator(z_g, training=True))))
    g_norm = tf.linalg.global_norm(tape.gradient(g, generator.trainable_variables))
    np.testing.assert_allclose(history["d_grad_norm"][0], float(d_norm), rtol=1e-4)
    np.testing.assert_allclose(history["g_grad_norm"][0], float(g_norm), rtol=1e-4)
    assert "d_grad_norm" not in tiny_gan().fit(IMAGES, batch_size=32, verbose=0).history


def test_sparse_gradients_update_adam_as_their_dense_sum():
    # A conditional network's class embedding gets IndexedSlices; with a label twice in the batch
    # Keras 3.15's Adam would square each row before summing (v = 1e-3 * [10, 20], a step of 0.126).
    model = tiny_gan()
    table = keras.Variable(np.zeros((3, 2), "float32"))
    optimizer = keras.optimizers.Adam(0.1)
    optimizer.build([table])
    sparse = tf.IndexedSlices(tf.constant([[1.0, 2.0], [3.0, 4.0]]), tf.constant([0, 0]), tf.constant([3, 2]))
    model._apply(optimizer, model.d_grad_norm_tracker, [sparse], [table])
    velocity = next(v for v in optimizer.variables if "velocity" in v.path)
    np.testing.assert_allclose(velocity.numpy()[0], 1e-3 * np.array([4.0, 6.0]) ** 2, rtol=1e-5)  # (sum g)^2
    np.testing.assert_allclose(table.numpy(), [[-0.1, -0.1], [0.0, 0.0], [0.0, 0.0]], rtol=1e-5)  # Adam's first step


def test_d_steps_updates_d_k_times_on_distinct_batches_per_g_update():
    model = tiny_gan("wasserstein", clip=0.01, d_steps=4)
    seen = []
    original = model._discriminator_step

    def spy(real):
        seen.append(real)
        return original(real)

    model._discriminator_step = spy
    model.train_step(tf.constant(IMAGES))  # eager: one step
    assert int(model.d_optimizer.iterations) == 4 and int(model.g_optimizer.iterations) == 1
    assert [tuple(s.shape) for s in seen] == [(8, 8, 8, 1)] * 4
    for k, real in enumerate(seen):  # update k takes examples k, k + 4, k + 8, ...
        np.testing.assert_array_equal(real.numpy(), IMAGES[k::4])


def test_instance_noise_has_the_requested_std():
    model = tiny_gan(instance_noise=0.3)
    noisy = model._perturb(tf.zeros((4000, 8, 8, 1))).numpy()
    assert abs(noisy.std() - 0.3) < 0.005 and abs(noisy.mean()) < 0.005
    assert tiny_gan()._perturb(tf.ones((2, 8, 8, 1))) is not None
    np.testing.assert_array_equal(tiny_gan()._perturb(tf.ones((2, 8, 8, 1))).numpy(), 1.0)


def test_generate_is_seeded_and_call_runs_the_generator():
    model = tiny_gan()
    a, b, c = model.generate(10, seed=1), model.generate(10, seed=1), model.generate(10, seed=2)
    assert a.shape == (10, 8, 8, 1) and np.array_equal(a, b) and not np.allclose(a, c)
    assert a.min() >= -1 and a.max() <= 1
    z = np.zeros((3, 16), dtype="float32")
    np.testing.assert_allclose(model(z).numpy(), model.generator(z, training=False).numpy())


def test_get_config_round_trip():
    model = tiny_gan(d_steps=3, instance_noise=0.1)
    config = model.get_config()
    clone = gan.GAN.from_config(config)
    assert (clone.latent_dim, clone.d_steps, clone.instance_noise, clone.seed) == (16, 3, 0.1, 0)
    assert [w.shape for w in clone.generator.weights] == [w.shape for w in model.generator.weights]
    assert [w.shape for w in clone.discriminator.weights] == [w.shape for w in model.discriminator.weights]
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
    assert isinstance(restored, gan.GAN) and restored.d_steps == 3


def test_keras_file_round_trip_restores_weights_and_compile_state(tmp_path):
    model = tiny_gan("minkowski", penalties.GradientPenalty(5.0, one_sided=True), clip=0.05, d_steps=2)
    model.fit(IMAGES, batch_size=16, epochs=1, verbose=0, shuffle=False)
    model.save(tmp_path / "gan.keras")
    loaded = keras.saving.load_model(tmp_path / "gan.keras")
    z = np.random.default_rng(0).normal(size=(4, 16)).astype("float32")
    np.testing.assert_allclose(loaded(z).numpy(), model(z).numpy(), atol=1e-6)
    assert loaded.loss_fn == model.loss_fn and loaded.weight_clip == 0.05
    assert (loaded.penalty.weight, loaded.penalty.one_sided) == (5.0, True)
    assert loaded.d_optimizer.learning_rate.numpy() == pytest.approx(1e-3)


def test_uncompiled_and_bad_arguments():
    generator, discriminator = networks.build((2,), 2)
    with pytest.raises(ValueError, match="d_steps"):
        gan.GAN(generator, discriminator, d_steps=0)
    with pytest.raises(RuntimeError, match="compiled"):
        gan.GAN(generator, discriminator).train_step(tf.zeros((4, 2)))


# ---- learning: each loss moves a generator onto a 1-D Gaussian ------------------------------

TARGET_MEAN, TARGET_STD = 3.0, 0.5
LEARNING = {  # loss -> (compile extras, d_steps, steps); Adam 2e-4 / 0.5, batch 128, seed 0
    "minimax": ({}, 1, 6000),
    "non_saturating": ({}, 1, 6000),
    "least_squares": ({}, 1, 6000),
    "hinge": ({}, 1, 6000),
    "minkowski": ({}, 1, 6000),
    "wasserstein": ({"weight_clip": 0.01}, 5, 4000),
}


@pytest.mark.slow
@pytest.mark.parametrize("loss", list(LEARNING))
def test_each_loss_learns_a_1d_gaussian(loss):
    """Generator output starts near N(0, small); after training its mean is within 0.35 of 3 and
    its std within 0.2 of 0.5 (measured: means 2.98-3.28, stds 0.41-0.62)."""
    extras, d_steps, steps = LEARNING[loss]
    keras.utils.set_random_seed(0)
    model = gan.GAN(mlp_generator(4, 1, units=32, num_layers=2, batch_norm=False),
                    mlp_discriminator(1, units=32, num_layers=2), d_steps=d_steps, seed=0)
    model.compile(keras.optimizers.Adam(2e-4, beta_1=0.5), keras.optimizers.Adam(2e-4, beta_1=0.5), loss=loss, **extras)
    before = model.generate(2000, seed=1)
    assert abs(before.mean() - TARGET_MEAN) > 2  # the test can fail: it starts far away
    rng = np.random.default_rng(0)
    x = (TARGET_MEAN + TARGET_STD * rng.standard_normal((steps * 128 * d_steps, 1))).astype("float32")
    model.fit(tf.data.Dataset.from_tensor_slices(x).batch(128 * d_steps), epochs=1, verbose=0, shuffle=False)
    samples = model.generate(5000, seed=1)
    assert abs(samples.mean() - TARGET_MEAN) < 0.35, samples.mean()
    assert abs(samples.std() - TARGET_STD) < 0.2, samples.std()
