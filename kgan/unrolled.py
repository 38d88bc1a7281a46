"""Unrolled discriminator: D's outputs after K simulated updates, differentiable in G's samples.

Metz et al., "Unrolled Generative Adversarial Networks", 2017 (https://arxiv.org/abs/1611.02163).
The generator is trained against the discriminator it WOULD face after K more updates of its
own, `theta_D^K(theta_G)`, and the gradient flows through the unrolling (the paper's surrogate
objective `f_K`, equation 7): G sees how D would react to its samples, which discourages mode
hopping. The unrolled weights are computed functionally (`keras.Model.stateless_call` on
tensors), so D's own variables never change.

The simulated updates are plain SGD, `theta <- theta - learning_rate * grad`. Metz et al. unroll
the discriminator's actual optimizer (Adam in their experiments); SGD is the common
simplification (a cheap step with no optimizer state to copy) and has a closed form the tests
check exactly.
"""

import tensorflow as tf
from keras import ops

from kgan import distribute


def _dense(gradient, value):
    """A dense gradient for `value`: IndexedSlices (embeddings) densified, None as zeros."""
    if gradient is None:
        return tf.zeros_like(value)
    return tf.convert_to_tensor(gradient)


def unrolled_outputs(
    discriminator,
    loss_fn,
    real_inputs,
    fake_inputs,
    eval_inputs,
    steps,
    learning_rate,
    training=True,
):
    """The discriminator's outputs on `eval_inputs` after `steps` simulated SGD updates.

    Metz et al., "Unrolled Generative Adversarial Networks", 2017
    (https://arxiv.org/abs/1611.02163). Starting from D's current weights `theta_0`, each
    simulated step is

        L_k = mean over the batch of loss_fn.discriminator_loss(D_k(real), D_k(fake))
        theta_{k+1} = theta_k - learning_rate * dL_k / dtheta_k

    and the result is `D_K(eval_inputs)`. Every step uses the same `real_inputs` and
    `fake_inputs` (as the paper's reference code). The weights `theta_K` are differentiable
    functions of `fake_inputs`, so a generator `tf.GradientTape` around this call sees the
    second-order terms through the unrolling (the paper's surrogate gradient). Metz et al. unroll
    D's own optimizer; plain SGD is the usual simplification, cheap and exactly checkable.

    D's variables are never modified: the weights are tensors passed to
    `discriminator.stateless_call`. Non-trainable state (batch-norm moving statistics, the
    seed state of dropout) is carried from one simulated call to the next, as a real update
    would, and then discarded. A gradient penalty and weight-clipping constraints are not part
    of the simulated updates.

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
        learning_rate: the SGD step size: a float, a scalar tensor or a variable (e.g.
            `d_optimizer.learning_rate`).
        training: the `training` argument of every call of D (simulated and final).

    Returns:
        D's outputs on `eval_inputs` with the unrolled weights (D's output dtype).

    Raises:
        ValueError: if `steps` is negative or not an integer.

    Example:

        with tf.GradientTape() as tape:
            fake = generator(z, training=True)
            outputs = unrolled_outputs(discriminator, loss_fn, real, fake, fake, steps=5,
                                       learning_rate=d_optimizer.learning_rate)
            loss = tf.nn.compute_average_loss(loss_fn.generator_loss(outputs))
        gradients = tape.gradient(loss, generator.trainable_variables)
    """
    if isinstance(steps, bool) or int(steps) != steps or steps < 0:
        raise ValueError(f"steps must be an int >= 0; got {steps!r}")
    trainable = [tf.convert_to_tensor(v) for v in discriminator.trainable_variables]
    non_trainable = [tf.convert_to_tensor(v) for v in discriminator.non_trainable_variables]
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
        gradients = distribute.all_reduce_sum([_dense(g, w) for g, w in zip(gradients, trainable)])
        trainable = [w - ops.cast(learning_rate, w.dtype) * g for w, g in zip(trainable, gradients)]
    outputs, _ = discriminator.stateless_call(trainable, non_trainable, eval_inputs, training=training)
    return outputs
