"""Build the Keras model of one member from its spec.

Two families:

* ``convnet`` — blocks of 3×3 convolutions (batch norm, ReLU) and 2×2 max pooling whose
  depth, width and convolutions per block come from the spec, then global average
  pooling (resolution-agnostic, so progressive resizing keeps the same weights) or
  Flatten, dense layers with dropout, and the head.
  ``block = "residual"`` adds a shortcut (1×1 projection) around each block's convolutions.
* Keras applications (``efficientnetb0``, ``resnet50v2``, ``mobilenetv3small``, ``densenet121``,
  ``convnext_tiny``) — :mod:`members.model.backbones`, with each application's own input scaling.
* ``article`` — the article's network exactly: 256×256×3 input, 16 "valid" convolutions
  with 8 batch norms, zero padding and two max pools, Flatten → Dense 32 → Dropout →
  Dense 32 → Dropout → Dense k (10,853,045 parameters with 5 classes).

Heads: ``softmax``, ``ordinal`` (cumulative link) and ``regression`` (one score, MSE on the
grade, probabilities by val-tuned soft cuts).

Inputs are raw pixels in [0, 255]; a ``Rescaling`` layer inside the model maps them to
[-1, 1], so a saved model predicts from decoded images directly. No ``Lambda`` layers:
every model loads with ``safe_mode=True``.
"""

from __future__ import annotations

import keras
from keras import layers

from members.model.spec import MemberSpec


def cumulative_probs(above):
    """Class probabilities (n, k) from ``P(y > j)`` (n, k-1): the differences, floored at 1e-7, rows summing to 1."""
    ops = keras.ops
    ones = ops.ones_like(above[:, :1])
    zeros = ops.zeros_like(above[:, :1])
    probs = ops.maximum(ops.concatenate([ones, above], axis=1) - ops.concatenate([above, zeros], axis=1), 1e-7)
    return probs / ops.sum(probs, axis=1, keepdims=True)


@keras.saving.register_keras_serializable(package="members")
class OrdinalHead(layers.Layer):
    """Cumulative-link (ordinal) output: one score and k-1 ordered cut points → k probabilities.

    ``P(y > j) = sigmoid(score - c_j)`` with ``c_0 < c_1 < …`` kept ordered by a softplus
    parametrisation; class probabilities are the differences, so they are non-negative and
    sum to one, and ordinary categorical cross-entropy is the ordinal likelihood.

    Example:
        >>> head = OrdinalHead(5)
        >>> tuple(head(keras.ops.zeros((2, 8))).shape)
        (2, 5)
    """

    def __init__(self, num_classes: int, kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.score = layers.Dense(1, kernel_regularizer=self.kernel_regularizer, dtype=self.dtype_policy, name="score")

    def build(self, input_shape):
        self.score.build(input_shape)
        k = self.num_classes
        self.first_cut = self.add_weight(name="first_cut", shape=(1,), initializer=keras.initializers.Constant(-(k - 2) / 2.0))
        self.gaps = self.add_weight(name="gaps", shape=(max(k - 2, 0),), initializer=keras.initializers.Constant(0.5413))

    def call(self, inputs):
        ops = keras.ops
        score = ops.cast(self.score(inputs), "float32")
        cuts = ops.concatenate([self.first_cut, self.first_cut + ops.cumsum(ops.softplus(self.gaps))])
        return cumulative_probs(ops.sigmoid(score - ops.expand_dims(cuts, 0)))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes,
                      kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer))
        return config


@keras.saving.register_keras_serializable(package="members")
class RegressionHead(layers.Layer):
    """One score per image, read as a grade; probabilities by soft cuts around it.

    ``P(y > j) = sigmoid((score - cut_j) / scale)`` with fixed (non-trainable) cuts, at first
    ``0.5, 1.5, …`` and scale 1, so the expected grade ``sum_j P(y > j)`` is a smooth, bounded
    read-out of the score that an MSE loss on the grade trains (:class:`ExpectedGradeLoss`).
    After training the cuts are tuned on val for QWK and the scale and the uniform mix for
    log-loss (:func:`members.model.regression.calibrate_head`); the saved model then outputs
    calibrated probabilities whose argmax is the grade the tuned cuts give. ``uniform_mix``
    adds the mix weight (``(1 - mix) * p + mix / k``, 0 until calibrated); a head saved without
    it (before the mix existed) loads without it.

    Example:
        >>> head = RegressionHead(5)
        >>> tuple(head(keras.ops.zeros((2, 8))).shape)
        (2, 5)
    """

    def __init__(self, num_classes: int, kernel_regularizer=None, uniform_mix: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.uniform_mix = bool(uniform_mix)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.score = layers.Dense(1, kernel_regularizer=self.kernel_regularizer, dtype=self.dtype_policy, name="score")

    def build(self, input_shape):
        self.score.build(input_shape)
        k = self.num_classes
        self.cuts = self.add_weight(name="cuts", shape=(k - 1,), trainable=False,
                                    initializer=keras.initializers.Constant([j + 0.5 for j in range(k - 1)]))
        self.scale = self.add_weight(name="scale", shape=(), trainable=False, initializer=keras.initializers.Constant(1.0))
        if self.uniform_mix:
            self.mix = self.add_weight(name="mix", shape=(), trainable=False, initializer=keras.initializers.Constant(0.0))

    def call(self, inputs):
        ops = keras.ops
        score = ops.cast(self.score(inputs), "float32")
        probs = cumulative_probs(ops.sigmoid((score - ops.expand_dims(self.cuts, 0)) / self.scale))
        if self.uniform_mix:
            probs = (1.0 - self.mix) * probs + self.mix / self.num_classes
        return probs

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, uniform_mix=self.uniform_mix,
                      kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer))
        return config


@keras.saving.register_keras_serializable(package="members")
class ExpectedGradeLoss(keras.losses.Loss):
    """MSE (or Huber) between the grade and the expected grade ``probs @ [0, 1, …, k-1]``.

    The regression head's training loss: a squared error on the grade, so a member is
    penalised by how far its grade is off (the quadratic weights of QWK), not only whether.
    """

    def __init__(self, kind: str = "mse", name: str = "expected_grade_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.kind = kind

    def call(self, y_true, y_pred):
        ops = keras.ops
        k = ops.shape(y_pred)[-1]
        grades = ops.cast(ops.arange(k), y_pred.dtype)
        expected = ops.sum(y_pred * grades, axis=-1)
        err = expected - ops.cast(ops.reshape(y_true, (-1,)), y_pred.dtype)
        if self.kind == "huber":
            a = ops.abs(err)
            return ops.where(a <= 1.0, 0.5 * err**2, a - 0.5)
        return err**2

    def get_config(self):
        return {**super().get_config(), "kind": self.kind}


def _head(x, spec: MemberSpec, num_classes: int, reg):
    if spec.head == "regression":
        return RegressionHead(num_classes, kernel_regularizer=reg, uniform_mix=True, dtype="float32",
                              name="regression_head")(x)
    if spec.head == "ordinal":
        return OrdinalHead(num_classes, kernel_regularizer=reg, dtype="float32", name="ordinal_head")(x)
    return layers.Dense(num_classes, activation="softmax", kernel_regularizer=reg, dtype="float32", name="probs")(x)


def _dense_stack(x, spec: MemberSpec, reg):
    for i in range(spec.dense_layers):
        x = layers.Dense(spec.dense_units, activation="relu", kernel_regularizer=reg, name=f"dense_{i + 1}")(x)
        if spec.dropout > 0:
            x = layers.Dropout(spec.dropout, name=f"dropout_{i + 1}")(x)
    return x


def build_convnet(spec: MemberSpec, num_classes: int, reg) -> keras.Model:
    """Depth × width family with a global-pooling (or Flatten) head."""
    size = None if spec.pooling != "flatten" else spec.input_size
    inputs = keras.Input(shape=(size, size, 3), name="image")
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="rescale")(inputs)
    for block in range(spec.depth):
        filters = min(spec.width * 2**block, spec.max_width)
        name = f"block{block + 1}"
        shortcut = x
        for conv in range(spec.convs_per_block):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=not spec.batch_norm,
                              kernel_regularizer=reg, name=f"{name}_conv{conv + 1}")(x)
            if spec.batch_norm:
                x = layers.BatchNormalization(name=f"{name}_bn{conv + 1}")(x)
            if spec.block == "residual" and conv == spec.convs_per_block - 1:
                break  # the last ReLU comes after the sum
            x = layers.ReLU(name=f"{name}_relu{conv + 1}")(x)
        if spec.block == "residual":  # x + shortcut (1x1-projected to the block's width), then ReLU
            shortcut = layers.Conv2D(filters, 1, use_bias=not spec.batch_norm, kernel_regularizer=reg,
                                     name=f"{name}_shortcut")(shortcut)
            if spec.batch_norm:
                shortcut = layers.BatchNormalization(name=f"{name}_shortcut_bn")(shortcut)
            x = layers.ReLU(name=f"{name}_relu_out")(layers.Add(name=f"{name}_add")([x, shortcut]))
        x = layers.MaxPooling2D(2, name=f"{name}_pool")(x)
    if spec.pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    elif spec.pooling == "avgmax":  # max keeps small sparse lesions that an average dilutes
        x = layers.Concatenate(name="global_pool")([layers.GlobalAveragePooling2D(name="global_avg")(x),
                                                    layers.GlobalMaxPooling2D(name="global_max")(x)])
    else:
        x = layers.Flatten(name="flatten")(x)
    if spec.dropout > 0:
        x = layers.Dropout(spec.dropout, name="dropout_features")(x)
    x = _dense_stack(x, spec, reg)
    return keras.Model(inputs, _head(x, spec, num_classes, reg), name="convnet")


# The article's stack: ("conv", filters, kernel) / ("bn",) / ("pad",) / ("pool",)
ARTICLE_LAYERS = (
    ("conv", 16, 3), ("conv", 16, 3), ("bn",), ("pad",),
    ("conv", 32, 3), ("conv", 32, 3), ("bn",),
    ("conv", 64, 3), ("conv", 64, 3), ("bn",), ("pool",), ("pad",),
    ("conv", 128, 3), ("conv", 128, 2), ("bn",),
    ("conv", 64, 3), ("conv", 64, 3), ("bn",),
    ("conv", 64, 3), ("conv", 64, 3), ("bn",), ("pool",),
    ("conv", 64, 3), ("conv", 64, 3), ("bn",),
    ("conv", 128, 3), ("conv", 128, 2), ("bn",),
)


def build_article(spec: MemberSpec, num_classes: int, reg) -> keras.Model:
    """The article's network (``../shared/article-model.txt``), Flatten head, fixed input size."""
    inputs = keras.Input(shape=(spec.input_size, spec.input_size, 3), name="image")
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="rescale")(inputs)
    for item in ARTICLE_LAYERS:
        if item[0] == "conv":
            x = layers.Conv2D(item[1], item[2], activation="relu", kernel_regularizer=reg)(x)
        elif item[0] == "bn":
            x = layers.BatchNormalization()(x)
        elif item[0] == "pad":
            x = layers.ZeroPadding2D(1)(x)
        else:
            x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten(name="flatten")(x)
    x = _dense_stack(x, spec, reg)
    return keras.Model(inputs, _head(x, spec, num_classes, reg), name="article")


def build_model(spec: MemberSpec, num_classes: int) -> keras.Model:
    """The uncompiled Keras model of ``spec`` for ``num_classes`` outputs.

    Example:
        >>> from members.model.spec import load_preset
        >>> build_model(load_preset("article"), 5).count_params()
        10853045
    """
    reg = keras.regularizers.L2(spec.l2) if spec.l2 > 0 else None
    if spec.is_backbone:
        from members.model.backbones import build_backbone

        return build_backbone(spec, num_classes, reg)
    if spec.architecture == "article":
        return build_article(spec, num_classes, reg)
    return build_convnet(spec, num_classes, reg)
