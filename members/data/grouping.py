"""Patient groups for the split: rows of one group never land in two splits.

Three ways, and ``prepare`` always says which one it used and how many groups it found:

- ``--group-column COL``: a column of the labels CSV holds the patient id;
- ``--group-pattern REGEX``: a regular expression with one capture group, searched in the
  image path relative to the images folder (e.g. ``(\\d+)_(?:left|right)``); the first
  group (or the group named ``patient``) is the patient id;
- by default, files named ``<patient>_<left|right>`` (Kaggle EyePACS) are grouped by patient.

Rows a column or pattern does not cover become groups of their own (and are counted);
when nothing is grouped the note says that patients may leak across the splits.

Example:
    >>> g = find_groups(["a/7_left.jpg", "a/7_right.jpg", "b/9_left.jpg"], pattern=r"(\\d+)_")
    >>> g.groups, g.count
    (['7', '7', '9'], 2)
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from members.infra.errors import UserError
from members.data.split import patient_ids

LEAK = ("so several images of one patient may land in different splits (leaking into val/test); "
        "pass --group-column or --group-pattern to group them")


@dataclass(frozen=True)
class Grouping:
    """The groups (``None`` when not grouped), how they were found, and one sentence for stderr."""

    groups: list[str] | None
    by: str | None
    count: int
    note: str

    def to_json(self) -> dict:
        return {"by": self.by, "groups": self.count}


def _compile(pattern: str) -> re.Pattern:
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise UserError(f"--group-pattern {pattern!r} is not a valid regular expression ({exc}); pass one with a "
                        r"capture group for the patient id, e.g. '(\d+)_(?:left|right)'.") from None
    if rx.groups < 1:
        raise UserError(f"--group-pattern {pattern!r} has no capture group; put the patient id in parentheses, "
                        r"e.g. '(\d+)_(?:left|right)'." f" Received: group_pattern={pattern!r}")
    if rx.groups > 1:  # which one is the patient? (the first was taken, silently)
        raise UserError(f"--group-pattern {pattern!r} has {rx.groups} capture groups; keep one for the patient id and "
                        r"make the others non-capturing with (?:...), e.g. '(\d+)_(?:left|right)'.")
    return rx


def read_group_column(csv_path: str | os.PathLike, column: str, rows: Sequence[int]) -> list[str]:
    """The ``column`` cell of each CSV line number in ``rows`` (the ``row`` of the labels table), stripped.

    Raises:
        UserError: the CSV has no such column.
    """
    from members.data.labels import find_column, parse_table

    header, _, records, _ = parse_table(Path(csv_path))  # the separator and header rules of the labels themselves
    idx = find_column(header, column)
    if idx is None:
        raise UserError(f"Labels file {csv_path} has no column {column!r} for --group-column; its columns are "
                        f"{', '.join(map(repr, header))}. Received: group_column={column!r}")
    cells = {line: (rec[idx].strip() if idx < len(rec) else "") for line, rec in records}
    return [cells.get(int(r), "") for r in rows]


def find_groups(paths: Sequence[str], *, column: Sequence[str] | None = None, column_name: str | None = None,
                pattern: str | None = None, by_file_name: bool = True) -> Grouping:
    """Group the kept rows (``paths`` relative to the images folder, POSIX) by patient.

    Args:
        paths: the kept rows' image paths.
        column: the group cell of each row (from :func:`read_group_column`), or None.
        column_name: the column's name, for the note.
        pattern: a regex with one capture group, searched in each path, or None.
        by_file_name: the default ``<patient>_<left|right>`` rule looks at file names only (the
            default: a class folder, or a set delivered in parts, ``part1/13_left`` and
            ``part2/13_right``, is no patient; two sites' patients 13 are merged, which costs a
            little of the split's freedom but never leaks); ``False`` keeps the folders in the id.

    Raises:
        UserError: both a column and a pattern, or a pattern without a capture group.
    """
    if column is not None and pattern is not None:
        raise UserError("Pass either --group-column or --group-pattern, not both.")
    n = len(paths)
    if column is not None:
        ids, by = [c if c else None for c in column], f"column {column_name}"
    elif pattern is not None:
        rx = _compile(pattern)
        ids = []
        for path in paths:
            m = rx.search(path)
            ids.append(None if m is None else (m.group("patient") if "patient" in rx.groupindex else m.group(1)))
        by = f"pattern {pattern}"
    else:
        names = [p.rsplit("/", 1)[-1] for p in paths] if by_file_name else list(paths)
        ids = patient_ids(names)
        matched = sum(i is not None for i in ids)
        if matched == 0:
            return Grouping(None, None, 0, "Not grouped by patient: the image names are not <patient>_<left|right>, "
                            + LEAK + ".")
        groups = [i if i is not None else path for i, path in zip(ids, paths)]  # other names: a group each
        note = (f"Grouped by patient from the file names (<patient>_<left|right>): {len(set(groups)) - (n - matched)} "
                f"patients for {matched} images")
        if matched < n:  # grouping the names that match costs nothing: the others are groups of their own anyway
            other = next(p for i, p in zip(ids, paths) if i is None)
            note += (f"; {n - matched} of the {n} images are named otherwise (e.g. {other}) and are groups of their "
                     "own: pass --group-column or --group-pattern if they belong to patients")
        return Grouping(groups, "file names <patient>_<left|right>", len(set(groups)), note + ".")
    covered = sum(i is not None for i in ids)
    if covered == 0:
        return Grouping(None, None, 0, f"Not grouped by patient: the {by} gave no patient id for any of the {n} "
                        f"images, {LEAK}.")
    groups = [i if i is not None else path for i, path in zip(ids, paths)]  # uncovered: a group of its own
    count = len(set(groups))
    note = f"Grouped by patient from the {by}: {count} groups for {n} images"
    if covered < n:
        note += f"; {n - covered} image(s) without a patient id are groups of their own"
    return Grouping(groups, by, count, note + ".")
