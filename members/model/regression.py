"""The regression head after training: its cuts tuned on val for QWK, its scale for log-loss.

A regression member scores each image on one axis (:class:`members.model.architecture.RegressionHead`);
its probabilities are soft cuts around that score. Training uses the fixed cuts
``0.5, 1.5, …`` and scale 1; afterwards :func:`calibrate_head` recovers the score of every val
row from the probabilities (exactly: the cumulative probability nearest 0.5 is inverted),
tunes the cuts for val QWK (:func:`members.model.cuts.tune_cuts`) — each within half a grade of
``j + 0.5`` and at least half a grade from its neighbours, since a few hundred val rows would
otherwise squeeze a grade into a sliver that does not transfer to test — keeps the defaults when the tuned
ones do not raise it, and picks the scale that minimises val log-loss among those whose
argmax grades agree with the cuts on at least 95 % of the val rows. The head's weights are
then set, so the saved model outputs the calibrated probabilities.

Pure numpy except :func:`calibrate_head`'s weight assignment.
"""

from __future__ import annotations

import numpy as np

from members.model.cuts import tune_cuts

SCALES = np.geomspace(0.05, 2.0, 40)
REACH = 0.5  # each cut stays within half a grade of j + 0.5
MIN_GAP = 0.5  # and half a grade from its neighbours
AGREEMENT = 0.95  # share of val rows whose argmax must equal the cut grade


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def head_probs(score: np.ndarray, cuts: np.ndarray, scale: float) -> np.ndarray:
    """The head's probabilities (n, k) for scores (n,), as :class:`RegressionHead` computes them.

    Example:
        >>> head_probs(np.array([0.0, 3.9]), np.array([0.5, 1.5, 2.5, 3.5]), 1.0).argmax(axis=1).tolist()
        [0, 4]
    """
    above = _sigmoid((np.asarray(score, np.float64)[:, None] - np.asarray(cuts)[None, :]) / scale)
    n = above.shape[0]
    probs = np.concatenate([np.ones((n, 1)), above], axis=1) - np.concatenate([above, np.zeros((n, 1))], axis=1)
    probs = np.maximum(probs, 1e-7)
    return probs / probs.sum(axis=1, keepdims=True)


def recover_score(probs: np.ndarray, cuts: np.ndarray, scale: float) -> np.ndarray:
    """The score behind each row of the head's probabilities (inverse of :func:`head_probs`).

    For each row the cumulative probability ``P(y > j)`` nearest 0.5 is inverted, where the
    logit is best conditioned: ``score = cut_j + scale * logit(P(y > j))``.
    """
    probs = np.asarray(probs, np.float64)
    above = np.clip(1.0 - np.cumsum(probs, axis=1)[:, :-1], 1e-7, 1 - 1e-7)  # (n, k-1)
    j = np.abs(above - 0.5).argmin(axis=1)
    a = above[np.arange(len(j)), j]
    return np.asarray(cuts)[j] + scale * np.log(a / (1.0 - a))


def _log_loss(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None))))


def fit_cuts(score: np.ndarray, y: np.ndarray, k: int) -> dict:
    """Tuned cuts and scale for scores ``score`` and labels ``y`` (the val rows).

    Returns:
        ``{"cuts", "scale", "val_qwk_default_cuts", "val_qwk_tuned_cuts", "tuned"}``; ``tuned`` is
        False when tuning did not raise the kappa (the default cuts are kept).
    """
    default = np.arange(k - 1) + 0.5
    cuts, kappa, kappa0 = tune_cuts(score, y, k, default.copy(), reach=REACH, min_gap=MIN_GAP)
    tuned = bool(kappa > kappa0 + 1e-9)
    if not tuned:
        cuts = default
    grades = np.searchsorted(cuts, score, side="right")
    best = None
    for scale in SCALES:
        probs = head_probs(score, cuts, scale)
        agree = float(np.mean(probs.argmax(axis=1) == grades)) if len(y) else 1.0
        if agree < AGREEMENT:
            continue
        loss = _log_loss(probs, y) if len(y) else 0.0
        if best is None or loss < best[0]:
            best = (loss, float(scale))
    scale = best[1] if best is not None else float(SCALES[0])
    return {"cuts": [float(c) for c in cuts], "scale": scale, "val_qwk_default_cuts": float(kappa0),
            "val_qwk_tuned_cuts": float(kappa), "tuned": tuned}


def calibrate_head(model, val_probs: np.ndarray, val_labels: np.ndarray) -> dict:
    """Tune the regression head of ``model`` on its val probabilities; set its cuts and scale.

    Args:
        model: a Keras model with a ``regression_head`` layer at its training cuts.
        val_probs: the model's val probabilities (n, k) at those cuts.
        val_labels: the val grades (n,).

    Returns:
        The fitted values (:func:`fit_cuts`), recorded in ``metrics.json`` as ``regression``.
    """
    head = model.get_layer("regression_head")
    cuts0 = np.asarray(head.cuts.numpy(), np.float64)
    scale0 = float(head.scale.numpy())
    k = cuts0.size + 1
    score = recover_score(val_probs, cuts0, scale0)
    fitted = fit_cuts(score, np.asarray(val_labels, np.int64), k)
    head.cuts.assign(np.asarray(fitted["cuts"], np.float32))
    head.scale.assign(np.float32(fitted["scale"]))
    return fitted
