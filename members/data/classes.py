"""The classes of a data set: integer grades or class names, and whether they are ordered.

``prepare`` turns the labels it reads into class indices ``0..k-1`` (what ``split.csv``
holds) and stores the classes in order in ``dataset.json``: integers (``[0, 1, 2]``) or
names (``["cataract", "glaucoma", "normal"]``), with ``ordinal`` saying whether they are
ordered grades. Everything that shows a label uses :func:`class_names`.

Example:
    >>> enc = encode_labels(["normal", "cataract", "normal", ""])
    >>> enc.classes, enc.texts
    (['cataract', 'normal'], ['1', '0', '1', ''])
    >>> encode_labels(["0", "2", "abc"]).classes is None   # integer grades (a stray name is dropped later)
    True
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace

from members.infra.errors import UserError

_INT = re.compile(r"^\+?\d+(\.0*)?$")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
MISSING_LABELS = frozenset({"nan", "NaN", "NAN", "-nan", "NA", "N/A", "n/a", "#N/A", "#NA", "<NA>", "null", "NULL",
                            "Null", "None", "?", "-", "--"})
"""Label cells that mean "no label" (what pandas, R, Excel and Python write for a missing value, and the ``?`` and
``-`` of hand-made tables): their rows are dropped as unlabelled, like an empty cell. Case counts: a lower-case
``none`` or ``na`` is a class name."""
WORD_MARKERS = frozenset({"None", "NA"})
"""The markers that could also name a class (no DR, not applicable): as frequent as a class, they are refused."""
MIXED_ROWS, MIXED_SHARE = 2, 0.01
"""Integer labels with at most this many (and share of) name rows: the names are stray bad labels, dropped and
reported; more name rows beside integers are refused (half the set dropped silently is no typo)."""
ORDINAL_MEDMNIST = ("retinamnist",)
"""MedMNIST sets whose integer labels are ordered grades (the others are nominal)."""


@dataclass(frozen=True)
class LabelEncoding:
    """Labels as class-index texts.

    Attributes:
        classes: the class names in index order, or ``None`` for integer labels (the index is the label).
        texts: one text per input label: the index as text for a name, the label itself otherwise
            (empty stays empty and a missing-value marker stays as it is, so the row is dropped with its reason).
        missing: the missing-value markers (:data:`MISSING_LABELS`) read as no label, and their rows.
    """

    classes: list[str] | None
    texts: list[str]
    missing: dict[str, int] = field(default_factory=dict)

    @property
    def named(self) -> bool:
        return self.classes is not None


def encode_labels(texts: Sequence[str], *, order: Sequence[str] | None = None, strict: bool = False) -> LabelEncoding:
    """Integer labels stay as they are; class names become indices in ``order`` (default: sorted).

    Labels are integers when at least half of the non-empty ones are and at most a handful
    (:data:`MIXED_ROWS` rows, or :data:`MIXED_SHARE` of them) are names (those are then dropped as
    bad labels, row by row); otherwise they are class names, and an integer among them is refused:
    it could be a grade or a name.

    Args:
        texts: the label of every row, stripped.
        order: the class names in order (``--classes``); every name must be among them.
        strict: every label is a class (folder names): any integer beside a name is refused.

    A missing-value marker (:data:`MISSING_LABELS`: ``NaN``, ``NA``, ``?`` …) counts as no label, unless ``order``
    names it or the labels are folder names (``strict``).

    Raises:
        UserError: names mixed with integers, a name missing from ``order``, ``order``
            naming a class twice or one without rows, or a marker that could be a class as frequent as one.
    """
    missing = _missing_markers(texts, order, strict)
    given = [t for t in texts if t and t not in missing]
    ints = [t for t in given if _INT.match(t)]
    numeric = [t for t in given if _NUMBER.match(t)]
    names = sorted(set(given) - set(numeric))
    named_rows = sum(1 for t in given if t in set(names))
    stray = named_rows <= max(MIXED_ROWS, MIXED_SHARE * len(given))  # a handful of names: typos, dropped row by row
    if not given or not names or (order is None and not strict and 2 * len(ints) >= len(given) and stray):
        return LabelEncoding(None, list(texts), missing)
    if ints:
        leave_out = " ".join(f"--exclude-label {n!r}" for n in names[:3])
        raise UserError(
            f"The labels mix class names ({', '.join(map(repr, names[:3]))}: {named_rows} rows) with integers "
            f"({', '.join(map(repr, sorted(set(ints))[:3]))}: {len(ints)} rows); a class name that is also an integer "
            "is ambiguous, and reading either kind as bad labels would drop too many rows: name every class (e.g. "
            f"'grade 3') or number every class 0..k-1, or leave the names' rows out with {leave_out}.")
    spellings: dict[str, list[str]] = {}
    for name in names:
        spellings.setdefault(" ".join(name.casefold().split()), []).append(name)
    clash = next((v for v in spellings.values() if len(v) > 1), None)
    if clash:
        counts = {v: given.count(v) for v in clash}
        raise UserError(f"The labels {' and '.join(f'{v!r} ({counts[v]} rows)' for v in clash)} differ only in case or "
                        "spacing, so they would be two classes; spell each class one way in the labels file (or pass "
                        "--classes listing one spelling after fixing the file).")
    classes = list(order) if order is not None else names
    if order is not None:
        twice = sorted({c for c in classes if classes.count(c) > 1})
        unknown = sorted(set(given) - set(classes))
        absent = [c for c in classes if c not in set(given)]
        if twice or unknown or absent:
            what = (f"names {twice[0]!r} twice" if twice else f"lacks {unknown[0]!r}, a label of the data" if unknown
                    else f"names {absent[0]!r}, which no row has")
            raise UserError(f"--classes {what}; list every class of the labels exactly once, in order. "
                            f"Received: classes={list(order)}, labels={names[:10]}")
    index = {name: str(i) for i, name in enumerate(classes)}
    return LabelEncoding(classes, [index.get(t, t) if t else "" for t in texts], missing)


def _missing_markers(texts: Sequence[str], order: Sequence[str] | None, strict: bool) -> dict[str, int]:
    """The missing-value markers among ``texts`` that mean no label, and their rows (see :func:`encode_labels`).

    Raises:
        UserError: ``None`` or ``NA`` beside class names with as many rows as a class: a class or no label?
    """
    if strict:  # a folder is a class the user made
        return {}
    counts: dict[str, int] = {}
    for t in texts:
        counts[t] = counts.get(t, 0) + 1
    missing = {t: n for t, n in counts.items() if t in MISSING_LABELS and t not in (order or ())}
    if order is not None:  # every class listed: a marker listed is one, any other is no label
        return missing
    names = {t: n for t, n in counts.items() if t and t not in missing and not _NUMBER.match(t)}
    word = next((t for t in sorted(missing) if t in WORD_MARKERS and names and missing[t] >= min(names.values())),
                None)
    if word is not None:
        smallest = min(names, key=lambda t: (names[t], t))
        raise UserError(f"The label {word!r} ({missing[word]} rows) is a missing-value marker, yet as frequent as a "
                        f"class ({smallest!r}: {names[smallest]} rows): if {word!r} is a class, list it in --classes "
                        f"with the others (e.g. --classes {','.join(sorted([*names, word]))}); if its rows are "
                        f"unlabelled, leave them out with --exclude-label {word!r}.")
    return missing


def choose_ordinal(named: bool, ordinal: bool | None, classes: Sequence) -> tuple[bool, str]:
    """Whether the classes are ordered grades, and one sentence saying why (for stderr).

    Default: integer grades are ordinal, class names are not.
    """
    shown = ", ".join(map(str, classes[:8])) + (", ..." if len(classes) > 8 else "")
    if ordinal is None:
        ordinal = not named
        why = ("integer labels are taken as ordered grades; pass --nominal if they are unordered classes"
               if ordinal else "class names are taken as unordered; pass --ordinal (and --classes in grade order) "
               "if they are ordered grades")
    else:
        why = "as asked"
    kind = "ordinal (ordered grades)" if ordinal else "nominal (unordered)"
    sentence = f"Classes: {shown} — {kind}, {why}."
    if ordinal and named and why == "as asked":
        sentence += " Their order is the order of --classes."
    return bool(ordinal), sentence


def parse_classes_option(text: str | None) -> list[str] | None:
    """``--classes "a, b,c"`` -> ``["a", "b", "c"]``; None stays None."""
    if text is None:
        return None
    names = [t.strip() for t in text.split(",") if t.strip()]
    if len(names) < 2:
        raise UserError(f"--classes takes at least two class names separated by commas; got {text!r}.")
    return names


def check_task(spec, ordinal: bool, log=None, preset: str | None = None):
    """The spec a member of this task trains with: nominal tasks refuse grade heads and QWK monitoring.

    Args:
        spec: the resolved member spec.
        ordinal: ``dataset.json``'s ``ordinal``.
        log: a callable for one line of text (the notes).
        preset: the built-in preset the spec came from; a grade head that is the preset's own (not
            asked for with ``--head``/``--set``) becomes ``softmax`` on a nominal task, with a note.

    Returns:
        ``spec``, or a copy with a softmax head (see ``preset``) and monitoring ``val_macro_f1``
        instead of ``val_qwk`` for a nominal task.

    Raises:
        UserError: an ``ordinal`` or ``regression`` head on a nominal task that the preset does not explain.
    """
    if ordinal:
        return spec
    head = getattr(spec, "head", "softmax")
    if head in ("ordinal", "regression") and _preset_head(preset) == head:
        if log is not None:
            log(f"Nominal classes: preset {preset} has a {head} head, which predicts an ordered grade; training with "
                "a softmax head instead (pass --head softmax to silence this note).")
        spec = spec.replace(head="softmax")
        head = "softmax"
    if head in ("ordinal", "regression"):
        raise UserError(
            f"The {head} head predicts an ordered grade, but this workdir's classes are nominal (unordered: "
            "dataset.json has ordinal false); use --head softmax, or prepare again with --ordinal if the classes "
            f"are ordered grades. Received: head={head!r}")
    if getattr(spec, "monitor", None) == "val_qwk":
        if log is not None:
            log("Nominal classes: monitoring val_macro_f1 instead of val_qwk (QWK assumes ordered grades).")
        return spec.replace(monitor="val_macro_f1")
    return spec


def refuse_asked_grade_head(changes: dict, ordinal: bool) -> None:
    """Refuse an ``ordinal`` or ``regression`` head asked for (``--head``, ``--set head=``) on a nominal task.

    :func:`check_task` swaps a preset's own grade head for softmax; one the user asked for is refused even
    when it is the preset's own (the swap would ignore the request).
    """
    head = changes.get("head")
    if not ordinal and head in ("ordinal", "regression"):
        check_task(SimpleNamespace(head=head, monitor=None), ordinal)  # raises, with check_task's sentence


def _preset_head(preset: str | None) -> str | None:
    """The ``head`` of the built-in preset ``preset`` (``None``: no preset, a TOML file, or an unknown name)."""
    if not preset or preset == "custom" or preset.endswith(".toml"):
        return None
    from members.model.spec import load_preset

    try:
        return load_preset(preset).head
    except UserError:
        return None
