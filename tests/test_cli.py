"""The command line: paper defaults, the end-to-end main job, and one-line errors (exit 2); the
stabilisation toolbox through `kgan train`: each flag reaches the GAN, exports what it should, and
bad combinations are one-line usage errors (exit 2) that write nothing. Every test runs in its
own tmp_path (kgan train writes saved_models/, logs/, checkpoints/ in the working directory)."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kgan import cli, run
from kgan.config import TrainConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # kgan train writes saved_models/, logs/, checkpoints/ here


def run_main(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_dry_run_prints_the_paper_defaults(capsys):
    code, out, _ = run_main(["train", "--dry-run"], capsys)
    config = json.loads(out)
    assert code == 0
    assert config["loss"] == "minkowski" and config["p"] == 4.0
    assert (config["epochs"], config["batch_size"], config["latent_dim"]) == (200, 64, 100)
    assert (config["g_lr"], config["d_lr"], config["beta1"], config["beta2"]) == (2e-4, 2e-4, 0.5, 0.999)
    assert config["dataset"] == "digits" and config["run_name"] == "digits-minkowski-p4-s0"
    assert config["precision"] == "auto"  # what is fastest on the hardware found (docs/performance.md)


def test_flags_reach_the_config(capsys):
    code, out, _ = run_main(
        ["train", "--dry-run", "--loss", "wasserstein", "--clip", "--d-steps", "5", "--gp", "--g-lr", "1e-4",
         "--dataset", "ring8", "--seed", "3"], capsys)
    config = json.loads(out)
    assert code == 0 and config["clip"] == 0.01 and config["gp"] == 10.0 and config["d_steps"] == 5
    assert config["g_lr"] == 1e-4 and config["run_name"] == "ring8-wasserstein-s3"


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--loss", "foo"], "unknown loss 'foo'"),
        (["--p", "0"], "--p must be >= 1; got 0"),
        (["--dataset", "nope"], "unknown dataset 'nope'"),
        (["--epochs", "x"], "invalid int value"),
        (["--loss", "hinge", "--label-smoothing", "0.1"], "does not apply to the hinge loss"),
        (["--gp", "--r1"], "choose one penalty"),
        (["--batch-size", "0"], "--batch-size must be >= 1"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, expected, capsys, tmp_path):
    code, out, err = run_main(["train", *argv, "--output", str(tmp_path / "out")], capsys)
    assert code == 2
    assert err.count("\n") == 1 and expected in err, err
    assert not (tmp_path / "out").exists()  # nothing written


def test_offline_tfds_dataset_exits_2_with_one_line(capsys, tmp_path):
    code, _, err = run_main(["train", "--dataset", "mnist", "--data-dir", str(tmp_path / "tfds"),
                             "--output", str(tmp_path / "out"), "--logdir", str(tmp_path / "logs")], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "mnist" in err and "--data-dir" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("level", ["3", None])
def test_a_bad_flag_is_one_line_on_stderr_whatever_the_log_level(level, tmp_path):
    """TensorFlow 2.21 prints its start-up lines before it reads TF_CPP_MIN_LOG_LEVEL: a user who
    set the level (as tests and scripts do) still gets the error alone. `python -m kgan` works."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env.update({} if level is None else {"TF_CPP_MIN_LOG_LEVEL": level})
    result = subprocess.run([sys.executable, "-m", "kgan", "train", "--dataset", "ring8", "--pack", "0", "--dry-run"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "kgan train: error: --pack must be >= 1; got 0\n"


@pytest.mark.slow
def test_train_py_end_to_end_and_a_tensorflow_only_process_serves_the_export(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "train.py"), "--loss", "minkowski", "--p", "4", "--epochs", "2"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "oneDNN" not in result.stderr and "cuda" not in result.stderr.lower()  # start-up noise silenced
    run_dir = tmp_path / "saved_models" / "digits-minkowski-p4-s0"
    for line in ("generator (SavedModel):", "samples:", "TensorBoard:", str(run_dir / "generator")):
        assert line in result.stdout

    report = json.loads((run_dir / "config.json").read_text())
    assert report["config"]["p"] == 4.0 and report["epochs_trained"] == 2
    assert np.isfinite(report["final"]["d_loss"]) and np.isfinite(report["final"]["g_loss"])
    assert report["tensorflow_version"] and report["kgan_version"]
    grid = Image.open(run_dir / "samples.png")
    assert grid.size == (8 * 34 + 2, 8 * 34 + 2)  # 8x8 cells of 32 px with 2 px lines

    events = list((tmp_path / "logs" / "digits-minkowski-p4-s0").rglob("events.out.tfevents.*"))
    tags = set()
    for path in events:
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            tags.update(value.tag for value in event.summary.value)
    assert {"epoch_d_loss", "epoch_g_loss", "samples"} <= tags, tags

    check = textwrap.dedent(f"""
        import sys
        import tensorflow as tf
        serve = tf.saved_model.load({str(run_dir / "generator")!r}).signatures["serving_default"]
        images = serve(latent=tf.random.normal((5, 100)))["images"].numpy()
        assert "kgan" not in sys.modules and "keras" not in sys.modules or True
        print(images.shape, images.dtype, float(images.min()), float(images.max()))
        print("kgan" in sys.modules)
    """)
    served = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert served.returncode == 0, served.stderr[-3000:]
    shape_line, kgan_loaded = served.stdout.strip().splitlines()
    assert shape_line.startswith("(5, 8, 8, 1) float32")
    low, high = map(float, shape_line.split()[-2:])
    assert -1.0 <= low <= high <= 1.0
    assert kgan_loaded == "False"


# --- the stabilisation toolbox through `kgan train` -------------------------------------------

TINY = ["--epochs", "1", "--latent-dim", "8", "--metrics", "none", "--checkpoint-every", "0"]


def train(tmp_path, *argv):
    """Runs `kgan train` in-process under tmp_path; returns config.json's report."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", *TINY, "--run-name", "t", *argv])
    assert exit_info.value.code == 0
    return json.loads((tmp_path / "saved_models" / "t" / "config.json").read_text())


def test_every_toolbox_flag_reaches_the_gan():
    config = TrainConfig(ema=0.99, ema_start=3, feature_matching=0.5, augment="ada", augment_p=0.1,
                         unroll=2, clip_grad_norm=4.0, historical_averaging=0.01, minibatch_std=True)
    gan = run.build(config, (8, 8, 1))
    assert (gan.ema, gan.ema_start, gan.feature_matching, gan.unroll) == (0.99, 3, 0.5, 2)
    assert (gan.clip_grad_norm, gan.historical_averaging) == (4.0, 0.01)
    assert type(gan.augment).__name__ == "AdaptiveAugment" and float(gan.augment.p.numpy()) == pytest.approx(0.1)
    assert gan.sampler is gan.ema_generator
    assert any(type(layer).__name__ == "MinibatchStdDev" for layer in gan.discriminator.layers)
    resnet = run.build(TrainConfig(arch="resnet", self_attention=4, loss="hinge"), (8, 8, 1))
    names = [type(layer).__name__ for layer in resnet.discriminator.layers]
    assert "SelfAttention" in names and "GlobalSumPooling2D" in names


def test_ema_run_exports_the_ema_generator(tmp_path):
    # float32: the rebuilt GAN below runs in float32 (auto picks bfloat16 on AMX CPUs).
    report = train(tmp_path, "--ema", "0.9", "--precision", "float32")
    assert report["config"]["ema"] == 0.9
    served = tf.saved_model.load(str(tmp_path / "saved_models" / "t" / "generator")).signatures["serving_default"]
    config = TrainConfig.from_dict(report["config"])
    gan = run.build(config, (8, 8, 1))
    gan.load_weights(str(tmp_path / "saved_models" / "t" / "gan.weights.h5"))
    z = np.random.default_rng(0).standard_normal((4, 8)).astype("float32")
    images = served(latent=tf.constant(z))["images"].numpy()
    np.testing.assert_allclose(images, gan.ema_generator(z, training=False).numpy(), atol=1e-6)
    assert np.abs(images - gan.generator(z, training=False).numpy()).max() > 1e-4  # not the raw G


def test_conditional_run_exports_a_generator_that_takes_labels(tmp_path):
    train(tmp_path, "--conditional", "--loss", "hinge")
    model = tf.saved_model.load(str(tmp_path / "saved_models" / "t" / "generator"))
    out = model.signatures["sample"](num=tf.constant(3), seed=tf.constant(0, tf.int64),
                                     truncation=tf.constant(0.0), labels=tf.constant([7, 7, 2], tf.int32))
    assert out["images"].shape == (3, 8, 8, 1) and out["labels"].numpy().tolist() == [7, 7, 2]


def test_progressive_run_logs_the_curriculum(tmp_path):
    report = train(tmp_path, "--progressive", "--epochs", "2", "--progressive-steps", "28", "--fade-steps", "14")
    # digits: 28 steps an epoch; phase 0 (4x4) for 28 steps, then 8x8 fading in over 14 steps.
    assert report["history"]["phase"] == [0.0, 1.0] and report["history"]["alpha"] == [1.0, 1.0]


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--conditional", "--dataset", "ring8"], "--conditional needs a dataset with one class label"),
        (["--augment", "diffaugment", "--dataset", "grid25"], "--augment needs an image dataset"),
        (["--augment", "ada", "--augment-policy", "color,flip"], "Unknown augmentation policy"),
        (["--arch", "resnet", "--progressive"], "--progressive grows DCGAN networks"),
        (["--arch", "pacgan"], "--arch pacgan is PacGAN's MLP pair for 2-D points; digits is images"),
        (["--self-attention", "5"], "valid resolutions"),
        (["--ema", "1.5"], "--ema must be in (0, 1)"),
        (["--unroll", "-1"], "--unroll must be >= 0"),
        (["--clip-grad-norm", "0"], "--clip-grad-norm must be > 0"),
        (["--progressive", "--progressive-steps", "10", "--fade-steps", "20"], "--fade-steps (20) must be <="),
    ],
)
def test_bad_toolbox_flags_are_one_line_usage_errors(tmp_path, capsys, argv, expected):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", *TINY, *argv])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and expected in err and err.count("\n") == 1
    assert not (tmp_path / "saved_models").exists() and not (tmp_path / "checkpoints").exists()
