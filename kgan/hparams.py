"""Runs as TensorBoard HParams sessions, so many runs compare in the HParams dashboard.

`kgan train` writes one session (`hp.hparams`) into `<logdir>/<run>/`: the run's hyperparameters
(`run_hparams`) next to its scalars (`train/epoch_*`, `metrics/*`), so `tensorboard --logdir
<logdir>` over many runs shows them in the HParams table and parallel-coordinates views.
`kgan compare` also writes the experiment (`hp.hparams_config`): the grid's hyperparameters with
their values and the metrics to show, and one session per row.

TensorBoard's HParams plugin: https://www.tensorflow.org/tensorboard/hparams_tuning
"""

import tensorflow as tf

from kgan.config import TrainConfig
from kgan.quiet import skipping

# TensorBoard's TensorFlow stub (imported by the plugin) sets up its S3 file system when boto3 is
# installed: 0.2 s of every run's start here, for a file system TensorFlow's own writers never use
# (with TensorFlow installed, TensorBoard and tf.summary use tf.io.gfile). The stub's S3 support
# stays off in this process; boto3 itself stays importable.
with skipping(("boto3", "botocore")):
    from tensorboard.plugins.hparams import api as hp


def run_hparams(config, steps=None, **extra):
    """The hyperparameters of one run, as HParams values (str, float, int or bool).

    Every field of the resume identity (what shapes the maths: loss, p, data, networks, toolbox,
    precision, seed) and the learning rates and epochs, except those that are unset (None); plus
    `steps` (generator steps of the whole run) and `extra` (e.g. compare's setting and preset).
    """
    names = (*TrainConfig.resume_fields(), "epochs", "g_lr", "d_lr")
    values = {name: getattr(config, name) for name in names}
    if steps is not None:
        values["steps"] = int(steps)
    values.update(extra)
    return {name: value for name, value in values.items() if value is not None}


def write_session(logdir, hparams, trial_id=None, scalars=()):
    """Writes one HParams session (the run's hyperparameters) to the event files of `logdir`,
    with `scalars`, (tag, value, step) triples (e.g. a compare row's final metrics and curves)."""
    writer = tf.summary.create_file_writer(logdir)
    with writer.as_default():
        hp.hparams(hparams, trial_id=trial_id)
        for tag, value, step in scalars:
            tf.summary.scalar(tag, value, step=step)
    writer.close()


def write_experiment(logdir, sessions, metrics):
    """Writes the HParams experiment of a grid to `logdir`: every hyperparameter that appears
    in `sessions` (a list of hparams dicts) with the values it takes, and `metrics`, a list of
    (tag, group, display name) of the scalars to show (group: the run subdirectory, e.g. "final")."""
    values = {}
    for session in sessions:
        for name, value in session.items():
            values.setdefault(name, set()).add(value)
    params = [hp.HParam(name, _domain(found)) for name, found in values.items()]
    writer = tf.summary.create_file_writer(logdir)
    with writer.as_default():
        hp.hparams_config(hparams=params, metrics=[hp.Metric(tag, group=group, display_name=label)
                                                   for tag, group, label in metrics])
    writer.close()


def _domain(values):
    """The HParams domain of the values one hyperparameter takes: discrete when all share one
    type (bools, numbers or strings), else none (TensorBoard shows the values as found)."""
    kinds = {bool if isinstance(v, bool) else float if isinstance(v, (int, float)) else str for v in values}
    if len(kinds) != 1:
        return None
    kind = kinds.pop()
    return hp.Discrete(sorted(kind(v) for v in values))
