"""A member that learned nothing is said so: the warning while training, the verdict in metrics.json.

- :class:`CollapseWatch` — after every epoch, counts the epochs in a row whose val predictions fall
  into one class or whose val balanced accuracy sits at chance (1/k); at :data:`COLLAPSE_EPOCHS`
  it logs one warning with the likely causes and what to try (:func:`collapse_advice`).
- :func:`health` — the kept weights judged on val (``collapsed``, ``collapse``) and the
  majority-class baseline (``majority``, ``below_majority``) for ``metrics.json``. When the
  watch warned but the kept weights did not collapse (a late recovery), it says so in the log and
  in ``collapse.recovered``. A regression member's epochs are watched by their val AUC (its grades
  at the training cuts can all be 0 while its scores already order the eyes; :func:`is_chance`).
"""

from __future__ import annotations

import re

import numpy as np

from members.model.spec import MemberSpec

COLLAPSE_EPOCHS = 3  # consecutive epochs at one class (or chance) before the collapse warning


def collapse_advice(spec: MemberSpec, ordinal: bool = True) -> str:
    """The likely causes of a collapse and what to try, leaving out what ``spec`` already does (and, on
    nominal classes, the grade head that such a task refuses)."""
    tries = [text for text, done in (
        ("--set sampling=balanced", spec.sampling == "balanced"),
        ("--set head=regression", spec.head == "regression" or not ordinal),
        ("--set block=residual", spec.block == "residual" or spec.architecture != "convnet"),
        ("--set preprocessing=ben --set fundus_crop=true (fundus photographs)",
         spec.preprocessing == "ben" and spec.fundus_crop),
        ("--batch-size 8", spec.batch_size <= 8),
    ) if not done]
    tries += [f"a larger input_size (now {spec.input_size})", f"a lower or higher lr (now {spec.lr:g})", "more epochs"]
    return ("Likely causes: one class dominates the training rows, the learning rate is too high or too low, the "
            "images are too small to show what tells the classes apart (lesions, on fundus photographs), or too few epochs. Try " + ", ".join(tries) + ".")


CHANCE_MARGIN = 0.05  # balanced accuracy not above 1/k + this, on a few dozen val rows, is noise (or worse) for a
# member that does not rank either


def at_chance_level(balanced_accuracy: float, auc: float, k: int) -> bool:
    """Whether kept weights learned nothing: no ranking (AUC not above 0.55) and a balanced accuracy at or below
    chance, not above 1/k + :data:`CHANCE_MARGIN` (one-sided: below chance is no better) — an IDRiD member at 0.201
    against 0.200 with AUC 0.478 had been called learned. A grade member whose cuts squeeze the rare grades can sit at 1/k balanced accuracy with a real val
    AUC and QWK: that one learned."""
    return not (balanced_accuracy > 1.0 / k + CHANCE_MARGIN) and not (auc > 0.55)


def is_chance(row: dict, k: int) -> bool:
    """Val predictions in one class, or val balanced accuracy at chance (1/k).

    A regression member's epoch row (it has ``val_auc``) is judged by its ranking instead: its grades at the
    training's fixed cuts can all be 0 while its scores already order the eyes, and its cuts are tuned after
    training; it is at chance while its val AUC stays at or under 0.55 (:func:`health`'s test).
    """
    if _ranks(row):
        return not (row["val_auc"] > 0.55)
    return row.get("val_classes_predicted", k) <= 1 or row["val_balanced_accuracy"] <= 1.0 / k + 1e-9


def _ranks(row: dict) -> bool:
    """Whether an epoch row is judged by its ranking: a regression member's row with a finite ``val_auc`` (it is
    NaN on a one-class val split, None in a row read back after a resume: the grade rule then)."""
    auc = row.get("val_auc")
    return isinstance(auc, (int, float)) and bool(np.isfinite(auc))


def majority_baseline(train_labels: np.ndarray, labels: np.ndarray, k: int) -> dict:
    """The majority-class baseline: the most frequent training class predicted for every row."""
    c = int(np.bincount(train_labels, minlength=k).argmax())
    return {"class": c, "accuracy": float(np.mean(labels == c)) if len(labels) else None,
            "balanced_accuracy": (1.0 / len(np.unique(labels))) if len(labels) else None}


def longest_chance_run(history: list[dict], k: int) -> int:
    """The most consecutive epochs of ``history`` at chance (:func:`is_chance`)."""
    best = run = 0
    for row in history:
        run = run + 1 if is_chance(row, k) else 0
        best = max(best, run)
    return best


class CollapseWatch:
    """Warns once per run when the val predictions stay in one class (or at chance) for a few epochs."""

    def __init__(self, name: str, spec: MemberSpec, classes, log, ordinal: bool = True):
        self.name, self.spec, self.classes, self.log, self.ordinal = name, spec, list(classes), log, ordinal
        self.k = len(self.classes)
        self.warned = False

    def after_epoch(self, history: list[dict], val_probs: np.ndarray) -> None:
        row, run = history[-1], 0
        for r in reversed(history):
            if not is_chance(r, self.k):
                break
            run += 1
        if run >= min(COLLAPSE_EPOCHS, self.spec.total_epochs) and not self.warned:
            top = int(np.bincount(val_probs.argmax(axis=1), minlength=self.k).argmax())
            what = (f"its val AUC stayed at chance ({row['val_auc']:.3f}: its scores do not order the eyes)"
                    if _ranks(row) else
                    f"every val image was predicted as class {self.classes[top]}" if row["val_classes_predicted"] <= 1
                    else f"val balanced accuracy stayed at chance ({row['val_balanced_accuracy']:.3f} <= 1/{self.k})")
            epochs = f"{run} epoch{'s' if run != 1 else ''}"
            self.log(f"[{self.name}] WARNING: the member is collapsing: for {epochs} {what}; it is learning the "
                     f"class mix, not the images. {collapse_advice(self.spec, self.ordinal)}")
            self.warned = True


IMPORTED_ADVICE = ("It was imported: check the class balance it was trained on and its input preprocessing "
                   "against this set's, or keep it anyway with vote --keep-collapsed.")


def health(*, name: str, spec: MemberSpec | None, classes, labels: dict, predictions: dict, results: dict,
           history: list[dict], log, ordinal: bool = True, imported_advice: str = IMPORTED_ADVICE) -> dict:
    """``collapsed`` / ``collapse`` (the kept weights on val) and the majority baseline (``majority``,
    ``below_majority``) for metrics.json.

    Args:
        spec: the member's spec; None for a member imported from outside (no training history, and
            the advice is ``imported_advice``: :data:`IMPORTED_ADVICE`, or what the import found first).
        labels: ``{"train", "val", "test"}`` label arrays.
        predictions: ``{"val", "test"}`` probabilities of the kept weights.
        results: ``{"val", "test"}`` scores of those predictions (``members.scoring.score``).
    """
    k = len(classes)
    collapsed, collapse = judge(predictions["val"], labels["val"], results["val"], classes,
                                judged_on="argmax of the kept weights' val probabilities", spec=spec, ordinal=ordinal,
                                epochs_at_chance=sum(1 for r in history if is_chance(r, k)),
                                imported_advice=imported_advice)
    counts = np.asarray(collapse["val_predicted_counts"])
    bal, auc = collapse["val_balanced_accuracy"], collapse["val_auc"]
    warned_run = longest_chance_run(history, k)
    learned = "reason" not in collapse and "unjudged" not in collapse
    if spec is not None and history and learned and warned_run >= min(COLLAPSE_EPOCHS, spec.total_epochs):
        # CollapseWatch warned while training (a regression member's fixed grade-scale cuts, or a late
        # recovery): say that the kept weights, with their tuned cuts, did not collapse after all
        shown = ", ".join(str(classes[j]) for j in np.flatnonzero(counts))
        collapse["recovered"] = (
            f"warned while training ({warned_run} epochs in a row at chance), but the kept weights predict classes "
            f"{shown} on val (balanced accuracy {bal:.3f}, AUC {auc:.3f})")
        log(f"[{name}] the collapse warning above does not hold for the kept weights: they predict classes {shown} on "
            f"val (balanced accuracy {bal:.3f} against chance {1.0 / k:.3f}, AUC {auc:.3f}); the member is kept.")
    if collapsed:
        warned = spec is not None and warned_run >= min(COLLAPSE_EPOCHS, spec.total_epochs)
        log(f"[{name}] WARNING: collapsed: {collapse['reason']}. vote will leave it out. "
            + ("What to try: see the warning above." if warned else collapse["advice"]))
    elif "unjudged" in collapse:
        log(f"[{name}] WARNING: {collapse['unjudged']}")
    return {"collapsed": collapsed, "collapse": collapse, **majority_section(labels, results, k)}


def judge(probs: np.ndarray, labels: np.ndarray, scores: dict, classes, *, judged_on: str, rows: str = "val",
          spec: MemberSpec | None, ordinal: bool = True, epochs_at_chance: int | None = None,
          imported_advice: str = IMPORTED_ADVICE) -> tuple[bool, dict]:
    """``(collapsed, collapse)`` of predictions ``probs`` on the rows that judge them (a plain member's val rows, a
    k-fold member's out-of-fold rows: ``rows`` names them in the reason), with the same keys for every kind of
    member (``val_*`` then hold the out-of-fold figures; ``judged_on`` says which rows).

    Collapsed: the argmax falls into one class, or balanced accuracy is at chance (:func:`at_chance_level`). On
    rows of one class nothing can be judged (any one-class guess is at chance or perfect): ``collapsed`` is False
    and ``collapse["unjudged"]`` says why, instead of a verdict either way.
    """
    k = len(classes)
    counts = np.bincount(np.asarray(probs).argmax(axis=1), minlength=k)
    bal = scores.get("balanced_accuracy", float("nan"))
    auc = scores.get("auc", float("nan"))
    one_class = int((counts > 0).sum()) <= 1
    collapse = {"judged_on": judged_on, "val_predicted_counts": counts.tolist(), "val_balanced_accuracy": bal,
                "val_auc": auc, "chance": 1.0 / k, "epochs_at_chance": epochs_at_chance}
    present = np.unique(labels)
    if len(present) <= 1:
        held = f" ({classes[int(present[0])]})" if len(present) else ""
        collapse["unjudged"] = (f"the rows that judge collapse hold one class{held}, so whether the member learned "
                                "anything cannot be told from them; give val rows of every class (prepare's split) "
                                "to have it judged")
        return False, collapse
    if not (one_class or at_chance_level(bal, auc, k)):
        return False, collapse
    top = classes[int(counts.argmax())]
    collapse["reason"] = (f"its {rows} predictions fall into one class ({top})" if one_class
                          else f"its {rows} balanced accuracy {bal:.3f} is at or below chance (not above 1/{k} + "
                               f"{CHANCE_MARGIN:g}) and its {rows} AUC {auc:.3f} is not above 0.55")
    collapse["advice"] = collapse_advice(spec, ordinal) if spec is not None else imported_advice
    return True, collapse


_TWO_SIDED = re.compile(r"is at chance \(1/(\d+), within ([0-9.]+)\) and its (.+?) AUC (\S+) near 0\.5")


def one_sided_words(reason: str) -> str:
    """A ``collapse.reason`` that an older training wrote as if the rule were two-sided ("at chance (1/2, within
    0.05) ... AUC 0.420 near 0.5"), in the words of the rule :func:`at_chance_level` applies; the figures kept.

    Example:
        >>> one_sided_words("its val balanced accuracy 0.385 is at chance (1/2, within 0.05) and its val AUC 0.420 near 0.5")
        'its val balanced accuracy 0.385 is at or below chance (not above 1/2 + 0.05) and its val AUC 0.420 is not above 0.55'
    """
    return _TWO_SIDED.sub(r"is at or below chance (not above 1/\1 + \2) and its \3 AUC \4 is not above 0.55", reason)


def majority_section(labels: dict, results: dict, k: int) -> dict:
    """``majority`` (the baseline on val and test) and ``below_majority`` (the member's accuracy under it) for
    metrics.json; ``labels`` has ``train`` (the rows the member learned from), ``val`` and ``test``."""
    majority, below = {}, {}
    for split in ("val", "test"):
        base = majority_baseline(labels["train"], labels[split], k)
        majority[split] = base
        acc = (results.get(split) or {}).get("accuracy")
        below[split] = None if acc is None or base["accuracy"] is None else bool(acc < base["accuracy"])
    return {"majority": majority, "below_majority": below}


def is_stale(m: dict, fingerprint: str | None) -> bool:
    """Whether a member's metrics.json was written on another prepared dataset than ``fingerprint``."""
    return bool(fingerprint and m.get("fingerprint") and m["fingerprint"] != fingerprint)


def member_marks(m: dict, fingerprint: str | None = None) -> str:
    """The warnings of a member's metrics.json as words: stale (trained on another prepared dataset than the
    workdir's ``fingerprint``), collapsed, † below the majority class on test — what train-member, import-member
    and ``presets --workdir`` print.

    Example:
        >>> member_marks({"collapsed": True, "collapse": {"reason": "one class"}})
        'COLLAPSED (one class; vote leaves it out)'
    """
    marks = []
    if is_stale(m, fingerprint):
        marks.append("STALE (trained on another prepared dataset than this workdir's; vote refuses it: train it again)")
    if m.get("collapsed"):
        marks.append(f"COLLAPSED ({(m.get('collapse') or {}).get('reason', 'one class on val')}; vote leaves it out)")
    base = (m.get("majority") or {}).get("test") or {}
    if (m.get("below_majority") or {}).get("test"):
        marks.append(f"† test accuracy below the majority class's {base.get('accuracy', float('nan')):.3f}")
    return "; ".join(marks)
