"""Weight clipping as a Keras constraint, applied by the optimizer after every update."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kgan")
class WeightClip(keras.constraints.Constraint):
    """Clips every weight to [-clip_value, clip_value] (the original WGAN critic).

    Arjovsky et al., "Wasserstein GAN", 2017 (https://arxiv.org/abs/1701.07875): c = 0.01.
    Keras 3 optimizers apply `variable.constraint` after each update, so attaching this to
    the discriminator's variables (`attach_weight_clip`) is all a training loop needs.

    Args:
        clip_value: c > 0.

    Raises:
        ValueError: if clip_value is not a positive number.
    """

    def __init__(self, clip_value=0.01):
        try:
            clip_value = float(clip_value)
        except (TypeError, ValueError):
            raise ValueError(f"clip_value must be a positive number; got {clip_value!r}") from None
        if not clip_value > 0:
            raise ValueError(f"clip_value must be a positive number; got {clip_value}")
        self.clip_value = clip_value

    def __call__(self, w):
        return ops.clip(w, -self.clip_value, self.clip_value)

    def get_config(self):
        return {"clip_value": self.clip_value}


def attach_weight_clip(model, clip_value):
    """Sets `WeightClip(clip_value)` as the constraint of every trainable variable of `model`.

    The current values are clipped at once, so the bound holds from the first step on.

    Args:
        model: a built Keras model (e.g. the discriminator).
        clip_value: c > 0.

    Returns:
        The `WeightClip` attached.
    """
    if not model.built:
        raise ValueError(f"Model {model.name!r} must be built before weight clipping is attached.")
    constraint = WeightClip(clip_value)
    for variable in model.trainable_variables:
        variable.constraint = constraint
        variable.assign(constraint(variable))
    return constraint
