"""Resumable checkpoints and the divergence guard.

    checkpoints/<run>/epoch-000003/gan.weights.h5   G, D, both optimizers, and the toolbox's
                                                    state: EMA generator, augmentation p (ADA),
                                                    historical averages (Keras save_weights)
    checkpoints/<run>/epoch-000003/state.json       epoch, step, seed-generator states, config

`GAN.save_weights` keeps the optimizers' state (they are attributes of the model) but NOT a
`keras.random.SeedGenerator`'s state, so `state.json` carries the seed states explicitly. A
resumed `fit` also starts a fresh data iterator: `kgan.data.pipeline(..., initial_epoch=e)`
makes each epoch's batches depend only on the seed and the epoch. Together, a run killed after
a checkpoint and resumed ends with the same weights as an uninterrupted one.

Each checkpoint is written to a temporary directory and renamed into place (`kgan.atomic`), so
a crash while saving leaves the previous checkpoints intact; the last `keep` are kept. A
checkpoint that cannot be read back (truncated weights, invalid `state.json`) is never deleted:
`Checkpoints.restore_newest` says so on one line and resumes from the newest one that loads.

`state.json` also carries the run's record so far (`history`: every epoch's logs since epoch 1,
`train_seconds`), so a resumed run's config.json holds the whole run, not only its last `fit`.
"""

import json
import os
import re
import shutil

import keras
import numpy as np

from kgan import atomic
from kgan.errors import DiskFullError, UsageError

WEIGHTS = "gan.weights.h5"
STATE = "state.json"
_NAME = re.compile(r"^epoch-(\d+)$")


def seed_generators(gan):
    """The model's `keras.random.SeedGenerator`s by name (`kgan.gan.GAN.seed_generators`)."""
    return gan.seed_generators()


def weights_bytes(gan):
    """An estimate of the bytes `gan.save_weights` writes: its weights and both optimizers' state
    (Adam: two slots per weight), plus the HDF5 overhead."""
    optimizers = [getattr(gan, name, None) for name in ("d_optimizer", "g_optimizer")]
    variables = [*gan.weights, *(v for o in optimizers if o is not None for v in o.variables)]
    return int(sum(np.prod(v.shape) * np.dtype(v.dtype).itemsize for v in variables)) + 2**16


class WeightsWriter:
    """Writes `model.save_weights(path)`'s file, the same file, in a fraction of its time.

    Keras' `save_weights` walks the model's object tree on every call (`dir()` of every layer
    and optimizer) and reads each variable with its own eager op. The writer lets Keras walk
    once, with a store that records what it would write (`make(path, metadata)` and
    `store[key] = value`, in order), and then replays that record into Keras' own `H5IOStore`
    on every call, with all the variables' values read by one graph call: the groups, names,
    keys, dtypes and values are those `save_weights` writes, so `load_weights` reads the file
    as before (tests/test_checkpoint.py compares the two files).

    The record is made again when the model's variables change (another object, a lazily
    built optimizer). Where the record cannot name a variable for every value (a layer that
    stores computed arrays), and under a multi-replica strategy, it calls `save_weights`.

    Replaying costs h5py a few hundred microseconds per group, attribute and dataset (10-15 ms
    a checkpoint for the main job's GAN). So the first replay also keeps the file's bytes as a
    template, with where each dataset's data lies in it (HDF5 stores an uncompressed,
    unchunked dataset contiguously: `h5py`'s `DatasetID.get_offset`), and later writes copy
    the template with the new values put in place: the same file as a replay, one `write`.
    The template is used only if every dataset's bytes in it are exactly its value's (checked
    when it is made), and while every value keeps its dtype and shape; otherwise the writer
    replays.
    """

    def __init__(self):
        self._model = None
        self._key = None
        self._record = None  # [("make", path, metadata) or ("set", key, variable index)], or None
        self._read = None
        self._template = None  # (file bytes, [(offset, variable index, dtype, shape)]), False: replay only

    def __call__(self, model, path):
        if self._model is not model or self._key != _variables_key(model):
            self._model, self._key = model, _variables_key(model)
            self._record, self._read = _record_save_weights(model)
            self._template = None
        if self._record is None:
            model.save_weights(path)
            return
        self.write(path, [np.asarray(value) for value in self._read()])

    def write(self, path, values):
        """Writes the record's `.weights.h5` at `path`, with `values` by variable index: from the
        template when it holds, else by replaying the record (and making the template)."""
        if self._template and all(values[index].dtype == dtype and values[index].shape == shape
                                  for _, index, dtype, shape in self._template[1]):
            data, slots = self._template
            data = bytearray(data)
            for offset, index, _, _ in slots:
                value = np.ascontiguousarray(values[index])
                if value.nbytes:
                    data[offset:offset + value.nbytes] = value.tobytes()
            with open(path, "wb") as handle:
                handle.write(data)
            return
        slots = self._replay(path, values)
        if self._template is None:
            self._template = _template(path, slots, values)

    def _replay(self, path, values):
        """Replays the record into a new file at `path`; returns each dataset's (offset, variable
        index, dtype, shape), its offset None when HDF5 did not store it contiguously."""
        from keras.src.saving import saving_lib

        slots = []
        store = saving_lib.H5IOStore(path, mode="w")
        try:
            for event, first, second in self._record:
                if event == "make":
                    store.make(first, metadata=second)
                    continue
                store[first] = values[second]
                dataset = store._h5_entry_group[first]
                contiguous = dataset.chunks is None and dataset.compression is None
                slots.append((dataset.id.get_offset() if contiguous else None, second, values[second].dtype,
                              values[second].shape))
        finally:
            store.close()
        return slots


def _template(path, slots, values):
    """`WeightsWriter`'s template of the file just written at `path`, or False when some
    dataset's bytes are not found at its offset (then the writer always replays)."""
    with open(path, "rb") as handle:
        data = handle.read()
    for offset, index, _, _ in slots:
        value = np.ascontiguousarray(values[index])
        if value.nbytes and (offset is None or data[offset:offset + value.nbytes] != value.tobytes()):
            return False  # (an empty dataset has no data and no offset: nothing to put in place)
    return data, slots


def _variables_key(model):
    """What the record of `save_weights` depends on: the model's and its optimizers' variables."""
    optimizers = [getattr(model, name, None) for name in ("optimizer", "d_optimizer", "g_optimizer")]
    return tuple(id(v) for v in model.variables) + tuple(
        id(v) for o in optimizers if o is not None for v in o.variables)


def _recording_store(saving_lib):
    """A Keras `H5IOStore` (in write mode) that records `make` and `store[key] = value` calls
    instead of writing a file: `_save_state` accepts only that type."""

    class Recording(saving_lib.H5IOStore):
        def __init__(self):  # no file
            self.events = []
            self._path = None

        def __bool__(self):
            return True

        def make(self, path, metadata=None):
            self._path = path
            self.events.append(("make", path, metadata))
            return self

        def __setitem__(self, key, value):
            self.events.append(("set", key, (self._path, value)))

    return Recording()


def _record_save_weights(model):
    """(record, read): `save_weights`' writes by variable index and a graph call reading those
    variables, or (None, None) when the fast path does not apply."""
    import tensorflow as tf

    try:
        from keras.src.saving import saving_lib
    except ImportError:  # pragma: no cover - another Keras layout
        return None, None
    if model.distribute_strategy.num_replicas_in_sync != 1 or not model.built:
        return None, None
    recording = _recording_store(saving_lib)
    saving_lib._save_state(model, weights_store=recording, assets_store=None, inner_path="",
                           visited_saveables=set())
    variables, record = [], []
    for event, first, second in recording.events:
        if event == "set":
            variable = _source_variable(model, *second, first)
            if variable is None:
                return None, None
            variables.append(variable)
            second = len(variables) - 1
        record.append((event, first, second))
    read = tf.function(lambda: [v.value for v in variables], autograph=False)
    return record, read


def _source_variable(model, path, value, key):
    """The variable `save_weights` stored as `value` under `<path>/vars/<key>`, or None."""
    if isinstance(value, keras.Variable):
        return value
    # Keras optimizers store `self.variables[i].numpy()`: find the optimizer by its path.
    owner = model
    for name in filter(None, path.split("/")):
        owner = getattr(owner, name, None)
    if not isinstance(owner, keras.optimizers.Optimizer) or not key.isdigit() or int(key) >= len(owner.variables):
        return None
    variable = owner.variables[int(key)]
    current = keras.ops.convert_to_numpy(variable)
    same = current.shape == np.shape(value) and current.dtype == np.asarray(value).dtype
    return variable if same and np.array_equal(current, value) else None


def all_finite(variables):
    """True when every value of every variable is finite (no NaN, no Inf)."""
    return all(np.isfinite(np.asarray(keras.ops.convert_to_numpy(v.value))).all() for v in variables)


class Checkpoints:
    """The checkpoints of one run: save, list, restore, keep the last `keep`.

    Args:
        directory: `<checkpoint_dir>/<run>`.
        keep: number of checkpoints kept (older ones are deleted after each save), >= 1.
        write: False on workers that must not write (multi-worker non-chief): `save` then
            writes to a temporary directory it deletes.
        background: `save` writes the files and returns; a background thread fsyncs them,
            renames the checkpoint into place and deletes the oldest (`kgan.atomic.Publisher`;
            at most 4 checkpoints wait, then `save` waits for the oldest; a save that finds too
            little free space first waits for them, as they delete the oldest checkpoints).
            `list`, `latest` and `restore_newest` wait for it first, and so does `wait`. A
            process that dies before then keeps the checkpoints before (and a temporary that
            the next run's `atomic.clean_stale` removes).
    """

    def __init__(self, directory, keep=3, write=True, background=False):
        self.directory = directory
        self.keep = int(keep)
        self.write = write
        self.background = background
        self._write_weights = WeightsWriter()
        self._publisher = atomic.Publisher()
        self._bytes = None  # the last checkpoint's size: the free space the next one needs

    def list(self):
        """Complete checkpoints, oldest first, as (epoch, path) (after the saves under way: `wait`)."""
        self.wait()
        return self._complete()

    def _complete(self):
        if not os.path.isdir(self.directory):
            return []
        found = []
        for name in os.listdir(self.directory):
            match = _NAME.match(name)
            path = os.path.join(self.directory, name)
            if match and os.path.exists(os.path.join(path, STATE)):
                found.append((int(match.group(1)), path))
        return sorted(found)

    def latest(self):
        """Path of the newest complete checkpoint, or None."""
        found = self.list()
        return found[-1][1] if found else None

    def save(self, gan, epoch, extra=None):
        """Saves the training state after `epoch` completed epochs; returns its path."""
        final = os.path.join(self.directory, f"epoch-{epoch:06d}")
        state = {
            "epoch": int(epoch),
            "step": int(gan.g_optimizer.iterations.numpy()),
            "seeds": {name: np.asarray(s.state.numpy()).tolist() for name, s in seed_generators(gan).items()},
            **(extra or {}),
        }
        if not self.write:
            import tempfile

            staging = tempfile.mkdtemp(prefix="kgan-worker-checkpoint-")
            try:
                gan.save_weights(os.path.join(staging, WEIGHTS))  # collective: every worker saves
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            return None
        self._publisher.check()  # an earlier checkpoint's failure first
        if self._bytes is None:
            found = self._complete()
            self._bytes = atomic.size(found[-1][1]) if found else weights_bytes(gan)
        try:
            staging = atomic.stage(final, directory=True, expected_bytes=self._bytes)
        except DiskFullError:
            if not self._publisher.pending:
                raise
            self.wait()  # the checkpoints under way delete the oldest when they are complete
            staging = atomic.stage(final, directory=True, expected_bytes=self._bytes)
        files = [os.path.join(staging, WEIGHTS), os.path.join(staging, STATE)]
        try:
            self._write_weights(gan, files[0])
            atomic.write_file(files[1], json.dumps(state) + "\n")  # one line: for kgan, not for reading
        except BaseException as error:
            atomic.reraise(error, atomic.abandon(staging, final, error, self._bytes))
        self._bytes = size = atomic.size(staging)
        if self.background:
            self._publisher.submit(self._publish, staging, final, files, size)
        else:
            self._publish(staging, final, files, size)
        return final

    def _publish(self, staging, final, files, size):
        """Makes the staged checkpoint durable and complete (fsyncs, rename), then deletes the
        oldest beyond `keep`: at every moment the newest complete checkpoint is on disk."""
        try:
            atomic.publish(staging, final, sync=files)
        except BaseException as error:
            atomic.reraise(error, atomic.abandon(staging, final, error, size))
        for _, old in self._complete()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)

    def wait(self):
        """Waits until every checkpoint saved is complete on disk; raises a failure of one of them
        (e.g. `DiskFullError`)."""
        self._publisher.wait()

    @staticmethod
    def read_state(path):
        """The checkpoint's `state.json`, checked; raises ValueError if it is not a kgan state."""
        with open(os.path.join(path, STATE)) as handle:
            state = json.load(handle)
        if not isinstance(state, dict) or not isinstance(state.get("epoch"), int) or not isinstance(
                state.get("seeds"), dict):
            raise ValueError(f"{STATE} has no epoch and seeds")
        return state

    def restore(self, gan, path):
        """Loads a checkpoint into `gan` (compiled, so its optimizers exist); returns its state."""
        state = self.read_state(path)
        gan.load_weights(os.path.join(path, WEIGHTS))
        generators = seed_generators(gan)
        for name, value in state["seeds"].items():
            if name in generators:
                generators[name].state.assign(np.asarray(value, dtype=generators[name].state.dtype))
        return state

    def restore_newest(self, gan, check=None, print_fn=print):
        """Restores the newest checkpoint that loads; returns (path, state), or (None, None) if none.

        A checkpoint that does not load (truncated weights, invalid state.json) is reported on
        one line and left where it is; the next older one is tried. `check(state, path)` (e.g.
        the resume identity) runs before loading; its UsageError is not caught.

        Raises:
            UsageError: checkpoints exist but none of them loads.
        """
        found = self.list()
        unreadable = []
        for _, path in reversed(found):
            try:
                state = self.read_state(path)
            except (OSError, ValueError) as error:
                unreadable.append((path, error))
                continue
            if check is not None:
                check(state, path)
            try:
                state = self.restore(gan, path)
            except Exception as error:  # noqa: BLE001 - h5py, Keras: any failure means unreadable
                unreadable.append((path, error))
                continue
            for bad, error in unreadable:  # kept, out of the way of the epochs to come
                kept = _set_aside(bad)
                print_fn(f"kgan: checkpoint {os.path.basename(bad)} is unreadable ({_brief(error)}); "
                         f"resuming from {os.path.basename(path)} (kept as {os.path.basename(kept)})")
            return path, state
        if unreadable:
            bad, error = unreadable[0]
            raise UsageError(f"no checkpoint in {self.directory} can be read (newest: {os.path.basename(bad)}, "
                             f"{_brief(error)}): delete that directory to start again, or use another --run-name")
        return None, None


def _set_aside(path):
    """Renames an unreadable checkpoint to `<name>.unreadable` (never deleted); returns the new path."""
    kept, n = f"{path}.unreadable", 1
    while os.path.lexists(kept):
        n += 1
        kept = f"{path}.unreadable-{n}"
    os.rename(path, kept)
    return kept


def _brief(error):
    """An exception as a short single line."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:160]


class CheckpointCallback(keras.callbacks.Callback):
    """Saves a checkpoint every `every` epochs and after the last one, never a diverged state.

    Args:
        checkpoints: a `Checkpoints`.
        every: epochs between checkpoints (>= 1).
        guard: optional `DivergenceGuard`; nothing is saved once it has fired. Listed before
            this callback, its check of the epoch's weights stands for this callback's own.
        extra: dict stored in each `state.json` (e.g. the run's config).
        history: the record of the epochs before this `fit` ({"loss": [...], ...}), from the
            checkpoint resumed; each epoch's logs are appended and stored in `state.json`.
        seconds: training seconds before this `fit` (likewise accumulated).
    """

    def __init__(self, checkpoints, every=1, guard=None, extra=None, history=None, seconds=0.0):
        super().__init__()
        self.checkpoints = checkpoints
        self.every = int(every)
        self.guard = guard
        self.extra = extra or {}
        self.last_saved = None
        self.history = {name: list(values) for name, values in (history or {}).items()}
        self.seconds = float(seconds or 0.0)
        self.interrupted = False  # set by a SIGTERM handler: the current epoch is incomplete
        self._start = None

    def on_train_begin(self, logs=None):
        import time

        self._start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        import time

        if self.interrupted:
            return  # stopped mid-epoch: that epoch is not complete, so not a checkpoint
        logs = {k: float(v) for k, v in (logs or {}).items()}
        for name, value in logs.items():
            self.history.setdefault(name, []).append(value)
        done = epoch + 1
        if done % self.every and done != self.params.get("epochs"):
            return
        if self.guard is not None and self.guard.diverged:
            return
        checked = self.guard is not None and self.guard.checked_epoch == epoch  # this epoch's weights: finite
        if not checked and not all_finite(self.model.weights):
            return  # the guard (if any) reports it; a broken state is never saved
        seconds = self.seconds + time.time() - (self._start or time.time())
        self.last_saved = self.checkpoints.save(self.model, done, {
            **self.extra, "logs": logs, "history": self.history, "train_seconds": round(seconds, 1)})

    def on_train_end(self, logs=None):
        self.checkpoints.wait()  # every checkpoint complete on disk before fit returns


class DivergenceGuard(keras.callbacks.Callback):
    """Stops training at the first NaN or Inf in a logged loss (each step) or a weight (each epoch).

    After `fit` returns, `diverged` holds what happened: {"step", "epoch", "what", "value"}
    (None if training stayed finite). The caller restores the last good checkpoint and reports.

    With `steps_per_execution = k > 1` Keras calls the batch hooks once per block of k steps;
    given a `kgan.callbacks.StepLog` (which keeps every step's logged values in the graph) the
    guard checks every step of the block when it ends, so it still names the first bad step;
    training stops at the end of that block (the steps after it in the block have run, on
    NaN weights: nothing of them is saved or exported).

    Args:
        steps_per_epoch: to turn (epoch, batch) into a global step number.
        step_log: None (check Keras' logs, once per call of the train function), or the
            `StepLog` of the same `fit`.
    """

    def __init__(self, steps_per_epoch, step_log=None):
        super().__init__()
        self.steps_per_epoch = int(steps_per_epoch)
        self.step_log = step_log
        self.diverged = None
        self.checked_epoch = None  # the last epoch whose weights were all found finite
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def _fire(self, step, what, value):
        if self.diverged is None:
            self.diverged = {"step": int(step), "epoch": self._epoch + 1, "what": what, "value": str(value)}
        self.model.stop_training = True

    def on_train_batch_end(self, batch, logs=None):
        if self.step_log is not None:
            first, values = self.step_log.rows()
        else:
            first = self._epoch * self.steps_per_epoch + batch + 1
            values = {name: np.asarray(value, dtype="float64").reshape(-1)[:1] for name, value in (logs or {}).items()}
        bad = None  # (step offset, loss-first rank, name, value)
        for name, column in values.items():
            where = np.flatnonzero(~np.isfinite(np.asarray(column, dtype="float64")))
            if where.size:
                # Losses first at the same step: a NaN loss also makes the gradient norms NaN.
                candidate = (int(where[0]), "loss" not in name, name, float(column[where[0]]))
                bad = candidate if bad is None or candidate[:2] < bad[:2] else bad
        if bad is not None:
            self._fire(first + bad[0], bad[2], bad[3])

    def on_train_begin(self, logs=None):
        import tensorflow as tf  # kgan.checkpoint itself stays importable without it

        self.checked_epoch = None
        weights = list(self.model.weights)
        # One graph call per epoch: the index of the first non-finite weight, or -1.
        self._first_bad = tf.function(lambda: _first_non_finite(weights), autograph=False)
        self._weights = weights

    def on_epoch_end(self, epoch, logs=None):
        if self.diverged is not None:
            return
        index = int(self._first_bad())
        if index >= 0:
            self._fire((epoch + 1) * self.steps_per_epoch, f"weight {self._weights[index].path}", "non-finite")
        else:
            self.checked_epoch = epoch


def _first_non_finite(variables):
    """(In a graph) the index of the first variable with a NaN or Inf, or -1."""
    import tensorflow as tf

    finite = tf.stack([tf.reduce_all(tf.math.is_finite(v.value)) if "float" in str(v.dtype) else tf.constant(True)
                       for v in variables])
    bad = tf.where(tf.logical_not(finite))[:, 0]
    return tf.cond(tf.size(bad) > 0, lambda: tf.cast(bad[0], "int32"), lambda: tf.constant(-1))
