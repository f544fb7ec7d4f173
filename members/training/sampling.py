"""Class weights, undersampling and the retraining subset: which training rows count how much.

Pure numpy, seeded, so the counts are testable without TensorFlow.
"""

from __future__ import annotations

import math

import numpy as np


def class_weights(labels: np.ndarray, num_classes: int, mode: str = "balanced") -> np.ndarray:
    """Weight per class, from the training labels.

    ``balanced`` is scikit-learn's ``n / (k · count)``; ``sqrt`` its square root (milder);
    ``none`` all ones. Classes absent from ``labels`` get weight 0 (nothing to weight).

    Example:
        >>> class_weights(np.array([0, 0, 0, 1]), 2)
        array([0.66666667, 2.        ])
    """
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).astype(np.float64)
    if mode == "none":
        return np.where(counts > 0, 1.0, 0.0)
    present = counts > 0
    weights = np.zeros(num_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    if mode == "sqrt":
        weights = np.sqrt(weights)
    return weights


def sampling_acceptance(labels: np.ndarray, num_classes: int, mode: str = "balanced") -> np.ndarray | None:
    """Per-class acceptance probabilities that turn the natural class mix into ``mode``'s.

    Rows are drawn from the (repeated, shuffled) training set and a row of class ``c`` is kept
    with probability ``a_c``; the kept stream has class shares ``target_c``: equal for
    ``balanced``, proportional to ``sqrt(count_c)`` for ``sqrt``. ``natural`` returns ``None``
    (no resampling). The largest ``a_c`` is 1, so the rarest-to-target class is never dropped.

    Example:
        >>> sampling_acceptance(np.array([0] * 8 + [1] * 2), 2).tolist()
        [0.25, 1.0]
    """
    if mode == "natural":
        return None
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).astype(np.float64)
    present = counts > 0
    target = np.where(present, 1.0 if mode == "balanced" else np.sqrt(counts), 0.0)
    target = target / target.sum()
    share = counts / counts.sum()
    ratio = np.zeros(num_classes)
    ratio[present] = target[present] / share[present]
    return ratio / ratio.max()


def sampled_shares(labels: np.ndarray, acceptance: np.ndarray) -> np.ndarray:
    """The class shares of the stream :func:`sampling_acceptance` keeps (for logs and tests)."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=acceptance.size) * acceptance
    return counts / counts.sum()


def undersample(labels: np.ndarray, ratio: float = 1.0, *, seed: int = 0) -> np.ndarray:
    """Indices of a subset where no class has more than ``ceil(ratio × median class count)`` rows.

    Over-represented classes are cut at random (seeded); smaller classes are kept whole.
    The median is taken over the classes present.

    Example:
        >>> labels = np.array([0] * 70 + [1] * 10 + [2] * 15 + [3] * 3 + [4] * 2)
        >>> np.bincount(labels[undersample(labels)]).tolist()
        [10, 10, 10, 3, 2]
    """
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels)
    cap = int(math.ceil(ratio * np.median(counts[counts > 0])))
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.flatnonzero(counts):
        idx = np.flatnonzero(labels == c)
        keep.append(idx if idx.size <= cap else rng.choice(idx, cap, replace=False))
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)


def retrain_subset(wrong: np.ndarray, *, replay: float, seed: int = 0) -> np.ndarray:
    """Indices for a retraining round: every mispredicted row plus ``replay`` × as many correct ones.

    Args:
        wrong: boolean mask over the training rows, True where the model was wrong.
        replay: correct rows replayed per wrong row (so the model does not forget them).
    """
    wrong = np.asarray(wrong, dtype=bool)
    bad = np.flatnonzero(wrong)
    good = np.flatnonzero(~wrong)
    n_replay = min(good.size, int(round(replay * bad.size)))
    rng = np.random.default_rng(seed)
    chosen = rng.choice(good, n_replay, replace=False) if n_replay else np.zeros(0, np.int64)
    return np.sort(np.concatenate([bad, chosen]))
