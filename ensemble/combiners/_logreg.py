"""A small L2-regularised multinomial logistic regression in numpy + scipy L-BFGS.

Used by :class:`~ensemble.combiners.stack.Stacking`. Written out (rather than
sklearn's ``LogisticRegression``) so that the stacker can warm-start along the
``C`` path and across folds, run its matrix products in float32, and predict
from plain stored coefficients. The objective is sklearn's,
``C * sum_i log_loss_i + 0.5 * ||W||^2`` (intercept not penalised), divided by
``C * n`` for the optimiser.

Features are stored feature-major, ``XT`` of shape (d, n): then the logits
``coef @ XT`` come out as (k, n), and every reduction over the k classes is a
handful of fast row operations instead of numpy's slow short-axis reductions.
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


def _objective(theta: np.ndarray, XT: np.ndarray, y: np.ndarray, C: float, k: int) -> tuple[float, np.ndarray]:
    d, n = XT.shape
    coef, intercept = theta[: k * d].reshape(k, d), theta[k * d :]
    cols = np.arange(n)
    Z = logits(XT, coef, intercept)
    Z -= _row_max(Z)
    z_true = Z[y, cols]
    np.exp(Z, out=Z)
    s = Z.sum(axis=0)
    loss = float(np.log(s).sum() - z_true.sum()) / n + float(coef.ravel() @ coef.ravel()) / (2.0 * C * n)
    Z /= s
    Z[y, cols] -= 1.0  # Z is now softmax - onehot: the loss gradient in the logits
    g_coef = (Z.astype(XT.dtype) @ XT.T).astype(np.float64)
    g_coef += coef / C
    g_coef /= n
    return loss, np.concatenate([g_coef.ravel(), Z.sum(axis=1) / n])


def fit_logreg(
    XT: np.ndarray, y: np.ndarray, k: int, C: float, *, init: np.ndarray | None = None, max_iter: int = 100, tol: float = 1e-5
) -> tuple[np.ndarray, int]:
    """Minimise the regularised multinomial log-loss.

    Args:
        XT: features, feature-major (d, n), float32 or float64.
        y: labels (n,) in ``0..k-1``.
        k: number of classes.
        C: inverse regularisation strength (sklearn's meaning).
        init: a start ``theta`` (warm start); zeros when ``None``.
        max_iter: L-BFGS iteration cap.
        tol: L-BFGS projected-gradient tolerance.

    Returns:
        ``theta`` (flat: ``coef`` (k, d) row-major, then ``intercept`` (k,)) and the iteration count.
    """
    from scipy.optimize import minimize

    d = XT.shape[0]
    theta0 = np.zeros(k * d + k) if init is None else init
    result = minimize(
        _objective, theta0, args=(XT, y, float(C), k), jac=True, method="L-BFGS-B",
        options={"maxiter": int(max_iter), "gtol": float(tol)},
    )
    return result.x, int(result.nit)


def split_theta(theta: np.ndarray, d: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``coef`` (k, d) and ``intercept`` (k,) from a flat ``theta``."""
    return theta[: k * d].reshape(k, d).copy(), theta[k * d :].copy()


def mean_log_loss(XT: np.ndarray, y: np.ndarray, theta: np.ndarray, k: int) -> float:
    """Unregularised mean log-loss of ``theta`` on (XT, y)."""
    coef, intercept = split_theta(theta, XT.shape[0], k)
    proba = softmax_columns(logits(XT, coef, intercept))
    return float(-np.log(np.maximum(proba[y, np.arange(y.shape[0])], 1e-15)).mean())


def stratified_folds(y: np.ndarray, n_folds: int, rng: np.random.Generator) -> np.ndarray:
    """A fold number (0..n_folds-1) per row, each class spread evenly over the folds.

    Rows are shuffled within their class, the classes laid end to end, and
    folds dealt round-robin, so every fold is non-empty when ``n >= n_folds``.
    """
    order = np.concatenate([rng.permutation(np.flatnonzero(y == c)) for c in np.unique(y)])
    folds = np.empty(y.shape[0], dtype=np.int64)
    folds[order] = np.arange(order.size) % n_folds
    return folds


def stratified_subsample(y: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted row indices of a class-proportional random subsample of about ``size`` rows."""
    keep = []
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        take = max(1, round(size * rows.size / y.shape[0]))
        keep.append(rng.permutation(rows)[:take])
    return np.sort(np.concatenate(keep))
