"""kgan.checkpoint: `WeightsWriter` (the file Keras' `save_weights` writes, group for group) and saving in the background.

(Saving, keeping and restoring checkpoints end to end: tests/test_resume.py and test_faults.py.)
"""

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from kgan import checkpoint, penalties
from kgan.augment import AdaptiveAugment
from tests.gan_helpers import IMAGES, LABELS, image_gan


def _contents(path):
    """{h5 path: (array, attributes) for a dataset, attributes for a group} of a weights file."""
    found = {}

    def visit(name, item):
        attrs = {key: np.asarray(value).tolist() for key, value in item.attrs.items()}
        found[name] = (np.array(item), attrs) if isinstance(item, h5py.Dataset) else attrs

    with h5py.File(path, "r") as handle:
        handle.visititems(visit)
    return found


def _assert_same_file(a, b):
    first, second = _contents(a), _contents(b)
    assert sorted(first) == sorted(second)
    for name, value in first.items():
        if isinstance(value, tuple):
            array, attrs = second[name]
            assert array.dtype == value[0].dtype and attrs == value[1], name
            np.testing.assert_array_equal(array, value[0], err_msg=name)
        else:
            assert second[name] == value, name


def _every_technique():
    model = image_gan(num_classes=10, ema=0.9, historical_averaging=0.1, augment=AdaptiveAugment("translation", seed=0),
                      feature_matching=0.5, unroll=1, clip_grad_norm=1.0, instance_noise=0.1,
                      penalty=penalties.GradientPenalty(1.0, seed=0))
    return model


def _labelled():
    return tf.data.Dataset.from_tensor_slices((IMAGES, LABELS)).batch(16)


def test_the_writer_writes_what_save_weights_writes_with_every_technique_on_as_training_goes_on(tmp_path):
    model = _every_technique()
    writer = checkpoint.WeightsWriter()
    for epoch in range(2):  # the first fit builds the optimizers; the second changes every value
        model.fit(_labelled(), epochs=1, verbose=0)
        model.save_weights(tmp_path / f"keras-{epoch}.weights.h5")
        writer(model, tmp_path / f"kgan-{epoch}.weights.h5")
        _assert_same_file(tmp_path / f"keras-{epoch}.weights.h5", tmp_path / f"kgan-{epoch}.weights.h5")
    assert writer._record is not None and writer._template  # the fast path, not save_weights; epoch 1 from the template
    loaded = _every_technique()
    loaded.fit(_labelled(), epochs=1, verbose=0)  # builds the optimizers
    loaded.load_weights(tmp_path / "kgan-1.weights.h5")
    for ours, theirs in zip(loaded.weights + loaded.d_optimizer.variables, model.weights + model.d_optimizer.variables,
                            strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(ours), keras.ops.convert_to_numpy(theirs))


def test_a_file_from_the_template_is_the_replayed_file_byte_for_byte(tmp_path):
    model = _every_technique()
    model.fit(_labelled(), epochs=1, verbose=0)
    writer = checkpoint.WeightsWriter()
    writer(model, tmp_path / "first.weights.h5")  # replayed: makes the template
    model.fit(_labelled(), epochs=1, verbose=0)  # new values everywhere
    writer(model, tmp_path / "template.weights.h5")
    assert writer._template  # made by the first write, used by the second
    replayed = checkpoint.WeightsWriter()
    replayed(model, tmp_path / "replayed.weights.h5")
    assert (tmp_path / "template.weights.h5").read_bytes() == (tmp_path / "replayed.weights.h5").read_bytes()
    assert (tmp_path / "template.weights.h5").read_bytes() != (tmp_path / "first.weights.h5").read_bytes()
    values = [np.asarray(value) for value in writer._read()]
    values[0] = values[0].astype("float64")  # a value whose dtype changed: replayed, not templated
    writer.write(tmp_path / "float64.weights.h5", values)
    with h5py.File(tmp_path / "float64.weights.h5", "r") as handle:
        dtypes = []
        handle.visititems(lambda name, item: dtypes.append(item.dtype) if isinstance(item, h5py.Dataset) else None)
    assert np.dtype("float64") in dtypes


def test_the_writer_records_again_for_another_model_and_new_optimizer_variables(tmp_path):
    writer = checkpoint.WeightsWriter()
    first, second = image_gan(), image_gan(lr=2e-3)
    writer(first, tmp_path / "unbuilt-optimizers.weights.h5")  # the optimizers have no slots yet
    for model in (first, second):
        model.fit(IMAGES, batch_size=16, epochs=1, verbose=0)
        writer(model, tmp_path / "kgan.weights.h5")
        model.save_weights(tmp_path / "keras.weights.h5")
        _assert_same_file(tmp_path / "keras.weights.h5", tmp_path / "kgan.weights.h5")


class _Computed(keras.layers.Layer):
    """A layer that stores a computed array, not a variable: the writer cannot replay it."""

    def build(self, shape):
        self.scale = self.add_weight(shape=(), initializer="ones")

    def call(self, x):
        return x * self.scale

    def save_own_variables(self, store):
        store["0"] = keras.ops.convert_to_numpy(self.scale) * 2.0

    def load_own_variables(self, store):
        self.scale.assign(store["0"] / 2.0)


def test_the_writer_calls_save_weights_when_a_value_is_not_a_variable(tmp_path, monkeypatch):
    model = keras.Sequential([keras.Input((2,)), _Computed()])
    calls = []
    original = keras.Model.save_weights
    monkeypatch.setattr(keras.Model, "save_weights", lambda self, path, *a, **k: calls.append(path) or original(
        self, path, *a, **k))
    checkpoint.WeightsWriter()(model, tmp_path / "kgan.weights.h5")
    assert calls == [tmp_path / "kgan.weights.h5"]


def test_the_checkpoint_callback_reuses_the_guard_s_weight_check_of_the_epoch(tmp_path, monkeypatch):
    model = image_gan()
    model.fit(IMAGES, batch_size=16, epochs=1, verbose=0)
    checked = []
    monkeypatch.setattr(checkpoint, "all_finite", lambda variables: checked.append(len(variables)) or True)
    guard = checkpoint.DivergenceGuard(steps_per_epoch=2)
    for with_guard in (True, False):
        callback = checkpoint.CheckpointCallback(checkpoint.Checkpoints(str(tmp_path / str(with_guard))),
                                                 guard=guard if with_guard else None)
        callback.set_model(model)
        callback.set_params({"epochs": 1})
        guard.checked_epoch = 0  # what the guard's on_epoch_end sets when every weight is finite
        callback.on_train_begin()
        callback.on_epoch_end(0, {})
        assert callback.last_saved is not None
    assert checked == [len(model.weights)]  # only without the guard


def _files(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


class _HeldFsync:
    """os.fsync held until `release()` (a slow disk); only the publisher's thread may call it."""

    def __init__(self, monkeypatch):
        import os
        import threading

        self.released, self.synced, self._fsync = threading.Event(), [], os.fsync
        monkeypatch.setattr(os, "fsync", self)

    def __call__(self, fd):
        import threading

        assert threading.current_thread() is not threading.main_thread()  # the save must not wait for it
        assert self.released.wait(60)
        self.synced.append(fd)
        self._fsync(fd)

    def release(self):
        self.released.set()


def _trained():
    model = image_gan()
    model.fit(IMAGES, batch_size=16, epochs=1, verbose=0)
    return model


def test_a_checkpoint_saved_in_the_background_is_the_same_and_complete_once_listed(tmp_path, monkeypatch):
    import errno
    import os

    from kgan import atomic
    from kgan.errors import DiskFullError

    model = _trained()
    checkpoint.Checkpoints(str(tmp_path / "inline")).save(model, 1, {"note": 1})
    background = checkpoint.Checkpoints(str(tmp_path / "background"), keep=2, background=True)
    held = _HeldFsync(monkeypatch)
    path = background.save(model, 1, {"note": 1})
    assert background._complete() == [] and not os.path.exists(path)  # returned before its fsyncs
    held.release()
    assert background.latest() == path and len(held.synced) == 4  # weights, state.json, its directory, the parent
    assert _files(tmp_path / "background" / "epoch-000001") == _files(tmp_path / "inline" / "epoch-000001")
    for epoch in (2, 3, 4):  # in order; the oldest deleted only after a newer one is complete
        background.save(model, epoch)
    assert [epoch for epoch, _ in background.list()] == [3, 4]
    assert not [name for name in os.listdir(tmp_path / "background") if name.startswith(atomic.PREFIX)]

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)  # out of space when the data reach the disk
    background.save(model, 5)
    with pytest.raises(DiskFullError, match="no space left on device writing .*epoch-000005"):
        background.wait()
    background.save(model, 6)
    background._publisher._pending[-1].exception()  # (finished)
    with pytest.raises(DiskFullError, match="epoch-000006"):  # raised by the next save, before it writes
        background.save(model, 7)
    assert [epoch for epoch, _ in background.list()] == [3, 4]  # the last complete ones are kept
    assert not [name for name in os.listdir(tmp_path / "background") if name.startswith(atomic.PREFIX)]


def test_saves_in_the_background_are_bounded_and_complete_when_training_ends(tmp_path, monkeypatch):
    import threading

    model = _trained()
    background = checkpoint.Checkpoints(str(tmp_path), keep=1, background=True)
    background._publisher.max_pending = 2
    held = _HeldFsync(monkeypatch)
    background.save(model, 1)
    background.save(model, 2)
    third = threading.Thread(target=background.save, args=(model, 3))
    third.start()
    third.join(1.0)
    assert third.is_alive()  # a third save waits while two are under way (disk and drain time bounded)
    held.release()
    third.join(60)
    assert [epoch for epoch, _ in background.list()] == [3]

    held.released.clear()  # the callback's end of training waits for the checkpoints under way
    callback = checkpoint.CheckpointCallback(background)
    callback.set_model(model)
    callback.set_params({"epochs": 4})
    callback.on_train_begin()
    callback.on_epoch_end(3, {})
    wait = background.wait
    monkeypatch.setattr(background, "wait", lambda: (held.release(), wait())[1])
    callback.on_train_end()
    assert [epoch for epoch, _ in background._complete()] == [4]
