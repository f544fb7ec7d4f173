"""Statistics for comparing models on one test set: bootstrap intervals, McNemar, diversity, referral.

The bootstrap is vectorised across resamples: a resample is a vector of draw counts
per row, and :func:`members.scoring.score_weighted` scores all of them with a few
matrix products and one sort per class (for AUC), never a Python loop over
resamples. Pass the same ``indices`` to every model so that comparisons are paired.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from members.scoring import METRICS, score, score_weighted

BLOCK_CELLS = 1 << 18  # rows x resamples scored per block (~2 MB per float64 array: cache-friendly)
MIN_BLOCK = 64


@dataclass(frozen=True, eq=False)
class GroupDraws:
    """Cluster-bootstrap resamples: whole groups (patients) drawn with replacement.

    Attributes:
        draws: ``(n_boot, g)`` group codes drawn per resample (each resample draws ``g`` groups).
        row_group: ``(n,)`` the group code of every row.

    ``shape`` is ``(n_boot, n)``, as for row indices; a resample holds every row of each drawn
    group, once per draw, so its size varies with the sizes of the groups drawn.
    """

    draws: np.ndarray
    row_group: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return (self.draws.shape[0], self.row_group.shape[0])

    @property
    def groups(self) -> int:
        return int(self.row_group.max()) + 1 if self.row_group.size else 0

    def counts(self, start: int, stop: int) -> np.ndarray:
        """Draw counts of every row in resamples ``start:stop``: ``(n, stop - start)`` float64."""
        block = self.draws[start:stop]
        b, g = len(block), self.groups
        offsets = (block * b + np.arange(b)[:, None]).ravel()
        per_group = np.bincount(offsets, minlength=g * b).reshape(g, b)
        return per_group[self.row_group].astype(np.float64)


def group_codes(groups) -> np.ndarray | None:
    """``0..g-1`` codes of a row-wise group label array (``None``, or no repeated group: ``None``).

    Missing labels (``None``, ``nan``, empty) are groups of their own row.
    """
    if groups is None:
        return None
    labels = [None if g is None or (isinstance(g, float) and math.isnan(g)) or str(g) == "" else str(g)
              for g in np.asarray(groups, dtype=object).tolist()]
    codes, seen = np.empty(len(labels), dtype=np.int64), {}
    for i, g in enumerate(labels):
        key = ("row", i) if g is None else g
        codes[i] = seen.setdefault(key, len(seen))
    return codes if len(seen) < len(labels) else None


def bootstrap_indices(n: int, n_boot: int, seed: int, stratify: np.ndarray | None = None,
                      groups: np.ndarray | None = None) -> np.ndarray | GroupDraws:
    """Resamples with replacement: row indices of shape ``(n_boot, n)``, or whole groups.

    Args:
        n: number of rows.
        n_boot: number of resamples.
        seed: seed of ``numpy.random.default_rng``; same seed, same indices.
        stratify: optional labels; each resample then keeps every class's row count
            (resampling within classes), the right mimic of a stratified test split.
        groups: optional group label per row (the patient: both eyes of one person). When some
            group has several rows, whole groups are drawn (a cluster bootstrap, since the eyes of
            one patient are not independent) and a :class:`GroupDraws` is returned; with
            ``stratify``, groups are drawn within the class of their highest row label (a
            patient's worst grade), keeping each such stratum's group count.

    Example:
        >>> bootstrap_indices(4, 2, seed=0).shape
        (2, 4)
        >>> bootstrap_indices(4, 2, seed=0, groups=["a", "a", "b", "c"]).shape
        (2, 4)
    """
    if n < 1 or n_boot < 1:
        raise ValueError(f"n and n_boot must be at least 1; got n={n}, n_boot={n_boot}.")
    rng = np.random.default_rng(seed)
    if stratify is not None:
        stratify = np.asarray(stratify)
        if len(stratify) != n:
            raise ValueError(f"stratify has {len(stratify)} rows but n={n}.")
    codes = group_codes(groups)
    if codes is not None:
        if len(codes) != n:
            raise ValueError(f"groups has {len(codes)} rows but n={n}.")
        g = int(codes.max()) + 1
        strata = np.zeros(g, dtype=np.int64)
        if stratify is not None:
            top = np.full(g, -np.inf)
            np.maximum.at(top, codes, stratify.astype(np.float64))
            strata = np.unique(top, return_inverse=True)[1]
        draws = np.empty((n_boot, g), dtype=np.int64)
        for value in np.unique(strata):
            members = np.flatnonzero(strata == value)
            draws[:, members] = members[rng.integers(0, len(members), size=(n_boot, len(members)))]
        return GroupDraws(draws, codes)
    if stratify is None:
        return rng.integers(0, n, size=(n_boot, n))
    out = np.empty((n_boot, n), dtype=np.int64)
    for value in np.unique(stratify):
        rows = np.flatnonzero(stratify == value)
        out[:, rows] = rows[rng.integers(0, len(rows), size=(n_boot, len(rows)))]
    return out


def bootstrap_samples(
    labels: np.ndarray,
    probs: np.ndarray | None,
    pred: np.ndarray | None = None,
    *,
    indices: np.ndarray | GroupDraws,
    num_classes: int | None = None,
    metrics: Sequence[str] = METRICS,
) -> dict[str, np.ndarray]:
    """Each of ``metrics`` (default: every one) on every resample: ``{metric: array (n_boot,)}`` (``nan`` where
    undefined)."""
    if not isinstance(indices, GroupDraws):
        indices = np.asarray(indices)
    n_boot, n = indices.shape
    if n != len(labels):
        raise ValueError(f"indices resample {n} rows but labels has {len(labels)}.")
    chunk = max(MIN_BLOCK, BLOCK_CELLS // max(n, 1))
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, n_boot, chunk):
        if isinstance(indices, GroupDraws):
            counts = indices.counts(start, start + chunk)
        else:
            block = indices[start : start + chunk]
            b = len(block)
            offsets = (block * b + np.arange(b)[:, None]).ravel()  # counts laid out rows first
            counts = np.bincount(offsets, minlength=n * b).reshape(n, b).astype(np.float64)
        parts.append(score_weighted(labels, probs, counts, pred=pred, num_classes=num_classes, metrics=metrics))
    return {name: np.concatenate([p[name] for p in parts]) for name in metrics}


def percentile_interval(samples: np.ndarray, value: float, level: float = 0.95) -> list[float]:
    """Percentile interval of ``samples``, widened if needed so that it contains ``value``.

    Widening only happens when the bootstrap distribution is shifted away from the point
    estimate (typical of biased metrics such as ECE on small test sets); it makes the
    interval more conservative, never narrower. ``nan`` samples are ignored.
    """
    finite = samples[np.isfinite(samples)]
    if not np.isfinite(value) or finite.size == 0:
        return [float("nan"), float("nan")]
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(finite, [tail, 100 - tail])
    return [float(min(lo, value)), float(max(hi, value))]


def bootstrap_metrics(
    labels: np.ndarray,
    probs: np.ndarray | None,
    pred: np.ndarray | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    indices: np.ndarray | GroupDraws | None = None,
    num_classes: int | None = None,
) -> dict[str, dict]:
    """Point value and 95 % percentile bootstrap interval of every metric.

    Args:
        labels: true classes ``(n,)``.
        probs: probabilities ``(n, k)`` (or ``None``: probability metrics are ``nan``).
        pred: predicted classes; defaults to ``argmax(probs)``.
        n_boot: resamples, used when ``indices`` is ``None``.
        seed: seed, used when ``indices`` is ``None``.
        indices: ``(n_boot, n)`` resample indices from :func:`bootstrap_indices`; share
            them across models for paired comparisons.
        num_classes: ``k`` when ``probs`` is ``None``.

    Returns:
        ``{metric: {"value": float, "ci": [lo, hi]}}``.

    Example:
        >>> y = np.array([0, 1, 0, 1]); p = np.array([[.9, .1], [.2, .8], [.6, .4], [.4, .6]])
        >>> bootstrap_metrics(y, p, n_boot=50)["accuracy"]["value"]
        1.0
    """
    if indices is None:
        indices = bootstrap_indices(len(labels), n_boot, seed)
    point = score(labels, probs, pred=pred, num_classes=num_classes)
    samples = bootstrap_samples(labels, probs, pred, indices=indices, num_classes=num_classes)
    return {m: {"value": point[m], "ci": percentile_interval(samples[m], point[m])} for m in METRICS}


def bootstrap_difference(
    labels: np.ndarray,
    a: tuple[np.ndarray | None, np.ndarray | None],
    b: tuple[np.ndarray | None, np.ndarray | None],
    *,
    indices: np.ndarray | GroupDraws,
    num_classes: int | None = None,
) -> dict[str, dict]:
    """Paired bootstrap of ``metric(a) - metric(b)``; ``a`` and ``b`` are ``(probs, pred)`` pairs.

    Returns:
        ``{metric: {"value": float, "ci": [lo, hi]}}``; an interval that excludes 0 means
        the difference holds on at least 95 % of the paired resamples.
    """
    out = {}
    sa = bootstrap_samples(labels, *a, indices=indices, num_classes=num_classes)
    sb = bootstrap_samples(labels, *b, indices=indices, num_classes=num_classes)
    pa = score(labels, a[0], pred=a[1], num_classes=num_classes)
    pb = score(labels, b[0], pred=b[1], num_classes=num_classes)
    for m in METRICS:
        value = pa[m] - pb[m]
        out[m] = {"value": value, "ci": percentile_interval(sa[m] - sb[m], value)}
    return out


def mcnemar_exact(labels: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray) -> float:
    """Exact two-sided McNemar p-value on the discordant pairs (1.0 when there are none).

    Example:
        >>> y = np.zeros(10, int); a = np.r_[0, np.ones(9, int)]; b = np.r_[1, np.zeros(9, int)]
        >>> mcnemar_exact(y, a, b)  # a alone right once, b alone right 9 times
        0.021484375
    """
    right_a, right_b = np.asarray(pred_a) == labels, np.asarray(pred_b) == labels
    only_a, only_b = int(np.sum(right_a & ~right_b)), int(np.sum(~right_a & right_b))
    if only_a + only_b == 0:
        return 1.0
    n = only_a + only_b
    tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1))  # exact integers, no scipy import
    return float(min(Fraction(1), Fraction(2 * tail, 2**n)))


def mcnemar_clustered(labels: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, groups) -> float:
    """Exact two-sided McNemar p-value for rows clustered in groups (both eyes of a patient).

    Per group ``k``, ``d_k`` = rows only ``a`` gets right minus rows only ``b`` gets right. Under the
    null hypothesis (neither model is better) each group's sign is as likely flipped, so the p-value is
    the share of the ``2^m`` sign flips of the ``m`` groups with ``d_k != 0`` whose ``|sum d_k|`` is at
    least the observed one, computed exactly by convolution (no sampling, no chi-square approximation,
    which is too small with few discordant patients). With every group of one row it is
    :func:`mcnemar_exact`; when a patient's eyes tend to be won together, it is larger than a test that
    counts eyes as independent. 1.0 without discordant rows.

    Example:
        >>> y = np.zeros(8, int); a = np.r_[0, 0, 0, 0, 0, 0, 1, 1]; b = np.ones(8, int)
        >>> mcnemar_clustered(y, a, b, np.repeat(np.arange(4), 2))  # a alone right on 3 patients' 6 eyes
        0.25
        >>> mcnemar_clustered(y, a, b, np.arange(8))  # as 6 independent eyes: mcnemar_exact's 2/64
        0.03125
    """
    right_a, right_b = np.asarray(pred_a) == labels, np.asarray(pred_b) == labels
    diff = (right_a & ~right_b).astype(np.int64) - (~right_a & right_b).astype(np.int64)
    _, codes = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
    d = np.bincount(codes, weights=diff).round().astype(np.int64)
    d = np.abs(d[d != 0])
    if d.size == 0:
        return 1.0
    total = int(d.sum())
    dist = np.zeros(2 * total + 1)  # P(sum of flipped d_k = s), index s + total
    dist[total] = 1.0
    for dk in d:
        dk = int(dk)
        dist = 0.5 * (np.roll(dist, dk) + np.roll(dist, -dk))  # no wrap-around: |partial sums| <= total
    observed = abs(int(np.bincount(codes, weights=diff).round().sum()))
    s = np.abs(np.arange(-total, total + 1))
    return float(min(1.0, dist[s >= observed].sum()))


def diversity(labels: np.ndarray, preds: dict[str, np.ndarray]) -> dict:
    """Pairwise diversity of members' oracle outputs (right/wrong per row), after Kuncheva.

    - ``disagreement``: share of rows where exactly one of the two is right.
    - ``q_statistic``: Yule's Q ``(N11 N00 - N10 N01) / (N11 N00 + N10 N01)``; 1 on the
      diagonal by definition, ``nan`` where the denominator is 0.
    - ``double_fault``: share of rows both get wrong (the diagonal is the error rate).

    Returns:
        ``{"members": [...], "disagreement": [[...]], "q_statistic": [[...]], "double_fault": [[...]]}``.
    """
    names = list(preds)
    right = np.stack([np.asarray(preds[name]) == labels for name in names]).astype(np.float64)
    n, m = right.shape[1], len(names)
    n11 = right @ right.T
    n00 = (1 - right) @ (1 - right).T
    n10 = right @ (1 - right).T
    n01 = n10.T
    with np.errstate(invalid="ignore", divide="ignore"):
        q = (n11 * n00 - n10 * n01) / (n11 * n00 + n10 * n01)
    q[np.arange(m), np.arange(m)] = 1.0
    return {
        "members": names,
        "disagreement": ((n10 + n01) / n).tolist(),
        "q_statistic": q.tolist(),
        "double_fault": (n00 / n).tolist(),
    }


@dataclass(frozen=True)
class CoverageCurve:
    """Accuracy on the rows kept when the least confident rows are referred to a grader."""

    coverage: list[float]
    accuracy: list[float]
    threshold: list[float]
    rows: list[int] = field(default_factory=list)
    balanced_accuracy: list[float] = field(default_factory=list)
    majority_accuracy: list[float] = field(default_factory=list)  # always answering the baseline's class

    def to_dict(self) -> dict:
        """JSON-ready dict of the three lists."""
        return asdict(self)


def coverage_curve(
    labels: np.ndarray,
    pred: np.ndarray,
    confidence: np.ndarray,
    agreement: np.ndarray | None = None,
    *,
    levels: np.ndarray | None = None,
    majority: int | None = None,
) -> CoverageCurve:
    """Accuracy against coverage when rows are kept from most to least confident, with the rows kept, their
    balanced accuracy (mean recall over the classes among them) and what always answering ``majority`` scores on
    them: on rows a model keeps because it is sure, the majority class can score as much as it does.

    Args:
        labels: true classes ``(n,)``.
        pred: predicted classes ``(n,)``.
        confidence: the score used for referral, higher = keep (e.g. top-class probability).
        agreement: optional tie-breaker, higher = keep (e.g. share of members that agree).
        levels: coverages to report; default 0.05, 0.10, ..., 1.0 (on few rows, levels that keep the same
            rows give one point).
        majority: the majority baseline's class (``None``: no ``majority_accuracy``).

    Returns:
        A :class:`CoverageCurve`; ``threshold[i]`` is the confidence of the last row kept.
    """
    labels, pred, confidence = np.asarray(labels), np.asarray(pred), np.asarray(confidence, float)
    n = len(labels)
    levels = np.linspace(0.05, 1.0, 20) if levels is None else np.asarray(levels, float)
    keys = (confidence,) if agreement is None else (np.asarray(agreement, float), confidence)
    order = np.lexsort(keys)[::-1]  # descending by confidence, then agreement
    hits = np.cumsum(pred[order] == labels[order])
    kept = np.unique(np.clip(np.ceil(levels * n - 1e-9).astype(int), 1, n))  # under 20 rows: no repeated row
    y, right = labels[order], pred[order] == labels[order]
    classes = np.unique(y)
    seen = np.cumsum(y[:, None] == classes, axis=0)[kept - 1]  # (levels, classes): rows of each class kept
    found = np.cumsum((y[:, None] == classes) & right[:, None], axis=0)[kept - 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        balanced = np.nanmean(np.where(seen > 0, found / seen, np.nan), axis=1)
    return CoverageCurve(
        coverage=(kept / n).tolist(),
        accuracy=(hits[kept - 1] / kept).tolist(),
        threshold=confidence[order][kept - 1].tolist(),
        rows=kept.tolist(),
        balanced_accuracy=balanced.tolist(),
        majority_accuracy=([] if majority is None else (np.cumsum(y == majority)[kept - 1] / kept).tolist()),
    )


def choose_refer_threshold(confidence: np.ndarray, target_coverage: float, referred: np.ndarray | None = None) -> float:
    """The highest confidence threshold that keeps at least ``target_coverage`` of the rows.

    Rows with ``confidence >= threshold`` are kept (graded automatically); the rest are referred.
    ``referred`` marks rows referred whatever their confidence (e.g. no member agrees with the
    ensemble's grade): the threshold is chosen among the other rows so that the kept share of
    all rows reaches the target where it can (where it cannot, every other row is kept).

    Example:
        >>> choose_refer_threshold(np.array([0.9, 0.8, 0.7, 0.6]), 0.5)
        0.8
        >>> choose_refer_threshold(np.array([0.9, 0.8, 0.7, 0.6]), 0.5, np.array([True, False, False, False]))
        0.7
    """
    if not 0.0 < target_coverage <= 1.0:
        raise ValueError(f"target_coverage must be in (0, 1]; got {target_coverage}.")
    confidence = np.asarray(confidence, dtype=np.float64)
    n = len(confidence)
    if referred is not None:
        confidence = confidence[~np.asarray(referred, dtype=bool)]
    if confidence.size == 0:
        return 1.0  # nothing left to keep: no confidence reaches past 1 on the other side of it
    ranked = np.sort(confidence)[::-1]
    keep = min(max(1, int(np.ceil(target_coverage * n - 1e-9))), ranked.size)
    return float(ranked[keep - 1])


def threshold_for_sensitivity(scores: np.ndarray, positive: np.ndarray, target: float) -> float:
    """The highest threshold at which ``scores >= threshold`` flags at least ``target`` of the positives.

    Example:
        >>> threshold_for_sensitivity(np.array([0.9, 0.2, 0.6, 0.4]), np.array([1, 0, 1, 1], bool), 0.6)
        0.6
    """
    positive = np.asarray(positive, dtype=bool)
    if not positive.any():
        raise ValueError("threshold_for_sensitivity needs at least one positive row.")
    return choose_refer_threshold(np.asarray(scores, dtype=np.float64)[positive], target)


def exact_interval(hits: float, n: float, level: float = 0.95) -> list[float]:
    """The Clopper-Pearson (exact binomial) interval of the proportion ``hits / n``.

    The interval clinical studies give for sensitivity and specificity: it never has zero width
    at 0 or 1 (100 of 100 right is still compatible with 0.964), unlike a bootstrap of the rows.
    ``hits`` and ``n`` may be effective (non-integer) counts, see :func:`effective_counts`.

    Example:
        >>> [round(v, 3) for v in exact_interval(95, 95)]
        [0.962, 1.0]
    """
    from scipy.stats import beta

    if n <= 0:
        return [float("nan"), float("nan")]
    a = (1.0 - level) / 2.0
    lo = 0.0 if hits <= 0 else float(beta.ppf(a, hits, n - hits + 1))
    hi = 1.0 if hits >= n else float(beta.ppf(1.0 - a, hits + 1, n - hits))
    return [lo, hi]


def effective_counts(hit: np.ndarray, row_group: np.ndarray) -> tuple[float, float]:
    """``(hits, n)`` of a proportion over clustered rows, shrunk by the design effect.

    The rows of one group (both eyes of a patient) are not independent: the variance of the
    proportion is estimated from the groups (the ratio estimator's, with the ``g / (g - 1)``
    correction) and compared with the binomial one; their ratio, the design effect (at least 1),
    divides ``n`` and ``hits`` (Korn & Graubard's effective sample size for a Clopper-Pearson
    interval). The design effect is at most ``sum(m_i^2) / n`` over the groups' sizes ``m_i`` (what
    rows that always agree within their group give: ``n / g``, one observation per patient, when the
    groups are of one size), which the small-sample correction alone could push it over. Without repeated groups the counts are
    returned as they are; a single group is one observation. At 0 or 1 the rows show no spread to estimate the design effect from: it is taken
    from the same rows with the largest group's rows flipped — what one missed patient would have
    shown — so that 100 % over two eyes a patient is not read as if the eyes were independent.

    Example:
        >>> effective_counts(np.array([1, 1, 0, 0] * 3), np.repeat(np.arange(6), 2))  # 6 patients, eyes agree
        (3.0, 6.0)
        >>> effective_counts(np.array([1, 1, 0, 0] * 3), np.arange(12))  # 12 patients
        (6.0, 12.0)
        >>> [round(v, 1) for v in effective_counts(np.ones(100), np.repeat(np.arange(50), 2))]  # all right
        [50.0, 50.0]
    """
    hit = np.asarray(hit, dtype=np.float64)
    n, hits = float(hit.size), float(hit.sum())
    if n == 0:
        return hits, n
    _, codes = np.unique(np.asarray(row_group), return_inverse=True)
    g = int(codes.max()) + 1
    if g == n:
        return hits, n
    if g < 2:
        return hits / n, 1.0
    m = np.bincount(codes, minlength=g).astype(np.float64)
    probe = hit.copy()
    if hits in (0.0, n):  # the largest group's rows flipped: the design effect one missed patient would show
        rows = codes == int(m.argmax())
        probe[rows] = 1.0 - probe[rows]
    p = float(probe.sum()) / n
    y = np.bincount(codes, weights=probe, minlength=g)
    var_cluster = g / (g - 1) * float(((y - p * m) ** 2).sum()) / n ** 2
    deff = min(max(1.0, var_cluster / (p * (1 - p) / n)), float((m ** 2).sum()) / n)
    return hits / deff, n / deff


def sensitivity_specificity(
    positive: np.ndarray, flagged: np.ndarray, *, indices: np.ndarray | GroupDraws | None = None
) -> dict[str, dict]:
    """Sensitivity (flagged share of positives) and specificity (unflagged share of negatives).

    Args:
        positive: true condition per row ``(n,)`` bool.
        flagged: the test's call per row ``(n,)`` bool.
        indices: when given, the 95 % intervals are computed: exact Clopper-Pearson intervals of
            the two proportions (:func:`exact_interval`); when they are the report's cluster
            resamples (:class:`GroupDraws`, rows grouped by patient), on the effective counts of
            :func:`effective_counts`, so that two eyes of one patient do not count as two
            independent observations.

    Returns:
        ``{"sensitivity": {"value", "ci", "hits", "n"}, "specificity": {...}}`` (``nan`` without
        positives/negatives); ``n_effective`` is added when the rows are clustered.
    """
    positive, flagged = np.asarray(positive, dtype=bool), np.asarray(flagged, dtype=bool)
    out = {}
    for key, cond, hit in (("sensitivity", positive, flagged), ("specificity", ~positive, ~flagged)):
        hits, n = int((cond & hit).sum()), int(cond.sum())
        value = hits / n if n else float("nan")
        entry = {"value": value, "ci": [float("nan")] * 2, "hits": hits, "n": n}
        if isinstance(indices, GroupDraws):
            eff_hits, eff_n = effective_counts(hit[cond], indices.row_group[cond])
            entry["ci"], entry["n_effective"] = exact_interval(eff_hits, eff_n), round(eff_n, 1)
        elif indices is not None:
            entry["ci"] = exact_interval(hits, n)
        out[key] = entry
    return out


def reliability(labels: np.ndarray, probs: np.ndarray, pred: np.ndarray | None = None) -> dict[str, list]:
    """Reliability-diagram bins of the confidence in the reported labels ``pred`` (default the argmax; a
    combiner's own labels otherwise): the bins and the confidence and hit of ECE in :mod:`members.scoring`.

    Returns:
        ``{"edges": [...], "confidence": [...], "accuracy": [...], "count": [...]}``, one entry per
        bin ``(lo, hi]`` (``nan`` confidence and accuracy in empty bins).
    """
    from members.scoring import ECE_BINS, ece_bins, label_confidence

    bins = ECE_BINS
    conf, hit = label_confidence(labels, probs, pred)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = ece_bins(conf)  # (lo, hi]
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, conf, minlength=bins) / count
        acc = np.bincount(which, hit.astype(float), minlength=bins) / count
    return {"edges": edges.tolist(), "confidence": mean_conf.tolist(), "accuracy": acc.tolist(),
            "count": count.tolist()}
