"""TrainConfig is the single source of kgan train's flags, checks, resume identity and GAN arguments."""

import argparse
import dataclasses
import inspect

import pytest

from kgan import cli, names
from kgan.config import TrainConfig, flag


def train_parser():
    parser = cli.build_parser()
    return next(a for a in parser._actions if a.dest == "command").choices["train"]


def test_every_field_is_a_flag_with_the_field_s_default_type_and_bare_value():
    actions = {a.dest: a for a in train_parser()._actions if a.option_strings}
    fields = dataclasses.fields(TrainConfig)
    assert set(actions) - {"help", "dry_run", "preset"} == {f.name for f in fields}
    for field in fields:
        action, meta = actions[field.name], field.metadata
        assert action.option_strings == [flag(field.name)]
        assert meta["group"] and isinstance(meta["help"], str)
        if field.type is bool:
            assert action.const is True and field.default is False, field.name
        elif meta["bare"] is not None:  # --gp alone means 10, --gp 5 means 5, absent means off
            assert (action.nargs, action.const, field.default) == ("?", meta["bare"], None), field.name
        else:
            assert action.type is field.type, field.name
        assert action.default is argparse.SUPPRESS  # the namespace holds the flags given, nothing else
    assert cli.config_from_args(train_parser().parse_args([])) == TrainConfig()
    # The help shows the default and the choices from kgan.names.
    help_text = train_parser().format_help()
    assert "(default: 0.0002)" in help_text and "hinge, minkowski" in help_text
    assert "(bare: 10)" in help_text


def test_flags_parse_into_the_config():
    args = train_parser().parse_args(["--loss", "hinge", "--gp", "--ema", "--batch-size", "32", "--spectral-norm",
                                      "--clip", "0.05"])
    config = cli.config_from_args(args)
    assert (config.loss, config.gp, config.ema, config.batch_size) == ("hinge", 10.0, 0.999, 32)
    assert (config.spectral_norm, config.clip, config.r1) == (True, 0.05, None)


def test_a_preset_sets_the_dataset_s_optimiser_and_the_flags_given_override_it():
    def config(*argv):
        return cli.config_from_args(train_parser().parse_args(list(argv)))

    ring8 = config("--preset", "protocol", "--dataset", "ring8", "--d-lr", "3e-4")
    assert (ring8.batch_size, ring8.latent_dim, ring8.g_lr, ring8.beta1) == (100, 2, 1e-4, 0.8)  # PacGAN's
    assert ring8.d_lr == 3e-4  # the flag given wins
    digits = config("--preset", "paper", "--batch-size", "32")  # the default dataset, digits
    assert (digits.clip, digits.batch_size, digits.g_lr, digits.beta1) == (0.01, 32, 2e-4, 0.5)
    assert config("--preset", "paper", "--clip", "0.05").clip == 0.05
    from kgan import presets

    assert config("--preset", "recommended", "--dataset", "grid25") == presets.config(
        "recommended", "grid25", "minkowski_p4", 0)
    # The TensorFlow Datasets images get DCGAN's optimiser (protocol, recommended) or the Minkowski
    # paper's CIFAR-10 setup (paper: Adam 2e-4 / 0.5 / 0.999, batch 64, latent 100, D clipped at 0.01).
    cifar = config("--preset", "paper", "--dataset", "cifar10", "--loss", "minkowski", "--p", "4")
    assert (cifar.g_lr, cifar.d_lr, cifar.beta1, cifar.beta2, cifar.batch_size, cifar.latent_dim, cifar.clip) == (
        2e-4, 2e-4, 0.5, 0.999, 64, 100, 0.01)
    wgan = config("--preset", "recommended", "--dataset", "cifar10", "--loss", "wasserstein")
    assert (wgan.optimizer, wgan.g_lr, wgan.d_steps, wgan.clip, wgan.batch_size) == ("rmsprop", 5e-5, 5, 0.01, 64)
    assert config("--preset", "protocol", "--dataset", "mnist").beta1 == 0.5
    with pytest.raises(ValueError, match="--preset recommended has settings for ring8, grid25, digits, "
                                         "stacked_digits, mnist, .*, not folder:/tmp/x"):
        config("--preset", "recommended", "--dataset", "folder:/tmp/x")


def test_recommended_gives_each_loss_its_own_paper_s_optimiser_and_protocol_one_for_all():
    from kgan import presets

    def fields(preset, setting, dataset="ring8"):
        config = presets.config(preset, dataset, setting, 0)
        return config.optimizer, config.d_lr, config.g_lr, config.beta1, config.beta2, config.d_steps

    pacgan = ("adam", 1e-4, 1e-4, 0.8, 0.999, 1)
    assert fields("recommended", "minimax") == fields("protocol", "minimax") == pacgan
    assert fields("recommended", "wasserstein")[:3] == ("rmsprop", 5e-5, 5e-5)  # Arjovsky et al., Algorithm 1
    assert fields("recommended", "wasserstein")[5] == 5
    assert fields("recommended", "wgan_gp") == ("adam", 1e-4, 1e-4, 0.0, 0.9, 5)  # Gulrajani et al., Algorithm 1
    assert fields("recommended", "minkowski_p4", "digits") == ("adam", 2e-4, 2e-4, 0.5, 0.999, 1)
    assert fields("recommended", "hinge") == ("adam", 2e-4, 2e-4, 0.0, 0.9, 5)
    # protocol: PacGAN's Adam for every loss; the loss keeps what defines it (clipping, 5 critic steps).
    assert fields("protocol", "wasserstein") == ("adam", 1e-4, 1e-4, 0.8, 0.999, 5)
    assert presets.config("protocol", "ring8", "wasserstein", 0).clip == 0.01
    assert presets.config("protocol", "grid25", "wgan_gp", 0).gp == 10.0
    assert all(citation for _, citation in presets.LOSS_OPTIMISERS.values())

    def train(*argv):
        return cli.config_from_args(train_parser().parse_args(list(argv)))

    wgan = train("--preset", "recommended", "--dataset", "ring8", "--loss", "wasserstein")
    assert (wgan.optimizer, wgan.d_lr, wgan.clip, wgan.d_steps, wgan.batch_size) == ("rmsprop", 5e-5, 0.01, 5, 100)
    gp = train("--preset", "recommended", "--loss", "wasserstein", "--gp")
    assert (gp.optimizer, gp.beta1, gp.beta2, gp.clip, gp.gp) == ("adam", 0.0, 0.9, None, 10.0)
    assert train("--preset", "protocol", "--loss", "wasserstein").optimizer == "adam"


def test_rmsprop_is_the_wgan_reference_code_s_update():
    """One `--optimizer rmsprop` step against the update by hand: v = 0.99 * 0 + 0.01 g^2,
    w -= lr g / sqrt(v + 1e-8) (PyTorch's RMSprop defaults, epsilon inside the root as Keras puts it)."""
    import keras
    import numpy as np

    from kgan import run

    optimizer = run.make_optimizer(TrainConfig(optimizer="rmsprop"), 5e-5)
    weight = keras.Variable(np.array([1.0, -2.0], "float32"))
    gradient = np.array([0.5, -3.0], "float32")
    optimizer.apply_gradients([(keras.ops.convert_to_tensor(gradient), weight)])
    velocity = 0.01 * gradient.astype("float64") ** 2
    expected = np.array([1.0, -2.0]) - 5e-5 * gradient / np.sqrt(velocity + 1e-8)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(weight), expected, rtol=1e-6)
    assert isinstance(run.make_optimizer(TrainConfig(), 1e-4), keras.optimizers.Adam)


@pytest.mark.parametrize("fields, message", [
    ({"ema": 1.5}, "--ema must be in (0, 1); got 1.5"),
    ({"ema": 0.0}, "--ema must be in (0, 1); got 0.0"),  # open at 0: a decay of 0 averages nothing
    ({"augment_p": 1.01}, "--augment-p must be in [0, 1]; got 1.01"),
    ({"ada_target": 1.0}, "--ada-target must be in (0, 1); got 1.0"),
    ({"beta2": 1.0}, "--beta2 must be in [0, 1); got 1.0"),
    ({"p": 0.5}, "--p must be >= 1; got 0.5"),
    ({"g_lr": 0.0}, "--g-lr must be > 0; got 0.0"),
    ({"clip": -0.01}, "--clip must be > 0; got -0.01"),
    ({"fade_steps": -1}, "--fade-steps must be >= 0; got -1"),
    ({"metrics_samples": 9}, "--metrics-samples must be >= 10; got 9"),
    ({"log_every": 0}, "--log-every must be >= 1; got 0"),
    ({"gp": float("inf")}, "--gp must be a finite number; got inf"),
    ({"epochs": "3"}, "--epochs must be a finite number; got 3"),
    ({"loss": "foo"}, "unknown loss 'foo': choose one of minimax, non_saturating"),
    ({"precision": "fp8"}, "unknown precision 'fp8'"),
    ({"image_size": 12}, "unknown image size 12: choose one of 8, 16, 32, 64 (--image-size)"),
])
def test_check_fields_names_the_flag_the_rule_and_the_value(fields, message):
    with pytest.raises(ValueError) as error:
        TrainConfig(**fields).check_fields()
    assert str(error.value).startswith(message), str(error.value)


@pytest.mark.parametrize("fields", [
    {}, {"ema": 0.999, "augment_p": 1.0}, {"augment_p": 0.0}, {"p": 1}, {"gp": 0.0}, {"clip": 0.01},
    {"unroll_optimizer": "sgd", "unroll_lr": 0.1}, {"image_size": 32, "precision": "mixed_bfloat16"},
    {"dataset": "folder:/tmp/x"},
])
def test_check_fields_accepts_values_inside_the_bounds(fields):
    TrainConfig(**fields).check_fields()


def test_the_gan_s_arguments_come_from_the_fields_marked_gan():
    from kgan import techniques
    from kgan.gan import GAN

    parameters = set(inspect.signature(GAN.__init__).parameters) | set(techniques.OPTIONS)
    assert set(TrainConfig.gan_fields()) <= parameters
    config = TrainConfig(ema=0.99, ema_start=7, d_steps=3, historical_averaging=0.5, seed=4)
    kwargs = config.gan_kwargs()
    assert (kwargs["ema"], kwargs["ema_start"], kwargs["d_steps"], kwargs["seed"]) == (0.99, 7, 3, 4)
    assert kwargs["historical_averaging"] == 0.5 and "loss" not in kwargs and "g_lr" not in kwargs


def test_run_build_passes_the_marked_fields_to_the_gan():
    from kgan import run

    config = TrainConfig(dataset="ring8", latent_dim=3, ema=0.9, ema_start=2, d_steps=2, feature_matching=0.5,
                         instance_noise=0.1, historical_averaging=0.25, clip_grad_norm=2.0)
    gan = run.build(config, (2,))
    built = gan.get_config()
    for name in TrainConfig.gan_fields():
        if name in built:
            assert built[name] == getattr(config, name), name
    assert (built["ema"], built["d_steps"], built["latent_dim"]) == (0.9, 2, 3)


def test_choice_lists_are_kgan_names():
    choices = {f.name: f.metadata["choices"] for f in dataclasses.fields(TrainConfig) if f.metadata["choices"]}
    assert choices["loss"] is names.LOSSES and choices["strategy"] is names.STRATEGIES
    assert choices["precision"] is names.PRECISIONS and choices["augment"] is names.AUGMENTS


def test_validation_runs_once_per_command(monkeypatch, tmp_path):
    from kgan import run

    calls = []
    real = run.validate
    monkeypatch.setattr(run, "validate", lambda config: (calls.append(config), real(config))[1])
    out = [f"--{k}={tmp_path / k}" for k in ("output", "logdir", "checkpoint-dir")]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--dataset", "ring8", "--epochs", "1", "--steps-per-epoch", "2", "--metrics", "none",
                  "--batch-size", "8", *out])
    assert exit_info.value.code == 0 and len(calls) == 1
    with pytest.raises(SystemExit):
        cli.main(["train", "--dry-run", "--ema", *out])
    assert len(calls) == 2
