"""Logistic-regression helpers of :class:`~ensemble.combiners.stack.Stacking`.

The regression itself is scikit-learn's ``LogisticRegression`` (L-BFGS, multinomial,
objective ``C * sum_i log_loss_i + 0.5 * ||W||^2`` with the intercept not penalised),
warm-started along the ``C`` path and across folds through its ``warm_start`` option.
What is kept of it are plain coefficients: the stacker predicts with numpy from them
(:func:`logits`, :func:`softmax_columns`), so a saved stacker needs no scikit-learn object.

Features are stored feature-major, ``XT`` of shape (d, n): then the logits
``coef @ XT`` come out as (k, n), and every reduction over the k classes is a
handful of fast row operations instead of numpy's slow short-axis reductions.
An earlier hand-written L-BFGS solver was replaced by scikit-learn's; ``tests``
check the stacker's probabilities against ``LogisticRegression`` fitted directly.
"""

from __future__ import annotations

import numpy as np


def logits(XT: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    """``coef @ XT + intercept`` with the product in XT's dtype: (k, n) float64."""
    Z = (coef.astype(XT.dtype) @ XT).astype(np.float64)
    Z += intercept[:, None]
    return Z


def _row_max(Z: np.ndarray) -> np.ndarray:
    out = Z[0].copy()
    for row in Z[1:]:
        np.maximum(out, row, out=out)
    return out


def softmax_columns(Z: np.ndarray) -> np.ndarray:
    """Softmax over axis 0 of logits (k, n), in place; returns Z."""
    Z -= _row_max(Z)
    np.exp(Z, out=Z)
    Z /= Z.sum(axis=0)
    return Z


def fit_logreg(XT: np.ndarray, y: np.ndarray, C: float, *, init: tuple[np.ndarray, ...] | None = None,
               max_iter: int = 100, tol: float = 1e-5):
    """scikit-learn's L2 multinomial ``LogisticRegression`` fitted on feature-major ``XT`` (d, n).

    Args:
        XT: features, feature-major (d, n), float32 or float64.
        y: labels (n,).
        C: inverse regularisation strength.
        init: ``(coef_, intercept_, classes_)`` of an earlier fit (warm start), or None; ignored
            when that fit saw other classes (a rare class missing from a fold).
        max_iter: L-BFGS iteration cap (hitting it is expected for a capped refit: no warning).
        tol: L-BFGS tolerance.

    Returns:
        The fitted ``LogisticRegression``.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    if np.unique(y).size < 2:  # a fold of one class (a class of 1-2 rows on val): its constant model
        return OneClassModel(np.unique(y), XT.shape[0])
    if init is not None and not np.array_equal(init[2], np.unique(y)):
        init = None
    model = LogisticRegression(C=float(C), max_iter=int(max_iter), tol=float(tol), warm_start=init is not None)
    if init is not None:
        model.coef_, model.intercept_ = np.array(init[0], dtype=np.float64), np.array(init[1], dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(XT.T, y)
    return model


class OneClassModel:
    """What :func:`fit_logreg` returns for labels of one class, which scikit-learn refuses to fit ("needs samples
    of at least 2 classes"): that class for every row (zero coefficients; :func:`embed_classes` puts the absent
    classes :data:`ABSENT_LOGIT_GAP` below it)."""

    def __init__(self, classes: np.ndarray, d: int):
        self.classes_ = np.asarray(classes, dtype=np.int64)
        self.coef_, self.intercept_ = np.zeros((1, d)), np.zeros(1)
        self.n_iter_ = np.zeros(1, dtype=np.int64)


ABSENT_LOGIT_GAP = 30.0
"""A class absent from the fit labels gets an intercept this far below the lowest other one (p ~ 1e-13)."""


def embed_classes(model, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``coef`` (k, d) and ``intercept`` (k,) acting on softmax logits, for all ``k`` classes.

    A binary ``LogisticRegression`` holds one vector ``w`` for the second class; the softmax
    pair ``(-w/2, w/2)`` gives the same probabilities. Classes absent from the fit labels get
    zero coefficients and an intercept :data:`ABSENT_LOGIT_GAP` below the others.
    """
    coef, intercept = np.asarray(model.coef_, dtype=np.float64), np.asarray(model.intercept_, dtype=np.float64)
    present = np.asarray(model.classes_, dtype=np.int64)
    if coef.shape[0] == 1 and present.size == 2:
        coef, intercept = np.vstack([-coef / 2, coef / 2]), np.concatenate([-intercept / 2, intercept / 2])
    full_coef = np.zeros((k, coef.shape[1]))
    full_intercept = np.full(k, intercept.min() - ABSENT_LOGIT_GAP)
    full_coef[present], full_intercept[present] = coef, intercept
    return full_coef, full_intercept


def mean_log_loss(XT: np.ndarray, y: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> float:
    """Unregularised mean log-loss of the logistic model ``(coef, intercept)`` on (XT, y)."""
    proba = softmax_columns(logits(XT, coef, intercept))
    return float(-np.log(np.maximum(proba[y, np.arange(y.shape[0])], 1e-15)).mean())


def stratified_subsample(y: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted row indices of a class-proportional random subsample of about ``size`` rows."""
    keep = []
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        take = max(1, round(size * rows.size / y.shape[0]))
        keep.append(rng.permutation(rows)[:take])
    return np.sort(np.concatenate(keep))
