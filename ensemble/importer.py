"""``import-member``: bring a model trained elsewhere, or just its val/test probabilities, into a workdir.

Either way the member gets the files every member has — ``val.npz``, ``test.npz`` (probs,
labels, row_ids, fingerprint of this workdir's split) and, last, ``metrics.json`` with an
``imported`` entry saying what it came from — so ``vote``, the report and ``predict`` treat
it like a trained one.

- A Keras ``.keras`` model is loaded with ``safe_mode=True`` (no Lambda layers, no pickle),
  its square input size read from the model, its output count checked against the
  workdir's classes; it is run on the val and test images through the project's own image
  path (:func:`members.data.pipeline.make_dataset`: decode, centre crop, resize, RGB 0–255 —
  the model must do its own rescaling) and copied to ``model.keras``.
- Probability CSVs (one for val, one for test) have an ``image`` (or ``path``) column and
  one column per class (``prob_0..prob_{k-1}`` or the class names). Every row of the split
  must be there once, each name must resolve to one of its images (path, path without
  extension, or a unique file name), every row must sum to 1 within 1e-3, and an optional
  ``fingerprint`` column must equal the workdir's. Such a member has no model: ``predict``
  refuses a combiner that uses it.

Example:
    >>> import_member("work", "effnet", model="effnet.keras")                          # doctest: +SKIP
    >>> import_member("work", "xgb", val_csv="xgb_val.csv", test_csv="xgb_test.csv")   # doctest: +SKIP
"""

from __future__ import annotations

import csv
import os
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np

from ensemble.constants import ROW_SUM_TOL
from members.infra import atomic
from members.infra.errors import UserError

IMAGE_COLUMNS = ("image", "path")
KIND_MODEL, KIND_PROBS = "keras", "probabilities"
BATCH_SIZE = 32


def import_member(workdir: str | os.PathLike, name: str, *, model: str | os.PathLike | None = None,
                  val_csv: str | os.PathLike | None = None, test_csv: str | os.PathLike | None = None,
                  input_size: int | None = None, force: bool = False) -> Path:
    """Add an outside member to ``workdir``; returns its folder.

    Args:
        workdir: a prepared workdir.
        name: the member's folder name under ``members/``.
        model: a Keras ``.keras`` file (case a).
        val_csv: val probabilities CSV (case b, with ``test_csv``).
        test_csv: test probabilities CSV.
        input_size: the input size for a model whose input size is not fixed.
        force: replace an existing member of that name.

    Raises:
        UserError: not exactly one source, an existing member without ``force``, a model that
            does not load safely, has the wrong number of outputs, no square RGB input or no
            probabilities out, or a CSV with missing, extra, unknown or duplicated rows,
            wrong columns, or rows that do not sum to 1.
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
    data = load_dataset(workdir)
    folder = member_dir(workdir, name)
    if folder.exists() and any(folder.iterdir()) and not force:
        raise UserError(f"Member {name!r} already exists in {folder.parent}; pass --force to replace it or choose "
                        "another --name.")
    if model is not None:
        probs, extra = _predict_with_model(Path(model), data, input_size)
    else:
        probs = {"val": read_probability_csv(val_csv, data, "val"), "test": read_probability_csv(test_csv, data, "test")}
        extra = {"imported": {"kind": KIND_PROBS, **{f"{s}_csv": str(Path(p).resolve()) for s, p in
                                                      (("val", val_csv), ("test", test_csv))},
                              **{f"{s}_sha256": atomic.sha256_file(p) for s, p in (("val", val_csv), ("test", test_csv))}}}
    _write_member(folder, name, data, probs, extra)
    print(f"Imported member {name!r} ({extra['imported']['kind']}) into {folder}: val accuracy "
          f"{_accuracy(probs['val'], data, 'val'):.3f}, test accuracy {_accuracy(probs['test'], data, 'test'):.3f}.",
          file=sys.stderr)
    return folder


def _accuracy(probs: np.ndarray, data, split: str) -> float:
    labels = data.rows(split)["label"].to_numpy(np.int64)
    return float((probs.argmax(axis=1) == labels).mean()) if len(labels) else float("nan")


# ---- case a: a Keras model ----------------------------------------------------------------
def _load_keras(path: Path):
    import keras

    import members.model.architecture  # noqa: F401  (registers the project's custom layers for safe_mode)

    if not path.is_file() or path.suffix != ".keras":
        raise UserError(f"{path} is not a .keras file; save the model with model.save('name.keras') (Keras 3 "
                        f"format) and pass that file. Received: model={path}")
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path} is not a Keras 3 .keras archive (a .keras file is a zip archive; this one is not, "
                        "so it is another format renamed, or damaged); save the model again with model.save('name.keras').")
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # noqa: BLE001 (zip, config and deserialisation errors all mean the same here)
        text = " ".join(str(exc).split())
        if "Lambda" in text or "lambda" in text:
            raise UserError(f"{path} holds a Lambda layer, which safe_mode does not load (it would run code stored in "
                            "the file); rebuild the model with built-in layers (e.g. Rescaling instead of a Lambda) "
                            "and save it again.") from None
        first = text.split(". ")[0][:200]
        raise UserError(f"{path} could not be loaded safely ({type(exc).__name__}: {first}); it must be a Keras 3 "
                        ".keras file without Lambda layers or custom code.") from None


def _input_size(model, path: Path, given: int | None) -> int:
    shape = tuple(model.input_shape) if not isinstance(model.input_shape, list) else None
    if shape is None or len(shape) != 4 or shape[-1] != 3:
        raise UserError(f"{path} takes input {model.input_shape}; an imported model needs one RGB image input "
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


def _predict_with_model(path: Path, data, given_size: int | None):
    from members.data.pipeline import make_dataset

    model = _load_keras(path)
    size = _input_size(model, path, given_size)
    outputs = model.output_shape[-1] if not isinstance(model.output_shape, list) else None
    if outputs != data.num_classes:
        raise UserError(f"{path} has {outputs} outputs but this workdir has {data.num_classes} classes "
                        f"({', '.join(map(str, data.classes))}); import a model trained on these classes.")
    probs = {}
    for split in ("val", "test"):
        rows = data.rows(split)
        ds = make_dataset(data.absolute_paths(split), rows["label"].to_numpy(np.int64), size=size,
                          batch_size=BATCH_SIZE, training=False, cache="none")
        raw = np.asarray(model.predict(ds.map(lambda x, *rest: x), verbose=0), dtype=np.float64).reshape(len(rows), -1)
        _check_rows_sum(raw, f"{path}'s outputs on the {split} images",
                        "end the model with a softmax so that it outputs probabilities")
        probs[split] = raw
    return probs, {"imported": {"kind": KIND_MODEL, "source": str(path.resolve()),
                                "source_sha256": atomic.sha256_file(path)},
                   "input_size": size, "_model": path}


# ---- case b: probability CSVs -------------------------------------------------------------
def _keys(paths: list[str]) -> dict[str, int]:
    """Every spelling that names exactly one row: the path, without extension, the file name, without extension."""
    out: dict[str, int] = {}
    ambiguous: set[str] = set()
    for i, p in enumerate(paths):
        base = p.rsplit("/", 1)[-1]
        for key in {p, os.path.splitext(p)[0], base, os.path.splitext(base)[0]}:
            key = key.casefold()
            if key in out and out[key] != i:
                ambiguous.add(key)
            out.setdefault(key, i)
    for key in ambiguous:
        del out[key]
    return out


def read_probability_csv(path: str | os.PathLike, data, split: str) -> np.ndarray:
    """The ``(n, k)`` probabilities of ``split``'s rows, in ``split.csv`` order, from a CSV keyed by image.

    Raises:
        UserError: see :func:`import_member`.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{split} probabilities file {path} does not exist; pass a CSV with an image column and one "
                        f"column per class. Received: {split}_csv={path}")
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            records = list(csv.reader(f))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{path} is not a UTF-8 CSV file ({exc}); save it as CSV and try again.") from None
    if not records:
        raise UserError(f"{path} is empty; expected a header `image,prob_0,...` and one row per {split} image.")
    header = [h.strip() for h in records[0]]
    folded = [h.casefold() for h in header]
    image_col = next((folded.index(c) for c in IMAGE_COLUMNS if c in folded), None)
    k, names = data.num_classes, data.class_names
    wanted = [[f"prob_{j}", names[j]] for j in range(k)]
    cols = [next((header.index(w) for w in alts if w in header), None) for alts in wanted]
    if image_col is None or None in cols:
        raise UserError(f"{path} must have an `image` column and one column per class ({', '.join(f'prob_{j}' for j in range(k))}"
                        f" or {', '.join(names)}); its columns are {', '.join(header)}.")
    fp_col = folded.index("fingerprint") if "fingerprint" in folded else None
    rows = data.rows(split)
    keys = _keys(rows["path"].tolist())
    probs = np.full((len(rows), k), np.nan)
    seen = np.zeros(len(rows), dtype=bool)
    for line, rec in enumerate(records[1:], start=2):
        if not any(c.strip() for c in rec):
            continue
        cell = rec[image_col].strip() if image_col < len(rec) else ""
        i = keys.get(cell.casefold())
        if i is None:
            raise UserError(f"{path} line {line} names {cell!r}, which is not one of this workdir's {len(rows)} {split} "
                            f"images (see split.csv); give the {split} rows of this workdir only.")
        if seen[i]:
            raise UserError(f"{path} lists {cell!r} twice (line {line}); give each {split} image once.")
        if fp_col is not None and fp_col < len(rec) and rec[fp_col].strip() not in ("", data.fingerprint):
            raise UserError(f"{path} line {line} has fingerprint {rec[fp_col].strip()[:12]}..., not this workdir's "
                            f"{data.fingerprint[:12]}...; these probabilities belong to another split.")
        try:
            values = [float(rec[c]) for c in cols]
        except (ValueError, IndexError):
            raise UserError(f"{path} line {line} ({cell!r}) has a missing or non-numeric probability; give one number "
                            "per class.") from None
        probs[i], seen[i] = values, True
    if not seen.all():
        missing = rows["path"].iloc[int(np.flatnonzero(~seen)[0])]
        raise UserError(f"{path} lacks {int((~seen).sum())} of the {len(rows)} {split} images, e.g. {missing!r}; "
                        f"give a row for every {split} image of split.csv.")
    _check_rows_sum(probs, path, "give probabilities (e.g. a softmax), not scores or logits")
    return probs


def _check_rows_sum(probs: np.ndarray, what, fix: str) -> None:
    if not np.isfinite(probs).all() or (probs < 0).any():
        raise UserError(f"{what} hold negative, NaN or infinite values; {fix}.")
    sums = probs.sum(axis=1)
    worst = int(np.abs(sums - 1.0).argmax()) if len(sums) else 0
    if len(sums) and abs(sums[worst] - 1.0) > ROW_SUM_TOL:
        raise UserError(f"{what}: row {worst + 1} sums to {sums[worst]:.4g}, not 1 (tolerance {ROW_SUM_TOL:g}); {fix}.")


# ---- the member files ---------------------------------------------------------------------
def _write_member(folder: Path, name: str, data, probs: dict[str, np.ndarray], extra: dict) -> None:
    from members.training.artifacts import save_predictions
    from members.scoring import nan_to_none, score

    from members.infra.transaction import replace_dir
    from members.training.collapse import health

    model_src = extra.pop("_model", None)
    # an existing member (--force) is replaced only once the new one is complete: built beside it, then swapped
    target = folder.with_name(f".{name}.replacement") if folder.exists() else folder
    if target.exists() and target != folder:
        shutil.rmtree(target)  # a replacement left by an import that died
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
               "fingerprint": data.fingerprint, "tta": False, "val": results["val"], "test": results["test"], **extra}
    # the same collapse and majority-baseline check as a trained member's: vote leaves a collapsed one out
    metrics.update(health(name=name, spec=None, classes=list(data.classes), labels=labels, predictions=probs,
                          results=results, history=[], log=lambda line: print(line, file=sys.stderr)))
    if model_src is not None:
        atomic.write_bytes(target / "model.keras", Path(model_src).read_bytes())
        metrics["model_sha256"] = atomic.sha256_file(target / "model.keras")
    atomic.write_json(target / "metrics.json", nan_to_none(metrics))
    if target != folder:
        try:
            replace_dir(target, folder)
        except OSError as exc:
            raise atomic._write_error(folder, exc) from exc


def has_model(metrics: dict) -> bool:
    """False for a member imported as probabilities only (it cannot grade new images)."""
    return (metrics.get("imported") or {}).get("kind") != KIND_PROBS
