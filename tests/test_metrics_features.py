"""Tests of kgan.metrics' feature networks, offline: a fake Inception graph with the real
tensor names (as compare_gan does), Keras InceptionV3 with random weights, and the digits
classifier (trained once per session into a temporary cache)."""

import json
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from kgan import metrics
from kgan.errors import KganError
from kgan.metrics import classifier as classifier_module

NUM_FAKE_CLASSES = 10


def _write_fake_inception_graph(path, full=True):
    """A tiny frozen graph with the 2015-12-05 Inception graph's tensor names.

    full=True mimics classify_image_graph_def.pb: DecodeJpeg/contents -> DecodeJpeg -> Cast ->
    ExpandDims -> ResizeBilinear (299) -> Sub 128 -> Mul 1/128 -> ... -> pool_3 [N, 1, 1, 2048]
    -> softmax/logits/MatMul (with softmax/weights) -> softmax/logits (+ bias).
    full=False mimics TF-GAN's frozen graph: a Mul:0 input (already 299 x 299, scaled),
    pool_3:0 and logits:0.
    "pool_3" is the per-channel spatial mean of Mul times a fixed [3, 2048] matrix, so for
    images of constant colour the expected features are known in closed form.

    Returns:
        `(projection [3, 2048], weights [2048, 10], bias [10])` as NumPy arrays.
    """
    import tensorflow as tf

    rng = np.random.default_rng(0)
    projection = rng.standard_normal((3, 2048)).astype(np.float32)
    weights = (rng.standard_normal((2048, NUM_FAKE_CLASSES)) / 50).astype(np.float32)
    bias = np.arange(NUM_FAKE_CLASSES, dtype=np.float32)
    graph = tf.Graph()
    with graph.as_default():
        if full:
            contents = tf.compat.v1.placeholder(tf.string, [], name="DecodeJpeg/contents")
            decoded = tf.io.decode_jpeg(contents, channels=3, name="DecodeJpeg")
            x = tf.expand_dims(tf.cast(decoded, tf.float32), 0, name="ExpandDims")
            x = tf.compat.v1.image.resize_bilinear(x, [299, 299], name="ResizeBilinear")
            x = tf.multiply(tf.subtract(x, 128.0, name="Sub"), 1.0 / 128.0, name="Mul")
        else:
            x = tf.compat.v1.placeholder(tf.float32, [None, 299, 299, 3], name="Mul")
        pooled = tf.matmul(tf.reduce_mean(x, axis=[1, 2]), tf.constant(projection))
        pool_3 = tf.reshape(pooled, [-1, 1, 1, 2048], name="pool_3")
        flat = tf.reshape(pool_3, [-1, 2048])
        if full:
            matmul = tf.matmul(
                flat, tf.constant(weights, name="softmax/weights"), name="softmax/logits/MatMul"
            )
            tf.nn.bias_add(matmul, tf.constant(bias), name="softmax/logits")
        else:
            tf.identity(tf.matmul(flat, tf.constant(weights)) + bias, name="logits")
    with open(path, "wb") as f:
        f.write(graph.as_graph_def().SerializeToString())
    return projection, weights, bias


def _constant_colour_images(colours, size=16):
    """[N, size, size, C] images whose every pixel is colours[n] (values in [-1, 1])."""
    colours = np.asarray(colours, np.float32)
    return np.broadcast_to(colours[:, None, None, :], (len(colours), size, size, colours.shape[1]))


def _expected_pool_3(colours, projection):
    pixels = np.clip(np.round((np.asarray(colours, np.float64) + 1.0) * 127.5), 0, 255)
    if pixels.shape[1] == 1:
        pixels = np.repeat(pixels, 3, axis=1)
    return ((pixels - 128.0) / 128.0) @ projection


COLOURS = [[-1.0, 0.0, 1.0], [0.5, -0.5, 0.25], [1.0, 1.0, 1.0], [-0.3, 0.9, -0.9], [0, 0, 0]]


def test_fake_inception_graph_full(tmp_path):
    path = tmp_path / "classify_image_graph_def.pb"
    projection, weights, _ = _write_fake_inception_graph(path, full=True)
    net = metrics.InceptionGraph(str(path), download=False)
    assert net.input_name == metrics.INCEPTION_INPUT == "ExpandDims:0"
    assert (net.feature_dim, net.num_classes) == (2048, NUM_FAKE_CLASSES)
    assert "standard FID" in net.label and net.distance_name == "FID"
    assert net.describe()["feature_label"] == net.label
    images = _constant_colour_images(COLOURS)
    features = net.features(images, batch_size=2)  # 3 batches, the last one partial
    assert features.shape == (5, 2048) and features.dtype == np.float32
    expected = _expected_pool_3(COLOURS, projection)
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-4)
    # Logits as in the Inception Score reference code: pool_3 x softmax weights, no bias.
    probs = net.probabilities(images)
    logits = expected @ weights
    reference = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(probs, reference / reference.sum(1, keepdims=True), atol=1e-5)
    # uint8 images in [0, 255] and grey images (repeated to RGB) take the same route.
    uint8 = np.round((images + 1.0) * 127.5).astype(np.uint8)
    np.testing.assert_allclose(net.features(uint8), features, rtol=1e-6, atol=1e-5)
    grey = net.features(_constant_colour_images([[0.5], [-0.25]]))
    np.testing.assert_allclose(
        grey, _expected_pool_3([[0.5], [-0.25]], projection), rtol=1e-5, atol=1e-4
    )
    # Streaming statistics over an iterable of batches equal the statistics of the array.
    stats = net.statistics(iter([images[:2], images[2:]]))
    np.testing.assert_allclose(stats.mean, features.mean(0), rtol=1e-6, atol=1e-6)


def test_fake_inception_graph_tfgan_style_from_env(tmp_path, monkeypatch):
    # TF-GAN's frozen graph has only Mul:0 (299 x 299, scaled): kgan resizes and scales.
    path = tmp_path / "inceptionv1_for_inception_score.pb"
    projection, weights, bias = _write_fake_inception_graph(path, full=False)
    monkeypatch.setenv("KGAN_INCEPTION_GRAPH", str(path))
    net = metrics.get_feature_extractor("inception", download=False)
    assert net.input_name == "Mul:0" and net.graph_path == str(path)
    images = _constant_colour_images(COLOURS, size=9)
    expected = _expected_pool_3(COLOURS, projection)
    features, logits = net.features_and_logits(images)
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(logits, expected @ weights + bias, rtol=1e-5, atol=1e-4)


def test_inception_graph_missing_file_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("KGAN_INCEPTION_GRAPH", raising=False)
    missing = tmp_path / "nowhere" / "classify_image_graph_def.pb"
    with pytest.raises(metrics.FeatureNetworkUnavailableError) as info:
        metrics.InceptionGraph(str(missing))
    message = str(info.value)
    assert str(missing) in message and "KGAN_INCEPTION_GRAPH" in message
    assert "--inception-graph" not in message and "\n" not in message  # no such flag: the variable is named
    assert isinstance(info.value, KganError) and info.value.exit_code == 2
    # No local file and downloads disabled: names the cache path it looked at.
    with pytest.raises(metrics.FeatureNetworkUnavailableError, match="downloads disabled"):
        metrics.InceptionGraph(cache_dir=str(tmp_path / "cache"), download=False)
    # Not a GraphDef of the Inception network.
    bogus = tmp_path / "bogus.pb"
    bogus.write_bytes(b"\x00not a graph")
    with pytest.raises(metrics.FeatureNetworkUnavailableError):
        metrics.InceptionGraph(str(bogus))


def test_inception_graph_download_fails_fast_offline(tmp_path, monkeypatch):
    # The real download code against a local port nobody listens on (no internet needed).
    monkeypatch.delenv("KGAN_INCEPTION_GRAPH", raising=False)
    cache = tmp_path / "cache"
    start = time.perf_counter()
    with pytest.raises(metrics.FeatureNetworkUnavailableError) as info:
        metrics.resolve_inception_graph(cache_dir=str(cache), url="http://127.0.0.1:9/x.tgz")
    assert time.perf_counter() - start < 10
    message = str(info.value)
    assert "downloading http://127.0.0.1:9/x.tgz failed" in message
    assert "classify_image_graph_def.pb" in message and "KGAN_INCEPTION_GRAPH" in message
    assert not cache.exists()  # nothing half-written


def test_inception_graph_download_extracts_and_caches(tmp_path, monkeypatch):
    monkeypatch.delenv("KGAN_INCEPTION_GRAPH", raising=False)
    source = tmp_path / "src" / "classify_image_graph_def.pb"
    source.parent.mkdir()
    _write_fake_inception_graph(source, full=True)
    archive = tmp_path / "inception-2015-12-05.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname="classify_image_graph_def.pb")
    cache = tmp_path / "cache"
    path = metrics.resolve_inception_graph(cache_dir=str(cache), url=archive.as_uri())
    assert path == str(cache / "inception" / "classify_image_graph_def.pb")
    assert Path(path).read_bytes() == source.read_bytes()
    # Second time the cache is used: the URL is never opened.
    again = metrics.resolve_inception_graph(cache_dir=str(cache), url="http://127.0.0.1:9/x")
    assert again == path


def test_keras_inception_random_weights():
    net = metrics.get_feature_extractor("keras_inception", weights=None)
    assert "not comparable with published FID" in net.label
    images = np.random.default_rng(0).uniform(-1, 1, (3, 8, 8, 1)).astype(np.float32)
    features, logits = net.features_and_logits(images)
    assert features.shape == (3, 2048) and np.all(np.isfinite(features))
    assert logits.shape == (3, 1000)
    probs = net.probabilities(images)
    assert probs.shape == (3, 1000)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_feature_extractor_registry_and_image_checks():
    with pytest.raises(ValueError, match="Could not interpret feature network identifier"):
        metrics.get_feature_extractor("inception_v4")
    with pytest.raises(ValueError, match="Unknown classifier dataset"):
        metrics.get_feature_extractor("classifier:imagenet")
    with pytest.raises(ValueError, match="in \\[-1, 1\\]"):
        metrics.features._as_images(np.full((1, 4, 4, 3), 255.0))
    with pytest.raises(ValueError, match="C = 1 or 3"):
        metrics.features._as_images(np.zeros((1, 4, 4, 2)))


# ------------------------------------------------------------------------------------------
# The digits classifier (FCD features and class probabilities).


@pytest.fixture(scope="module")
def digits_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("feature_extractors")
    start = time.perf_counter()
    net = metrics.load_classifier("digits", cache_dir=str(cache))
    return cache, net, time.perf_counter() - start


def test_digits_classifier_trains_and_reaches_97_percent(digits_cache):
    cache, net, seconds = digits_cache
    assert not net.from_cache
    assert net.test_accuracy >= 0.97
    assert seconds < 60
    info = json.loads((cache / "classifier_digits" / "classifier.json").read_text())
    assert info["test_accuracy"] == net.test_accuracy
    assert (info["dataset"], info["num_test"], info["input_shape"]) == ("digits", 360, [8, 8, 1])
    assert net.name == "classifier:digits" and net.distance_name == "FCD"
    assert "FCD" in net.label and f"{net.test_accuracy:.2%}" in net.label
    _, _, x_test, y_test = metrics.load_digits_split()
    features = net.features(x_test[:50])
    assert features.shape == (50, 128)
    probs = net.probabilities(x_test)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    assert np.mean(np.argmax(probs, axis=1) == y_test) == pytest.approx(net.test_accuracy)
    with pytest.raises(ValueError, match="takes images of shape"):
        net.features(np.zeros((2, 16, 16, 1), np.float32))


def test_digits_classifier_reloads_from_cache_without_retraining(digits_cache, monkeypatch):
    cache, trained, _ = digits_cache

    def must_not_train(*args, **kwargs):
        raise AssertionError("the cached classifier was retrained")

    monkeypatch.setattr(classifier_module, "train_classifier", must_not_train)
    net = metrics.get_feature_extractor("classifier:digits", cache_dir=str(cache))
    assert net.from_cache and net.test_accuracy == trained.test_accuracy
    _, _, x_test, _ = metrics.load_digits_split()
    np.testing.assert_allclose(net.logits(x_test[:20]), trained.logits(x_test[:20]), atol=1e-5)
    # A different training setting is a different cache key: that would train again.
    with pytest.raises(AssertionError, match="retrained"):
        metrics.load_classifier("digits", cache_dir=str(cache), epochs=1)


def test_stacked_digits_mode_metrics_with_the_digits_classifier(digits_cache):
    _, net, _ = digits_cache
    _, _, x_test, y_test = metrics.load_digits_split()
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(x_test), size=(200, 3))
    images = np.concatenate([x_test[picks[:, c]] for c in range(3)], axis=-1)  # [200, 8, 8, 3]
    true_modes = len({tuple(t) for t in y_test[picks]})
    result = metrics.mode_metrics(images, "stacked_digits", classifier=net)
    assert result["classifier_accuracy"] == net.test_accuracy
    # With >= 97% per channel, at most a few triples differ from the true ones.
    assert abs(result["modes_captured"] - true_modes) <= 0.1 * true_modes
    assert result["num_samples"] == 200.0 and result["num_modes"] == 1000.0


def test_mnist_classifier_through_tfds_mock_data(tmp_path):
    # The real tfds loading code on tfds' mock data (no download): 64 random examples per split.
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=64, policy=tfds.testing.MockPolicy.USE_CODE):
        net = metrics.get_feature_extractor("classifier:mnist", cache_dir=str(tmp_path), epochs=1)
    assert not net.from_cache and net.input_shape == (28, 28, 1) and net.num_classes == 10
    assert net.info["num_train"] == 64 and "mnist" in net.label
    assert net.features(np.zeros((2, 28, 28, 1), np.float32)).shape == (2, 128)


def test_classifier_on_user_data(tmp_path):
    # Any labelled arrays can back "classifier:<name>": two classes told apart by brightness.
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 80)
    images = (labels[:, None, None, None] - 0.5 + 0.1 * rng.standard_normal((80, 6, 6, 1)))
    data = (images[:60].astype(np.float32), labels[:60], images[60:].astype(np.float32),
            labels[60:])
    net = metrics.load_classifier("bright", data=data, cache_dir=str(tmp_path), epochs=5)
    assert net.num_classes == 2 and net.test_accuracy >= 0.9
    assert (tmp_path / "classifier_bright" / "model.keras").is_file()


def test_classifier_is_trained_at_the_requested_resolution(tmp_path):
    """digits at 16: the classifier takes [N, 16, 16, 1], its training images are the 8 x 8 digits
    resized as kgan.data.load resizes them, and its cache is separate from the 8 x 8 one."""
    import tensorflow as tf

    from kgan.metrics import classifier as classifier_module

    x_train, y_train, x_test, y_test = classifier_module.load_digits_split()
    seen = {}

    def loader(seed):
        return x_train[:200], y_train[:200], x_test[:50], y_test[:50]

    def spy(x, *args, **kwargs):
        seen["x"] = x
        return real_train(x, *args, **kwargs)

    real_train = classifier_module.train_classifier
    classifier_module.train_classifier = spy
    try:
        net = metrics.load_classifier("digits", data=loader, cache_dir=str(tmp_path), epochs=1, image_size=16)
    finally:
        classifier_module.train_classifier = real_train
    assert net.input_shape == (16, 16, 1) and net.info["image_size"] == 16 and net.path.endswith("classifier_digits_16px")
    np.testing.assert_allclose(seen["x"], tf.image.resize(x_train[:200], (16, 16)).numpy(), atol=1e-6)
    assert net.features(np.zeros((3, 16, 16, 1), np.float32)).shape == (3, 128)
    again = metrics.load_classifier("digits", data=loader, cache_dir=str(tmp_path), epochs=1, image_size=16)
    assert again.from_cache and again.input_shape == (16, 16, 1)
    native = metrics.load_classifier("digits", data=loader, cache_dir=str(tmp_path), epochs=1, image_size=8)
    assert not native.from_cache and native.input_shape == (8, 8, 1) and native.info["image_size"] is None


def test_stacked_digit_modes_at_16_use_a_16_pixel_classifier(tmp_path, monkeypatch):
    from kgan.metrics import classifier as classifier_module

    monkeypatch.setitem(classifier_module._DATASETS, "digits", (classifier_module.load_digits_split, 1, 10))
    monkeypatch.setenv("KGAN_FEATURE_EXTRACTORS_DIR", str(tmp_path))
    samples = np.random.default_rng(0).uniform(-1, 1, (20, 16, 16, 3)).astype("float32")
    result = metrics.mode_metrics(samples, "stacked_digits")
    assert 1 <= result["modes_captured"] <= 20
    assert (tmp_path / "classifier_digits_16px" / "model.keras").is_file()


def test_mnist_fcd_through_kgan_train_and_kgan_evaluate(tmp_path, monkeypatch, capsys):
    """The whole mnist path on tfds mock data: the GAN trains at 32 x 32, so `--metrics fcd`
    trains "classifier:mnist" at 32 (the landed code: "classifier:mnist takes images of shape
    [N, 28, 28, 1], got [.., 32, 32, 1]"), and `kgan evaluate` scores the export with it."""
    import json

    import tensorflow_datasets as tfds

    from kgan import cli, data
    from kgan.metrics import classifier as classifier_module

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(data, "_network_available", lambda *a, **k: True)
    monkeypatch.setitem(classifier_module._DATASETS, "mnist", (classifier_module._tfds_loader("mnist"), 1, 10))
    monkeypatch.setenv("KGAN_FEATURE_EXTRACTORS_DIR", str(tmp_path / "features"))
    with tfds.testing.mock_data(num_examples=64, policy=tfds.testing.MockPolicy.USE_CODE):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["train", "--dataset", "mnist", "--epochs", "1", "--batch-size", "32", "--latent-dim", "8",
                      "--metrics", "fcd", "--metrics-samples", "64", "--checkpoint-every", "0", "--run-name", "m"])
        assert exit_info.value.code == 0, capsys.readouterr().err
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["evaluate", "--model", "saved_models/m/generator", "--dataset", "mnist", "--metrics", "fcd",
                      "--num-samples", "64", "--num-real", "64", "--json", "report.json"])
        assert exit_info.value.code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "report.json").read_text())
    assert np.isfinite(report["metrics"]["fcd"]) and report["metrics"]["fcd"] > 0
    info = json.loads((tmp_path / "features" / "classifier_mnist_32px" / "classifier.json").read_text())
    assert info["image_size"] == 32 and info["input_shape"] == [32, 32, 1]
