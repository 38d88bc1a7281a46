"""MetricsCallback (TensorBoard, History, CSVLogger, ModelCheckpoint), gradient norms in
TensorBoard, SampleGrid, and the `kgan train` metric flags."""

import csv
import glob
import json
import os
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from kgan import callbacks, cli, data, evaluate, metrics, networks, plots
from kgan.errors import UsageError
from kgan.gan import GAN
from kgan.metrics import classifier as classifier_module
from tests.gan_helpers import read_scalars

EPOCHS, EVERY, SAMPLES = 4, 3, 200  # evaluations after epochs 1 (first), 3 (every 3rd), 4 (last)


@pytest.fixture(scope="module")
def quick_digits_classifier(tmp_path_factory):
    """A 1-epoch "classifier:digits" (an FCD network; accuracy does not matter here)."""
    net = metrics.load_classifier("digits", cache_dir=str(tmp_path_factory.mktemp("features")), epochs=1)
    assert net.distance_name == "FCD"
    return net


def tiny_gan(shape=(8, 8, 1)):
    keras.utils.set_random_seed(0)
    generator, discriminator = networks.build(shape, 16)
    model = GAN(generator, discriminator, latent_dim=16, seed=0, track_gradient_norms=True)
    model.compile(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-3), loss="non_saturating")
    return model


@pytest.fixture(scope="module")
def trained(quick_digits_classifier, tmp_path_factory):
    """One short fit with MetricsCallback first, then TensorBoard, ModelCheckpoint and CSVLogger."""
    root = tmp_path_factory.mktemp("run")
    real, _ = data.digits_arrays()
    model = tiny_gan()
    metrics_cb = callbacks.MetricsCallback(["fcd", "kid"], real, features=quick_digits_classifier,
                                           logdir=str(root / "logs"), every=EVERY, num_samples=SAMPLES, seed=7,
                                           kid_subsets=5)
    checkpoint_path = str(root / "best-{epoch}.weights.h5")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(
            real[:256], batch_size=64, epochs=EPOCHS, verbose=0, shuffle=False,
            callbacks=[
                metrics_cb,
                keras.callbacks.TensorBoard(str(root / "logs"), update_freq=1, write_graph=False),
                keras.callbacks.ModelCheckpoint(checkpoint_path, monitor="fcd", mode="min", save_best_only=True,
                                                save_weights_only=True),
                keras.callbacks.CSVLogger(str(root / "log.csv")),
            ],
        ).history
    return {"root": root, "model": model, "history": history, "callback": metrics_cb, "real": real,
            "warnings": [str(w.message) for w in caught]}


def test_metrics_are_in_history_and_equal_the_metric_on_the_same_samples(trained, quick_digits_classifier):
    history, model, real = trained["history"], trained["model"], trained["real"]
    net = quick_digits_classifier
    assert len(history["fcd"]) == EPOCHS and len(history["kid"]) == EPOCHS
    # After fit the generator is the last epoch's: the last evaluation scored these samples.
    samples = model.generate(SAMPLES, seed=7)
    fake, real_features = net.features(samples), net.features(real)
    expected = metrics.frechet_distance(real_features, fake)
    assert history["fcd"][-1] == pytest.approx(expected, rel=1e-9)
    kid = metrics.kernel_inception_distance(real_features, fake, num_subsets=5)
    assert history["kid"][-1] == pytest.approx(kid["mean"], rel=1e-9)
    assert history["kid_std"][-1] == pytest.approx(kid["std"], rel=1e-9)
    assert trained["callback"].last_epoch == EPOCHS and len(trained["callback"].seconds) == 3
    # Epoch 2 is not evaluated: it carries epoch 1's values; the others are fresh evaluations.
    assert history["fcd"][1] == history["fcd"][0]
    assert len({history["fcd"][0], history["fcd"][2], history["fcd"][3]}) == 3


def test_metrics_scalars_are_in_the_tensorboard_event_file(trained):
    scalars = read_scalars(str(trained["root"] / "logs" / "metrics"))
    history = trained["history"]
    assert [step for step, _ in scalars["fcd"]] == [1, 3, 4]  # only the evaluated epochs
    assert [v for _, v in scalars["fcd"]] == pytest.approx([history["fcd"][i] for i in (0, 2, 3)], rel=1e-6)
    assert [v for _, v in scalars["kid"]] == pytest.approx([history["kid"][i] for i in (0, 2, 3)], rel=1e-6)


def test_gradient_norms_reach_tensorboard(trained):
    scalars = read_scalars(str(trained["root"] / "logs" / "train"))
    history = trained["history"]
    for name in ("d_grad_norm", "g_grad_norm"):
        epoch_values = [v for _, v in sorted(scalars[f"epoch_{name}"])]
        assert epoch_values == pytest.approx(history[name], rel=1e-6)
        assert all(v > 0 for v in epoch_values)
        assert len(scalars[f"batch_{name}"]) == EPOCHS * 4  # every step (256 / 64 per epoch)


def test_model_checkpoint_monitoring_fcd_saves_exactly_the_improvements(trained):
    fcd = trained["history"]["fcd"]
    improved, best = [], np.inf
    for epoch, value in enumerate(fcd, start=1):
        if value < best:
            improved.append(epoch)
            best = value
    saved = sorted(int(os.path.basename(p)[5:-11]) for p in glob.glob(str(trained["root"] / "best-*.weights.h5")))
    assert saved == improved and saved[0] == 1
    assert not [w for w in trained["warnings"] if "fcd" in w], trained["warnings"]


def test_csv_logger_sees_the_metrics(trained):
    with open(trained["root"] / "log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(r["fcd"]) for r in rows] == pytest.approx(trained["history"]["fcd"], rel=1e-12)


def test_metrics_callback_order_matters():
    """Placed after a callback that reads logs, that callback does not see the metrics."""

    class Seen(keras.callbacks.Callback):
        keys = None

        def on_epoch_end(self, epoch, logs=None):
            Seen.keys = set(logs)

    points, _ = data.mixture_samples("ring8", 512, seed=0)
    model = tiny_gan((2,))
    metrics_cb = callbacks.MetricsCallback(["modes"], dataset="ring8", every=1, num_samples=500)
    model.fit(points, batch_size=128, epochs=1, verbose=0, shuffle=False, callbacks=[Seen(), metrics_cb])
    assert "modes" not in Seen.keys
    history = model.fit(points, batch_size=128, epochs=1, verbose=0, shuffle=False, callbacks=[metrics_cb, Seen()])
    assert {"modes", "hq_percent", "reverse_kl"} <= Seen.keys
    expected = metrics.mode_metrics(model.generate(500, seed=0), "ring8")
    assert history.history["modes"] == [expected["modes_captured"]]
    assert history.history["hq_percent"] == [expected["high_quality_percent"]]


def test_parse_metrics_defaults_and_errors():
    assert evaluate.parse_metrics(None, "digits") == ("fcd", "kid")
    assert evaluate.parse_metrics(None, "ring8") == ("modes",)
    assert evaluate.parse_metrics(None, "cifar10") == ()
    assert evaluate.parse_metrics("none", "digits") == ()
    assert evaluate.parse_metrics("fid, kid,pr,fcd", "digits") == ("fid", "kid", "pr")
    with pytest.raises(UsageError, match="unknown metric foo"):
        evaluate.parse_metrics("fid,foo", "digits")
    with pytest.raises(UsageError, match="modes applies to ring8, grid25, stacked_digits, not digits"):
        evaluate.parse_metrics("modes", "digits")


def test_train_metric_flags_reach_the_config_and_bad_ones_exit_2(capsys, tmp_path):
    with pytest.raises(SystemExit):
        cli.main(["train", "--dry-run", "--metrics", "fid,pr", "--metrics-every", "5", "--metrics-samples", "300",
                  "--features", "classifier:digits"])
    config = json.loads(capsys.readouterr().out)
    assert (config["metrics"], config["metrics_every"], config["metrics_samples"]) == ("fid,pr", 5, 300)
    assert config["features"] == "classifier:digits"
    for argv, expected in ([["--metrics", "fud"], "unknown metric fud"],
                           [["--metrics", "modes"], "modes applies to"],
                           [["--metrics-every", "0"], "--metrics-every must be >= 1"]):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["train", *argv, "--output", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.count("\n") == 1 and expected in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_kgan_train_logs_default_digits_metrics_to_config_and_tensorboard(tmp_path, monkeypatch):
    # The default digits metrics (FCD + KID on classifier:digits), with a 1-epoch classifier.
    monkeypatch.setitem(classifier_module._DATASETS, "digits", (classifier_module.load_digits_split, 1, 10))
    monkeypatch.chdir(tmp_path)
    from kgan import run
    from kgan.config import TrainConfig

    result = run.train(TrainConfig(epochs=3, metrics_every=2, metrics_samples=100, checkpoint_every=0), verbose=0,
                       print_fn=lambda *a: None)
    report = json.loads(open(result["outputs"]["config"]).read())
    assert report["metrics"]["epoch"] == 3 and report["metrics"]["evaluations"] == 3
    assert report["metrics"]["features"]["feature_network"] == "classifier:digits"
    assert set(report["metrics"]["values"]) == {"fcd", "kid", "kid_std"}
    assert report["final"]["fcd"] == report["metrics"]["values"]["fcd"] == report["history"]["fcd"][-1]
    assert os.path.isdir(tmp_path / "saved_models" / "feature_extractors" / "classifier_digits")
    scalars = read_scalars(os.path.join(result["outputs"]["tensorboard"], "metrics"))
    assert [s for s, _ in scalars["fcd"]] == [1, 2, 3]


def test_kgan_train_metric_defaults_per_dataset(tmp_path):
    from kgan.config import TrainConfig

    ring = data.load("ring8", seed=0)
    cb = callbacks.metrics_callback_for_run(TrainConfig(dataset="ring8", output=str(tmp_path)), ring, str(tmp_path))
    assert cb.evaluator.metrics == ("modes",) and cb.num_samples == 2500 and cb.every == 20  # PacGAN protocol
    cb = callbacks.metrics_callback_for_run(TrainConfig(dataset="ring8", metrics="fid,pr", metrics_samples=300),
                                            ring, str(tmp_path))
    assert cb.evaluator.distance_name == "fd" and cb.num_samples == 300 and cb.evaluator.num_real == 10_000
    assert callbacks.metrics_callback_for_run(TrainConfig(metrics="none"), data.load("digits"), str(tmp_path)) is None


def test_a_diverged_generator_gets_nan_scores_not_an_exception(quick_digits_classifier):
    real, _ = data.digits_arrays()
    model = tiny_gan()
    cb = callbacks.MetricsCallback(["fcd"], real[:100], features=quick_digits_classifier, num_samples=50)
    cb.set_model(model)
    assert np.isfinite(cb.evaluate()["fcd"])
    cb.last = {"fcd": 1.0}
    kernel = model.generator.trainable_variables[0]
    kernel.assign(np.full(kernel.shape, np.nan, "float32"))
    assert np.isnan(cb.evaluate()["fcd"])


def test_epoch_log_writes_the_epoch_scalars_keras_tensorboard_writes(tmp_path):
    """`EpochLog` (kgan train's epoch scalars) against keras.callbacks.TensorBoard(update_freq="epoch")
    in the same fit: the same files' tags, steps and values, except the learning rates: the GAN's
    D and G rates where Keras writes the unused default optimizer's (RMSprop, 0.001)."""
    model = tiny_gan()
    model.compile(keras.optimizers.Adam(2e-4), keras.optimizers.Adam(5e-4), loss="non_saturating")
    images = np.random.default_rng(0).uniform(-1, 1, (64, 8, 8, 1)).astype("float32")
    model.fit(images, batch_size=16, epochs=3, verbose=0, callbacks=[
        callbacks.EpochLog(str(tmp_path / "kgan")),
        keras.callbacks.TensorBoard(str(tmp_path / "keras"), update_freq="epoch", write_graph=False)])
    ours, theirs = read_scalars(str(tmp_path / "kgan" / "train")), read_scalars(str(tmp_path / "keras" / "train"))
    assert [value for _, value in theirs.pop("epoch_learning_rate")] == pytest.approx([0.001] * 3)
    assert [value for _, value in ours.pop("epoch_d_learning_rate")] == pytest.approx([2e-4] * 3)
    assert [value for _, value in ours.pop("epoch_g_learning_rate")] == pytest.approx([5e-4] * 3)
    assert sorted(ours) == sorted(theirs) and "epoch_d_loss" in ours and "epoch_g_grad_norm" in ours
    for tag, values in theirs.items():
        assert [step for step, _ in ours[tag]] == [step for step, _ in values] == [0, 1, 2], tag
        np.testing.assert_allclose([v for _, v in ours[tag]], [v for _, v in values], rtol=1e-7, err_msg=tag)
    # Validation logs: `val_<name>` as `epoch_<name>` under validation/, as Keras writes them.
    for callback in (callbacks.EpochLog(str(tmp_path / "kgan_val")),
                     keras.callbacks.TensorBoard(str(tmp_path / "keras_val"), write_graph=False)):
        callback.set_model(model)
        callback.on_epoch_end(4, {"d_loss": 0.5, "val_d_loss": 0.25})
        callback.on_train_end()
    assert read_scalars(str(tmp_path / "kgan_val" / "validation")) == read_scalars(
        str(tmp_path / "keras_val" / "validation")) == {"epoch_d_loss": [(4, 0.25)]}


@pytest.mark.parametrize("channels", [1, 3])
def test_event_file_writes_what_tf_summary_writes_as_tensorboard_reads_it(tmp_path, channels):
    """`EventFile` (StepLog's and SampleGrid's writer) against tf.summary.scalar / image, read back
    by TensorBoard's own event loader: the same tags, steps, plugin metadata, values, pixels."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rng = np.random.default_rng(0)
    picture = rng.integers(0, 256, (13, 21, channels), dtype=np.uint8)  # height != width
    scalars = {"batch_d_loss": np.float32(0.6931472), "batch_g_norm": np.float32(3.0e-8)}
    with tf.summary.create_file_writer(str(tmp_path / "tf")).as_default():
        for tag, value in scalars.items():
            tf.summary.scalar(tag, value, step=7)
        tf.summary.image("samples", picture[None], step=8)
    events = callbacks.EventFile(str(tmp_path / "kgan"))
    events.scalars(7, scalars)
    events.image("samples", 8, picture)
    events.close()

    loaded = {}
    for name in ("tf", "kgan"):
        accumulator = EventAccumulator(str(tmp_path / name), size_guidance={"tensors": 0})
        accumulator.Reload()
        loaded[name] = accumulator
    assert loaded["kgan"].Tags()["tensors"] == loaded["tf"].Tags()["tensors"]
    for tag, value in scalars.items():
        [ours], [theirs] = loaded["kgan"].Tensors(tag), loaded["tf"].Tensors(tag)
        assert ours.step == theirs.step == 7
        assert tf.make_ndarray(ours.tensor_proto) == tf.make_ndarray(theirs.tensor_proto) == value
        assert loaded["kgan"].SummaryMetadata(tag) == loaded["tf"].SummaryMetadata(tag)
    [ours], [theirs] = loaded["kgan"].Tensors("samples"), loaded["tf"].Tensors("samples")
    assert ours.step == theirs.step == 8
    assert loaded["kgan"].SummaryMetadata("samples") == loaded["tf"].SummaryMetadata("samples")
    ours, theirs = tf.make_ndarray(ours.tensor_proto), tf.make_ndarray(theirs.tensor_proto)
    assert list(ours[:2]) == list(theirs[:2]) == [b"21", b"13"]  # width, height
    np.testing.assert_array_equal(tf.io.decode_png(ours[2]).numpy(), picture)
    np.testing.assert_array_equal(tf.io.decode_png(theirs[2]).numpy(), picture)


def _pictures_in(path):
    """[(step, decoded picture)] of the "samples" images in one event file."""
    found = []
    for record in tf.data.TFRecordDataset(path):
        event = tf.compat.v1.Event.FromString(record.numpy())
        for value in event.summary.value:
            if value.tag == "samples":
                found.append((event.step, tf.io.decode_png(tf.make_ndarray(value.tensor)[2]).numpy()))
    return found


def _pictures(directory):
    """[(step, decoded picture)] of the "samples" images in `directory`'s event files, in file order."""
    return [found for path in sorted(glob.glob(os.path.join(directory, "events.out.tfevents.*")))
            for found in _pictures_in(path)]


class _SamePicture(keras.callbacks.Callback):
    """After SampleGrid in the list: the picture of its latents drawn on the epoch's generator, inline."""

    def __init__(self, grid, reference=None):
        super().__init__()
        self.grid, self.reference, self.expected = grid, reference, []

    def on_epoch_end(self, epoch, logs=None):
        samples = np.asarray(self.model.generator(self.grid._latent, training=False), dtype="float32")
        picture = plots.sample_picture(samples, self.reference, title=f"epoch {epoch + 1}")
        self.expected.append((epoch + 1, picture[..., :1] if picture.shape[-1] == 1 else picture))


def _tiny_gan(kind):
    """(compiled GAN, batched real dataset, samples per picture, reference points or None)."""
    keras.utils.set_random_seed(0)
    if kind == "images":
        real, num = np.random.default_rng(0).uniform(-1, 1, (64, 8, 8, 1)).astype("float32"), 16
        generator, discriminator = networks.build((8, 8, 1), 16)
        reference = None
    else:
        real, num = data.mixture_samples("ring8", 64, seed=0)[0].astype("float32"), 200
        generator = networks.mlp_generator(16, 2, units=8, num_layers=2)
        discriminator = networks.mlp_discriminator(2, units=8, num_layers=2)
        reference = real
    model = GAN(generator, discriminator, seed=0)
    model.compile(keras.optimizers.Adam(1e-2), keras.optimizers.Adam(1e-2), loss="non_saturating")
    return model, tf.data.Dataset.from_tensor_slices(real).batch(16, drop_remainder=True), num, reference


@pytest.mark.parametrize("kind", ["images", "points"])
def test_sample_grid_writes_each_epochs_picture_in_order_from_its_background_thread(tmp_path, kind):
    """SampleGrid draws the samples at the epoch's end and the picture in a background thread:
    every epoch's picture is the one drawn inline on that epoch's generator, in step order."""
    model, real, num, reference = _tiny_gan(kind)
    grid = callbacks.SampleGrid(str(tmp_path), num_samples=num, reference=reference, max_pending=2)
    check = _SamePicture(grid, reference)
    model.fit(real, epochs=5, verbose=0, callbacks=[grid, check])
    written = _pictures(str(tmp_path / "samples"))
    assert [step for step, _ in written] == [1, 2, 3, 4, 5]
    for (step, picture), (expected_step, expected) in zip(written, check.expected, strict=True):
        assert step == expected_step
        np.testing.assert_array_equal(picture, expected)
    assert not any(np.array_equal(written[0][1], later) for _, later in written[1:])  # the generator moved
    assert grid._thread is None and not grid._pending  # on_train_end waited and shut the thread down


def test_sample_grid_after_a_fit_that_raised_starts_clean(tmp_path, monkeypatch):
    """Keras skips on_train_end when fit raises: the next fit's on_train_begin waits for what was
    pending, closes that writer and drops its failure; its own pictures go to its own file."""
    model, real, num, _ = _tiny_gan("images")
    grid = callbacks.SampleGrid(str(tmp_path), num_samples=num)

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise RuntimeError("stopped")  # after SampleGrid handed its (failing) first picture over

    draw = plots.sample_picture
    monkeypatch.setattr(plots, "sample_picture", lambda *a, **k: (_ for _ in ()).throw(ValueError("no picture")))
    with pytest.raises(RuntimeError, match="stopped"):
        model.fit(real, epochs=4, verbose=0, callbacks=[grid, Stop()])
    first_writer = grid._writer
    monkeypatch.setattr(plots, "sample_picture", draw)
    model.fit(real, epochs=3, verbose=0, callbacks=[grid])  # the first fit's failed pictures are not raised
    assert first_writer._file is not None and grid._writer is None
    files = sorted(glob.glob(str(tmp_path / "samples" / "events.out.tfevents.*")))
    assert len(files) == 2
    steps = [[step for step, _ in _pictures_in(path)] for path in files]
    assert sorted(steps, key=len) == [[], [1, 2, 3]]
