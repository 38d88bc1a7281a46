"""Feature networks that turn images into activations for FID / KID / precision-recall / IS.

Every extractor has a `name` (how it is chosen: "inception", "keras_inception",
"classifier:<dataset>"), a `label` that reports must print beside the numbers (which network,
which layer, and whether the values are comparable with published FID), and a
`distance_name` ("FID" or "FCD"). They all take images the way kgan's generators produce them:

    images: [N, H, W, C] float in [-1, 1] (C = 1 or 3), or uint8 in [0, 255].

and return NumPy arrays:

    extractor.features(images)       -> float32 [N, feature_dim]
    extractor.logits(images)         -> float32 [N, num_classes]
    extractor.probabilities(images)  -> float64 [N, num_classes], rows sum to 1
    extractor.statistics(images)     -> ActivationStatistics (streams batches; also accepts
                                        an iterable of image batches)

Networks:

- `InceptionGraph` ("inception"): the 2015-12-05 Inception graph used by the FID paper (TTUR),
  TF-GAN and compare_gan; `pool_3` (2048-d). Images are fed as 0..255 to `ExpandDims:0`, and
  the graph itself resizes them (bilinear) to 299 x 299 and scales them, or, for a graph that
  only has `Mul:0` (TF-GAN's frozen `inceptionv1_for_inception_score.pb`), kgan does the
  full graph's resize and scaling, (x - 128) / 128, before feeding `Mul:0` (TF-GAN's own
  `preprocess_image` uses x / 127.5 - 1, a difference of under 1%). The graph is read from
  `graph_path`, else $KGAN_INCEPTION_GRAPH, else the cache, else downloaded (when the network
  allows) from INCEPTION_TAR_URL. This is the only network whose FID is comparable with papers.
- `KerasInception` ("keras_inception"): `keras.applications.InceptionV3` with ImageNet weights
  (`avg_pool`, 2048-d). A different network: its "FID" is NOT comparable with published FID.
- `Classifier` ("classifier:<dataset>", in kgan.metrics.classifier): a small CNN kgan trains on
  a labelled dataset and caches; its penultimate layer gives the Frechet Classifier Distance
  (FCD), its softmax the class probabilities for mode counts and the classifier score.
"""

import os
import shutil
import tarfile
import tempfile
import urllib.request

import numpy as np

from kgan.metrics.extractor import (  # noqa: F401 - re-exported: the networks' common interface
    CACHE_DIR_ENV,
    FeatureExtractor,
    FeatureNetworkUnavailableError,
    _as_images,
    default_cache_dir,
)

INCEPTION_TAR_URL = "http://download.tensorflow.org/models/image/imagenet/inception-2015-12-05.tgz"
INCEPTION_FROZEN_GRAPH = "classify_image_graph_def.pb"
INCEPTION_INPUT = "ExpandDims:0"  # [N, H, W, 3] floats in 0..255; resized inside the graph
INCEPTION_PREPROCESSED_INPUT = "Mul:0"  # [N, 299, 299, 3], (x - 128) / 128
INCEPTION_FINAL_POOL = "pool_3:0"  # [N, 1, 1, 2048]
INCEPTION_LOGITS_MATMUL = "softmax/logits/MatMul"  # pool_3 x W (1008 classes) in the 2015 graph
INCEPTION_LOGITS = "logits:0"  # TF-GAN's frozen graph
INCEPTION_IMAGE_SIZE = 299
INCEPTION_GRAPH_ENV = "KGAN_INCEPTION_GRAPH"
KERAS_INCEPTION_WEIGHTS = "inception_v3_weights_tf_dim_ordering_tf_kernels.h5"

_DOWNLOAD_TIMEOUT_SECONDS = 20.0



# --------------------------------------------------------------------------------------------
# The 2015-12-05 Inception graph (standard FID).


def _download_inception_graph(url, destination, timeout):
    """Downloads the Inception tarball and extracts the frozen graph to `destination`.

    One attempt with a socket timeout (no retries), so an offline machine fails in seconds.
    The cache directory is only created once the archive has arrived.
    """
    wanted = os.path.basename(destination)
    with tempfile.TemporaryDirectory() as tmp:
        archive = os.path.join(tmp, "inception.tgz")
        with urllib.request.urlopen(url, timeout=timeout) as response, open(archive, "wb") as f:
            shutil.copyfileobj(response, f, length=1 << 20)
        with tarfile.open(archive) as tar:
            members = [
                m for m in tar.getmembers() if m.isfile() and os.path.basename(m.name) == wanted
            ]
            if not members:
                raise OSError(f"the archive has no {wanted}")
            from kgan import atomic

            with atomic.path(destination) as partial, tar.extractfile(members[0]) as source, \
                    open(partial, "wb") as f:
                shutil.copyfileobj(source, f, length=1 << 20)


def resolve_inception_graph(graph_path=None, *, download=True, cache_dir=None,
                            url=INCEPTION_TAR_URL, timeout=_DOWNLOAD_TIMEOUT_SECONDS):
    """Path of the frozen Inception graph, downloading it once if needed and allowed.

    Order: `graph_path`, then $KGAN_INCEPTION_GRAPH, then
    `<cache_dir>/inception/classify_image_graph_def.pb`, then a download from `url` into that
    cache path.

    Args:
        graph_path: explicit path of a frozen GraphDef (.pb); must exist.
        download: whether to try the download when no local file is found.
        cache_dir: feature-network cache root (default `default_cache_dir()`).
        url: tarball holding `classify_image_graph_def.pb`.
        timeout: socket timeout in seconds for the single download attempt.

    Returns:
        The path (str).

    Raises:
        FeatureNetworkUnavailableError: no file and no (successful) download; the message
            names the file and how to provide it.
    """
    hint = (
        f"set {INCEPTION_GRAPH_ENV}=PATH (the file {INCEPTION_FROZEN_GRAPH} from {url}; in Python: "
        "graph_path=PATH)"
    )
    candidates = (
        ("graph_path", graph_path),
        (INCEPTION_GRAPH_ENV, os.environ.get(INCEPTION_GRAPH_ENV)),
    )
    for source, path in candidates:
        if path:
            if not os.path.isfile(path):
                raise FeatureNetworkUnavailableError(
                    f"Inception graph not found: {path} (from {source}); {hint}."
                )
            return str(path)
    cached = os.path.join(cache_dir or default_cache_dir(), "inception", INCEPTION_FROZEN_GRAPH)
    if os.path.isfile(cached):
        return cached
    if not download:
        raise FeatureNetworkUnavailableError(
            f"Inception graph not found: {cached} (downloads disabled); {hint}."
        )
    try:
        _download_inception_graph(url, cached, timeout)
    except (OSError, tarfile.TarError, ValueError) as e:  # URLError and timeouts are OSErrors
        reason = getattr(e, "reason", None) or e
        raise FeatureNetworkUnavailableError(
            f"Inception graph not found: {cached}, and downloading {url} failed ({reason}); "
            f"{hint}."
        ) from None
    return cached


class InceptionGraph(FeatureExtractor):
    """Standard FID features: pool_3 (2048-d) of the 2015-12-05 Inception graph.

    Heusel et al., 2017 (https://arxiv.org/abs/1706.08500) and TTUR's reference code use this
    frozen graph; TF-GAN and compare_gan use the same network and tensor names. Generated
    images in [-1, 1] are mapped to 0..255 (`(x + 1) * 127.5`, rounded to 8 bits when
    `quantize`, as for images saved to PNG), grey images are repeated to 3 channels, and the
    graph resizes them to 299 x 299 (bilinear) itself.

    `logits` follow the Inception Score reference code (Salimans et al., OpenAI): pool_3 times
    the `softmax/logits` weights, without the bias (1008 classes); a graph without that layer
    but with `logits:0` (TF-GAN's frozen graph) uses `logits:0`.

    Args:
        graph_path: path of the frozen GraphDef; see `resolve_inception_graph` for the
            fall-backs ($KGAN_INCEPTION_GRAPH, cache, download).
        download: whether a missing graph may be downloaded.
        cache_dir: feature-network cache root.
        url: download URL of the tarball.
        batch_size: images per graph call.
        quantize: round the 0..255 pixel values to integers before the network.

    Raises:
        FeatureNetworkUnavailableError: the graph file is missing and cannot be downloaded,
            or is not an Inception GraphDef.
    """

    name = "inception"
    distance_name = "FID"

    def __init__(self, graph_path=None, *, download=True, cache_dir=None, url=INCEPTION_TAR_URL,
                 batch_size=50, quantize=True):
        super().__init__(batch_size)
        import tensorflow as tf

        self.graph_path = resolve_inception_graph(
            graph_path, download=download, cache_dir=cache_dir, url=url
        )
        self.quantize = bool(quantize)
        graph_def = tf.compat.v1.GraphDef()
        try:
            with open(self.graph_path, "rb") as f:
                graph_def.ParseFromString(f.read())
        except Exception as e:  # noqa: BLE001  (protobuf's DecodeError has no stable path)
            raise FeatureNetworkUnavailableError(
                f"{self.graph_path} is not a frozen TensorFlow GraphDef ({e}); expected "
                f"{INCEPTION_FROZEN_GRAPH} from {INCEPTION_TAR_URL}."
            ) from None
        nodes = {node.name: node for node in graph_def.node}
        if "ExpandDims" in nodes:
            self.input_name, self._resize_outside = INCEPTION_INPUT, False
        elif "Mul" in nodes:
            self.input_name, self._resize_outside = INCEPTION_PREPROCESSED_INPUT, True
        else:
            raise FeatureNetworkUnavailableError(
                f"{self.graph_path} has neither {INCEPTION_INPUT} nor "
                f"{INCEPTION_PREPROCESSED_INPUT}: not the Inception graph."
            )
        if "pool_3" not in nodes:
            raise FeatureNetworkUnavailableError(
                f"{self.graph_path} has no {INCEPTION_FINAL_POOL}: not the Inception graph."
            )
        fetches = [INCEPTION_FINAL_POOL]
        self._logits_from = None
        if INCEPTION_LOGITS_MATMUL in nodes:
            weights = nodes[INCEPTION_LOGITS_MATMUL].input[1]
            fetches.append(weights if ":" in weights else weights + ":0")
            self._logits_from = "weights"
        elif INCEPTION_LOGITS.split(":")[0] in nodes:
            fetches.append(INCEPTION_LOGITS)
            self._logits_from = "tensor"

        def _import(images):
            return tf.graph_util.import_graph_def(
                graph_def, input_map={self.input_name: images}, return_elements=fetches,
                name="inception",
            )

        self._graph_fn = tf.compat.v1.wrap_function(
            _import, [tf.TensorSpec([None, None, None, 3], tf.float32)]
        )
        self._tf = tf
        probe_size = INCEPTION_IMAGE_SIZE if self._resize_outside else 8
        probe = self._graph_fn(tf.zeros([1, probe_size, probe_size, 3]))
        self.feature_dim = int(np.prod(probe[0].shape[1:]))
        self.num_classes = None
        self._weights = None
        if self._logits_from == "weights":
            self._weights = np.asarray(probe[1], np.float32)
            self.num_classes = int(self._weights.shape[1])
        elif self._logits_from == "tensor":
            self.num_classes = int(probe[1].shape[-1])
        self.label = (
            f"Inception 2015-12-05 graph, pool_3 ({self.feature_dim}-d), images resized to "
            f"{INCEPTION_IMAGE_SIZE}: standard FID ({os.path.basename(self.graph_path)})"
        )

    def _run(self, batch, want_logits):
        tf = self._tf
        pixels = (batch + 1.0) * 127.5
        if self.quantize:
            pixels = np.round(pixels)
        pixels = np.clip(pixels, 0.0, 255.0).astype(np.float32)
        if pixels.shape[-1] == 1:
            pixels = np.repeat(pixels, 3, axis=-1)
        x = tf.constant(pixels)
        if self._resize_outside:
            # What the full graph does between ExpandDims and Mul: ResizeBilinear
            # (align_corners=False, legacy pixel centres), Sub 128, Mul 1/128.
            x = tf.compat.v1.image.resize_bilinear(
                x, [INCEPTION_IMAGE_SIZE, INCEPTION_IMAGE_SIZE], align_corners=False
            )
            x = (x - 128.0) * (1.0 / 128.0)
        outputs = self._graph_fn(x)
        features = np.asarray(outputs[0]).reshape(batch.shape[0], -1)
        logits = None
        if want_logits:
            if self._logits_from == "weights":
                logits = features @ self._weights
            else:
                logits = np.asarray(outputs[1]).reshape(batch.shape[0], -1)
        return features, logits


# --------------------------------------------------------------------------------------------
# keras.applications.InceptionV3 (NOT the FID network).


class KerasInception(FeatureExtractor):
    """`keras.applications.InceptionV3` features (avg_pool, 2048-d) and ImageNet probabilities.

    Szegedy et al., 2016, "Rethinking the Inception Architecture for Computer Vision"
    (https://arxiv.org/abs/1512.00567). Keras' ImageNet weights are a different network from
    the 2015-12-05 graph: Frechet distances on them are NOT comparable with published FID
    (the label says so). Images in [-1, 1] are resized (bilinear) to 299 x 299, which is the
    model's own input scaling (`inception_v3.preprocess_input` maps 0..255 to [-1, 1]).

    Args:
        weights: "imagenet" (downloaded once to ~/.keras/models), None (random weights, for
            tests), or a path to a weights file.
        batch_size: images per call.

    Raises:
        FeatureNetworkUnavailableError: the ImageNet weights are not cached and cannot be
            downloaded.
    """

    name = "keras_inception"
    distance_name = "FID"

    def __init__(self, weights="imagenet", batch_size=32):
        super().__init__(batch_size)
        import keras
        import tensorflow as tf

        try:
            base = keras.applications.InceptionV3(
                include_top=True, weights=weights,
                input_shape=(INCEPTION_IMAGE_SIZE, INCEPTION_IMAGE_SIZE, 3),
            )
        except Exception as e:
            if weights != "imagenet":
                raise
            raise FeatureNetworkUnavailableError(
                f"Keras InceptionV3 ImageNet weights ({KERAS_INCEPTION_WEIGHTS}) are not in "
                f"~/.keras/models and could not be downloaded ({e}); copy the file there or "
                "pass weights=PATH."
            ) from None
        self._model = keras.Model(base.input, [base.get_layer("avg_pool").output, base.output])
        self._tf = tf
        self.weights = weights if isinstance(weights, str) or weights is None else "custom"
        self.feature_dim = int(self._model.outputs[0].shape[-1])
        self.num_classes = int(self._model.outputs[1].shape[-1])
        which = "random weights (tests only)" if weights is None else f"weights={self.weights}"
        self.label = (
            f"Keras InceptionV3 {which}, avg_pool ({self.feature_dim}-d): NOT the FID "
            "network, not comparable with published FID"
        )

    def _run(self, batch, want_logits):
        tf = self._tf
        x = tf.constant(batch)
        if batch.shape[-1] == 1:
            x = tf.repeat(x, 3, axis=-1)
        if batch.shape[1:3] != (INCEPTION_IMAGE_SIZE, INCEPTION_IMAGE_SIZE):
            x = tf.image.resize(x, [INCEPTION_IMAGE_SIZE, INCEPTION_IMAGE_SIZE], method="bilinear")
        features, probs = self._model(x, training=False)
        logits = None
        if want_logits:
            # The top layer applies softmax; log-probabilities are logits up to a constant.
            logits = np.log(np.maximum(np.asarray(probs, np.float64), 1e-30))
        return np.asarray(features), logits


# --------------------------------------------------------------------------------------------
# Registry.


def get_feature_extractor(identifier, **kwargs):
    """Returns a feature extractor from its name.

    Args:
        identifier: a `FeatureExtractor` (returned as is), "inception", "keras_inception",
            or "classifier:<dataset>" (e.g. "classifier:digits").
        **kwargs: passed to `InceptionGraph`, `KerasInception` or
            `kgan.metrics.classifier.load_classifier`.

    Returns:
        A `FeatureExtractor`.

    Raises:
        ValueError: for an identifier that is none of these.
        FeatureNetworkUnavailableError: the network's files cannot be found or downloaded.
    """
    if isinstance(identifier, FeatureExtractor):
        return identifier
    if identifier == "inception":
        return InceptionGraph(**kwargs)
    if identifier == "keras_inception":
        return KerasInception(**kwargs)
    if isinstance(identifier, str) and identifier.startswith("classifier:"):
        from kgan.metrics.classifier import load_classifier

        return load_classifier(identifier.split(":", 1)[1], **kwargs)
    raise ValueError(
        f"Could not interpret feature network identifier: {identifier!r}; expected "
        "'inception', 'keras_inception' or 'classifier:<dataset>' (e.g. 'classifier:digits')."
    )
