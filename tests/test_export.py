"""SavedModel export: both signatures from plain TensorFlow, saved_model_cli, truncation, errors,
and re-export from a run's saved weights."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.stats
import tensorflow as tf

from kgan import export, networks, run

LATENT = 16
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny 8x8x1 image generator exported with a config.json asset: (path, generator, config)."""
    root = tmp_path_factory.mktemp("export")
    config = {"config": {"latent_dim": LATENT, "seed": 3}, "dataset": {"shape": [8, 8, 1]}}
    config_path = root / "config.json"
    config_path.write_text(json.dumps(config))
    generator, _ = networks.build((8, 8, 1), LATENT)
    path = export.export_generator(generator, str(root / "generator"), config_path=str(config_path))
    return path, generator, config


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(exported[0])


def call_sample(model, num, seed, truncation):
    return model.signatures["sample"](
        num=tf.constant(num, tf.int32), seed=tf.constant(seed, tf.int64), truncation=tf.constant(truncation)
    )


def test_a_tensorflow_only_process_calls_both_signatures(exported):
    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        import tensorflow as tf
        model = tf.saved_model.load({exported[0]!r})
        z = tf.random.stateless_normal((5, {LATENT}), seed=[1, 2])
        served = model.signatures["serving_default"](latent=z)["images"].numpy()
        def sample(num, seed, t):
            return model.signatures["sample"](num=tf.constant(num), seed=tf.constant(seed, tf.int64),
                                              truncation=tf.constant(t))
        a, b, c = sample(6, 7, 0.5), sample(6, 7, 0.5), sample(6, 8, 0.5)
        again = model.signatures["serving_default"](latent=a["latents"])["images"].numpy()
        requantised = np.round((np.clip(again, -1, 1) + 1) * 127.5).astype("uint8")
        print(json.dumps({{
            "served": [list(served.shape), str(served.dtype), float(served.min()), float(served.max())],
            "sample": [list(a["images"].shape), a["images"].dtype.name, int(a["images"].numpy().min()),
                       int(a["images"].numpy().max()), list(a["latents"].shape)],
            "same_seed_same": bool(np.array_equal(a["images"].numpy(), b["images"].numpy())
                                   and np.array_equal(a["latents"].numpy(), b["latents"].numpy())),
            "other_seed_differs": bool(not np.array_equal(a["latents"].numpy(), c["latents"].numpy())
                                       and not np.array_equal(a["images"].numpy(), c["images"].numpy())),
            "max_abs_latent": float(np.abs(a["latents"].numpy()).max()),
            "images_are_the_generator_at_latents": int(np.abs(requantised.astype(int)
                                                             - a["images"].numpy().astype(int)).max()),
            "config": json.loads(open(model.config_json.asset_path.numpy().decode()).read()),
            "kgan_loaded": "kgan" in sys.modules,  # (TensorFlow itself may import keras)
        }}))
    """)
    result = subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    shape, dtype, low, high = out["served"]
    assert shape == [5, 8, 8, 1] and dtype == "float32" and -1.0 <= low < high <= 1.0
    shape, dtype, low, high, latents = out["sample"]
    assert shape == [6, 8, 8, 1] and dtype == "uint8" and 0 <= low < high <= 255 and latents == [6, LATENT]
    assert out["same_seed_same"] and out["other_seed_differs"]
    assert out["max_abs_latent"] <= 0.5
    assert out["images_are_the_generator_at_latents"] <= 1  # one quantisation step
    assert out["config"] == exported[2]
    assert out["kgan_loaded"] is False


def test_saved_model_cli_shows_both_signatures_and_runs_sample(exported):
    show = subprocess.run([SAVED_MODEL_CLI, "show", "--dir", exported[0], "--all"], env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert show.returncode == 0, show.stderr[-2000:]
    text = show.stdout
    default = text[text.index("signature_def['serving_default']"):]
    sample = text[text.index("signature_def['sample']"):text.index("signature_def['serving_default']")]
    assert "inputs['latent']" in default and f"shape: (-1, {LATENT})" in default
    assert "outputs['images']" in default and "shape: (-1, 8, 8, 1)" in default and "DT_FLOAT" in default
    for name, dtype in (("num", "DT_INT32"), ("seed", "DT_INT64"), ("truncation", "DT_FLOAT")):
        block = sample[sample.index(f"inputs['{name}']"):]
        assert block.split("dtype: ")[1].split()[0] == dtype and block.split("shape: ")[1].split()[0] == "()"
    images = sample[sample.index("outputs['images']"):]
    assert images.split("dtype: ")[1].split()[0] == "DT_UINT8" and "shape: (-1, 8, 8, 1)" in images
    assert "outputs['latents']" in sample and f"shape: (-1, {LATENT})" in sample

    run = subprocess.run([SAVED_MODEL_CLI, "run", "--dir", exported[0], "--tag_set", "serve", "--signature_def",
                          "sample", "--input_exprs", "num=2;seed=3;truncation=0.7"], env=ENV,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Result for output key images:" in run.stdout and "Result for output key latents:" in run.stdout
    latent = "[" + ",".join(["0.5"] * LATENT) + "]"
    run = subprocess.run([SAVED_MODEL_CLI, "run", "--dir", exported[0], "--tag_set", "serve", "--signature_def",
                          "serving_default", "--input_exprs", f"latent=[{latent}]"], env=ENV,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Result for output key images:" in run.stdout


def test_truncated_latents_are_a_standard_normal_restricted_to_the_threshold():
    t = 0.7
    z = export.truncated_normal([2000, 50], seed=5, truncation=t).numpy().ravel()
    assert z.dtype == np.float32 and np.abs(z).max() <= t
    assert np.abs(z).max() > 0.99 * t  # the whole interval is used
    assert scipy.stats.kstest(z, scipy.stats.truncnorm(-t, t).cdf).pvalue > 1e-3
    plain = export.truncated_normal([2000, 50], seed=5, truncation=0.0).numpy().ravel()
    assert np.abs(plain).max() > 3.0
    assert scipy.stats.kstest(plain, scipy.stats.norm.cdf).pvalue > 1e-3
    # Deterministic by seed, different across seeds.
    np.testing.assert_array_equal(z, export.truncated_normal([2000, 50], seed=5, truncation=t).numpy().ravel())
    assert not np.array_equal(z, export.truncated_normal([2000, 50], seed=6, truncation=t).numpy().ravel())


def test_a_tiny_threshold_holds_for_every_component_the_graph_uses(loaded):
    latents = call_sample(loaded, 64, 0, 0.01)["latents"].numpy()
    assert latents.shape == (64, LATENT) and np.abs(latents).max() <= 0.01 and np.abs(latents).max() > 0.009
    latents = call_sample(loaded, 64, 0, 0.0)["latents"].numpy()
    assert np.abs(latents).max() > 2.0  # 0 means no truncation


def test_wrong_requests_fail_with_errors_naming_the_expected_input(loaded):
    serve = loaded.signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"\[2,5\] is not compatible with expected shape \[\?,{LATENT}\]"):
        serve(latent=tf.zeros([2, 5]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected to be a float tensor but is a double tensor"):
        serve(latent=tf.zeros([2, LATENT], tf.float64))
    with pytest.raises(tf.errors.InvalidArgumentError, match="`num` must be >= 0"):
        call_sample(loaded, -1, 0, 0.5)
    with pytest.raises(tf.errors.InvalidArgumentError, match="`truncation` must be >= 0"):
        call_sample(loaded, 2, 0, -0.5)


def test_point_generators_sample_float_points(tmp_path):
    generator, _ = networks.build((2,), 8)
    model = tf.saved_model.load(export.export_generator(generator, str(tmp_path / "points")))
    out = call_sample(model, 5, 1, 0.0)
    assert set(out) == {"points", "latents"}
    assert out["points"].shape == (5, 2) and out["points"].dtype == tf.float32
    np.testing.assert_allclose(out["points"].numpy(), generator(out["latents"]).numpy(), rtol=1e-5, atol=1e-6)
    assert not hasattr(model, "config_json")  # no config given, no asset


def test_export_replaces_an_existing_export_and_leaves_no_staging(tmp_path):
    generator, _ = networks.build((8, 8, 1), LATENT)
    path = str(tmp_path / "generator")
    os.makedirs(path)
    (tmp_path / "generator" / "stale.txt").write_text("old")
    export.export_generator(generator, path)
    assert sorted(os.listdir(tmp_path)) == ["generator"]
    assert not os.path.exists(os.path.join(path, "stale.txt"))
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))


def test_export_run_rebuilds_the_gan_from_config_json_and_saved_weights(tmp_path):
    from kgan.config import TrainConfig

    config = TrainConfig(latent_dim=LATENT, seed=1).resolved()
    gan = run.build(config, (8, 8, 1))
    gan.fit(tf.random.stateless_uniform((64, 8, 8, 1), [0, 1], -1, 1), batch_size=32, epochs=1, verbose=0)
    run_dir = tmp_path / config.run_name
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"config": config.to_dict(), "dataset": {"shape": [8, 8, 1]}}))
    export.save_gan_weights(gan, str(run_dir))

    path = run.export_run(config.run_name, str(tmp_path))
    model = tf.saved_model.load(path)
    z = tf.random.stateless_normal((4, LATENT), seed=[3, 4])
    np.testing.assert_allclose(model.signatures["serving_default"](latent=z)["images"].numpy(),
                               gan.generator(z, training=False).numpy(), atol=1e-6)
    assert json.loads(open(model.config_json.asset_path.numpy().decode()).read())["config"]["seed"] == 1


def _tiny_conditional_generator(num_classes=3, latent=4):
    import keras

    z = keras.Input((latent,), name="latent")
    y = keras.Input((), dtype="int32", name="labels")
    h = keras.layers.Concatenate()([z, keras.layers.Embedding(num_classes, 4)(y)])
    x = keras.layers.Reshape((8, 8, 1))(keras.layers.Dense(64, activation="tanh")(h))
    return keras.Model([z, y], x)


def test_conditional_generators_take_labels_in_both_signatures(tmp_path):
    from kgan import generate

    generator = _tiny_conditional_generator()
    with pytest.raises(ValueError, match="needs num_classes"):
        export.export_generator(generator, str(tmp_path / "no"))
    model = tf.saved_model.load(export.export_generator(generator, str(tmp_path / "cond"), num_classes=3))
    z = np.random.default_rng(0).standard_normal((5, 4)).astype("float32")
    labels = np.array([0, 2, 1, 1, 0], "int32")
    served = model.signatures["serving_default"](latent=tf.constant(z), labels=tf.constant(labels))["images"]
    np.testing.assert_allclose(served.numpy(), generator([z, labels]).numpy(), rtol=1e-5, atol=1e-6)
    cycled = generate.sample(model, 5, seed=1)
    np.testing.assert_array_equal(cycled["labels"], [0, 1, 2, 0, 1])  # no labels: classes in turn
    chosen = generate.sample(model, 5, seed=1, labels=labels)
    np.testing.assert_array_equal(chosen["labels"], labels)
    np.testing.assert_array_equal(chosen["latents"], cycled["latents"])  # same seed, same latents
    expected = generator([chosen["latents"], labels]).numpy()
    np.testing.assert_array_equal(chosen["images"], np.round((np.clip(expected, -1, 1) + 1) * 127.5).astype("uint8"))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"labels must be in \[0, num_classes\)"):
        model.signatures["serving_default"](latent=tf.constant(z[:1]), labels=tf.constant([3], tf.int32))


def test_generate_labels_flag(tmp_path, exported):
    from kgan import generate
    from kgan.errors import UsageError

    path = export.export_generator(_tiny_conditional_generator(), str(tmp_path / "cond"), num_classes=3)
    arrays = generate.generate(path, str(tmp_path / "g.npz"), num=4, labels=[2])
    np.testing.assert_array_equal(arrays["labels"], [2, 2, 2, 2])
    interpolated = generate.generate(path, str(tmp_path / "i.npz"), interpolate_steps=3, pairs=2)
    assert interpolated["linear"].shape == (2, 3, 8, 8, 1)
    with pytest.raises(UsageError, match="--labels needs a conditional generator"):
        generate.generate(exported[0], str(tmp_path / "u.npz"), num=2, labels=[1])
