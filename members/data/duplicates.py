"""Byte-identical images under different names: found by content hash, kept in one split.

A data set copied together from several sources often holds the same photo twice (two
names, or two class folders). Listed twice, it could land in train and in test and make
the test score optimistic. :func:`identical_sets` finds such files by SHA-256 (only files
of equal size are read, so a set without duplicates costs one ``stat`` per file);
``prepare`` reports them (copies with different labels are dropped before, every copy, with
their reason: one photo under two grades is label noise) and :func:`merge_groups` makes every set one split group, so the copies always land in the
same split; ``dataset.json`` lists the sets under ``identical``.

Example:
    >>> merge_groups(None, [[0, 2]], 3)
    ['identical:0', 'row:1', 'identical:0']
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

SHOWN = 3  # sets named in the summary line


def identical_sets(paths: Sequence[str | os.PathLike]) -> list[list[int]]:
    """Indices of byte-identical files, one list per set of two or more, in input order."""
    by_size: dict[int, list[int]] = {}
    for i, path in enumerate(paths):
        try:
            by_size.setdefault(os.path.getsize(path), []).append(i)
        except OSError:
            continue
    sets: list[list[int]] = []
    for group in (g for g in by_size.values() if len(g) > 1):
        by_hash: dict[str, list[int]] = {}
        for i in group:
            try:
                with open(paths[i], "rb") as f:
                    by_hash.setdefault(hashlib.file_digest(f, "sha256").hexdigest(), []).append(i)
            except OSError:
                continue
        sets += [same for same in by_hash.values() if len(same) > 1]
    return sorted(sets)


def merge_groups(groups: Sequence[str] | None, sets: list[list[int]], n: int) -> list[str] | None:
    """Split groups in which each set of identical files (and every group it touches) is one group.

    ``groups`` are the patient groups (``None``: every row alone). Returns ``groups``
    unchanged when there is no set.
    """
    if not sets:
        return None if groups is None else list(groups)
    base = list(groups) if groups is not None else [f"row:{i}" for i in range(n)]
    parent = {g: g for g in base}

    def find(g: str) -> str:
        while parent[g] != g:
            parent[g] = parent[parent[g]]
            g = parent[g]
        return g

    for k, same in enumerate(sets):
        name = f"identical:{k}"
        parent.setdefault(name, name)
        for i in same:
            parent[find(base[i])] = find(name)
    return [find(g) for g in base]


def describe(paths: Sequence[str], sets: list[list[int]], *, kept_together: bool = True) -> str:
    """One line for the prepare summary: how many copies, a few examples.

    ``kept_together``: prepare chose the split (it keeps each set in one split); a given split is kept as
    it is, and a set it spreads gets its own warning."""
    copies = sum(len(s) - 1 for s in sets)
    shown = "; ".join(" = ".join(Path(paths[i]).as_posix() for i in s[:3]) for s in sets[:SHOWN])
    more = f"; and {len(sets) - SHOWN} more sets" if len(sets) > SHOWN else ""
    return (f"Found {copies} byte-identical cop{'y' if copies == 1 else 'ies'} of other images ({len(sets)} "
            f"set{'s' if len(sets) != 1 else ''}: {shown}{more})"
            + ("; each set is kept in one split." if kept_together else "; the given split is kept as it is."))
