"""Grade thresholds on the expected grade, tuned for quadratic weighted kappa.

For ordered grades ``0..k-1`` the expected grade ``E = probs @ arange(k)`` is
cut at ``k-1`` sorted thresholds: grade ``g`` is the number of thresholds
``<= E``. The thresholds are tuned by exact coordinate search: for one
threshold at a time, every cut between two neighbouring ``E`` values (within
its neighbours' interval) is scored at once from cumulative sums, and the best
is kept when it raises the kappa. Rounds repeat until nothing changes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from members.atomic import write_json
from members.errors import UserError
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


def _best_cut(E: np.ndarray, y: np.ndarray, pred: np.ndarray, thr: np.ndarray, j: int, k: int) -> tuple[float, float]:
    """Best value for threshold ``j`` with the others fixed: (threshold, kappa)."""
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
    kappa = np.where(valid, kappa, -np.inf)
    best = np.flatnonzero(kappa == kappa.max())
    pick = best[np.argmin(np.abs(cuts[best] - thr[j]))]  # ties: stay nearest the current value
    return float(cuts[pick]), float(kappa[pick])


class GradeThresholds:
    """Thresholds on the expected grade, chosen to maximise quadratic weighted kappa.

    Args:
        init: starting thresholds, ``k - 1`` increasing values; ``None`` gives the
            midpoints ``0.5, 1.5, ..., k - 1.5`` (``(0.5, 1.5, 2.5, 3.5)`` for 5 grades).
        max_rounds: passes over all thresholds.

    Example:
        >>> import numpy as np
        >>> probs = np.array([[.9, .1, 0], [.6, .4, 0], [.2, .5, .3], [0, .5, .5]])
        >>> GradeThresholds().fit(probs, [0, 1, 1, 2]).predict(probs).tolist()
        [0, 1, 1, 2]
    """

    method = "thresholds"

    def __init__(self, *, init: Sequence[float] | None = None, max_rounds: int = 20) -> None:
        self.init = init
        self.max_rounds = max_rounds

    def fit(self, probs: Any, y: Any) -> GradeThresholds:
        """Tune the thresholds on probabilities (n, k) and labels (n,)."""
        from ensemble.combiners._base import check_labels, check_probs

        probs = check_probs(np.asarray(probs)[None])[0]
        n, k = probs.shape
        y = check_labels(y, n, k)
        thr = np.arange(k - 1) + 0.5 if self.init is None else np.asarray(self.init, dtype=np.float64)
        if thr.shape != (k - 1,) or not np.all(np.diff(thr) > 0) or not np.all(np.isfinite(thr)):
            raise UserError(
                f"init has {thr.size} threshold(s) but {k} classes need {k - 1} increasing ones. "
                f"Received: init={np.asarray(self.init).tolist()}"
            )
        E = self._expected(probs)
        pred = np.searchsorted(thr, E, side="right")
        kappa = kappa_or_zero(y, pred, k)
        self.init_kappa_ = kappa
        for _ in range(int(self.max_rounds)):
            changed = False
            for j in range(k - 1):
                cut, value = _best_cut(E, y, pred, thr, j, k)
                if value > kappa + 1e-12:
                    thr[j], kappa, changed = cut, value, True
                    pred = np.searchsorted(thr, E, side="right")
            if not changed:
                break
        self.thresholds_ = thr
        self.kappa_ = kappa_or_zero(y, pred, k)
        return self

    def predict(self, probs: Any) -> np.ndarray:
        """Grades (n,) for probabilities (n, k)."""
        if not hasattr(self, "thresholds_"):
            raise RuntimeError("GradeThresholds is not fitted yet; call fit(probs, y) first.")
        probs = np.asarray(probs, dtype=np.float64)
        if probs.ndim != 2 or probs.shape[1] != self.thresholds_.size + 1:
            raise UserError(
                f"probs must have shape (rows, {self.thresholds_.size + 1}) for {self.thresholds_.size} thresholds; "
                f"got {probs.shape}."
            )
        return np.searchsorted(self.thresholds_, self._expected(probs), side="right")

    @staticmethod
    def _expected(probs: np.ndarray) -> np.ndarray:
        grid = np.arange(probs.shape[1], dtype=np.float64)
        return probs.astype(np.float64, copy=False) @ grid

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe fitted state."""
        init = None if self.init is None else np.asarray(self.init, dtype=np.float64).tolist()
        return {"method": self.method, "params": {"init": init, "max_rounds": self.max_rounds},
                "thresholds": self.thresholds_.tolist(), "kappa": self.kappa_, "init_kappa": self.init_kappa_}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GradeThresholds:
        """Rebuild from :meth:`to_dict` output."""
        params = dict(data["params"])
        if params.get("init") is not None:
            params["init"] = tuple(params["init"])
        obj = cls(**params)
        obj.thresholds_ = np.asarray(data["thresholds"], dtype=np.float64)
        obj.kappa_, obj.init_kappa_ = float(data["kappa"]), float(data["init_kappa"])
        return obj

    def save(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_dict` as JSON, atomically."""
        return write_json(path, self.to_dict())
