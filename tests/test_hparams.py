"""kgan train's run as a TensorBoard HParams session, read back from the event files."""

import glob
import json
import os

import pytest
import tensorflow as tf
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.plugins.hparams import plugin_data_pb2

from kgan import cli, hparams
from kgan.config import TrainConfig
from tests.gan_helpers import read_scalars


def read_hparams(directory):
    """{"sessions": [{name: value}], "experiment": {"hparams": {name: [values]}, "metrics": [(group, tag)]}}
    from the HParams plugin data in the event files of `directory` (not its subdirectories)."""
    found = {"sessions": [], "experiment": None}
    for path in sorted(glob.glob(os.path.join(directory, "events.out.tfevents.*"))):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name != hparams_metadata.PLUGIN_NAME:
                    continue
                data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
                if data.HasField("session_start_info"):
                    found["sessions"].append({name: _value(v) for name, v in data.session_start_info.hparams.items()})
                elif data.HasField("experiment"):
                    found["experiment"] = {
                        "hparams": {h.name: [_value(v) for v in h.domain_discrete.values] for h in data.experiment.hparam_infos},
                        "metrics": [(m.name.group, m.name.tag) for m in data.experiment.metric_infos],
                    }
    return found


def _value(proto):
    kind = proto.WhichOneof("kind")
    return getattr(proto, kind)


def test_run_hparams_are_the_resume_identity_epochs_and_rates_without_unset_fields():
    config = TrainConfig(loss="wasserstein", gp=10.0, dataset="ring8", seed=3)
    values = hparams.run_hparams(config, steps=500, precision="float32", setting="wgan_gp")
    assert (values["loss"], values["gp"], values["seed"], values["steps"]) == ("wasserstein", 10.0, 3, 500)
    assert (values["precision"], values["setting"], values["g_lr"], values["epochs"]) == ("float32", "wgan_gp",
                                                                                          2e-4, 200)
    assert "clip" not in values and "ema" not in values  # unset: left out, not "None"
    assert "output" not in values and "run_name" not in values and "strategy" not in values


def test_kgan_train_writes_its_hparams_session_beside_its_scalars(tmp_path):
    roots = [f"--{k}={tmp_path / k}" for k in ("output", "logdir", "checkpoint-dir")]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--dataset", "ring8", "--epochs", "2", "--steps-per-epoch", "5", "--batch-size", "16",
                  "--loss", "hinge", "--ema", "--precision", "float32", "--seed", "7", "--metrics-every", "1",
                  "--metrics-samples", "200", *roots])
    assert exit_info.value.code == 0
    run_dir = tmp_path / "logdir" / "ring8-hinge-s7"
    report = json.loads((tmp_path / "output" / "ring8-hinge-s7" / "config.json").read_text())
    (session,) = read_hparams(str(run_dir))["sessions"]
    config = report["config"]
    for name, value in session.items():
        if name not in ("steps", "precision", "xla"):  # as resolved
            assert value == config[name], name
    assert (session["loss"], session["ema"], session["seed"], session["steps"]) == ("hinge", 0.999, 7, 10)
    assert session["precision"] == "float32" and session["xla"] == report["xla"] == "off" and "gp" not in session
    # The scalars the dashboard shows for the session are the run's own numbers.
    train = read_scalars(str(run_dir / "train"))
    assert [v for _, v in sorted(train["epoch_d_loss"])] == pytest.approx(report["history"]["d_loss"], rel=1e-6)
    assert [s for s, _ in train["batch_d_loss"]] == list(range(1, 11))  # every step
    # The running mean at an epoch's last step is that epoch's value.
    last_steps = dict(train["batch_g_loss"])
    assert [last_steps[5], last_steps[10]] == pytest.approx(report["history"]["g_loss"], rel=1e-6)
    metrics = read_scalars(str(run_dir / "metrics"))
    assert [v for _, v in metrics["modes"]] == pytest.approx(report["history"]["modes"], rel=1e-6)
    assert metrics["modes"][-1][1] == pytest.approx(report["metrics"]["values"]["modes"])
