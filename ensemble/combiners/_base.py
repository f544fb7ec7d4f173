"""What every combiner shares: input checks, the fit/predict skeleton, JSON round-trip.

A combiner turns the members' probabilities ``P`` of shape ``(m members, n rows,
k classes)`` into one ``(n, k)`` probability table. It is fitted on held-out
(validation) probabilities only. Its learned state is plain numbers, saved as
JSON (never pickle), and a saved-then-loaded combiner reproduces
``predict_proba`` and ``predict`` bit for bit: every float is stored with
Python's ``repr``, which round-trips exactly.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from members.atomic import write_json
from members.errors import UserError

ROW_SUM_TOL = 1e-3
"""How far a row of probabilities may sum from 1."""

FORMAT_VERSION = 1


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
    sums = P.reshape(-1, k) @ np.ones(k, dtype=P.dtype)  # NaN/inf propagate into the sums
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


def _jsonable(value: Any) -> Any:
    """Constructor arguments as JSON values: tuples and arrays become lists."""
    if isinstance(value, (tuple, list, np.ndarray)):
        return np.asarray(value).tolist()
    return value


def as_floats(a: np.ndarray) -> list:
    """A nested list of Python floats (JSON-safe; ``repr`` round-trips exactly)."""
    return np.asarray(a, dtype=np.float64).tolist()


class Combiner(ClassifierMixin, BaseEstimator):
    """Base class: ``fit(P, y)``, ``predict_proba(P)``, ``predict(P)``, JSON round-trip.

    A scikit-learn estimator: ``get_params``/``set_params``, ``sklearn.base.clone`` and
    ``sklearn.utils.validation.check_is_fitted`` work, ``classes_`` is set by ``fit``, and
    ``score(P, y)`` is the accuracy. Its input is the members' stacked probabilities ``P``
    (m, n, k) rather than a 2-D ``X``.

    Subclasses set ``method``, ``_param_names`` and implement ``_fit``,
    ``_proba``, ``_state`` and ``_set_state``. With ``thresholds=True`` the fit
    also fits :class:`~ensemble.combiners.thresholds.GradeThresholds` on the
    combiner's own fitted probabilities and ``predict`` uses them.

    Example:
        >>> from sklearn.base import clone
        >>> from ensemble.combiners import SoftVote
        >>> clone(SoftVote(weights=[2, 1])).get_params()
        {'weights': [2, 1], 'thresholds': False}
    """

    method: ClassVar[str] = ""
    _param_names: ClassVar[tuple[str, ...]] = ("thresholds",)
    min_members: ClassVar[int] = 2

    # ---- public API -----------------------------------------------------------------
    def fit(self, P: Any, y: Any, member_names: Sequence[str] | None = None) -> Combiner:
        """Fit on held-out member probabilities ``P`` (m, n, k) and labels ``y`` (n,)."""
        with one_blas_thread():
            return self._fit_checked(P, y, member_names)

    def _fit_checked(self, P: Any, y: Any, member_names: Sequence[str] | None) -> Combiner:
        P = check_probs(P)
        m, n, k = P.shape
        if m < self.min_members:
            raise UserError(
                f"{type(self).__name__} needs at least {self.min_members} members; got {m}. "
                "Train more members or use that member alone."
            )
        y = check_labels(y, n, k)
        self.member_names_ = check_member_names(member_names, m)
        self.n_members_, self.n_classes_ = m, k
        self.classes_ = np.arange(k)
        self._fit(P, y)
        self.grade_thresholds_ = None
        if self.thresholds:
            from ensemble.combiners.thresholds import GradeThresholds

            self.grade_thresholds_ = GradeThresholds().fit(self._proba(P), y)
        return self

    def predict_proba(self, P: Any) -> np.ndarray:
        """Combined probabilities, shape (n, k), rows sum to 1."""
        with one_blas_thread():
            return self._proba(self._check_predict(P))

    def predict(self, P: Any) -> np.ndarray:
        """Combined labels, shape (n,): argmax, or the grade thresholds when fitted with them."""
        with one_blas_thread():
            P = self._check_predict(P)
            proba = self._proba(P)
            if self.grade_thresholds_ is not None:
                return self.grade_thresholds_.predict(proba)
            return self._labels(P, proba)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor arguments, in their order (``deep`` is accepted for scikit-learn: no sub-estimators)."""
        return {name: getattr(self, name) for name in self._param_names}

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "n_members_")

    def to_dict(self) -> dict[str, Any]:
        """The fitted combiner as JSON-safe plain lists, floats and strings."""
        self._require_fitted()
        params = {key: _jsonable(v) for key, v in self.get_params().items()}
        gt = self.grade_thresholds_
        return {
            "method": self.method,
            "format": FORMAT_VERSION,
            "params": params,
            "n_members": self.n_members_,
            "n_classes": self.n_classes_,
            "member_names": list(self.member_names_),
            "state": self._state(),
            "grade_thresholds": None if gt is None else gt.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Combiner:
        """Rebuild a fitted combiner from :meth:`to_dict` output."""
        if data.get("method") != cls.method:
            raise UserError(f"Expected a saved '{cls.method}' combiner; got method={data.get('method')!r}.")
        try:
            params = {key: (tuple(v) if isinstance(v, list) else v) for key, v in data["params"].items()}
            obj = cls(**params)
            obj.n_members_, obj.n_classes_ = int(data["n_members"]), int(data["n_classes"])
            obj.classes_ = np.arange(obj.n_classes_)
            obj.member_names_ = [str(x) for x in data["member_names"]]
            obj._set_state(data["state"])
            gt = data.get("grade_thresholds")
            obj.grade_thresholds_ = None
            if gt is not None:
                from ensemble.combiners.thresholds import GradeThresholds

                obj.grade_thresholds_ = GradeThresholds.from_dict(gt)
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"The saved '{cls.method}' combiner is incomplete or malformed ({exc!r}); re-run vote.") from None
        return obj

    def save(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_dict` as JSON, atomically."""
        return write_json(path, self.to_dict())

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # ---- hooks ------------------------------------------------------------------------
    def _fit(self, P: np.ndarray, y: np.ndarray) -> None:
        raise NotImplementedError

    def _proba(self, P: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _labels(self, P: np.ndarray, proba: np.ndarray) -> np.ndarray:
        return proba.argmax(axis=1)

    def _state(self) -> dict[str, Any]:
        raise NotImplementedError

    def _set_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    # ---- helpers ----------------------------------------------------------------------
    def _require_fitted(self) -> None:
        if not hasattr(self, "n_members_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted yet; call fit(P, y) first.")

    def _check_predict(self, P: Any) -> np.ndarray:
        self._require_fitted()
        P = check_probs(P)
        m, _, k = P.shape
        if m != self.n_members_:
            raise UserError(
                f"P has {m} members but the combiner was fitted on {self.n_members_}; "
                "pass the same members in the same order."
            )
        if k != self.n_classes_:
            raise UserError(f"P has {k} classes but the combiner was fitted on {self.n_classes_}.")
        return P


def one_blas_thread() -> Any:
    """A context that runs BLAS on one thread.

    The combiners make many thin matrix products ((n, 100) @ (100, 5) and the
    like); OpenBLAS's thread hand-offs cost more than they save there (3-15x
    slower on 2 busy cores). One thread also makes every result independent of
    the core count, which keeps saved combiners bit-for-bit reproducible.
    """
    try:
        from threadpoolctl import threadpool_limits  # installed with scikit-learn
    except ImportError:  # pragma: no cover - then BLAS keeps its own thread count
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def weighted_mean(weights: np.ndarray, P: np.ndarray) -> np.ndarray:
    """``sum_j weights[j] * P[j]`` as float64 (n, k); deterministic member order."""
    out = np.zeros(P.shape[1:], dtype=np.float64)
    for j in np.flatnonzero(weights):
        out += weights[j] * P[j]
    return out
