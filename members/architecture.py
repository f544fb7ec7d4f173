"""Build the Keras model of one member from its spec.

Two families:

* ``convnet`` — blocks of 3×3 convolutions (batch norm, ReLU) and 2×2 max pooling whose
  depth, width and convolutions per block come from the spec, then global average
  pooling (resolution-agnostic, so progressive resizing keeps the same weights) or
  Flatten, dense layers with dropout, and the head.
* ``article`` — the article's network exactly: 256×256×3 input, 16 "valid" convolutions
  with 8 batch norms, zero padding and two max pools, Flatten → Dense 32 → Dropout →
  Dense 32 → Dropout → Dense k (10,853,045 parameters with 5 classes).

Inputs are raw pixels in [0, 255]; a ``Rescaling`` layer inside the model maps them to
[-1, 1], so a saved model predicts from decoded images directly. No ``Lambda`` layers:
every model loads with ``safe_mode=True``.
"""

from __future__ import annotations

import keras
from keras import layers

from members.spec import MemberSpec


@keras.saving.register_keras_serializable(package="members")
class OrdinalHead(layers.Layer):
    """Cumulative-link (ordinal) output: one score and k-1 ordered cut points → k probabilities.

    ``P(y > j) = sigmoid(score - c_j)`` with ``c_0 < c_1 < …`` kept ordered by a softplus
    parametrisation; class probabilities are the differences, so they are non-negative and
    sum to one, and ordinary categorical cross-entropy is the ordinal likelihood.

    Example:
        >>> head = OrdinalHead(5)
        >>> head(keras.ops.zeros((2, 8))).shape
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
        above = ops.sigmoid(score - ops.expand_dims(cuts, 0))  # (n, k-1): P(y > j)
        ones = ops.ones_like(above[:, :1])
        zeros = ops.zeros_like(above[:, :1])
        upper = ops.concatenate([ones, above], axis=1)
        lower = ops.concatenate([above, zeros], axis=1)
        probs = ops.maximum(upper - lower, 1e-7)
        return probs / ops.sum(probs, axis=1, keepdims=True)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes,
                      kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer))
        return config


def _head(x, spec: MemberSpec, num_classes: int, reg):
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
        for conv in range(spec.convs_per_block):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=not spec.batch_norm,
                              kernel_regularizer=reg, name=f"block{block + 1}_conv{conv + 1}")(x)
            if spec.batch_norm:
                x = layers.BatchNormalization(name=f"block{block + 1}_bn{conv + 1}")(x)
            x = layers.ReLU(name=f"block{block + 1}_relu{conv + 1}")(x)
        x = layers.MaxPooling2D(2, name=f"block{block + 1}_pool")(x)
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
        >>> from members.spec import load_preset
        >>> build_model(load_preset("article"), 5).count_params()
        10853045
    """
    reg = keras.regularizers.L2(spec.l2) if spec.l2 > 0 else None
    if spec.architecture == "article":
        return build_article(spec, num_classes, reg)
    return build_convnet(spec, num_classes, reg)
