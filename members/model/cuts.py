"""Cuts on a continuous grade read-out, tuned for quadratic weighted kappa (exact coordinate search).

Grade ``g`` of a value ``E`` is the number of cuts ``<= E``. For one cut at a time every
position between two neighbouring ``E`` values (within its neighbours' interval) is scored at
once from cumulative sums, and the best is kept when it raises the kappa; rounds repeat
until nothing changes. Used by the ensemble's grade-thresholds combiner (on the expected
grade) and by the regression head (on its score); both start at :func:`prior_cuts` — the grade
shares of the labels — and tune within :func:`reach_for` of them.
"""

from __future__ import annotations

import math

import numpy as np

from members.scoring import qwk


def _qwk_parts(y: np.ndarray, pred: np.ndarray, k: int) -> tuple[float, float]:
    """Observed and expected weighted disagreement: ``kappa = 1 - num / den``.

    The coordinate search updates these two sums incrementally; the kappa
    itself comes from :func:`members.scoring.qwk`.
    """
    n = y.shape[0]
    conf = np.bincount(y * k + pred, minlength=k * k).reshape(k, k).astype(np.float64)
    grid = np.arange(k, dtype=np.float64)
    W = (grid[:, None] - grid[None, :]) ** 2
    expected = np.outer(conf.sum(axis=1), conf.sum(axis=0)) / n
    return float((W * conf).sum()), float((W * expected).sum())


def kappa_or_zero(y: np.ndarray, pred: np.ndarray, k: int) -> float:
    """Quadratic weighted kappa (:func:`members.scoring.qwk`), with undefined (no spread) as 0.0.

    Searches need a number to compare and JSON needs a finite one.
    """
    value = qwk(y, pred, k)
    return 0.0 if math.isnan(value) else value


def _best_cut(E: np.ndarray, y: np.ndarray, pred: np.ndarray, thr: np.ndarray, j: int, k: int,
              limits: tuple[float, float] | None = None) -> tuple[float, float]:
    """Best value for threshold ``j`` with the others fixed: (threshold, kappa); ``limits`` bounds it."""
    n = y.shape[0]
    lo = thr[j - 1] if j > 0 else -np.inf
    hi = thr[j + 1] if j + 1 < thr.shape[0] else np.inf
    inside = np.flatnonzero((E >= lo) & (E < hi))  # these rows are graded j or j + 1
    base = pred.copy()
    base[inside] = j + 1
    num0, den0 = _qwk_parts(y, base, k)
    if inside.size == 0:
        return float(thr[j]), kappa_or_zero(y, pred, k)
    order = inside[np.argsort(E[inside], kind="stable")]
    e, t = E[order], y[order]
    grid = np.arange(k, dtype=np.float64)
    v = ((grid[:, None] - grid[None, :]) ** 2).T @ np.bincount(y, minlength=k)  # W^T a
    # The first i rows (ascending E) move from grade j + 1 to grade j.
    num = num0 + np.concatenate(([0.0], np.cumsum((t - j) ** 2 - (t - j - 1.0) ** 2)))
    den = den0 + np.arange(e.size + 1) * (v[j] - v[j + 1]) / n
    kappa = np.where(den > 0, 1.0 - num / np.where(den > 0, den, 1.0), 0.0)
    valid = np.ones(e.size + 1, dtype=bool)
    valid[1:-1] = e[1:] > e[:-1]  # a cut must fall between two different E values
    cuts = np.empty(e.size + 1)
    cuts[0] = e[0]
    cuts[1:-1] = (e[:-1] + e[1:]) / 2.0
    cuts[-1] = (e[-1] + hi) / 2.0 if np.isfinite(hi) else e[-1] + 0.5
    if limits is not None:
        valid &= (cuts >= limits[0]) & (cuts <= limits[1])
        if not valid.any():
            return float(thr[j]), kappa_or_zero(y, pred, k)
    kappa = np.where(valid, kappa, -np.inf)
    best = np.flatnonzero(kappa == kappa.max())
    pick = best[np.argmin(np.abs(cuts[best] - thr[j]))]  # ties: stay nearest the current value
    return float(cuts[pick]), float(kappa[pick])


def tune_cuts(E: np.ndarray, y: np.ndarray, k: int, init: np.ndarray | None = None, *,
              max_rounds: int = 20, reach: float | None = None, min_gap: float = 0.0) -> tuple[np.ndarray, float, float]:
    """QWK-optimal increasing cuts on ``E`` for labels ``y`` in ``0..k-1``.

    Args:
        E: one value per row (expected grade, regression score).
        y: integer labels.
        k: number of grades.
        init: starting cuts (default ``0.5, 1.5, …``).
        max_rounds: passes over all cuts.
        reach: when given, each cut stays within ``reach`` of its starting value (a few hundred val
            rows cannot place a cut far from where the grade scale puts it without overfitting).
        min_gap: the least distance between neighbouring cuts (no grade squeezed into a sliver).

    Returns:
        ``(cuts, kappa, initial kappa)``.

    Example:
        >>> tune_cuts(np.array([0.1, 0.2, 0.9, 1.0]), np.array([0, 0, 1, 1]), 2)[1]
        1.0
    """
    E = np.asarray(E, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    thr = (np.arange(k - 1) + 0.5) if init is None else np.array(init, dtype=np.float64)
    start = thr.copy()
    pred = np.searchsorted(thr, E, side="right")
    kappa = init_kappa = kappa_or_zero(y, pred, k)
    for _ in range(max_rounds):
        changed = False
        for j in range(k - 1):
            limits = None
            if reach is not None or min_gap > 0:
                low = max(start[j] - (reach if reach is not None else np.inf), thr[j - 1] + min_gap if j > 0 else -np.inf)
                high = min(start[j] + (reach if reach is not None else np.inf), thr[j + 1] - min_gap if j + 2 < k else np.inf)
                limits = (low, high)
            cut, value = _best_cut(E, y, pred, thr, j, k, limits)
            if value > kappa + 1e-12:
                thr[j], kappa, changed = cut, value, True
                pred = np.searchsorted(thr, E, side="right")
        if not changed:
            break
    return thr, kappa_or_zero(y, pred, k), init_kappa


def prior_cuts(score: np.ndarray, prior: np.ndarray) -> np.ndarray | None:
    """Cuts that give each grade its ``prior`` share of the rows of ``score``; None when they do not exist.

    Cut ``j`` is the quantile of ``score`` at the cumulative share of grades ``0..j``. None when
    the scores have no spread (every quantile the same) or the prior is unusable.

    Example:
        >>> prior_cuts(np.arange(10.0), np.array([0.5, 0.3, 0.2])).round(2).tolist()
        [4.5, 7.2]
    """
    score = np.asarray(score, np.float64)
    prior = np.asarray(prior, np.float64)
    if score.size < 2 or prior.ndim != 1 or prior.size < 2 or not np.all(np.isfinite(prior)) or prior.sum() <= 0:
        return None
    share = np.cumsum(np.clip(prior, 0.0, None) / prior.sum())[:-1]
    cuts = np.quantile(score, np.clip(share, 0.0, 1.0))
    if not np.all(np.isfinite(cuts)) or np.ptp(score) <= 0:
        return None
    return np.maximum.accumulate(cuts)


def reach_for(score: np.ndarray, y: np.ndarray, half: float = 0.5) -> float:
    """How far QWK tuning may move a cut: ``half`` a grade, shrunk where the scores spread less than the grades.

    A member whose scores all lie within a tenth of a grade has learned next to nothing; half a
    grade would let the tuning re-rank every row on noise.

    Example:
        >>> reach_for(np.array([0.0, 0.1, 0.2, 0.3]), np.array([0, 1, 2, 3]))
        0.05
    """
    spread, grades = float(np.std(score)), float(np.std(y))
    if not np.isfinite(spread) or grades <= 0:
        return half
    return round(half * min(1.0, spread / grades), 6)
