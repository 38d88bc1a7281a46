"""Unrolled discriminator: D's outputs after K simulated updates, differentiable in G's samples.

Metz et al., "Unrolled Generative Adversarial Networks", 2017 (https://arxiv.org/abs/1611.02163).
The generator is trained against the discriminator it WOULD face after K more updates of its
own, `theta_D^K(theta_G)`, and the gradient flows through the unrolling (the paper's surrogate
objective `f_K`, equation 7): G sees how D would react to its samples, which discourages mode
hopping. As in the paper and its reference code, the simulated updates are those of D's actual
optimizer (Adam in their experiments): its hyperparameters AND its current state (Adam's first
and second moments, its iteration count, hence its bias correction and learning-rate schedule).

Everything is functional: D's weights are tensors passed to `keras.Model.stateless_call`, and
the optimizer step is Keras' own `stateless_apply` on tensors holding the optimizer's current
variables, so no variable of D or of its optimizer changes.

Keras 3.15's TensorFlow optimizer refuses `stateless_apply` ("incompatible with
tf.distribute": its `apply` updates `tf.Variable`s through `distribution.extended.update`).
`functional_optimizer(optimizer, variables)` therefore makes a twin of the optimizer, the same class and
config built on the same variables, whose variable updates go through Keras' backend-agnostic
code (`keras.src.optimizers.base_optimizer.BaseOptimizer`: `assign`, `_backend_update_step`,
`_apply_weight_decay`, `stateless_apply`), which records them in a `keras.StatelessScope`
instead of writing them. Its own update rule (`update_step`), gradient clipping, weight decay,
learning-rate schedule and variable constraints are the optimizer's, so a simulated step equals
a real `optimizer.apply` (checked in tests/test_unrolled.py). The twin's variables are never read:
every call maps them to the current values of the original optimizer's variables.

Gradients are simulated dense. For an embedding (a conditional D's projection) TensorFlow gives
`IndexedSlices` with one row per example, and Keras 3.15's Adam fed them directly updates its
second moment with the sum of the squared rows instead of the square of their sum (seen with
indices [0, 0]: v = 0.00125 instead of 0.00025); the simulation uses the dense gradient, so it
equals a real step on the densified gradient, the mathematically intended Adam step.
"""

import weakref

import keras
import tensorflow as tf
from keras.src.optimizers.base_optimizer import BaseOptimizer

from kgan import distribute


def _dense(gradient, value):
    """A dense gradient for `value`: IndexedSlices (embeddings) densified, None as zeros."""
    if gradient is None:
        return tf.zeros_like(value)
    return tf.convert_to_tensor(gradient)


class _Functional:
    """Mixin: the backend-agnostic (StatelessScope-aware) variable updates of Keras' optimizer."""

    assign = BaseOptimizer.assign
    assign_add = BaseOptimizer.assign_add
    assign_sub = BaseOptimizer.assign_sub
    _var_key = BaseOptimizer._var_key
    _apply_weight_decay = BaseOptimizer._apply_weight_decay
    _backend_update_step = BaseOptimizer._backend_update_step
    stateless_apply = BaseOptimizer.stateless_apply


_TWINS = weakref.WeakKeyDictionary()


def simulated_optimizer(optimizer):
    """The optimizer whose steps an unrolling simulates: a `LossScaleOptimizer`'s inner one.

    Under `mixed_float16` D's optimizer is a `keras.optimizers.LossScaleOptimizer`; the
    simulated losses are not scaled (their gradients are exact float32 values), and a finite
    real step of the wrapper IS the inner optimizer's step on the unscaled gradients, so the
    unrolling simulates the inner optimizer (the loss scale's overflow skip is not simulated).
    """
    while isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer = optimizer.inner_optimizer
    return optimizer


def functional_optimizer(optimizer, variables):
    """The twin of `optimizer` that `stateless_apply` works with (made once, then cached).

    Call it once outside `tf.function` and in the scope of the distribution strategy (as
    `kgan.gan.GAN.compile` does) so the twin's variables are made there; otherwise the first
    `unrolled_outputs` makes it (lifted out of any `tf.function` by `tf.init_scope`).

    Args:
        optimizer: a BUILT Keras optimizer (a `LossScaleOptimizer` is unwrapped).
        variables: the variables it was built with (D's trainable variables, in order).

    Returns:
        An optimizer of the same class and config, built on the same variables, whose
        `stateless_apply(optimizer.variables values, grads, weights)` returns the new weights
        and optimizer values without changing any variable.

    Raises:
        ValueError: if the optimizer is not built.
    """
    optimizer = simulated_optimizer(optimizer)
    twin = _TWINS.get(optimizer)
    if twin is not None:
        return twin
    if not optimizer.built:
        raise ValueError("unrolling needs the discriminator's optimizer built on its variables "
                         "(optimizer.build(discriminator.trainable_variables))")
    cls = type(optimizer)
    with tf.init_scope():
        twin = type(f"Functional{cls.__name__}", (_Functional, cls), {}).from_config(optimizer.get_config())
        twin.build(list(variables))
    if [tuple(v.shape) for v in twin.variables] != [tuple(v.shape) for v in optimizer.variables]:
        raise ValueError(f"cannot simulate {cls.__name__}: its twin's variables differ from its own")
    _TWINS[optimizer] = twin
    return twin


def unrolled_outputs(
    discriminator,
    loss_fn,
    real_inputs,
    fake_inputs,
    eval_inputs,
    steps,
    optimizer,
    training=True,
):
    """The discriminator's outputs on `eval_inputs` after `steps` simulated optimizer updates.

    Metz et al., "Unrolled Generative Adversarial Networks", 2017
    (https://arxiv.org/abs/1611.02163). Starting from D's current weights `theta_0` and the
    optimizer's current state `s_0` (e.g. Adam's m, v and iteration count), each simulated
    step is

        L_k = mean over the batch of loss_fn.discriminator_loss(D_k(real), D_k(fake))
        theta_{k+1}, s_{k+1} = optimizer step from (theta_k, s_k) with gradient dL_k / dtheta_k

    (Keras' own update rule through `stateless_apply`, see `functional_optimizer`), and the
    result is `D_K(eval_inputs)`. Every step uses the same `real_inputs` and `fake_inputs` (as
    the paper's reference code). The weights `theta_K` are differentiable functions of
    `fake_inputs`, so a generator `tf.GradientTape` around this call sees the second-order
    terms through the unrolling (the paper's surrogate gradient).

    Nothing is modified: not D's variables (the weights are tensors passed to
    `discriminator.stateless_call`) and not the optimizer's (its slots and `iterations` are
    tensors passed to `stateless_apply`). Non-trainable state (batch-norm moving statistics)
    is carried from one simulated call to the next, as a real update would, then discarded.
    The constraints of D's variables (`kgan.constraints.WeightClip`) are applied after each
    simulated step, as the real optimizer applies them. A gradient penalty is not part of the
    simulated loss. Under a `LossScaleOptimizer` the inner optimizer is simulated on unscaled
    gradients (`simulated_optimizer`).

    Distribution: the batch mean is `tf.nn.compute_average_loss` (sum over this replica's
    examples / GLOBAL batch), as `GAN._average`, and the simulated gradients are all-reduced
    (summed) in replica context, so under `tf.distribute.MirroredStrategy` every replica
    unrolls the same weights, those of one replica holding the global batch. The all-reduce is
    differentiable, so the generator gradients summed over replicas are the global ones.

    Args:
        discriminator: a built `keras.Model` (or layer): inputs -> outputs [B, 1] or [B].
        loss_fn: an object with `discriminator_loss(real_outputs, fake_outputs) -> [B]`
            (a `kgan.losses.Loss`).
        real_inputs: D's inputs for real data: a tensor [B, ...], or `[x, labels]` for a
            conditional D (passed to D as given).
        fake_inputs: D's inputs for generated data, same structure as `real_inputs`.
        eval_inputs: the inputs whose outputs are returned (usually `fake_inputs`).
        steps: K, the number of simulated updates (a Python int >= 0); 0 gives D's outputs
            with its current weights.
        optimizer: the Keras optimizer to simulate, BUILT on `discriminator.trainable_variables`
            (D's own optimizer, or e.g. `keras.optimizers.SGD(lr)` for the SGD simplification).
        training: the `training` argument of every call of D (simulated and final).

    Returns:
        D's outputs on `eval_inputs` with the unrolled weights (D's output dtype).

    Raises:
        ValueError: if `steps` is negative or not an integer, or the optimizer is not built.

    Example:

        with tf.GradientTape() as tape:
            fake = generator(z, training=True)
            outputs = unrolled_outputs(discriminator, loss_fn, real, fake, fake, steps=5,
                                       optimizer=d_optimizer)
            loss = tf.nn.compute_average_loss(loss_fn.generator_loss(outputs))
        gradients = tape.gradient(loss, generator.trainable_variables)
    """
    if isinstance(steps, bool) or int(steps) != steps or steps < 0:
        raise ValueError(f"steps must be an int >= 0; got {steps!r}")
    trainable = [tf.convert_to_tensor(v) for v in discriminator.trainable_variables]
    non_trainable = [tf.convert_to_tensor(v) for v in discriminator.non_trainable_variables]
    if steps:
        source = simulated_optimizer(optimizer)
        twin = functional_optimizer(source, discriminator.trainable_variables)
        state = [tf.convert_to_tensor(v) for v in source.variables]
    for _ in range(int(steps)):
        with tf.GradientTape() as tape:
            tape.watch(trainable)
            real_outputs, non_trainable = discriminator.stateless_call(
                trainable, non_trainable, real_inputs, training=training
            )
            fake_outputs, non_trainable = discriminator.stateless_call(
                trainable, non_trainable, fake_inputs, training=training
            )
            loss = tf.nn.compute_average_loss(loss_fn.discriminator_loss(real_outputs, fake_outputs))
        gradients = tape.gradient(loss, trainable)
        gradients = distribute.all_reduce_sum([_dense(g, w) for g, w in zip(gradients, trainable, strict=False)])
        trainable, state = twin.stateless_apply(state, gradients, trainable)
    outputs, _ = discriminator.stateless_call(trainable, non_trainable, eval_inputs, training=training)
    return outputs
