"""Crash and resume, and the divergence guard, end to end through `kgan train` subprocesses.

A run killed with SIGKILL after its first checkpoint and started again with the same command
resumes from its last checkpoint and ends with the same weights as an uninterrupted run
(`--deterministic`: op determinism; the tolerance is 1e-6, measured 0).
"""

import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS = 4


def _command(tmp, run, *extra):
    return [
        sys.executable, "-m", "kgan.cli", "train", "--loss", "minkowski", "--dataset", "digits",
        "--epochs", str(EPOCHS), "--batch-size", "32", "--latent-dim", "8", "--deterministic", "--precision", "float32",
        "--run-name", run, "--output", str(tmp / "out"), "--logdir", str(tmp / "logs"),
        "--checkpoint-dir", str(tmp / "ckpt"), *extra,
    ]


def _env():
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="", PYTHONPATH=ROOT)


def _run(command, tmp, expect=0):
    proc = subprocess.run(command, cwd=tmp, env=_env(), capture_output=True, text=True, timeout=180)
    assert proc.returncode == expect, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def _weights(path):
    """Every array of a Keras .weights.h5 file, by its path in the file."""
    arrays = {}
    with h5py.File(path, "r") as handle:
        handle.visititems(lambda name, item: arrays.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None)
    return arrays


def _final_weights(tmp, run):
    return _weights(tmp / "ckpt" / run / f"epoch-{EPOCHS:06d}" / "gan.weights.h5")


@pytest.mark.slow
def test_killed_run_resumes_and_ends_with_the_uninterrupted_weights(tmp_path):
    # The uninterrupted reference.
    _run(_command(tmp_path, "ref"), tmp_path)

    # The same run, killed (SIGKILL: no clean-up) as soon as its first checkpoint exists.
    first = tmp_path / "ckpt" / "crash" / "epoch-000001" / "state.json"
    proc = subprocess.Popen(_command(tmp_path, "crash"), cwd=tmp_path, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not first.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    done = sorted(os.listdir(tmp_path / "ckpt" / "crash"))
    assert f"epoch-{EPOCHS:06d}" not in done, done

    # The same command again: resumes from the last complete checkpoint.
    proc = _run(_command(tmp_path, "crash"), tmp_path)
    resumed = [line for line in proc.stdout.splitlines() if "resuming crash from epoch" in line]
    assert resumed, proc.stdout[-2000:]
    epoch = int(resumed[0].split("from epoch ")[1].split()[0])
    assert 1 <= epoch < EPOCHS
    assert f"trained crash for {EPOCHS - epoch} epochs" in proc.stdout

    reference, result = _final_weights(tmp_path, "ref"), _final_weights(tmp_path, "crash")
    assert reference.keys() == result.keys() and len(reference) > 10
    difference = max(float(np.abs(np.asarray(reference[k], "float64") - np.asarray(result[k], "float64")).max())
                     for k in reference if np.asarray(reference[k]).dtype.kind in "fiu")
    print(f"resume: max abs weight difference vs uninterrupted = {difference:g}")
    assert difference <= 1e-6
    # Only the last --keep-checkpoints (3) are kept.
    assert len(os.listdir(tmp_path / "ckpt" / "crash")) == 3


@pytest.mark.slow
def test_divergence_exits_3_restores_the_last_good_checkpoint_and_keeps_the_export(tmp_path):
    import tensorflow as tf

    one_epoch = [*_command(tmp_path, "div")]
    one_epoch[one_epoch.index("--epochs") + 1] = "1"
    _run(one_epoch, tmp_path)
    export = tmp_path / "out" / "div" / "generator"
    config_json = (tmp_path / "out" / "div" / "config.json").read_text()

    # Resume with absurd learning rates: the first step of epoch 2 is NaN.
    proc = _run(_command(tmp_path, "div", "--d-lr", "1e30", "--g-lr", "1e30"), tmp_path, expect=3)
    message = proc.stderr.strip().splitlines()[-1]
    assert "training diverged at step 57 (epoch 2)" in message, message  # 1797 // 32 = 56 steps per epoch
    assert "_loss is" in message and "restored the last good checkpoint" in message, message
    assert "nothing was exported" in message and "Traceback" not in proc.stderr

    # Nothing broken was saved; the good checkpoint and the earlier export are intact and loadable.
    assert sorted(os.listdir(tmp_path / "ckpt" / "div")) == ["epoch-000001"]
    weights = _weights(tmp_path / "ckpt" / "div" / "epoch-000001" / "gan.weights.h5")
    assert all(np.isfinite(v).all() for v in weights.values() if np.asarray(v).dtype.kind == "f")
    assert (tmp_path / "out" / "div" / "config.json").read_text() == config_json
    serve = tf.saved_model.load(str(export)).signatures["serving_default"]
    images = list(serve(latent=tf.random.normal((4, 8))).values())[0].numpy()
    assert images.shape == (4, 8, 8, 1) and np.isfinite(images).all()


def test_checkpoints_keep_the_last_k_and_restore_seed_state(tmp_path):
    import keras

    from kgan import checkpoint, gan, networks

    keras.utils.set_random_seed(0)
    generator, discriminator = networks.build((2,), 4)
    model = gan.GAN(generator, discriminator, seed=3)
    model.compile(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-3), loss="hinge")
    model.fit(np.random.default_rng(0).normal(size=(16, 2)).astype("float32"), batch_size=8, epochs=1, verbose=0)
    checkpoints = checkpoint.Checkpoints(str(tmp_path), keep=2)
    for epoch in (1, 2, 3):
        checkpoints.save(model, epoch)
    assert [e for e, _ in checkpoints.list()] == [2, 3]
    seed = model.seed_generator.state.numpy().copy()
    kernel = model.discriminator.weights[0].numpy().copy()
    model.seed_generator.state.assign([0, 0])
    model.discriminator.weights[0].assign(np.zeros_like(kernel))
    state = checkpoints.restore(model, checkpoints.latest())
    assert state["epoch"] == 3 and state["step"] == 2
    np.testing.assert_array_equal(model.seed_generator.state.numpy(), seed)
    np.testing.assert_array_equal(model.discriminator.weights[0].numpy(), kernel)
