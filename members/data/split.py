"""Stratified, seeded train/val/test split, optionally by patient group.

Rows of one group (both eyes of a patient) always land in the same split. Without
groups every class is cut exactly in the requested proportions; with groups a greedy
assignment keeps each split's class counts close to their targets. A split given in
the labels file is honoured; a missing val (or test) split is carved from train.

Example:
    >>> labels = np.array([0, 0, 0, 1, 1, 1, 1])
    >>> assign_splits(labels, val_fraction=0.15, test_fraction=0.15, seed=0).tolist().count("test")
    2
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from members.infra.errors import UserError

SPLITS = ("train", "val", "test")
MAX_CLASSES = 1000
_EYE = re.compile(r"^(?P<patient>.+)_(left|right)$", re.IGNORECASE)


def class_counts(labels: Sequence[int] | np.ndarray, num_classes: int) -> np.ndarray:
    """Rows per class, ``counts[c]`` for ``c`` in ``0..num_classes-1`` (int64)."""
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)[:num_classes]


def patient_ids(paths: Sequence[str]) -> list[str | None]:
    """The patient id of each file named ``<patient>_<left|right>`` (``None`` for other names).

    The folder part is kept, so ``a/10_left`` and ``b/10_left`` are different patients.

        >>> patient_ids(["a/10_left.jpeg", "copy.jpeg"])
        ['a/10', None]
    """
    ids: list[str | None] = []
    for path in paths:
        folder, _, name = path.rpartition("/")
        match = _EYE.match(name.rsplit(".", 1)[0] if "." in name else name)
        ids.append(None if match is None else f"{folder}/{match['patient']}" if folder else match["patient"])
    return ids


def patient_groups(paths: Sequence[str]) -> list[str] | None:
    """Patient ids when every file is named ``<patient>_<left|right>``, else ``None``."""
    ids = patient_ids(paths)
    return None if not ids or None in ids else ids  # type: ignore[return-value]


def check_fractions(val_fraction: float, test_fraction: float) -> tuple[float, float]:
    """Both fractions as floats; a :class:`UserError` unless both are numbers in (0, 1) that leave room for train."""
    from members.infra.validate import is_real

    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not is_real(value) or not 0 < value < 1:
            raise UserError(f"{name} must be between 0 and 1 (exclusive), a number; pass e.g. 0.15. Received: "
                            f"{name}={value!r}")
    if val_fraction + test_fraction >= 1:
        raise UserError(
            "val_fraction + test_fraction must be below 1 so that rows are left for training; "
            f"lower them. Received: val_fraction={val_fraction}, test_fraction={test_fraction}"
        )
    return float(val_fraction), float(test_fraction)


def _share(n: int, fraction: float) -> int:
    """Rows of a class for a split: the rounded share, at least one."""
    return max(1, int(round(n * fraction)))


def _name(c: int, classes: Sequence | None) -> str:
    """Class ``c`` as the user knows it: its name (quoted) for named classes, else the integer."""
    return repr(str(classes[c])) if classes is not None and c < len(classes) else str(c)


def _too_few(cls: int, have: int, need: int, where: str, counts: np.ndarray, total: int,
             classes: Sequence | None = None) -> UserError:
    hint = " (labels must be consecutive integers starting at 0)" if total == 0 else ""
    name = _name(cls, classes)
    shown = {(str(classes[c]) if classes is not None and c < len(classes) else c): n
             for c, n in enumerate(counts.tolist()) if n}
    return UserError(
        f"Class {name} has only {have} row{'' if have == 1 else 's'}{where}, too few to split: every split needs at least one row "
        f"of every class, so it needs at least {need}{hint}; add images of class {name} or merge it into "
        f"a neighbouring class. Received: class_counts={shown}"
    )


def _cut(labels: np.ndarray, targets: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Ungrouped: shuffle each class and cut it at the target counts. Returns split indices."""
    out = np.empty(len(labels), dtype=np.int64)
    for c in range(targets.shape[1]):
        idx = rng.permutation(np.flatnonzero(labels == c))
        out[idx] = np.repeat(np.arange(targets.shape[0]), targets[:, c])
    return out


def _greedy(labels: np.ndarray, groups: np.ndarray, targets: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Grouped: put each group in the split whose class counts it brings closest to the targets.

    First every split gets one small group of each class it needs (rarest class first, val
    and test before train), so a rare class is not left out of a small split; then the other
    groups, rare classes first, go one by one where the relative (chi-square) deficit is largest.
    A class held by fewer free groups than the splits that need it goes to train first (a class
    missing from train cannot be learned), then test, and leaves val without it:
    :func:`assign_splits` says so.
    """
    k = targets.shape[1]
    uniq, inverse = np.unique(groups, return_inverse=True)
    per_group = np.zeros((len(uniq), k), dtype=np.int64)
    np.add.at(per_group, (inverse, labels), 1)
    sizes, totals, noise = per_group.sum(axis=1), per_group.sum(axis=0), rng.random(len(uniq))
    filled = np.zeros_like(targets)
    choice = np.full(len(uniq), -1, dtype=np.int64)
    for c in np.argsort(totals, kind="stable"):
        order = list(range(targets.shape[0] - 1, -1, -1))  # val and test before train ...
        needing = sum(1 for s in order if targets[s, c] > 0 and filled[s, c] == 0)
        if int(((choice < 0) & (per_group[:, c] > 0)).sum()) < needing:
            order = [0, *order[:-1]]  # ... unless too few groups go round: then train first
        for s in order:
            free = (choice < 0) & (per_group[:, c] > 0)
            if targets[s, c] > 0 and filled[s, c] == 0 and free.any():
                g = int(np.argmin(np.where(free, sizes + noise, np.inf)))
                choice[g], filled[s] = s, filled[s] + per_group[g]
    rarity = np.where(per_group > 0, totals[None, :], np.iinfo(np.int64).max).min(axis=1)
    order = np.lexsort((noise, -sizes, rarity))
    scale = np.maximum(targets, 1)  # relative deficits: big classes do not drown small ones
    share = np.maximum(targets.sum(axis=1), 1)
    for g in order[choice[order] < 0]:
        counts = per_group[g]
        cost = (counts[None, :] * (2 * (filled - targets) + counts[None, :]) / scale).sum(axis=1)
        best = int(np.argmin(cost + 1e-9 * filled.sum(axis=1) / share))  # ties: the emptiest split
        choice[g], filled[best] = best, filled[best] + counts
    return choice[inverse]


def _partition(labels: np.ndarray, groups: np.ndarray | None, targets: np.ndarray,
               rng: np.random.Generator) -> np.ndarray:
    if groups is None:
        return _cut(labels, targets, rng)
    return _greedy(labels, groups, targets, rng)


def assign_splits(
    labels: Sequence[int] | np.ndarray,
    *,
    groups: Sequence[str] | None = None,
    given: Sequence[str] | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    classes: Sequence | None = None,
    given_by: str = "split column",
) -> np.ndarray:
    """Assign every row to ``train``, ``val`` or ``test``, stratified by class.

    Args:
        labels: int class per row, ``0..k-1``.
        groups: optional group id per row; a group never spans two splits.
        given: optional split per row (``train``/``val``/``test``), kept as is; splits
            missing from it (val, test) are carved from train, stratified.
        val_fraction: share of the whole data set for val.
        test_fraction: share of the whole data set for test.
        seed: seed of the shuffle; the same inputs and seed give the same split.
        classes: the class names in index order (named classes), used by the messages; ``None``: integers.
        given_by: what gave the split (``split column``, ``split folders``), for the messages.

    Returns:
        An array of split names, one per row.

    Raises:
        UserError: bad fractions, a class with too few rows to give every split one, or a val split
            (given or drawn) of fewer than two classes. A given split lacking a class is warned about.
    """
    check_fractions(val_fraction, test_fraction)
    labels = np.asarray(labels, dtype=np.int64)
    k = int(labels.max()) + 1 if len(labels) else 0
    if k > MAX_CLASSES:
        raise UserError(f"Labels must be class indices 0..k-1 with k at most {MAX_CLASSES}; renumber the "
                        f"classes. Received: max_label={k - 1}")
    counts = class_counts(labels, k)
    fractions = {"val": val_fraction, "test": test_fraction}
    rng = np.random.default_rng(seed)
    groups_arr = None if groups is None else np.asarray(groups, dtype=str)
    if given is None:
        pool = np.arange(len(labels))
        names = list(SPLITS)
        carve = ["val", "test"]
        result = np.empty(len(labels), dtype=object)
    else:
        result = np.asarray(given, dtype=object).copy()
        carve = [s for s in ("val", "test") if not np.any(result == s)]
        pool = np.flatnonzero(result == "train")
        names = ["train", *carve]
    if carve:
        pool_counts = class_counts(labels[pool], k)
        where = "" if given is None else " in the train split"
        targets = np.zeros((len(names), k), dtype=np.int64)
        for c in range(k):
            need = [_share(int(counts[c]), fractions[s]) for s in carve]
            if pool_counts[c] - sum(need) < 1:
                raise _too_few(c, int(pool_counts[c]), sum(need) + 1, where, pool_counts, int(counts[c]), classes)
            targets[1:, c] = need
            targets[0, c] = pool_counts[c] - sum(need)
        sub_groups = None if groups_arr is None else groups_arr[pool]
        chosen = _partition(labels[pool], sub_groups, targets, rng)
        result[pool] = np.asarray(names, dtype=object)[chosen]
        if sub_groups is not None:
            asked = {**fractions, "train": None if given is not None else 1 - val_fraction - test_fraction}
            _say_far(result, {s: asked[s] for s in names if asked[s] is not None}, sub_groups)
    _check_val(labels, result, k, given_val=given is not None and "val" not in carve, classes=classes,
               given_by=given_by, groups=groups_arr)
    if carve:
        _say_missing(labels, result, names, groups_arr, classes)
    if given is not None:
        _say_missing_given(labels, result, [s for s in SPLITS if s not in names or not carve], classes, given_by)
    return result.astype(str)


FAR_SLACK = 0.05
"""A split's share of the rows is far from the fraction asked when it differs by more than this and by more than
half the fraction (coarse groups: a few big patient groups cannot be cut to measure)."""


def _say_far(result: np.ndarray, asked: dict[str, float], groups: np.ndarray) -> None:
    """Warn (stderr) when the grouped split's shares are far from the fractions asked (a few coarse groups)."""
    import sys

    n = len(result)
    got = {s: float(np.sum(result == s)) / n for s in asked}
    if not n or all(abs(got[s] - f) <= max(FAR_SLACK, f / 2) for s, f in asked.items()):
        return
    _, sizes = np.unique(groups, return_counts=True)
    pct = lambda share: f"{100 * share:.0f} %"  # noqa: E731
    print(f"Warning: the split by patient group is far from the shares asked ({', '.join(f'{s} {pct(f)}' for s, f in asked.items())}): "
          f"{len(sizes)} groups (the largest holds {int(sizes.max())} of the {len(groups)} rows) gave "
          f"{', '.join(f'{s} {pct(got[s])}' for s in asked)}, since a group never spans two splits, and another "
          "--seed will not fix it (groups are placed by class and size; the seed only breaks ties between equal "
          "ones): check that --group-pattern or --group-column captures the patient id, which gives many small "
          "groups.",
          file=sys.stderr)


def _check_val(labels: np.ndarray, result: np.ndarray, k: int, *, given_val: bool, classes: Sequence | None,
               given_by: str, groups: np.ndarray | None = None) -> None:
    """Refuse a val split of fewer than two classes: vote chooses and fits the ensemble on val, which cannot
    be done on one class (it would fail there, after the members were trained)."""
    val = labels[result == "val"]
    have = sorted(set(val.tolist()))
    if k < 2 or len(have) >= 2:
        return
    holds = f"only rows of class {_name(have[0], classes)}" if have else "no row"
    why = "vote chooses and fits the ensemble on val, which needs rows of at least two classes"
    if given_val:
        raise UserError(f"The val split given by the {given_by} holds {holds} ({len(val)} rows); {why}: put rows of "
                        f"at least two classes in val, or drop the {given_by} to let prepare draw a stratified split.")
    absent = sorted(set(labels.tolist()) - set(have))
    rows = np.isin(labels, absent)
    n_groups = len(set(groups[rows].tolist())) if groups is not None else int(rows.sum())
    shown = ", ".join(_name(c, classes) for c in absent[:4]) + (", ..." if len(absent) > 4 else "")
    raise UserError(f"The val split prepare drew holds {holds} ({len(val)} rows): the rows of class{'es' if len(absent) > 1 else ''} "
                    f"{shown} belong to {n_groups} patient group(s), too few to go round (a group never spans two "
                    f"splits), and {why}; add images of more patients of the rarer classes, or check that "
                    "--group-pattern or --group-column captures the patient id.")


def _say_missing_given(labels: np.ndarray, result: np.ndarray, splits: list[str], classes: Sequence | None,
                       given_by: str) -> None:
    """Warn (stderr) about a given split without any row of a class (prepare keeps a given split as it is)."""
    import sys

    for s in splits:
        part = labels[result == s]
        if not len(part):
            continue
        for c in sorted(set(labels.tolist()) - set(part.tolist())):
            print(f"Warning: the {s} split given by the {given_by} has no row of class {_name(c, classes)} "
                  f"({int((labels == c).sum())} rows in the other splits), so "
                  f"{'members cannot learn it' if s == 'train' else 'its figures for that class are missing'}; "
                  f"move some of its rows into {s}, or drop the {given_by} to let prepare draw a stratified split.",
                  file=sys.stderr)


def _say_missing(labels: np.ndarray, result: np.ndarray, names: list[str], groups: np.ndarray | None,
                 classes: Sequence | None = None) -> None:
    """Warn (stderr) about a split without any row of a class: its patients were too few to go round."""
    import sys

    for s in names:
        have = set(labels[result == s].tolist())
        for c in sorted(set(labels.tolist()) - have):
            n_groups = len(set(groups[labels == c].tolist())) if groups is not None else int((labels == c).sum())
            print(f"Warning: the {s} split has no row of class {_name(c, classes)}: its {int((labels == c).sum())} rows belong to "
                  f"{n_groups} patient group(s), too few for every split to get one (a group never spans two splits); "
                  f"{'members cannot learn it' if s == 'train' else 'its figures for that class are missing'}. "
                  "Add images of it, or merge it into a neighbouring class.", file=sys.stderr)


def spanning(split: Sequence[str], groups: Sequence[str]) -> list[str]:
    """The groups whose rows lie in more than one split (in order of first appearance).

        >>> spanning(["train", "test", "train", "val"], ["a", "a", "b", "b"])
        ['a', 'b']
        >>> spanning(["train", "train", "test"], ["a", "a", "b"])
        []
    """
    seen: dict[str, set] = {}
    for s, g in zip(split, groups):
        seen.setdefault(str(g), set()).add(str(s))
    return [g for g, splits in seen.items() if len(splits) > 1]
