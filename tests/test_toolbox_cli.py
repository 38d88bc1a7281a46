"""The stabilisation toolbox through `kgan train`: each flag reaches the GAN, exports what it
should, and bad combinations are one-line usage errors (exit 2) that write nothing."""

import json

import numpy as np
import pytest
import tensorflow as tf

from kgan import cli, run
from kgan.config import TrainConfig

TINY = ["--epochs", "1", "--latent-dim", "8", "--metrics", "none", "--checkpoint-every", "0"]


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # kgan train writes saved_models/, logs/, checkpoints/ here


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
