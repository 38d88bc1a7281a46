"""Sample-quality metrics of a generator, during training (`MetricsCallback`) and after it
(`evaluate`, which the `kgan evaluate` command of kgan.cli runs).

    Evaluator(metrics, real, features)  ->  evaluator(samples) -> {"fcd": ..., "kid": ...}

An `Evaluator` computes the real data's activations once (a cached `ActivationStatistics` for
the Frechet distance, a `KernelReference` for KID, whose real subsets' kernel terms are computed
on the first evaluation only, the activation array for precision-recall / density-coverage) and
then scores any number of sample batches against them. Metric names (`--metrics`) and the
short names they log:

    fid, fcd  Frechet distance on the feature network's activations. Logged as "fid" for an
              Inception network, "fcd" (Frechet Classifier Distance) for a kgan classifier,
              "fd" on raw 2-D points: the logged name says which network, whichever of the
              two names was asked for.
    kid       Kernel Inception Distance (unbiased MMD^2, cubic polynomial kernel): "kid",
              "kid_std" (spread over subsets).
    is        Inception Score formula on the network's class probabilities (the classifier
              score for a kgan classifier): "is", "is_std".
    pr        improved precision / recall, k = 3: "precision", "recall".
    dc        density / coverage, k = 5: "density", "coverage".
    modes     mode metrics (ring8, grid25, stacked_digits): "modes", "reverse_kl" and, for the
              2-D mixtures, "hq_percent".

`labels()` says, for each logged name, which network, layer and sample counts produced it.
"""

import os
import time

import numpy as np

from kgan import metrics as kmetrics
from kgan.errors import KganError, UsageError
from kgan.names import METRICS, MODE_DATASETS
from kgan.registry import Registry

#: Metrics that need a feature network's activations: all but the mode counts.
FEATURE_METRICS = tuple(name for name in METRICS if name != "modes")
#: Default metrics of `kgan train` per dataset (other datasets: none, so nothing downloads).
DEFAULT_METRICS = {
    "digits": ("fcd", "kid"),
    "stacked_digits": ("modes",),
    "ring8": ("modes",),
    "grid25": ("modes",),
}
#: Default feature network per dataset (others: "inception", the standard FID network).
DEFAULT_FEATURES = {
    "digits": "classifier:digits",
    "mnist": "classifier:mnist",
    "fashion_mnist": "classifier:fashion_mnist",
    "cifar10": "classifier:cifar10",
}
#: Real examples whose activations are kept (the whole dataset when it is smaller).
DEFAULT_NUM_REAL = 10_000
#: Generated samples per evaluation where a protocol fixes them (BENCHMARKS.md): PacGAN's 2,500
#: for the 2-D mixtures, Stacked MNIST's 25,600 for stacked digits.
PROTOCOL_SAMPLES = {"ring8": 2500, "grid25": 2500, "stacked_digits": 25_600}


def default_num_samples(dataset, otherwise):
    """The protocol's sample count for `dataset`, else `otherwise`."""
    return PROTOCOL_SAMPLES.get(dataset, otherwise)


class RawPoints(kmetrics.FeatureExtractor):
    """The identity "feature network" for 2-D points: metrics on the raw coordinates."""

    name = "raw"
    distance_name = "FD"

    def __init__(self):
        super().__init__()
        self.label = "raw coordinates of the points (no network): Frechet distance (FD)"

    def features(self, points, batch_size=None):
        points = np.asarray(points, np.float32)
        if points.ndim != 2:
            raise ValueError(f"points must be [N, D], got shape {points.shape}.")
        return points


def parse_metrics(text, dataset):
    """`--metrics` text -> a tuple of metric names (empty for "none").

    Args:
        text: comma-separated names from `METRICS`, "none", or None (the dataset's defaults).
        dataset: dataset name (for the defaults and to check that "modes" applies).

    Raises:
        UsageError: an unknown name, or "modes" on a dataset without mode metrics.
    """
    if text is None:
        return tuple(DEFAULT_METRICS.get(dataset, ()))
    names = [name.strip().lower() for name in str(text).split(",") if name.strip()]
    if names == ["none"]:
        return ()
    unknown = [name for name in names if name not in METRICS]
    if unknown or not names:
        raise UsageError(f"unknown metric {', '.join(unknown) or repr(text)!s}: choose from {', '.join(METRICS)}, or none")
    if "modes" in names and dataset not in MODE_DATASETS:
        raise UsageError(f"--metrics modes applies to {', '.join(MODE_DATASETS)}, not {dataset}")
    if "fid" in names and "fcd" in names:  # the same metric: one Frechet distance
        names.remove("fcd")
    return tuple(dict.fromkeys(names))


def default_features(dataset, kind="images"):
    """The feature network used when `--features` is not given."""
    if kind == "points":
        return "raw"
    return DEFAULT_FEATURES.get(dataset, "inception")


def feature_cache_dir(output=None):
    """Where kgan classifiers are cached: $KGAN_FEATURE_EXTRACTORS_DIR, else
    `<output>/feature_extractors` (default saved_models/feature_extractors)."""
    if os.environ.get(kmetrics.features.CACHE_DIR_ENV) or output is None:
        return kmetrics.default_cache_dir()
    return os.path.join(output, "feature_extractors")


def get_features(name, cache_dir=None, image_size=None):
    """A feature extractor by name ("raw" for points), with errors as UsageError.

    A kgan classifier is the one trained at `image_size` (the scored images' resolution)."""
    if name == "raw":
        return RawPoints()
    kwargs = {"cache_dir": cache_dir, "image_size": image_size} if str(name).startswith("classifier:") else {}
    try:
        return kmetrics.get_feature_extractor(name, **kwargs)
    except UsageError:
        raise
    except ValueError as error:
        raise UsageError(f"--features {name}: {error}") from None


def _image_size(real):
    """The height of real images [N, H, W, C] (None for points): the classifiers' resolution."""
    return None if real is None or np.ndim(real) != 4 else int(np.shape(real)[1])


class Evaluator:
    """Scores generated samples against real data with the chosen metrics.

    The real activations are computed once, when the evaluator is made.

    Args:
        metrics: names from `METRICS` (e.g. ("fcd", "kid")).
        real: real examples, images `[N, H, W, C]` in [-1, 1] or points `[N, D]`.
        features: a `FeatureExtractor` or its name (needed for the feature metrics; "raw" for
            points).
        dataset: dataset name (needed for "modes").
        classifier: feature extractor with class probabilities for stacked-digit modes
            (default: the `features` network when it is "classifier:digits", else loaded).
        kid_subsets: KID subsets (of <= 1000 samples each). More subsets give a steadier
            estimate of the same quantity; each costs about 0.02 s at 1000 x 128-d.
        cache_dir: classifier cache root.
    """

    def __init__(self, metrics, real, features=None, dataset=None, classifier=None, kid_subsets=100,
                 cache_dir=None):
        self.metrics = tuple(metrics)
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown:
            raise ValueError(f"Unknown metrics {unknown}; expected names from {METRICS}.")
        self.dataset = dataset
        self.kid_subsets = int(kid_subsets)
        self.seconds = {}  # metric -> seconds of its last evaluation (features counted apart)
        self.num_samples = None
        self.features = None
        self.classifier = None
        self.num_real = 0 if real is None else int(np.shape(real)[0])
        if any(m in FEATURE_METRICS for m in self.metrics):
            if features is None or real is None:
                raise ValueError("The metrics " + ", ".join(self.metrics) + " need real data and a feature network.")
            self.features = features if isinstance(features, kmetrics.FeatureExtractor) else get_features(
                features, cache_dir, _image_size(real))
            if "is" in self.metrics and not self.features.num_classes:
                raise UsageError(f"--metrics is needs a network with class outputs; {self.features.name} has none")
            start = time.perf_counter()
            self._real = self.features.features(real)
            self._real_statistics = kmetrics.ActivationStatistics.from_activations(self._real)
            if "kid" in self.metrics:  # the real subsets' kernel terms, computed once
                self._real_kernel = kmetrics.KernelReference(self._real)
            self.seconds["real_features"] = time.perf_counter() - start
        if "modes" in self.metrics:
            if dataset not in MODE_DATASETS:
                raise UsageError(f"mode metrics apply to {', '.join(MODE_DATASETS)}, not {dataset}")
            if dataset == "stacked_digits":
                if classifier is None:
                    uses_digits = self.features is not None and self.features.name == "classifier:digits"
                    classifier = self.features if uses_digits else get_features("classifier:digits", cache_dir,
                                                                                _image_size(real))
                self.classifier = classifier

    @property
    def distance_name(self):
        """The logged name of the Frechet distance: "fid", "fcd" or "fd"."""
        return self.features.distance_name.lower() if self.features is not None else "fid"

    def __call__(self, samples):
        """Scores `samples` (`[M, ...]`, like the real data); returns {logged name: float}."""
        samples = np.asarray(samples, np.float32)
        self.num_samples = int(samples.shape[0])
        results = {}
        fake = logits = None
        if self.features is not None:
            start = time.perf_counter()
            if "is" in self.metrics:
                fake, logits = self.features.features_and_logits(samples)
            else:
                fake = self.features.features(samples)
            self.seconds["features"] = time.perf_counter() - start
        for metric in self.metrics:
            start = time.perf_counter()
            results.update(METRIC_REGISTRY.lookup(metric).score(self, samples, fake, logits))
            self.seconds[self.distance_name if metric in ("fid", "fcd") else metric] = time.perf_counter() - start
        return {name: float(value) for name, value in results.items()}

    def labels(self):
        """{logged name: what produced it}, for config.json, JSON reports and TensorBoard.

        Each names the feature network (`describe()["feature_label"]` has its full label:
        layer, accuracy, comparability) and the sample counts.
        """
        n = f"{self.num_samples or '?'} generated vs {self.num_real} real"
        net = ""
        if self.features is not None:
            net = self.features.name + (f" ({self.features.distance_name})" if self.features.name != "raw" else "")
        labels = {}
        for metric in self.metrics:
            labels.update(METRIC_REGISTRY.lookup(metric).label(self, n, net))
        return labels

    def describe(self):
        """The feature network's description (name, label, distance name) or {}."""
        info = dict(self.features.describe()) if self.features is not None else {}
        if self.classifier is not None and self.classifier is not self.features:
            info["mode_classifier"] = self.classifier.label
        return info


# --------------------------------------------------------------------------------------------
# The metrics by name (kgan.names.METRICS), stylegan2-ada's `register_metric` style: each one
# says how it scores a batch (`score(evaluator, samples, fake, logits)`: fake activations and
# logits from the evaluator's feature network) and how its values are labelled
# (`label(evaluator, counts, net)`), both as {logged name: value}.

METRIC_REGISTRY = Registry("metric")


@METRIC_REGISTRY.register("fid", "fcd")
class Frechet:
    """Frechet distance of the activations, logged as what the network makes it: fid, fcd, fd."""

    @staticmethod
    def score(ev, samples, fake, logits):
        return {ev.distance_name: kmetrics.frechet_distance(ev._real_statistics, fake)}

    @staticmethod
    def label(ev, n, net):
        return {ev.distance_name: f"Frechet distance ({n}) on {net}"}


@METRIC_REGISTRY.register("kid")
class KernelInceptionDistance:
    @staticmethod
    def score(ev, samples, fake, logits):
        kid = kmetrics.kernel_inception_distance(ev._real_kernel, fake, num_subsets=ev.kid_subsets)
        return {"kid": kid["mean"], "kid_std": kid["std"]}

    @staticmethod
    def label(ev, n, net):
        return {"kid": f"KID, mean over {ev.kid_subsets} subsets of <= 1000 ({n}) on {net}"}


@METRIC_REGISTRY.register("is")
class InceptionScore:
    @staticmethod
    def score(ev, samples, fake, logits):
        score = kmetrics.inception_score(logits, from_logits=True)
        return {"is": score["mean"], "is_std": score["std"]}

    @staticmethod
    def label(ev, n, net):
        return {"is": f"Inception Score formula, 10 splits ({ev.num_samples or '?'} generated) on {net}"}


class _OnActivations:
    """A metric of the real and generated activations alone: `kgan.metrics.<function>(real,
    fake)` returns its values by logged name (`keys`), all labelled with `description`."""

    function = keys = description = None

    @classmethod
    def score(cls, ev, samples, fake, logits):
        return getattr(kmetrics, cls.function)(ev._real, fake)

    @classmethod
    def label(cls, ev, n, net):
        return dict.fromkeys(cls.keys, f"{cls.description} ({n}) on {net}")


@METRIC_REGISTRY.register("pr")
class PrecisionRecall(_OnActivations):
    function, keys, description = "precision_recall", ("precision", "recall"), "improved precision / recall, k = 3"


@METRIC_REGISTRY.register("dc")
class DensityCoverage(_OnActivations):
    function, keys, description = "density_coverage", ("density", "coverage"), "density / coverage, k = 5"


@METRIC_REGISTRY.register("modes")
class Modes:
    """Mode counts (kgan.metrics.modes) under kgan's logged names: modes, hq_percent, reverse_kl."""

    @staticmethod
    def score(ev, samples, fake, logits):
        modes = kmetrics.mode_metrics(samples, ev.dataset, classifier=ev.classifier)
        results = {"modes": modes["modes_captured"]}
        if "high_quality_percent" in modes:
            results["hq_percent"] = modes["high_quality_percent"]
        results["reverse_kl"] = modes["reverse_kl"]
        return results

    @staticmethod
    def label(ev, n, net):
        accuracy = getattr(ev.classifier, "test_accuracy", None)
        how = "nearest mode within 3 std (PacGAN protocol)"
        if ev.classifier is not None:
            how = f"channels classified by {ev.classifier.name}" + (
                f" (held-out accuracy {accuracy:.2%})" if accuracy is not None else "")
        return {"modes": f"{ev.dataset} modes captured ({ev.num_samples or '?'} generated); {how}"}



def real_examples(dataset, num_real=DEFAULT_NUM_REAL):
    """The first `num_real` examples of a `kgan.data.Dataset` as a NumPy array."""
    count = min(int(num_real), int(dataset.num_examples))
    batch = next(iter(dataset.data.batch(count).take(1)))
    return (batch[0] if isinstance(batch, tuple) else batch).numpy()  # (examples, labels) when labelled


# --------------------------------------------------------------------------------------------
# Scoring an exported generator (the library side of `kgan evaluate`, whose flags are in kgan.cli)


def signature_shapes(model):
    """(latent_dim, sample shape) of an exported generator's serving_default signature."""
    signature = model.signatures["serving_default"]
    latent = signature.structured_input_signature[1]["latent"]
    images = signature.structured_outputs["images"]
    return int(latent.shape[-1]), tuple(int(s) for s in images.shape[1:])


def generate_samples(model, num, seed=0, progress=True):
    """`num` samples of an exported generator, exactly those `kgan generate --num NUM --seed SEED`
    writes: `kgan.generate.sample_batches` (the export's stateless `sample` signature; an export
    without it gets the same latents through `serving_default`). One sampling convention, so a
    score can be traced to the samples it was computed on.

    Returns images as float32 in [-1, 1] (the uint8 samples mapped back: x / 127.5 - 1) or the
    points as they are. A conditional export gets the classes in turn, 0, 1, ..., K-1, 0, ...
    """
    import keras

    from kgan.generate import sample_batches

    bar = keras.utils.Progbar(num, unit_name="sample") if progress else None
    outputs, done = [], 0
    for arrays in sample_batches(model, num, seed):
        part = arrays["images"].astype(np.float32) / 127.5 - 1.0 if "images" in arrays else arrays["points"]
        outputs.append(part)
        done += len(part)
        if bar is not None:
            bar.update(done)
    return np.concatenate(outputs, axis=0)


def check_arguments(num_samples=None, num_real=DEFAULT_NUM_REAL, seed=0):
    """Raises UsageError for `evaluate` arguments that cannot work; before anything is done."""
    if num_samples is not None and int(num_samples) < 10:
        raise UsageError(f"--num-samples must be >= 10; got {num_samples}")
    if int(num_real) < 10:
        raise UsageError(f"--num-real must be >= 10; got {num_real}")
    if not 0 <= int(seed) < 2**63:
        raise UsageError(f"--seed must be in [0, 2^63); got {seed}")


def evaluate(model_path, dataset, metrics=None, num_samples=None, features=None, seed=0, num_real=DEFAULT_NUM_REAL,
             data_dir=None, progress=True):
    """Scores an exported generator against a dataset.

    Args:
        model_path: SavedModel directory written by kgan (saved_models/<run>/generator).
        dataset: dataset name (kgan.data) for the real examples.
        metrics: `--metrics` text or tuple (default: the dataset's defaults, else fid,kid).
        num_samples: generated samples (default: `PROTOCOL_SAMPLES` for ring8, grid25 and
            stacked_digits, else 10,000).
        features: feature network name (default: `default_features(dataset)`).
        seed: latent seed (see `generate_samples`).
        num_real: real examples used (at most).
        data_dir: TensorFlow Datasets directory.
        progress: show a progress bar while generating.

    Returns:
        The report dict (what `kgan evaluate` prints and writes).

    Raises:
        UsageError: missing model, unknown dataset / metric / network, shape mismatch.
    """
    from kgan import data
    from kgan.generate import load_model

    data.validate_name(dataset)
    check_arguments(num_samples, num_real, seed)
    num_samples = num_samples or default_num_samples(dataset, 10_000)
    model = load_model(model_path)
    latent_dim, shape = signature_shapes(model)
    names = metrics if isinstance(metrics, (tuple, list)) else parse_metrics(metrics, dataset)
    if metrics is None and not names:
        names = ("fid", "kid")
    image_size = shape[0] if len(shape) == 3 and shape[0] in data.IMAGE_SIZES else None
    real_data = data.load(dataset, data_dir=data_dir, image_size=image_size, seed=seed)
    if tuple(real_data.shape) != shape:
        raise UsageError(f"the generator makes samples of shape {list(shape)} but {dataset} has "
                         f"{list(real_data.shape)}: choose the dataset it was trained on")
    features = features or default_features(dataset, real_data.kind)
    start = time.perf_counter()
    evaluator = Evaluator(names, real_examples(real_data, num_real), features=features if any(
        m in FEATURE_METRICS for m in names) else None, dataset=dataset)
    setup_seconds = time.perf_counter() - start
    start = time.perf_counter()
    samples = generate_samples(model, int(num_samples), seed=seed, progress=progress)
    generate_seconds = time.perf_counter() - start
    if not np.all(np.isfinite(samples)):
        raise KganError(f"the generator at {model_path} produced NaN or Inf samples: it diverged; nothing to score")
    values = evaluator(samples)
    return {
        "model": os.path.abspath(model_path),
        "dataset": dataset,
        "metrics": values,
        "labels": evaluator.labels(),
        "features": evaluator.describe(),
        "num_samples": int(num_samples),
        "num_real": evaluator.num_real,
        "seed": int(seed),
        "latent_dim": latent_dim,
        "seconds": {"setup": round(setup_seconds, 3), "generate": round(generate_seconds, 3),
                    **{k: round(v, 4) for k, v in evaluator.seconds.items()}},
    }
