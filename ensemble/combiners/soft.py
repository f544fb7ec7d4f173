"""Soft voting: the (optionally weighted) mean of the members' probabilities."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ensemble.combiners._base import Combiner, as_floats, weighted_mean
from members.infra.errors import UserError


def check_weights(weights: Sequence[float], m: int) -> np.ndarray:
    """Non-negative finite weights, one per member, normalised to sum to one."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.shape[0] != m:
        raise UserError(f"P has {m} members but weights has {w.size}; pass one weight per member.")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise UserError(f"weights must be finite, non-negative and not all zero. Received: weights={w.tolist()}")
    return w / w.sum()


class SoftVote(Combiner):
    """Average the members' probabilities.

    Args:
        weights: optional fixed member weights (normalised to sum to one);
            ``None`` gives the plain mean (``weights_`` uniform).
        thresholds: also fit grade thresholds on the averaged probabilities.

    Example:
        >>> import numpy as np
        >>> P = np.array([[[.8, .2]], [[.4, .6]]])
        >>> SoftVote().fit(P, [0]).predict_proba(P).round(3).tolist()
        [[0.6, 0.4]]
    """

    method = "soft"
    _param_names = ("weights", "thresholds")

    def __init__(self, *, weights: Sequence[float] | None = None, thresholds: bool = False) -> None:
        self.weights = weights
        self.thresholds = thresholds

    def _fit(self, P: np.ndarray, y: np.ndarray) -> None:
        m = self.n_members_
        self.weights_ = np.full(m, 1.0 / m) if self.weights is None else check_weights(self.weights, m)

    def _proba(self, P: np.ndarray) -> np.ndarray:
        return weighted_mean(self.weights_, P)

    def _state(self) -> dict[str, Any]:
        return {"weights": as_floats(self.weights_)}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.weights_ = np.asarray(state["weights"], dtype=np.float64)
