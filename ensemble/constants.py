"""The ensemble's choices as plain tuples, importing nothing: ``cli.py`` builds its ``--help`` from them.

The modules that use them (:mod:`ensemble.vote`, :mod:`ensemble.calibration`,
:mod:`ensemble.combiners`) import NumPy; this one must not, so ``python cli.py --help``
stays fast.
"""

METHODS = ("hard", "soft", "weighted", "caruana", "stack")
"""The combiner methods, in the order reports list them."""

THR = "+thr"
"""Suffix of a method's variant that cuts the expected grade at thresholds fitted on val."""

THRESHOLD_MODES = ("auto", "on", "off")
"""``vote --thresholds``: ``auto`` adds the ``+thr`` variants for 3+ ordered classes."""

SELECT_BY = ("qwk", "accuracy", "balanced_accuracy", "macro_f1", "auc", "log_loss")
"""``vote --select-by``: the val metrics that may pick the best member and method."""

MINIMISED_SELECT_BY = ("log_loss",)
"""The :data:`SELECT_BY` metrics that pick by their lowest value (the others by their highest)."""

CALIBRATIONS = ("none", "temperature")
"""``vote --calibrate``."""

ROW_SUM_TOL = 1e-3
"""How far a row of probabilities may sum from 1 (combiner inputs, member and imported predictions)."""
