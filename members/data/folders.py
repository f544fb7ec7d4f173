"""Folder-per-class image sets: ``DIR/<class>/**/*.jpg``, optionally under ``DIR/{train,val,test}/``.

The layout of Keras' ``image_dataset_from_directory`` and of most public sets: the class
is the name of the top folder an image sits in (sub-folders below it are allowed); when
the top folders are split names (``train``, ``val``/``valid``/``validation``, ``test``),
each holds class folders and the split is honoured. :func:`scan_class_folders` turns the
folder tree into the same table :func:`members.data.labels.read_labels_csv` reads from a CSV,
so the rows are checked (and dropped with reasons) exactly like a CSV's.

Example:
    >>> table = scan_class_folders("fundus")          # doctest: +SKIP
    >>> table.columns.tolist()                          # doctest: +SKIP
    ['row', 'image', 'label_text']
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path

import pandas as pd

from members.infra.archives import not_a_folder
from members.infra.csvsafe import is_utf8, printable
from members.infra.errors import UserError
from members.data.labels import EXTENSIONS, SYSTEM_FOLDERS
from members.data.pillow_image import heif_file

SPLIT_FOLDERS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "test": "test", "testing": "test"}
IMAGE_EXTENSIONS = EXTENSIONS


def _hidden(name: str) -> bool:
    return name.startswith(".") or name.casefold() in SYSTEM_FOLDERS


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not _hidden(p.name))


def _is_workdir(folder: Path) -> bool:
    """Whether ``folder`` is a prepared workdir — a ``dataset.json`` with ``fingerprint`` and ``classes`` beside a
    ``split.csv`` (a data set's own metadata file called dataset.json is not one): its plots are no class's images."""
    import json

    if not ((folder / "dataset.json").is_file() and (folder / "split.csv").is_file()):
        return False
    try:
        meta = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and "fingerprint" in meta and "classes" in meta


def _images_under(folder: Path, skip: Path | None = None) -> list[Path]:
    """Image files anywhere below ``folder`` (hidden files and folders, the folder ``skip`` and every other
    workdir left out), sorted."""
    return _files_under(folder, skip)[0]


JUNK_FILES = {"thumbs.db", "desktop.ini", "ehthumbs.db"}
"""Files Windows leaves in picture folders: never rows, never counted."""


def _files_under(folder: Path, skip: Path | None = None) -> tuple[list[Path], list[Path]]:
    """``(image files, other files)`` anywhere below ``folder``, by extension, in one walk: the others (a camera's
    ``IMG_0001``, a browser's ``x.jpg_large``, a sidecar ``.json``) are no rows, but a note counts them."""
    images, others = [], []
    for base, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not _hidden(d) and not _same(Path(base) / d, skip)
                         and not _is_workdir(Path(base) / d))
        for f in sorted(files):
            if not f.startswith(".") and f.casefold() not in JUNK_FILES:
                path = Path(base) / f  # a phone's HEIC without its extension is a row too: prepare says to convert it
                image = os.path.splitext(f)[1].casefold() in IMAGE_EXTENSIONS or heif_file(path)
                (images if image else others).append(path)
    return images, others


_SPLIT_LIKE = re.compile(r"(^|[\W_])(train|training|test|testing|val|valid|validation)([\W_]|$)", re.IGNORECASE)
LABEL_FILE_SUFFIXES = (".csv", ".tsv", ".txt", ".xls", ".xlsx")


def _labels_like(path: Path) -> bool:
    """A labels file by its name: a spreadsheet or CSV, or a text list named for labels or a split (DDR's
    ``train.txt``); a ``readme.txt`` is not one."""
    suffix, stem = path.suffix.casefold(), path.stem.casefold()
    return suffix in LABEL_FILE_SUFFIXES and (suffix != ".txt" or bool(re.search(r"label|grade|train|test|val", stem)))


def _refuse_split_like(root: Path, top: list[Path]) -> None:
    """Refuse class folders named like a download's split folders (APTOS' ``train_images``, IDRiD's ``a. Training
    Set``): that is a set whose labels are in a file, and read as classes it would train a "which folder" task."""
    alike = [d for d in top if _SPLIT_LIKE.search(d.name)]
    if not alike:
        return
    if all(_visible_dirs(d) for d in alike):  # a tutorial's training_set/<class>/, test_set/<class>/
        train = min(alike, key=lambda d: (not re.search("train", d.name, re.IGNORECASE), d.name))
        raise UserError(f"{root}'s folders {', '.join(repr(d.name) for d in alike[:3])} look like split folders "
                        "holding class folders, but only train/, val/ and test/ (or training, valid, validation, "
                        "testing) are read as the split; rename them so, or pass one of them as --images "
                        f"(e.g. --images {shlex.quote(str(train))}) "
                        f"to split it into train, val and test. Received: images={root}")
    lists = sorted(p for folder in (root, root.parent) if folder.is_dir() for p in folder.iterdir()
                   if p.is_file() and _labels_like(p) and not p.name.startswith("."))
    first = (lambda p: (not re.search(r"train|label", p.name, re.IGNORECASE), p.name))  # noqa: E731 - train first
    folder, listed = min(alike, key=first), sorted(lists, key=first)
    example = (f"--labels {shlex.quote(str(listed[0])) if listed else '<its labels CSV>'} "
               f"--images {shlex.quote(str(folder))}")
    raise UserError(f"{root}'s folders {', '.join(repr(d.name) for d in alike[:3])} look like the split folders of a "
                    "set whose labels are in a file, not like classes (without --labels, each sub-folder of --images "
                    f"is a class); pass the labels file and the folder of its images, e.g. {example}. "
                    f"Received: images={root}")


def _refuse_nested_copy(root: Path, splits: list[Path], others: list[Path]) -> None:
    """Refuse split folders beside a folder that holds split folders of its own: a second copy of the set (Kaggle's
    chest-xray-pneumonia unzips to ``chest_xray/{train,val,test}`` beside ``chest_xray/chest_xray/{train,val,test}``);
    read both, every image would count twice."""
    nested = [d for d in others if any(p.name.casefold() in SPLIT_FOLDERS for p in _visible_dirs(d))]
    if not nested:
        return
    inner = nested[0]
    inside = ", ".join(p.name for p in _visible_dirs(inner) if p.name.casefold() in SPLIT_FOLDERS)
    raise UserError(f"{root} holds split folders ({', '.join(d.name for d in splits)}) and a folder {inner.name!r} with "
                    f"split folders of its own ({inside}): a second copy of the set, it seems, whose images would count twice; "
                    f"pass one of them, --images {shlex.quote(str(inner))} (or delete {shlex.quote(str(inner))} and "
                    f"pass --images {shlex.quote(str(root))}). Received: images={root}")


def _refuse_one_class(root: Path, only: Path) -> None:
    """One class folder: if a chain of single folders leads to several (a zip's ``x/x/<class>/``), name it."""
    deep = only
    while True:
        inner = _visible_dirs(deep)
        if len(inner) != 1 or any(p.is_file() and p.suffix.casefold() in IMAGE_EXTENSIONS for p in deep.iterdir()):
            break
        deep = inner[0]
    if len(_visible_dirs(deep)) >= 2:
        raise UserError(f"{root} holds one folder, {only.name!r}, so every image would have the same class; the "
                        f"class folders seem to be in {deep}: pass --images {deep}. Received: images={root}")
    raise UserError(f"{root} holds one class folder, {only.name!r}; a classifier needs at least two classes (one "
                    f"sub-folder per class of --images), or pass a labels CSV with --labels. Received: images={root}")


def _same(folder: Path, other: Path | None) -> bool:
    return other is not None and folder.resolve() == other


def _holds(folder: Path, inner: Path | None) -> bool:
    """Whether ``inner`` (resolved) is ``folder`` or lies below it."""
    return inner is not None and inner.is_relative_to(folder.resolve())


def _holds_a_workdir(folder: Path) -> bool:
    """Whether a prepared workdir (a folder holding ``dataset.json``) lies somewhere below ``folder``."""
    for base, dirs, files in os.walk(folder):
        if base != str(folder) and "dataset.json" in files and _is_workdir(Path(base)):
            return True
        dirs[:] = [d for d in dirs if not _hidden(d)]
    return False


def _not_the_workdir(dirs: list[Path], skip: Path | None, notes: list[str]) -> list[Path]:
    """``dirs`` without the workdir ``skip`` and any other workdir (a folder holding ``dataset.json``), and
    without a folder holding no image besides such a workdir."""
    keep = []
    for d in dirs:
        if _holds(d, skip) and (_same(d, skip) or not _images_under(d, skip)):
            notes.append(f"Left out {d}: it holds the workdir, not a class of images.")
            continue
        if _is_workdir(d) or (not _images_under(d, skip) and _holds_a_workdir(d)):
            notes.append(f"Left out {d}: it holds another workdir (dataset.json), not a class of images.")
            continue
        keep.append(d)
    return keep


def scan_class_folders(images_dir: str | os.PathLike, *, workdir: str | os.PathLike | None = None) -> pd.DataFrame:
    """The rows of a folder-per-class set: ``row, image, label_text`` (+ ``split_text`` with split folders).

    ``image`` is the path relative to ``images_dir`` (POSIX), ``label_text`` the class folder's
    name, ``row`` a 1-based row number in the sorted listing (used by ``data_report.csv``). A
    ``workdir`` inside ``images_dir`` is left out (said on stderr), so that preparing it again
    does not take it for a class; so is any other workdir there (a folder holding ``dataset.json``),
    and its plots are no class's images.

    Raises:
        UserError: no class folder, split folders mixed with other folders, or a class folder
            without any image file.
    """
    root = Path(images_dir)
    if not root.is_dir():
        fix = "pass a folder with one sub-folder per class via --images"
        raise UserError(f"Images folder {root} {not_a_folder(root, fix)}. Received: images={root}")
    skip = Path(workdir).resolve() if workdir is not None else None
    notes: list[str] = []
    top = _not_the_workdir(_visible_dirs(root), skip, notes)
    splits = [d for d in top if d.name.casefold() in SPLIT_FOLDERS]
    if splits and len(splits) != len(top):
        _refuse_nested_copy(root, splits, [d for d in top if d not in splits])
        others = [d.name for d in top if d not in splits]
        raise UserError(f"{root} mixes split folders ({', '.join(d.name for d in splits)}) with other folders "
                        f"({', '.join(others[:3])}); put every class folder inside train/, val/ or test/, or use "
                        f"no split folders at all. Received: images={root}")
    if not splits:
        _refuse_split_like(root, top)
        if len(top) == 1:  # one class can train nothing: said now, before every image is decoded
            _refuse_one_class(root, top[0])
    parts = [(SPLIT_FOLDERS[d.name.casefold()], d) for d in splits] if splits else [(None, root)]
    rows: list[tuple[str, str, str | None]] = []
    others: list[Path] = []  # files without an image extension: named in a note, never rows
    for split, base in parts:
        classes = _not_the_workdir(_visible_dirs(base), skip, notes) if split else top
        if not classes:
            where = f"{base}" if split else f"{root}"
            raise UserError(f"{where} has no class folder; expected one sub-folder per class (e.g. "
                            f"{where}/normal/*.jpg), or pass a labels CSV with --labels. Received: images={root}")
        for folder in classes:
            if not is_utf8(folder.name):  # another system's encoding
                raise UserError(f"Class folder {folder.parent / printable(folder.name)} has a name that is not valid UTF-8 (written in "
                                f"another system's encoding, e.g. a Windows zip); rename it, since its name is the "
                                f"class name every report shows. Received: images={root}")
            files, other = _files_under(folder, skip)
            lists = [f for f in other if _labels_like(f)]
            if not files and lists:  # IDRiD's "2. Groundtruths" beside "1. Original Images"
                raise UserError(f"{folder} holds labels files ({lists[0].name}), no images: {root} is a set whose "
                                "labels are in a file, not a folder per class; pass the labels file and the folder "
                                f"of its images, e.g. --labels {shlex.quote(str(lists[0]))} --images <its images "
                                f"folder>. Received: images={root}")
            if not files:
                raise UserError(f"Class folder {folder} holds no image file ({', '.join(IMAGE_EXTENSIONS[:4])}, ...); "
                                f"add images of class {folder.name!r} or remove the folder. Received: images={root}")
            others += other
            rows += [(Path(os.path.relpath(f, root)).as_posix(), folder.name, split) for f in files]
    table = pd.DataFrame({"row": range(1, len(rows) + 1), "image": [r[0] for r in rows],
                          "label_text": [r[1] for r in rows]})
    if splits:
        table["split_text"] = [r[2] for r in rows]
    if others:
        shown = ", ".join(Path(os.path.relpath(f, root)).as_posix() for f in others[:2])
        notes.append(f"Note: {len(others)} file(s) in the class folders have no image extension and are not used "
                     f"(e.g. {shown}); one that is an image (a camera's IMG_0001, a browser's x.jpg_large) needs its "
                     "extension, .jpg or .png, to be read.")
    for note in notes:
        print(note, file=sys.stderr)
    return table


def loose_files(images_dir: str | os.PathLike) -> int:
    """Image files directly in ``images_dir`` (outside every class folder): they are ignored."""
    root = Path(images_dir)
    return sum(1 for p in root.iterdir() if p.is_file() and p.suffix.casefold() in IMAGE_EXTENSIONS)
