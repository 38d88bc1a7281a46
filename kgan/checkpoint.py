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

Each checkpoint is written to a temporary directory and renamed into place, so a crash while
saving leaves the previous checkpoints intact; the last `keep` are kept.
"""

import json
import os
import re
import shutil

import keras
import numpy as np

WEIGHTS = "gan.weights.h5"
STATE = "state.json"
_NAME = re.compile(r"^epoch-(\d+)$")


def seed_generators(gan):
    """The model's `keras.random.SeedGenerator`s by name: the noise seed, the penalty's and the
    augmentation's (`augment`), when there are."""
    found = {"noise": gan.seed_generator}
    seed = getattr(gan.penalty, "seed", None)
    if isinstance(seed, keras.random.SeedGenerator):
        found["penalty"] = seed
    augment = getattr(gan, "augment", None)
    if augment is not None:
        found["augment"] = augment.seed_generator
    return found


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
    """

    def __init__(self, directory, keep=3, write=True):
        self.directory = directory
        self.keep = int(keep)
        self.write = write

    def list(self):
        """Complete checkpoints, oldest first, as (epoch, path)."""
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
        staging = os.path.join(self.directory, f".tmp-epoch-{epoch:06d}-{os.getpid()}")
        if not self.write:
            import tempfile

            staging = tempfile.mkdtemp(prefix="kgan-worker-checkpoint-")
        os.makedirs(staging, exist_ok=True)
        gan.save_weights(os.path.join(staging, WEIGHTS))
        state = {
            "epoch": int(epoch),
            "step": int(gan.g_optimizer.iterations.numpy()),
            "seeds": {name: np.asarray(s.state.numpy()).tolist() for name, s in seed_generators(gan).items()},
            **(extra or {}),
        }
        with open(os.path.join(staging, STATE), "w") as handle:
            json.dump(state, handle, indent=2)
        if not self.write:
            shutil.rmtree(staging, ignore_errors=True)
            return None
        if os.path.exists(final):  # re-saving the same epoch (e.g. after a resume): replace it
            shutil.rmtree(final)
        os.replace(staging, final)
        for _, old in self.list()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    @staticmethod
    def read_state(path):
        with open(os.path.join(path, STATE)) as handle:
            return json.load(handle)

    def restore(self, gan, path):
        """Loads a checkpoint into `gan` (compiled, so its optimizers exist); returns its state."""
        state = self.read_state(path)
        gan.load_weights(os.path.join(path, WEIGHTS))
        generators = seed_generators(gan)
        for name, value in state["seeds"].items():
            if name in generators:
                generators[name].state.assign(np.asarray(value, dtype=generators[name].state.dtype))
        return state


class CheckpointCallback(keras.callbacks.Callback):
    """Saves a checkpoint every `every` epochs and after the last one, never a diverged state.

    Args:
        checkpoints: a `Checkpoints`.
        every: epochs between checkpoints (>= 1).
        guard: optional `DivergenceGuard`; nothing is saved once it has fired.
        extra: dict stored in each `state.json` (e.g. the run's config).
    """

    def __init__(self, checkpoints, every=1, guard=None, extra=None):
        super().__init__()
        self.checkpoints = checkpoints
        self.every = int(every)
        self.guard = guard
        self.extra = extra or {}
        self.last_saved = None

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        if done % self.every and done != self.params.get("epochs"):
            return
        if self.guard is not None and self.guard.diverged:
            return
        if not all_finite(self.model.weights):
            return  # the guard (if any) reports it; a broken state is never saved
        logs = {k: float(v) for k, v in (logs or {}).items()}
        self.last_saved = self.checkpoints.save(self.model, done, {**self.extra, "logs": logs})


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

        weights = list(self.model.weights)
        # One graph call per epoch: the index of the first non-finite weight, or -1.
        self._first_bad = tf.function(lambda: _first_non_finite(weights))
        self._weights = weights

    def on_epoch_end(self, epoch, logs=None):
        if self.diverged is not None:
            return
        index = int(self._first_bad())
        if index >= 0:
            self._fire((epoch + 1) * self.steps_per_epoch, f"weight {self._weights[index].path}", "non-finite")


def _first_non_finite(variables):
    """(In a graph) the index of the first variable with a NaN or Inf, or -1."""
    import tensorflow as tf

    finite = tf.stack([tf.reduce_all(tf.math.is_finite(v.value)) if "float" in str(v.dtype) else tf.constant(True)
                       for v in variables])
    bad = tf.where(tf.logical_not(finite))[:, 0]
    return tf.cond(tf.size(bad) > 0, lambda: tf.cast(bad[0], "int32"), lambda: tf.constant(-1))
