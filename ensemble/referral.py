"""The review rule: which graded rows go to a human, decided in one place for ``predict`` and ``vote``.

:func:`review_flags` gives ``predict``'s ``review`` column (the reason in ``note``) and ``report.json``
``referral`` (coverage, rows referred, accuracy of the kept and the referred rows), so the report counts
what ``predict`` does on the same rows. With the rule ``vote`` chose for its best method, a row is referred

- ``low_confidence``: the ensemble's probability of its label is below the review threshold chosen on val;
- ``no_agreement``: no member gives the ensemble's label (``refer_without_agreement``: a ``+thr`` grade
  between members that say 0 and 4);
- ``call_conflict``: its label and the summary call disagree — a grade below the referable one whose
  P(grade >= cut) reaches the referable threshold (set on val for sensitivity, lower than the grades' own
  boundary), or the reverse; on two classes, its class and the positive-class call.

With another method (``report.json`` holds no threshold for it) a row is referred when fewer than
:data:`AGREEMENT_FALLBACK` of the members give its label (``members_disagree``), and no call is made.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

AGREEMENT_FALLBACK = 0.5


@dataclass(frozen=True)
class ReviewRule:
    """What sends a row to a human.

    Attributes:
        threshold: the review threshold on the probability of the ensemble's label; ``None``: the agreement
            fallback (:data:`AGREEMENT_FALLBACK`).
        without_agreement: with a threshold, also refer the rows no member agrees with.
        cut: the lowest referable grade, or on two classes the positive class's index; ``None``: no call.
        call_threshold: the val-chosen threshold on the call's score; ``None``: no call for this method.
        kind: ``"referable_dr"`` (grade >= cut) or ``"positive_class"`` (class == cut).
    """

    threshold: float | None = None
    without_agreement: bool = False
    cut: int | None = None
    call_threshold: float | None = None
    kind: str = "referable_dr"

    @property
    def calls(self) -> bool:
        """Whether a summary call is made (and a label that contradicts it is referred)."""
        return self.cut is not None and self.call_threshold is not None


def call_score(probs: np.ndarray, cut: int, kind: str = "referable_dr") -> np.ndarray:
    """The score the call thresholds: P(grade >= cut), or on two classes P(class ``cut``)."""
    from ensemble.referable import positive_score

    return positive_score(probs, {"kind": kind, "cut_grade": cut, "positive_index": cut})


def review_flags(rule: ReviewRule, labels: np.ndarray, confidence: np.ndarray, agreement: np.ndarray,
                 p_call: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per reason, the rows it refers: ``{low_confidence, no_agreement, members_disagree, call_conflict}``.

    Args:
        rule: the review rule.
        labels: the ensemble's labels ``(n,)``.
        confidence: the ensemble's probability of each label ``(n,)``.
        agreement: the share of members whose own top class is the label ``(n,)``.
        p_call: the call's score per row (:func:`call_score`); needed when ``rule.calls``.

    Example:
        >>> rule = ReviewRule(threshold=0.6, without_agreement=True, cut=2, call_threshold=0.3)
        >>> flags = review_flags(rule, np.array([0, 3, 1]), np.array([0.9, 0.5, 0.8]), np.array([1, 1, 0]),
        ...                      np.array([0.4, 0.9, 0.1]))
        >>> {reason: np.flatnonzero(rows).tolist() for reason, rows in flags.items() if rows.any()}
        {'low_confidence': [1], 'no_agreement': [2], 'call_conflict': [0]}
        >>> referred(flags).tolist()
        [True, True, True]
    """
    labels = np.asarray(labels)
    confidence, agreement = np.asarray(confidence, dtype=np.float64), np.asarray(agreement, dtype=np.float64)
    none = np.zeros(len(labels), dtype=bool)
    if rule.threshold is not None:
        low, alone, disagree = confidence < rule.threshold, (agreement == 0) if rule.without_agreement else none, none
    else:
        low, alone, disagree = none, none, agreement < AGREEMENT_FALLBACK
    conflict = none
    if rule.calls:
        if p_call is None:
            raise ValueError("review_flags needs p_call (the call's score per row) for a rule that makes a call.")
        own = labels == rule.cut if rule.kind == "positive_class" else labels >= rule.cut
        conflict = own != (np.asarray(p_call, dtype=np.float64) >= rule.call_threshold)
    return {"low_confidence": low, "no_agreement": alone, "members_disagree": disagree, "call_conflict": conflict}


def referred(flags: dict[str, np.ndarray]) -> np.ndarray:
    """The rows any reason of :func:`review_flags` refers."""
    return np.logical_or.reduce(list(flags.values()))


def conflict_words(kind: str, name: str, graded: bool = True, counts: str = "") -> str:
    """The call-conflict rule in words (``name``: the cut grade, or the positive class; ``counts`` ends the aside).

    Example:
        >>> conflict_words("positive_class", "sick", counts="3 on val")
        'its class and the sick call disagree (class sick with P(sick) under its threshold, or another class at or above it; 3 on val)'
    """
    tail = f"; {counts}" if counts else ""
    if kind == "positive_class":
        return (f"its class and the {name} call disagree (class {name} with P({name}) under its threshold, or another "
                f"class at or above it{tail})")
    word = "grade" if graded else "class"
    return (f"its {word} and the referable call disagree (a {word} below {name} with P({word} >= {name}) at or "
            f"above the referable threshold, or {name} or above under it{tail})")
