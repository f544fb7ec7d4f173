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
import shlex
import unicodedata
from collections import Counter
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
GAP_SHARE = 0.01
"""Integer labels with a gap (no row has 3, yet some have 4): fewer rows than this share beyond it are typos, dropped
and reported; more are refused (or, with ``--nominal``, the numbers are class names)."""
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
        merged: {a number: its spellings} where the labels spell one number several ways (``1``, ``01``): one class.
    """

    classes: list[str] | None
    texts: list[str]
    missing: dict[str, int] = field(default_factory=dict)
    merged: dict[str, list[str]] = field(default_factory=dict)

    @property
    def named(self) -> bool:
        return self.classes is not None


def encode_labels(texts: Sequence[str], *, order: Sequence[str] | None = None, strict: bool = False,
                  nominal: bool = False) -> LabelEncoding:
    """Integer labels stay as they are; class names become indices in ``order`` (default: sorted).

    Labels are integers when at least half of the non-empty ones are and at most a handful
    (:data:`MIXED_ROWS` rows, or :data:`MIXED_SHARE` of them) are names (those are then dropped as
    bad labels, row by row); otherwise they are class names, and a number among them is refused:
    it could be a grade or a name. Numbers that are no class index (negative, fractional, 1000 or more) are
    refused past that handful too (:func:`_numbers`): dropped row by row they would drop a class silently.
    Labels are compared in Unicode NFC (an accent composed or not, as macOS folder names keep it, is one class),
    and one integer spelled several ways (``1``, ``01``, ``1.0``) is one class, said in ``merged``.

    Args:
        texts: the label of every row, stripped.
        order: the class names in order (``--classes``); every label is then a name (numbers too:
            ``--classes -1,0,1``), and must be among them.
        strict: every label is a class (folder names): any integer beside a name is refused.
        nominal: ``--nominal``: numbers that are not the class indices 0..k-1 (negative, starting above 0, or
            with a gap) are class names, in numeric order.

    A missing-value marker (:data:`MISSING_LABELS`: ``NaN``, ``NA``, ``?`` …) counts as no label, unless ``order``
    names it or the labels are folder names (``strict``).

    Raises:
        UserError: names mixed with numbers, numbers that are no class index, a name missing from ``order``,
            ``order`` naming a class twice or one without rows, or a marker that could be a class as frequent as one.
    """
    texts = [unicodedata.normalize("NFC", t) for t in texts]
    order = None if order is None else [unicodedata.normalize("NFC", str(c)) for c in order]
    missing = _missing_markers(texts, order, strict)
    given = [t for t in texts if t and t not in missing]
    if order is not None:
        return _in_order(texts, given, order, missing)
    ints = [t for t in given if _INT.match(t)]
    numeric = [t for t in given if _NUMBER.match(t)]
    names = sorted(set(given) - set(numeric))
    named_rows = sum(1 for t in given if t in set(names))
    stray = named_rows <= _few(given)  # a handful of names: typos, dropped row by row
    if not given or not names or (not strict and 2 * len(ints) >= len(given) and stray):
        return _numbers(texts, given, numeric, missing, nominal)
    if numeric:
        raise UserError(_mixed_sentence(names, named_rows, numeric))
    _refuse_spellings(names, given)
    index = {name: str(i) for i, name in enumerate(names)}
    return LabelEncoding(names, [index.get(t, t) if t else "" for t in texts], missing)


def _few(given: Sequence[str]) -> float:
    """How many rows of odd labels are a handful of typos, dropped row by row (:data:`MIXED_ROWS`, :data:`MIXED_SHARE`)."""
    return max(MIXED_ROWS, MIXED_SHARE * len(given))


def _canonical(text: str) -> str:
    """A number label as one spelling: ``01``, ``+1`` and ``1.0`` are ``1``; a fraction stays as written."""
    value = float(text)
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else text


def _merged(spellings: Sequence[str]) -> dict[str, list[str]]:
    """{one spelling: the spellings of that number, when more than one} (``01`` and ``1``: one class)."""
    out: dict[str, set[str]] = {}
    for t in spellings:
        out.setdefault(_canonical(t), set()).add(t)
    return {c: sorted(v, key=lambda s: (len(s), s)) for c, v in out.items() if len(v) > 1}


def _numbers(texts: list[str], given: list[str], numeric: list[str], missing: dict[str, int],
             nominal: bool) -> LabelEncoding:
    """Number labels: the class indices as they are, or (``nominal`` and not the indices 0..k-1) class names.

    More than a handful (:func:`_few`) of rows whose number is no class index (negative, fractional, 1000 or
    more) are refused: dropped row by row as bad labels, a class ``-1`` went silently.
    """
    from members.data.labels import label_in_range, parse_label

    value = {t: parse_label(t) for t in set(numeric)}
    odd = Counter(t for t in numeric if value[t] is None or not label_in_range(value[t]))
    counts = Counter(value[t] for t in numeric if t not in odd)
    if nominal and (sum(odd.values()) > _few(given) or not_indices(counts)):
        kept = [t for t in numeric if sum(odd.values()) > _few(given) or t not in odd]
        classes = sorted({_canonical(t) for t in kept}, key=float)
        index = {t: str(classes.index(_canonical(t))) for t in set(kept)}
        return LabelEncoding(classes, [index.get(t, t) for t in texts], missing, _merged(kept))
    if sum(odd.values()) > _few(given):
        raise UserError(_odd_numbers_sentence(odd, counts, numeric, len(given)))
    return LabelEncoding(None, list(texts), missing, _merged([t for t in numeric if t not in odd]))


def not_indices(counts: Counter) -> bool:
    """Whether integer labels (``{value: rows}``) are no class indices 0..k-1 that prepare takes (or mends by
    dropping a few rows beyond a gap, :data:`GAP_SHARE`): a negative value, no 0, or more rows beyond a gap."""
    if not counts:
        return False
    if min(counts) < 0:
        return True
    gap = next((v for v in range(max(counts) + 1) if v not in counts), None)
    if gap is None:
        return False
    return gap == 0 or sum(n for v, n in counts.items() if v > gap) >= GAP_SHARE * sum(counts.values())


def _odd_numbers_sentence(odd: Counter, counts: Counter, numeric: list[str], rows: int) -> str:
    """The refusal of numbers that are no class index, naming them, with the ways to keep or leave them."""
    values = sorted(odd, key=float)
    negative = [float(t) for t in values if float(t) < 0]
    kinds = [kind for kind, hit in ((f"negative {'integers' if all(v.is_integer() for v in negative) else 'numbers'}",
                                     bool(negative)),
                                    ("numbers that are not integers", any(not float(t).is_integer() for t in values)),
                                    ("numbers too large for a class index (at most 999)",
                                     any(float(t) >= 1000 for t in values))) if hit]
    shown = ", ".join(f"{t!r}: {odd[t]} rows" for t in values[:6]) + (", …" if len(values) > 6 else "")
    every = sorted({_canonical(t) for t in numeric}, key=float)
    example = ",".join(every[:10]) + (",…" if len(every) > 10 else "")
    leave = (f", or leave their rows out with {' '.join(f'--exclude-label {t}' for t in values)}"
             if len(values) <= 6 and len(counts) >= 2 else "")
    return (f"The labels include {' and '.join(kinds)} ({shown}; {sum(odd.values())} of the {rows} rows), but number "
            "labels are the class indices 0..k-1, and dropping those rows as bad labels would lose a class silently: "
            f"keep the numbers as class names with --classes={example} (every label once, in order; add --ordinal if "
            f"they are ordered grades) or --nominal (unordered classes){leave}.")


def _mixed_sentence(names: list[str], named_rows: int, numeric: list[str]) -> str:
    """The refusal of class names beside numbers, with advice that works: leave out the kind with fewer rows (every
    label of it), or keep the numbers as names with ``--classes``."""
    numbers = sorted(set(numeric), key=float)
    few, whose = (numbers, "numbers'") if len(numeric) < named_rows else (names, "names'")
    leave = (f", or leave the {whose} rows out with {' '.join(f'--exclude-label {n!r}' for n in few)}"
             if len(few) <= 6 else "")
    every = names + numbers
    example = (shlex.quote(",".join(every[:10])) + (",…" if len(every) > 10 else "")
               if not any("," in n for n in every[:10]) else " ".join(f"--classes {n!r}" for n in every[:4]) + " …")
    return (f"The labels mix class names ({', '.join(map(repr, names[:3]))}{', …' if len(names) > 3 else ''}: "
            f"{named_rows} rows) with integers ({', '.join(map(repr, numbers[:3]))}{', …' if len(numbers) > 3 else ''}: "
            f"{len(numeric)} rows); a class name that is also an integer is ambiguous, and reading either kind as bad "
            "labels would drop too many rows: name every class (e.g. 'grade 3') or number every class 0..k-1, keep "
            f"the numbers as class names with --classes listing every label in order (e.g. --classes {example}){leave}.")


def _refuse_spellings(names: list[str], given: list[str]) -> None:
    """Refuse class names that differ only in case or spacing (``Benign`` and ``benign``): one class or two?"""
    spellings: dict[str, list[str]] = {}
    for name in names:
        spellings.setdefault(" ".join(name.casefold().split()), []).append(name)
    clash = next((v for v in spellings.values() if len(v) > 1), None)
    if clash:
        counts = {v: given.count(v) for v in clash}
        raise UserError(f"The labels {' and '.join(f'{v!r} ({counts[v]} rows)' for v in clash)} differ only in case or "
                        "spacing, so they would be two classes; spell each class one way in the labels file (or pass "
                        "--classes listing one spelling after fixing the file).")


def _in_order(texts: list[str], given: list[str], order: list[str], missing: dict[str, int]) -> LabelEncoding:
    """Every label a class name, indexed in ``order`` (``--classes``); a number not listed as written is matched by
    its value (``2.0`` as ``2``)."""
    listed = set(order)
    numbers = [t for t in set(given) if t not in listed and _NUMBER.match(t) and _canonical(t) in listed]
    spelled = {t: _canonical(t) for t in numbers}
    texts = [spelled.get(t, t) for t in texts]
    merged = _merged([t for t in given if _NUMBER.match(t) and (t in spelled or _canonical(t) in spelled.values())])
    given = [spelled.get(t, t) for t in given]
    if given and all(_NUMBER.match(t) for t in given) and not listed & set(given):
        raise UserError("--classes names the classes of named labels; these labels are integers, whose order is their "
                        "value: drop --classes, or list the numbers themselves to keep them as class names (e.g. "
                        f"--classes={','.join(sorted(set(given), key=float)[:10])}). Received: classes={order}")
    names = sorted(set(given))
    _refuse_spellings(names, given)
    twice = sorted({c for c in order if order.count(c) > 1})
    unknown = sorted(set(given) - listed)
    absent = [c for c in order if c not in set(given)]
    if twice or unknown or absent:
        what = (f"names {twice[0]!r} twice" if twice else f"lacks {unknown[0]!r}, a label of the data" if unknown
                else f"names {absent[0]!r}, which no row has")
        comma = [n for n in names if "," in n]
        hint = (f" (a name that holds a comma is given whole with one --classes per name: --classes {comma[0]!r} "
                "--classes …)" if comma else "")
        raise UserError(f"--classes {what}; list every class of the labels exactly once, in order{hint}. "
                        f"Received: classes={order}, labels={names[:10]}")
    index = {name: str(i) for i, name in enumerate(order)}
    return LabelEncoding(list(order), [index.get(t, t) if t else "" for t in texts], missing, merged)


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
    shown = ", ".join(repr(c) if "," in str(c) else str(c) for c in classes[:8]) + (", ..." if len(classes) > 8 else "")
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
    """``--classes "a, b,c"`` -> ``["a", "b", "c"]``; None stays None. (A name holding a comma is given whole with
    one ``--classes`` per name: ``prepare`` then takes the values as they are.)"""
    if text is None:
        return None
    names = [t.strip() for t in text.split(",") if t.strip()]
    if len(names) < 2:
        raise UserError(f"--classes takes at least two class names separated by commas (or one per --classes, for "
                        f"names that hold a comma); got {text!r}.")
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
