"""Regularizers on a player's weights: historical averaging.

`HistoricalAveraging` penalises the distance of the weights from the running mean of their past
values (Salimans et al. 2016). It is a `keras.layers.Layer` holding that mean as non-trainable
weights, so a model holding it as an attribute saves and restores it with its own weights
(`save_weights`, kgan's checkpoints).
"""

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="kgan")
class HistoricalAveraging(keras.layers.Layer):
    """Historical averaging: `weight * sum_i ||theta_i - mean_past(theta_i)||^2`.

    Salimans et al., "Improved Techniques for Training GANs", 2016
    (https://arxiv.org/abs/1606.03498), section 3.3: each player's cost gets the term
    `||theta - (1/t) sum_{i=1}^t theta[i]||^2`, theta[i] the parameters at past time i.

    Convention: the history starts with the values given to `build` (the initial weights, count
    1), and `update` appends the current values after each optimizer step:

        count_t = count_{t-1} + 1
        mean_t = mean_{t-1} + (theta - mean_{t-1}) / count_t

    so the mean is always the plain average of every value recorded, and the penalty is 0
    until the weights first move. The mean and count are float32 / int64 non-trainable weights
    (saved with the model); the penalty is computed in float32 whatever the variables' dtype
    (mixed precision). It runs inside `tf.function`. Under `tf.distribute.MirroredStrategy`
    every replica holds the same (mirrored) weights and so assigns the same mean: the state is
    aggregated as "only_first_replica". The penalty is a per-model scalar: a caller summing it
    over replicas divides it by the number of replicas first (as `GAN` does).

    Args:
        weight: the penalty's coefficient, >= 0.
        **kwargs: `keras.layers.Layer` arguments (e.g. `name`).

    Example:

        historical = HistoricalAveraging(weight=1e-3)
        historical.build(discriminator.trainable_variables)
        with tf.GradientTape() as tape:
            loss = d_loss + historical(discriminator.trainable_variables)
        optimizer.apply(tape.gradient(loss, variables), variables)
        historical.update(discriminator.trainable_variables)
    """

    def __init__(self, weight=1.0, **kwargs):
        kwargs.setdefault("dtype", "float32")  # state and penalty in float32 under mixed precision
        super().__init__(**kwargs)
        if not float(weight) >= 0:
            raise ValueError(f"HistoricalAveraging weight must be >= 0; got {weight}")
        self.weight = float(weight)
        self.means = []
        self.count = None

    def build(self, variables):
        """Creates one float32 running mean per variable, initialised to its current value.

        Args:
            variables: list of variables (or tensors): the weights to regularise, e.g.
                `model.trainable_variables`. Later calls take the same list, in this order.
        """
        for i, variable in enumerate(variables):
            initial = ops.convert_to_numpy(ops.cast(variable, "float32"))
            self.means.append(self.add_weight(
                shape=tuple(initial.shape), initializer=keras.initializers.Constant(initial), dtype="float32",
                trainable=False, autocast=False, aggregation="only_first_replica", name=f"mean_{i}",
            ))
        self.count = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(1), dtype="int64", trainable=False,
            autocast=False, aggregation="only_first_replica", name="count",
        )

    def __setattr__(self, name, value):
        # Keras' build wrapper records build's arguments as `_build_shapes_dict`: here they are
        # the regularised variables themselves, which the layer would then track as its own
        # weights (and save twice). The shapes are recorded by `get_build_config` instead.
        if name == "_build_shapes_dict" and value is not None:
            value = None
        super().__setattr__(name, value)

    def _check(self, variables):
        if not self.built:
            raise ValueError("HistoricalAveraging must be built with build(variables) before use")
        if len(variables) != len(self.means):
            raise ValueError(f"HistoricalAveraging was built for {len(self.means)} variables; got {len(variables)}")

    def __call__(self, variables, **kwargs):
        self._check(variables)
        return super().__call__(variables, **kwargs)

    def call(self, variables):
        """The penalty: weight * sum_i ||theta_i - mean_i||^2, a float32 scalar."""
        total = ops.zeros((), "float32")
        for variable, mean in zip(variables, self.means, strict=True):
            total = total + ops.sum(ops.square(ops.cast(variable, "float32") - mean))
        return self.weight * total

    def update(self, variables):
        """Adds the current values of `variables` to the running means (count-weighted)."""
        self._check(variables)
        count = self.count + 1
        t = ops.cast(count, "float32")
        for variable, mean in zip(variables, self.means, strict=True):
            mean.assign(mean + (ops.cast(ops.stop_gradient(variable), "float32") - mean) / t)
        self.count.assign(count)

    def compute_output_shape(self, input_shape):
        return ()

    def get_build_config(self):
        return {"shapes": [list(mean.shape) for mean in self.means]}

    def build_from_config(self, config):
        """Builds zero means of the recorded shapes (their values are then loaded)."""
        self.build([np.zeros(shape, "float32") for shape in config["shapes"]])

    def get_config(self):
        config = super().get_config()
        config.update({"weight": self.weight})
        return config
