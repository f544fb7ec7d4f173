"""The prepared data set of a workdir: ``prepare`` writes it once, ``load_dataset`` reads it back.

``prepare_csv`` checks every row of a labels CSV (dropping bad rows with a reason) and
writes a stratified, seeded split; ``prepare_npz`` keeps a MedMNIST file's official split.
Both write ``data_report.csv``, ``split.csv`` and, last, ``dataset.json`` (whose
``fingerprint`` is the sha256 of ``split.csv``), each atomically.

Example:
    >>> result = prepare_csv("work", "trainLabels.csv", "images")     # doctest: +SKIP
    >>> data = load_dataset("work")                                   # doctest: +SKIP
    >>> data.rows("val")[["row_id", "path", "label"]]                 # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from members.atomic import read_json, sha256_file, write_bytes, write_json, write_text
from members.errors import UserError
from members.labels import check_rows, read_labels_csv
from members.medmnist import fetch_medmnist, read_npz, write_pngs
from members.split import SPLITS, assign_splits, check_fractions, class_counts, patient_groups

__all__ = ["PrepareResult", "PreparedDataset", "prepare_csv", "prepare_npz", "load_dataset", "fetch_medmnist",
           "class_counts", "SPLITS"]


@dataclass(frozen=True)
class PrepareResult:
    """What ``prepare`` did. ``counts`` maps split -> label -> rows; ``skipped`` maps reason -> rows."""

    workdir: Path
    counts: dict[str, dict[int, int]]
    kept: int
    skipped: dict[str, int]
    grouped: bool
    fingerprint: str


@dataclass(frozen=True, eq=False)
class PreparedDataset:
    """A prepared workdir's split table (``path, label, split[, group]``) and its metadata."""

    workdir: Path
    image_root: Path
    table: pd.DataFrame
    classes: list[int]
    num_classes: int
    fingerprint: str
    info: dict

    def rows(self, split: str) -> pd.DataFrame:
        """The rows of one split, with ``row_id`` (the 0-based row of ``split.csv``) first."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}; got {split!r}")
        part = self.table[self.table["split"] == split]
        return part.reset_index(names="row_id").astype({"row_id": "int64"})

    def absolute_paths(self, split: str) -> list[str]:
        """Absolute image paths of one split, in ``rows(split)`` order."""
        return [str(self.image_root / p) for p in self.rows(split)["path"]]


def _result(workdir: Path, info: dict) -> PrepareResult:
    counts = {s: {int(c): int(n) for c, n in info["counts"][s].items()} for s in SPLITS}
    return PrepareResult(workdir=workdir, counts=counts, kept=int(info["kept"]), skipped=dict(info["skipped"]),
                         grouped=bool(info["grouped"]), fingerprint=info["fingerprint"])


def _previous(workdir: Path, force: bool) -> dict | None:
    """The workdir's dataset.json, or None when it has none (or a corrupt one and ``force``)."""
    path = workdir / "dataset.json"
    if not path.exists():
        return None
    try:
        return read_json(path)
    except UserError:
        if force:
            return None
        raise UserError(f"{path} is corrupt; pass --force to prepare {workdir} again.") from None


def _summary(workdir: Path, info: dict, dropped: pd.DataFrame, unchanged: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True, highlight=False)
    if unchanged:
        console.print(f"{workdir} is already prepared from this data; nothing changed.", markup=False)
        return
    console.print(f"Prepared {workdir}: kept {info['kept']} rows, dropped {len(dropped)}"
                  f"{', split by patient' if info['grouped'] else ''}.", markup=False)
    for reason, n in info["skipped"].items():
        console.print(f"  dropped {n:>6}  {reason}", markup=False)
    if len(dropped):
        console.print(f"  every dropped row is listed in {workdir / 'data_report.csv'}", markup=False)
    table = Table("split", *map(str, info["classes"]), "total")
    for split in SPLITS:
        row = [info["counts"][split][str(c)] for c in info["classes"]]
        table.add_row(split, *map(str, row), str(sum(row)))
    console.print(table)


def _commit(workdir: Path, frame: pd.DataFrame, dropped: pd.DataFrame, meta: dict, *, force: bool,
            write_images: Callable[[], None] | None = None) -> PrepareResult:
    """Fingerprint the split, compare it with what the workdir holds, and write the files."""
    data = frame.to_csv(index=False, lineterminator="\n").encode("utf-8")
    fingerprint = hashlib.sha256(data).hexdigest()
    k = int(frame["label"].max()) + 1
    if k < 2:
        raise UserError(f"Every kept row has label 0; a classifier needs at least two classes. "
                        f"Received: {meta['source']}")
    counts = {s: class_counts(frame.loc[frame["split"] == s, "label"], k) for s in SPLITS}
    info = {"classes": list(range(k)), "num_classes": k, "source": meta.pop("source"),
            "image_root": meta.pop("image_root"), "fingerprint": fingerprint,
            "skipped": {str(r): int(n) for r, n in dropped["reason"].value_counts().items()},
            "kept": len(frame), "counts": {s: {str(c): int(n) for c, n in enumerate(counts[s])} for s in SPLITS},
            "grouped": "group" in frame.columns, **meta}
    old = _previous(workdir, force)
    same = (old is not None and old.get("fingerprint") == fingerprint
            and old.get("source_sha256") == info.get("source_sha256"))
    if old is not None and not same and not force:
        raise UserError(f"{workdir} was prepared from other data; pass --force to overwrite it "
                        "(trained members there will be invalidated).")
    root = Path(info["image_root"])
    images_missing = write_images is not None and not all((root / p).is_file() for p in frame["path"])
    if same and old == info and not images_missing:
        _summary(workdir, info, dropped, unchanged=True)
        return _result(workdir, info)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "dataset.json").unlink(missing_ok=True)
    if write_images is not None and (not same or images_missing):
        write_images()
    report = dropped[["row", "image", "label", "reason"]].to_csv(index=False, lineterminator="\n")
    write_text(workdir / "data_report.csv", report)
    write_bytes(workdir / "split.csv", data)
    write_json(workdir / "dataset.json", info)
    _summary(workdir, info, dropped, unchanged=False)
    return _result(workdir, info)


def _check_workdir(workdir: str | os.PathLike) -> Path:
    workdir = Path(workdir)
    if workdir.exists() and not workdir.is_dir():
        raise UserError(f"Workdir {workdir} is a file; pass a folder (it is created if missing). "
                        f"Received: workdir={workdir}")
    return workdir


def prepare_csv(workdir: str | os.PathLike, labels_csv: str | os.PathLike, images_dir: str | os.PathLike, *,
                image_column: str = "image", label_column: str = "level", split_column: str = "split",
                val_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 0, force: bool = False,
                progress: bool = True) -> PrepareResult:
    """Check a labels CSV against an images folder and write the workdir's split.

    Args:
        workdir: the folder to prepare (created if missing).
        labels_csv: CSV with one row per image (e.g. Kaggle's ``image,level``).
        images_dir: folder the image names are relative to; names may omit the extension.
        image_column: column with the image names.
        label_column: column with the integer class, ``0..k-1``.
        split_column: optional column with train/val/test, honoured when present.
        val_fraction: share of all rows for val (carved from train if the CSV has no val).
        test_fraction: share of all rows for test.
        seed: seed of the split.
        force: overwrite a workdir prepared from other data.
        progress: show a progress bar on stderr for large sets.

    Returns:
        What was kept, dropped and split.

    Raises:
        UserError: bad files or columns, no usable row, a class too small to split, or a
            workdir prepared from other data without ``force``. Nothing is written then.
    """
    check_fractions(val_fraction, test_fraction)
    workdir, images = _check_workdir(workdir), Path(images_dir)
    if not images.is_dir():
        raise UserError(f"Images folder {images} does not exist or is not a folder; pass the folder holding the "
                        f"images via --images. Received: images={images}")
    table = read_labels_csv(labels_csv, image_column=image_column, label_column=label_column, split_column=split_column)
    checked = check_rows(table, images, progress=progress)
    if checked.kept.empty:
        top = checked.dropped["reason"].value_counts()
        raise UserError(f"No usable row in {labels_csv}: all {len(table)} rows were dropped, mostly because "
                        f"\"{top.index[0]}\" ({top.iloc[0]} rows); check --images and the image names.")
    kept = checked.kept
    groups = patient_groups(kept["path"].tolist())
    given = kept["split"].tolist() if checked.has_split else None
    split = assign_splits(kept["label"].to_numpy(), groups=groups, given=given, val_fraction=val_fraction,
                          test_fraction=test_fraction, seed=seed)
    frame = pd.DataFrame({"path": kept["path"].to_numpy(), "label": kept["label"].to_numpy(), "split": split})
    if groups is not None:
        frame["group"] = groups
    meta = {"source": f"csv:{Path(labels_csv).resolve()}", "image_root": str(images.resolve()),
            "split_source": "csv column" if checked.has_split else "random", "seed": seed,
            "val_fraction": val_fraction, "test_fraction": test_fraction}
    return _commit(workdir, frame, checked.dropped, meta, force=force)


def prepare_npz(workdir: str | os.PathLike, npz_path: str | os.PathLike, *, force: bool = False,
                progress: bool = True) -> PrepareResult:
    """Prepare a workdir from a MedMNIST-style ``.npz``, keeping its official split.

    The images are written once as ``<workdir>/images/{split}_{i:05d}.png``.

    Raises:
        UserError: the npz is missing, corrupt or malformed, or the workdir was prepared
            from other data without ``force``.
    """
    workdir = _check_workdir(workdir)
    source = read_npz(npz_path)
    frame = pd.DataFrame({
        "path": [f"{s}_{i:05d}.png" for s in SPLITS for i in range(len(source.labels[s]))],
        "label": [int(v) for s in SPLITS for v in source.labels[s]],
        "split": [s for s in SPLITS for _ in range(len(source.labels[s]))],
    })
    images = (workdir / "images").resolve()
    meta = {"source": f"npz:{source.path}", "image_root": str(images), "split_source": "official",
            "source_sha256": source.sha256, "seed": None, "val_fraction": None, "test_fraction": None}
    dropped = pd.DataFrame(columns=["row", "image", "label", "reason"])
    return _commit(workdir, frame, dropped, meta, force=force,
                   write_images=lambda: write_pngs(source, images, progress=progress))


def _leaves_root(path: str) -> bool:
    """Whether a split.csv path could leave the image root: empty, absolute, or with a ``..`` part."""
    parts = path.replace("\\", "/").split("/")
    return not path or path.startswith(("/", "\\")) or ".." in parts or (os.name == "nt" and ":" in parts[0])


def load_dataset(workdir: str | os.PathLike) -> PreparedDataset:
    """Read a prepared workdir, checking that ``split.csv`` still matches its fingerprint.

    Raises:
        UserError: the workdir is not prepared, ``split.csv`` was changed since, or it names an
            image outside the image root.
    """
    workdir = Path(workdir)
    meta = workdir / "dataset.json"
    if not meta.is_file():
        raise UserError(f"{workdir} is not prepared: run `python cli.py prepare --workdir {workdir} ...` first.")
    info = read_json(meta)
    split_csv = workdir / "split.csv"
    if not split_csv.is_file() or sha256_file(split_csv) != info.get("fingerprint"):
        raise UserError(f"{split_csv} is missing or was changed after prepare (its fingerprint does not match "
                        f"{meta}); run `python cli.py prepare --workdir {workdir} ... --force` again.")
    table = pd.read_csv(split_csv, dtype={"path": str, "label": "int64", "split": str, "group": str},
                        keep_default_na=False)
    outside = [p for p in table["path"] if _leaves_root(p)]
    if outside:
        raise UserError(f"{split_csv} names {len(outside)} image(s) outside the image root, e.g. {outside[0]!r}; "
                        f"its paths must be relative to {info.get('image_root')} without '..'; run "
                        f"`python cli.py prepare --workdir {workdir} ... --force` again.")
    image_root = Path(info["image_root"])
    if not image_root.is_dir() and str(info.get("source", "")).startswith("npz:") and (workdir / "images").is_dir():
        image_root = (workdir / "images").resolve()  # the workdir was moved
    return PreparedDataset(workdir=workdir, image_root=image_root, table=table, classes=list(info["classes"]),
                           num_classes=int(info["num_classes"]), fingerprint=info["fingerprint"], info=info)
