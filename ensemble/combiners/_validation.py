"""The input checks every combiner (and :class:`~ensemble.combiners.thresholds.GradeThresholds`) runs.

A leaf module: it imports neither :mod:`ensemble.combiners._base` nor the thresholds, so
both import it at the top. ``_base`` re-exports these names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ensemble.constants import ROW_SUM_TOL
from members.infra.errors import UserError

__all__ = ["ROW_SUM_TOL", "check_labels", "check_member_names", "check_probs"]


def check_probs(P: Any) -> np.ndarray:
    """Check a stack of member probabilities and return it as a float array.

    float32 and float64 inputs are kept as they are (no copy); anything else is
    converted to float64.

    Args:
        P: array-like of shape ``(m members, n rows, k classes)``.

    Returns:
        ``P`` as a float ndarray.

    Raises:
        UserError: wrong number of dimensions, no rows, fewer than 2 classes,
            NaN or inf, negative values, or a row not summing to 1 within 1e-3.
    """
    P = np.asarray(P)
    if P.dtype not in (np.float32, np.float64):
        if not (np.issubdtype(P.dtype, np.number) or P.dtype == bool):
            raise UserError(f"P must hold numbers; got dtype {P.dtype}. Pass member probabilities as floats.")
        P = P.astype(np.float64)
    if P.ndim != 3:
        raise UserError(
            f"P must be a 3-D array (members, rows, classes); got {P.ndim} dimensions with shape {P.shape}. "
            "Stack the members' (rows, classes) probabilities with np.stack."
        )
    m, n, k = P.shape
    if m < 1 or n < 1:
        raise UserError(f"P has {m} members and {n} rows; at least 1 of each is needed. Received: P.shape={P.shape}")
    if k < 2:
        raise UserError(f"P has {k} class column(s); at least 2 are needed. Received: P.shape={P.shape}")
    with np.errstate(invalid="ignore", over="ignore"):  # NaN/inf propagate into the sums, checked next (a BLAS
        sums = P.reshape(-1, k) @ np.ones(k, dtype=P.dtype)  # may also raise its FP flag spuriously on finite input)
    if not np.isfinite(sums).all():
        bad = int((~np.isfinite(P)).sum())
        raise UserError(f"P holds {bad} NaN or infinite value(s); probabilities must be finite. Check the members' outputs.")
    low = float(P.min())
    if low < 0.0:
        raise UserError(f"P holds negative values (minimum {low!r}); probabilities must be >= 0.")
    if sums.min() < 1.0 - ROW_SUM_TOL or sums.max() > 1.0 + ROW_SUM_TOL:
        worst = int(np.abs(sums - 1.0).argmax())
        member, row = divmod(worst, n)
        raise UserError(
            f"Every row of P must sum to 1 within {ROW_SUM_TOL:g}; member {member} row {row} sums to "
            f"{float(sums[worst]):.6g}. Pass softmax probabilities, not logits or scores."
        )
    return P


def check_labels(y: Any, n: int, k: int) -> np.ndarray:
    """Check integer labels against ``n`` rows and ``k`` classes; return them as int64.

    Raises:
        UserError: wrong shape, non-integer values, or labels outside ``0..k-1``.
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise UserError(f"y must be 1-D (one label per row); got shape {y.shape}.")
    if y.shape[0] != n:
        raise UserError(f"P has {n} rows but y has {y.shape[0]}; pass one label per row of P.")
    integral = np.issubdtype(y.dtype, np.integer) or (
        np.issubdtype(y.dtype, np.number) and bool(np.all(np.isfinite(y))) and bool(np.all(y == np.round(y)))
    )
    if not integral:
        raise UserError(f"y must hold integer class labels 0..{k - 1}; got dtype {y.dtype}.")
    y = y.astype(np.int64)
    if n and (y.min() < 0 or y.max() >= k):
        bad = y[(y < 0) | (y >= k)]
        raise UserError(
            f"y holds {bad.size} label(s) outside 0..{k - 1} (P has {k} classes); labels must index P's class columns. "
            f"Received: y contains {int(bad[0])}"
        )
    return y


def check_member_names(names: Sequence[str] | None, m: int) -> list[str]:
    """Default names ``member_0 ..`` or the given names, one per member."""
    if names is None:
        return [f"member_{j}" for j in range(m)]
    names = [str(x) for x in names]
    if len(names) != m:
        raise UserError(f"P has {m} members but member_names has {len(names)}; pass one name per member.")
    return names


def require_fitted(estimator: Any, attribute: str, call: str = "fit(P, y)") -> None:
    """Raise scikit-learn's ``NotFittedError`` (a ValueError and an AttributeError) unless ``estimator`` has
    ``attribute``, the mark of a fitted one."""
    if not hasattr(estimator, attribute):
        from sklearn.exceptions import NotFittedError

        raise NotFittedError(f"{type(estimator).__name__} is not fitted yet; call {call} first.")
