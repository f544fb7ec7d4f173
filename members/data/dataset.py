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
import itertools
import os
import sys
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from members.infra import csvsafe
from members.infra.archives import not_a_folder
from members.infra.atomic import read_json, sha256_file, write_bytes, write_json, write_text
from members.data import stamps
from members.data.duplicates import describe, merge_groups
from members.infra.errors import UserError
from members.data.classes import GAP_SHARE, choose_ordinal, encode_labels
from members.data.folders import loose_files, scan_class_folders
from members.data.grouping import find_groups, read_group_column
from members.data.labels import (REASON_AMBIGUOUS_FOLDERS, REASON_BAD_SPLIT, REASON_MISSING, REASON_MISSING_LABEL,
                                  REASON_NO_LABEL, REASON_OUTSIDE, check_rows, parse_label, read_labels_csv)
from members.data.medmnist import fetch_medmnist, read_npz, write_pngs
from members.data.split import SPLITS, assign_splits, check_fractions, class_counts, patient_groups, spanning
from members.infra.transaction import WorkdirLock, commit_entries, journal_path, roll_forward

PREPARE = "prepare"  # the name of prepare's lock and commit folder in the workdir
PREPARED_FILES = ("data_report.csv", "split.csv", "dataset.json")  # what prepare writes at the root (+ images/ of npz)

__all__ = ["PrepareResult", "PreparedDataset", "prepare_csv", "prepare_folders", "prepare_npz", "load_dataset", "fetch_medmnist",
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
    groups_across_splits: int = 0  # patients a given split puts in two splits (prepare kept the split as given)


@dataclass(frozen=True, eq=False)
class PreparedDataset:
    """A prepared workdir's split table (``path, label, split[, group]``) and its metadata."""

    workdir: Path
    image_root: Path
    table: pd.DataFrame
    classes: list
    num_classes: int
    fingerprint: str
    info: dict

    @property
    def ordinal(self) -> bool:
        """Whether the classes are ordered grades (``dataset.json``'s ``ordinal``; True when absent)."""
        return bool(self.info.get("ordinal", True))

    @property
    def class_names(self) -> list[str]:
        """The classes as display texts, in index order."""
        return [str(c) for c in self.classes]

    def rows(self, split: str) -> pd.DataFrame:
        """The rows of one split, with ``row_id`` (the 0-based row of ``split.csv``) first."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}; got {split!r}")
        part = self.table[self.table["split"] == split]
        return part.reset_index(names="row_id").astype({"row_id": "int64"})

    def absolute_paths(self, split: str) -> list[str]:
        """Absolute image paths of one split, in ``rows(split)`` order."""
        return [str(self.image_root / p) for p in self.rows(split)["path"]]

    def check_images(self, splits: Sequence[str] | None = None) -> None:
        """Refuse, before any training, a workdir whose listed images are not all there any more.

        Args:
            splits: check the images of these splits only (``import-member`` runs a model on val
                and test); default every row of ``split.csv``.

        Raises:
            UserError: one sentence with the count and the first missing file (removed, moved or
                renamed after ``prepare``).
        """
        table = self.table if splits is None else self.table[self.table["split"].isin(list(splits))]
        what = "images" if splits is None else f"{' and '.join(splits)} images"
        missing = [p for p in table["path"] if not os.path.isfile(self.image_root / p)]
        if missing:
            raise UserError(
                f"{len(missing)} of the {len(table)} {what} listed in {self.workdir / 'split.csv'} are no longer "
                f"in {self.image_root} (e.g. {missing[0]!r}): they were removed, moved or renamed after prepare. "
                f"{_moved_hint(self.workdir, self.info, everyone=len(missing) == len(table))}")
        recorded = stamps.read(self.workdir, self.info.get("images_digest"))
        other = stamps.changed(self.image_root, recorded, table["path"]) if recorded else []
        if other:
            raise UserError(
                f"{len(other)} of the {len(table)} {what} listed in {self.workdir / 'split.csv'} are other pictures "
                f"now than the ones prepare recorded (e.g. {other[0]!r}: other bytes under the same name), so a "
                "member trained or imported now would not meet the pictures the others did. Restore them, or prepare "
                "the new pictures into "
                f"a new workdir (`python cli.py prepare --workdir NEW ...`).")


def _moved_hint(workdir: Path, info: dict, *, everyone: bool) -> str:
    """What to do about images gone from where prepare found them. All of them (``everyone``): the folder was moved,
    so prepare again from its new place, without --force (the same data keeps the members). Some: restore them, or
    prepare without them with --force (which invalidates the members)."""
    import shlex

    work = shlex.quote(str(workdir))
    if not everyone:
        return (f"Restore them, or run `python cli.py prepare --workdir {work} ... --force` again to prepare without "
                "them (the members trained on them are then invalidated).")
    kind, _, where = str(info.get("source", "")).partition(":")
    if kind not in ("csv", "folders"):  # prepare wrote them itself (--npz, --medmnist): the same command writes them again
        return (f"Run the same `python cli.py prepare --workdir {work} ...` again, without --force: it writes them "
                "again from the same source and keeps the members trained on them.")
    labels = (f"--labels {shlex.quote(where) if Path(where).is_file() else '<the labels CSV>'} " if kind == "csv"
              else "")
    return (f"If they were moved, run `python cli.py prepare --workdir {work} {labels}--images <their new folder>` "
            "with the options used before and without --force: the same data at its new place keeps the members "
            "trained on it; if they are gone, restore them.")


def _result(workdir: Path, info: dict) -> PrepareResult:
    counts = {s: {int(c): int(n) for c, n in info["counts"][s].items()} for s in SPLITS}
    return PrepareResult(workdir=workdir, counts=counts, kept=int(info["kept"]), skipped=dict(info["skipped"]),
                         grouped=bool(info["grouped"]), fingerprint=info["fingerprint"],
                         groups_across_splits=int(info.get("groups_across_splits") or 0))


def _previous(workdir: Path, force: bool) -> dict | None:
    """The workdir's dataset.json, or None when it has none (or a corrupt one and ``force``)."""
    path = workdir / "dataset.json"
    if not path.exists():
        return None
    try:
        info = read_json(path)
    except UserError:
        info = None
    if isinstance(info, dict):
        return info
    if force:
        return None
    raise UserError(f"{path} is corrupt (not a JSON object); pass --force to prepare {workdir} again.")


def _summary(workdir: Path, info: dict, dropped: pd.DataFrame, unchanged: bool, notes: Sequence[str] = ()) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True, highlight=False)
    for note in notes:
        console.print(note, markup=False)
    if unchanged:
        console.print(f"{workdir} is already prepared from this data; nothing changed.", markup=False)
        return
    console.print(f"Prepared {workdir}: kept {info['kept']} rows, dropped {len(dropped)}"
                  f"{', split by patient' if info['grouped'] else ''}.", markup=False)
    for reason, n in info["skipped"].items():  # one file by name; every one is in data_report.csv
        names = dropped.loc[dropped["reason"] == reason, "image"] if len(dropped) else []
        example = f" (e.g. {csvsafe.printable(str(names.iloc[0]))})" if len(names) and str(names.iloc[0]) else ""
        console.print(f"  dropped {n:>6}  {reason}{example}", markup=False)
    if len(dropped):
        console.print(f"  every dropped row is listed in {workdir / 'data_report.csv'}", markup=False)
    table = Table("split", *map(str, info["classes"]), "total")
    for split in SPLITS:
        row = [info["counts"][split][str(c)] for c in range(len(info["classes"]))]
        table.add_row(split, *map(str, row), str(sum(row)))
    console.print(table)


def _commit(workdir: Path, frame: pd.DataFrame, dropped: pd.DataFrame, meta: dict, *, force: bool,
            write_images: Callable[[Path], None] | None = None, class_names: Sequence[str] | None = None,
            ordinal: bool | None = None, notes: Sequence[str] = ()) -> PrepareResult:
    """Fingerprint the split, compare it with what the workdir holds, and write the files."""
    data = frame.to_csv(index=False, lineterminator="\n").encode("utf-8")
    fingerprint = hashlib.sha256(data).hexdigest()
    k = len(class_names) if class_names else int(frame["label"].max()) + 1
    if k < 2:
        only = class_names[0] if class_names else 0
        deeper = ""
        if str(meta["source"]).startswith("folders:"):
            root = Path(str(meta["source"])[len("folders:"):]) / str(only)
            if root.is_dir() and sum(p.is_dir() for p in root.iterdir()) >= 2:
                deeper = f"; if {root} holds the class folders, pass --images {root}"
        raise UserError(f"Every kept row has the same class ({only}); a classifier needs at least two classes"
                        f"{deeper}. Received: {meta['source']}")
    classes = list(class_names) if class_names else list(range(k))
    ordinal, why = choose_ordinal(bool(class_names), ordinal, classes)
    counts = {s: class_counts(frame.loc[frame["split"] == s, "label"], k) for s in SPLITS}
    info = {"classes": classes, "num_classes": k, "ordinal": ordinal, "source": meta.pop("source"),
            "image_root": meta.pop("image_root"), "fingerprint": fingerprint,
            "skipped": {str(r): int(n) for r, n in dropped["reason"].value_counts().items()},
            "kept": len(frame), "counts": {s: {str(c): int(n) for c, n in enumerate(counts[s])} for s in SPLITS},
            "grouped": "group" in frame.columns, **meta}
    notes = [why, *notes]
    stamped = None
    if write_images is None:  # images read where they lie: record which pictures they are (members.data.stamps)
        stamped = stamps.take(Path(info["image_root"]), frame["path"], _earlier_stamps(workdir, info["image_root"]))
        info["images_digest"] = stamps.set_digest(stamped)
    if not journal_path(workdir, PREPARE).exists() and _unchanged(workdir, frame, info, write_images):
        _summary(workdir, info, dropped, unchanged=True, notes=notes)  # read only: a rerun that changes nothing
        return _result(workdir, info)  # writes nothing and takes no lock (a read-only workdir is no obstacle)
    workdir.mkdir(parents=True, exist_ok=True)
    with WorkdirLock(workdir, PREPARE):  # the checks and the write under one lock: two prepares never both pass them
        roll_forward(workdir, PREPARE, locked=True)
        return _check_and_write(workdir, frame, data, dropped, info, classes, ordinal, fingerprint, force=force,
                                write_images=write_images, notes=notes, stamped=stamped)


def _earlier_stamps(workdir: Path, image_root: str) -> dict | None:
    """The stamps an earlier prepare recorded for the same images folder (their digests are reused for files whose
    size and mtime did not change), or None."""
    try:
        old = read_json(workdir / "dataset.json")
    except UserError:
        return None
    if not isinstance(old, dict) or old.get("image_root") != image_root:
        return None
    return stamps.read(workdir, old.get("images_digest"))


def _other_pictures(workdir: Path, old: dict, stamped: pd.DataFrame) -> list[str]:
    """The kept paths whose picture is not the one the earlier prepare recorded (by the stamps file, or, without a
    readable one, every path: the set digest differs)."""
    earlier = stamps.read(workdir, old.get("images_digest")) or {}
    new = dict(zip(stamped["path"], stamped["digest"]))
    return [p for p in stamped["path"] if p in earlier and earlier[p][2] != new[p]] or list(stamped["path"])


def _check_and_write(workdir: Path, frame: pd.DataFrame, data: bytes, dropped: pd.DataFrame, info: dict,
                     classes: list, ordinal: bool, fingerprint: str, *, force: bool,
                     write_images: Callable[[Path], None] | None, notes: list[str],
                     stamped: pd.DataFrame | None = None) -> PrepareResult:
    """:func:`_commit`'s decision (the same data, other data, other options) and its files, under the prepare lock."""
    old = _previous(workdir, force)
    if old is None and not force:
        _refuse_orphans(workdir, fingerprint)
    same = (old is not None and old.get("fingerprint") == fingerprint
            and old.get("source_sha256") == info.get("source_sha256"))
    if (not same and old is not None and old.get("fingerprint") == fingerprint and write_images is not None
            and _same_pixels(workdir / "images", _npz_of(info))):
        same = True  # the same pictures in another file (saved again, compressed, copied): the same data
    if same and stamped is not None and old.get("images_digest") not in (None, info.get("images_digest")):
        # the same names and labels, other pictures: split.csv's fingerprint cannot tell the members apart
        other = _other_pictures(workdir, old, stamped)
        made = _made_on(workdir, fingerprint)
        if not force or made:
            raise UserError(
                f"{workdir} was prepared from other pictures under the same file names: {len(other)} of the "
                f"{len(stamped)} images differ from the ones prepare recorded (e.g. {other[0]!r}), so "
                + (f"the members made there ({', '.join(made[:4])}{', …' if len(made) > 4 else ''}) would pass as "
                   "trained on the new ones; prepare the new pictures into a new workdir, or move "
                   f"{workdir / 'members'} and {workdir / 'ensemble'} away first and pass --force."
                   if made else "pass --force to prepare the new pictures here (or restore the old ones)."))
        same = False
    if old is not None and not same and not force:
        raise UserError(f"{workdir} was prepared {_what_differs(old, info)}; pass --force to overwrite it "
                        "(trained members there will be invalidated).")
    if same and old.get("classes") != classes:
        same = False  # the same split.csv with other class names (or order): members must not carry over
        if not force:
            raise UserError(f"{workdir} was prepared {_what_differs(old, info)}; pass --force to overwrite it "
                            "(trained members there will be invalidated).")
    if same and not force and bool(old.get("ordinal", True)) != ordinal:  # the same split, read another way
        keep = "--ordinal" if old.get("ordinal", True) else "--nominal"
        raise UserError(f"{workdir} was prepared {_what_differs(old, info)}; pass {keep} to keep it as it is, or "
                        "--force to change it (the members and the vote there were made for "
                        f"{'ordered grades' if keep == '--ordinal' else 'unordered classes'}: retrain and vote again).")
    images_missing = _images_missing(frame, info, write_images)
    split_intact = _split_intact(workdir, info)
    if same and stamped is not None and old.get("images_digest") is None:
        notes.append(f"Recorded which pictures the {len(stamped)} images are ({stamps.STAMPS}: their sizes and "
                     "digests), so that later runs notice other pictures put under the same file names.")
    if same and old == info and not images_missing and split_intact:
        _summary(workdir, info, dropped, unchanged=True, notes=notes)
        return _result(workdir, info)
    if same and not split_intact:
        damaged = [name for name, ok in (("split.csv", (workdir / "split.csv").is_file()
                                          and _sha256_of(workdir / "split.csv") == fingerprint),
                                         ("data_report.csv", (workdir / "data_report.csv").is_file()),
                                         (stamps.STAMPS, stamped is None or old.get("images_digest") is None
                                          or stamps.read(workdir, info.get("images_digest")) is not None))
                   if not ok]
        if damaged:
            notes.append(f"{' and '.join(str(workdir / n) for n in damaged)} "
                         f"{'was' if len(damaged) == 1 else 'were'} missing or changed: written again from the same "
                         "data, so the members trained on it stay valid.")
    if not same:  # the split or the images change: never under a member that is training or a vote that is reading
        _refuse_while_in_use(workdir)
        if write_images is not None:  # new pictures for the rows of members made on other ones?
            _refuse_same_split_other_images(workdir, old, info, fingerprint)
    report = csvsafe.frame(dropped[["row", "image", "label", "reason"]]).to_csv(index=False, lineterminator="\n")
    images = write_images is not None and (not same or images_missing)

    def write(staging: Path) -> None:  # the old dataset stays whole until all of this is written
        if images:
            write_images(staging / "images")
        write_text(staging / "data_report.csv", report)
        if stamped is not None:
            write_text(staging / stamps.STAMPS, stamps.to_csv(stamped))
        write_bytes(staging / "split.csv", data)
        write_json(staging / "dataset.json", info)

    after = (f"The dataset was committed: {workdir} holds it now." if old is None else
             "The dataset was written again from the same data and committed: the members trained on it stay valid."
             if same else f"The new dataset was committed: {workdir} holds it now, and the members trained on the "
             "previous one are stale (vote refuses them): train them again.")
    commit_entries(workdir, PREPARE, write,
                   ["images"] * images + [stamps.STAMPS] * (stamped is not None) + list(PREPARED_FILES), note=after)
    _summary(workdir, info, dropped, unchanged=False, notes=notes)
    return _result(workdir, info)


def _images_missing(frame: pd.DataFrame, info: dict, write_images: Callable[[Path], None] | None) -> bool:
    """Whether some of the images prepare writes itself (from an .npz) are not in the image root."""
    root = Path(info["image_root"])
    return write_images is not None and not all((root / p).is_file() for p in frame["path"])


def _split_intact(workdir: Path, info: dict) -> bool:
    """Whether the workdir's split.csv is the one of ``info``'s fingerprint, its data_report.csv is there, and so is
    the image_stamps.csv of its ``images_digest`` (when it has one)."""
    return ((workdir / "split.csv").is_file() and _sha256_of(workdir / "split.csv") == info["fingerprint"]
            and (workdir / "data_report.csv").is_file()
            and (not info.get("images_digest") or stamps.read(workdir, info["images_digest"]) is not None))


def _unchanged(workdir: Path, frame: pd.DataFrame, info: dict, write_images: Callable[[Path], None] | None) -> bool:
    """Whether the workdir already holds exactly this preparation (:func:`_check_and_write`'s "nothing changed"),
    read without the lock; a False answer is decided again under it."""
    try:
        old = read_json(workdir / "dataset.json")
    except UserError:
        return False
    return old == info and not _images_missing(frame, info, write_images) and _split_intact(workdir, info)


def _made_on(workdir: Path, fingerprint: str) -> list[str]:
    """The members (and ``the voted ensemble``) of ``workdir`` made on the split whose fingerprint is ``fingerprint``."""
    made = []
    for path in sorted((workdir / "members").glob("*/metrics.json")):
        try:
            if read_json(path).get("fingerprint") == fingerprint:
                made.append(path.parent.name)
        except (UserError, AttributeError):
            continue
    try:
        if read_json(workdir / "ensemble" / "manifest.json").get("fingerprint") == fingerprint:
            made.append("the voted ensemble")
    except (UserError, AttributeError):
        pass
    return made


def _refuse_same_split_other_images(workdir: Path, old: dict | None, info: dict, fingerprint: str) -> None:
    """Refuse new .npz images where members or an ensemble were made on this very ``split.csv`` (the same rows and
    labels) but the images on disk are not the new ones (another set with the same labels, the same at another size,
    or an earlier prepare of this workdir in between): they are told apart from the new data by the split's
    fingerprint only, so they would pass as trained on the new images."""
    made = _made_on(workdir, fingerprint)
    if made and not _same_pixels(workdir / "images", _npz_of(info)):
        then = f"prepared from {old.get('source')}" if old else "prepared before"
        raise UserError(f"{workdir} was {then}, and {info.get('source')} holds other images under the rows and labels "
                        f"that the members made there ({', '.join(made[:4])}{', …' if len(made) > 4 else ''}) were "
                        "trained on, so they would pass as trained on the new images; prepare it into a new workdir, "
                        f"or move {workdir / 'members'} and {workdir / 'ensemble'} away first.")


def _npz_of(info: dict) -> str:
    return str(info.get("source", "")).removeprefix("npz:")


def _same_pixels(images: Path, npz: str) -> bool:
    """Whether every image of ``npz`` is the PNG an earlier prepare wrote for it in ``images`` (an .npz saved again,
    compressed, or copied: another file, the same pictures); read one split at a time, and only on this rare path."""
    from PIL import Image

    try:
        with np.load(npz, allow_pickle=False) as data:
            for split in SPLITS:
                for i, image in enumerate(data[f"{split}_images"]):
                    with Image.open(images / f"{split}_{i:05d}.png") as png:
                        if not np.array_equal(np.asarray(png), np.squeeze(image, axis=-1) if image.ndim == 3
                                              and image.shape[-1] == 1 else image):
                            return False
    except (OSError, KeyError, ValueError):
        return False
    return True


def _refuse_while_in_use(workdir: Path) -> None:
    """Refuse to change the data of a workdir where a member is training or a vote is running (a live lock)."""
    from members.infra.lock import live_holder

    members = workdir / "members"
    busy = [(d, h) for d in (sorted(members.iterdir()) if members.is_dir() else [])
            if d.is_dir() and (h := live_holder(d / ".lock")) is not None]
    if busy:
        folder, holder = busy[0]
        raise UserError(f"Member {folder.name.strip('.')!r} is being trained in {workdir} right now (pid "
                        f"{holder.get('pid')} on {holder.get('host')}); prepare would change its images or split under "
                        "it. Wait for the training to finish (or stop it), then run prepare again; if that process is "
                        f"gone (a worker on another machine that died), delete {folder / '.lock'}.")
    holder = live_holder(workdir / ".vote.lock")
    if holder is not None:
        raise UserError(f"A vote is running on {workdir} (pid {holder.get('pid')}); prepare would change the data it "
                        "reads. Wait for it to finish, then run prepare again.")


def _refuse_orphans(workdir: Path, fingerprint: str) -> None:
    """A workdir without ``dataset.json`` (deleted) that still holds members or an ensemble fitted on another split:
    a prepare would cut them off silently, so it needs ``--force`` as any other change of data does."""
    fitted: dict[str, str] = {}
    for metrics in sorted((workdir / "members").glob("*/metrics.json")):
        try:
            fitted[metrics.parent.name] = str(read_json(metrics).get("fingerprint") or "")
        except (UserError, AttributeError):
            continue
    manifest = workdir / "ensemble" / "manifest.json"
    if manifest.is_file():
        try:
            fitted["the voted ensemble"] = str(read_json(manifest).get("fingerprint") or "")
        except (UserError, AttributeError):
            pass
    other = [name for name, fp in fitted.items() if fp and fp != fingerprint]
    if other:
        raise UserError(f"{workdir} has no dataset.json, yet holds {', '.join(other[:4])}"
                        f"{', ...' if len(other) > 4 else ''} fitted on another split than this prepare makes; "
                        "prepare it with the data and options used before to keep them, or pass --force to start "
                        "over (they will be invalidated).")


def _what_differs(old: dict, new: dict) -> str:
    """How a workdir's earlier ``dataset.json`` differs from this prepare's: other data, or other options."""
    if old.get("excluded_labels") != new.get("excluded_labels"):
        shown = lambda d: ", ".join(d.get("excluded_labels") or []) or "none"  # noqa: E731
        return f"with other --exclude-label ({shown(old)} then, {shown(new)} now)"
    from members.data import labels as reasons

    same_source = all(old.get(k) == new.get(k) for k in ("source", "image_root", "source_sha256"))
    rules = {r: n for r, n in (new.get("skipped") or {}).items() if r not in (old.get("skipped") or {})}
    changed = {reasons.REASON_MISSING, reasons.REASON_EMPTY, reasons.REASON_UNDECODABLE, reasons.REASON_NO_NAME,
               reasons.REASON_NO_LABEL, reasons.REASON_MISSING_LABEL, reasons.REASON_BAD_LABEL, reasons.REASON_LABEL_RANGE, reasons.REASON_BAD_SPLIT,
               reasons.REASON_DUPLICATE, reasons.REASON_CONFLICT, reasons.REASON_OUTSIDE, reasons.REASON_LOOP,
               reasons.REASON_FOREIGN}
    if same_source and rules and not set(rules) - changed:  # files gone, broken or relabelled: the data changed
        shown = "; ".join(f"{n} row(s): {r}" for r, n in rules.items())
        return (f"from other data: the images or labels changed since (rows kept {old.get('kept')} then, "
                f"{new.get('kept')} now; dropped now and not then: {shown})")
    if same_source and rules and (old.get("kept") or 0) - (new.get("kept") or 0) == sum(rules.values()):
        from members.data.labels import REASON_COPY_CONFLICT, REASON_FLAT

        reasons = "; ".join(f"{n} row(s): {r}" for r, n in rules.items())
        # flat frames decode and conflicting copies are images: only the new rule differs, the old split works
        after = ("if nothing else changed, the workdir and its members still work as they are (train-member, vote, "
                 "predict)" if set(rules) <= {REASON_FLAT, REASON_COPY_CONFLICT} else
                 "the earlier workdir cannot train on such rows")
        return (f"from this data by an earlier version of prepare, which kept rows this one drops ({reasons}); "
                f"{after}")
    if not same_source or old.get("kept") != new.get("kept"):
        differ = [f"{what} {old.get(k)} then, {new.get(k)} now" for k, what in
                  (("source", "source"), ("image_root", "images in"), ("kept", "rows kept"))
                  if old.get(k) != new.get(k)] or ["the source file's content changed"]
        return f"from other data ({'; '.join(differ)})"
    options = [f"{k} {old.get(k)!r} then, {new.get(k)!r} now" for k in ("seed", "val_fraction", "test_fraction", "grouping")
               if old.get(k) != new.get(k)]
    reading = _reading_differs(old, new)
    if options:
        return f"from the same data with other options ({'; '.join(reading + options)}), which give another split"
    if reading:
        return f"from the same data with other options ({'; '.join(reading)})"
    return "from the same data, but its split differs (the images or their labels changed)"


def _reading_differs(old: dict, new: dict) -> list[str]:
    """How the classes are read differently now: their names or order (``--classes``), or ``--ordinal/--nominal``."""
    out = []
    then, now = old.get("classes"), new.get("classes")
    if then != now:
        how = ("another order, from --classes" if sorted(map(str, then or [])) == sorted(map(str, now or []))
               else "other names")
        out.append(f"classes {', '.join(map(str, then or []))} then, {', '.join(map(str, now or []))} now: {how}")
    if bool(old.get("ordinal", True)) != bool(new.get("ordinal", True)):
        kind = {True: "ordered grades (--ordinal)", False: "unordered classes (--nominal)"}
        out.append(f"{kind[bool(old.get('ordinal', True))]} then, {kind[bool(new.get('ordinal', True))]} now")
    return out


def _sha256_of(path: Path) -> str | None:
    """SHA-256 of a file's bytes, or None when it cannot be read."""
    try:
        return sha256_file(path)
    except OSError:
        return None


def _check_workdir(workdir: str | os.PathLike) -> Path:
    workdir = Path(workdir)
    if workdir.exists() and not workdir.is_dir():
        raise UserError(f"Workdir {workdir} is a file; pass a folder (it is created if missing). "
                        f"Received: workdir={workdir}")
    return workdir


def prepare_csv(workdir: str | os.PathLike, labels_csv: str | os.PathLike, images_dir: str | os.PathLike, *,
                image_column: str = "image", label_column: str = "level", split_column: str = "split",
                val_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 0, force: bool = False,
                progress: bool = True, ordinal: bool | None = None, classes: Sequence[str] | None = None,
                group_column: str | None = None, group_pattern: str | None = None,
                exclude: Sequence[str] = ()) -> PrepareResult:
    """Check a labels CSV against an images folder and write the workdir's split.

    Args:
        workdir: the folder to prepare (created if missing).
        labels_csv: CSV with one row per image (e.g. Kaggle's ``image,level``).
        images_dir: folder the image names are relative to; names may omit the extension.
        image_column: column with the image names.
        label_column: column with the class: an integer ``0..k-1`` or a class name.
        split_column: optional column with train/val/test, honoured when present.
        val_fraction: share of all rows for val (carved from train if the CSV has no val).
        test_fraction: share of all rows for test.
        seed: seed of the split.
        force: overwrite a workdir prepared from other data.
        progress: show a progress bar on stderr for large sets.
        ordinal: whether the classes are ordered grades; ``None``: integers are, names are not.
        classes: the class names in order (default: sorted); only for named classes.
        group_column: a CSV column with the patient id (see :mod:`members.data.grouping`).
        group_pattern: a regex with one capture group giving the patient id from the image path.
        exclude: labels whose rows are left out (listed in ``data_report.csv``), e.g. DDR's grade 5
            (ungradable) or an ``ungradable`` class folder.

    Returns:
        What was kept, dropped and split.

    Raises:
        UserError: bad files or columns, no usable row, a class too small to split, or a
            workdir prepared from other data without ``force``. Nothing is written then.
    """
    from members.infra.validate import check_seed

    val_fraction, test_fraction = check_fractions(val_fraction, test_fraction)
    seed = check_seed(seed, "--seed")
    workdir, images = _check_workdir(workdir), Path(images_dir)
    if not images.is_dir():
        fix = "pass the folder holding the images via --images"
        raise UserError(f"Images folder {images} {not_a_folder(images, fix)}. Received: images={images}")
    table = read_labels_csv(labels_csv, image_column=image_column, label_column=label_column, split_column=split_column)
    column = None if group_column is None else read_group_column(labels_csv, group_column, table["row"].tolist())
    return _prepare_table(workdir, table, images, source=f"csv:{Path(labels_csv).resolve()}", what=str(labels_csv),
                          val_fraction=val_fraction, test_fraction=test_fraction, seed=seed, force=force,
                          progress=progress, ordinal=ordinal, classes=classes, group_cells=column,
                          group_column=group_column, group_pattern=group_pattern, folders=False, exclude=exclude)


def prepare_folders(workdir: str | os.PathLike, images_dir: str | os.PathLike, *, val_fraction: float = 0.15,
                    test_fraction: float = 0.15, seed: int = 0, force: bool = False, progress: bool = True,
                    ordinal: bool | None = None, classes: Sequence[str] | None = None,
                    group_pattern: str | None = None, exclude: Sequence[str] = ()) -> PrepareResult:
    """Prepare a workdir from a folder-per-class layout (``DIR/<class>/**/*.jpg``, see :mod:`members.data.folders`).

    Split folders ``DIR/{train,val,test}/<class>/`` are honoured when present (a missing val
    or test is carved from train). The arguments are :func:`prepare_csv`'s.

    Raises:
        UserError: no class folder, an empty class folder, a class name that is also an
            integer, or any of :func:`prepare_csv`'s reasons.
    """
    from members.infra.validate import check_seed

    val_fraction, test_fraction = check_fractions(val_fraction, test_fraction)
    seed = check_seed(seed, "--seed")
    workdir = _check_workdir(workdir)
    table = scan_class_folders(images_dir, workdir=workdir)
    loose = loose_files(images_dir)
    if loose:
        print(f"Ignored {loose} image file(s) directly in {images_dir}: only files inside a class folder are used.",
              file=sys.stderr)
    return _prepare_table(workdir, table, Path(images_dir), source=f"folders:{Path(images_dir).resolve()}",
                          what=str(images_dir), val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
                          force=force, progress=progress, ordinal=ordinal, classes=classes, group_cells=None,
                          group_column=None, group_pattern=group_pattern, folders=True, exclude=exclude)


def _no_usable_row_fix(reason: str, dropped: pd.DataFrame, images: Path) -> str:
    """What to do when every row was dropped, mostly for ``reason``."""
    names = dropped.loc[dropped["reason"] == reason, "image"].astype(str).tolist()
    if reason == REASON_BAD_SPLIT:
        return "write train, val or test in the split column, or leave the column out to let prepare split"
    if reason == REASON_NO_LABEL:
        return ("check that the rows use the header's separator (a ';' or tab in the rows under a ',' header leaves "
                "every label empty) and that every row has a label")
    if reason == REASON_MISSING_LABEL:
        return ("the label column holds no labels (an unlabelled test list?): check --label-column, and grade "
                "unlabelled images with `predict`")
    if reason.startswith(REASON_AMBIGUOUS_FOLDERS):
        return ("remove the sub-folders that do not belong (a resized or older copy of the set?), or name each image "
                "with its sub-folder in the labels file")
    if reason == REASON_OUTSIDE and _mostly_links(images):
        return (f"the files in {images} are symbolic links to files outside it (a DVC or git-annex checkout?), which "
                f"prepare does not follow; copy the set with `cp -rL {images} <new folder>` and pass that as --images")
    if reason == REASON_MISSING:  # "images/x.jpeg" in the CSV, --images pointing at images/ itself
        first = {n.replace("\\", "/").split("/")[0] for n in names}
        if first == {images.name} and not (images / images.name).exists():
            return f"the names start with '{images.name}/', the folder itself: pass its parent, --images {images.parent}"
    return "check --images and the image names"


INCOMPLETE_SHARE, INCOMPLETE_ROWS = 0.5, 20
"""More than this share of the rows, and at least this many, naming an image file that is not there: the images
folder looks incomplete (a partial download), said in a warning."""


def _incomplete_images_warning(dropped: pd.DataFrame, rows: int, images: Path) -> str | None:
    """A warning when most rows name a missing image file (only part of a multi-part download extracted), else None."""
    missing = dropped.loc[dropped["reason"] == REASON_MISSING, "image"]
    if len(missing) < INCOMPLETE_ROWS or len(missing) <= INCOMPLETE_SHARE * rows:
        return None
    return (f"Warning: {len(missing)} of the {rows} rows name an image file that is not in {images} (e.g. "
            f"{missing.iloc[0]!r}), so the images folder looks incomplete: only part of a multi-part archive "
            "extracted (train.zip.001, .002, …), or a download cut short? Extract every part into it, or check "
            "--images.")


def _mostly_links(folder: Path, look: int = 50) -> bool:
    """Whether most of the first ``look`` entries of ``folder`` are symbolic links."""
    try:
        entries = [p.is_symlink() for p in itertools.islice(folder.iterdir(), look)]
    except OSError:
        return False
    return bool(entries) and sum(entries) > len(entries) / 2


def _no_zero_advice(first: int, values: list[int], folders: bool) -> str:
    """The sentence for integer labels that start above 0: they count from ``first`` (renumber them), or the
    lower grades are simply absent (an IDRiD subset without grade 0: name the classes to keep the numbers)."""
    shown = ", ".join(map(str, values[:6])) + (", ..." if len(values) > 6 else "")
    absent = "grade 0 is" if first == 1 else f"grades 0–{first - 1} are"
    names = ",".join(map(str, values[:10])) + (",..." if len(values) > 10 else "")
    if folders:
        renumber = f"rename the class folders {values[0]}/ … {values[-1]}/ to 0/ … {values[-1] - first}/"
    else:
        renumber = f"subtract {first} from every label in the CSV"
    return (f"The integer labels start at {first}, not 0 ({shown}), but labels are the class indices 0 … k-1, each with "
            f"rows: if they count from {first}, renumber them from 0 ({renumber}); if they are grades and {absent} "
            f"simply absent (a subset without healthy eyes), renumbering would shift every grade, so keep the numbers "
            f"as class names instead (--classes {names} --ordinal, or --nominal for unordered classes), or add images "
            f"of the absent grade{'' if first == 1 else 's'}.")


def _drop_beyond_gap(kept: pd.DataFrame, dropped: pd.DataFrame, original: dict,
                     identical: list[list[int]], folders: bool = False) -> tuple[pd.DataFrame, pd.DataFrame, list[list[int]]]:
    """Integer labels must be the classes 0 … k-1, each with rows. A few rows whose label lies beyond a
    gap (a grade 7 in a 0–4 set: a typo) are dropped and reported like any bad row; more than
    :data:`GAP_SHARE` of the rows beyond a gap is refused in one sentence naming the gap and the rows.
    Labels starting above 0 are refused with both readings (:func:`_no_zero_advice`).
    """
    counts = np.bincount(kept["label"].to_numpy(np.int64))
    missing = [c for c in range(len(counts)) if counts[c] == 0]
    if not missing:
        return kept, dropped, identical
    beyond = kept[kept["label"] > missing[0]]
    values = sorted(set(beyond["label"].tolist()))
    def lines(v: int) -> str:
        at = beyond.loc[beyond["label"] == v, "row"].tolist()
        return ", ".join(map(str, at[:3])) + (f", … ({len(at) - 3} more)" if len(at) > 3 else "")

    rows = ", ".join(f"{v} ({int((beyond['label'] == v).sum())} row(s), line {lines(v)})" for v in values[:4])
    rows += f", and {len(values) - 4} more labels" if len(values) > 4 else ""
    gap = ", ".join(map(str, missing[:6])) + (", ..." if len(missing) > 6 else "")
    if missing == list(range(len(missing))):  # 1-based grades, or grade 0 absent: no gap above the first label
        raise UserError(_no_zero_advice(len(missing), values, folders))
    if missing[0] == 0 or len(beyond) >= GAP_SHARE * len(kept):
        every = sorted(set(kept["label"].tolist()))
        names = ",".join(map(str, every[:10])) + (",..." if len(every) > 10 else "")
        raise UserError(f"The integer labels leave a gap: no row has {gap}, yet {len(beyond)} of the {len(kept)} rows "
                        f"have a larger label: {rows}. Labels are the class indices 0 … k-1, each with rows: if the "
                        f"numbers are the classes, keep them as class names (--classes {names}, adding --ordinal if "
                        "they are ordered grades, or --nominal); if the larger labels are mistakes, fix or remove those "
                        f"rows (when they are under {GAP_SHARE:.0%} of the rows prepare drops and reports them "
                        "itself).")
    reason = f"label beyond a gap in the labels (no row has {gap}): not one of this set's classes 0–{missing[0] - 1}"
    print(f"Dropped {len(beyond)} row(s) whose label lies beyond a gap: {rows}.", file=sys.stderr)
    return _drop_rows(kept, dropped, original, identical, (kept["label"] > missing[0]).to_numpy(), reason)


RARE_TOP_ROWS = 3  # one row in each of train, val and test


def _drop_rare_top(kept: pd.DataFrame, dropped: pd.DataFrame, original: dict,
                   identical: list[list[int]]) -> tuple[pd.DataFrame, pd.DataFrame, list[list[int]]]:
    """A largest integer label with fewer rows than the split needs (:data:`RARE_TOP_ROWS`), under
    :data:`GAP_SHARE` of the rows — a grade 5 typed for a 4, or a stray 'ungradable' grade — is dropped and
    reported like a label beyond a gap; the split of the others goes on. More rows are refused by the split."""
    labels = kept["label"].to_numpy(np.int64)
    top = int(labels.max())
    rare = labels == top
    if top < 2 or int(rare.sum()) >= RARE_TOP_ROWS or rare.sum() >= GAP_SHARE * len(labels):
        return kept, dropped, identical
    lines = ", ".join(map(str, kept.loc[rare, "row"].tolist()))
    reason = (f"label {top} has only {int(rare.sum())} row(s), too few to split into train, val and test: left out "
              f"(add images of it, or --exclude-label {top})")
    print(f"Dropped {int(rare.sum())} row(s) of label {top} (line {lines}): too few to split into train, val and test; "
          f"the classes are 0–{top - 1}. Add images of label {top} to keep it as a class.", file=sys.stderr)
    return _drop_rows(kept, dropped, original, identical, rare, reason)


def _drop_rows(kept: pd.DataFrame, dropped: pd.DataFrame, original: dict, identical: list[list[int]],
               drop: np.ndarray, reason: str) -> tuple[pd.DataFrame, pd.DataFrame, list[list[int]]]:
    """``kept`` without the rows ``drop`` marks, which join ``dropped`` with ``reason``."""
    gone = kept[drop]
    extra = pd.DataFrame({"row": gone["row"].to_numpy(), "image": gone["image"].to_numpy(),
                          "label": [original.get(r, str(v)) for r, v in zip(gone["row"], gone["label"])],
                          "reason": reason})
    dropped = pd.concat([dropped, extra], ignore_index=True).sort_values("row", kind="stable").reset_index(drop=True)
    keep = ~drop
    new_index = np.cumsum(keep) - 1  # the sets of byte-identical rows index the kept rows
    identical = [s for s in ([int(new_index[i]) for i in group if keep[i]] for group in identical) if len(s) > 1]
    return kept[keep].reset_index(drop=True), dropped, identical


def _prepare_table(workdir: Path, table: pd.DataFrame, images: Path, *, source: str, what: str,
                   val_fraction: float, test_fraction: float, seed: int, force: bool, progress: bool,
                   ordinal: bool | None, classes: Sequence[str] | None, group_cells: list[str] | None,
                   group_column: str | None, group_pattern: str | None, folders: bool,
                   exclude: Sequence[str] = ()) -> PrepareResult:
    """Encode the labels, check every row, group, split and commit (the shared part of CSV and folders)."""
    composed = [unicodedata.normalize("NFC", t) for t in table["label_text"]]
    if len(set(composed)) < len(set(table["label_text"])):  # macOS writes folder names decomposed
        twice = sorted({c for t, c in zip(table["label_text"], composed) if t != c and c in set(table["label_text"])})
        print(f"Note: the {'class folder names' if folders else 'labels'} {', '.join(map(repr, twice[:3]))} are written "
              "in two Unicode forms (an accent composed or as a separate mark, as macOS and other systems write it); "
              "each is read as one class.", file=sys.stderr)
    table = table.assign(label_text=composed)  # encode_labels compares labels in NFC too
    table, excluded = _exclude_labels(table, [unicodedata.normalize("NFC", str(e)) for e in exclude], what)
    encoding = encode_labels(table["label_text"].tolist(), order=classes, strict=folders, nominal=ordinal is False)
    if encoding.missing:
        print(_missing_note(encoding), file=sys.stderr)
    if encoding.merged:
        print(_merged_note(encoding, folders), file=sys.stderr)
    if not encoding.named and not exclude and {parse_label(t) for t in encoding.texts} - {None} == set(range(6)):
        print("Note: the labels run 0-5, six grades; if one of them marks ungradable images (DDR's 5, say), pass "
              "--exclude-label 5 to leave those rows out.", file=sys.stderr)
    if ordinal and encoding.named and classes is None:
        shown = ",".join(map(str, encoding.classes))
        how = (f"pass --classes with every name from lowest to highest grade, e.g. --classes \"{shown}\" reordered"
               if not any("," in str(c) for c in encoding.classes) else
               "some names hold a comma, so give each whole with one --classes per name, from lowest to highest "
               "grade (--classes " + " --classes ".join(repr(c) for c in encoding.classes[:3]) + " … reordered)")
        named = ", ".join(repr(c) if "," in c else c for c in encoding.classes)
        raise UserError(f"--ordinal says the named classes ({named}) are ordered grades, "
                        "but not in which order (alphabetical order would make QWK, the grade thresholds and referable "
                        f"DR meaningless); {how}.")
    original = dict(zip(table["row"], table["label_text"]))
    checked = check_rows(table.assign(label_text=encoding.texts), images, progress=progress,
                         listed=excluded["image"].tolist())
    dropped = checked.dropped.assign(label=[original.get(r, t) for r, t in zip(checked.dropped["row"],
                                                                                checked.dropped["label"])])
    if len(excluded):
        dropped = pd.concat([dropped, excluded], ignore_index=True).sort_values("row", kind="stable")
    if checked.kept.empty:
        top = dropped["reason"].value_counts()
        fix = _no_usable_row_fix(top.index[0], dropped, Path(images))
        raise UserError(f"No usable row in {what}: all {len(table)} rows were dropped, mostly because "
                        f"\"{top.index[0]}\" ({top.iloc[0]} rows); {fix}.")
    incomplete = _incomplete_images_warning(dropped, len(table), images)
    if incomplete:  # said now: a refusal further on (a class too small to split) would hide the cause
        print(incomplete, file=sys.stderr)
    kept, identical = checked.kept, checked.identical
    if not encoding.named:
        kept, dropped, identical = _drop_beyond_gap(kept, dropped, original, identical, folders)
        given_split = ("split_text" in table.columns and checked.has_split
                       and (table["split_text"].astype(str).str.strip() != "").any())
        if not given_split:  # a split prepare draws needs each class in train, val and test; a given one does not
            kept, dropped, identical = _drop_rare_top(kept, dropped, original, identical)
    if encoding.named:
        have = class_counts(kept["label"], len(encoding.classes))
        empty = [c for c, n in zip(encoding.classes, have) if n == 0]
        if empty:
            raise UserError(_after_drops(f"Class {empty[0]!r} has no usable image: all its rows were dropped; add "
                                         f"readable images of {empty[0]!r} or remove the class.", dropped, len(kept)))
    paths = kept["path"].tolist()
    cells = None
    if group_cells is not None:
        by_row = dict(zip(table["row"], group_cells))
        cells = [by_row[r] for r in kept["row"]]
    grouping = find_groups(paths, column=cells, column_name=group_column, pattern=group_pattern,
                           by_file_name=True)
    given_cells = table["split_text"].astype(str).str.strip() if "split_text" in table.columns else None
    given = kept["split"].tolist() if checked.has_split and given_cells is not None and (given_cells != "").any() else None
    lost_notes = _lost_splits(table, dropped, given, folders) if given is not None else []
    try:
        split = assign_splits(kept["label"].to_numpy(), groups=merge_groups(grouping.groups, identical, len(kept)),
                              given=given, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
                              classes=encoding.classes, given_by="split folders" if folders else "split column")
    except UserError as exc:  # its class counts are of the rows kept, not of the user's file
        raise UserError(_after_drops(str(exc), dropped, len(kept))) from None
    leaks, spread = _given_split_leaks(paths, split, grouping.groups, identical) if given is not None else ([], [])
    if identical:  # copies of one photo stay in one split (see members.data.duplicates) unless the split was given
        print(describe(paths, identical, kept_together=given is None), file=sys.stderr)
    frame = pd.DataFrame({"path": kept["path"].to_numpy(), "label": kept["label"].to_numpy(), "split": split})
    if grouping.groups is not None:
        frame["group"] = grouping.groups
    split_source = ("split folders" if folders else "csv column") if given is not None else "random"
    from members.data.synthetic import made_by_demo_data

    meta = {"source": source, "image_root": str(images.resolve()), "split_source": split_source, "seed": seed,
            "val_fraction": val_fraction, "test_fraction": test_fraction, "grouping": grouping.to_json(),
            "synthetic": made_by_demo_data(images.resolve())}  # recorded now: the images may be moved later
    if identical:
        meta["identical"] = [[paths[i] for i in same] for same in identical]
    if exclude:
        meta["excluded_labels"] = sorted({str(e).strip() for e in exclude})
    if grouping.groups is not None and given is not None:
        meta["grouped"] = not spread  # the given split, not prepare, decided where each patient's images went
        meta["groups_across_splits"] = len(spread)
    return _commit(workdir, frame, dropped, meta, force=force, class_names=encoding.classes, ordinal=ordinal,
                   notes=[*checked.notes, grouping.note, *lost_notes, *leaks])


def _after_drops(message: str, dropped: pd.DataFrame, kept: int) -> str:
    """``message``, a refusal that counts the rows kept, saying so and why the others were dropped first (each
    reason's count, the commonest three): ``data_report.csv``, which lists them, is not written on a refusal."""
    if not len(dropped):
        return message
    head, received = message.partition(" Received: ")[::2]
    counts = sorted(dropped["reason"].value_counts().items(), key=lambda kv: (-kv[1], kv[0]))  # ties: by name
    reasons = "; ".join(f"{n} {reason}" for reason, n in counts[:3])
    more = f"; {len(counts) - 3} other reasons" if len(counts) > 3 else ""
    total = kept + len(dropped)
    clause = (f" (counted on the {kept} row{'s' if kept != 1 else ''} kept: {len(dropped)} of the {total} rows were "
              f"dropped first — {reasons}{more})")
    return head.removesuffix(".") + clause + "." + (f" Received: {received}" if received else "")


def _merged_note(encoding, folders: bool) -> str:
    """The note on one number spelled several ways (``0`` and ``00``), read as one class, and how to keep them apart."""
    shown = "; ".join(f"{' and '.join(map(repr, spellings))} as {number}" for number, spellings in
                      list(encoding.merged.items())[:4]) + (" …" if len(encoding.merged) > 4 else "")
    every = [s for spellings in encoding.merged.values() for s in spellings]
    where = "class folders" if folders else "labels"
    return (f"Note: the {where} spell one number several ways, read as one class each ({shown}); if the spellings are "
            f"different classes, list each in --classes (e.g. --classes {','.join(every[:6])}{',…' if len(every) > 6 else ''}, "
            "with the other labels).")


def _missing_note(encoding) -> str:
    """The note on labels read as missing-value markers (``NaN``, ``NA``, ``?`` …): how many, and how to keep one as
    a class."""
    from members.data.classes import WORD_MARKERS

    shown = ", ".join(f"{t!r} {n}" for t, n in sorted(encoding.missing.items(), key=lambda x: (-x[1], x[0])))
    named = {str(c).casefold() for c in encoding.classes or ()}
    words = sorted(w for w in WORD_MARKERS & set(encoding.missing) if w.casefold() not in named)  # 'none' is a class
    keep = (f"; a class really named {' or '.join(map(repr, words))} is kept by listing it in --classes (e.g. "
            f"--classes {','.join([*encoding.classes, *words])})" if encoding.named and words else "")
    return (f"Note: {sum(encoding.missing.values())} rows have a missing-value marker as their label ({shown}): they "
            f"are unlabelled, dropped and listed in data_report.csv{keep}.")


def _given_split_leaks(paths: list[str], split, groups: list[str] | None,
                       identical: list[list[int]]) -> tuple[list[str], list[str]]:
    """Warnings for a split given by the CSV (or split folders) that puts one patient's images, or copies of one
    photo, in two splits (prepare keeps a given split as it is, so it can only say so), and the patients it spreads."""
    notes = []
    where = {p: s for p, s in zip(paths, split)}
    spread = [] if groups is None else spanning(split, groups)
    if spread:
        g = spread[0]
        shown = ", ".join(f"{p} ({where[p]})" for p, h in zip(paths, groups) if h == g)
        notes.append(f"Warning: the given split puts the images of {len(spread)} of {len(set(groups))} patients in "
                     f"more than one split (e.g. patient {g}: {shown}), so val and test share patients with train "
                     "and their figures are optimistic; leave the split column (or split folders) out to let "
                     "prepare split by patient, or move each patient's images into one split. (Patients are "
                     "told apart by name: if each split numbers its patients anew, this is no leak.)")
    crossed = [same for same in identical if len({split[i] for i in same}) > 1]
    if crossed:
        shown = " = ".join(f"{paths[i]} ({split[i]})" for i in crossed[0][:3])
        notes.append(f"Warning: the given split puts byte-identical copies of {len(crossed)} image(s) in two splits "
                     f"(e.g. {shown}): the same photo is then trained on and scored; remove the copies or move them "
                     "into one split.")
    return notes, spread


def _exclude_labels(table: pd.DataFrame, exclude: Sequence[str], what: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``table`` without the rows whose label is in ``exclude`` (compared stripped, any case), and those rows as
    dropped rows with their reason; a label that no row has is refused (a typo would silently keep them)."""
    columns = ["row", "image", "label", "reason"]
    if not exclude:
        return table, pd.DataFrame(columns=columns)
    texts = table["label_text"].astype(str).str.strip()
    folded = texts.str.casefold()
    wanted = [str(e).strip() for e in exclude]
    missing = [e for e in wanted if e.casefold() not in set(folded)]
    if missing:
        shown = ", ".join(sorted(set(texts), key=lambda t: (len(t), t))[:12])
        raise UserError(f"--exclude-label {missing[0]!r} matches no row's label in {what}; its labels are {shown}. "
                        "Pass one of them, or drop --exclude-label.")
    mask = folded.isin({e.casefold() for e in wanted})
    if mask.all():
        raise UserError(f"--exclude-label leaves no row of {what}: every row has one of the labels {', '.join(wanted)}.")
    out = table.loc[mask]
    excluded = pd.DataFrame({"row": out["row"].to_numpy(), "image": out["image"].to_numpy(),
                             "label": out["label_text"].to_numpy(),
                             "reason": "label left out (--exclude-label)"}, columns=columns)
    return table.loc[~mask].reset_index(drop=True), excluded


def _lost_splits(table: pd.DataFrame, dropped: pd.DataFrame, given: list[str], folders: bool) -> list[str]:
    """A note for each split the CSV (or the split folders) named whose rows were all dropped, so
    that ``prepare`` carves it from train: a test list without labels, say, is not silently replaced."""
    from members.data.labels import _SPLIT_NAMES

    if "split_text" not in table.columns:
        return []
    named = pd.Series([_SPLIT_NAMES.get(str(t).strip().casefold()) for t in table["split_text"]], index=table["row"])
    notes = []
    for split in ("val", "test"):
        rows = named.index[named == split]
        if len(rows) and split not in given:
            reasons = dropped.loc[dropped["row"].isin(rows), "reason"].value_counts()
            why = f', mostly because "{reasons.index[0]}" ({reasons.iloc[0]} rows)' if len(reasons) else ""
            where = "split folders" if folders else "CSV"
            top = reasons.index[0] if len(reasons) else ""
            advice = ("check that --images is the folder above all the splits' images" if top == REASON_MISSING else
                      f"unlabelled images are graded with `predict`, not scored as {split}")
            notes.append(f"Note: all {len(rows)} {split} rows of the {where} were dropped{why}, so {split} was carved "
                         f"from the train rows instead; {advice}.")
    return notes


def prepare_npz(workdir: str | os.PathLike, npz_path: str | os.PathLike, *, force: bool = False,
                progress: bool = True, ordinal: bool | None = None,
                classes: Sequence[str] | None = None) -> PrepareResult:
    """Prepare a workdir from a MedMNIST-style ``.npz``, keeping its official split.

    The images are written once as ``<workdir>/images/{split}_{i:05d}.png``. ``ordinal``:
    whether the integer labels are ordered grades (default: yes; with ``classes``, as for named
    classes, no). ``classes``: names of the label indices ``0..k-1``, in that order (BreastMNIST:
    ``malignant,benign``), shown by every report and by ``predict``.

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
            "source_sha256": source.sha256, "seed": None, "val_fraction": None, "test_fraction": None,
            "grouping": {"by": None, "groups": 0}, "synthetic": False}  # an npz names no patients
    dropped = pd.DataFrame(columns=["row", "image", "label", "reason"])
    k = int(frame["label"].max()) + 1 if len(frame) else 0
    if classes is not None:
        twice = sorted({c for c in classes if list(classes).count(c) > 1})
        numeric = [c for c in classes if c.lstrip("+-").isdigit()]
        if twice or numeric:
            raise UserError(f"--classes {'names ' + repr(twice[0]) + ' twice' if twice else 'has the integer name ' + repr(numeric[0])}"
                            "; give one distinct, non-numeric name per label index (e.g. --classes malignant,benign).")
    if classes is not None and len(classes) != k:
        raise UserError(f"--classes names {len(classes)} classes but the npz labels run from 0 to {k - 1} ({k} "
                        f"classes); give one name per label index, in index order. Received: classes={list(classes)}")
    return _commit(workdir, frame, dropped, meta, force=force, ordinal=ordinal, class_names=classes,
                   write_images=lambda folder: write_pngs(source, folder, progress=progress),
                   notes=["Split: the file's official train/val/test split, kept as is (not grouped by patient)."])


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
    roll_forward(workdir, PREPARE)  # a re-prepare killed after its commit point is finished first
    meta = workdir / "dataset.json"
    if not meta.is_file():
        raise UserError(f"{workdir} is not prepared: run `python cli.py prepare --workdir {workdir} ...` first.")
    info = read_json(meta, keys=("classes", "num_classes", "fingerprint", "image_root"),
                     fix=f"run `python cli.py prepare --workdir {workdir} ... --force` again")
    split_csv = workdir / "split.csv"
    if not split_csv.is_file() or sha256_file(split_csv) != info.get("fingerprint"):
        raise UserError(f"{split_csv} is missing or was changed after prepare (its fingerprint does not match "
                        f"{meta}); run the same `python cli.py prepare --workdir {workdir} ...` again: from the same "
                        "data it writes the same split, and the members stay valid.")
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
