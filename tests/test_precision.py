"""Mixed precision: every loss x {no penalty, GP} trains one finite step in mixed_bfloat16."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kgan import distribute, gan, names, networks, penalties

IMAGES = np.random.default_rng(0).uniform(-1, 1, (16, 8, 8, 1)).astype("float32")


@pytest.fixture
def policy():
    """Sets a global dtype policy for one test; always back to float32 afterwards."""
    try:
        yield keras.mixed_precision.set_global_policy
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _one_step(loss, penalty, loss_scale=False):
    keras.utils.set_random_seed(0)
    generator, discriminator = networks.build((8, 8, 1), 16, batch_norm=penalty is None)
    model = gan.GAN(generator, discriminator, seed=0)

    def optimizer():
        adam = keras.optimizers.Adam(1e-3)
        return keras.optimizers.LossScaleOptimizer(adam) if loss_scale else adam

    model.compile(optimizer(), optimizer(), loss=loss, penalty=penalties.GradientPenalty(10.0, seed=0) if penalty else None)
    history = model.fit(IMAGES, batch_size=16, epochs=1, verbose=0, shuffle=False).history
    return model, history


@pytest.mark.parametrize("penalty", [None, "gp"])
@pytest.mark.parametrize("loss", names.LOSSES)
def test_one_mixed_bfloat16_step_is_finite(policy, loss, penalty):
    policy("mixed_bfloat16")
    model, history = _one_step(loss, penalty)
    assert model.generator.layers[1].compute_dtype == "bfloat16"  # the policy took effect
    assert all(np.isfinite(v[0]) for v in history.values()), history
    assert all(np.isfinite(v.numpy().astype("float32")).all() for v in model.weights)
    if penalty:
        assert history["penalty"][0] > 0


def test_mixed_float16_step_with_loss_scaling(policy):
    policy("mixed_float16")
    model, history = _one_step("minkowski", "gp", loss_scale=True)
    assert all(np.isfinite(v[0]) for v in history.values()), history
    assert int(model.g_optimizer.iterations) == 1


def test_build_wraps_optimizers_for_float16(policy):
    from kgan import run
    from kgan.config import TrainConfig

    policy("mixed_float16")
    model = run.build(TrainConfig(latent_dim=8), (8, 8, 1))
    assert isinstance(model.d_optimizer, keras.optimizers.LossScaleOptimizer)
    assert isinstance(model.g_optimizer, keras.optimizers.LossScaleOptimizer)


def test_set_precision_and_auto(policy):
    name, reason = distribute.set_precision("mixed_bfloat16")
    assert name == "mixed_bfloat16" and reason is None
    assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    name, reason = distribute.set_precision("auto")
    assert name in ("float32", "mixed_bfloat16", "mixed_float16") and reason
    assert (name == "mixed_bfloat16") == ("amx_bf16" in distribute._cpu_flags()) or "GPU" in reason
    with pytest.raises(ValueError, match="unknown precision"):
        distribute.set_precision("float8")


@pytest.mark.parametrize(
    "flags, shape, expected",
    [
        ({"amx_bf16", "avx512_bf16"}, (8, 8, 1), "mixed_bfloat16"),
        ({"amx_bf16"}, (2,), "mixed_bfloat16"),
        ({"avx512_bf16"}, (32, 32, 3), "mixed_bfloat16"),
        ({"avx512_bf16"}, (64, 64, 3), "mixed_bfloat16"),
        ({"avx512_bf16"}, (16, 16, 1), "float32"),
        ({"avx512_bf16"}, (8, 8, 1), "float32"),  # the main job: bf16 measured slower
        ({"avx512_bf16"}, (2,), "float32"),
        ({"avx512_bf16"}, None, "float32"),
        ({"avx2", "fma"}, (32, 32, 3), "float32"),
    ],
)
def test_auto_precision_on_cpus(monkeypatch, flags, shape, expected):
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    monkeypatch.setattr(distribute, "_cpu_flags", lambda: set(flags))
    name, reason = distribute.auto_precision(shape)
    assert name == expected
    assert ("AMX" in reason) and ("bf16" in reason or "avx512" in reason)
