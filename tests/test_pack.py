"""PacGAN packing (`GAN(pack=m)`, `kgan train --pack M`; kgan.techniques.Packing).

Lin et al. 2018, "PacGAN: The power of two samples in generative adversarial networks": D judges
m samples at once, joined along the feature axis (points) or the channel axis (images). Checked
against NumPy on a linear D (logits, losses, D's update), the closed forms of the gradient
penalty and R1 of a linear critic, the packing order of images, and through the command line
(flag, checks, resume identity, export). 2 replicas == 1 with packing: tests/test_distribute.py.
"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from kgan import cli, gan, networks, penalties, seeds, techniques
from kgan.augment import Augment

REAL = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]], "float32")  # 2 packed examples of 2
W = np.array([[0.5], [-1.0], [0.25], [0.75]], "float32")  # D(x) = x . w + b on packed [x1, y1, x2, y2]
B = np.float32(0.1)
A = np.array([[1.0, 0.5], [-0.5, 2.0]], "float32")  # G(z) = z A + c
C = np.array([0.2, -0.3], "float32")


def _softplus(x):
    return np.logaddexp(0.0, x)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def linear_pack2_gan(penalty=None, loss="non_saturating", d_lr=0.1):
    """A GAN of a known linear G (2-D latents) and a linear D on 2 packed 2-D points (SGD)."""
    latent = keras.Input((2,), name="latent")
    generator = keras.Model(latent, keras.layers.Dense(2, name="g")(latent))
    generator.set_weights([A, C])
    samples = keras.Input((4,), name="samples")
    discriminator = keras.Model(samples, keras.layers.Dense(1, name="d")(samples))
    discriminator.set_weights([W[:, 0:1], np.array([B])])
    model = gan.GAN(generator, discriminator, seed=0, pack=2)
    model.compile(keras.optimizers.SGD(d_lr), keras.optimizers.SGD(0.0), loss=loss, penalty=penalty)
    return model


def test_linear_d_on_packed_points_gives_the_hand_computed_logits_losses_and_update():
    model = linear_pack2_gan()
    packed_real = REAL.reshape(2, 4)  # [[1, 2, 3, 4], [5, 6, 7, 8]]: PacGAN's concatenate(axis=1)
    np.testing.assert_array_equal(model._d_inputs(tf.constant(REAL)).numpy(), [[1, 2, 3, 4], [5, 6, 7, 8]])
    np.testing.assert_allclose(model.discriminator(packed_real).numpy(), [[0.5 - 2 + 0.75 + 3 + B],
                                                                          [2.5 - 6 + 1.75 + 6 + B]], rtol=1e-6)
    model.train_step(tf.constant(REAL))

    # By hand: the D update's latents, then the G update's, from the model's latent stream;
    # G makes 4 samples (2 per packed example), D sees them as 2 packed examples.
    stream = seeds.seed_generator(0, "latent")
    z_d, z_g = (keras.random.normal((4, 2), seed=stream).numpy() for _ in range(2))
    fake_d, fake_g = ((z @ A + C).reshape(2, 4) for z in (z_d, z_g))
    real_logits, fake_logits = packed_real @ W[:, 0] + B, fake_d @ W[:, 0] + B
    d_loss = np.mean(_softplus(-real_logits) + _softplus(fake_logits))
    grad_w = np.mean(-_sigmoid(-real_logits)[:, None] * packed_real + _sigmoid(fake_logits)[:, None] * fake_d, 0)
    grad_b = np.mean(-_sigmoid(-real_logits) + _sigmoid(fake_logits))
    w, b = W[:, 0] - 0.1 * grad_w, B - 0.1 * grad_b
    g_loss = np.mean(_softplus(-(fake_g @ w + b)))

    np.testing.assert_allclose(model.d_loss_tracker.result().numpy(), d_loss, rtol=1e-5)
    np.testing.assert_allclose(model.discriminator.get_weights()[0][:, 0], w, rtol=1e-5)
    np.testing.assert_allclose(model.discriminator.get_weights()[1], [b], rtol=1e-5)
    np.testing.assert_allclose(model.g_loss_tracker.result().numpy(), g_loss, rtol=1e-5)


def test_images_pack_along_channels_first_sample_first_and_unpack_back():
    x = np.arange(4 * 2 * 2 * 3, dtype="float32").reshape(4, 2, 2, 3)
    packed = techniques.pack(tf.constant(x), 2).numpy()
    assert packed.shape == (2, 2, 2, 6)
    for i in range(2):
        np.testing.assert_array_equal(packed[i, ..., :3], x[2 * i])  # sample 1's channels first
        np.testing.assert_array_equal(packed[i, ..., 3:], x[2 * i + 1])
    np.testing.assert_array_equal(techniques.unpack(tf.constant(packed), 2).numpy(), x)
    np.testing.assert_array_equal(techniques.pack(tf.constant(REAL), 2).numpy(), REAL.reshape(2, 4))


def test_augmentation_and_the_penalty_s_critic_act_per_sample_before_packing():
    keras.utils.set_random_seed(0)
    generator, discriminator = networks.build((8, 8, 1), 8, batch_norm=False, pack=2)
    assert discriminator.input_shape == (None, 8, 8, 2) and generator.output_shape == (None, 8, 8, 1)
    model = gan.GAN(generator, discriminator, seed=0, pack=2, instance_noise=0.1,
                    augment=Augment("color,translation,cutout", p=1.0, seed=1))
    model.compile(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-3), loss="wasserstein",
                  penalty=penalties.GradientPenalty(10.0, seed=1))
    augmentation, seen = model.technique("augment"), []
    original = augmentation.transform
    augmentation.transform = lambda x: (seen.append(tuple(x.shape)), original(x))[1]
    model.train_step(tf.constant(np.random.default_rng(0).uniform(-1, 1, (8, 8, 8, 1)).astype("float32")))
    # real, fake and the penalty's interpolates (D update), fake (G update): 8 samples each.
    assert seen == [(8, 8, 8, 1)] * 4
    assert model.generate(3, seed=0).shape == (3, 8, 8, 1)  # sampling is unpacked


@pytest.mark.parametrize("penalty, expected", [
    (penalties.GradientPenalty(10.0, seed=1), 10.0 * (np.linalg.norm(W) - 1.0) ** 2),  # lambda (||w|| - 1)^2
    (penalties.R1(4.0), 0.5 * 4.0 * np.linalg.norm(W) ** 2),  # gamma / 2 ||w||^2
], ids=["wgan_gp", "r1"])
def test_penalty_of_a_linear_critic_on_packed_inputs_is_its_closed_form(penalty, expected):
    """The gradient of x -> x . w is w everywhere: the norm is over the whole packed input
    (all 4 coordinates), one value per packed example."""
    model = linear_pack2_gan(penalty=penalty, loss="wasserstein", d_lr=0.0)
    if isinstance(penalty, penalties.GradientPenalty):
        shapes, interpolate = [], penalty.interpolate
        penalty.interpolate = lambda real, fake, alpha=None: (shapes.append((real.shape, fake.shape)),
                                                              interpolate(real, fake, alpha))[1]
    model.train_step(tf.constant(REAL))
    np.testing.assert_allclose(model.penalty_tracker.result().numpy(), expected, rtol=1e-5)
    if isinstance(penalty, penalties.GradientPenalty):
        assert shapes == [((2, 4), (2, 4))]  # packed reals vs packed fakes


def test_pack_one_is_no_technique_and_bad_packs_are_refused():
    generator, discriminator = networks.build((2,), 2)
    assert gan.GAN(generator, discriminator, pack=1).techniques == []
    assert gan.GAN(generator, discriminator, pack=1).get_config()["pack"] == 1
    with pytest.raises(ValueError, match="pack must be >= 1; got 0"):
        gan.GAN(generator, discriminator, pack=0)
    generator, discriminator = networks.build((8, 8, 1), 4, num_classes=3)
    with pytest.raises(ValueError, match="cannot be combined with a conditional GAN"):
        gan.GAN(generator, discriminator, num_classes=3, pack=2)


# ---- the command line ---------------------------------------------------------------------------


def run_main(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_dry_run_shows_pack_and_bad_packs_exit_2_with_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_main(["train", "--dataset", "ring8", "--pack", "4", "--dry-run"], capsys)
    assert code == 0 and json.loads(out)["pack"] == 4
    for argv, expected in ((["--pack", "0"], "--pack must be >= 1; got 0"),
                           (["--conditional", "--pack", "2"], "--pack 2 cannot be combined with --conditional")):
        code, _, err = run_main(["train", *argv, "--epochs", "1"], capsys)
        assert code == 2 and err.count("\n") == 1 and expected in err, err
    assert not (tmp_path / "saved_models").exists()


def test_a_packed_run_trains_exports_and_resumes_only_with_the_same_pack(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--dataset", "ring8", "--steps-per-epoch", "2", "--batch-size", "8", "--latent-dim", "2",
            "--metrics", "none", "--precision", "float32", "--xla", "off", "--run-name", "r"]
    code, _, err = run_main([*argv, "--epochs", "1", "--pack", "2", "--gp", "--loss", "wasserstein"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "saved_models" / "r" / "config.json").read_text())["config"]["pack"] == 2
    code, _, err = run_main(["export", "--run", "r"], capsys)  # D rebuilt for packed inputs: the weights load
    assert code == 0, err
    generator = tf.saved_model.load(str(tmp_path / "saved_models" / "r" / "generator"))
    outputs = generator.signatures["serving_default"](tf.zeros((3, 2)))
    assert [tuple(v.shape) for v in outputs.values()] == [(3, 2)]  # the generator is unpacked
    code, _, err = run_main([*argv, "--epochs", "2", "--gp", "--loss", "wasserstein"], capsys)
    assert code == 2 and err.count("\n") == 1 and "was written --pack 2, not --pack 1" in err, err


def test_pacgan_networks_train_packed_with_a_penalty_export_and_resume_only_with_the_same_arch(
        capsys, tmp_path, monkeypatch):
    """--arch pacgan (maxout D) end to end: a packed WGAN-GP run (the penalty's second-order pass
    goes through Maxout), its export, a resume with the same networks, and a refused resume with
    the default ones."""
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--dataset", "grid25", "--steps-per-epoch", "2", "--batch-size", "8", "--latent-dim", "2",
            "--metrics", "none", "--precision", "float32", "--xla", "off", "--run-name", "r", "--pack", "2",
            "--gp", "--loss", "wasserstein"]
    code, _, err = run_main([*argv, "--epochs", "1", "--arch", "pacgan"], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "saved_models" / "r" / "config.json").read_text())
    assert report["config"]["arch"] == "pacgan" and np.isfinite(report["final"]["d_loss"])
    generator = tf.saved_model.load(str(tmp_path / "saved_models" / "r" / "generator"))
    assert [tuple(v.shape) for v in generator.signatures["serving_default"](tf.zeros((3, 2))).values()] == [(3, 2)]
    code, _, err = run_main([*argv, "--epochs", "2"], capsys)  # the default (LeakyReLU) networks
    assert code == 2 and err.count("\n") == 1 and "--arch pacgan" in err, err
    code, _, err = run_main([*argv, "--epochs", "2", "--arch", "pacgan"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "saved_models" / "r" / "config.json").read_text())["epochs_trained"] == 2
