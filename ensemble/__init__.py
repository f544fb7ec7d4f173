"""Everything after training: combiners, statistics, the vote report, inference — and the Python API.

The names below import lazily, so ``import ensemble`` stays light:

    >>> import numpy as np
    >>> from ensemble import SoftVote, score
    >>> P = np.array([[[.8, .2], [.3, .7]], [[.6, .4], [.4, .6]]])   # (members, rows, classes)
    >>> SoftVote().fit(P, [0, 1]).predict(P).tolist()
    [0, 1]
    >>> round(score([0, 1], SoftVote().fit(P, [0, 1]).predict_proba(P))["accuracy"], 2)
    1.0

Combiners (scikit-learn estimators on stacked probabilities ``P``): ``HardVote``, ``SoftVote``,
``WeightedVote``, ``CaruanaSelection``, ``Stacking``, ``make_combiner``, ``load_combiner``; and
``GradeThresholds``, cuts of one model's ``(rows, classes)`` probabilities. Statistics of the report: ``score`` (point metrics), ``bootstrap_metrics``
(95 % intervals), ``bootstrap_difference``, ``mcnemar_exact``, ``diversity``, ``compare``.
The workflow verbs live in :mod:`ensemble.api` (``ensemble.vote`` is the vote module):
``from ensemble.api import prepare, train_member, vote, predict, explain, import_member``.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    **{name: "ensemble.combiners" for name in ("HardVote", "SoftVote", "WeightedVote", "CaruanaSelection", "Stacking",
                                              "GradeThresholds", "Combiner", "make_combiner", "load_combiner",
                                              "METHODS")},
    **{name: "ensemble.stats" for name in ("bootstrap_metrics", "bootstrap_difference", "bootstrap_indices",
                                          "mcnemar_exact")},
    **{name: "ensemble.api" for name in ("score", "compare", "diversity")},
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ensemble' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
