"""kgan.augment: DiffAugment ops against NumPy versions of the official maths, gating, ADA.

The 2-replica checks run in ONE subprocess (`python -m tests.test_augment`): the CPU must be
split into 2 logical devices before TensorFlow initialises, which the pytest process has done.
"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from kgan import augment, seeds


def _images(shape=(6, 8, 10, 3), seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype("float32")


# ----------------------------------------------------------------------------------------------
# NumPy references of the official DiffAugment_tf.py maths (explicit parameters).


def np_brightness(x, b):
    return x + b[:, None, None, None]


def np_saturation(x, s):
    mean = x.mean(axis=3, keepdims=True)
    return (x - mean) * s[:, None, None, None] + mean


def np_contrast(x, c):
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    return (x - mean) * c[:, None, None, None] + mean


def np_shift(image, dy, dx):
    """np.roll by (dy, dx) with zeros instead of wrap-around; image [H, W, C]."""
    out = np.roll(image, (dy, dx), axis=(0, 1))
    h, w = image.shape[:2]
    if dy > 0:
        out[:dy] = 0
    elif dy < 0:
        out[h + dy:] = 0
    if dx > 0:
        out[:, :dx] = 0
    elif dx < 0:
        out[:, w + dx:] = 0
    return out


def np_translation(x, shift):
    return np.stack([np_shift(image, int(dy), int(dx)) for image, (dy, dx) in zip(x, shift, strict=False)])


def np_cutout(x, corner, size):
    out = x.copy()
    for image, (top, left) in zip(out, corner, strict=False):
        image[max(top, 0):max(top + size[0], 0), max(left, 0):max(left + size[1], 0)] = 0
    return out


def np_official_cutout_corner(offset, image_size):
    """The official corner: offset - cut // 2 (offset uniform in [0, size + 1 - cut % 2))."""
    return offset - augment.cutout_size(image_size) // 2


NP_OPS = {"brightness": np_brightness, "saturation": np_saturation, "contrast": np_contrast,
          "translation": np_translation}


# ----------------------------------------------------------------------------------------------
# The ops with fixed draws.


def test_color_ops_equal_the_official_formulas():
    x = _images()
    b = np.array([-0.5, -0.2, 0.0, 0.1, 0.3, 0.49], "float32")
    s = np.array([0.0, 0.5, 1.0, 1.3, 1.7, 1.99], "float32")
    c = np.array([0.5, 0.7, 1.0, 1.1, 1.4, 1.49], "float32")
    np.testing.assert_allclose(augment.brightness(x, b), np_brightness(x, b), atol=1e-6)
    np.testing.assert_allclose(augment.saturation(x, s), np_saturation(x, s), atol=1e-6)
    np.testing.assert_allclose(augment.contrast(x, c), np_contrast(x, c), atol=1e-6)
    # Saturation 0 makes every pixel grey (its channel mean); contrast keeps the image mean.
    grey = np.asarray(augment.saturation(x, s))[0]
    np.testing.assert_allclose(grey, np.repeat(x[0].mean(axis=2, keepdims=True), 3, axis=2), atol=1e-6)
    np.testing.assert_allclose(np.asarray(augment.contrast(x, c)).mean(axis=(1, 2, 3)), x.mean(axis=(1, 2, 3)),
                               atol=1e-6)


def test_translation_is_a_zero_filled_roll():
    x = _images((7, 8, 10, 2))  # H != W: the two axes are not mixed up
    shift = np.array([[0, 0], [1, 0], [0, -1], [-3, 2], [7, -9], [8, 10], [-8, -10]], "int32")
    out = np.asarray(augment.translation(x, shift))
    np.testing.assert_array_equal(out, np_translation(x, shift))
    np.testing.assert_array_equal(out[0], x[0])
    np.testing.assert_array_equal(out[1, 1:], x[1, :-1])  # down by one row
    np.testing.assert_array_equal(out[1, 0], 0.0)
    assert not out[5].any() and not out[6].any()  # shifted out entirely
    # The official reading convention, out[i] = x[i + t], is a shift by -t.
    t = 2
    padded = np.pad(x[3], ((1, 1), (0, 0), (0, 0)))
    official = padded[np.clip(np.arange(8) + t + 1, 0, 9)]
    np.testing.assert_array_equal(np.asarray(augment.translation(x[3:4], [[-t, 0]]))[0], official)


def test_cutout_zeroes_exactly_the_clipped_square():
    x = _images((5, 8, 10, 3)) + 2.0  # no zeros in the input: every zero is the cutout
    corner = np.array([[0, 0], [2, 3], [-3, -4], [6, 8], [-4, 9]], "int32")
    size = (4, 5)
    out = np.asarray(augment.cutout(x, corner, size))
    np.testing.assert_array_equal(out, np_cutout(x, corner, size))
    zeros = (out == 0).all(axis=3).sum(axis=(1, 2))
    # 4 x 5 inside; clipped to 1 x 1 at the top-left, 2 x 2 at the bottom-right; off the image.
    assert zeros.tolist() == [20, 20, 1, 4, 0]
    assert (out[1, 2:6, 3:8] == 0).all() and (out[1][:, :3] != 0).all()


def test_parameters_have_the_official_ranges():
    n = 20000
    u = np.random.default_rng(0).uniform(0, 1, (n, 2)).astype("float32")
    u[:2] = [[0.0, 0.0], [np.nextafter(np.float32(1), np.float32(0))] * 2]  # the extremes of U[0, 1)
    shape = (32, 28, 3)
    b = np.asarray(augment.parameters("brightness", u, shape))
    s = np.asarray(augment.parameters("saturation", u, shape))
    c = np.asarray(augment.parameters("contrast", u, shape))
    np.testing.assert_allclose(b, u[:, 0] - 0.5)
    np.testing.assert_allclose(s, u[:, 0] * 2)
    np.testing.assert_allclose(c, u[:, 0] + 0.5)
    # Translation: int(32 * 0.125 + 0.5) = 4 and int(28 * 0.125 + 0.5) = 4 -> every integer in
    # [-4, 4], equally likely (chi-square-free check: each count within 5 sigma of n / 9).
    assert augment.translation_limit(32) == 4 and augment.translation_limit(28) == 4
    assert augment.translation_limit(8) == 1 and augment.translation_limit(64) == 8
    t = np.asarray(augment.parameters("translation", u, shape))
    for axis in range(2):
        values, counts = np.unique(t[:, axis], return_counts=True)
        assert values.tolist() == list(range(-4, 5))
        assert np.all(np.abs(counts - n / 9) < 5 * np.sqrt(n / 9))
    # Cutout: a 16 x 14 square (int(size / 2 + 0.5)), offset in [0, 33) and [0, 29) (official
    # maxval = size + 1 - cut % 2), corner = offset - cut // 2.
    assert augment.cutout_size(32) == 16 and augment.cutout_size(28) == 14 and augment.cutout_size(7) == 4
    corner = np.asarray(augment.parameters("cutout", u, shape))
    assert corner[:, 0].min() == np_official_cutout_corner(0, 32) == -8 and corner[:, 0].max() == 32 - 8
    assert corner[:, 1].min() == -7 and corner[:, 1].max() == 28 - 7
    assert len(np.unique(corner[:, 0])) == 33 and len(np.unique(corner[:, 1])) == 29


# ----------------------------------------------------------------------------------------------
# The layer.


def test_p_zero_and_inference_are_bitwise_identity():
    x = _images()
    for images in (x, tf.cast(x, "bfloat16")):
        out = augment.Augment(p=0.0, seed=1)(images, training=True)
        assert out.dtype == images.dtype
        np.testing.assert_array_equal(np.asarray(tf.cast(out, "float32")), np.asarray(tf.cast(images, "float32")))
        inference = augment.Augment(p=1.0, seed=1)(images, training=False)
        assert inference.dtype == images.dtype
        np.testing.assert_array_equal(np.asarray(tf.cast(inference, "float32")), np.asarray(tf.cast(images, "float32")))
    layer = augment.Augment(p=1.0, seed=1)
    layer.p.assign(0.0)  # the variable is what counts (ADA sets it)
    np.testing.assert_array_equal(layer(x, training=True), x)


def test_layer_equals_numpy_pipeline_with_its_own_draws():
    """The whole layer at p = 0.3, replayed in NumPy from the same seed's draws."""
    x = _images((32, 8, 8, 3))
    layer = augment.Augment("color,translation,cutout", p=0.3, seed=7)
    out = np.asarray(layer(x, training=True))
    replay = seeds.seed_generator(7, "augment")  # the layer's stream of run seed 7
    expected = x.copy()
    changed = np.zeros(len(x), bool)
    for op in layer.ops:
        u = np.asarray(keras.random.uniform((len(x), 3), seed=replay))
        gate = u[:, 0] < np.float32(0.3)
        assert 0 < gate.sum() < len(x)  # both branches of every op are exercised
        params = np.asarray(augment.parameters(op, u[:, 1:], x.shape[1:]))
        if op == "cutout":
            result = np_cutout(expected, params, (4, 4))
        else:
            result = NP_OPS[op](expected, params)
        expected = np.where(gate[:, None, None, None], result, expected)
        changed |= gate
    np.testing.assert_allclose(out, expected, atol=1e-5)
    np.testing.assert_array_equal(out[~changed], x[~changed])  # all gates off: untouched
    assert 0 < changed.sum() < len(x)


def test_every_example_changes_at_p1_and_about_half_at_p_half():
    x = _images((2000, 8, 8, 3)) + 2.0  # cutout always zeroes >= 1 pixel of a non-zero image
    out = np.asarray(augment.Augment("cutout", p=1.0, seed=0)(x))
    assert (out != x).any(axis=(1, 2, 3)).all()
    full = np.asarray(augment.Augment(p=1.0, seed=0)(x[:200]))
    assert (full != x[:200]).any(axis=(1, 2, 3)).all()
    out = np.asarray(augment.Augment("cutout", p=0.5, seed=0)(x))
    fraction = (out != x).any(axis=(1, 2, 3)).mean()
    # Binomial(2000, 0.5): standard deviation 0.011; 5 sigma.
    assert abs(fraction - 0.5) < 5 * np.sqrt(0.25 / 2000), fraction
    # Each of the 5 ops is gated independently: an example is untouched with probability
    # 0.5^5 = 1/32 (brightness by exactly 0 has probability ~0).
    out = np.asarray(augment.Augment(p=0.5, seed=1)(x))
    untouched = (out == x).all(axis=(1, 2, 3)).mean()
    assert abs(untouched - 1 / 32) < 5 * np.sqrt(1 / 32 * 31 / 32 / 2000), untouched


def test_deterministic_by_seed():
    x = _images()
    a = np.asarray(augment.Augment(seed=3)(x))
    b = np.asarray(augment.Augment(seed=3)(x))
    c = np.asarray(augment.Augment(seed=4)(x))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0.1
    layer = augment.Augment(seed=3)
    first, second = np.asarray(layer(x)), np.asarray(layer(x))  # the seed state advances
    np.testing.assert_array_equal(first, a)
    assert np.abs(first - second).max() > 0.1


def test_gradients_flow_and_translation_gradient_is_the_shifted_weights():
    x = tf.constant(_images((4, 8, 8, 3)))
    weights = tf.constant(_images((4, 8, 8, 3), seed=1))
    shift = np.array([[1, -2], [0, 0], [-3, 3], [2, 1]], "int32")
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(weights * augment.translation(x, shift))
    gradient = tape.gradient(loss, x).numpy()
    # d/dx sum w * shift(x, s) = shift(w, -s)
    np.testing.assert_array_equal(gradient, np_translation(weights.numpy(), -shift))

    for policy in ("color", "translation", "cutout", "color,translation,cutout"):
        layer = augment.Augment(policy, p=1.0, seed=0)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(weights * layer(x, training=True))
        gradient = tape.gradient(loss, x).numpy()
        assert np.isfinite(gradient).all() and np.abs(gradient).sum() > 1.0, policy
    # Inside tf.function (graph: tf.cond around each op) the same gradient as eagerly.
    def gradient_of(layer, graph):
        def run(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(weights * layer(x, training=True))
            return tape.gradient(loss, x)
        return (tf.function(run) if graph else run)(x).numpy()

    eager = gradient_of(augment.Augment(p=0.5, seed=2), graph=False)
    np.testing.assert_allclose(gradient_of(augment.Augment(p=0.5, seed=2), graph=True), eager, atol=1e-6)
    assert np.isfinite(eager).all() and np.abs(eager - weights.numpy()).max() > 0.1
    # Gated off (p = 0): the identity's gradient, the weights themselves.
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(weights * augment.Augment(p=0.0, seed=0)(x, training=True))
    np.testing.assert_array_equal(tape.gradient(loss, x), weights)

    # Brightness: d/dx sum w (x + b) = w. Contrast: w c + (1 - c) mean(w) over the image.
    c = np.array([0.5, 0.8, 1.2, 1.5], "float32")
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        bright = tf.reduce_sum(weights * augment.brightness(x, [0.1, -0.2, 0.3, 0.4]))
        contrasted = tf.reduce_sum(weights * augment.contrast(x, c))
    np.testing.assert_allclose(tape.gradient(bright, x), weights, atol=1e-6)
    w = weights.numpy()
    expected = w * c[:, None, None, None] + (1 - c[:, None, None, None]) * w.mean(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(tape.gradient(contrasted, x), expected, atol=1e-6)


def test_mixed_bfloat16_keeps_the_input_dtype():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        layer = augment.AdaptiveAugment(p=1.0, seed=0)
        x = _images()
        assert layer(x).dtype == tf.float32  # not autocast to bfloat16
        out = layer(tf.cast(x, "bfloat16"))
        assert out.dtype == tf.bfloat16 and np.isfinite(np.asarray(tf.cast(out, "float32"))).all()
        assert layer.p.dtype == "float32" and layer.r_t.dtype == "float32"
        layer.update(tf.constant(np.ones((8, 1)), "bfloat16"))
    finally:
        keras.config.set_dtype_policy(previous)


def test_config_get_and_from_flag():
    layer = augment.AdaptiveAugment("translation, cutout", p=0.2, target=0.5, interval=3, speed_kimg=100, seed=5)
    config = layer.get_config()
    assert {k: config[k] for k in ("policy", "p", "seed", "target", "interval", "speed_kimg")} == {
        "policy": "translation,cutout", "p": 0.2, "seed": 5, "target": 0.5, "interval": 3, "speed_kimg": 100.0}
    clone = augment.AdaptiveAugment.from_config(config)
    assert clone.ops == ("translation", "cutout") and float(clone.p.numpy()) == pytest.approx(0.2)
    restored = augment.get(keras.saving.serialize_keras_object(layer))
    assert type(restored) is augment.AdaptiveAugment and restored.interval == 3
    assert augment.get(None) is None and augment.get(layer) is layer
    assert type(augment.get("diffaugment")) is augment.Augment
    assert type(augment.get("ada")) is augment.AdaptiveAugment
    with pytest.raises(ValueError, match="Could not interpret augment identifier"):
        augment.get("mixup")

    assert augment.from_flag(None) is None
    fixed = augment.from_flag("diffaugment", policy="color")
    assert type(fixed) is augment.Augment and float(fixed.p.numpy()) == 1.0 and fixed.ops == POLICY_COLOR
    ada = augment.from_flag("ada", target=0.7)
    assert type(ada) is augment.AdaptiveAugment and float(ada.p.numpy()) == 0.0 and ada.target == 0.7
    assert float(augment.from_flag("ada", p=0.3).p.numpy()) == pytest.approx(0.3)
    with pytest.raises(ValueError, match=r"^Unknown augmentation policy 'color,flip': use a comma-separated list "
                                         r"of color, translation, cutout\.$"):
        augment.from_flag("diffaugment", policy="color,flip")
    with pytest.raises(ValueError, match="use diffaugment or ada"):
        augment.from_flag("autoaugment")
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        augment.from_flag("ada", p=1.5)


POLICY_COLOR = ("brightness", "saturation", "contrast")


def test_weights_are_saved_and_restored_with_a_model(tmp_path):
    class Holder(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.augment = augment.AdaptiveAugment(seed=0)
            self.built = True

    saved = Holder()
    assert [w.name for w in saved.augment.non_trainable_weights] == ["p", "sign_sum", "count", "updates", "r_t"]
    assert not saved.augment.trainable_weights
    saved.augment.p.assign(0.25)
    saved.augment.update(np.ones((8, 1), "float32"))
    saved.save_weights(tmp_path / "w.weights.h5")
    loaded = Holder()
    loaded.load_weights(tmp_path / "w.weights.h5")
    assert float(loaded.augment.p.numpy()) == 0.25
    assert float(loaded.augment._sign_sum.numpy()) == 8.0 and int(loaded.augment._updates.numpy()) == 1


# ----------------------------------------------------------------------------------------------
# ADA.


def _feed(layer, outputs, n, function=True):
    update = tf.function(layer.update) if function else layer.update
    for _ in range(n):
        update(tf.constant(outputs))


def test_ada_p_rises_by_the_closed_form_when_d_overfits():
    batch, interval, speed = 16, 4, 500.0
    layer = augment.AdaptiveAugment(p=0.0, interval=interval, speed_kimg=speed, seed=0)
    step = batch * interval / (speed * 1000)  # 1.28e-4
    _feed(layer, np.full((batch, 1), 3.0, "float32"), 3)
    assert float(layer.p.numpy()) == 0.0 and float(layer.r_t.numpy()) == 0.0  # interval not complete
    _feed(layer, np.full((batch, 1), 3.0, "float32"), 1)
    assert float(layer.r_t.numpy()) == 1.0
    np.testing.assert_allclose(layer.p.numpy(), step, rtol=1e-6)
    _feed(layer, np.full((batch,), 0.5, "float32"), 4 * 9 + 2)  # [B] outputs too
    np.testing.assert_allclose(layer.p.numpy(), 10 * step, rtol=1e-5)
    assert int(layer._updates.numpy()) == 42 and float(layer._count.numpy()) == 2 * batch


def test_ada_p_falls_clips_at_zero_and_one_and_holds_at_the_target():
    batch = 8
    # r_t = (6 - 2) / 8 = 0.5 < 0.6: p falls by 8 * 2 / (0.04 * 1000) = 0.4 per interval.
    layer = augment.AdaptiveAugment(p=1.0, interval=2, speed_kimg=0.04, seed=0)
    mixed = np.array([1, 2, 3, 4, 5, 6, -1, -2], "float32")[:, None]
    _feed(layer, mixed, 2)
    np.testing.assert_allclose(layer.r_t.numpy(), 0.5)
    np.testing.assert_allclose(layer.p.numpy(), 0.6, rtol=1e-6)
    _feed(layer, mixed, 2)
    np.testing.assert_allclose(layer.p.numpy(), 0.2, rtol=1e-5)
    _feed(layer, mixed, 2, function=False)  # eagerly too
    assert float(layer.p.numpy()) == 0.0  # clipped
    _feed(layer, -np.ones((batch, 1), "float32"), 4)
    assert float(layer.p.numpy()) == 0.0 and float(layer.r_t.numpy()) == -1.0
    # Overfitting: +0.4 per interval, clipped at 1.
    _feed(layer, np.ones((batch, 1), "float32"), 2 * 4)
    assert float(layer.p.numpy()) == 1.0
    # r_t exactly at the target (sign 0; zero outputs count as sign 0): p holds.
    layer.p.assign(0.5)
    at_target = np.array([1, 1, 1, 1, 1, 1, -1, 0, 0, 0], "float32")  # (6 - 1) / 10 = 0.5
    held = augment.AdaptiveAugment(p=0.5, target=0.5, interval=2, speed_kimg=0.04)
    _feed(held, at_target, 6)
    assert float(held.p.numpy()) == 0.5 and float(held.r_t.numpy()) == 0.5


def test_fixed_augment_update_is_a_noop():
    layer = augment.Augment(p=0.7)
    layer.update(tf.ones((4, 1)))
    assert float(layer.p.numpy()) == pytest.approx(0.7)


# ----------------------------------------------------------------------------------------------
# Two replicas (subprocess).


def replicas(num_replicas):
    """Augments a global batch and trains ADA's p in `fit` on `num_replicas` CPU replicas."""
    from kgan import distribute

    strategy = distribute.get_strategy("mirrored", devices=2) if num_replicas > 1 else None
    strategy = strategy or tf.distribute.get_strategy()
    x = _images((8, 8, 8, 3))

    with strategy.scope():
        layer = augment.Augment(p=0.5, seed=3)

    @tf.function
    def augmented():
        batch = strategy.experimental_distribute_values_from_function(
            lambda ctx: x[ctx.replica_id_in_sync_group * (8 // ctx.num_replicas_in_sync):
                          (ctx.replica_id_in_sync_group + 1) * (8 // ctx.num_replicas_in_sync)])
        return strategy.run(lambda images: layer(images, training=True), args=(batch,))

    out = strategy.experimental_local_results(augmented())
    images = np.concatenate([np.asarray(o) for o in out])

    # ADA inside fit, used as GAN.train_step does: augment the real batch, D(real) -> update.
    # The first half of each global batch is positive and the second half negative, so the
    # global r_t is 0 (p falls) while the first replica alone has r_t = 1 (p would rise).
    class Probe(keras.Model):
        def __init__(self):
            super().__init__()
            self.augment = augment.AdaptiveAugment(p=0.9, interval=2, speed_kimg=0.032, seed=1)
            self.built = True

        def train_step(self, data):
            outputs = keras.ops.mean(self.augment(data, training=True), axis=(1, 2, 3))
            self.augment.update(outputs)
            return {"p": self.augment.p.value, "r_t": self.augment.r_t.value}

    with strategy.scope():
        probe = Probe()
        probe.compile()
    data = np.concatenate([np.full((4, 8, 8, 3), 5.0), np.full((4, 8, 8, 3), -5.0)] * 4).astype("float32")
    history = probe.fit(tf.data.Dataset.from_tensor_slices(data).batch(8), epochs=1, verbose=0, shuffle=False).history
    per_replica_p = [float(v.numpy()) for v in strategy.experimental_local_results(probe.augment.p.value)]
    return {
        "replicas": strategy.num_replicas_in_sync,
        "images": images.tolist(),
        "seed": np.asarray(layer.seed_generator.state.numpy()).tolist(),
        "p": per_replica_p,
        "r_t": float(probe.augment.r_t.numpy()),
        "updates": int(probe.augment._updates.numpy()),
        "logged_p": history["p"][-1],
    }


def test_two_replicas_equal_one_replica(two_replicas):
    one = replicas(1)
    two = two_replicas
    assert two["replicas"] == 2 and one["replicas"] == 1
    np.testing.assert_allclose(np.array(two["images"]), np.array(one["images"]), atol=1e-6)
    assert np.abs(np.array(one["images"]) - _images((8, 8, 8, 3))).max() > 0.1  # it did augment
    assert two["seed"] == one["seed"]
    # 4 updates of 8 outputs, interval 2: r_t = 0, so p = 0.9 - 2 * (8 * 2 / 32) = 0.9 - 1.0 -> 0.
    assert one["r_t"] == 0.0 and two["r_t"] == 0.0
    assert one["p"] == [0.0] and two["p"] == [0.0, 0.0]
    assert one["updates"] == two["updates"] == 4
    assert two["logged_p"] == one["logged_p"] == 0.0


if __name__ == "__main__":
    print(json.dumps(replicas(2)))


# ---- ADA's decision threshold, per loss (issue 14) -------------------------------------------

# Every loss ADA accepts, with the targets that move its threshold (smoothing, linear Minkowski).
ADA_LOSSES = {
    "non_saturating": {"class_name": "NonSaturating", "config": {}},
    "minimax_smoothed": {"class_name": "Minimax", "config": {"label_smoothing": 0.2}},
    "hinge": {"class_name": "Hinge", "config": {}},
    "least_squares": {"class_name": "LeastSquares", "config": {}},
    "least_squares_smoothed": {"class_name": "LeastSquares", "config": {"label_smoothing": 0.3}},
    "minkowski_sigmoid": {"class_name": "Minkowski", "config": {"p": 4}},
    "minkowski_sigmoid_smoothed": {"class_name": "Minkowski", "config": {"p": 3, "label_smoothing": 0.2}},
    "minkowski_linear": {"class_name": "Minkowski", "config": {"p": 4, "activation": "linear"}},
    "minkowski_linear_targets": {"class_name": "Minkowski",
                                 "config": {"p": 2, "activation": "linear", "real_target": 2.0, "fake_target": -1.0}},
}


def _undecided_output(loss_fn):
    """D's output when real and fake are the same distribution: argmin_c L_D(c, c) on a fine grid,
    independently of `decision_threshold` (the midpoint of the minimisers: hinge's are [-1, 1])."""
    grid = np.linspace(-6.0, 6.0, 120001).astype("float64")
    values = np.asarray(loss_fn.discriminator_loss(grid, grid), "float64")
    minimisers = grid[values <= values.min() + 1e-7]
    return float((minimisers[0] + minimisers[-1]) / 2)


def _threshold_gan(loss_fn, centre, spread, real_sign):
    """A GAN whose D outputs `centre + spread * tanh(20 mean(x)) * real_sign` on any image (a zero
    Dense adds nothing; lr 0: nothing moves) and ADA starting at p = 0, interval 1."""
    from kgan import gan, networks

    keras.utils.set_random_seed(0)
    generator, _ = networks.build((8, 8, 1), 8, batch_norm=False)
    x = keras.Input((8, 8, 1))
    flat = keras.layers.Flatten()(x)
    zero = keras.layers.Dense(1, kernel_initializer="zeros")(flat)
    signal = keras.layers.Lambda(lambda f: centre + spread * real_sign * keras.ops.tanh(
        20.0 * keras.ops.mean(f, axis=-1, keepdims=True)))(flat)
    discriminator = keras.Model(x, keras.layers.Add()([zero, signal]))
    ada = augment.AdaptiveAugment("translation", p=0.0, target=0.6, interval=1, speed_kimg=0.1, seed=1)
    model = gan.GAN(generator, discriminator, seed=0, augment=ada)
    model.compile(keras.optimizers.SGD(0.0), keras.optimizers.SGD(0.0), loss=loss_fn)
    return model


@pytest.mark.parametrize("name", sorted(ADA_LOSSES))
def test_ada_threshold_is_the_undecided_output_and_p_holds_for_an_undecided_d(name):
    """An undecided D (outputs at the loss's minimiser for real = fake, half the reals just above,
    half just below) gives r_t = 0 and p stays at 0; the old r_t = E[sign D(real)] read
    r_t = 1 for least squares / linear Minkowski (targets 0 and 1) and pushed p up at full speed."""
    from kgan import losses as losses_lib

    loss_fn = losses_lib.get(ADA_LOSSES[name])
    centre = _undecided_output(loss_fn)
    assert loss_fn.decision_threshold == pytest.approx(centre, abs=2e-4)
    images = np.where(np.arange(32)[:, None, None, None] % 2 == 0, 0.5, -0.5) * np.ones((32, 8, 8, 1))
    model = _threshold_gan(loss_fn, loss_fn.decision_threshold, 0.01, 1.0)
    model.fit(images.astype("float32"), batch_size=16, epochs=2, verbose=0, shuffle=False)
    assert float(model.augment.r_t.numpy()) == 0.0
    assert float(model.augment.p.numpy()) == 0.0


@pytest.mark.parametrize("name", sorted(ADA_LOSSES))
def test_ada_p_rises_for_an_overfitting_d_under_every_allowed_loss(name):
    """D confidently on the real side of its threshold on every real (0.3 above the undecided
    output): r_t = 1 > 0.6, so p rises by N / (speed_kimg * 1000) = 16 / 100 per update."""
    from kgan import losses as losses_lib

    loss_fn = losses_lib.get(ADA_LOSSES[name])
    images = 0.5 * np.ones((32, 8, 8, 1), "float32")  # every real has mean > 0
    model = _threshold_gan(loss_fn, loss_fn.decision_threshold, 0.3, 1.0)
    model.fit(images, batch_size=16, epochs=1, verbose=0, shuffle=False)
    assert float(model.augment.r_t.numpy()) == 1.0
    assert float(model.augment.p.numpy()) == pytest.approx(0.32, abs=1e-6)
    # ... and an underfitting one (on the fake side) lowers it back to 0 (it starts at 0: stays).
    low = _threshold_gan(loss_fn, loss_fn.decision_threshold, 0.3, -1.0)
    low.fit(images, batch_size=16, epochs=1, verbose=0, shuffle=False)
    assert float(low.augment.r_t.numpy()) == -1.0 and float(low.augment.p.numpy()) == 0.0


def test_ada_is_refused_with_a_wasserstein_loss(tmp_path, capsys, monkeypatch):
    """No decision threshold for a critic defined up to a constant: GAN.compile raises, and
    `kgan train --augment ada --loss wasserstein` is one line on stderr, exit 2, nothing written."""
    from kgan import cli, gan, networks
    from kgan import losses as losses_lib

    assert losses_lib.Wasserstein().decision_threshold is None
    generator, discriminator = networks.build((8, 8, 1), 8, batch_norm=False)
    model = gan.GAN(generator, discriminator, augment="ada")
    with pytest.raises(ValueError, match="decision threshold"):
        model.compile(keras.optimizers.SGD(0.0), keras.optimizers.SGD(0.0), loss="wasserstein")
    gan.GAN(generator, discriminator, augment="diffaugment").compile(
        keras.optimizers.SGD(0.0), keras.optimizers.SGD(0.0), loss="wasserstein")  # DiffAugment is fine
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--dataset", "digits", "--loss", "wasserstein", "--augment", "ada", "--epochs", "1"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "decision threshold" in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
