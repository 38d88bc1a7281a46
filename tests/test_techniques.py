"""kgan.techniques: each optional technique of the GAN step, one section per class.

Conditional labels, augmentation, instance noise, feature matching, EMA, unrolling, historical
averaging and gradient-norm clipping are each checked against a NumPy computation or a closed
form, through a GAN that uses it. The step with the techniques on (neutral options bit for bit,
2 replicas == 1, the saved-weights layout) is tested in tests/test_gan.py.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kgan import checkpoint, gan, networks, penalties, seeds, techniques
from kgan.augment import AdaptiveAugment, Augment
from tests.gan_helpers import IMAGES, LABELS, POINTS, assert_bit_equal, image_gan, mlp_pair, weights

# ---- the hooks ------------------------------------------------------------------------------


def test_neutral_options_build_no_technique_and_the_base_hooks_do_nothing():
    generator, discriminator = mlp_pair()
    assert techniques.build(generator, discriminator, seed=0, ema_start=3) == []
    assert gan.GAN(generator, discriminator).techniques == []
    base, x = techniques.Technique(), tf.ones((2, 2))
    update = techniques.Update(gan.GAN(generator, discriminator), techniques.GENERATOR)
    assert update.network is generator and update.values == {}
    assert base.transform(x) is x and base.loss(update) is None
    assert base.fake_outputs(update, x, None) is None and base.transform_gradients([x], None) == [x]
    assert base.tracked() == {} and base.trackers() == [] and base.seed_generators() == {} and base.logs() == {}


# ---- conditional labels -------------------------------------------------------------------


def test_conditional_labels_are_split_like_the_images_and_fake_labels_drawn_from_the_seed():
    model = image_gan(lr=0.0, num_classes=10, d_steps=2, optimizer=keras.optimizers.SGD)
    seen = []
    original = model._discriminator_step

    def spy(real, labels):
        seen.append((real.numpy(), labels.numpy()))
        return original(real, labels)

    model._discriminator_step = spy
    model.train_step((tf.constant(IMAGES), tf.constant(LABELS)))
    for k, (real, labels) in enumerate(seen):
        np.testing.assert_array_equal(real, IMAGES[k::2])
        np.testing.assert_array_equal(labels, LABELS[k::2])

    # lr 0: nothing moved, so the logged d_loss is that of the second critic batch... averaged
    # with the first; recompute both with the same draws: z, then labels, per update.
    noise = seeds.seed_generator(0, "latent")  # the model's latent stream
    label_stream = seeds.seed_generator(0, "labels")  # ... and its own stream of fake labels
    expected = []
    for k in range(2):
        z = keras.random.normal((16, 16), seed=noise)
        fake_labels = keras.random.randint((16,), 0, 10, seed=label_stream, dtype="int32")
        fake = model.generator([z, fake_labels], training=True)
        expected.append(model.loss_fn.discriminator_loss(
            model.discriminator([IMAGES[k::2], LABELS[k::2]], training=True),
            model.discriminator([fake, fake_labels], training=True)).numpy())
    np.testing.assert_allclose(float(model.d_loss_tracker.result()), np.mean(expected), rtol=1e-5)
    assert len(set(fake_labels.numpy().tolist())) > 5  # uniform over the classes


def test_conditional_needs_labels_and_generate_takes_them():
    model = image_gan(num_classes=10)
    rng = np.random.default_rng(0)
    for layer in model.generator.layers:  # class-dependent scales (they start at 1 for every class)
        if isinstance(layer, networks.ConditionalBatchNormalization):
            layer.gamma.embeddings.assign(rng.uniform(0.5, 1.5, layer.gamma.embeddings.shape))
    with pytest.raises(ValueError, match="takes batches \\(samples, labels\\)"):
        model.train_step(tf.constant(IMAGES))
    by_default = model.generate(12, seed=0)
    cycled = model.generate(12, seed=0, labels=np.arange(12) % 10)
    np.testing.assert_array_equal(by_default, cycled)
    other = model.generate(12, seed=0, labels=np.full(12, 3))
    assert not np.allclose(other, by_default)
    np.testing.assert_array_equal(other[3], by_default[3])  # label 3 in both, same z
    with pytest.raises(ValueError, match="in \\[0, 10\\)"):
        model.generate(2, labels=[0, 10])
    with pytest.raises(ValueError, match="2 ints"):
        model.generate(2, labels=[0])
    with pytest.raises(ValueError, match="unconditional"):
        image_gan().generate(2, labels=[0, 1])


@pytest.mark.slow
def test_conditional_dcgan_on_digits_generates_the_requested_classes(tmp_path):
    """Budget: conditional DCGAN pair (latent 32), batch 64, Adam 2e-4 / 0.5, non-saturating loss,
    EMA 0.99, 25 epochs of the 1,797 digits (700 steps, ~15 s of training on 2 idle cores; the
    digits classifier trains in ~17 s more). The kgan digits classifier assigns the requested
    class to >= 80% of 1,000 samples (classes cycled); measured 100% (98.6% after 15 epochs,
    17% after 5: the test can fail)."""
    from kgan import data
    from kgan.metrics import load_classifier

    keras.utils.set_random_seed(0)
    dataset = data.load("digits", with_labels=True)
    generator, discriminator = networks.build(dataset.shape, 32, num_classes=dataset.num_classes)
    model = gan.GAN(generator, discriminator, seed=0, num_classes=dataset.num_classes, ema=0.99)
    model.compile(keras.optimizers.Adam(2e-4, beta_1=0.5), keras.optimizers.Adam(2e-4, beta_1=0.5))
    model.fit(data.pipeline(dataset, 64, seed=0), epochs=25, verbose=0)
    classifier = load_classifier("digits", cache_dir=str(tmp_path))
    requested = np.arange(1000) % 10
    predicted = classifier.probabilities(model.generate(1000, seed=1, labels=requested)).argmax(axis=1)
    accuracy = float(np.mean(predicted == requested))
    print(f"conditional digits: {accuracy:.1%} of samples classified as requested")
    assert accuracy >= 0.8, accuracy


# ---- augmentation ----------------------------------------------------------------------


class SpyAugment(Augment):
    """Augment (p = 1, brightness etc.) counting its calls and the outputs it is updated with."""

    def __init__(self, **kwargs):
        super().__init__("color", p=1.0, seed=4, **kwargs)
        self.calls, self.updates = 0, []

    def call(self, images, training=True):
        self.calls += 1
        return super().call(images, training=training)

    def update(self, real_outputs, threshold=0.0):
        self.updates.append(real_outputs)


def test_augment_sees_every_discriminator_input_and_is_updated_after_each_d_update():
    spy = SpyAugment()
    model = image_gan(lr=0.0, augment=spy, d_steps=2, feature_matching=1.0, penalty=penalties.R1(1.0))
    model.train_step(tf.constant(IMAGES))  # eager: counts are per step
    # Per critic update: real, fake, and the penalty's critic; G update: fake, and real for FM.
    assert spy.calls == 2 * 3 + 2
    assert len(spy.updates) == 2 and tuple(spy.updates[0].shape) == (16, 1)
    # The outputs given to update are D's outputs on augmented reals (lr 0: D did not move).
    plain = model.discriminator(IMAGES[1::2], training=True).numpy()
    assert not np.allclose(spy.updates[1].numpy(), plain, atol=1e-3)


def test_adaptive_augment_p_is_logged_checkpointed_and_its_seed_restored(tmp_path):
    # target -1 < r_t: p rises by N / (speed_kimg * 1000) = 16 / 100 at each of the 4 updates.
    augment = AdaptiveAugment("translation", p=0.0, target=-1.0, interval=1, speed_kimg=0.1, seed=7)
    model = image_gan(augment=augment)
    history = model.fit(IMAGES, batch_size=16, epochs=2, verbose=0, shuffle=False).history
    p = float(augment.p.numpy())
    assert p == pytest.approx(0.64, abs=1e-6) and history["augment_p"] == pytest.approx([0.32, 0.64], abs=1e-6)
    assert "augment" in checkpoint.seed_generators(model)
    store = checkpoint.Checkpoints(str(tmp_path))
    path = store.save(model, epoch=2)
    state = augment.seed_generator.state.numpy().copy()
    other = image_gan(augment=AdaptiveAugment("translation", p=0.0, target=-1.0, interval=1, speed_kimg=0.1, seed=7))
    store.restore(other, path)
    assert float(other.augment.p.numpy()) == p
    np.testing.assert_array_equal(other.augment.seed_generator.state.numpy(), state)
    assert int(other.augment._updates.numpy()) == 4


# ---- instance noise -------------------------------------------------------------------------


def test_instance_noise_has_the_requested_std():
    model = image_gan(instance_noise=0.3)
    noisy = model.technique("instance_noise").transform(tf.zeros((4000, 8, 8, 1))).numpy()
    assert abs(noisy.std() - 0.3) < 0.005 and abs(noisy.mean()) < 0.005
    assert image_gan().technique("instance_noise") is None  # 0: no technique, D's inputs untouched


# ---- feature matching -----------------------------------------------------------------------


def fm_pair(weight_seed=0):
    """G: z [B, 2] -> z A + c; D: x [B, 2] -> f = tanh(x W + b) [B, 3] -> logits (zero weights)."""
    rng = np.random.default_rng(weight_seed)
    z = keras.Input((2,), name="latent")
    generator = keras.Model(z, keras.layers.Dense(2, name="affine")(z), name="generator")
    x = keras.Input((2,), name="samples")
    h = keras.layers.Dense(3, activation="tanh", name="hidden")(x)
    features = keras.layers.Identity(name="features")(h)
    discriminator = keras.Model(x, keras.layers.Dense(1, name="logits")(features), name="discriminator")
    A, c = rng.normal(size=(2, 2)), rng.normal(size=2)
    W, b = rng.normal(size=(2, 3)), rng.normal(size=3)
    generator.get_layer("affine").set_weights([A, c])
    # Zero logits weights: D's output is constant, so the adversarial gradient of G is exactly 0
    # and G's update is the feature-matching gradient alone.
    discriminator.get_layer("hidden").set_weights([W, b])
    discriminator.get_layer("logits").set_weights([np.zeros((3, 1)), np.zeros(1)])
    return generator, discriminator, (A, c, W, b)


def test_feature_matching_gradient_equals_the_numpy_gradient():
    weight = 0.7
    generator, discriminator, (A, c, W, b) = fm_pair()
    model = gan.GAN(generator, discriminator, seed=0, feature_matching=weight)
    # D does not move (lr 0); G takes one SGD step of lr 1: its change is minus its gradient.
    model.compile(keras.optimizers.SGD(0.0), keras.optimizers.SGD(1.0), loss="non_saturating")
    real = np.random.default_rng(5).normal(size=(16, 2)).astype("float32")
    history = model.fit(real, batch_size=16, epochs=1, verbose=0, shuffle=False).history
    noise = seeds.seed_generator(0, "latent")  # the model's latent stream
    keras.random.normal((16, 2), seed=noise)  # the discriminator update's draw
    z = keras.random.normal((16, 2), seed=noise).numpy().astype("float64")

    # NumPy: L = w ||mean f(real) - mean f(fake)||^2, f(x) = tanh(x W + b), fake = z A + c.
    f_real = np.tanh(real @ W + b)
    fake = z @ A + c
    f_fake = np.tanh(fake @ W + b)
    diff = f_real.mean(0) - f_fake.mean(0)
    loss = weight * np.sum(diff**2)
    dL_dffake = -2 * weight * diff / len(z)  # per example [3]
    dL_dfake = (dL_dffake * (1 - f_fake**2)) @ W.T  # [B, 2]
    grad_A, grad_c = z.T @ dL_dfake, dL_dfake.sum(0)
    A_new, c_new = model.generator.get_layer("affine").get_weights()
    np.testing.assert_allclose(A - A_new, grad_A, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(c - c_new, grad_c, rtol=1e-4, atol=1e-7)
    assert np.abs(grad_A).max() > 1e-2  # the term is not negligible
    np.testing.assert_allclose(history["feature_matching"][0], loss, rtol=1e-5)
    np.testing.assert_allclose(history["g_loss"][0], np.log(2), rtol=1e-6)  # softplus(-0)


def test_feature_matching_needs_a_features_layer():
    z = keras.Input((2,))
    x = keras.Input((2,))
    discriminator = keras.Model(x, keras.layers.Dense(1)(keras.layers.Dense(4)(x)), name="plain")
    with pytest.raises(ValueError, match="layer named 'features'.*'plain' has none"):
        gan.GAN(keras.Model(z, keras.layers.Dense(2)(z)), discriminator, feature_matching=1.0)
    assert "feature_matching" not in image_gan().fit(IMAGES, batch_size=32, verbose=0).history


# ---- EMA ------------------------------------------------------------------------------------


def ema_gan(ema=0.9, ema_start=2):
    keras.utils.set_random_seed(0)
    generator, discriminator = mlp_pair(batch_norm=True)  # batch norm: moving statistics to copy
    model = gan.GAN(generator, discriminator, seed=0, ema=ema, ema_start=ema_start)
    model.compile(keras.optimizers.Adam(1e-2), keras.optimizers.Adam(1e-2), loss="hinge")
    return model


def run_steps(model, steps):
    """Eager train steps on POINTS; the generator's weights after each, by variable."""
    history = []
    for _ in range(steps):
        model.train_step(tf.constant(POINTS))
        history.append([np.array(v.numpy()) for v in model.generator.weights])
    return history


def ema_closed_form(initial, history, ema, start):
    """NumPy: avg_t = d_s avg_{t-1} + (1 - d_s) w_t for t > start, else w_t (trainable), with the
    warm-up d_s = min(ema, (1 + s) / (10 + s)), s = t - start (TF's ExponentialMovingAverage)."""
    average = [np.array(w, dtype="float64") for w in initial]
    for t, raw in enumerate(history, start=1):
        s = t - start
        decay = min(ema, (1 + s) / (10 + s))
        average = [decay * a + (1 - decay) * w if t > start else np.array(w, dtype="float64")
                   for a, w in zip(average, raw, strict=True)]
    return average


def test_ema_weights_follow_the_closed_form_recursion():
    model = ema_gan(ema=0.9, ema_start=2)
    trainable = [v.trainable for v in model.generator.weights]
    assert not all(trainable) and any(trainable)  # BN moving statistics are non-trainable
    assert model.ema_generator.trainable_weights == [] and model.sampler is model.ema_generator
    initial = [np.array(v.numpy()) for v in model.generator.weights]
    assert_bit_equal(initial, [v.numpy() for v in model.ema_generator.weights])

    history = run_steps(model, 2)
    # Up to ema_start the copy tracks the raw weights exactly.
    assert_bit_equal(history[-1], [v.numpy() for v in model.ema_generator.weights])
    history += run_steps(model, 3)
    expected = ema_closed_form(initial, history, 0.9, 2)
    for variable, raw, want, is_trainable in zip(
        model.ema_generator.weights, history[-1], expected, trainable, strict=True
    ):
        if is_trainable:
            np.testing.assert_allclose(variable.numpy(), want, rtol=1e-5, atol=1e-7)
            assert not np.allclose(variable.numpy(), raw, rtol=1e-3)  # it did average
        else:  # moving statistics: copied from the raw generator
            np.testing.assert_array_equal(variable.numpy(), raw)


def test_ema_start_zero_averages_from_the_first_step_and_sampling_uses_the_average():
    model = ema_gan(ema=0.5, ema_start=0)
    initial = [np.array(v.numpy()) for v in model.generator.weights]
    history = run_steps(model, 1)
    for variable, want, is_trainable in zip(model.ema_generator.weights, ema_closed_form(initial, history, 0.5, 0),
                                            [v.trainable for v in model.generator.weights], strict=True):
        if is_trainable:  # 0.5 initial + 0.5 w_1
            np.testing.assert_allclose(variable.numpy(), want, rtol=1e-6, atol=1e-7)
    z = np.random.default_rng(0).normal(size=(5, 3)).astype("float32")
    np.testing.assert_array_equal(model(z).numpy(), model.ema_generator(z, training=False).numpy())
    assert not np.allclose(model(z).numpy(), model.generator(z, training=False).numpy())
    sample = model.generate(4, seed=3)
    expected = model.ema_generator(keras.random.normal((4, 3), seed=3), training=False).numpy()
    np.testing.assert_array_equal(sample, expected)


def test_checkpoint_restores_ema_weights_and_a_resumed_run_continues_the_recursion(tmp_path):
    model = ema_gan(ema=0.8, ema_start=2)
    initial = [np.array(v.numpy()) for v in model.generator.weights]
    history = run_steps(model, 3)
    store = checkpoint.Checkpoints(str(tmp_path))
    path = store.save(model, epoch=1)
    saved_ema = [np.array(v.numpy()) for v in model.ema_generator.weights]

    resumed = ema_gan(ema=0.8, ema_start=2)  # fresh weights, EMA copy = its initial generator
    assert not np.allclose(resumed.ema_generator.weights[0].numpy(), saved_ema[0])
    store.restore(resumed, path)
    assert_bit_equal(saved_ema, [v.numpy() for v in resumed.ema_generator.weights])
    assert int(resumed.g_optimizer.iterations) == 3

    history += run_steps(model, 2)
    resumed_history = run_steps(resumed, 2)
    assert_bit_equal(history[-1], resumed_history[-1])  # same raw weights (seed states restored)
    expected = ema_closed_form(initial, history, 0.8, 2)
    for variable, other, want, raw in zip(resumed.ema_generator.weights, model.ema_generator.weights,
                                          expected, model.generator.weights, strict=True):
        np.testing.assert_array_equal(variable.numpy(), other.numpy())
        if raw.trainable:
            np.testing.assert_allclose(variable.numpy(), want, rtol=1e-5, atol=1e-7)


def test_ema_first_averaged_update_is_two_elevenths_of_the_previous_average():
    """ema 0.999, ema_start 0: after update 1 the copy is (2/11) w_0 + (9/11) w_1 (TF's
    ExponentialMovingAverage warm-up), not 0.999 w_0 + 0.001 w_1; after 3 it follows the NumPy
    recursion with decays 2/11, 3/12, 4/13."""
    model = ema_gan(ema=0.999, ema_start=0)
    initial = [np.array(v.numpy()) for v in model.generator.weights]
    history = run_steps(model, 1)
    for variable, w0, w1, raw in zip(model.ema_generator.weights, initial, history[0], model.generator.weights,
                                     strict=True):
        if raw.trainable:
            np.testing.assert_allclose(variable.numpy(), 2 / 11 * w0 + 9 / 11 * w1, rtol=1e-5, atol=1e-7)
    history += run_steps(model, 2)
    expected = ema_closed_form(initial, history, 0.999, 0)
    for variable, want, raw in zip(model.ema_generator.weights, expected, model.generator.weights, strict=True):
        if raw.trainable:
            np.testing.assert_allclose(variable.numpy(), want, rtol=1e-5, atol=1e-7)
    assert float(model.technique("ema").decay(1)) == pytest.approx(2 / 11)
    assert float(model.technique("ema").decay(10**6)) == pytest.approx(0.999)


# ---- unrolling ----------------------------------------------------------------------


def test_unroll_trains_g_against_the_unrolled_discriminator(monkeypatch):
    """G's SGD update equals minus the gradient of its loss on `kgan.unrolled.unrolled_outputs`
    (K = 2, D's learning rate), recomputed by hand with the same draws; D's update is the plain one."""
    from kgan import unrolled

    calls = []
    real_function = unrolled.unrolled_outputs

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return real_function(*args, **kwargs)

    monkeypatch.setattr(unrolled, "unrolled_outputs", spy)
    keras.utils.set_random_seed(0)
    generator, discriminator = mlp_pair()
    model = gan.GAN(generator, discriminator, seed=0, unroll=2)
    model.compile(keras.optimizers.SGD(0.5), keras.optimizers.SGD(0.1), loss="non_saturating")
    g0 = [np.array(v.numpy()) for v in generator.trainable_variables]
    model.train_step(tf.constant(POINTS))  # eager
    (args, kwargs), = calls
    assert kwargs["steps"] == 2 and kwargs["optimizer"] is model.d_optimizer and args[0] is discriminator
    np.testing.assert_array_equal(np.array(args[2]), POINTS)  # the critic's real batch
    assert args[3] is args[4]  # unrolled on the fake batch, evaluated on it

    g1 = [np.array(v.numpy()) for v in generator.trainable_variables]
    for v, w in zip(generator.trainable_variables, g0, strict=True):
        v.assign(w)
    noise = seeds.seed_generator(0, "latent")  # the model's latent stream
    keras.random.normal((16, 3), seed=noise)  # the critic update's draw
    z = keras.random.normal((16, 3), seed=noise)
    with tf.GradientTape() as tape:
        fake = generator(z, training=True)
        outputs = real_function(discriminator, model.loss_fn, tf.constant(POINTS), fake, fake, 2, model.d_optimizer)
        loss = tf.reduce_mean(model.loss_fn.generator_loss(outputs))
    gradients = tape.gradient(loss, generator.trainable_variables)
    for before, after, gradient in zip(g0, g1, gradients, strict=True):
        np.testing.assert_allclose(after, before - 0.1 * gradient.numpy(), rtol=1e-5, atol=1e-7)
    # ... and differs from the plain generator update (the unrolling matters here).
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(model.loss_fn.generator_loss(discriminator(generator(z, training=True))))
    plain = tape.gradient(loss, generator.trainable_variables)
    assert max(float(np.abs(a - b).max()) for a, b in zip(gradients, plain, strict=True)) > 1e-4


def test_unrolled_adam_under_fit_leaves_d_and_its_optimizer_to_their_own_updates():
    """unroll 3 with Adam in `fit` (tf.function): D's optimizer counts only D's real updates, and
    the unrolled run differs from unroll 0 only through G (D's first update is the same)."""
    def run(unroll, **options):
        model = image_gan(unroll=unroll, **options)
        model.fit(IMAGES, batch_size=16, epochs=1, verbose=0, shuffle=False)
        return model

    plain, unrolled_model = run(0), run(3)
    assert int(unrolled_model.d_optimizer.iterations) == 2 and int(unrolled_model.g_optimizer.iterations) == 2
    assert max(float(np.abs(a - b).max()) for a, b in zip(weights(plain), weights(unrolled_model), strict=True)) > 0
    sgd_model = run(2, unroll_optimizer="sgd", unroll_lr=0.1)
    assert sgd_model.get_config()["unroll_lr"] == 0.1 and int(sgd_model.d_optimizer.iterations) == 2
    with pytest.raises(ValueError, match="unroll_lr"):
        gan.GAN(*mlp_pair(), unroll=2, unroll_optimizer="sgd")
    with pytest.raises(ValueError, match="unroll_lr"):
        gan.GAN(*mlp_pair(), unroll=2, unroll_lr=0.1)


@pytest.mark.parametrize("argv, expected", [
    (["--unroll", "2", "--unroll-optimizer", "sgd"], "--unroll-lr"),
    (["--unroll", "2", "--unroll-lr", "0.1"], "--unroll-lr"),
    (["--unroll", "2", "--unroll-optimizer", "sgd", "--unroll-lr", "0"], "--unroll-lr"),
])
def test_unroll_sgd_needs_its_own_learning_rate_on_the_command_line(tmp_path, capsys, monkeypatch, argv, expected):
    from kgan import cli, run
    from kgan.config import TrainConfig

    model = run.build(TrainConfig(unroll=2, unroll_optimizer="sgd", unroll_lr=0.05), (8, 8, 1))
    assert (model.unroll_optimizer, model.unroll_lr) == ("sgd", 0.05)
    assert float(model.technique("unroll").optimizer(model).learning_rate.numpy()) == pytest.approx(0.05)
    plain = run.build(TrainConfig(unroll=2), (8, 8, 1))
    assert plain.technique("unroll").optimizer(plain) is plain.d_optimizer
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--epochs", "1", *argv])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and expected in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


# ---- historical averaging -------------------------------------------------------------------


def historical_run(d_lr, g_lr, weight, steps=2, d_steps=1):
    keras.utils.set_random_seed(0)
    generator, discriminator = mlp_pair()
    model = gan.GAN(generator, discriminator, seed=0, d_steps=d_steps, historical_averaging=weight)
    model.compile(keras.optimizers.SGD(d_lr), keras.optimizers.SGD(g_lr), loss="hinge")
    history = {"d": [[np.array(v.numpy()) for v in discriminator.trainable_variables]],
               "g": [[np.array(v.numpy()) for v in generator.trainable_variables]]}
    spy, original = history["d"], model._discriminator_step

    def step(real):
        outputs = original(real)
        spy.append([np.array(v.numpy()) for v in discriminator.trainable_variables])
        return outputs

    model._discriminator_step = step
    data = np.random.default_rng(3).normal(size=(16 * d_steps, 2)).astype("float32")
    for _ in range(steps):
        model.train_step(tf.constant(data))
        history["g"].append([np.array(v.numpy()) for v in generator.trainable_variables])
    return model, history


@pytest.mark.parametrize("player", ["d", "g"])
def test_historical_averaging_adds_the_penalty_gradient_to_each_players_update(player):
    """Step 1: theta_0 = mean, no penalty gradient. Step 2: the mean is (theta_0 + theta_1) / 2,
    so the update gains -lr 2w (theta_1 - mean) = -lr w (theta_1 - theta_0). The other player
    does not move (lr 0), so both runs see the same adversarial gradients."""
    lr, weight = 0.1, 5.0
    d_lr, g_lr = (lr, 0.0) if player == "d" else (0.0, lr)
    _, plain = historical_run(d_lr, g_lr, 0.0)
    model, penalised = historical_run(d_lr, g_lr, weight)
    assert_bit_equal(plain[player][1], penalised[player][1])
    theta0, theta1 = penalised[player][0], penalised[player][1]
    for a, b, t0, t1 in zip(plain[player][2], penalised[player][2], theta0, theta1, strict=True):
        np.testing.assert_allclose(a - b, lr * weight * (t1 - t0), rtol=1e-3, atol=1.2e-7)
    assert max(float(np.abs(t1 - t0).max()) for t0, t1 in zip(theta0, theta1, strict=True)) > 1e-3


def test_historical_averages_are_updated_after_every_update_and_checkpointed(tmp_path):
    model, history = historical_run(1e-1, 1e-1, 0.5, steps=3, d_steps=2)
    for player, regularizer, expect_count in (("d", model.d_historical, 7), ("g", model.g_historical, 4)):
        assert int(regularizer.count.numpy()) == expect_count == len(history[player])
        for i, mean in enumerate(regularizer.means):  # the plain mean of every value taken
            np.testing.assert_allclose(mean.numpy(), np.mean([h[i] for h in history[player]], axis=0), rtol=1e-5,
                                       atol=1e-7)
    variables = model.discriminator.trainable_variables
    expected = 0.5 * sum(np.sum((v.numpy() - m.numpy()) ** 2) for v, m in zip(variables, model.d_historical.means, strict=False))
    np.testing.assert_allclose(float(model.d_historical(variables)), expected, rtol=1e-5)
    assert expected > 0
    model.save_weights(tmp_path / "gan.weights.h5")
    other, _ = historical_run(1e-1, 1e-1, 0.5, steps=0, d_steps=2)
    other.load_weights(tmp_path / "gan.weights.h5")
    for a, b in zip(model.d_historical.weights + model.g_historical.weights,
                    other.d_historical.weights + other.g_historical.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


# ---- gradient-norm clipping -----------------------------------------------------------------


def test_clip_grad_norm_applies_the_clipped_global_gradient():
    clip = 0.05
    keras.utils.set_random_seed(0)
    generator, discriminator = mlp_pair()
    model = gan.GAN(generator, discriminator, seed=0, clip_grad_norm=clip, track_gradient_norms=True)
    model.compile(keras.optimizers.SGD(1.0), keras.optimizers.SGD(1.0), loss="hinge")
    g0 = [np.array(v.numpy()) for v in generator.trainable_variables]
    d0 = [np.array(v.numpy()) for v in discriminator.trainable_variables]
    history = model.fit(POINTS, batch_size=16, epochs=1, verbose=0, shuffle=False).history
    g1 = [np.array(v.numpy()) for v in generator.trainable_variables]
    d1 = [np.array(v.numpy()) for v in discriminator.trainable_variables]

    # Reference gradients at the weights each update saw, with the same noise draws.
    noise = seeds.seed_generator(0, "latent")  # the model's latent stream
    z_d, z_g = keras.random.normal((16, 3), seed=noise), keras.random.normal((16, 3), seed=noise)
    loss = model.loss_fn
    for v, w in zip(generator.trainable_variables + discriminator.trainable_variables, g0 + d0, strict=True):
        v.assign(w)
    with tf.GradientTape() as tape:
        d = tf.reduce_mean(loss.discriminator_loss(discriminator(POINTS), discriminator(generator(z_d))))
    d_grad = [g.numpy() for g in tape.gradient(d, discriminator.trainable_variables)]
    for v, w in zip(discriminator.trainable_variables, d1, strict=True):
        v.assign(w)  # G's update sees the updated D
    with tf.GradientTape() as tape:
        g = tf.reduce_mean(loss.generator_loss(discriminator(generator(z_g))))
    g_grad = [g.numpy() for g in tape.gradient(g, generator.trainable_variables)]

    for before, after, grad, name in ((d0, d1, d_grad, "d"), (g0, g1, g_grad, "g")):
        norm = np.sqrt(sum(np.sum(x.astype("float64") ** 2) for x in grad))
        assert norm > 2 * clip, (name, norm)  # clipping is active
        np.testing.assert_allclose(history[f"{name}_grad_norm"][0], norm, rtol=1e-5)  # logged before clipping
        step = [b - a for a, b in zip(after, before, strict=True)]  # lr 1: the applied gradient
        for applied, x in zip(step, grad, strict=True):
            np.testing.assert_allclose(applied, x * clip / norm, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(np.sqrt(sum(np.sum(s.astype("float64") ** 2) for s in step)), clip, rtol=1e-3)
