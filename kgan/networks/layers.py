"""Layers for the stabilisation toolbox, and the small functional pieces the builders share.

Layers (all registered with `keras.saving.register_keras_serializable(package="kgan")`):

- `ConditionalBatchNormalization`: batch norm whose scale and offset are looked up per class
  (de Vries et al. 2017; Dumoulin et al. 2017; as used by Miyato & Koyama 2018).
- `SelfAttention`: the SAGAN non-local block (Zhang et al. 2019).
- `MinibatchStdDev`: ProGAN's minibatch standard deviation feature (Karras et al. 2018).
- `GlobalSumPooling2D`: the SNGAN ResNet critic's global sum pooling (Miyato et al. 2018).
- `Maxout`: the max over each unit's pieces (Goodfellow et al. 2013), PacGAN's 2-D D.
- `LeakyReLU`, `ReLU`: Keras's activations whose gradient is marked piecewise constant, so a
  gradient penalty's second-order pass skips a path that is exactly zero (`_with_mask_gradient`).

Helpers (plain functions on Keras tensors): `spectral` wraps a layer in
`keras.layers.SpectralNormalization` when asked, `normalize` applies batch norm or its
class-conditional form, `discriminator_output` ends every discriminator with a
`features` identity layer and either a dense logit or a projection head.
"""

import keras
import tensorflow as tf
from keras import layers, ops

#: Name of the layer holding a discriminator's penultimate feature vector (feature matching reads it).
FEATURES_LAYER = "features"


def _with_mask_gradient(forward, mask_gradient):
    """`forward(x)` whose gradient `mask_gradient(upstream, x, y)` is a mask, constant in x.

    The derivative of a (leaky) ReLU is a mask, 1 or the negative slope, piecewise constant in
    x; TensorFlow nevertheless returns `zeros_like(x)` for the gradient of `ReluGrad` and
    `LeakyReluGrad` with respect to x. Under a gradient penalty (an input gradient
    differentiated again by the outer tape) those zeros flow back through the whole forward
    pass of the interpolates: every layer's weight and input gradients are computed again, on
    zeros. Here the first-order gradient is the same TensorFlow op on `stop_gradient(x)`, so the
    second-order pass stops at the mask. Values and gradients of every order are unchanged;
    only the zero path is not computed.
    """

    @tf.custom_gradient
    def activation(x):
        y = forward(x)

        def gradient(upstream):
            return mask_gradient(upstream, tf.stop_gradient(x), tf.stop_gradient(y))

        return y, gradient

    return activation


def leaky_relu(x, negative_slope=0.2):
    """max(x, negative_slope * x) as `tf.nn.leaky_relu`; its mask is not differentiated."""
    alpha = float(negative_slope)
    return _with_mask_gradient(
        lambda x: tf.nn.leaky_relu(x, alpha=alpha),
        lambda upstream, x, y: tf.raw_ops.LeakyReluGrad(gradients=upstream, features=x, alpha=alpha),
    )(x)


def relu(x):
    """max(x, 0) as `tf.nn.relu`; its mask is not differentiated."""
    return _with_mask_gradient(
        tf.nn.relu, lambda upstream, x, y: tf.raw_ops.ReluGrad(gradients=upstream, features=y)
    )(x)


@keras.saving.register_keras_serializable(package="kgan")
class LeakyReLU(layers.LeakyReLU):
    """`keras.layers.LeakyReLU` computed by `leaky_relu`: cheaper under a gradient penalty.

    Same arguments, outputs and gradients; only the (exactly zero) second derivative of the
    mask is not propagated (`_with_mask_gradient`). kgan's discriminators use it; use it in
    your own critic for the same saving.
    """

    def call(self, inputs):
        return leaky_relu(inputs, self.negative_slope)


@keras.saving.register_keras_serializable(package="kgan")
class ReLU(layers.ReLU):
    """`keras.layers.ReLU` computed by `relu`: cheaper under a gradient penalty.

    Only the plain ReLU (no `max_value`, `negative_slope` 0, `threshold` 0) takes the fast
    path; other settings fall back to Keras's implementation.
    """

    def call(self, inputs):
        if self.max_value is None and not self.negative_slope and not self.threshold:
            return relu(inputs)
        return super().call(inputs)


@keras.saving.register_keras_serializable(package="kgan")
class Maxout(layers.Layer):
    """Maxout (Goodfellow et al. 2013): features [B, U * k] -> [B, U], unit u the max of its k pieces.

    Unit u's pieces are the k consecutive features u * k .. u * k + k - 1 (Blocks' `Maxout`,
    which PacGAN's `LinearMaxout` applies after a linear layer of U * k outputs).
    """

    def __init__(self, pieces, **kwargs):
        super().__init__(**kwargs)
        if int(pieces) < 1:
            raise ValueError(f"Maxout needs pieces >= 1; got {pieces}")
        self.pieces = int(pieces)

    def build(self, input_shape):
        if input_shape[-1] is None or input_shape[-1] % self.pieces:
            raise ValueError(f"Maxout({self.pieces}) needs a known number of features divisible by {self.pieces}; "
                             f"got input shape {tuple(input_shape)}")

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] // self.pieces)

    def call(self, inputs):
        units = inputs.shape[-1] // self.pieces
        pieces = ops.reshape(inputs, (*ops.shape(inputs)[:-1], units, self.pieces))
        return ops.max(pieces, axis=-1)

    def get_config(self):
        return {**super().get_config(), "pieces": self.pieces}


@keras.saving.register_keras_serializable(package="kgan")
class ConditionalBatchNormalization(layers.Layer):
    """Batch normalization with a learned scale and offset per class.

    de Vries et al., "Modulating early visual processing by language", 2017
    (https://arxiv.org/abs/1707.00683); Dumoulin et al., "A Learned Representation for Artistic
    Style", 2017 (https://arxiv.org/abs/1610.07629); the class-conditional generator of Miyato &
    Koyama, "cGANs with Projection Discriminator", 2018 (https://arxiv.org/abs/1802.05637).

    The input is normalised by a `keras.layers.BatchNormalization` without its own scale and
    offset (`center=False, scale=False`; its moving statistics are shared by all classes), then
    `y = gamma[label] * x_hat + beta[label]`, with `gamma` (initialised to 1) and `beta`
    (initialised to 0) two `keras.layers.Embedding` tables of shape [num_classes, C]. The inner
    batch norm is a sublayer, so `kgan.distribute.synchronize_batch_norm` finds and synchronises
    it like any other.

    Args:
        num_classes: number of classes; labels are ints in [0, num_classes).
        momentum: momentum of the moving mean and variance (as `BatchNormalization`).
        epsilon: added to the variance (as `BatchNormalization`).

    Call arguments:
        inputs: features [B, ..., C] (rank 2 or 4).
        labels: int class labels [B].
        training: batch statistics (True) or moving statistics (False).

    Returns:
        A tensor of the shape of `inputs`.

    Example:

    >>> x = np.random.normal(size=(4, 8, 8, 16)).astype("float32")
    >>> y = ConditionalBatchNormalization(10)(x, np.array([0, 1, 2, 3]))
    >>> y.shape
    TensorShape([4, 8, 8, 16])
    """

    def __init__(self, num_classes, momentum=0.99, epsilon=1e-3, **kwargs):
        super().__init__(**kwargs)
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1; got {num_classes}")
        self.num_classes = int(num_classes)
        self.momentum = momentum
        self.epsilon = epsilon
        self.batch_norm = layers.BatchNormalization(
            momentum=momentum, epsilon=epsilon, center=False, scale=False, dtype=self.dtype_policy, name="bn"
        )

    def build(self, inputs_shape, labels_shape=None):
        channels = inputs_shape[-1]
        self.gamma = layers.Embedding(
            self.num_classes, channels, embeddings_initializer="ones", dtype=self.dtype_policy, name="gamma"
        )
        self.beta = layers.Embedding(
            self.num_classes, channels, embeddings_initializer="zeros", dtype=self.dtype_policy, name="beta"
        )
        self.batch_norm.build(inputs_shape)
        self.gamma.build((None,))
        self.beta.build((None,))

    def call(self, inputs, labels, training=None):
        normalized = self.batch_norm(inputs, training=training)
        # [B, C] -> [B, 1, ..., 1, C] so that it broadcasts over the spatial axes.
        shape = (-1,) + (1,) * (len(inputs.shape) - 2) + (inputs.shape[-1],)
        gamma = ops.reshape(self.gamma(labels), shape)
        beta = ops.reshape(self.beta(labels), shape)
        return ops.cast(gamma, normalized.dtype) * normalized + ops.cast(beta, normalized.dtype)

    def compute_output_shape(self, inputs_shape, labels_shape=None):
        return inputs_shape

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes, "momentum": self.momentum, "epsilon": self.epsilon})
        return config


@keras.saving.register_keras_serializable(package="kgan")
class SelfAttention(layers.Layer):
    """The self-attention (non-local) block of SAGAN: every position attends to all others.

    Zhang, Goodfellow, Metaxas & Odena, "Self-Attention Generative Adversarial Networks", 2019
    (https://arxiv.org/abs/1805.08318), Section 3.

    With x [B, H, W, C] flattened to N = H * W positions, 1x1 convolutions (no bias) give
    f(x) [B, N, C/8] (keys), g(x) [B, N, C/8] (queries) and h(x) [B, N, C/2] (values);
    `beta[j, i] = softmax_i(f(x_i) . g(x_j))` is how much position j attends to position i,
    `o_j = v(sum_i beta[j, i] h(x_i))` with v a 1x1 convolution back to C channels, and the
    output is `y = x + gamma * o` with the scalar `gamma` initialised to 0 (the block starts as
    the identity and learns how much non-local evidence to use).

    The value width C/2 follows the authors' released code and BigGAN; the max-pooling of keys
    and values that those implementations add to save memory is left out (plain SAGAN maths:
    every position attends to every position; the maps here are at most 64x64). The softmax is
    computed in float32 whatever the compute dtype.

    Args:
        spectral_norm: wrap the four 1x1 convolutions in `keras.layers.SpectralNormalization`
            (SAGAN uses spectral norm in both networks; kgan follows the network it sits in).

    Call arguments:
        inputs: feature maps [B, H, W, C], C >= 8 and divisible by 8 (so C/8 and C/2 exist).

    Returns:
        A tensor of the shape of `inputs`.
    """

    def __init__(self, spectral_norm=False, **kwargs):
        super().__init__(**kwargs)
        self.spectral_norm = bool(spectral_norm)

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"SelfAttention takes feature maps [B, H, W, C]; got shape {input_shape}")
        channels = input_shape[-1]
        if channels < 8 or channels % 8:
            raise ValueError(f"SelfAttention needs C >= 8 divisible by 8 channels; got {channels}")

        def conv(filters, name):
            layer = layers.Conv2D(filters, 1, use_bias=False, dtype=self.dtype_policy, name=name)
            return spectral(layer, self.spectral_norm)

        self.query = conv(channels // 8, "query")  # g in the paper
        self.key = conv(channels // 8, "key")  # f
        self.value = conv(channels // 2, "value")  # h
        self.attention_output = conv(channels, "output")  # v
        self.query.build(input_shape)
        self.key.build(input_shape)
        self.value.build(input_shape)
        self.attention_output.build((*input_shape[:3], channels // 2))
        self.gamma = self.add_weight(shape=(), initializer="zeros", name="gamma")

    def call(self, inputs, training=None):
        _, height, width, channels = inputs.shape
        positions = height * width

        def flat(x):
            return ops.reshape(x, (-1, positions, x.shape[-1]))

        queries = flat(self.query(inputs, training=training))
        keys = flat(self.key(inputs, training=training))
        values = flat(self.value(inputs, training=training))
        scores = ops.matmul(queries, ops.transpose(keys, (0, 2, 1)))  # [B, N (j), N (i)]
        weights = ops.cast(ops.softmax(ops.cast(scores, "float32"), axis=-1), values.dtype)
        attended = ops.reshape(ops.matmul(weights, values), (-1, height, width, channels // 2))
        outputs = self.attention_output(attended, training=training)
        return inputs + ops.cast(self.gamma, inputs.dtype) * ops.cast(outputs, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"spectral_norm": self.spectral_norm})
        return config


@keras.saving.register_keras_serializable(package="kgan")
class MinibatchStdDev(layers.Layer):
    """Appends the minibatch standard deviation as one extra feature (map).

    Karras, Aila, Laine & Lehtinen, "Progressive Growing of GANs for Improved Quality,
    Stability, and Variation", 2018 (https://arxiv.org/abs/1710.10196), Section 3.

    The batch B is split into groups of G = min(group_size, B) examples, laid out as in the
    authors' code: example b belongs to group b mod (B / G). Within each group, the standard
    deviation of every feature over the group's G examples is taken (biased variance, eps 1e-8
    inside the square root), averaged over all features (channels and pixels) to one number per
    group, and appended to each of the group's examples as one constant channel: [B, H, W, C]
    -> [B, H, W, C + 1], or [B, D] -> [B, D + 1]. A discriminator that sees a batch with little
    variation (mode collapse) can then tell it apart. B must be divisible by G.

    Under a distribution strategy the groups are formed within each replica's slice. The
    statistics are computed in float32 whatever the compute dtype.

    Args:
        group_size: examples per group (4 in ProGAN).

    Call arguments:
        inputs: [B, ..., C].

    Returns:
        [B, ..., C + 1].
    """

    def __init__(self, group_size=4, **kwargs):
        super().__init__(**kwargs)
        if int(group_size) < 1:
            raise ValueError(f"group_size must be >= 1; got {group_size}")
        self.group_size = int(group_size)

    def call(self, inputs):
        batch = inputs.shape[0]
        if batch is not None:
            group = min(self.group_size, batch)
            if batch % group:
                raise ValueError(f"MinibatchStdDev: batch {batch} is not divisible by the group size {group}")
        else:
            batch = ops.shape(inputs)[0]
            group = ops.minimum(self.group_size, batch)
        features = inputs.shape[1:]
        x = ops.reshape(ops.cast(inputs, "float32"), (group, -1, *features))  # [G, B / G, ...]
        variance = ops.mean(ops.square(x - ops.mean(x, axis=0, keepdims=True)), axis=0)
        std = ops.sqrt(variance + 1e-8)  # [B / G, ...]
        per_group = ops.mean(std, axis=tuple(range(1, len(features) + 1)))  # [B / G]
        per_example = ops.tile(per_group, (group,))  # [B]: example b gets group b mod (B / G)
        shape = (-1,) + (1,) * (len(features) - 1) + (1,)
        extra = ops.reshape(per_example, shape) * ops.ones_like(ops.cast(inputs[..., :1], "float32"))
        return ops.concatenate([inputs, ops.cast(extra, inputs.dtype)], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] + 1)

    def get_config(self):
        config = super().get_config()
        config.update({"group_size": self.group_size})
        return config


@keras.saving.register_keras_serializable(package="kgan")
class GlobalSumPooling2D(layers.Layer):
    """Sums feature maps over their spatial axes: [B, H, W, C] -> [B, C].

    The SNGAN ResNet critic ends with ReLU, global sum pooling and a dense layer (Miyato et al.,
    "Spectral Normalization for Generative Adversarial Networks", 2018,
    https://arxiv.org/abs/1802.05957, Table 4 and the authors' chainer code). A sum rather than
    Keras' average makes the critic's scale grow with the map size, as in the paper.
    """

    def call(self, inputs):
        return ops.sum(inputs, axis=(1, 2))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])


def spectral(layer, enabled):
    """`layer` wrapped in `keras.layers.SpectralNormalization` (named `sn_<name>`) if `enabled`.

    The wrapper gets the layer's dtype policy: it casts its output to its own input dtype, so a
    float32 output layer stays float32 under a mixed policy.
    """
    if not enabled:
        return layer
    return layers.SpectralNormalization(layer, name=f"sn_{layer.name}", dtype=layer.dtype_policy)


def normalize(x, name, labels=None, num_classes=None):
    """Batch norm on `x`, class-conditional (`ConditionalBatchNormalization`) when `num_classes`."""
    if num_classes:
        return ConditionalBatchNormalization(num_classes, name=name)(x, labels)
    return layers.BatchNormalization(name=name)(x)


def discriminator_output(x, labels=None, num_classes=None, spectral_norm=False, initializers=None):
    """The end of every discriminator: `features` [B, F] -> logits [B, 1] float32.

    Unconditional: a dense layer `logits`. Conditional: the projection discriminator of Miyato &
    Koyama 2018 (https://arxiv.org/abs/1802.05637), `logits(h) + sum(embed(y) * h, -1)`, where
    `embed` is a [num_classes, F] table. The table is a bias-free `Dense` on the one-hot label
    (the same product): Keras' `SpectralNormalization` casts its wrapped layer's output to the
    dtype of its input, which for an `Embedding` would be the int labels.

    Args:
        x: the feature vector h [B, F].
        labels: int labels [B] (a Keras input) when conditional.
        num_classes: None (unconditional) or the number of classes.
        spectral_norm: spectral normalisation on the dense layer and the class table.
        initializers: the `logits` layer's initialiser arguments (Keras' defaults when None).

    Returns:
        Logits [B, 1], float32.
    """
    features = layers.Identity(name=FEATURES_LAYER)(x)
    logits = spectral(layers.Dense(1, dtype="float32", name="logits", **(initializers or {})), spectral_norm)(features)
    if not num_classes:
        return logits
    one_hot = layers.CategoryEncoding(num_classes, output_mode="one_hot", name="labels_one_hot")(labels)
    embed = layers.Dense(x.shape[-1], use_bias=False, dtype="float32", name="embed")
    embedded = spectral(embed, spectral_norm)(one_hot)
    projection = layers.Dot(axes=-1, dtype="float32", name="projection")([embedded, features])
    return layers.Add(dtype="float32", name="conditional_logits")([logits, projection])
