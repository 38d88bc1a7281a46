"""Keras callbacks for GAN training: per-step logs of blocked steps, sample pictures and
sample-quality metrics to TensorBoard.

(The gradient-norm logger is part of the model: `GAN(track_gradient_norms=True)` puts
`d_grad_norm` / `g_grad_norm` into the logs; `StepLog` (or `BatchLog` under several replicas)
and `EpochLog` write them.)
"""

import collections
import concurrent.futures
import contextlib
import io
import os
import socket
import time

import keras
import numpy as np
import tensorflow as tf

from kgan import evaluate as kevaluate
from kgan import plots


def _blas_threads(limit):
    """Context limiting NumPy's BLAS threads (threadpoolctl, installed with scikit-learn)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn requires it
        limit = None
    if limit is None:
        return contextlib.nullcontext()
    return threadpool_limits(limits=int(limit), user_api="blas")


def block_size(steps_per_epoch, largest=100):
    """The default `steps_per_execution` of `kgan train`: the largest divisor of
    `steps_per_epoch` that is <= `largest`.

    Keras runs `steps_per_execution` steps per call of the train function and does not cut a
    block at the end of an epoch, so the block must divide the epoch for epochs (checkpoints,
    metrics, resume) to stay where they are.
    """
    steps_per_epoch = int(steps_per_epoch)
    return max(k for k in range(1, min(largest, steps_per_epoch) + 1) if steps_per_epoch % k == 0)


class EventFile:
    """TensorBoard summaries written from Python into a new event file of `logdir`: the events
    `tf.summary.scalar` (a float32 scalar tensor) and `tf.summary.image` (a string tensor
    [width, height, png]) write, with their plugins' metadata, through TensorFlow's TFRecord
    writer.

    For values already on the host (a block's rows of `StepLog`, a picture of `SampleGrid`): no
    graph to trace per writer and no eager ops: about 40 us per step of four scalars and 1 ms
    per picture, where the eager `tf.summary.image` took 7 ms.
    """

    _count = 0

    def __init__(self, logdir):
        from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
        from tensorboard.plugins.image import metadata as image_metadata

        self._event, self._summary, self._tensor = event_pb2.Event, summary_pb2.Summary, tensor_pb2.TensorProto
        self._types, self._shape = types_pb2, tensor_shape_pb2.TensorShapeProto
        self._scalar_metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
        self._image_metadata = image_metadata.create_summary_metadata(display_name=None, description=None)
        tf.io.gfile.makedirs(logdir)
        EventFile._count += 1
        # TensorFlow's event file name with "kgan<n>" for its counter: never one of TF's writers' names.
        name = (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}"
                f".kgan{EventFile._count}.v2")
        self._file = tf.io.TFRecordWriter(os.path.join(logdir, name))
        self._write(self._event(wall_time=time.time(), file_version="brain.Event:2"))

    def _write(self, event):
        self._file.write(event.SerializeToString())

    def scalars(self, step, scalars, wall_time=None):
        """One event at `step` with the scalars {tag: value}."""
        values = [self._summary.Value(tag=tag, metadata=self._scalar_metadata, tensor=self._tensor(
            dtype=self._types.DT_FLOAT, tensor_shape=self._shape(), float_val=[float(value)]))
            for tag, value in scalars.items()]
        self._write(self._event(wall_time=time.time() if wall_time is None else wall_time, step=int(step),
                                summary=self._summary(value=values)))

    def image(self, tag, step, picture, wall_time=None):
        """One picture (uint8 [height, width, channels], 1 or 3 channels) at `step`, as PNG."""
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(picture[..., 0] if picture.shape[-1] == 1 else picture).save(buffer, format="PNG")
        height, width = picture.shape[:2]
        tensor = self._tensor(dtype=self._types.DT_STRING, string_val=[b"%d" % width, b"%d" % height, buffer.getvalue()],
                              tensor_shape=self._shape(dim=[self._shape.Dim(size=3)]))
        value = self._summary.Value(tag=tag, metadata=self._image_metadata, tensor=tensor)
        self._write(self._event(wall_time=time.time() if wall_time is None else wall_time, step=int(step),
                                summary=self._summary(value=[value])))

    def flush(self):
        self._file.flush()

    def close(self):
        self._file.close()


class StepLog(keras.callbacks.Callback):
    """Every step's logged values, kept inside the graph while Keras runs steps in blocks.

    With `compile(steps_per_execution=k)` Keras runs k train steps per call of its train
    function and calls the batch hooks once per block, with the last step's logs. This callback
    gives the GAN a [k, n] float32 buffer (`GAN.step_log`); `train_step` writes its logged
    values (the same numbers Keras would log for that step: the epoch's running means of the
    losses and gradient norms) into row `count % k`. At the end of each block the callback
    reads the buffer once (`rows()`, what `kgan.checkpoint.DivergenceGuard` checks) and, with a
    `logdir`, writes every step's values as `batch_<name>` scalars to `<logdir>/train` (the tags
    and events keras.callbacks.TensorBoard(update_freq=1) writes) at step = the global step
    number, from those rows (`EventFile`: no graph to trace). Nothing leaves the graph per
    step. The GAN keeps the log after `fit` (a later `fit` with the same callback reuses the
    traced step).

    Single replica only (the buffer is written in the replica's step); `kgan train` uses
    blocks of 1 step, and the guard reads Keras' logs, under a multi-replica strategy.

    Args:
        steps_per_epoch: to number the steps (epoch * steps_per_epoch + batch + 1).
        logdir: the run's TensorBoard directory, or None (no writes: the guard's buffer only).
        every: write the scalars of every `every`-th step only (1: all of them).
    """

    def __init__(self, steps_per_epoch, logdir=None, every=1):
        super().__init__()
        self.steps_per_epoch = int(steps_per_epoch)
        self.logdir = os.path.join(logdir, "train") if logdir else None
        self.every = int(every)
        if self.every < 1:
            raise ValueError(f"every must be >= 1; got {every}")
        self.names = []
        self.values = None
        self.count = None
        self._writer = None
        self._epoch = 0
        self._block = None  # (first global step, number of steps)
        self._rows = None

    def on_train_begin(self, logs=None):
        model = self.model
        capacity = int(getattr(model, "steps_per_execution", 1) or 1)
        if model.step_log is not self or self.values.shape[0] != capacity:
            self.names = [m.name for m in model.metrics]
            if getattr(model, "augment", None) is not None:
                self.names.append("augment_p")
            self.values = tf.Variable(tf.zeros((capacity, len(self.names))), trainable=False, name="step_log")
            self.count = tf.Variable(0, dtype="int32", trainable=False, name="step_log_count")
            model.step_log = self
            model.make_train_function(force=True)  # traced with the buffer
        if self.logdir:
            self._writer = EventFile(self.logdir)

    def record(self, results):
        """Called by `GAN.train_step` (in the graph): stores this step's values."""
        row = tf.stack([tf.reshape(tf.cast(results[name], "float32"), ()) for name in self.names])
        index = self.count % tf.shape(self.values)[0]
        self.values.scatter_nd_update(tf.reshape(index, (1, 1)), row[None])
        self.count.assign_add(1)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        self.count.assign(0)
        self._first = self._epoch * self.steps_per_epoch + batch + 1  # Keras' `batch`: the block's first
        self._rows = None
        self._began = time.time()

    def on_train_batch_end(self, batch, logs=None):
        n = int(self.count.numpy())
        self._block = (self._first, n)
        if self._writer is not None and n:
            first, rows = self.rows()
            # Wall times spread evenly over the block (TensorBoard's "relative" axis).
            ended = time.time()
            tags = {f"batch_{name}": rows[name] for name in self.names}
            for i in range(n):
                step = first + i
                if step % self.every == 0:
                    wall_time = self._began + (ended - self._began) * (i + 1) / n
                    self._writer.scalars(step, {tag: values[i] for tag, values in tags.items()}, wall_time)
            self._writer.flush()

    def rows(self):
        """(first global step, {name: values [n]}) of the last block (read once per block)."""
        if self._rows is None:
            first, n = self._block
            values = self.values.numpy()[:n]
            self._rows = (first, {name: values[:, j] for j, name in enumerate(self.names)})
        return self._rows

    def on_train_end(self, logs=None):
        # The GAN keeps this log (a later `fit` with it reuses the traced step); detach it with
        # `gan.step_log = None; gan.make_train_function(force=True)`.
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class BatchLog(keras.callbacks.Callback):
    """Keras' logs of every step as `batch_<name>` scalars, through `EventFile`: `StepLog`'s
    tags and step numbers (epoch * steps_per_epoch + batch + 1, so a resumed run goes on where
    it stopped) for a fit of one step per call, where the logs are on the host every step.
    With `steps_per_execution = k > 1` Keras calls the batch hooks once per block, so only each
    block's last step is written (as keras.callbacks.TensorBoard does).

    `kgan train` uses it under several replicas (no `StepLog`; one step per call unless
    `--steps-per-execution` says otherwise), with `EpochLog`.

    Args:
        steps_per_epoch: to number the steps.
        logdir: the run's TensorBoard directory; scalars go to `<logdir>/train`.
        every: write the scalars of every `every`-th step only (1: all of them).
    """

    def __init__(self, steps_per_epoch, logdir, every=1):
        super().__init__()
        self.steps_per_epoch = int(steps_per_epoch)
        self.logdir = os.path.join(logdir, "train")
        self.every = int(every)
        if self.every < 1:
            raise ValueError(f"every must be >= 1; got {every}")
        self._writer = None
        self._epoch = 0

    def on_train_begin(self, logs=None):
        self._writer = EventFile(self.logdir)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        step = self._epoch * self.steps_per_epoch + batch + 1
        if logs and step % self.every == 0:  # values of shape [1] under multi-worker (GAN._logs)
            self._writer.scalars(step, {f"batch_{name}": np.asarray(value).reshape(-1)[0]
                                        for name, value in logs.items()})

    def on_epoch_end(self, epoch, logs=None):
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class EpochLog(keras.callbacks.Callback):
    """The epoch scalars of `keras.callbacks.TensorBoard(update_freq="epoch")`, through `EventFile`.

    At the end of every epoch: `epoch_<name>` for each of the epoch's logs at step = epoch in
    `<logdir>/train`, `val_<name>` logs as `epoch_<name>` in `<logdir>/validation`: the tags, steps and values Keras
    writes, without an eager `tf.summary.scalar` per value (1-1.5 ms each, 8 an epoch for the
    main job's 200 epochs). The learning rates are the GAN's: `epoch_d_learning_rate` and
    `epoch_g_learning_rate` (Keras writes `epoch_learning_rate` of `model.optimizer`, which for
    a GAN is the unused default of `Model.compile`, RMSprop at 0.001); other models get Keras'
    tags. `kgan train` uses it with `StepLog`, and with `BatchLog` under several replicas.
    """

    def __init__(self, logdir):
        super().__init__()
        self.logdir = logdir
        self._writers = {}

    def _writer(self, name):
        if name not in self._writers:
            self._writers[name] = EventFile(os.path.join(self.logdir, name))
        return self._writers[name]

    def _learning_rates(self):
        """The GAN's two learning rates; else Keras' `TensorBoard._collect_learning_rate`'s."""
        players = {name: getattr(self.model, f"{name}_optimizer", None) for name in ("d", "g")}
        if all(isinstance(o, keras.optimizers.Optimizer) for o in players.values()):
            return {f"{name}_learning_rate": float(keras.ops.convert_to_numpy(o.learning_rate))
                    for name, o in players.items()}
        optimizer = getattr(self.model, "optimizer", None)
        optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # a LossScaleOptimizer's
        if hasattr(optimizer, "optimizers"):
            return {f"learning_rate_{o.name}": float(keras.ops.convert_to_numpy(o.learning_rate))
                    for o in optimizer.optimizers}
        if isinstance(optimizer, keras.optimizers.Optimizer):
            return {"learning_rate": float(keras.ops.convert_to_numpy(optimizer.learning_rate))}
        return {}

    def on_epoch_end(self, epoch, logs=None):
        if not logs:
            return
        train = {name: value for name, value in logs.items() if not name.startswith("val_")}
        validation = {name[4:]: value for name, value in logs.items() if name.startswith("val_")}  # Keras' tags
        for name, values in (("train", {**train, **self._learning_rates()}), ("validation", validation)):
            if values:
                writer = self._writer(name)
                writer.scalars(epoch, {f"epoch_{tag}": value for tag, value in values.items()})
                writer.flush()

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}


class SampleGrid(keras.callbacks.Callback):
    """Writes a picture of generated samples to TensorBoard at the end of every `every` epochs.

    The latent batch is fixed when training starts, so pictures are comparable across epochs.
    Images are tiled into an 8-column grid; 2-D points are drawn as a scatter plot over
    `reference` points. The samples are drawn at the epoch's end; the picture is drawn, encoded
    and written by one background thread, in order (at most `max_pending` waiting), so training
    goes on meanwhile. `on_train_end` waits for every picture and raises the first failure.

    Args:
        logdir: TensorBoard directory of the run; pictures go to `<logdir>/samples`.
        num_samples: samples in each picture (64 for an 8x8 grid; points: e.g. 1000).
        every: epochs between pictures.
        seed: seed of the fixed latent batch.
        reference: optional real points [N, 2] drawn under 2-D samples.
        max_pending: pictures waiting for the background thread before an epoch's end waits.
    """

    def __init__(self, logdir, num_samples=64, every=1, seed=0, reference=None, max_pending=4):
        super().__init__()
        self.logdir = os.path.join(logdir, "samples")
        self.num_samples = num_samples
        self.every = every
        self.seed = seed
        self.reference = reference
        self.max_pending = int(max_pending)
        self._writer = None
        self._latent = None
        self._thread = None
        self._pending = collections.deque()

    def on_train_begin(self, logs=None):
        self._finish(raise_errors=False)  # what a fit that raised left (Keras skips on_train_end then)
        self._writer = EventFile(self.logdir)
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="kgan-samples")
        self._latent = keras.random.normal((self.num_samples, self.model.latent_dim), seed=self.seed)
        sampler = getattr(self.model, "sampler", self.model.generator)  # the EMA generator with --ema
        # One graph call per picture (an eager call of the functional model took 12 ms of 13 here).
        self._sample = tf.function(lambda inputs: sampler(inputs, training=False), autograph=False)

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        inputs = self._latent
        if getattr(self.model, "num_classes", None):  # conditional: the classes in turn
            inputs = [inputs, tf.range(self.num_samples, dtype="int32") % self.model.num_classes]
        samples = np.asarray(self._sample(inputs), dtype="float32")
        while self._pending and (self._pending[0].done() or len(self._pending) >= self.max_pending):
            self._pending.popleft().result()  # a failed picture raises here
        self._pending.append(self._thread.submit(self._write, self._writer, samples, epoch + 1, time.time()))

    def _write(self, writer, samples, step, wall_time):
        picture = plots.sample_picture(samples, self.reference, title=f"epoch {step}")
        writer.image("samples", step, picture, wall_time=wall_time)
        writer.flush()

    def on_train_end(self, logs=None):
        self._finish(raise_errors=True)

    def _finish(self, raise_errors):
        """Waits for the pictures still pending, stops the thread, closes the writer; raises the
        first failure when `raise_errors`."""
        try:
            while self._pending:
                future = self._pending.popleft()
                if raise_errors:
                    future.result()
                else:
                    future.exception()  # waits; a failure of an earlier fit was its own
        finally:
            self._pending.clear()
            if self._thread is not None:
                self._thread.shutdown(wait=True)
                self._thread = None
            if self._writer is not None:
                self._writer.close()
                self._writer = None


class MetricsCallback(keras.callbacks.Callback):
    """Sample-quality metrics during training, to TensorBoard and into the epoch `logs`.

    At the end of the first epoch, of every `every`-th epoch and of the last epoch, generates
    `num_samples` samples with `gan.generate(num_samples, seed=seed)` (the same latents every
    time, so values are comparable across epochs; no global random state is used), scores them
    with a `kgan.evaluate.Evaluator` (the real activations are computed once, before training),
    writes every value with `tf.summary.scalar` to `<logdir>/metrics` (step = epochs completed)
    and puts it into `logs` under its short name ("fcd", "kid", "precision", "modes", ...).

    Order matters: Keras calls callbacks in list order with the same `logs` dict, so put this
    callback BEFORE the callbacks that read the metrics (CSVLogger, EarlyStopping,
    ModelCheckpoint, keras.callbacks.TensorBoard). History and the progress bar are appended
    by Keras after the user's callbacks and always see them.

    Samples with NaN or Inf (a diverged generator) are not scored: the values become NaN.
    On epochs without an evaluation, `logs` carries the last computed values, so every epoch
    has every key (ModelCheckpoint(monitor="fcd") never warns about a missing key; a carried
    value never counts as an improvement; give EarlyStopping a `patience` above `every`).
    TensorBoard's `<logdir>/metrics` only has the epochs that were evaluated.

    Args:
        metrics: metric names (`kgan.evaluate.METRICS`, e.g. ["fcd", "kid"]) or an `Evaluator`.
        real: real examples (images `[N, H, W, C]` in [-1, 1] or points `[N, D]`); unused when
            `metrics` is an `Evaluator`.
        features: feature network (a `FeatureExtractor` or a name, e.g. "classifier:digits").
        dataset: dataset name (for "modes").
        logdir: the run's TensorBoard directory (None: no TensorBoard writes).
        every: epochs between evaluations.
        num_samples: generated samples per evaluation.
        seed: seed of the generated samples.
        kid_subsets: KID subsets per evaluation (see `Evaluator`).
        blas_threads: NumPy BLAS threads while computing the metrics (None: unchanged). 1 avoids
            oversubscribing the cores TensorFlow's thread pools are spinning on: on a busy
            2-core machine KID and the Frechet distance ran 5 to 20 times faster with 1 than 2.

    Attributes:
        evaluator: the `Evaluator`; `evaluator.labels()` says which network each value used.
        last: the values of the last evaluation (dict), `last_epoch` its epoch (1-based).
        seconds: seconds per evaluation (generation included), one entry per evaluation;
            `mean_seconds()` splits the mean into generation, features and each metric.
    """

    def __init__(self, metrics, real=None, features=None, dataset=None, logdir=None, every=10, num_samples=1000, seed=0,
                 kid_subsets=100, blas_threads=1):
        super().__init__()
        if int(every) < 1 or int(num_samples) < 10:
            raise ValueError(f"every must be >= 1 and num_samples >= 10; got {every}, {num_samples}.")
        if isinstance(metrics, kevaluate.Evaluator):
            self.evaluator = metrics
        else:
            self.evaluator = kevaluate.Evaluator(metrics, real, features=features, dataset=dataset,
                                                 kid_subsets=kid_subsets)
        self.logdir = os.path.join(logdir, "metrics") if logdir else None
        self.every = int(every)
        self.num_samples = int(num_samples)
        self.seed = seed
        self.blas_threads = blas_threads
        self.last = {}
        self.last_epoch = None
        self.seconds = []
        self.part_seconds = {}
        self._writer = None

    def on_train_begin(self, logs=None):
        self._first_epoch = True
        if self.logdir:
            self._writer = tf.summary.create_file_writer(self.logdir)

    def _due(self, epoch):
        last = self.params.get("epochs") if self.params else None
        return self._first_epoch or (epoch + 1) % self.every == 0 or (last is not None and epoch + 1 == last)

    def evaluate(self):
        """Scores `num_samples` fresh samples of the current generator; returns the values."""
        start = time.perf_counter()
        samples = self.model.generate(self.num_samples, seed=self.seed)
        self.part_seconds["generate"] = self.part_seconds.get("generate", 0.0) + time.perf_counter() - start
        if not np.all(np.isfinite(samples)):  # a diverged generator: NaN scores (DivergenceGuard reports it)
            return {name: float("nan") for name in self.last}
        with _blas_threads(self.blas_threads):
            values = self.evaluator(samples)
        for part, seconds in self.evaluator.seconds.items():
            if part != "real_features":
                self.part_seconds[part] = self.part_seconds.get(part, 0.0) + seconds
        return values

    def mean_seconds(self):
        """Mean seconds per evaluation of each part: "generate", "features", each metric, "total"."""
        n = max(len(self.seconds), 1)
        parts = {part: total / n for part, total in self.part_seconds.items()}
        return {**parts, "total": sum(self.seconds) / n}

    def on_epoch_end(self, epoch, logs=None):
        if self._due(epoch):
            self._first_epoch = False
            start = time.perf_counter()
            self.last = self.evaluate()
            self.seconds.append(time.perf_counter() - start)
            self.last_epoch = epoch + 1
            if self._writer is not None:
                # record_if(True): Keras' TensorBoard callback leaves a step-based record_if
                # condition active during training that would otherwise drop these summaries.
                with self._writer.as_default(), tf.summary.record_if(True):
                    for name, value in self.last.items():
                        tf.summary.scalar(name, value, step=epoch + 1)
                    if len(self.seconds) == 1:
                        labels = "\n".join(f"- **{k}**: {v}" for k, v in self.evaluator.labels().items())
                        tf.summary.text("labels", labels, step=epoch + 1)
                self._writer.flush()
        if logs is not None:
            logs.update(self.last)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def metrics_callback_for_run(config, dataset, logdir):
    """The `MetricsCallback` `kgan train` uses for a resolved `TrainConfig`, or None (no metrics).

    Metrics, feature network, frequency and sample count come from `config.metrics`,
    `config.features`, `config.metrics_every` and `config.metrics_samples` (defaults per
    dataset: `kgan.evaluate.DEFAULT_METRICS`, `default_features`, `PROTOCOL_SAMPLES`, else
    1000 samples). KID uses 10 subsets per
    evaluation (about 0.2 s instead of 2 s for 100 at 1000 x 128-d). Raises UsageError for
    bad names or an unavailable feature network.
    """
    names = kevaluate.parse_metrics(config.metrics, dataset.name)
    if not names:
        return None
    features = None
    if any(name in kevaluate.FEATURE_METRICS for name in names):
        features = kevaluate.get_features(config.features or kevaluate.default_features(dataset.name, dataset.kind),
                                          kevaluate.feature_cache_dir(config.output),
                                          image_size=dataset.shape[0] if dataset.kind == "images" else None)
    real = kevaluate.real_examples(dataset)
    evaluator = kevaluate.Evaluator(names, real, features=features, dataset=dataset.name, kid_subsets=10,
                                    cache_dir=kevaluate.feature_cache_dir(config.output))
    num_samples = config.metrics_samples or kevaluate.default_num_samples(dataset.name, 1000)
    return MetricsCallback(evaluator, logdir=logdir, every=config.metrics_every, num_samples=num_samples,
                           seed=config.seed)
