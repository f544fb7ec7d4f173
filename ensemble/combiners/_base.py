"""What every combiner shares: the fit/predict skeleton around the input checks (:mod:`._validation`), JSON round-trip.

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

from ensemble.combiners._validation import ROW_SUM_TOL, check_labels, check_member_names, check_probs, require_fitted  # noqa: F401  (re-exported)
from ensemble.combiners.thresholds import GradeThresholds
from members.infra.atomic import write_json
from members.infra.errors import UserError

FORMAT_VERSION = 1


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
        require_fitted(self, "n_members_")

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
