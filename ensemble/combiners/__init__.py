"""Combiners: turn the members' cached probabilities into one ensemble prediction.

Every combiner takes ``P`` of shape (m members, n rows, k classes) and labels
``y`` (n,), is fitted on held-out (validation) probabilities, and saves to JSON:

    >>> import numpy as np
    >>> from ensemble.combiners import make_combiner
    >>> P = np.array([[[.8, .2], [.3, .7]], [[.6, .4], [.4, .6]]])
    >>> make_combiner("soft").fit(P, [0, 1]).predict(P).tolist()
    [0, 1]

``load_combiner(path)`` rebuilds a saved combiner from its ``"method"`` key.
"""

from __future__ import annotations

import os
from typing import Any

from ensemble.combiners._base import Combiner
from ensemble.combiners.caruana import CaruanaSelection
from ensemble.combiners.hard import HardVote
from ensemble.combiners.soft import SoftVote
from ensemble.combiners.stack import Stacking
from ensemble.combiners.temperature import Calibrated, TemperatureScaling
from ensemble.combiners.thresholds import GradeThresholds
from ensemble.combiners.weighted import WeightedVote
from ensemble.constants import METHODS
from members.infra.atomic import read_json
from members.infra.errors import UserError

_CLASSES: dict[str, type] = {
    "hard": HardVote,
    "soft": SoftVote,
    "weighted": WeightedVote,
    "caruana": CaruanaSelection,
    "stack": Stacking,
}


def make_combiner(method: str, **kwargs: Any) -> Combiner:
    """A new, unfitted combiner for ``method`` (one of :data:`METHODS`).

    Example:
        >>> make_combiner("caruana", steps=10)
        CaruanaSelection(steps=10, metric='log_loss', init='best', thresholds=False)
    """
    if method not in _CLASSES:
        raise UserError(f"Unknown combiner method {method!r}; expected one of {', '.join(METHODS)}.")
    try:
        return _CLASSES[method](**kwargs)
    except TypeError as exc:
        raise UserError(f"Bad option for the '{method}' combiner: {exc}.") from None


def combiner_from_dict(data: Any) -> Combiner | Calibrated | GradeThresholds:
    """Rebuild a fitted combiner from its ``to_dict`` output, dispatching on its ``"method"`` key."""
    method = data.get("method") if isinstance(data, dict) else None
    if method == GradeThresholds.method:
        return GradeThresholds.from_dict(data)
    if method == Calibrated.method:
        return Calibrated.from_dict(data)
    if method not in _CLASSES:
        raise UserError(f"not a saved combiner: its \"method\" is {method!r}, expected one of {', '.join(METHODS)} "
                        f"or {Calibrated.method!r}; re-run vote.")
    return _CLASSES[method].from_dict(data)


def load_combiner(path: str | os.PathLike) -> Combiner | Calibrated | GradeThresholds:
    """Rebuild a fitted combiner saved with ``.save(path)``, dispatching on its ``"method"`` key."""
    data = read_json(path)
    method = data.get("method") if isinstance(data, dict) else None
    if method not in (*_CLASSES, GradeThresholds.method, Calibrated.method):
        raise UserError(
            f"{path} is not a saved combiner: its \"method\" is {method!r}, expected one of {', '.join(METHODS)}; re-run vote."
        )
    try:
        return combiner_from_dict(data)
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None


__all__ = [
    "METHODS",
    "Calibrated",
    "CaruanaSelection",
    "Combiner",
    "GradeThresholds",
    "HardVote",
    "SoftVote",
    "Stacking",
    "TemperatureScaling",
    "WeightedVote",
    "combiner_from_dict",
    "load_combiner",
    "make_combiner",
]
