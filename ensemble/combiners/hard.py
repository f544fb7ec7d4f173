"""Hard (majority) voting over the members' argmax labels."""

from __future__ import annotations

from typing import Any

import numpy as np

from ensemble.combiners._base import Combiner


def vote_counts(P: np.ndarray) -> np.ndarray:
    """How many members vote for each class: (n, k) integer counts from P (m, n, k)."""
    _, n, k = P.shape
    labels = P.argmax(axis=2)  # (m, n)
    flat = (labels + k * np.arange(n)).ravel()
    return np.bincount(flat, minlength=n * k).reshape(n, k)


class HardVote(Combiner):
    """Majority vote of the members' labels; ties broken by summed probability.

    ``predict_proba`` returns the vote shares (counts / m, rows sum to 1).
    ``predict`` returns the most-voted class; among classes with the same number
    of votes, the one with the largest summed probability over all members wins
    (then the lowest class index).

    Args:
        thresholds: also fit grade thresholds on the vote shares (ordered grades).

    Example:
        >>> import numpy as np
        >>> P = np.array([[[.6, .4]], [[.3, .7]]])  # 2 members, 1 row, a 1-1 tie
        >>> int(HardVote().fit(P, [1]).predict(P)[0])  # class 1 has 1.1 summed probability
        1
    """

    method = "hard"
    _param_names = ("thresholds",)

    def __init__(self, *, thresholds: bool = False) -> None:
        self.thresholds = thresholds

    def _fit(self, P: np.ndarray, y: np.ndarray) -> None:
        self.weights_ = np.full(self.n_members_, 1.0 / self.n_members_)

    def _proba(self, P: np.ndarray) -> np.ndarray:
        return vote_counts(P) / float(P.shape[0])

    def _labels(self, P: np.ndarray, proba: np.ndarray) -> np.ndarray:
        counts = np.rint(proba * P.shape[0])  # exact small integers again
        tied = counts == counts.max(axis=1, keepdims=True)
        summed = P.sum(axis=0, dtype=np.float64)
        return np.where(tied, summed, -np.inf).argmax(axis=1)

    def _state(self) -> dict[str, Any]:
        return {}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.weights_ = np.full(self.n_members_, 1.0 / self.n_members_)
