"""``import-member``: bring a model trained elsewhere, or just its val/test probabilities, into a workdir.

Either way the member gets the files every member has — ``val.npz``, ``test.npz`` (probs,
labels, row_ids, fingerprint of this workdir's split) and, last, ``metrics.json`` with an
``imported`` entry saying what it came from — so ``vote``, the report and ``predict`` treat
it like a trained one.

- A Keras 3 ``.keras`` model is loaded with ``safe_mode=True`` (no Lambda layers, no pickle; one
  saved by Keras 2, as its ``metadata.json`` says, is refused with the way to convert it),
  its square input size read from the model, its output checked on one image: one
  ``(batch, k)`` tensor with one unit per class of the workdir (a dict, several heads, a
  ``(batch, 1, 1, k)`` map or a squeezed ``(batch,)`` are refused with the fix, since ``predict``
  would get the same). It is run on the val and test images through the project's own image path
  (:func:`members.data.pipeline.make_dataset`: decode, centre crop, resize, RGB 0–255 — the
  model must do its own rescaling; a val or test image gone since ``prepare`` is named before
  anything is loaded) and copied to ``model.keras``. On a two-class workdir a one-unit sigmoid
  model (a sigmoid layer or op: the graph's last operation is read) is read as ``p`` of class 1, or
  of ``positive_class``: ``model.keras`` is then the same graph plus a fixed ``Dense`` layer giving
  ``[1 - p, p]`` (or ``[p, 1 - p]``), so ``predict`` and ``explain`` see what the import saw. A
  model of this toolkit's members says how its images are prepared (:mod:`members.model.stamp`, or
  the ``spec.toml`` beside it), and the import prepares them so. Which output is taken as which
  class is said on stderr; val figures far below chance are said to hint at another class order.
- Probability CSVs (one for val, one for test) have an image column (the first of
  :data:`IMAGE_COLUMNS`, any case) and one column per class (``prob_0..prob_{k-1}`` or the
  class names, any case; on a two-class workdir ``prob_1`` alone is read as ``[1 - p, p]``);
  the separator is a comma, or the ``;``, tab or ``|`` of the header (then ``0,25`` reads as a
  number too). Every row of the split must be there once; each name must resolve to one of
  its images (path, path without extension, or a unique file name, compared in Unicode NFC
  and any case; an absolute path, as ``predict --out`` writes, by its place under
  ``dataset.json``'s ``image_root``). Every value must lie in 0..1 and every row sum to 1
  within :data:`SUM_RENORMALISED` (rows off 1 are rescaled, with a note on stderr), and an
  optional ``fingerprint`` column must equal the workdir's. A member's own ``val.npz`` /
  ``test.npz`` of this split is taken instead of a CSV. Such a member has no model:
  ``predict`` refuses a combiner that uses it.

Example:
    >>> import_member("work", "effnet", model="effnet.keras")                          # doctest: +SKIP
    >>> import_member("work", "xgb", val_csv="xgb_val.csv", test_csv="xgb_test.csv")   # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import sys
import tempfile
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ensemble.constants import ROW_SUM_TOL
from members.infra import atomic
from members.infra.csvsafe import uncell
from members.infra.errors import UserError

IMAGE_COLUMNS = ("image", "path", "id_code", "image_id", "filename", "file", "name")
"""The image column of a probabilities CSV: the first of these names it has, in any case."""
SUM_RENORMALISED = 0.01
"""An imported probabilities row may sum to 1 within this (rounding); it is rescaled to sum to 1."""
SUM_SCORES = 0.1
"""A row further than this from 1 holds scores or logits, not probabilities (the message says so)."""
SUM_NOTED = 1e-6
"""Rows further than this from 1 are counted on stderr as renormalised (float noise is not)."""
KIND_MODEL, KIND_PROBS = "keras", "probabilities"
BATCH_SIZE = 32


MAX_INPUT_SIZE = 2048  # a square side; beyond it one image alone needs gigabytes


def import_member(workdir: str | os.PathLike, name: str, *, model: str | os.PathLike | None = None,
                  val_csv: str | os.PathLike | None = None, test_csv: str | os.PathLike | None = None,
                  input_size: int | None = None, force: bool = False, image_column: str | None = None,
                  positive_class: str | int | None = None) -> Path:
    """Add an outside member to ``workdir``; returns its folder.

    Args:
        workdir: a prepared workdir.
        name: the member's folder name under ``members/``.
        model: a Keras ``.keras`` file (case a).
        val_csv: val probabilities CSV (case b, with ``test_csv``).
        test_csv: test probabilities CSV.
        input_size: the input size for a model whose input size is not fixed.
        force: replace an existing member of that name.
        image_column: the CSVs' image column (any case); default: the first of :data:`IMAGE_COLUMNS` they have.
        positive_class: the class (name or index) whose probability a model's one sigmoid unit gives, on a
            two-class workdir (default: the second class).

    Raises:
        UserError: not exactly one source, an existing member without ``force``, val or test
            images gone since prepare (for a model), a model that does not load safely, has
            several outputs, an output that is not ``(batch, k)``, the wrong number of outputs, no
            square RGB input or no probabilities out, or a CSV with missing, extra, unknown or
            duplicated rows, wrong columns, values outside 0..1, or rows more than
            :data:`SUM_RENORMALISED` from 1.
    """
    from members.data.dataset import load_dataset
    from members.training.trainer import member_dir

    if model is not None and (val_csv is not None or test_csv is not None):
        raise UserError("Give either --model FILE.keras, or both --val-csv and --test-csv; not both kinds.")
    if model is None and val_csv is None and test_csv is None:
        raise UserError("Give the member to import: --model FILE.keras, or both --val-csv and --test-csv.")
    if model is None and None in (val_csv, test_csv):
        given, other = ("--val-csv", "--test-csv") if val_csv is not None else ("--test-csv", "--val-csv")
        raise UserError(f"{given} needs {other} too: a member imported as probabilities has both its val and its test "
                        f"rows; pass {other} FILE.csv as well.")
    from members.infra.validate import is_int

    if input_size is not None and (not is_int(input_size) or not 8 <= input_size <= MAX_INPUT_SIZE):
        raise UserError(f"--input-size must be a number of pixels from 8 to {MAX_INPUT_SIZE}; got {input_size!r}. "
                        "Pass the side the model was trained on, e.g. --input-size 224.")
    if input_size is not None and model is None:
        raise UserError("--input-size is the side of the images a --model takes; a member imported as probabilities "
                        "(--val-csv, --test-csv) has no input: leave --input-size out.")
    if positive_class is not None and model is None:
        raise UserError("--positive-class names the class whose probability a --model's one sigmoid unit gives; "
                        "probability CSVs name their classes by column (prob_0, prob_1 or the class names): leave "
                        "--positive-class out.")
    input_size = None if input_size is None else int(input_size)
    data = load_dataset(workdir)
    folder = member_dir(workdir, name, new=True)
    if model is not None:  # the model runs on these images: a missing one is named here, not by TensorFlow mid-way
        data.check_images(("val", "test"))
    existed = folder.exists()
    with tempfile.TemporaryDirectory() as tmp:
        if model is not None and not isinstance(model, (str, os.PathLike)):  # the Python API: a keras.Model object
            if not callable(getattr(model, "save", None)):
                raise UserError(f"model must be the path of a .keras file or a keras.Model; got a "
                                f"{type(model).__name__}.")
            if getattr(model, "built", True) is False:  # refused as a file is below, without Keras's save warning
                raise UserError("The keras.Model passed has no input shape (the model was never built); give it one "
                                "(keras.Input((h, w, 3)) as its first layer, or call it once on a batch), then import "
                                "it again.")
            try:
                model.save(Path(tmp) / "keras.Model object.keras")  # the name metrics.json shows
            except (ValueError, AttributeError, TypeError, NotImplementedError) as exc:
                raise UserError(f"The keras.Model passed cannot be saved as a .keras file ({exc}); give it an input "
                                "shape (keras.Input, or call it once on a batch) and register any custom layer with "
                                "keras.saving.register_keras_serializable, then import it again.") from None
            model = Path(tmp) / "keras.Model object.keras"
        temp = str(model) if isinstance(model, Path) and model.parent == Path(tmp) else None
        try:
            with _shown_as(temp, "the keras.Model passed"):  # its notes name the object, not the temp file
                _import_locked(folder, name, data, model=model, val_csv=val_csv, test_csv=test_csv,
                               input_size=input_size, force=force, image_column=image_column,
                               positive_class=positive_class)
        except UserError as exc:
            _drop_empty(folder, existed)
            if temp is not None:  # so does a refusal
                text = str(exc).replace(temp, "the keras.Model passed")
                raise UserError(text[:1].upper() + text[1:]) from None
            raise
        except BaseException:
            _drop_empty(folder, existed)
            raise
    return folder


class _shown_as:
    """Within the block, stderr shows ``name`` wherever ``text`` (a temporary file's path) is written; no-op for None."""

    def __init__(self, text: str | None, name: str):
        self.text, self.name, self.saved = text, name, None

    def write(self, data: str) -> int:
        return self.saved.write(data.replace(self.text, self.name))

    def __getattr__(self, attr):  # flush, isatty, encoding...: the real stream's
        return getattr(self.saved, attr)

    def __enter__(self):
        if self.text is not None:
            self.saved, sys.stderr = sys.stderr, self
        return self

    def __exit__(self, *exc) -> None:
        if self.text is not None:
            sys.stderr = self.saved


def _drop_empty(folder: Path, existed: bool) -> None:
    """A refused import leaves no empty member folder behind (vote would list it)."""
    if not existed and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def _import_locked(folder: Path, name: str, data, *, model, val_csv, test_csv, input_size, force, image_column,
                   positive_class) -> None:
    from members.infra.lock import MemberLock
    from members.infra.transaction import recover_dir

    with MemberLock(folder) as lock:  # as train-member: one run per member name at a time, imports included
        recover_dir(folder, complete="metrics.json")
        if not lock.path.exists():  # the recovered folder came without our lock
            lock.acquire()
        if _has_content(folder) and not force:
            raise UserError(f"Member {name!r} already exists in {folder.parent}; pass --force to replace it or choose "
                            "another --name.")
        if model is not None:
            probs, extra = _predict_with_model(Path(model), data, input_size, positive_class)
        else:
            probs = {split: read_probability_csv(csv_path, data, split, image_column=image_column)
                     for split, csv_path in (("val", val_csv), ("test", test_csv))}
            extra = {"imported": {"kind": KIND_PROBS, **{f"{s}_csv": str(Path(p).resolve()) for s, p in
                                                          (("val", val_csv), ("test", test_csv))},
                                  **{f"{s}_sha256": atomic.sha256_file(p) for s, p in
                                     (("val", val_csv), ("test", test_csv))}}}
            if _say_if_hard(list(probs.values()), f"{val_csv} and {test_csv}", model=False):
                extra["imported"]["output"] = HARD_LABELS
        replaced = (folder / "metrics.json").exists()  # a complete member, which this import replaces
        _write_member(folder, name, data, probs, extra)
    from members.scoring import member_headline
    from members.training.collapse import member_marks

    metrics = atomic.read_json(folder / "metrics.json")
    key, label = member_headline(metrics)
    test, majority = metrics.get("test") or {}, ((metrics.get("majority") or {}).get("test") or {}).get("accuracy")
    shown = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    marks = member_marks(metrics)  # COLLAPSED and the † below the majority class, in train-member's words
    print(f"Imported member {name!r} ({extra['imported']['kind']}) into {folder}: test accuracy "
          f"{shown(test.get('accuracy'))} (majority class {shown(majority)}), balanced accuracy "
          f"{shown(test.get('balanced_accuracy'))}, {label} {shown(test.get(key))}{'; ' + marks if marks else ''}.",
          file=sys.stderr)
    if replaced:
        from members.training.trainer import _say_if_voted

        _say_if_voted(folder.parent.parent, name, lambda line: print(line, file=sys.stderr))


# ---- case a: a Keras model ----------------------------------------------------------------
BUILT_IN_MODULES = ("keras", "members", "builtins", "numpy")  # classes every process of the toolkit can rebuild


def foreign_classes(path: Path) -> list[str]:
    """Classes of the archive's ``config.json`` from another module than Keras's and the toolkit's (custom code)."""
    import json

    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return []  # a damaged archive: load_model names the problem
    found: list[str] = []

    def walk(node) -> None:
        if isinstance(node, dict):
            module, registered = node.get("module"), node.get("registered_name")
            outside = isinstance(module, str) and module.split(".")[0] not in BUILT_IN_MODULES
            # a class registered in a script or notebook has no module, only its "package>Name"
            config = node.get("config")  # a registered function is saved as class "function", its name the config
            named = registered if node.get("class_name") != "function" or not isinstance(config, str) else config
            registered_elsewhere = isinstance(named, str) and ">" in named and not named.startswith("members>")
            if "class_name" in node and (outside or registered_elsewhere):
                found.append(str(named if registered_elsewhere else registered or f"{module}.{node['class_name']}"))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    return list(dict.fromkeys(found))


def saved_by(path: Path) -> str | None:
    """The Keras version in the archive's ``metadata.json`` (``"2.15.0"`` for Keras 2), or None when it has none."""
    import json

    try:
        with zipfile.ZipFile(path) as archive:
            version = json.loads(archive.read("metadata.json")).get("keras_version")
    except (OSError, KeyError, ValueError, AttributeError, zipfile.BadZipFile):
        return None  # no metadata (or damaged): load_model names the problem
    return version.strip() if isinstance(version, str) and version.strip() else None


def _load_keras(path: Path):
    import keras

    import members.model.architecture  # noqa: F401  (registers the project's custom layers for safe_mode)

    if not path.exists():
        raise UserError(f"{path} does not exist; pass the path of the model's .keras file.")
    if path.is_dir():
        kind = ("a TensorFlow SavedModel (model.export() or tf.saved_model.save) folder, which holds a graph but no "
                "Keras layers" if (path / "saved_model.pb").exists() else "a folder")
        raise UserError(f"{path} is {kind}; load the original Keras model and save it with model.save('name.keras'), "
                        "then pass that file.")
    name = path.name.casefold()
    if name.endswith(".weights.h5"):
        raise UserError(f"{path} holds weights only, no model; build the model in Python, call "
                        "model.load_weights(...) with this file and save it with model.save('name.keras').")
    if name.endswith((".h5", ".hdf5")):
        raise UserError(f"{path} is a legacy HDF5 model; convert it once in a session you trust with "
                        "keras.models.load_model(PATH).save('name.keras') and pass the .keras file.")
    if path.suffix.casefold() != ".keras":
        raise UserError(f"{path} is not a .keras file; save the model with model.save('name.keras') (Keras 3 "
                        "format) and pass that file.")
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path} is not a Keras 3 .keras archive (a .keras file is a zip archive; this one is not, "
                        "so it is another format renamed, or damaged); save the model again with model.save('name.keras').")
    version = saved_by(path)
    if version is not None and version.split(".")[0] in ("1", "2"):  # its config names tf_keras classes and arguments
        raise UserError(f"{path} was saved by Keras {version} (tf_keras, or tf.keras of TensorFlow 2.15 or older), "
                        "whose .keras files Keras 3 cannot read; convert it once in a session you trust: load it with "
                        "Keras 2 and save it as HDF5 (tf_keras.models.load_model(PATH).save('name.h5')), then "
                        "keras.models.load_model('name.h5').save('name.keras') with Keras 3, and pass that file.")
    foreign = foreign_classes(path)
    if foreign:  # registered in the caller's process, perhaps, but predict and vote load it in their own
        raise UserError(f"{path} uses {', '.join(repr(c) for c in foreign[:3])}, custom code (a layer, a subclassed "
                        "model or a function) that the toolkit's commands cannot rebuild: only built-in Keras layers "
                        "load in predict and vote; rebuild the model from built-in layers and save it again.")
    try:
        if path.suffix != ".keras":  # Keras reads the suffix in lower case only: load a copy named so
            with tempfile.TemporaryDirectory() as tmp:
                shutil.copyfile(path, Path(tmp) / "model.keras")
                return keras.saving.load_model(Path(tmp) / "model.keras", safe_mode=True, compile=False)
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # noqa: BLE001 (zip, config and deserialisation errors all mean the same here)
        text = " ".join(str(exc).split())
        if "Lambda" in text or "lambda" in text:
            raise UserError(f"{path} holds a Lambda layer, which safe_mode does not load (it would run code stored in "
                            "the file); rebuild the model with built-in layers (e.g. Rescaling instead of a Lambda) "
                            "and save it again.") from None
        custom = re.search(r"Could not locate (?:class|function) '([^']+)'", text)
        if custom:
            raise UserError(f"{path} uses {custom.group(1)!r}, custom code (a layer, a subclassed model or a function) "
                            "that safe loading cannot rebuild without running code; rebuild the model from built-in "
                            "Keras layers and save it again.") from None
        first = text.split(". ")[0][:200]
        raise UserError(f"{path} could not be loaded safely ({type(exc).__name__}: {first}); it must be a Keras 3 "
                        ".keras file without Lambda layers or custom code.") from None


def _input_size(model, path: Path, given: int | None) -> int:
    try:
        input_shape = model.input_shape
    except (AttributeError, ValueError):  # a Sequential never built nor called
        raise UserError(f"{path} has no input shape (the model was never built); give it one (keras.Input((h, w, 3)) "
                        "first, or call it once on a batch of images) and save it again.") from None
    shape = tuple(input_shape) if not isinstance(input_shape, list) else None
    if shape is not None and len(shape) == 4 and shape[-1] == 1:
        raise UserError(f"{path} takes one-channel (grey) images {input_shape}; the project feeds RGB: put a "
                        "fixed grey conversion in front (inputs = keras.Input((h, w, 3)); a Dense(1, use_bias=False) "
                        "on the channels with weights [[0.299], [0.587], [0.114]], trainable=False; then the model) "
                        "and save that.")
    if shape is None or len(shape) != 4 or shape[-1] != 3:
        raise UserError(f"{path} takes input {input_shape}; an imported model needs one RGB image input "
                        "(batch, height, width, 3).")
    h, w = shape[1], shape[2]
    if h is None or w is None:
        if given is None:
            raise UserError(f"{path} accepts any image size; pass --input-size N to say which one to feed it.")
        return int(given)
    if h != w:
        raise UserError(f"{path} takes {h}x{w} images; the project's image path makes square images: re-export "
                        "the model with a square input.")
    if given is not None and given != h:
        raise UserError(f"{path} takes {h} px images, not --input-size {given}; drop --input-size.")
    return int(h)


def _shape_text(shape) -> str:
    """A shape as Python writes the tuple: ``(None, 1, 1, 5)``, and ``(None,)`` for one dimension."""
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _check_output(model, path: Path, size: int, classes: int) -> int:
    """The number of output units, after refusing an output ``predict`` could not use as it is
    (``classes``: the workdir's, for the fix of a one-value-per-image output).

    One zero image is run through the model: ``predict`` (and ``explain``) call it the same way,
    so what passes here is exactly what they get — one ``(batch, k)`` tensor, not a dict, a list
    or a ``(batch, 1, 1, k)`` map.
    """
    from members.infra.quiet import library_warnings_off

    try:
        with library_warnings_off():  # Keras's warning (a softmax over one unit, say) would come before our sentence
            out = model(np.zeros((1, size, size, 3), np.float32), training=False)
    except Exception as exc:  # noqa: BLE001 (any failure here is the model's: the same call predict makes)
        first = " ".join(str(exc).split()).split(". ")[0][:200]
        raise UserError(f"{path} fails on a {size}x{size} RGB image ({type(exc).__name__}: {first}); it must "
                        "take a batch of float32 RGB pixels (batch, height, width, 3) and return probabilities.") from None
    if isinstance(out, (dict, list, tuple)):
        names = [str(n) for n in out] if isinstance(out, dict) else list(getattr(model, "output_names", None) or [])
        named = f" ({', '.join(names)})" if len(names) == len(out) else ""
        if len(out) > 1:
            raise UserError(f"{path} has {len(out)} outputs{named}; save a model with the grade head alone "
                            "(keras.Model(model.inputs, model.get_layer(NAME).output)) and import that.")
        raise UserError(f"{path} returns its output in a {'dict' if isinstance(out, dict) else 'list'}{named}, "
                        "not as one tensor; save keras.Model(model.inputs, model.outputs[0]) so that it returns the "
                        "probabilities themselves.")
    shape = (None, *tuple(out.shape)[1:])
    if len(shape) == 1:  # one value per image: a squeezed Dense(1); Reshape((None,)) is no layer Keras builds
        fix = ("if it is p of class 1, end the model with Dense(1, activation='sigmoid') without squeezing that "
               "output (or add keras.layers.Reshape((1,)) after its last layer)" if classes == 2 else
               f"end the model with Dense({classes}, activation='softmax'), one probability per class")
        raise UserError(f"{path} outputs shape {_shape_text(shape)}, one value per image, not (batch, classes); {fix}, "
                        "and save it again.")
    if len(shape) != 2:
        extra, k = shape[1:-1], shape[-1]
        if all(d == 1 for d in extra):
            raise UserError(f"{path} outputs shape {_shape_text(shape)}, not (batch, classes); add a Flatten layer "
                            f"(or keras.layers.Reshape(({k},))) after its last layer and save it again.")
        raise UserError(f"{path} outputs shape {_shape_text(shape)}, not one probability per class (batch, "
                        "classes); end the model with a pooling layer and a softmax Dense layer with one unit per "
                        "class, and save it again.")
    return int(shape[1])


PASS_THROUGH = ("Reshape", "Flatten", "Identity", "Dropout", "Squeeze", "ExpandDims", "Cast")
"""Layers and ops (class names) that move or retype values but change none: looked through, never an activation."""
ACTIVATIONS = {"Sigmoid": "sigmoid", "HardSigmoid": "hard_sigmoid", "LogSigmoid": "log_sigmoid", "Softmax": "softmax",
               "LogSoftmax": "log_softmax", "Relu": "relu", "ReLU": "relu", "Relu6": "relu6", "LeakyRelu": "leaky_relu",
               "LeakyReLU": "leaky_relu", "Elu": "elu", "ELU": "elu", "PReLU": "prelu", "Selu": "selu", "Gelu": "gelu",
               "Silu": "silu", "Softplus": "softplus", "Softsign": "softsign", "Tanh": "tanh"}
"""Activation layers without an ``activation`` attribute (``Softmax``, ``ReLU``) and ops (``keras.ops.sigmoid``,
``keras.activations.sigmoid`` on a tensor), by class name: the activation each applies."""


def _graph_inputs(tensor) -> tuple[object, list] | None:
    """``(operation, its input tensors)`` that made a symbolic tensor of a functional graph, or None (not known).

    ``model.layers`` lists layers only: an op (``keras.ops.sigmoid(x)``, ``x / 127.5``) is seen
    through the graph's history alone.
    """
    history = getattr(tensor, "_keras_history", None)
    try:
        operation = history.operation
        return operation, list(operation._inbound_nodes[history.node_index].input_tensors)
    except (AttributeError, IndexError, TypeError):
        return None


def _output_activation(model) -> str | None:
    """The activation that makes the model's (first) output — an ``activation=`` of its last layer, an
    ``Activation``/``Softmax`` layer or an op such as ``keras.ops.sigmoid`` — looked up through layers and ops
    that only reshape (:data:`PASS_THROUGH`) and into a nested model; None when the graph does not say."""
    tensor = (getattr(model, "outputs", None) or [None])[0]
    for _ in range(1000):  # a graph is finite; the bound only guards against a cycle in a damaged one
        made = _graph_inputs(tensor)
        if made is None:
            return None
        operation, inputs = made
        activation = getattr(getattr(operation, "activation", None), "__name__", None)
        name = type(operation).__name__
        if activation is not None and not (name == "Activation" and activation == "linear"):
            return activation
        if name in ACTIVATIONS:
            return ACTIVATIONS[name]
        inner = getattr(operation, "outputs", None)
        if inner:  # a nested model: its own output
            tensor = inner[getattr(tensor._keras_history, "tensor_index", 0)]
        elif (name in PASS_THROUGH or activation == "linear") and len(inputs) == 1:
            tensor = inputs[0]
        else:
            return None
    return None


def _pair(positive: int) -> str:
    """The two probabilities a one-unit sigmoid ``p`` of class ``positive`` (0 or 1) becomes, in class order."""
    return "[1 - p, p]" if positive == 1 else "[p, 1 - p]"


def _sigmoid_as_two_classes(model, path: Path, positive: int = 1, name: str = "1"):
    """A one-unit sigmoid model (``p`` of class ``positive``, called ``name``) as a two-class one: the same graph
    plus a fixed layer ``p -> [1 - p, p]`` (``[p, 1 - p]`` when ``p`` is class 0's).

    The extra layer is a plain ``Dense`` (kernel ``[[-1, 1]]``, bias ``[1, 0]``, or their mirror; not
    trainable), so the saved ``model.keras`` loads with ``safe_mode`` and ``predict``/``explain`` see two
    probabilities per image, as the import did.
    """
    import keras

    refuse = (f"{path} has one sigmoid output (p of class {name}) that could not be turned into two; this toolkit "
              f"needs one probability per class: add a layer that outputs {_pair(positive)} (e.g. "
              "keras.layers.Concatenate()([1 - p, p])) and save again.")
    activation = _output_activation(model)  # an op's too (model.layers lists no op): keras.ops.sigmoid(Dense(1)(x))
    if activation is not None and activation != "sigmoid":
        raise UserError(f"{path} has one output unit with a {activation!r} activation, so it is not p of class "
                        f"{name}; end the model with Dense(1, activation='sigmoid') (or a softmax with one unit per "
                        "class) and save it again.")
    kernel, bias = ([[-1.0, 1.0]], [1.0, 0.0]) if positive == 1 else ([[1.0, -1.0]], [0.0, 1.0])
    try:
        to_two = keras.layers.Dense(2, name="sigmoid_to_two_classes", trainable=False, dtype="float32")
        out = to_two(model.outputs[0])
        to_two.set_weights([np.array(kernel, np.float32), np.array(bias, np.float32)])
        inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs  # called with one tensor, as predict does
        return keras.Model(inputs, out, name=model.name)
    except Exception:  # noqa: BLE001 (a graph that cannot be extended: the user adds the layer)
        raise UserError(refuse) from None


def _predict_with_model(path: Path, data, given_size: int | None, positive_class: str | int | None = None):
    from members.data.pipeline import make_dataset
    from members.infra.quiet import library_warnings_off
    from members.training.loop import ImageReadError, floored, model_outputs, name_unreadable

    model = _load_keras(path)
    source = _source_member(path, model)
    if given_size is None and source is not None and source.size is not None and None in tuple(model.input_shape)[1:3]:
        given_size = source.size  # a member of this toolkit: it says the size it was trained at
    size = _input_size(model, path, given_size)
    prep = source.spec.preprocessing if source is not None else "none"
    crop = bool(source.spec.fundus_crop) if source is not None else False
    outputs, k = _check_output(model, path, size, data.num_classes), data.num_classes
    names = [str(c) for c in data.class_names]
    sigmoid = outputs == 1 and k == 2
    if outputs == 1 and k > 2:
        if _output_activation(model) == "sigmoid":
            raise UserError(f"{path} has one sigmoid output unit, the probability of one class, which fits a two-class "
                            f"task only; this workdir has {k} classes ({', '.join(names)}): end the model with "
                            f"Dense({k}, activation='softmax'), one probability per class, or import it into a "
                            "two-class workdir.")
        raise UserError(f"{path} has one output unit, a grade score (a regression head), not one probability per "
                        f"class; this workdir has {k} classes: end the model with Dense({k}, activation='softmax'), or "
                        "cut its scores into grade probabilities yourself and import them as --val-csv/--test-csv.")
    if outputs != k and not sigmoid:
        raise UserError(f"{path} has {outputs} output{'s' if outputs != 1 else ''} but this workdir has {k} classes "
                        f"({', '.join(map(str, data.classes))}); import a model trained on these classes.")
    order = ", ".join(f"{j} = {n}" for j, n in enumerate(names))
    if positive_class is not None and not sigmoid:
        raise UserError(f"--positive-class names the class whose probability a model's one sigmoid unit gives; {path} "
                        f"has {outputs} outputs, one per class, read in this workdir's class order ({order}): leave "
                        "--positive-class out, and if the model orders its classes otherwise, prepare the workdir "
                        "with --classes in the model's order.")
    if source is not None:
        source.check_classes(path, data)
    _say_if_unscaled(model, path)
    positive = None
    if sigmoid:
        from ensemble.referable import positive_index

        positive = positive_index(names, positive_class)
        model = _sigmoid_as_two_classes(model, path, positive, names[positive])
        with tempfile.TemporaryDirectory() as tmp:  # the model predict will load: the import's own graph
            model.save(Path(tmp) / "model.keras")
            model_bytes = (Path(tmp) / "model.keras").read_bytes()
        how = ("as --positive-class says" if positive_class is not None else
               f"this workdir's second class; if the unit gives {names[1 - positive]}'s, pass --positive-class "
               f"{names[1 - positive]}")
        assumed = (f"{path} has one sigmoid output: it is read as p of class {names[positive]} ({how}) and the "
                   f"member's model.keras ends in a fixed layer giving {_pair(positive)} (classes {', '.join(names)}).")
    else:
        model_bytes = path.read_bytes()
        listed = f"classes 0..{k - 1} in that order" if names == [str(j) for j in range(k)] else \
            f"this workdir's classes in its order ({order})"
        assumed = (f"{path}: its {k} outputs are read as {listed}; if the model orders its classes otherwise, "
                   "prepare the workdir with --classes in the model's order.")
    probs, raws = {}, []
    for split in ("val", "test"):
        rows = data.rows(split)
        ds = make_dataset(data.absolute_paths(split), rows["label"].to_numpy(np.int64), size=size,
                          batch_size=BATCH_SIZE, training=False, cache="none", preprocessing=prep, fundus_crop=crop)
        try:
            with library_warnings_off():
                raw = model_outputs(model, ds.map(lambda x, *rest: x)).reshape(len(rows), k)
        except ImageReadError as exc:  # an image changed after prepare: named, as train-member names it
            raise name_unreadable(exc, data.absolute_paths(split), then="import the model again") from None
        _refuse_non_finite(raw, path, split, data.absolute_paths(split))
        if sigmoid and len(raw) and raw.min() < 0:
            p = raw[:, positive]
            worst = p[np.argmax(np.abs(p - 0.5))]
            raise UserError(f"{path}'s one output takes values outside 0..1 on the {split} images (e.g. {worst:.4g}), "
                            f"so it is not p of class {names[positive]}; end the model with a sigmoid and save it "
                            "again.")
        _check_model_outputs(raw, path, split, data.absolute_paths(split))
        raws.append(raw)
        probs[split] = floored(raw)  # as predict will compute them (a 1e-18 became 1e-7 there, and a calibrated
        # combiner's referable calls on the very test images differed from vote's)
    print(assumed, file=sys.stderr)  # once the outputs passed: a refused model gets its one sentence alone
    if len(probs["val"]) > 1 and float(probs["val"].std(axis=0).max()) < 1e-4:
        same = np.array2string(probs["val"][0], precision=3)
        print(f"Warning: {path} gives every val image the same probabilities ({same}): its output does not depend "
              "on the image (an untrained model, or input it cannot see, e.g. scaled wrongly); vote will find it "
              "collapsed.", file=sys.stderr)
    imported = {"kind": KIND_MODEL, "source": "keras.Model object (Python API)" if path.name == "keras.Model object.keras"
                else str(path.resolve()), "source_sha256": atomic.sha256_file(path)}
    if sigmoid:
        imported["output"] = (f"one sigmoid unit p of class {names[positive]}, saved with a fixed layer giving "
                              f"{_pair(positive)}")
        imported["positive_class"] = names[positive]
    if _say_if_hard(raws, str(path), model=True):
        imported["output"] = HARD_LABELS
    extra = {"imported": imported, "input_size": size, "_model": model_bytes}
    if source is not None:  # predict and explain prepare its images as it was trained: the member's spec.toml
        imported["source_member"] = source.where
        extra["_spec"] = source.spec_bytes
    return probs, extra


@dataclass(frozen=True)
class _Source:
    """What a model of this toolkit says of itself: the member's spec (its ``preprocessing`` and ``fundus_crop``
    run before the model), the spec's bytes (copied as the import's ``spec.toml``), its input size and classes."""

    spec: object
    spec_bytes: bytes
    size: int | None
    classes: list | None
    where: str  # the member folder, or the model file whose stamp told
    told_by: str  # "its spec.toml" or "the model file itself"

    @classmethod
    def of(cls, spec, spec_bytes: bytes, size, classes, *, where: str, told_by: str) -> "_Source":
        """A source whose recorded ``size`` and ``classes`` are kept only when they are what they should be."""
        return cls(spec=spec, spec_bytes=spec_bytes,
                   size=size if isinstance(size, int) and not isinstance(size, bool) else None,
                   classes=classes if isinstance(classes, list) else None, where=where, told_by=told_by)

    def check_classes(self, path: Path, data) -> None:
        """Refuse a member trained on this workdir's classes in another order: its outputs would be misread."""
        mine = [str(c) for c in data.classes]
        theirs = [str(c) for c in self.classes or []]
        if theirs != mine and sorted(theirs) == sorted(mine):
            raise UserError(f"{path} is a member of this toolkit trained with its classes in the order "
                            f"{', '.join(theirs)}, and this workdir orders them {', '.join(mine)}, so its outputs "
                            "would be read as other classes; import it into a workdir prepared with --classes "
                            f"{','.join(theirs)}.")


def _source_member(path: Path, model=None) -> _Source | None:
    """What ``path`` says it is when it is the ``model.keras`` of a member of this toolkit — the stamp in the archive
    (:mod:`members.model.stamp`), else ``spec.toml`` and ``metrics.json`` beside it — or None: the member's
    preprocessing and fundus crop run before its model, so an import has to run them too. A copy of an older
    member (no stamp, no ``spec.toml`` beside it) that ``model`` shows to be one of ours gets a warning instead."""
    from members.model.stamp import read_stamp

    stamp = read_stamp(path)
    if stamp is not None:
        source = _stamped_source(path, stamp)
    else:
        source = _folder_source(path)
    if source is None:
        if stamp is None and model is not None and _looks_like_member(model):
            print(f"Warning: {path} looks like the model.keras of a member of this toolkit saved before models "
                  "recorded their spec (its layers bear our names) and has no spec.toml beside it, so if it was "
                  "trained with preprocessing = \"ben\" or fundus_crop = true its images are not prepared so here "
                  "and its probabilities differ from its own; import it from its member folder, or put its spec.toml "
                  "and metrics.json beside it.", file=sys.stderr)
        return None
    if source.spec.preprocessing != "none" or source.spec.fundus_crop:
        print(f"{path} is a member of this toolkit trained with preprocessing = {source.spec.preprocessing!r} and "
              f"fundus_crop = {str(source.spec.fundus_crop).lower()} (as {source.told_by} says): its images are "
              "prepared so for the import, predict and explain (its spec is copied as spec.toml).", file=sys.stderr)
    return source


def _stamped_source(path: Path, stamp: dict) -> _Source | None:
    """The :class:`_Source` of a stamped model file; a spec this version cannot read gets a warning and None."""
    import tomllib

    from members.model.spec import load_spec_text

    text = stamp["spec_toml"]
    try:
        spec = load_spec_text(text, str(path))
    except UserError as exc:
        try:
            told = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            told = {}
        steps = f"preprocessing = {told.get('preprocessing', '?')!r}, fundus_crop = {told.get('fundus_crop', '?')}"
        print(f"Warning: {path} is a member of this toolkit ({steps}) whose recorded spec this version cannot read "
              f"({' '.join(str(exc).split())[:160]}), so its images are not prepared as it was trained and its "
              "probabilities may differ from its own; import it with the toolkit version that trained it.",
              file=sys.stderr)
        return None
    folder = (path.parent / "spec.toml").is_file() and (path.parent / "metrics.json").is_file()
    return _Source.of(spec, text.encode("utf-8"), stamp.get("input_size"), stamp.get("classes"),
                      where=str((path.parent if folder else path).resolve()), told_by="the model file itself")


def _folder_source(path: Path) -> _Source | None:
    """The :class:`_Source` of a member folder's ``model.keras`` (``spec.toml`` and ``metrics.json`` beside it)."""
    from members.infra.atomic import read_json
    from members.model.spec import load_spec_file

    spec_path, metrics_path = path.parent / "spec.toml", path.parent / "metrics.json"
    if not (spec_path.is_file() and metrics_path.is_file()):
        return None
    try:
        spec, metrics = load_spec_file(spec_path), read_json(metrics_path)
        spec_bytes = spec_path.read_bytes()
    except (OSError, ValueError, UserError):
        return None
    metrics = metrics if isinstance(metrics, dict) else {}
    return _Source.of(spec, spec_bytes, metrics.get("input_size"), metrics.get("classes"),
                      where=str(path.parent.resolve()), told_by="its spec.toml")


MEMBER_INPUT, MEMBER_HEADS = "image", ("probs", "ordinal_head", "regression_head")
"""The names this toolkit gives a member's input layer and its head (:mod:`members.model.architecture`)."""


def _looks_like_member(model) -> bool:
    """Whether a model bears the layer names of this toolkit's members: an input ``image``, a head among
    :data:`MEMBER_HEADS`."""
    try:
        inputs = [t.name for t in model.inputs]
        last = model.layers[-1].name
    except (AttributeError, IndexError, TypeError, ValueError):
        return False
    return inputs == [MEMBER_INPUT] and last in MEMBER_HEADS


# ---- case b: probability CSVs -------------------------------------------------------------
def _nfc(text: str) -> str:
    """One spelling per name: composed accents (NFC), as prepare compares names (macOS keeps NFD on disk)."""
    return unicodedata.normalize("NFC", text)


def _keys(paths: list[str]) -> tuple[dict[str, int], dict[str, int]]:
    """``(exact, folded)``: every spelling that names exactly one row — the path, without extension, the file
    name, without extension — in NFC, as it is and case-folded (a spelling two rows share names neither)."""
    exact: dict[str, int] = {}
    folded: dict[str, int] = {}
    for table, fold in ((exact, False), (folded, True)):
        ambiguous: set[str] = set()
        for i, p in enumerate(paths):
            p = _nfc(p)
            base = p.rsplit("/", 1)[-1]
            for key in {p, os.path.splitext(p)[0], base, os.path.splitext(base)[0]}:
                key = key.casefold() if fold else key
                if key in table and table[key] != i:
                    ambiguous.add(key)
                table.setdefault(key, i)
        for key in ambiguous:
            del table[key]
    return exact, folded


def _under_root(cell: str, roots: list[str]) -> str | None:
    """The path relative to the image root (POSIX, NFC) of an absolute (or working-folder) path inside it, else None.

    ``predict --out`` writes the paths it was given, usually absolute: they name split rows by
    their place under ``dataset.json``'s ``image_root``, as ``prepare`` reads absolute names.
    """
    for spelling in {os.path.abspath(cell), os.path.realpath(cell)}:
        spelling = _nfc(spelling)
        for root in roots:
            if spelling.startswith(root + os.sep):
                return Path(os.path.relpath(spelling, root)).as_posix()
    return None


def _from_root(cell: str, roots: list[str], exact: dict[str, int]) -> int | None:
    inside = _under_root(cell, roots)
    return None if inside is None else exact.get(inside)


def _other_split(cell: str, others: dict[str, tuple[dict, dict]], roots: list[str]) -> str | None:
    """The other split (``others``: its :func:`_keys`, built once per CSV) whose image a CSV row names, or ``None``."""
    inside = _under_root(cell, roots) if cell else None
    for other, (exact, folded) in others.items():
        if any(key is not None and (key in exact or key.casefold() in folded) for key in (cell, inside)):
            return other
    return None


def _where_else(cell: str, data, split: str, roots: list[str]) -> str:
    """Why a CSV row's image is not one of ``split``'s: outside the image root (a copy?), or unknown."""
    base = cell.replace("\\", "/").rsplit("/", 1)[-1]
    exact, folded = _keys(data.rows(split)["path"].tolist())
    if base != cell and (base in exact or base.casefold() in folded):  # a copy elsewhere: never matched by name alone
        return (f"is not under the image root {data.image_root}, though its file name is a {split} image's (a copy "
                "elsewhere?); write the bare file name or the path under the image root, so that no other picture "
                "of that name is taken for it")
    return f"is not one of this workdir's {len(data.rows(split))} {split} images (see split.csv)"


def _find(header: list[str], alternatives: list[str]) -> int | None:
    """The column of the first of ``alternatives`` in ``header``: exact spelling first, then ignoring case."""
    for fold in (False, True):
        cells = [_nfc(h).casefold() if fold else h for h in header]
        for name in alternatives:
            key = _nfc(name).casefold() if fold else name
            if key in cells:
                return cells.index(key)
    return None


def _read_records(path: Path, split: str) -> tuple[list[list[str]], str]:
    """The CSV's records and its separator: a comma, or the ``;``, tab or ``|`` its header uses instead."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            text = f.read()
    except UnicodeDecodeError as exc:
        raise UserError(f"{path} is not a UTF-8 CSV file ({exc}); save it as CSV (UTF-8) with a header "
                        f"`image,prob_0,...` and one row per {split} image.") from None
    from members.data.labels import header_delimiter

    sep = header_delimiter(text)
    try:
        return list(csv.reader(io.StringIO(text, newline=""), delimiter=sep)), sep
    except csv.Error as exc:
        raise UserError(f"{path} is not a readable CSV file ({exc}); save it as CSV and try again.") from None


def read_probability_csv(path: str | os.PathLike, data, split: str, *, image_column: str | None = None) -> np.ndarray:
    """The ``(n, k)`` probabilities of ``split``'s rows, in ``split.csv`` order, from a CSV keyed by image.

    A member's own ``val.npz``/``test.npz`` of this split (same fingerprint) is read as well.

    Raises:
        UserError: see :func:`import_member`.
    """
    path = Path(path)
    option = f"--{split}-csv"
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise UserError(f"{split} probabilities file {path} {what}; pass a CSV with an image column and one "
                        "column per class.")
    if path.suffix.casefold() == ".npz" or zipfile.is_zipfile(path):
        return _read_member_npz(path, data, split)
    records, sep = _read_records(path, split)
    if not records or not any(c.strip() for c in records[0]):
        raise UserError(f"{path} is empty; expected a header `image,prob_0,...` and one row per {split} image.")
    header = [_nfc(h.strip()) for h in records[0]]
    image_col = _find(header, [image_column.strip()] if image_column else list(IMAGE_COLUMNS))
    if image_col is None and image_column:
        raise UserError(f"{path} has no column {image_column.strip()!r} (the image column asked for); its columns are "
                        f"{', '.join(header)}: name one of them.")
    k, names = data.num_classes, data.class_names
    cols = [_find(header, [f"prob_{j}", names[j]]) for j in range(k)]
    one_column = k == 2 and cols[0] is None and cols[1] is not None  # only p of class 1: read as [1 - p, p]
    if image_col is None or (None in cols and not one_column):
        raise UserError(f"{path} must have an image column ({', '.join(IMAGE_COLUMNS)}) and one column per class "
                        f"({', '.join(f'prob_{j}' for j in range(k))} or {', '.join(names)}; any case); its columns "
                        f"are {', '.join(header)}.")
    extra = [h for h in header if re.fullmatch(r"prob_(\d+)", h.casefold()) and int(h[5:]) >= k]
    if extra:  # another task's classes: dropping the column would renormalise the rest without a word
        raise UserError(f"{path} has probability columns for more classes than the workdir's {k} "
                        f"({', '.join(extra)} beyond prob_{k - 1}): it belongs to a task with other classes; pass the "
                        f"probabilities of this workdir's classes ({', '.join(map(str, names))}).")
    fp_col = _find(header, ["fingerprint"])
    note_col = _find(header, ["note"])  # predict's CSV: an input it could not read has a row with no probabilities
    rows = data.rows(split)
    exact, folded = _keys(rows["path"].tolist())
    roots = list(dict.fromkeys(_nfc(os.path.abspath(r)) for r in (data.image_root, os.path.realpath(data.image_root))))
    probs = np.full((len(rows), k), np.nan)
    lines = np.zeros(len(rows), dtype=np.int64)
    ungraded: dict[str, str] = {}  # predict's rows for unreadable inputs: named when their image is missing
    others: dict[str, int] = {}  # rows of the workdir's other splits, passed over
    other_keys: dict[str, tuple[dict, dict]] | None = None
    for line, rec in enumerate(records[1:], start=2):
        if not any(c.strip() for c in rec):
            continue
        if note_col is not None and note_col < len(rec) and rec[note_col].startswith("not graded"):
            ungraded[_nfc(rec[image_col].strip()) if image_col < len(rec) else ""] = rec[note_col]
            continue
        cell = _nfc(rec[image_col].strip()) if image_col < len(rec) else ""
        cell = uncell(cell)  # the quote our own CSVs put before a name a spreadsheet would run as a formula
        i = exact.get(cell, folded.get(cell.casefold()))
        if i is None and cell:
            inside = _under_root(cell, roots)
            i = None if inside is None else exact.get(inside, folded.get(inside.casefold()))
        if i is None:
            if other_keys is None:  # the other splits' names, built on the first row that needs them
                other_keys = {o: _keys(data.rows(o)["path"].tolist()) for o in ("train", "val", "test") if o != split}
            other = _other_split(cell, other_keys, roots)
            if other is not None:  # one predictions CSV over every image serves --val-csv and --test-csv alike
                others[other] = others.get(other, 0) + 1
                continue
            raise UserError(f"{path} line {line} names {cell!r}, which {_where_else(cell, data, split, roots)}; give "
                            f"the {split} rows of this workdir only.")
        if lines[i]:
            raise UserError(f"{path} lists {cell!r} twice (lines {lines[i]} and {line}); give each {split} image once.")
        if fp_col is not None and fp_col < len(rec) and rec[fp_col].strip() not in ("", data.fingerprint):
            raise UserError(f"{path} line {line} has fingerprint {rec[fp_col].strip()[:12]}..., not this workdir's "
                            f"{data.fingerprint[:12]}...; these probabilities belong to another split.")
        try:
            values = [_number(rec[c], sep) for c in cols if c is not None]
        except (ValueError, IndexError):
            raise UserError(f"{path} line {line} ({cell!r}) has a missing or non-numeric probability; give one number "
                            "per class.") from None
        probs[i] = [1.0 - values[0], values[0]] if one_column else values
        lines[i] = line
    if not lines.all():
        first = int(np.flatnonzero(lines == 0)[0])
        missing = rows["path"].iloc[first]

        def row_of(cell: str) -> int | None:
            i = exact.get(cell, folded.get(cell.casefold()))
            return i if i is not None else _from_root(cell, roots, exact)

        why = next((note for cell, note in ungraded.items() if cell and row_of(cell) == first), None)
        detail = f" (its row says {why!r}: the model gave it no probabilities)" if why else ""
        if not lines.any() and others:
            detail = (f" (it holds {', '.join(f'{n} {o}' for o, n in others.items())} rows instead: "
                      "--val-csv and --test-csv swapped?)")
        raise UserError(f"{path} lacks {int((lines == 0).sum())} of the {len(rows)} {split} images, e.g. "
                        f"{missing!r}{detail}; give a row with probabilities for every {split} image of split.csv.")
    if others:
        print(f"{path}: passed over its {' and '.join(f'{n} {o}' for o, n in others.items())} rows (images of this "
              f"workdir's other splits), read its {len(rows)} {split} rows.", file=sys.stderr)
    where = [f"line {n} ({_nfc(p)!r})" for n, p in zip(lines, rows["path"])]
    if one_column:
        p1 = probs[:, 1]
        bad = np.flatnonzero(~np.isfinite(p1) | (p1 < 0) | (p1 > 1))
        if len(bad):
            raise UserError(f"{path} {where[bad[0]]} gives {p1[bad[0]]:g} for class {names[1]}, not a probability "
                            "between 0 and 1; give probabilities (e.g. a sigmoid), not scores or logits.")
        print(f"{path} has one probability column ({header[cols[1]]}): read as p of class {names[1]}, and 1 - p as "
              f"class {names[0]}'s.", file=sys.stderr)
    return _renormalised(probs, path, split, where)


def _number(text: str, sep: str) -> float:
    """A probability cell; with a ``;``, tab or ``|`` separator a decimal comma (``0,25``) is read too."""
    text = text.strip()
    return float(text.replace(",", ".") if sep != "," and text.count(",") == 1 and "." not in text else text)


def _read_member_npz(path: Path, data, split: str) -> np.ndarray:
    """A member's ``{split}.npz`` (``probs``, ``row_ids``, ``fingerprint``) of this workdir's split, in split order."""
    arrays = atomic.load_npz(path)
    if not {"probs", "row_ids", "fingerprint"} <= set(arrays):
        raise UserError(f"{path} is an .npz file but not a member's {split}.npz (it lacks probs, row_ids or "
                        f"fingerprint); --{split}-csv takes a CSV with image,prob_0,... or a member's {split}.npz.")
    fingerprint = str(arrays["fingerprint"])
    if fingerprint != data.fingerprint:
        raise UserError(f"{path} has fingerprint {fingerprint[:12]}..., not this workdir's {data.fingerprint[:12]}...; "
                        "these probabilities belong to another split.")
    probs, row_ids = np.asarray(arrays["probs"], np.float64), np.asarray(arrays["row_ids"]).ravel()
    wanted = data.rows(split)["row_id"].to_numpy(np.int64)
    same_rows = sorted(row_ids.tolist()) == sorted(wanted.tolist())
    if probs.ndim != 2 or probs.shape != (len(row_ids), data.num_classes) or not same_rows:
        raise UserError(f"{path} holds {probs.shape} probabilities for rows other than this workdir's {len(wanted)} "
                        f"{split} rows ({data.num_classes} classes); pass the member's {split}.npz to --{split}-csv.")
    at = {int(r): n for n, r in enumerate(row_ids)}
    probs = probs[[at[int(r)] for r in wanted]]
    return _renormalised(probs, path, split, [f"row {int(r)} of split.csv" for r in wanted])


def _renormalised(probs: np.ndarray, path: Path, split: str, where: list[str]) -> np.ndarray:
    """``probs`` with rows scaled to sum to 1, after refusing values that are not probabilities.

    A row may be off 1 by :data:`SUM_RENORMALISED` (probabilities rounded to 3 decimals are);
    how many rows were rescaled, and the largest deviation, go to stderr.
    """
    hint = "give probabilities (e.g. a softmax), not scores or logits"
    bad = np.flatnonzero(~np.isfinite(probs).all(axis=1))
    if len(bad):
        raise UserError(f"{path} {where[bad[0]]} holds a value that is not a number (empty, NaN or infinite); give one "
                        "probability per class.")
    bad = np.flatnonzero(((probs < 0) | (probs > 1)).any(axis=1))
    if len(bad):
        row = probs[bad[0]]
        value = row[(row < 0) | (row > 1)][0]
        if _percentages(probs):
            hint = "its rows sum to 100: percentages; divide them by 100"
        raise UserError(f"{path} {where[bad[0]]} holds {value:g}, not a probability between 0 and 1; {hint}.")
    sums = probs.sum(axis=1)
    deviation = np.abs(sums - 1.0)
    worst = int(deviation.argmax()) if len(sums) else 0
    if len(sums) and deviation[worst] > SUM_RENORMALISED + 1e-9:  # 1.01 is 0.01 off, not 0.0100000000000000009
        fix = hint if deviation[worst] > SUM_SCORES else ("give the probabilities with more decimals, or every "
                                                          "class's column")
        raise UserError(f"{path} {where[worst]} sums to {sums[worst]:.4g}, not 1 (rows up to {SUM_RENORMALISED:g} "
                        f"off are renormalised); {fix}.")
    rescaled = int((deviation > SUM_NOTED).sum())
    if rescaled:
        print(f"{path}: renormalised {rescaled} of the {len(sums)} {split} rows to sum to 1 (largest deviation "
              f"{deviation[worst]:.3g}, {where[worst]}).", file=sys.stderr)
    return probs / sums[:, None] if len(sums) else probs


def _percentages(values: np.ndarray) -> bool:
    """Whether ``(n, k)`` values are percentages: none negative, every row summing to 100 (within 1)."""
    return bool(len(values)) and values.min() >= 0 and np.allclose(values.sum(axis=1), 100.0, atol=1.0)


def _refuse_non_finite(raw: np.ndarray, path: Path, split: str, paths: list[str]) -> None:
    """Refuse NaN or infinite model outputs, in their own words (they are no logits either)."""
    bad = ~np.isfinite(raw).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise UserError(f"{path} gives non-finite outputs (NaN or infinite) on {int(bad.sum())} of the {len(raw)} "
                        f"{split} images (e.g. {np.array2string(raw[i], precision=3)} on {Path(paths[i]).name}), so "
                        "they are no probabilities: its weights hold NaN or infinite values (a training that "
                        "diverged) or its arithmetic overflows; check the model on one of these images in Keras and "
                        "save it again from weights whose outputs are finite.")


def _check_model_outputs(raw: np.ndarray, path: Path, split: str, paths: list[str]) -> None:
    """Refuse finite outputs that are no probabilities, naming what they look like: logits, percentages, or
    independent sigmoids."""
    if len(raw) and (raw < 0).any():
        i = int(np.argmax((raw < 0).any(axis=1)))
        raise UserError(f"{path}'s outputs on the {split} images look like logits, not probabilities (e.g. "
                        f"{np.array2string(raw[i], precision=3)} on {Path(paths[i]).name}); end the model with a "
                        "softmax (keras.layers.Softmax()) and save it again.")
    sums = raw.sum(axis=1)
    if len(sums) and np.abs(sums - 1.0).max() > ROW_SUM_TOL:
        i = int(np.abs(sums - 1.0).argmax())
        if _percentages(raw):
            raise UserError(f"{path}'s outputs on the {split} images sum to 100 (e.g. {sums[i]:.4g} on "
                            f"{Path(paths[i]).name}): percentages, not probabilities; divide them by 100 in the model "
                            "(keras.layers.Rescaling(0.01) after its softmax) and save it again.")
        raise UserError(f"{path}'s outputs on the {split} images do not sum to 1 (e.g. {sums[i]:.4g} on "
                        f"{Path(paths[i]).name}), so they are no probabilities (independent sigmoids of a multi-label "
                        "head, or a ReLU or linear last layer); end the model with a softmax over the classes and "
                        "save it again.")


SCALING_OPS = frozenset({"Add", "Subtract", "Multiply", "Divide", "TrueDivide", "FloorDivide", "Power", "Negative",
                         "Clip", "Maximum", "Minimum"})
"""Keras ops that scale or shift pixel values (``x / 127.5 - 1``; ``preprocess_input`` in its tf, torch and caffe
forms is made of them)."""


def _scales_with_ops(model) -> bool:
    """Whether the graph works on its raw input with ops before any layer with weights: ``inputs / 127.5 - 1.0``
    or ``keras.applications.*.preprocess_input(inputs)`` scale it so, and ``model.layers`` lists no op.

    Only arithmetic counts (:data:`SCALING_OPS`): a resize, a transpose, a reshape or a cast of the input scales
    nothing; nor does an op on what a layer with weights (a convolution, say) made of the input.
    """
    import keras

    def raw(tensor, inputs: set[int], memo: dict[int, bool]) -> bool:  # made of the input by weightless steps alone
        key = id(tensor)
        if key in inputs:
            return True
        if key not in memo:
            memo[key] = False  # a cycle (a damaged graph) ends here
            made = _graph_inputs(tensor)
            memo[key] = made is not None and not getattr(made[0], "weights", None) and any(
                raw(t, inputs, memo) for t in made[1])
        return memo[key]

    for graph in (model, *_nested_layers(model)):
        inputs, memo = {id(t) for t in getattr(graph, "inputs", None) or []}, {}
        for operation in getattr(graph, "operations", None) or []:
            if isinstance(operation, keras.layers.Layer) or type(operation).__name__ not in SCALING_OPS:
                continue
            for node in getattr(operation, "_inbound_nodes", []):
                if any(raw(t, inputs, memo) for t in getattr(node, "input_tensors", [])):
                    return True
    return False


def _nested_layers(model):
    """Every layer of ``model``, those of nested models included."""
    for layer in getattr(model, "layers", []):
        yield layer
        yield from _nested_layers(layer)


def _say_if_unscaled(model, path: Path) -> None:
    """A note when the model shows no scaling of its input — no Rescaling or Normalization layer, no op on the raw
    input (:func:`_scales_with_ops`): it gets pixels 0–255 as they are.

    The note says what to check (the training code) rather than telling to add a scaling: a model
    trained on 0–255 pixels needs none, and one that scales in a way not seen here would get it twice.
    """
    import keras

    scaling = (keras.layers.Rescaling, keras.layers.Normalization)
    try:
        if any(isinstance(layer, scaling) for layer in _nested_layers(model)) or _scales_with_ops(model):
            return
    except RecursionError:  # a graph too deep to walk: no note rather than a wrong one
        return
    print(f"Note: {path} has no Rescaling or Normalization layer and no arithmetic op on its input, so it gets "
          "pixels 0-255 as they are; check its training code: if the model was fed 0-255 pixels, all is well, and only if the images "
          "were scaled before the model (to 0-1 or -1-1, e.g. by a preprocess_input) put that same step in front of "
          "it (e.g. keras.layers.Rescaling(1/255)) and save it again.", file=sys.stderr)


HARD_LABELS = "hard 0/1 labels, not probabilities"


def _say_if_hard(values: list[np.ndarray], what: str, *, model: bool) -> bool:
    """A note when every value is exactly 0 or 1 (a ``one_hot(argmax(...))`` or a threshold at the model's end):
    hard labels, whose ranking, log-loss and soft average mean little; returns whether it noted it."""
    if not any(len(v) for v in values) or not all(np.isin(v, (0.0, 1.0)).all() for v in values):
        return False
    print(f"Note: {what} {'outputs' if model else 'hold'} hard 0/1 labels, not probabilities (every val and test "
          f"value is 0 or 1{', as a one_hot(argmax(...)) or a threshold at its end gives' if model else ''}): AUC, "
          "log-loss and soft combining lose their meaning"
          + (", and explain cannot draw it (no gradient passes an argmax); import the model without that last step "
             "(its softmax output) if you can." if model else
             "; import the probabilities the model computed, if you have them."), file=sys.stderr)
    return True


def _check_rows_sum(probs: np.ndarray, what, fix: str) -> None:
    if not np.isfinite(probs).all() or (probs < 0).any():
        raise UserError(f"{what} hold negative, NaN or infinite values; {fix}.")
    sums = probs.sum(axis=1)
    worst = int(np.abs(sums - 1.0).argmax()) if len(sums) else 0
    if len(sums) and abs(sums[worst] - 1.0) > ROW_SUM_TOL:
        raise UserError(f"{what}: row {worst + 1} sums to {sums[worst]:.4g}, not 1 (tolerance {ROW_SUM_TOL:g}); {fix}.")


# ---- the member files ---------------------------------------------------------------------
def _write_member(folder: Path, name: str, data, probs: dict[str, np.ndarray], extra: dict) -> None:
    from members.infra.transaction import replace_dir

    model_src = extra.pop("_model", None)
    spec_src = extra.pop("_spec", None)
    # an existing member (--force) is replaced only once the new one is complete: built beside it, then swapped
    target = folder.with_name(f".{name}.replacement") if _has_content(folder) else folder
    if target.exists() and target != folder:
        shutil.rmtree(target)  # a replacement left by an import that died
    try:
        _write_files(target, name, data, probs, extra, model_src, spec_src)
    except BaseException as exc:  # a full disk, say: the replacement goes, the old member stands, named as known
        from members.infra.transaction import raise_as_known

        if target != folder:
            shutil.rmtree(target, ignore_errors=True)
        raise_as_known(exc, target, folder)
    if target != folder:
        from members.infra.lock import MemberLock

        MemberLock(target).acquire()  # the swapped-in folder carries our lock (the caller releases it)
        try:
            replace_dir(target, folder)
        except OSError as exc:
            raise atomic._write_error(folder, exc) from exc


def _write_files(target: Path, name: str, data, probs: dict[str, np.ndarray], extra: dict, model_src, spec_src) -> None:
    """The member's files in ``target``, ``metrics.json`` last (the mark of a complete member)."""
    from members.scoring import nan_to_none, qwk_for_task, score
    from members.training.artifacts import predictions_sha256, save_predictions
    from members.training.collapse import health

    target.mkdir(parents=True, exist_ok=True)
    (target / "metrics.json").unlink(missing_ok=True)  # incomplete until the end
    results, labels = {}, {"train": data.rows("train")["label"].to_numpy(np.int64)}
    for split in ("val", "test"):
        rows = data.rows(split)
        labels[split] = rows["label"].to_numpy(np.int64)
        save_predictions(target / f"{split}.npz", probs[split], labels[split], rows["row_id"].to_numpy(np.int64),
                         data.fingerprint)
        results[split] = score(labels[split], probs[split], num_classes=data.num_classes) if len(labels[split]) else {}
    metrics = {"name": name, "preset": "imported", "num_classes": data.num_classes, "classes": list(data.classes),
               "ordinal": bool(data.ordinal),
               "fingerprint": data.fingerprint, "predictions_sha256": predictions_sha256(target), "tta": False,
               "val": results["val"], "test": results["test"], **extra}
    # the same collapse and majority-baseline check as a trained member's: vote leaves a collapsed one out; outputs
    # far worse than chance are said first to be in another class order (the likelier cause in an import)
    from members.training.collapse import IMPORTED_ADVICE

    order = _class_order_note(labels["val"], probs["val"], results["val"], data, extra.get("imported") or {})
    log = lambda line: print(line, file=sys.stderr)  # noqa: E731
    metrics.update(health(name=name, spec=None, classes=list(data.classes), labels=labels, predictions=probs,
                          results=results, history=[], log=log,
                          imported_advice=IMPORTED_ADVICE if order is None else f"{order[:1].upper()}{order[1:]} "
                                                                                  f"{IMPORTED_ADVICE}"))
    if order is not None:
        metrics["class_order_suspect"] = order
        if not metrics["collapsed"]:  # a collapsed one said it in its warning's advice
            log(f"[{name}] WARNING: {order}")
    if spec_src is not None:
        atomic.write_bytes(target / "spec.toml", spec_src)
    if model_src is not None:
        atomic.write_bytes(target / "model.keras", model_src)
        metrics["model_sha256"] = atomic.sha256_file(target / "model.keras")
    metrics = qwk_for_task(metrics, ordinal=bool(data.ordinal), num_classes=data.num_classes)  # no order: no QWK
    atomic.write_json(target / "metrics.json", nan_to_none(metrics))


REVERSED_AUC, REVERSED_KAPPA = 0.3, -0.3
"""A val AUC below this, or a val QWK (kappa) below that, is far worse than chance (0.5, 0): outputs read as other
classes, more often than a model that learned the opposite."""


def _class_order_note(labels: np.ndarray, probs: np.ndarray, scores: dict, data, imported: dict) -> str | None:
    """A sentence when the val figures say the outputs are likely in another class order than the workdir's — AUC
    under :data:`REVERSED_AUC`, QWK under :data:`REVERSED_KAPPA`, or the reverse order scoring far better — with
    the fix for this kind of import; else None."""
    from members.scoring import headline, score

    if len(labels) < 2 or len(np.unique(labels)) < 2:
        return None
    k, names = data.num_classes, [str(c) for c in data.class_names]
    auc, kappa = scores.get("auc"), scores.get("qwk") if (data.ordinal or k == 2) else None
    flipped = score(labels, probs[:, ::-1], num_classes=k).get("auc")
    finite = lambda v: v is not None and bool(np.isfinite(v))  # noqa: E731
    parts = [f"AUC {auc:.3f}"] if finite(auc) and auc < REVERSED_AUC else []
    parts += [f"{headline(k)[1]} {kappa:.3f}"] if finite(kappa) and kappa < REVERSED_KAPPA else []
    better = finite(auc) and finite(flipped) and flipped >= 0.7 and flipped - auc >= 0.25
    if not (parts or better):
        return None
    lead = (f"its val {' and '.join(parts)} {'are' if len(parts) > 1 else 'is'} far below chance" if parts else
            f"its val AUC {auc:.3f} is no better than chance")
    reverse = (f"; read in the reverse order ({', '.join(reversed(names))}) its val AUC would be {flipped:.3f}"
               if finite(flipped) and finite(auc) and flipped > auc else "")
    if imported.get("positive_class") in names:
        other = names[1 - names.index(imported["positive_class"])]
        fix = f"if its unit gives the probability of {other}, import it again with --positive-class {other} --force."
    elif imported.get("kind") == KIND_MODEL:
        fix = ("if the model orders its classes otherwise, prepare the workdir again with --classes in the model's "
               f"output order (e.g. --classes {','.join(reversed(names))}) and import it again.")
    elif names == [str(j) for j in range(k)]:
        fix = ("if the CSVs' columns hold the classes in another order, put class j's probabilities in prob_j and "
               "import them again.")
    else:
        fix = (f"if the CSVs' columns hold the classes in another order, name each column by its class "
               f"({', '.join(names)}) and import them again.")
    return (f"{lead}: its outputs are likely in another class order than this workdir's ({', '.join(names)})"
            f"{reverse}; {fix}")


def _has_content(folder: Path) -> bool:
    """Whether ``folder`` holds anything but lock files (a member, whole or begun)."""
    return folder.is_dir() and any(not p.name.startswith(".lock") for p in folder.iterdir())


def has_model(metrics: dict) -> bool:
    """False for a member imported as probabilities only (it cannot grade new images)."""
    return (metrics.get("imported") or {}).get("kind") != KIND_PROBS
