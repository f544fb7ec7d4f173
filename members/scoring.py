"""Score one set of predictions: the seven metrics every report of the toolkit shows.

A leaf module (numpy only at import; scikit-learn is the reference in the tests).
Every metric is computed from *weighted* sufficient statistics, so the same code
scores one prediction set (weights of one) and a thousand bootstrap resamples at
once (weights = how often each row was drawn): :func:`score_weighted` is what
``ensemble.stats`` calls, :func:`score` is the one-set convenience.

Definitions (they match scikit-learn to 1e-9 on float64 input):

- ``accuracy``; ``balanced_accuracy``: mean recall over the classes present in ``labels``.
- ``macro_f1``: mean F1 over the classes present in ``labels`` or ``pred``.
- ``qwk``: quadratic weighted Cohen's kappa on the full grade scale ``0..k-1``
  (``cohen_kappa_score(..., weights="quadratic", labels=range(k))``).
- ``auc``: macro one-vs-rest ROC AUC over the classes that have both positives and
  negatives; for ``k == 2`` the binary AUC of ``probs[:, 1]``.
- ``log_loss``: mean ``-log p[true]`` with ``p`` clipped to ``[eps, 1 - eps]``, ``eps``
  the machine epsilon of the probabilities' dtype (scikit-learn's rule).
- ``ece``: expected calibration error of the confidence in the predicted label,
  ``probs[pred]``, against the correctness of ``pred`` (the labels the model reports: a
  hard vote's tie-break, a ``+thr`` grade; ``max(probs)`` and ``argmax(probs)`` when
  ``pred`` is not given), 15 equal-width bins ``(lo, hi]``.

Undefined values (AUC with one class, kappa with no spread) are ``nan``; convert
them to ``None`` only at the JSON boundary (:func:`nan_to_none`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "qwk", "auc", "log_loss", "ece")
LOWER_IS_BETTER = ("log_loss", "ece")
ECE_BINS = 15


def headline(num_classes: int | None, *, ordinal: bool = True) -> tuple[str, str]:
    """``(key, label)`` of the one score a member's log lines and tables show.

    Macro-F1 for unordered classes (QWK assumes ordered grades, and they are chosen by
    macro-F1); otherwise QWK, called kappa for two classes (the quadratic weights change
    nothing there).

        >>> headline(3, ordinal=False), headline(2), headline(5)
        (('macro_f1', 'macro-F1'), ('qwk', 'kappa'), ('qwk', 'QWK'))
    """
    if not ordinal:
        return "macro_f1", "macro-F1"
    return "qwk", "kappa" if num_classes == 2 else "QWK"


def member_headline(metrics: dict) -> tuple[str, str]:
    """:func:`headline` of a member's ``metrics.json`` (one written before it recorded ``ordinal``
    counts as nominal when it monitored macro-F1)."""
    ordinal = metrics.get("ordinal", metrics.get("monitor") != "val_macro_f1")
    return headline(metrics.get("num_classes"), ordinal=bool(ordinal))


def confusion(labels: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """The ``k x k`` confusion matrix, rows = true class, columns = predicted class.

    Example:
        >>> confusion(np.array([0, 1, 1]), np.array([0, 1, 0]), 2).tolist()
        [[1, 0], [1, 1]]
    """
    labels, pred = check_labels(labels, k), check_labels(pred, k, name="pred")
    return np.bincount(labels * k + pred, minlength=k * k).reshape(k, k)


def qwk(labels: np.ndarray, pred: np.ndarray, num_classes: int) -> float:
    """Quadratic weighted kappa on the grade scale ``0..num_classes-1`` (``nan`` if undefined).

    Example:
        >>> qwk(np.array([0, 1, 2, 2]), np.array([0, 1, 2, 1]), 3)
        0.8
    """
    cm = confusion(labels, pred, num_classes).astype(np.float64)
    return float(_kappa(cm[None])[0])


def score(
    labels: np.ndarray,
    probs: np.ndarray | None,
    *,
    pred: np.ndarray | None = None,
    num_classes: int | None = None,
) -> dict[str, float]:
    """Every metric of :data:`METRICS` for one set of predictions.

    Args:
        labels: true classes, ints ``0..k-1``, shape ``(n,)``.
        probs: class probabilities ``(n, k)``, or ``None`` (probability metrics are then ``nan``).
        pred: predicted classes; defaults to ``argmax(probs)``.
        num_classes: ``k``; defaults to ``probs.shape[1]``.

    Returns:
        ``{metric: float}`` in :data:`METRICS` order; ``nan`` where undefined.

    Example:
        >>> s = score(np.array([0, 1]), np.array([[0.8, 0.2], [0.3, 0.7]]))
        >>> s["accuracy"], s["auc"]
        (1.0, 1.0)
    """
    n = len(np.asarray(labels))
    values = score_weighted(labels, probs, np.ones((n, 1)), pred=pred, num_classes=num_classes)
    return {name: float(v[0]) for name, v in values.items()}


def score_weighted(
    labels: np.ndarray,
    probs: np.ndarray | None,
    weights: np.ndarray,
    *,
    pred: np.ndarray | None = None,
    num_classes: int | None = None,
    metrics: tuple[str, ...] = METRICS,
) -> dict[str, np.ndarray]:
    """Every metric for ``B`` weightings of the same rows at once (bootstrap = draw counts).

    Args:
        labels: true classes ``(n,)``.
        probs: ``(n, k)`` probabilities or ``None``.
        weights: ``(n, B)`` non-negative row weights; column ``b`` scores the data set in
            which row ``i`` appears ``weights[i, b]`` times (rows first, so that gathering
            rows copies contiguous memory).
        pred: predicted classes ``(n,)``; defaults to ``argmax(probs)``.
        num_classes: ``k``; defaults to ``probs.shape[1]``.
        metrics: the metrics wanted (the AUC, the costly one, is computed only when asked for).

    Returns:
        ``{metric: array of shape (B,)}`` for each of ``metrics``.
    """
    labels, probs, pred, k = _validate(labels, probs, pred, num_classes)
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 2 or weights.shape[0] != len(labels):
        raise ValueError(f"weights must have shape ({len(labels)}, B); got {weights.shape}.")
    # One matrix product gathers every linear statistic: confusion cells, row losses, ECE bins.
    columns = [np.eye(k * k)[labels * k + pred]]
    if probs is not None:
        columns += _probability_columns(labels, probs, pred)
    stats = weights.T @ np.concatenate(columns, axis=1)
    cm = stats[:, : k * k].reshape(-1, k, k)
    total = cm.sum(axis=(1, 2))
    out = _label_metrics(cm, total)
    if probs is None:
        nan = np.full(weights.shape[1], np.nan)
        out.update(auc=nan, log_loss=nan.copy(), ece=nan.copy())
    else:
        rest = stats[:, k * k :]
        with np.errstate(invalid="ignore", divide="ignore"):
            out["log_loss"] = rest[:, 0] / total
            ece_conf, ece_hit = rest[:, 1 : 1 + ECE_BINS], rest[:, 1 + ECE_BINS :]
            out["ece"] = np.abs(ece_hit - ece_conf).sum(axis=1) / total
        out["auc"] = _macro_auc(labels, probs, weights, k) if "auc" in metrics else None
    return {name: out[name] for name in metrics}


def qwk_for_task(obj: Any, *, ordinal: bool | None, num_classes: int | None) -> Any:
    """``obj`` (scores, or a metrics.json / report.json holding them at any depth) with every ``qwk`` null where it
    depends on an arbitrary class order: unordered classes, three or more (they are indexed alphabetically). Two
    classes keep it: Cohen's kappa, the same whichever comes first. A ``{value, ci}`` entry keeps its shape.

        >>> qwk_for_task({"test": {"qwk": 0.4, "accuracy": 0.5}}, ordinal=False, num_classes=3)
        {'test': {'qwk': None, 'accuracy': 0.5}}
        >>> qwk_for_task({"qwk": {"value": 0.4, "ci": [0.1, 0.6]}}, ordinal=False, num_classes=3)
        {'qwk': {'value': None, 'ci': [None, None]}}
        >>> qwk_for_task({"qwk": 0.4}, ordinal=True, num_classes=3)
        {'qwk': 0.4}
    """
    if ordinal is not False or (num_classes or 0) <= 2:
        return obj
    if isinstance(obj, dict):
        return {key: (({**value, "value": None, "ci": [None, None]} if isinstance(value, dict) else None)
                      if key == "qwk" else qwk_for_task(value, ordinal=ordinal, num_classes=num_classes))
                for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [qwk_for_task(value, ordinal=ordinal, num_classes=num_classes) for value in obj]
    return obj


def nan_to_none(obj: Any) -> Any:
    """Strict-JSON values: every ``nan``/``inf`` float becomes ``None``, numpy scalars and arrays Python ones.

    Recursive through dicts, lists and tuples; a dict key JSON cannot take (a numpy scalar, a
    path...) becomes its ``str``. Every JSON file the toolkit writes goes through it.
    """
    if isinstance(obj, dict):
        return {_json_key(key): nan_to_none(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [nan_to_none(value) for value in obj]
    if isinstance(obj, np.ndarray):
        return nan_to_none(obj.tolist())
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _json_key(key: Any) -> Any:
    return key if key is None or isinstance(key, (str, int, float, bool)) else str(key)


def _validate(labels, probs, pred, num_classes):
    if probs is not None:
        probs = np.asarray(probs)
        if probs.ndim != 2:
            raise ValueError(f"probs must have shape (n, k); got {probs.shape}.")
        if num_classes is None:
            num_classes = probs.shape[1]
        elif probs.shape[1] != num_classes:
            raise ValueError(f"probs has {probs.shape[1]} columns but num_classes={num_classes}.")
    if num_classes is None:
        raise ValueError("num_classes is required when probs is None.")
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2; got {num_classes}.")
    labels = check_labels(labels, num_classes)
    if pred is None:
        if probs is None:
            raise ValueError("pass pred or probs; got neither.")
        pred = probs.argmax(axis=1)
    pred = check_labels(pred, num_classes, name="pred")
    for name, arr in (("probs", probs), ("pred", pred)):
        if arr is not None and len(arr) != len(labels):
            raise ValueError(f"{name} has {len(arr)} rows but labels has {len(labels)}.")
    return labels, probs, pred, int(num_classes)


def check_probabilities(probs, name: str = "probs") -> None:
    """Raise ``ValueError`` unless ``probs`` is ``(n, k)`` probabilities: finite, non-negative, rows summing to 1
    (within 1e-3) — logits, percentages and log-probabilities give figures that look right and are not."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"{name} must have shape (n, k); got {p.shape}.")
    if not np.isfinite(p).all():
        raise ValueError(f"{name} holds {int((~np.isfinite(p)).sum())} NaN or infinite value(s); pass probabilities.")
    sums = p.sum(axis=1)
    if p.size and (p.min() < 0 or np.abs(sums - 1).max() > 1e-3):
        row = int(np.abs(sums - 1).argmax()) if p.min() >= 0 else int(np.where(p.min(axis=1) < 0)[0][0])
        raise ValueError(f"{name} row {row} is not probabilities (it sums to {sums[row]:.6g}, minimum "
                         f"{p[row].min():.6g}); pass softmax probabilities (each row >= 0, summing to 1), not "
                         "logits, percentages or log-probabilities.")


def check_labels(values, k: int, name: str = "labels") -> np.ndarray:
    """``values`` as int64 class numbers ``0..k-1``; ``ValueError`` for another shape, fractions or a class out of range."""
    values = np.asarray(values)
    if values.dtype.kind not in "biuf":  # strings, None, objects: numbers or nothing
        try:
            values = values.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be class numbers 0..{k - 1}; got values such as "
                             f"{values.ravel().tolist()[0]!r} (map class names to their index first).") from None
        if not np.isfinite(values).all():
            raise ValueError(f"{name} must be class numbers 0..{k - 1}; got missing values (NaN or None).")
    if values.ndim != 1:
        raise ValueError(f"{name} must be 1-D, one class number per row; got shape {values.shape} (one-hot rows: "
                         "pass labels.argmax(axis=1)).")
    if values.dtype.kind == "f" and not np.array_equal(values, np.round(values)):
        raise ValueError(f"{name} must be whole class numbers 0..{k - 1}; got fractional values such as "
                         f"{float(values[values != np.round(values)][0]):g}.")
    if values.size and (values.min() < 0 or values.max() >= k):
        raise ValueError(f"{name} must be in 0..{k - 1}; got {values.min()}..{values.max()}.")
    return values.astype(np.int64, copy=False)


def _probability_columns(labels, probs, pred) -> list[np.ndarray]:
    """Per row: the log-loss term and the ECE bin's confidence and hit of the predicted label ``pred``."""
    eps = np.finfo(probs.dtype if np.issubdtype(probs.dtype, np.floating) else np.float64).eps
    p64 = probs.astype(np.float64)
    true_p = np.clip(p64[np.arange(len(labels)), labels], eps, 1 - eps)
    conf, hit = label_confidence(labels, p64, pred)
    bins = ece_bins(conf)
    onehot = np.eye(ECE_BINS)[bins]
    return [-np.log(true_p)[:, None], onehot * conf[:, None], onehot * hit[:, None]]


def label_confidence(labels, probs, pred=None) -> tuple[np.ndarray, np.ndarray]:
    """``(confidence, hit)`` of the labels a model reports, as ECE and the reliability diagrams measure them:
    its probability of ``pred`` and whether ``pred`` is right (``pred`` defaults to ``argmax(probs)``). A
    combiner's own labels (a hard vote's tie-break, a ``+thr`` grade) are the ones judged, not the argmax.

    Example:
        >>> conf, hit = label_confidence(np.array([1, 1]), np.array([[0.5, 0.5], [0.6, 0.4]]), np.array([1, 1]))
        >>> conf.tolist(), hit.tolist()
        ([0.5, 0.4], [1.0, 1.0])
    """
    p64 = np.asarray(probs, dtype=np.float64)
    pred = p64.argmax(axis=1) if pred is None else np.asarray(pred)
    conf = p64[np.arange(len(pred)), pred]
    return conf, (pred == np.asarray(labels)).astype(np.float64)


def ece_bins(conf: np.ndarray) -> np.ndarray:
    """The ECE bin of each confidence: :data:`ECE_BINS` equal-width bins ``(lo, hi]`` (0 falls in the first)."""
    edges = np.linspace(0.0, 1.0, ECE_BINS + 1)
    return np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, ECE_BINS - 1)


def _label_metrics(cm: np.ndarray, total: np.ndarray) -> dict[str, np.ndarray]:
    tp = np.diagonal(cm, axis1=1, axis2=2)
    support, predicted = cm.sum(axis=2), cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = tp.sum(axis=1) / total
        recall = np.where(support > 0, tp / np.where(support > 0, support, 1), 0.0)
        balanced = recall.sum(axis=1) / (support > 0).sum(axis=1)
        present = (support + predicted) > 0
        denom = support + predicted  # 2tp + fp + fn
        f1 = np.where(present, 2 * tp / np.where(present, denom, 1), 0.0)
        macro_f1 = f1.sum(axis=1) / present.sum(axis=1)
    return {"accuracy": accuracy, "balanced_accuracy": balanced, "macro_f1": macro_f1, "qwk": _kappa(cm)}


def _kappa(cm: np.ndarray) -> np.ndarray:
    k = cm.shape[-1]
    grid = np.arange(k)
    w = (grid[:, None] - grid[None, :]) ** 2.0
    rows, cols, total = cm.sum(axis=2), cm.sum(axis=1), cm.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        observed = (cm * w).sum(axis=(1, 2))
        expected = np.einsum("bi,ij,bj->b", rows, w, cols) / total
        kappa = 1.0 - observed / expected
    return np.where(expected > 0, kappa, np.nan)


def _macro_auc(labels, probs, weights, k) -> np.ndarray:
    classes = [1] if k == 2 else range(k)
    aucs = [_weighted_auc(probs[:, c], labels == c, weights) for c in classes]
    stacked = np.stack(aucs)
    defined = ~np.isnan(stacked)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(defined.any(axis=0), np.nansum(stacked, axis=0) / defined.sum(axis=0), np.nan)


def _weighted_auc(score: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC (ties count one half) for every column of ``weights``.

    Only the negatives are sorted and cumulated; each positive then looks up the weight
    of the negatives below its score, so the work is one pass over the rows per class.
    """
    pos_rows, neg_rows = np.flatnonzero(positive), np.flatnonzero(~positive)
    neg_rows = neg_rows[np.argsort(score[neg_rows], kind="stable")]
    neg_scores, pos_scores = score[neg_rows], score[pos_rows]
    neg_w, pos_w = weights[neg_rows], weights[pos_rows]
    below = np.zeros((len(neg_rows) + 1, weights.shape[1]))
    np.cumsum(neg_w, axis=0, out=below[1:])
    left = np.searchsorted(neg_scores, pos_scores, side="left")
    right = np.searchsorted(neg_scores, pos_scores, side="right")
    lookup = below[left]
    if np.any(left != right):  # negatives tied with a positive count one half
        lookup += below[right]
        lookup *= 0.5
    n_pos, n_neg = pos_w.sum(axis=0), below[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = np.einsum("ib,ib->b", pos_w, lookup) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)
