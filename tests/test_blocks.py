"""Training in blocks of steps (`steps_per_execution`) keeps every per-step guarantee:
`StepLog` writes every step's values to TensorBoard, `DivergenceGuard` names the exact bad step."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from kgan import callbacks, checkpoint, cli, data, networks
from kgan.gan import GAN
from tests.gan_helpers import read_scalars

STEPS_PER_EPOCH, EPOCHS, BATCH = 4, 3, 64  # 256 examples


def tiny_gan(steps_per_execution=1):
    keras.utils.set_random_seed(0)
    generator, discriminator = networks.build((8, 8, 1), 16)
    model = GAN(generator, discriminator, latent_dim=16, seed=0, track_gradient_norms=True)
    model.compile(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-3), loss="minkowski",
                  steps_per_execution=steps_per_execution)
    return model


def test_block_size_is_the_largest_divisor_of_the_epoch_up_to_100():
    assert callbacks.block_size(28) == 28  # the main job: one block per epoch
    assert callbacks.block_size(56) == 56  # tests/test_resume.py (batch 32)
    assert callbacks.block_size(120) == 60
    assert callbacks.block_size(1000) == 100  # ring8 at batch 100
    assert callbacks.block_size(97) == 97
    assert callbacks.block_size(101) == 1  # a prime above 100
    assert callbacks.block_size(202) == 2
    assert callbacks.block_size(60, largest=7) == 6


def test_step_log_writes_the_same_per_step_scalars_as_keras_tensorboard_every_step(tmp_path):
    real, _ = data.digits_arrays()
    real = real[: STEPS_PER_EPOCH * BATCH]
    # Reference: one step per call, Keras' TensorBoard writes batch_* every step.
    reference = tiny_gan(1)
    history_1 = reference.fit(real, batch_size=BATCH, epochs=EPOCHS, verbose=0, shuffle=False, callbacks=[
        keras.callbacks.TensorBoard(str(tmp_path / "k1"), update_freq=1, write_graph=False)]).history
    # Blocks of 4 steps: StepLog keeps the values in the graph and writes them once per block.
    blocked = tiny_gan(4)
    step_log = callbacks.StepLog(STEPS_PER_EPOCH, logdir=str(tmp_path / "k4"))
    history_4 = blocked.fit(real, batch_size=BATCH, epochs=EPOCHS, verbose=0, shuffle=False, callbacks=[
        step_log, keras.callbacks.TensorBoard(str(tmp_path / "k4"), update_freq="epoch", write_graph=False)]).history
    expected = read_scalars(str(tmp_path / "k1" / "train"))
    got = read_scalars(str(tmp_path / "k4" / "train"))
    names = ("d_loss", "g_loss", "d_grad_norm", "g_grad_norm")
    for name in names:
        steps = [step for step, _ in got[f"batch_{name}"]]
        assert steps == list(range(1, EPOCHS * STEPS_PER_EPOCH + 1)), name
        assert [step for step, _ in expected[f"batch_{name}"]] == steps
        np.testing.assert_allclose([v for _, v in got[f"batch_{name}"]], [v for _, v in expected[f"batch_{name}"]],
                                   rtol=1e-5, err_msg=name)
        np.testing.assert_allclose(history_4[name], history_1[name], rtol=1e-5)
        # Keras' epoch scalars are still written, once per epoch.
        assert [step for step, _ in got[f"epoch_{name}"]] == list(range(EPOCHS))
    # The buffer holds the last block: the running means of its 4 steps, the last one the logs'.
    first, rows = step_log.rows()
    assert first == (EPOCHS - 1) * STEPS_PER_EPOCH + 1 and len(rows["d_loss"]) == 4
    assert rows["d_loss"][-1] == pytest.approx(history_4["d_loss"][-1], rel=1e-6)


def test_step_log_every_n_writes_every_nth_step(tmp_path):
    real, _ = data.digits_arrays()
    model = tiny_gan(4)
    model.fit(real[: STEPS_PER_EPOCH * BATCH], batch_size=BATCH, epochs=2, verbose=0, shuffle=False,
              callbacks=[callbacks.StepLog(STEPS_PER_EPOCH, logdir=str(tmp_path), every=3)])
    scalars = read_scalars(str(tmp_path / "train"))
    assert [step for step, _ in scalars["batch_g_loss"]] == [3, 6]


@pytest.mark.parametrize("with_step_log, expected_step", [(True, 6), (False, 8)])
def test_guard_names_the_first_bad_step_inside_a_block(with_step_log, expected_step):
    """A NaN in the examples of step 6 (the 2nd step of the 2nd block of 4): with a StepLog the
    guard reports step 6; reading Keras' logs once per block it could only say step 8."""
    real, _ = data.digits_arrays()
    real = real[: EPOCHS * STEPS_PER_EPOCH * BATCH].copy()  # a new batch every step
    real[5 * BATCH + 3, 2, 2, 0] = np.nan  # the 6th batch: global step 6, epoch 2
    batches = tf.data.Dataset.from_tensor_slices(real).batch(BATCH)
    model = tiny_gan(4)
    step_log = callbacks.StepLog(STEPS_PER_EPOCH) if with_step_log else None
    guard = checkpoint.DivergenceGuard(STEPS_PER_EPOCH, step_log=step_log)
    history = model.fit(batches, steps_per_epoch=STEPS_PER_EPOCH, epochs=EPOCHS, verbose=0,
                        callbacks=[c for c in (step_log, guard) if c is not None]).history
    assert guard.diverged is not None
    assert guard.diverged["step"] == expected_step and guard.diverged["epoch"] == 2
    assert guard.diverged["what"] == "d_loss" and guard.diverged["value"] == "nan"
    assert len(history["d_loss"]) == 2  # stopped at the end of the block (and epoch) with the NaN


def test_guard_checks_the_weights_each_epoch_in_one_graph_call():
    model = tiny_gan(4)
    guard = checkpoint.DivergenceGuard(STEPS_PER_EPOCH)
    guard.set_model(model)
    guard.on_train_begin()
    guard.on_epoch_end(0)
    assert guard.diverged is None
    variable = model.discriminator.trainable_weights[1]
    variable.assign(np.where(np.arange(variable.shape[0]) == 2, np.inf, 0.0).astype("float32"))
    guard.on_epoch_end(1)
    assert guard.diverged == {"step": 2 * STEPS_PER_EPOCH, "epoch": 1, "what": f"weight {variable.path}",
                              "value": "non-finite"}


def test_steps_per_execution_must_divide_the_epoch(capsys, tmp_path):
    # digits, batch 64: 1797 // 64 = 28 steps per epoch; 5 does not divide it.
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--steps-per-execution", "5", "--epochs", "1", "--output", str(tmp_path / "o"),
                  "--logdir", str(tmp_path / "l"), "--checkpoint-dir", str(tmp_path / "c"), "--metrics", "none"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1
    assert "--steps-per-execution must be >= 1 and divide the 28 steps of an epoch; got 5" in err[0]
    assert not os.path.exists(tmp_path / "o")
