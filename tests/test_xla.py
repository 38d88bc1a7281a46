"""`--xla`: which runs compile their step with XLA, and that such a step computes what the plain one does."""

import json

import keras
import numpy as np
import pytest

from kgan import cli, distribute, gan, losses, networks


@pytest.mark.parametrize("name, shape, replicas, expected", [
    ("on", (2,), 2, True), ("off", (8, 8, 1), 1, False),
    ("auto", (8, 8, 1), 1, True), ("auto", (16, 16, 3), 1, True),  # per-op overhead dominates: measured faster
    ("auto", (32, 32, 3), 1, False),  # measured slower
    ("auto", (2,), 1, False),  # the mixture MLP: no gain measured
    ("auto", (8, 8, 1), 2, False),  # several replicas: not measured
])
def test_resolve_xla(name, shape, replicas, expected):
    on, reason = distribute.resolve_xla(name, shape, replicas)
    assert on is expected
    assert (reason is None) == (name != "auto")
    # The compile (about 2 s) pays only over a long enough run.
    assert distribute.resolve_xla(name, shape, replicas, steps=distribute.XLA_MIN_STEPS)[0] is expected
    short = distribute.resolve_xla(name, shape, replicas, steps=distribute.XLA_MIN_STEPS - 1)
    assert short[0] is (expected and name == "on")
    # Keras 3 compiles nothing with XLA under op determinism: auto says so.
    assert distribute.resolve_xla("auto", shape, replicas, deterministic=True) == (
        False, "--deterministic (Keras runs no XLA under op determinism)")


def test_xla_on_with_deterministic_is_refused_before_anything_is_written(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--xla", "on", "--deterministic", "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert "--xla on cannot be combined with --deterministic" in err and not (tmp_path / "out").exists()


def _trained_weights(jit_compile):
    keras.utils.set_random_seed(0)
    generator, discriminator = networks.build((8, 8, 1), 8)
    model = gan.GAN(generator, discriminator, seed=0, ema=0.9, feature_matching=0.5)
    # SGD: the update is linear in the gradient (Adam's m / sqrt(v) would turn a rounding
    # difference in a near-zero gradient into a whole step of either sign).
    model.compile(d_optimizer=keras.optimizers.SGD(0.1), g_optimizer=keras.optimizers.SGD(0.1),
                  loss=losses.Minkowski(p=4), jit_compile=jit_compile)
    images = np.random.default_rng(0).uniform(-1, 1, (64, 8, 8, 1)).astype("float32")
    history = model.fit(images, batch_size=16, epochs=1, verbose=0, shuffle=False).history
    return [w.numpy() for w in model.weights], history


@pytest.fixture
def fixed_noise(monkeypatch):
    """The latent noise as a fixed function of its shape. A seeded draw differs between an XLA step
    and a plain one (XLA has its own random-number kernels: another stream for the same seed and
    algorithm, which is why a run records --xla); with the noise fixed, both compute the same maths."""
    import tensorflow as tf

    def normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
        size = tf.reduce_prod(tf.cast(tf.stack(list(shape)), tf.int32))
        return tf.reshape(tf.sin(tf.cast(tf.range(size), dtype or "float32")), shape)

    monkeypatch.setattr(keras.random, "normal", normal)


def test_an_xla_step_computes_the_plain_step_s_numbers(fixed_noise):
    (plain, plain_logs), (compiled, compiled_logs) = _trained_weights(False), _trained_weights(True)
    assert len(plain) == len(compiled) and set(plain_logs) == set(compiled_logs)
    for name, values in plain_logs.items():
        np.testing.assert_allclose(compiled_logs[name], values, rtol=1e-4, err_msg=name)
    for a, b in zip(plain, compiled, strict=True):  # fused ops round differently, nothing more
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)


def test_kgan_train_records_what_xla_auto_chose(tmp_path, capsys):
    roots = [f"--{k}={tmp_path / k}" for k in ("output", "logdir", "checkpoint-dir")]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--epochs", "1", "--steps-per-epoch", "3", "--batch-size", "16", "--metrics", "none",
                  "--run-name", "r", *roots])
    assert exit_info.value.code == 0
    assert "kgan: --xla auto chose off: 3 steps (compiling pays from about 2000)" in capsys.readouterr().out
    report = json.loads((tmp_path / "output" / "r" / "config.json").read_text())
    assert report["xla"] == "off" and report["config"]["xla"] == "auto"
    with pytest.raises(SystemExit):
        cli.main(["train", "--epochs", "1", "--steps-per-epoch", "3", "--batch-size", "16", "--metrics", "none",
                  "--run-name", "x", "--xla", "on", *roots])
    assert json.loads((tmp_path / "output" / "x" / "config.json").read_text())["xla"] == "on"  # compiled
    with pytest.raises(SystemExit):
        cli.main(["train", "--epochs", "1", "--steps-per-epoch", "3", "--batch-size", "16", "--metrics", "none",
                  "--run-name", "d", "--deterministic", *roots])
    assert "kgan: --xla auto chose off: --deterministic" in capsys.readouterr().out
    assert json.loads((tmp_path / "output" / "d" / "config.json").read_text())["xla"] == "off"
