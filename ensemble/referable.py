"""Referable DR: grade >= a cut grade (2, moderate or worse, by default), as screening programmes judge it.

Other ordered grades get the same summary, called what it is — positive at grade >= the cut, over images — since
only the five DR grades 0-4 (:func:`dr_grades`) are diabetic retinopathy's.

On a two-class task the same summary is made for the positive class (class index 1 by default, or the
class ``vote --positive-class`` names): its probability is the score, and the figures are the
sensitivity and specificity of that class (``kind: "positive_class"`` in ``report.json``).

For an ordinal grade task, a model's score of referable disease is the probability it puts
on the grades at or above the cut, ``P(grade >= cut) = sum(probs[:, cut:])``. The
operating point is chosen on val (out-of-fold rows for the ensemble): the highest
threshold whose val sensitivity reaches the target (0.90 by default). Test only
measures: sensitivity and specificity at that threshold (exact Clopper-Pearson 95 %
intervals), the AUC of the score (paired bootstrap), the recall of every grade, and —
``by_grade`` — the sensitivity and specificity of the model's own grades (grade >= cut), the
decision a grader reading its grades makes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ensemble import stats
from members.infra.errors import UserError

DEFAULT_CUT = 2
DEFAULT_TARGET = 0.90
NO_SPECIFICITY = 0.05  # val specificity at or below this: the operating point refers (almost) everyone


def referable_score(probs: np.ndarray, cut: int) -> np.ndarray:
    """``P(grade >= cut)`` per row: the summed probabilities of the grades ``cut..k-1``.

    Example:
        >>> referable_score(np.array([[0.5, 0.2, 0.2, 0.1]]), 2).round(3).tolist()
        [0.3]
    """
    return np.asarray(probs, dtype=np.float64)[:, cut:].sum(axis=1)


def dr_grades(classes: Sequence) -> bool:
    """Whether ``classes`` are diabetic retinopathy's grades, the International Clinical DR scale's 0-4: exactly five,
    numbered 0 to 4 in order (integers, or those digits as names). Other ordered grades (``low, mid, high``, a 3-grade
    integer task) are graded in neutral words: images, not eyes; positive at grade >= N, not referable DR.

    Example:
        >>> dr_grades([0, 1, 2, 3, 4]), dr_grades(["0", "1", "2", "3", "4"]), dr_grades([0, 1, 2])
        (True, True, False)
    """
    return len(classes) == 5 and all(str(c).strip() == str(i) for i, c in enumerate(classes))


def summary_name(ref: dict, classes: Sequence) -> str:
    """The summary's condition in a sentence: ``referable DR``, ``class malignant`` or ``grade >= 2 (high or worse)``."""
    if ref.get("kind") == "positive_class":
        return f"class {ref.get('positive_class')}"
    return "referable DR" if dr_grades(classes) else str(ref.get("positive") or f"grade >= {ref.get('cut_grade')}")


def summary_title(ref: dict, classes: Sequence) -> str:
    """The summary as a title: ``Referable DR (grade >= 2)``, ``Class malignant``, ``Positive at grade >= 2 (high or
    worse)``."""
    if ref.get("kind") == "positive_class":
        return f"Class {ref.get('positive_class')}"
    positive = ref.get("positive") or f"grade >= {ref.get('cut_grade')}"
    return f"Referable DR ({positive})" if dr_grades(classes) else f"Positive at {positive}"


def not_applicable(classes: Sequence, ordinal: bool | None, k: int) -> str | None:
    """Why a referable-DR (or, on two classes, positive-class) summary does not apply, or ``None`` when it does."""
    if k == 2:
        return None
    if ordinal is False:
        return "dataset.json says ordinal: false (the classes are not ordered grades)"
    if ordinal is not True and any(isinstance(c, str) and not c.lstrip("-").isdigit() for c in classes):
        return "the classes are names, not ordered grades"  # named grades count when prepare --ordinal --classes said so
    if k < 3:
        return f"{k} classes: a referable cut needs at least three ordered grades"
    return None


def positive_index(classes: Sequence, positive_class: str | int | None) -> int:
    """The class index of ``vote --positive-class`` (a class name or index) on a two-class task; default 1.

    Example:
        >>> positive_index(["malignant", "benign"], "malignant"), positive_index([0, 1], None)
        (0, 1)
        >>> positive_index(["malignant", "benign"], "0")
        0
    """
    if positive_class is None:
        return 1
    text = str(positive_class).strip()
    names = [str(c) for c in classes]
    if text in names:
        return names.index(text)
    folded = [n.casefold() for n in names]
    if text.casefold() in folded:
        return folded.index(text.casefold())
    if text.isdigit() and int(text) < len(classes):  # an index (a name that is a number matched above)
        return int(text)
    raise UserError(f"--positive-class {positive_class!r} is not one of this task's classes ({', '.join(names)}); "
                    f"pass one of them, e.g. --positive-class {names[-1]}.")


def positive_rows(labels: np.ndarray, ref: dict) -> np.ndarray:
    """The rows of the summary's positive condition: grade >= the cut, or the positive class (two classes)."""
    labels = np.asarray(labels)
    if ref.get("kind") == "positive_class":
        return labels == ref["positive_index"]
    return labels >= ref["cut_grade"]


def positive_score(probs: np.ndarray, ref: dict) -> np.ndarray:
    """The score the summary thresholds: ``P(grade >= cut)``, or the positive class's probability."""
    if ref.get("kind") == "positive_class":
        return np.asarray(probs, dtype=np.float64)[:, ref["positive_index"]]
    return referable_score(probs, ref["cut_grade"])


def check_options(cut: int | None, target: float, k: int) -> None:
    """Raise a one-sentence error for a target outside (0, 1], a cut grade outside ``1..k-1``, or any cut grade
    on two classes (``None``: no ``--referable-grade`` given; its default applies to three or more grades)."""
    if not 0.0 < target <= 1.0:
        raise UserError(f"--sensitivity-target must be in (0, 1]; got {target}. Pass e.g. --sensitivity-target 0.9.")
    if k == 2:
        if cut is not None:
            raise UserError(f"--referable-grade {cut} does not apply to a two-class task: its summary is of one class; "
                            "choose which with --positive-class (default: the rarer class on val), and drop "
                            "--referable-grade.")
        return
    cut = DEFAULT_CUT if cut is None else cut
    if not 1 <= cut <= k - 1:
        raise UserError(f"--referable-grade must be a grade between 1 and {k - 1} (grade >= it is referable); "
                        f"got {cut}. Pass e.g. --referable-grade 2.")


def operating_point(
    name: str,
    val: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    cut: int,
    target: float,
    indices: np.ndarray,
    negatives: str | None = None,
    rows: str = "val",
) -> dict:
    """One model's referable-DR figures: the val-chosen threshold and the test measures (``rows``: what the
    "val" arrays are, in words: ``val``, or the out-of-fold rows of k-fold members).

    Args:
        name: the model's name.
        val: ``(probs, labels)`` on val (out-of-fold for a combiner).
        test: ``(probs, labels, predicted grades)`` on test.
        cut: the lowest referable grade.
        target: the val sensitivity the threshold must reach.
        indices: the test bootstrap resamples shared with the rest of the report.
    """
    val_probs, val_labels = val
    test_probs, test_labels, test_pred = test
    val_score, val_pos = referable_score(val_probs, cut), val_labels >= cut
    threshold = stats.threshold_for_sensitivity(val_score, val_pos, target)
    val_ss = stats.sensitivity_specificity(val_pos, val_score >= threshold)
    score, pos = referable_score(test_probs, cut), test_labels >= cut
    flagged = score >= threshold
    test_ss = stats.sensitivity_specificity(pos, flagged, indices=indices)
    binary = np.stack([1.0 - score, score], axis=1).clip(0.0, 1.0)
    auc = stats.bootstrap_metrics(pos.astype(np.int64), binary, indices=indices)["auc"]
    k = test_probs.shape[1]
    per_grade = {}
    for g in range(k):
        of_g = test_labels == g
        per_grade[str(g)] = {"n": int(of_g.sum()),
                             "recall": float(np.mean(test_pred[of_g] == g)) if of_g.any() else float("nan"),
                             "referred": float(np.mean(flagged[of_g])) if of_g.any() else float("nan")}
    by_grade = stats.sensitivity_specificity(pos, np.asarray(test_pred) >= cut, indices=indices)
    out = {"name": name, "threshold": threshold,
           "val_sensitivity": val_ss["sensitivity"]["value"], "val_specificity": val_ss["specificity"]["value"],
           "val_counts": {"positives": int(val_pos.sum()), "flagged_positives": int(val_ss["sensitivity"]["hits"]),
                          "negatives": int((~val_pos).sum()),
                          "flagged_negatives": int((~val_pos).sum() - val_ss["specificity"]["hits"])},
           "sensitivity": test_ss["sensitivity"], "specificity": test_ss["specificity"], "auc": auc,
           "test_referred": int(flagged.sum()), "per_grade": per_grade,
           "by_grade": {"sensitivity": by_grade["sensitivity"], "specificity": by_grade["specificity"],
                        "referred": int((np.asarray(test_pred) >= cut).sum())}}
    if isinstance(indices, stats.GroupDraws) and indices.groups < len(pos):  # two eyes a patient: refer the patient
        out["by_patient"] = by_patient(pos, flagged, indices.row_group)
    warning = degenerate_warning(name, out["val_specificity"], cut=cut, target=target,
                                 test_specificity=out["specificity"]["value"], negatives=negatives, rows=rows)
    if warning:
        out["warning"] = warning
    return out


def by_patient(positive: np.ndarray, flagged: np.ndarray, row_group: np.ndarray) -> dict:
    """Screening refers patients: a patient is positive when any of their eyes is, and referred when any of their
    eyes is flagged. Sensitivity and specificity over patients, with exact intervals (patients are independent).

    Example:
        >>> out = by_patient(np.array([1, 0, 0, 0, 1, 1]), np.array([0, 1, 0, 0, 1, 0]), np.repeat(np.arange(3), 2))
        >>> out["sensitivity"]["hits"], out["sensitivity"]["n"], out["specificity"]["hits"], out["patients"]
        (2, 2, 1, 3)
    """
    g = int(row_group.max()) + 1
    pos = np.zeros(g, dtype=bool)
    hit = np.zeros(g, dtype=bool)
    np.logical_or.at(pos, row_group, np.asarray(positive, dtype=bool))
    np.logical_or.at(hit, row_group, np.asarray(flagged, dtype=bool))
    ss = stats.sensitivity_specificity(pos, hit, indices=np.zeros((1, g), dtype=np.int64))
    return {"sensitivity": ss["sensitivity"], "specificity": ss["specificity"], "patients": g,
            "referred": int(hit.sum())}


def degenerate_warning(name: str, val_specificity: float, *, cut: int, target: float,
                       test_specificity: float | None = None, negatives: str | None = None,
                       rows: str = "val") -> str | None:
    """The plain warning for an operating point that refers (almost) every eye below the cut grade.

    On val that means the target is reached only by referring everyone; on test (the threshold
    was chosen on val, so test only measures) that the point did not carry over: both are said,
    since a screening table with a zero-width specificity interval at 0 reads as a result.

    Example:
        >>> degenerate_warning("hard", 0.0, cut=2, target=0.9).split(":")[0]
        'hard reaches 90% sensitivity on val only by referring 100% of the val eyes below grade 2'
        >>> degenerate_warning("hard", 0.4, cut=2, target=0.9) is None
        True
        >>> degenerate_warning("hard", 0.4, cut=2, target=0.9, test_specificity=0.0).split(":")[0]
        'hard referred 100% of the test eyes below grade 2 at its val-chosen threshold (val specificity 0.40)'
    """
    below = negatives or f"eyes below grade {cut}"
    if np.isfinite(val_specificity) and val_specificity <= NO_SPECIFICITY:
        on = "val" if rows == "val" else "the out-of-fold rows"
        return (f"{name} reaches {target:.0%} sensitivity on {on} only by referring {1 - val_specificity:.0%} of "
                f"{'the val' if rows == 'val' else 'their'} {below}: at this target it does not tell the positive rows from the rest, so do not screen "
                "with it; lower --sensitivity-target or improve the model.")
    if test_specificity is not None and np.isfinite(test_specificity) and test_specificity <= NO_SPECIFICITY:
        word = "val" if rows == "val" else "out-of-fold"
        return (f"{name} referred {1 - test_specificity:.0%} of the test {below} at its {word}-chosen "
                f"threshold ({word} specificity {val_specificity:.2f}): the operating point did not carry over to test, so "
                "do not screen with it; more val rows (or --folds) or a better model would give a steadier threshold.")
    return None


def referable_section(
    models: dict[str, tuple[str, tuple[tuple, tuple]]],
    *,
    classes: Sequence,
    ordinal: bool | None,
    cut: int = DEFAULT_CUT,
    target: float = DEFAULT_TARGET,
    indices: np.ndarray,
    member_auc: dict[str, float] | None = None,
    rows: str = "val",
    positive: int = 1,
) -> dict:
    """``report.json``'s ``referable`` section for the best single member and the chosen ensemble.

    Args:
        models: ``{role: (model name, (val, test))}`` with ``val`` and ``test`` as in
            :func:`operating_point`; roles ``best_single`` and ``ensemble``.
        classes: the task's classes (``dataset.json``).
        ordinal: ``dataset.json``'s ``ordinal`` (``None`` when absent: grades assumed ordered).
        cut: the lowest referable grade.
        target: val sensitivity of the operating point.
        indices: the test bootstrap resamples.
        member_auc: every member's test AUC of referable DR (for the ROC figure's legend).
        rows: what the selection rows are (``"val"``, or the out-of-fold train+val rows).
        positive: on two classes, the positive class's index (:func:`positive_index`).
    """
    k = len(classes)
    why = not_applicable(classes, ordinal, k)
    title = "Referable-DR summary" if dr_grades(classes) else "Summary at a grade cut"
    if why is not None:
        return {"applicable": False, "note": f"{title} skipped: {why}."}
    if k == 2:
        return _positive_class_section(models, classes, target=target, indices=indices, member_auc=member_auc,
                                       rows=rows, positive=positive)
    check_options(cut, target, k)
    _, (val, test) = next(iter(models.values()))
    val_labels, test_labels = val[1], test[1]
    if not np.any(val_labels >= cut):
        return {"applicable": False, "note": f"{title} skipped: no val row has grade >= {cut}, "
                                             "so no operating point can be chosen."}
    named = cut < len(classes) and str(classes[cut]) != str(cut)  # named grades (prepare --ordinal --classes)
    out = {"applicable": True, "kind": "referable_dr", "cut_grade": cut,
           "positive": f"grade >= {cut}" + (f" ({classes[cut]} or worse)" if named else ""),
           "sensitivity_target": target,
           "chosen_on": f"{rows} (out-of-fold combiner predictions for the ensemble)", "score": f"P(grade >= {cut}), summed probabilities"}
    for role, (name, (val, test)) in models.items():
        out[role] = operating_point(name, val, test, cut=cut, target=target, indices=indices, rows=rows,
                                    negatives=None if dr_grades(classes) else f"images below grade {cut}")
    out["test_positives"], out["test_negatives"] = int((test_labels >= cut).sum()), int((test_labels < cut).sum())
    out["member_auc"] = member_auc or {}
    out["clustered"] = isinstance(indices, stats.GroupDraws)  # intervals on patients, not eyes
    return out


def _positive_class_section(models, classes: Sequence, *, target: float, indices, member_auc, rows: str,
                            positive: int) -> dict:
    """The two-class summary: sensitivity and specificity of class ``positive`` at a val-chosen threshold on its
    probability (computed as the referable-DR section with cut 1, the columns swapped when ``positive`` is 0)."""
    check_options(None, target, 2)
    flip = positive == 0

    def turn(part: tuple) -> tuple:
        if not flip:
            return part
        probs, labels, *pred = part
        return (np.asarray(probs)[:, ::-1], 1 - np.asarray(labels), *(1 - np.asarray(p) for p in pred))

    name = str(classes[positive])
    other = str(classes[1 - positive])
    _, (val, _test) = next(iter(models.values()))
    if not np.any(np.asarray(val[1]) == positive):
        return {"applicable": False, "note": f"Positive-class summary skipped: no val row is of class {name}, so no "
                                             "operating point can be chosen."}
    out = {"applicable": True, "kind": "positive_class", "cut_grade": None, "positive_index": positive,
           "positive_class": name, "positive": f"class {name}", "sensitivity_target": target,
           "chosen_on": f"{rows} (out-of-fold combiner predictions for the ensemble)", "score": f"P(class {name})"}
    for role, (model, (val, test)) in models.items():
        point = operating_point(model, turn(val), turn(test), cut=1, target=target, indices=indices,
                                negatives=f"images of class {other}", rows=rows)
        if flip:
            point["per_grade"] = {"0": point["per_grade"]["1"], "1": point["per_grade"]["0"]}
        out[role] = point
    test_labels = np.asarray(next(iter(models.values()))[1][1][1])
    out["test_positives"], out["test_negatives"] = int((test_labels == positive).sum()), int((test_labels != positive).sum())
    out["member_auc"] = member_auc or {}
    out["clustered"] = isinstance(indices, stats.GroupDraws)
    return out
