"""kgan.distribute: strategies by name, and 2 replicas == 1 replica (weights, logged losses),
PacGAN packing included.

The equivalence runs in ONE subprocess (`python -m tests.test_distribute`): the CPU must be split
into 2 logical devices before TensorFlow initialises, which the pytest process has long done.
The subprocess trains every case on 1 replica (default strategy) and on 2 replicas
(MirroredStrategy on 2 logical CPUs) from the same initial weights, data and seed, and prints
JSON: the largest absolute weight difference and both logged losses per case.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name -> (loss, penalty weight, weight clip, d_steps, synchronized batch norm)
CASES = {
    "non_saturating": ("non_saturating", None, None, 1, False),
    "minkowski_p4": ({"class_name": "Minkowski", "config": {"p": 4.0}}, None, None, 1, False),
    "wgan_gp": ("wasserstein", 10.0, None, 1, False),
    "wgan_clip_d5": ("wasserstein", None, 0.01, 5, False),
    "non_saturating_sync_bn": ("non_saturating", None, None, 1, True),
    "wgan_gp_pack2": ("wasserstein", 10.0, None, 1, False),
    "non_saturating_sync_bn_pack2": ("non_saturating", None, None, 1, True),
}
#: PacGAN's m of the packed cases (1 for the others): the data holds m samples per example.
PACK = {"wgan_gp_pack2": 2, "non_saturating_sync_bn_pack2": 2}
STEPS, BATCH, LATENT = 3, 8, 16


def _train(strategy, case, images):
    """Trains one case for STEPS steps under `strategy`; returns (weights, history, seed state)."""
    import keras
    import tensorflow as tf

    from kgan import distribute, gan, networks, penalties

    loss, gp, clip, d_steps, sync_bn = CASES[case]
    pack = PACK.get(case, 1)
    keras.utils.set_random_seed(0)
    with strategy.scope():
        if sync_bn:  # the DCGAN pair, batch norm in G and D, synchronised across replicas
            generator, discriminator = networks.build(images.shape[1:], LATENT, batch_norm=True, pack=pack)
            distribute.synchronize_batch_norm(generator)
            distribute.synchronize_batch_norm(discriminator)
        else:  # batch-norm-free MLPs: per-replica batch statistics would differ from the global's
            generator = networks.mlp_generator(LATENT, images.shape[1], units=32, num_layers=2, batch_norm=False)
            discriminator = networks.mlp_discriminator(images.shape[1] * pack, units=32, num_layers=2)
        model = gan.GAN(generator, discriminator, d_steps=d_steps, seed=0, pack=pack)
        model.compile(
            keras.optimizers.Adam(1e-2), keras.optimizers.Adam(1e-2), loss=loss,
            penalty=penalties.GradientPenalty(gp, seed=1) if gp else None, weight_clip=clip,
        )
    # The same initial weights for both runs (built from the same global seed, set again to be sure).
    rng = np.random.default_rng(1)
    for v in model.generator.weights + model.discriminator.weights:
        if v.trainable:
            v.assign(rng.normal(0, 0.05, v.shape).astype(v.dtype) if clip is None else
                     rng.uniform(-clip, clip, v.shape).astype(v.dtype))
    initial = [np.asarray(v.numpy()) for v in model.generator.weights + model.discriminator.weights]
    data = tf.data.Dataset.from_tensor_slices(images).batch(BATCH * d_steps * pack, drop_remainder=True)
    history = model.fit(data, epochs=1, verbose=0, shuffle=False).history
    weights = [np.asarray(v.numpy()) for v in model.generator.weights + model.discriminator.weights]
    change = max(float(np.abs(a - b).max()) for a, b in zip(weights, initial, strict=True))
    return weights, {k: float(v[-1]) for k, v in history.items()}, model.seed_generator.state.numpy().tolist(), change


def compare(cases):
    """Runs `cases` on 1 and on 2 replicas; returns {case: {max_abs_diff, one, two, seeds}}."""
    from kgan import distribute

    two = distribute.get_strategy("mirrored", devices=2)  # before TF initialises its devices
    import tensorflow as tf

    results = {}
    for case in cases:
        d_steps, pack = CASES[case][3], PACK.get(case, 1)
        shape = (8, 8, 1) if CASES[case][4] else (2,)
        images = np.random.default_rng(0).uniform(-1, 1, (STEPS * BATCH * d_steps * pack, *shape)).astype("float32")
        w1, h1, s1, change = _train(tf.distribute.get_strategy(), case, images)
        w2, h2, s2, _ = _train(two, case, images)
        results[case] = {
            "replicas": two.num_replicas_in_sync,
            "max_abs_diff": max(float(np.abs(a - b).max()) for a, b in zip(w1, w2, strict=True)),
            "max_abs_change": change,  # how far training moved the weights (1 replica)
            "one": h1, "two": h2, "seed_one": s1, "seed_two": s2,
        }
    return results


@pytest.fixture(scope="module")
def equivalence():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(
        [sys.executable, "-m", "tests.test_distribute", *CASES], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", list(CASES))
def test_two_replicas_equal_one_replica(equivalence, case):
    result = equivalence[case]
    assert result["replicas"] == 2
    assert result["max_abs_diff"] < 1e-5, result
    assert result["max_abs_change"] > 1e-3, result  # the steps did train
    # The seed generator advanced identically on each replica and as on one replica.
    assert result["seed_one"] == result["seed_two"] and result["seed_one"][1] > 0
    # Logged losses are the global means (not one replica's).
    for name, value in result["one"].items():
        np.testing.assert_allclose(result["two"][name], value, rtol=1e-5, atol=1e-6, err_msg=name)


def test_get_strategy_by_name_and_bad_input():
    import tensorflow as tf

    from kgan import distribute
    from kgan.errors import UsageError

    assert distribute.get_strategy("default") is tf.distribute.get_strategy()
    with pytest.raises(UsageError, match="unknown strategy"):
        distribute.get_strategy("horovod")
    with pytest.raises(UsageError, match="--devices must be >= 1"):
        distribute.get_strategy("mirrored", devices=0)
    with pytest.raises(UsageError, match="applies to --strategy mirrored"):
        distribute.get_strategy("default", devices=2)
    env = os.environ.pop("TF_CONFIG", None)
    try:
        with pytest.raises(UsageError, match="TF_CONFIG"):
            distribute.get_strategy("multiworker")
    finally:
        if env is not None:
            os.environ["TF_CONFIG"] = env


@pytest.mark.slow
def test_cli_mirrored_two_cpu_replicas_with_sync_bn_logs_what_one_device_logs(tmp_path):
    def train(name, *extra, expect=0):
        command = [sys.executable, "-m", "kgan.cli", "train", "--loss", "wasserstein", "--gp", "--epochs", "1",
                   "--batch-size", "64", "--latent-dim", "8", "--run-name", name, "--checkpoint-every", "0",
                   "--precision", "float32", "--xla", "off",  # one device would compile with XLA: other noise
                   "--output", str(tmp_path / "out"), "--logdir", str(tmp_path / "logs"), *extra]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="", PYTHONPATH=ROOT)
        proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
        assert proc.returncode == expect, proc.stderr[-3000:]
        if expect:
            return proc.stderr
        return json.loads((tmp_path / "out" / name / "config.json").read_text())["final"]

    one = train("one")
    two = train("two", "--strategy", "mirrored", "--devices", "2", "--sync-bn")
    assert one.keys() == two.keys()
    for name, value in one.items():
        np.testing.assert_allclose(two[name], value, rtol=1e-4, err_msg=name)
    from tests.gan_helpers import read_scalars

    # TensorBoard: one device's StepLog + EpochLog, two replicas' BatchLog + EpochLog: the same
    # tags, steps and values (no Keras `epoch_learning_rate` of compile's unused optimizer).
    scalars = {name: read_scalars(str(tmp_path / "logs" / name / "train")) for name in ("one", "two")}
    assert scalars["one"].keys() == scalars["two"].keys()
    assert {"batch_d_loss", "epoch_d_loss", "epoch_d_learning_rate"} <= scalars["one"].keys()
    assert "epoch_learning_rate" not in scalars["two"]
    for tag, points in scalars["one"].items():
        assert [s for s, _ in scalars["two"][tag]] == [s for s, _ in points], tag
        np.testing.assert_allclose([v for _, v in scalars["two"][tag]], [v for _, v in points], rtol=1e-4, err_msg=tag)
    message = train("odd", "--strategy", "mirrored", "--devices", "2", "--batch-size", "63", expect=2)
    assert "must be a multiple of the number of replicas (2)" in message


def _free_ports(n):
    import socket

    sockets = [socket.socket() for _ in range(n)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def worker(case, out):
    """One multi-worker process (TF_CONFIG set by the caller): trains `case`, saves its weights."""
    from kgan import distribute

    strategy = distribute.get_strategy("multiworker")
    d_steps = CASES[case][3]
    images = np.random.default_rng(0).uniform(-1, 1, (STEPS * BATCH * d_steps, 2)).astype("float32")
    weights, history, seeds, _ = _train(strategy, case, images)
    np.savez(out, *weights, history=json.dumps(history), seeds=json.dumps(seeds),
             replicas=strategy.num_replicas_in_sync)


@pytest.mark.slow
def test_two_local_workers_hold_identical_weights_equal_to_one_process(tmp_path):
    import tensorflow as tf

    case = "wgan_gp"
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    procs = []
    try:
        for index in range(2):
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="",
                       TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "tests.test_distribute", "--worker", case, str(tmp_path / f"w{index}.npz")],
                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            ))
        outputs = [proc.communicate(timeout=240) for proc in procs]
    finally:
        for proc in procs:  # bounded: never leave a worker behind
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-3000:]

    workers = [np.load(tmp_path / f"w{index}.npz") for index in range(2)]
    assert all(int(w["replicas"]) == 2 for w in workers)
    n = len([k for k in workers[0].files if k.startswith("arr_")])
    w0, w1 = ([w[f"arr_{i}"] for i in range(n)] for w in workers)
    assert all(np.array_equal(a, b) for a, b in zip(w0, w1, strict=True)), "the workers' weights differ"

    # One process, one replica, the same global batch: the same weights and logged losses.
    images = np.random.default_rng(0).uniform(-1, 1, (STEPS * BATCH * CASES[case][3], 2)).astype("float32")
    single, history, seeds, _ = _train(tf.distribute.get_strategy(), case, images)
    difference = max(float(np.abs(a - b).max()) for a, b in zip(single, w0, strict=True))
    print(f"multi-worker: max abs weight difference vs one process = {difference:g}")
    assert difference < 1e-5
    assert json.loads(str(workers[0]["seeds"])) == seeds
    for name, value in history.items():
        np.testing.assert_allclose(json.loads(str(workers[0]["history"]))[name], value, rtol=1e-5, atol=1e-6)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2], sys.argv[3])
    else:
        print(json.dumps(compare(sys.argv[1:] or list(CASES))))
