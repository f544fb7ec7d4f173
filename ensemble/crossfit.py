"""Out-of-fold validation predictions of a combiner, so methods are compared on rows they did not fit.

A combiner fitted on the whole val split and scored on that same split looks better
than it is (stacking and grade thresholds most of all), so choosing the best method
by in-sample val scores favours the most flexible one. ``vote`` therefore scores
each method on val by K-fold cross-fitting: every val row is predicted by a copy of
the combiner fitted on the other folds. The combiner that is saved and evaluated on
test is then refitted on all val rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_SPLITS = 5


@dataclass(frozen=True)
class OutOfFold:
    """Out-of-fold val predictions: ``probs`` (n, k), ``pred`` (n,) and ``pred_thr`` (grade thresholds)."""

    probs: np.ndarray
    pred: np.ndarray
    pred_thr: np.ndarray | None
    n_splits: int


def stratified_folds(y: np.ndarray, n_splits: int, seed: int) -> np.ndarray:
    """Fold number of every row: each class is shuffled and dealt round-robin over the folds.

    Example:
        >>> np.bincount(stratified_folds(np.array([0] * 6 + [1] * 4), 2, seed=0)).tolist()
        [5, 5]
    """
    rng = np.random.default_rng(seed)
    folds = np.empty(len(y), dtype=np.int64)
    dealt = 0
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c))
        folds[rows] = (dealt + np.arange(rows.size)) % n_splits
        dealt += rows.size
    return folds


def cross_fit(
    method: str,
    P: np.ndarray,
    y: np.ndarray,
    *,
    thresholds: bool = False,
    n_splits: int = N_SPLITS,
    seed: int = 0,
) -> OutOfFold:
    """Predict every val row with ``method`` fitted on the other folds.

    Args:
        method: a combiner method of :data:`ensemble.combiners.METHODS`.
        P: member probabilities ``(m, n, k)`` on val.
        y: val labels ``(n,)``.
        thresholds: also return predictions with grade thresholds fitted on the training
            folds' combined probabilities (what ``make_combiner(method, thresholds=True)`` does).
        n_splits: folds; reduced to ``n // 2`` for tiny val sets. Below 2 folds the
            combiner is fitted and scored in-sample (``n_splits`` is then 1).
        seed: seed of the fold assignment.

    Returns:
        An :class:`OutOfFold`.
    """
    from ensemble.combiners import GradeThresholds, make_combiner

    n, k = P.shape[1], P.shape[2]
    n_splits = min(n_splits, n // 2)
    if n_splits < 2:
        combiner = make_combiner(method).fit(P, y)
        probs = combiner.predict_proba(P)
        pred_thr = GradeThresholds().fit(probs, y).predict(probs) if thresholds else None
        return OutOfFold(probs, combiner.predict(P), pred_thr, 1)
    folds = stratified_folds(y, n_splits, seed)
    probs, pred = np.zeros((n, k)), np.zeros(n, dtype=np.int64)
    pred_thr = np.zeros(n, dtype=np.int64) if thresholds else None
    for fold in range(n_splits):
        held, kept = folds == fold, folds != fold
        combiner = make_combiner(method).fit(P[:, kept], y[kept])
        probs[held] = combiner.predict_proba(P[:, held])
        pred[held] = combiner.predict(P[:, held])
        if thresholds:
            grades = GradeThresholds().fit(combiner.predict_proba(P[:, kept]), y[kept])
            pred_thr[held] = grades.predict(probs[held])
    return OutOfFold(probs, pred, pred_thr, n_splits)
