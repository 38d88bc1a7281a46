"""GAN.train_step: every loss x penalty x clipping combination, learning, the model API, and the
step with its techniques on: neutral options give the plain step bit for bit, 2 replicas equal
1, penalties see what D is trained on, random streams, the saved-weights layout.

The techniques themselves (kgan/techniques.py) are tested in tests/test_techniques.py. The
2-replica equivalence of the options runs in ONE subprocess (`python -m tests.test_gan`), as in
tests/test_distribute.py.
"""

import json
import os
import subprocess
import sys

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from kgan import checkpoint, gan, losses, names, networks, penalties, seeds
from kgan.augment import AdaptiveAugment, Augment
from kgan.networks import mlp_discriminator, mlp_generator
from tests.gan_helpers import IMAGES, LABELS, POINTS, ROOT, assert_bit_equal, image_gan, mlp_pair, weights


def tiny_gan(loss="non_saturating", penalty=None, clip=None, d_steps=1, instance_noise=0.0, lr=1e-3):
    keras.utils.set_random_seed(0)
    generator, discriminator = networks.build((8, 8, 1), 16, batch_norm=penalty is None)
    model = gan.GAN(generator, discriminator, d_steps=d_steps, instance_noise=instance_noise, seed=0)
    model.compile(keras.optimizers.Adam(lr), keras.optimizers.Adam(lr), loss=loss, penalty=penalty, weight_clip=clip)
    return model




@pytest.mark.parametrize("clip", [None, 0.01])
@pytest.mark.parametrize("penalty", [None, "gp"])
@pytest.mark.parametrize("loss", names.LOSSES)
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


def test_generate_is_seeded_and_call_runs_the_generator():
    model = tiny_gan()
    a, b, c = model.generate(10, seed=1), model.generate(10, seed=1), model.generate(10, seed=2)
    assert a.shape == (10, 8, 8, 1) and np.array_equal(a, b) and not np.allclose(a, c)
    assert a.min() >= -1 and a.max() <= 1
    z = np.zeros((3, 16), dtype="float32")
    np.testing.assert_allclose(model(z).numpy(), model.generator(z, training=False).numpy())


def test_generate_runs_the_generator_in_a_graph_with_the_eager_call_s_bits():
    model = tiny_gan()
    z = keras.random.normal((300, 16), seed=1)
    eager = np.concatenate([model.generator(z[i:i + 256], training=False).numpy() for i in (0, 256)])
    np.testing.assert_array_equal(model.generate(300, seed=1), eager)


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


# ---- neutral settings are the plain step bit for bit ----------------------------------------


@pytest.fixture(scope="module")
def plain_weights():
    model = image_gan(penalty=penalties.GradientPenalty(5.0, seed=1), instance_noise=0.1, d_steps=2)
    model.fit(IMAGES, batch_size=16, epochs=2, verbose=0, shuffle=False)
    return weights(model)


@pytest.mark.parametrize("options", [
    {"clip_grad_norm": 2.0**30},  # factor clip * min(1 / norm, 1 / clip) = 1 exactly
    {"unroll": 0, "ema": None, "feature_matching": 0.0, "historical_averaging": 0.0},
    {"augment": "p0"},
], ids=["huge_clip", "explicit_off", "augment_p0"])
def test_neutral_options_give_the_plain_step_bit_for_bit(plain_weights, options):
    if options.get("augment") == "p0":
        options = {"augment": Augment("color,translation,cutout", p=0.0, seed=3)}
    model = image_gan(penalty=penalties.GradientPenalty(5.0, seed=1), instance_noise=0.1, d_steps=2, **options)
    history = model.fit(IMAGES, batch_size=16, epochs=2, verbose=0, shuffle=False).history
    assert_bit_equal(plain_weights, weights(model))
    if "augment" in options:
        assert history["augment_p"] == [0.0, 0.0]


# ---- simultaneous updates (PacGAN's) ------------------------------------------------------


def constant_gan(updates, b, w, c, lr):
    """G(z) = b for every z (zero kernel), D(x) = x . w + c, plain SGD."""
    latent = keras.Input((2,))
    generator = keras.Model(latent, keras.layers.Dense(2, kernel_initializer="zeros",
                                                       bias_initializer=keras.initializers.Constant(b))(latent))
    samples = keras.Input((2,))
    discriminator = keras.Model(samples, keras.layers.Dense(1, kernel_initializer=keras.initializers.Constant(w),
                                                            bias_initializer=keras.initializers.Constant(c))(samples))
    model = gan.GAN(generator, discriminator, seed=0, updates=updates)
    model.compile(keras.optimizers.SGD(lr), keras.optimizers.SGD(lr), loss="non_saturating")
    return model


@pytest.mark.parametrize("updates", names.UPDATES)
def test_simultaneous_updates_take_both_gradients_at_the_same_weights(updates):
    b, w, c, lr = np.array([0.5, -1.0]), np.array([[0.3], [0.8]]), 0.1, 0.5
    real = np.array([[1.0, 2.0], [-1.0, 0.5], [0.0, -1.5], [2.0, 1.0]], "float32")
    model = constant_gan(updates, b, w, c, lr)
    model.fit(real, batch_size=4, epochs=1, shuffle=False, verbose=0)
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    # Hand computation: D's loss mean(softplus(-D(r)) + softplus(D(b))), G's softplus(-D(b)).
    s_real, s_fake = real @ w[:, 0] + c, b @ w[:, 0] + c
    w_new = w[:, 0] - lr * ((-sig(-s_real)[:, None] * real).mean(0) + sig(s_fake) * b)
    c_new = c - lr * (-sig(-s_real).mean() + sig(s_fake))
    d_for_g = (w[:, 0], c) if updates == "simultaneous" else (w_new, c_new)  # alternating: G sees the new D
    b_new = b + lr * sig(-(b @ d_for_g[0] + d_for_g[1])) * d_for_g[0]
    kernel, bias = (v.numpy() for v in model.discriminator.weights)
    np.testing.assert_allclose(kernel[:, 0], w_new, rtol=1e-6)
    np.testing.assert_allclose(bias, [c_new], rtol=1e-6)
    np.testing.assert_allclose(model.generator.weights[1].numpy(), b_new, rtol=1e-6)


def test_simultaneous_updates_refuse_what_they_cannot_do():
    generator, discriminator = mlp_pair()
    with pytest.raises(ValueError, match="need d_steps = 1"):
        gan.GAN(generator, discriminator, updates="simultaneous", d_steps=5)
    for option in ({"unroll": 2}, {"feature_matching": 1.0}):
        with pytest.raises(ValueError, match="simultaneous updates do not support"):
            gan.GAN(generator, discriminator, updates="simultaneous", **option)
    with pytest.raises(ValueError, match="updates must be one of"):
        gan.GAN(generator, discriminator, updates="sometimes")
    model = gan.GAN(generator, discriminator, updates="simultaneous", ema=0.9, pack=2)
    assert gan.GAN.from_config(model.get_config()).updates == "simultaneous"


# ---- configuration --------------------------------------------------------------------------


def test_get_config_round_trips_the_options():
    model = image_gan(num_classes=10, ema=0.99, ema_start=5, feature_matching=0.5, unroll=2, clip_grad_norm=3.0,
                      augment=AdaptiveAugment("translation", p=0.1, target=0.7, seed=2))
    clone = gan.GAN.from_config(model.get_config())
    for name in ("num_classes", "ema", "ema_start", "feature_matching", "unroll", "clip_grad_norm",
                 "historical_averaging"):
        assert getattr(clone, name) == getattr(model, name), name
    assert isinstance(clone.augment, AdaptiveAugment) and clone.augment.get_config() == model.augment.get_config()
    assert [w.shape for w in clone.ema_generator.weights] == [w.shape for w in model.generator.weights]
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
    assert restored.ema == 0.99 and restored.augment.target == 0.7


@pytest.mark.parametrize("bad, match", [
    ({"ema": 1.0}, "ema must be"), ({"ema_start": -1}, "ema_start"), ({"feature_matching": -1}, "feature_matching"),
    ({"unroll": -1}, "unroll"), ({"clip_grad_norm": 0}, "clip_grad_norm"), ({"num_classes": 0}, "num_classes"),
    ({"historical_averaging": -1}, "historical_averaging"),
])
def test_bad_options(bad, match):
    generator, discriminator = mlp_pair()
    with pytest.raises(ValueError, match=match):
        gan.GAN(generator, discriminator, **bad)


# ---- random streams, penalties and the step ---------------------------------------------------


def test_random_streams_of_one_run_are_distinct_and_resume_restores_them(tmp_path):
    """Latent noise, fake labels, instance noise, the GP's alpha and the augmentation each draw
    from their own seed (kgan.seeds): their first uniforms all differ (the landed code seeded the
    GP and the augmentation alike, [seed, 0], so alpha repeated augment's draws); a checkpoint
    stores and restores every stream."""
    model = image_gan(penalty=penalties.GradientPenalty(1.0, seed=0), num_classes=10, instance_noise=0.1,
                      augment=Augment("color", p=0.5, seed=0))
    generators = checkpoint.seed_generators(model)
    assert set(generators) == {"noise", "labels", "instance_noise", "penalty", "augment"}
    firsts = {}
    for name, generator in generators.items():
        fresh = keras.random.SeedGenerator(0)
        fresh.state.assign(generator.state)
        firsts[name] = np.asarray(keras.random.uniform((16,), seed=fresh))
    names = sorted(firsts)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not np.allclose(firsts[a], firsts[b]), (a, b)
    assert seeds.stream_seed(0, "penalty") != seeds.stream_seed(0, "augment") != seeds.stream_seed(0, "latent")
    assert seeds.stream_seed(0, "latent") == int(np.random.SeedSequence(0).spawn(5)[0].generate_state(1)[0])

    model.train_step((tf.constant(IMAGES), tf.constant(LABELS)))
    store = checkpoint.Checkpoints(str(tmp_path))
    path = store.save(model, epoch=1)
    states = {name: g.state.numpy().copy() for name, g in generators.items()}
    other = image_gan(penalty=penalties.GradientPenalty(1.0, seed=0), num_classes=10, instance_noise=0.1,
                      augment=Augment("color", p=0.5, seed=0))
    store.restore(other, path)
    for name, generator in checkpoint.seed_generators(other).items():
        np.testing.assert_array_equal(generator.state.numpy(), states[name], err_msg=name)


class SpyPenalty(penalties.GradientPenalty):
    """A gradient penalty recording the (real, fake) batches it is given."""

    def __init__(self, **kwargs):
        super().__init__(1.0, seed=0, **kwargs)
        self.seen = []

    def __call__(self, discriminator, real, fake, training=True, alpha=None):
        self.seen.append((np.array(real), np.array(fake)))
        return super().__call__(discriminator, real, fake, training=training, alpha=alpha)


def test_conditional_gradient_penalty_fakes_have_the_real_labels():
    """The penalty's fakes are G(z, real labels), z the update's latents: each interpolate mixes a
    real image with a fake of ITS class (the landed code used the fakes of random labels)."""
    spy = SpyPenalty()
    model = image_gan(lr=0.0, num_classes=10, penalty=spy, optimizer=keras.optimizers.SGD)
    rng = np.random.default_rng(3)
    for variable in model.generator.trainable_variables:  # class embeddings away from their init
        variable.assign(variable.numpy() + rng.normal(0.0, 0.2, variable.shape).astype("float32"))
    model.train_step((tf.constant(IMAGES[:16]), tf.constant(LABELS[:16])))
    (real, fake), = spy.seen
    z = keras.random.normal((16, 16), seed=seeds.seed_generator(0, "latent"))
    np.testing.assert_array_equal(real, IMAGES[:16])
    expected = model.generator([z, tf.constant(LABELS[:16])], training=True).numpy()
    np.testing.assert_allclose(fake, expected, rtol=1e-5, atol=1e-6)
    fake_labels = keras.random.randint((16,), 0, 10, seed=seeds.seed_generator(0, "labels"), dtype="int32")
    other = model.generator([z, fake_labels], training=True).numpy()
    assert np.abs(fake - other).max() > 1e-3


def test_penalty_sees_the_noisy_inputs_d_is_trained_on():
    """D(x) = |x|^2 / 2 (+ a zero Dense): R1 = gamma/2 |x + n|^2 with n the THIRD draw of the
    instance-noise stream (after the real and fake batches' noise), not gamma/2 |x|^2."""
    keras.utils.set_random_seed(0)
    generator, _ = mlp_pair()
    x = keras.Input((2,))
    square = keras.layers.Lambda(lambda v: 0.5 * keras.ops.sum(keras.ops.square(v), axis=-1, keepdims=True))(x)
    discriminator = keras.Model(x, keras.layers.Add()([keras.layers.Dense(1, kernel_initializer="zeros")(x), square]))
    model = gan.GAN(generator, discriminator, seed=0, instance_noise=2.0)
    model.compile(keras.optimizers.SGD(0.0), keras.optimizers.SGD(0.0), loss="hinge", penalty=penalties.R1(3.0))
    model.train_step(tf.constant(POINTS))
    stream = seeds.seed_generator(0, "instance_noise")
    draws = [np.asarray(keras.random.normal((16, 2), stddev=2.0, seed=stream)) for _ in range(3)]
    noisy = 1.5 * np.mean(np.sum((POINTS + draws[2]) ** 2, axis=1))
    clean = 1.5 * np.mean(np.sum(POINTS**2, axis=1))
    np.testing.assert_allclose(float(model.penalty_tracker.result()), noisy, rtol=1e-5)
    assert abs(noisy - clean) > 1.0


# ---- 2 replicas == 1 replica, with the options on --------------------------------------------

# name -> GAN options; "mlp" cases train the batch-norm-free MLP pair on points, the others a
# conditional DCGAN pair (class-conditional, synchronised batch norm in G) on 8x8 images.
REPLICA_CASES = {
    "mlp_fm_clip_ema": {"feature_matching": 1.0, "clip_grad_norm": 5e-4, "ema": 0.9, "ema_start": 1, "d_steps": 2,
                        "historical_averaging": 0.1, "unroll": 2},
    "conditional_augment": {"num_classes": 10, "augment": "ada", "feature_matching": 0.5, "clip_grad_norm": 0.5,
                            "ema": 0.5},
}
REPLICA_STEPS, REPLICA_BATCH = 3, 8


def _train_case(strategy, case):
    """Trains `case` for REPLICA_STEPS steps under `strategy`: (all weights, history, largest change of
    a G or D weight)."""
    from kgan import distribute

    options = dict(REPLICA_CASES[case])
    d_steps = options.get("d_steps", 1)
    rng = np.random.default_rng(0)
    n = REPLICA_STEPS * REPLICA_BATCH * d_steps
    keras.utils.set_random_seed(0)
    with strategy.scope():
        if case.startswith("mlp"):
            data = rng.uniform(-1, 1, (n, 2)).astype("float32")
            generator, discriminator = mlp_pair(latent=4, dim=2)
        else:
            data = (rng.uniform(-1, 1, (n, 8, 8, 1)).astype("float32"), rng.integers(0, 10, n).astype("int32"))
            generator, discriminator = networks.build((8, 8, 1), 8, batch_norm=False, num_classes=10)
            distribute.synchronize_batch_norm(generator)
        if options.get("augment") == "ada":  # p moves by 0.08 per update
            options["augment"] = AdaptiveAugment("color,translation,cutout", p=0.5, target=-1.0, interval=1,
                                                 speed_kimg=0.1, seed=3)
        model = gan.GAN(generator, discriminator, seed=0, track_gradient_norms=True, **options)
        model.compile(keras.optimizers.Adam(1e-2), keras.optimizers.Adam(1e-2), loss="non_saturating")
    rng = np.random.default_rng(1)  # the same initial weights for both runs
    for v in model.generator.trainable_weights + model.discriminator.trainable_weights:
        v.assign(rng.normal(0, 0.1, v.shape).astype(v.dtype))
    if "ema" in options:
        model.ema_generator.set_weights(model.generator.get_weights())
    networks_weights = model.generator.weights + model.discriminator.weights
    start = [np.array(v.numpy()) for v in networks_weights]
    batches = tf.data.Dataset.from_tensor_slices(data).batch(REPLICA_BATCH * d_steps, drop_remainder=True)
    history = model.fit(batches, epochs=1, verbose=0, shuffle=False).history
    final = [np.array(v.numpy()) for v in model.weights]
    change = max(float(np.abs(v.numpy() - a).max()) for v, a in zip(networks_weights, start, strict=True))
    return final, {k: float(v[-1]) for k, v in history.items()}, change


def compare_replicas(cases):
    """Runs `cases` on 1 and on 2 replicas: {case: {max_abs_diff, change, one, two, replicas}}."""
    from kgan import distribute

    two = distribute.get_strategy("mirrored", devices=2)  # before TF initialises its devices
    results = {}
    for case in cases:
        w1, h1, change = _train_case(tf.distribute.get_strategy(), case)
        w2, h2, _ = _train_case(two, case)
        results[case] = {
            "replicas": two.num_replicas_in_sync, "change": change, "one": h1, "two": h2,
            "max_abs_diff": max(float(np.abs(a - b).max()) for a, b in zip(w1, w2, strict=True)),
        }
    return results


@pytest.fixture(scope="module")
def replica_equivalence():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-m", "tests.test_gan", *REPLICA_CASES], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("case", list(REPLICA_CASES))
def test_two_replicas_equal_one_replica_with_the_options(replica_equivalence, case):
    """Weights (G, D, EMA copy, ADA p) and logged values (losses, feature matching, gradient norms
    before clipping, augment_p) agree between 1 and 2 replicas with the same global batch."""
    result = replica_equivalence[case]
    assert result["replicas"] == 2
    assert result["max_abs_diff"] < 1e-5, result
    assert result["change"] > 1e-3, result
    assert result["one"]["g_grad_norm"] > REPLICA_CASES[case]["clip_grad_norm"]  # clipping was active
    assert set(result["one"]) == set(result["two"])
    for name, value in result["one"].items():
        np.testing.assert_allclose(result["two"][name], value, rtol=1e-5, atol=1e-6, err_msg=name)



# ---- the saved-weights layout: checkpoints of earlier runs must still load ---------------------

_G_LAYERS = ["conditional_batch_normalization/batch_norm/vars/0", "conditional_batch_normalization/batch_norm/vars/1",
             "conditional_batch_normalization/beta/vars/0", "conditional_batch_normalization/gamma/vars/0",
             "conv2d_transpose/vars/0", "conv2d_transpose/vars/1", "dense/vars/0"]
#: `save_weights` keys of a GAN with every technique on, as written by main at 8307bad (before
#: the techniques became objects): the techniques' state stays under the GAN's attributes.
EXPECTED_WEIGHT_KEYS = sorted(
    [f"augment/vars/{i}" for i in range(5)]
    + [f"{player}_historical/vars/{i}" for player in "dg" for i in range(6)]
    + [f"{player}_optimizer/vars/{i}" for player in "dg" for i in range(12)]
    + ["optimizer/vars/0", "optimizer/vars/1"]
    + [f"{network}/layers/{key}" for network in ("generator", "ema_generator") for key in _G_LAYERS]
    + [f"discriminator/layers/{key}" for key in ("conv2d/vars/0", "conv2d/vars/1", "dense/vars/0", "dense_1/vars/0",
                                                 "dense_1/vars/1")]
)


def test_saved_weights_keep_their_layout_with_every_technique_on(tmp_path):
    keras.utils.set_random_seed(0)
    generator, discriminator = networks.build((8, 8, 1), 4, num_classes=3)
    model = gan.GAN(generator, discriminator, seed=0, num_classes=3, ema=0.9, historical_averaging=0.1,
                    augment=AdaptiveAugment("translation", seed=0), feature_matching=0.5, unroll=1, clip_grad_norm=1.0,
                    instance_noise=0.1)
    model.compile(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-3),
                  penalty=penalties.GradientPenalty(1.0, seed=0))
    assert [t.name for t in model.techniques] == ["conditional", "augment", "instance_noise", "feature_matching",
                                                  "ema", "unroll", "historical_averaging", "clip_grad_norm"]
    model.save_weights(tmp_path / "gan.weights.h5")
    keys = []
    with h5py.File(tmp_path / "gan.weights.h5", "r") as f:
        f.visititems(lambda key, item: keys.append(key) if isinstance(item, h5py.Dataset) else None)
    assert sorted(keys) == EXPECTED_WEIGHT_KEYS


if __name__ == "__main__":
    print(json.dumps(compare_replicas(sys.argv[1:] or list(REPLICA_CASES))))
