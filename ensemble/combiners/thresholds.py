"""Grade thresholds on the expected grade, tuned for quadratic weighted kappa.

For ordered grades ``0..k-1`` the expected grade ``E = probs @ arange(k)`` is
cut at ``k-1`` sorted thresholds: grade ``g`` is the number of thresholds
``<= E``. The thresholds are tuned by exact coordinate search: for one
threshold at a time, every cut between two neighbouring ``E`` values (within
its neighbours' interval) is scored at once from cumulative sums, and the best
is kept when it raises the kappa. Rounds repeat until nothing changes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ensemble.combiners._validation import check_labels, check_probs, require_fitted
from members.infra.atomic import write_json
from members.infra.errors import UserError
from members.model.cuts import _best_cut, kappa_or_zero, prior_cuts, reach_for, tune_cuts  # noqa: F401  (re-exported)


class GradeThresholds:
    """Thresholds on the expected grade, chosen to maximise quadratic weighted kappa.

    Args:
        init: starting thresholds, ``k - 1`` increasing values, tuned without limits. ``None``
            (the default) starts *prior-matched* — at the quantiles of ``E`` that give each grade
            its share of the labels (:func:`members.model.cuts.prior_cuts`) — and tunes each
            threshold within :func:`members.model.cuts.reach_for` of its start (half a grade, less
            where ``E`` spreads less than the grades): members trained on class-balanced batches
            push ``E`` up for every eye, and free tuning on a hundred val rows overfits. Where ``E``
            has no spread the start is the midpoints ``0.5, 1.5, ..., k - 1.5``. (The val-only
            split-half ablation: BENCHMARKS.md, "Cuts of regression members".)
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
        if np.ndim(probs) != 2:
            raise UserError(f"GradeThresholds takes one model's probabilities, shape (rows, classes); got shape "
                            f"{np.shape(probs)}. For the members' stacked P (members, rows, classes), fit a combiner "
                            "(SoftVote, say) and pass its predict_proba(P).")
        probs = check_probs(np.asarray(probs)[None])[0]
        n, k = probs.shape
        y = check_labels(y, n, k)
        E = self._expected(probs)
        reach = None
        if self.init is None:
            matched = prior_cuts(E, np.bincount(y, minlength=k)) if n else None
            thr = np.arange(k - 1) + 0.5 if matched is None else matched
            reach = None if matched is None else reach_for(E, y)
        else:
            thr = np.asarray(self.init, dtype=np.float64)
        if self.init is not None and (thr.shape != (k - 1,) or not np.all(np.diff(thr) > 0) or not np.all(np.isfinite(thr))):
            raise UserError(
                f"init has {thr.size} threshold(s) but {k} classes need {k - 1} increasing ones. "
                f"Received: init={np.asarray(self.init).tolist()}"
            )
        thr, self.kappa_, self.init_kappa_ = tune_cuts(E, y, k, thr, max_rounds=int(self.max_rounds), reach=reach)
        self.thresholds_ = thr
        return self

    def predict(self, probs: Any) -> np.ndarray:
        """Grades (n,) for probabilities (n, k)."""
        require_fitted(self, "thresholds_", "fit(probs, y)")
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
