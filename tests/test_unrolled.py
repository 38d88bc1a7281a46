"""kgan.unrolled: the unrolled discriminator against real optimizer steps on a copy, closed forms,
finite differences.

The 2-replica check runs in a subprocess (`python -m tests.test_unrolled`): the CPU must be
split into 2 logical devices before TensorFlow initialises, which the pytest process has done.
"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from kgan import constraints, losses, unrolled
from kgan.unrolled import unrolled_outputs


def sgd(lr, model):
    optimizer = keras.optimizers.SGD(lr)
    optimizer.build(model.trainable_variables)
    return optimizer


def warm_adam(model, real, fake, loss_fn, lr=0.05, steps=3, **kwargs):
    """An Adam(lr, beta_1 0.5) with `steps` real updates made on a THROWAWAY copy of `model`: its
    moments and iteration count are non-trivial while `model` keeps its weights."""
    optimizer = keras.optimizers.Adam(lr, beta_1=0.5, **kwargs)
    optimizer.build(model.trainable_variables)
    scratch = copy_model(model)
    shadow = copy_optimizer(optimizer, scratch)
    for _ in range(steps):
        real_step(scratch, shadow, loss_fn, real, fake)
    for target, value in zip(optimizer.variables, shadow.variables, strict=True):
        target.assign(value)
    return optimizer


def copy_model(model):
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for original, variable in zip(model.trainable_variables, copy.trainable_variables, strict=True):
        variable.constraint = original.constraint
    return copy


def copy_optimizer(optimizer, model):
    """The same optimizer class and config, built on `model`, holding `optimizer`'s state."""
    copy = type(optimizer).from_config(optimizer.get_config())
    copy.build(model.trainable_variables)
    for target, value in zip(copy.variables, optimizer.variables, strict=True):
        target.assign(value)
    return copy


def real_step(model, optimizer, loss_fn, real, fake, training=True):
    with tf.GradientTape() as tape:
        per_example = loss_fn.discriminator_loss(model(real, training=training), model(fake, training=training))
        loss = ops.mean(per_example)
    # Dense gradients, as the unrolling uses: Keras' Adam given an embedding's IndexedSlices with
    # repeated rows squares each slice instead of their sum (v differs; see kgan/unrolled.py).
    gradients = [tf.convert_to_tensor(g) for g in tape.gradient(loss, model.trainable_variables)]
    optimizer.apply(gradients, model.trainable_variables)



def _linear_discriminator(dim, seed=0, dtype="float32"):
    """D(x) = x . w + b with random w, b."""
    rng = np.random.default_rng(seed)
    inputs = keras.Input((dim,), dtype=dtype)
    dense = keras.layers.Dense(1, dtype=dtype)
    model = keras.Model(inputs, dense(inputs))
    dense.set_weights([rng.normal(size=(dim, 1)).astype(dtype), rng.normal(size=(1,)).astype(dtype)])
    return model


def _mlp_discriminator(dim, seed=0, dtype="float32", batch_norm=False):
    """A small nonlinear D (tanh hidden layer, optionally batch norm) with seeded weights."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((dim,), dtype=dtype)
    h = keras.layers.Dense(5, activation="tanh", dtype=dtype)(inputs)
    if batch_norm:
        h = keras.layers.BatchNormalization(dtype=dtype)(h)
    outputs = keras.layers.Dense(1, dtype=dtype)(h)
    return keras.Model(inputs, outputs)


def _probe_inputs(dim):
    """[0; e_1; ...; e_d]: a linear D's outputs on them are b, w_1 + b, ..., w_d + b."""
    return np.concatenate([np.zeros((1, dim)), np.eye(dim)]).astype("float32")


def _weights_from_probe(outputs):
    outputs = np.asarray(outputs).reshape(-1)
    return outputs[1:] - outputs[0], outputs[0]


def _numpy_sgd(w, b, real, fake, lr, steps, loss):
    """The closed-form SGD recursion of a linear D, batch-mean loss."""
    for _ in range(steps):
        d_real = real @ w + b
        d_fake = fake @ w + b
        if loss == "least_squares":  # 1/2 (D(x) - 1)^2 + 1/2 D(G(z))^2
            e_real, e_fake = d_real - 1.0, d_fake
        else:  # wasserstein: D(G(z)) - D(x)
            e_real, e_fake = -np.ones_like(d_real), np.ones_like(d_fake)
        grad_w = (real.T @ e_real + fake.T @ e_fake) / len(real)
        grad_b = (e_real.sum() + e_fake.sum()) / len(real)
        w, b = w - lr * grad_w, b - lr * grad_b
    return w, b


class Float64LeastSquares(losses.Loss):
    """LSGAN's discriminator loss without kgan's float32 cast (for float64 finite differences)."""

    def discriminator_loss(self, real_outputs, fake_outputs):
        return 0.5 * ops.square(real_outputs[:, 0] - 1.0) + 0.5 * ops.square(fake_outputs[:, 0])


# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("training", [True, False])
def test_zero_steps_is_the_discriminator(training):
    model = _mlp_discriminator(3, batch_norm=True)
    x = np.random.default_rng(1).normal(size=(6, 3)).astype("float32")
    real = np.random.default_rng(2).normal(size=(6, 3)).astype("float32")
    got = unrolled_outputs(model, losses.LeastSquares(), real, x, x, steps=0, optimizer=sgd(0.1, model),
                           training=training)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(model(x, training=training)))


@pytest.mark.parametrize("loss", ["least_squares", "wasserstein"])
def test_one_and_two_steps_equal_the_closed_form_sgd_recursion(loss):
    dim, lr = 3, 0.3
    model = _linear_discriminator(dim)
    rng = np.random.default_rng(3)
    real = rng.normal(1.0, 1.0, (8, dim)).astype("float32")
    fake = rng.normal(-1.0, 1.0, (8, dim)).astype("float32")
    w0, b0 = (v.numpy().astype("float64") for v in model.weights)
    for steps in (1, 2):
        outputs = unrolled_outputs(model, losses.get(loss), real, fake, _probe_inputs(dim), steps, sgd(lr, model))
        w, b = _weights_from_probe(outputs)
        w_ref, b_ref = _numpy_sgd(w0, b0, real.astype("float64"), fake.astype("float64"), lr, steps, loss)
        np.testing.assert_allclose(w, w_ref[:, 0], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(b, b_ref[0], rtol=1e-5, atol=1e-5)
        assert np.abs(w - w0[:, 0]).max() > 0.05  # the weights did move
    if loss == "wasserstein":  # constant gradient: w_K = w_0 - K lr (mean fake - mean real)
        expected = w0[:, 0] - 2 * lr * (fake.mean(0) - real.mean(0))
        np.testing.assert_allclose(w, expected, rtol=1e-5, atol=1e-5)


def test_discriminator_and_optimizer_variables_are_never_modified():
    model = _mlp_discriminator(3, batch_norm=True)
    model.layers[-2].moving_mean.assign([0.1, -0.2, 0.3, 0.0, 0.5])  # non-default statistics
    rng = np.random.default_rng(4)
    real, fake = rng.normal(size=(2, 6, 3)).astype("float32")
    optimizer = warm_adam(model, real, fake, losses.NonSaturating())
    before = [np.array(v.numpy(), copy=True) for v in model.weights + optimizer.variables]
    assert int(optimizer.iterations) == 3
    for training in (True, False):

        def unroll(training=training):
            return unrolled_outputs(model, losses.NonSaturating(), real, fake, fake, steps=3, optimizer=optimizer,
                                    training=training)

        unroll()
        tf.function(unroll)()
    for old, variable in zip(before, model.weights + optimizer.variables, strict=True):
        np.testing.assert_array_equal(variable.numpy(), old, err_msg=variable.path)
    assert int(optimizer.iterations) == 3


def _trained_copy(model, optimizer, loss_fn, real, fake, steps, training):
    """A copy of `model` after `steps` real `apply` updates of a copy of `optimizer` (batch-mean loss)."""
    copy = copy_model(model)
    optimizer = copy_optimizer(optimizer, copy)
    for _ in range(steps):
        real_step(copy, optimizer, loss_fn, real, fake, training)
    return copy


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("training", [True, False])
def test_matches_a_copy_trained_by_the_real_optimizer(training, optimizer):
    """A conditional D (embedding projection, batch norm) with [x, labels] inputs: K = 2 steps
    equal two real `optimizer.apply` updates of a copy of D with a copy of its optimizer (for
    Adam: a warm one, moments and iteration count non-zero). In inference mode the outputs use
    the moving statistics, which the copy's 4 calls updated as the 4 simulated calls did."""
    keras.utils.set_random_seed(5)
    x_in, y_in = keras.Input((4,)), keras.Input((), dtype="int32")
    h = keras.layers.BatchNormalization()(keras.layers.Dense(6, activation="relu")(x_in))
    projection = ops.sum(h * keras.layers.Embedding(3, 6)(y_in), axis=-1, keepdims=True)
    model = keras.Model([x_in, y_in], keras.layers.Dense(1)(h) + projection)
    rng = np.random.default_rng(6)
    real = [rng.normal(size=(8, 4)).astype("float32"), rng.integers(0, 3, 8).astype("int32")]
    fake = [rng.normal(size=(8, 4)).astype("float32"), rng.integers(0, 3, 8).astype("int32")]
    loss_fn = losses.NonSaturating()
    optimizer = warm_adam(model, real, fake, loss_fn) if optimizer == "adam" else sgd(0.2, model)

    got = unrolled_outputs(model, loss_fn, real, fake, fake, steps=2, optimizer=optimizer, training=training)
    expected = _trained_copy(model, optimizer, loss_fn, real, fake, 2, training)(fake, training=training)
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-5, atol=1e-5)
    assert np.abs(np.asarray(got) - np.asarray(model(fake, training=training))).max() > 1e-2  # D moved


@pytest.mark.parametrize("case", ["adam", "weight_clip", "amsgrad_weight_decay", "loss_scale"])
def test_k_adam_steps_equal_k_real_adam_steps_at_the_issue_settings(case):
    """Adam(2e-4, beta_1 0.5), warm, K = 5 on an MLP D: the unrolled outputs equal those of a copy
    after 5 real `apply` steps to float32 round-off, and D moved by far more than SGD at the same
    learning rate would move it (the landed code's simplification: ~1000x less, issue 14).
    `weight_clip`: D's WeightClip constraints are applied after each simulated step, as `apply`
    does. `loss_scale`: a `LossScaleOptimizer` (mixed_float16) is simulated by its inner Adam."""
    model = _mlp_discriminator(4, seed=21)
    rng = np.random.default_rng(22)
    real = rng.normal(1.0, 1.0, (16, 4)).astype("float32")
    fake = rng.normal(-1.0, 1.0, (16, 4)).astype("float32")
    loss_fn = losses.Minkowski(p=4)
    kwargs = {"amsgrad": True, "weight_decay": 0.1} if case == "amsgrad_weight_decay" else {}
    if case == "weight_clip":
        constraints.attach_weight_clip(model, 0.05)
    optimizer = warm_adam(model, real, fake, loss_fn, lr=2e-4, steps=3, **kwargs)
    simulated = keras.optimizers.LossScaleOptimizer(optimizer) if case == "loss_scale" else optimizer
    if case == "loss_scale":
        simulated.build(model.trainable_variables)
    got = np.asarray(unrolled_outputs(model, loss_fn, real, fake, fake, 5, simulated))
    expected = np.asarray(_trained_copy(model, optimizer, loss_fn, real, fake, 5, True)(fake))
    now = np.asarray(model(fake))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=2e-6)
    plain_sgd = np.asarray(unrolled_outputs(model, loss_fn, real, fake, fake, 5, sgd(2e-4, model)))
    assert np.abs(got - now).mean() > 10 * np.abs(plain_sgd - now).mean()  # 24x here
    if case == "weight_clip":
        assert np.abs(got - np.asarray(unrolled_outputs(model, loss_fn, real, fake, fake, 0, optimizer))).max() > 0


def _fake_gradient(model, real, fake, steps, optimizer, loss_fn):
    """d/d fake of sum(D_K(fake)), the unrolled weights depending on fake."""
    fake = tf.constant(fake)
    with tf.GradientTape() as tape:
        tape.watch(fake)
        total = ops.sum(unrolled_outputs(model, loss_fn, real, fake, fake, steps, optimizer))
    return tape.gradient(total, fake).numpy()


def test_generator_gradient_goes_through_the_unrolled_adam_steps():
    """float64 D and a warm float64-state Adam: the gradient w.r.t. the fake inputs equals
    central finite differences and differs both from the steps=0 gradient and from the gradient
    with theta_K held fixed (theta_K from real Adam steps on a copy)."""
    dim, steps = 2, 2
    model = _mlp_discriminator(dim, seed=7, dtype="float64")
    rng = np.random.default_rng(8)
    real = rng.normal(1.0, 1.0, (4, dim))
    fake = rng.normal(-1.0, 1.0, (4, dim))
    loss_fn = Float64LeastSquares()
    optimizer = warm_adam(model, real, fake, loss_fn, lr=0.1, steps=2)

    unrolled = tf.function(lambda f: ops.sum(unrolled_outputs(model, loss_fn, real, f, f, steps, optimizer)))
    analytic = _fake_gradient(model, real, fake, steps, optimizer, loss_fn)
    numeric = np.zeros_like(fake)
    eps = 1e-6
    for index in np.ndindex(fake.shape):
        step = np.zeros_like(fake)
        step[index] = eps
        numeric[index] = (float(unrolled(fake + step)) - float(unrolled(fake - step))) / (2 * eps)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)

    zero_steps = _fake_gradient(model, real, fake, 0, optimizer, loss_fn)
    held = _trained_copy(model, optimizer, loss_fn, real, fake, steps, True)  # theta_K as constants
    fake_t = tf.constant(fake)
    with tf.GradientTape() as tape:
        tape.watch(fake_t)
        total = ops.sum(held(fake_t, training=True))
    first_order = tape.gradient(total, fake_t).numpy()

    assert np.abs(analytic - zero_steps).max() > 1e-2
    assert np.abs(analytic - first_order).max() > 1e-3  # the second-order path contributes
    np.testing.assert_allclose(float(unrolled(fake)), float(ops.sum(held(fake, training=True))), rtol=1e-10)
    assert int(optimizer.iterations) == 2


def test_graph_equals_eager_and_the_optimizers_current_learning_rate_is_used():
    model = _mlp_discriminator(3, seed=9)
    rng = np.random.default_rng(10)
    real, fake = rng.normal(size=(2, 5, 3)).astype("float32")
    optimizer = warm_adam(model, real, fake, losses.Hinge(), lr=0.25)

    def outputs_and_gradient(fake):
        with tf.GradientTape() as tape:
            tape.watch(fake)
            out = unrolled_outputs(model, losses.Hinge(), real, fake, fake, steps=2, optimizer=optimizer)
            total = ops.sum(out)
        return out, tape.gradient(total, fake)

    eager = outputs_and_gradient(tf.constant(fake))
    graph = tf.function(outputs_and_gradient)(tf.constant(fake))
    for a, b in zip(eager, graph, strict=False):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    optimizer.learning_rate.assign(0.0)  # a zero learning rate leaves D as it is
    np.testing.assert_allclose(np.asarray(outputs_and_gradient(tf.constant(fake))[0]), np.asarray(model(fake)),
                               rtol=1e-6, atol=1e-6)


def test_mixed_bfloat16_discriminator():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = _mlp_discriminator(3, seed=11)
    finally:
        keras.config.set_dtype_policy(previous)
    rng = np.random.default_rng(12)
    real, fake = rng.normal(size=(2, 5, 3)).astype("float32")
    fake_t = tf.constant(fake)
    with tf.GradientTape() as tape:
        tape.watch(fake_t)
        out = unrolled_outputs(model, losses.NonSaturating(), real, fake_t, fake_t, steps=1,
                               optimizer=sgd(0.5, model))
        total = ops.sum(ops.cast(out, "float32"))
    gradient = tape.gradient(total, fake_t)
    assert out.dtype == model(fake).dtype
    assert np.all(np.isfinite(np.asarray(gradient))) and np.abs(np.asarray(gradient)).max() > 0
    np.testing.assert_array_equal(
        np.asarray(unrolled_outputs(model, losses.NonSaturating(), real, fake, fake, 0, None), dtype="float32"),
        np.asarray(model(fake), dtype="float32"))


def test_rejects_bad_steps():
    model = _linear_discriminator(2)
    x = np.zeros((2, 2), "float32")
    for steps in (-1, 1.5, True):
        with pytest.raises(ValueError, match="steps"):
            unrolled_outputs(model, losses.Wasserstein(), x, x, x, steps, sgd(0.1, model))


# ----------------------------------------------------------------------------------------------
# Two replicas (subprocess).


def replicas(num_replicas):
    """Unrolled outputs and G-side gradients for a global batch of 8 on `num_replicas` CPUs."""
    from kgan import distribute

    strategy = distribute.get_strategy("mirrored", devices=2) if num_replicas > 1 else tf.distribute.get_strategy()
    rng = np.random.default_rng(13)
    real = rng.normal(1.0, 1.0, (8, 3)).astype("float32")
    fake = rng.normal(-1.0, 1.0, (8, 3)).astype("float32")
    loss_fn = losses.NonSaturating()
    with strategy.scope():
        model = _mlp_discriminator(3, seed=14)
        optimizer = keras.optimizers.Adam(0.05, beta_1=0.5)  # D's Adam with a made-up warm state
        optimizer.build(model.trainable_variables)
        state = np.random.default_rng(15)
        optimizer.iterations.assign(3)
        for variable in optimizer.variables[2:]:  # moments m (any sign) and v (> 0), alternately
            values = state.normal(0.0, 0.1, variable.shape)
            variable.assign(values ** 2 if "velocity" in variable.path else values)
        unrolled.functional_optimizer(optimizer, model.trainable_variables)

    def local(batch):
        return strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.constant(batch)[ctx.replica_id_in_sync_group * (8 // ctx.num_replicas_in_sync):
                              (ctx.replica_id_in_sync_group + 1) * (8 // ctx.num_replicas_in_sync)])

    def step(real, fake):
        with tf.GradientTape() as tape:
            tape.watch(fake)
            out = unrolled_outputs(model, loss_fn, real, fake, fake, steps=2, optimizer=optimizer)
            loss = tf.nn.compute_average_loss(loss_fn.generator_loss(out))
        return out, tape.gradient(loss, fake)

    @tf.function
    def run():
        return strategy.run(step, args=(local(real), local(fake)))

    out, gradient = run()
    return {
        "replicas": strategy.num_replicas_in_sync,
        "outputs": np.concatenate([np.asarray(o) for o in strategy.experimental_local_results(out)]).tolist(),
        "gradient": np.concatenate([np.asarray(g) for g in strategy.experimental_local_results(gradient)]).tolist(),
        "zero_steps": np.asarray(model(fake)).tolist(),
    }


@pytest.mark.slow
def test_two_replicas_equal_one_replica(two_replicas):
    """The simulated gradients are all-reduced (both replicas unroll the same weights) and the
    all-reduce is differentiated: each replica's fake gradient includes the other's loss."""
    one = replicas(1)
    two = two_replicas
    assert two["replicas"] == 2 and one["replicas"] == 1
    np.testing.assert_allclose(two["outputs"], one["outputs"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(two["gradient"], one["gradient"], rtol=1e-5, atol=1e-7)
    assert np.abs(np.array(one["outputs"]) - np.array(one["zero_steps"])).max() > 1e-2  # D moved


if __name__ == "__main__":
    print(json.dumps(replicas(2)))
