"""The regression head after training: its cuts tuned on val for QWK, its scale for log-loss.

A regression member scores each image on one axis (:class:`members.model.architecture.RegressionHead`);
its probabilities are soft cuts around that score. Training uses the fixed cuts
``0.5, 1.5, …`` and scale 1; afterwards :func:`calibrate_head` recovers the score of every val
row from the probabilities (exactly: the cumulative probability nearest 0.5 is inverted) and
places the cuts in two steps:

1. **Prior-matched start.** The cuts start at the quantiles of the val scores that give each
   grade its share of the natural label mix (``prior``: the train+val grade shares). A member
   trained on class-balanced batches scores as if every grade were equally common, so on
   natural data the grade-scale cuts ``0.5, 1.5, …`` call most grade-0 eyes grade 1 or 2
   (accuracy far below the majority class); the prior-matched cuts undo that label shift.
   They are always the start where the scores have any spread (picking between them and
   ``0.5, 1.5, …`` by val QWK was worse on held-out rows: the comparison is noise on ~100 rows).
2. **QWK tuning** (:func:`members.model.cuts.tune_cuts`) from that start — each cut within half
   a grade of its start (less where the scores spread less than the grades,
   :func:`members.model.cuts.reach_for`) and no closer to its neighbours than half a grade (or half the start's
   own gap, where the prior puts two cuts closer), since a few hundred val rows would otherwise
   squeeze a grade into a sliver that does not transfer to test — kept when it raises the kappa.

The split-half ablation behind this is in BENCHMARKS.md ("Cuts of regression members").
The scale is the one that minimises val log-loss among those whose argmax grades agree with the
cuts on at least 95 % of the val rows, each with its own **uniform mix** ``mix``: the head's
probabilities become ``(1 - mix) * p + mix / k``, the ``mix`` that minimises val log-loss. The
agreement forces a sharp scale wherever a grade's band is narrow, and alone that left regression
members' val log-loss worse than a uniform guess (2.0–3.5 against ln 5 = 1.61 on the IDRiD
out-of-fold rows); the mix bounds it without moving any row's argmax, its order of classes or any
one-vs-rest AUC (the same affine map on every row). The head's weights are then set, so the saved
model outputs the calibrated probabilities.

Pure numpy except :func:`calibrate_head`'s weight assignment.
"""

from __future__ import annotations

import numpy as np

from members.model.cuts import kappa_or_zero, prior_cuts, reach_for, tune_cuts  # noqa: F401  (re-exported)

SCALES = np.geomspace(0.05, 2.0, 40)
REACH = 0.5  # each cut stays within half a grade of its start
MIN_GAP = 0.5  # and half a grade from its neighbours
AGREEMENT = 0.95  # share of val rows whose argmax must equal the cut grade
MIXES = np.round(np.arange(0.0, 0.951, 0.01), 2)  # uniform mixes tried (log-loss is convex in the mix)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def head_probs(score: np.ndarray, cuts: np.ndarray, scale: float, mix: float = 0.0) -> np.ndarray:
    """The head's probabilities (n, k) for scores (n,), as :class:`RegressionHead` computes them.

    ``mix`` is the uniform mix: the soft-cut probabilities ``p`` become ``(1 - mix) * p + mix / k``.

    Example:
        >>> head_probs(np.array([0.0, 3.9]), np.array([0.5, 1.5, 2.5, 3.5]), 1.0).argmax(axis=1).tolist()
        [0, 4]
    """
    above = _sigmoid((np.asarray(score, np.float64)[:, None] - np.asarray(cuts)[None, :]) / scale)
    n = above.shape[0]
    probs = np.concatenate([np.ones((n, 1)), above], axis=1) - np.concatenate([above, np.zeros((n, 1))], axis=1)
    probs = np.maximum(probs, 1e-7)
    return mix_uniform(probs / probs.sum(axis=1, keepdims=True), mix)


def mix_uniform(probs: np.ndarray, mix: float) -> np.ndarray:
    """``(1 - mix) * probs + mix / k``: argmax, the order of each row's classes and every AUC kept."""
    probs = np.asarray(probs, np.float64)
    return probs if not mix else (1.0 - mix) * probs + mix / probs.shape[1]


def recover_score(probs: np.ndarray, cuts: np.ndarray, scale: float, mix: float = 0.0) -> np.ndarray:
    """The score behind each row of the head's probabilities (inverse of :func:`head_probs`).

    The uniform ``mix`` is taken out first; then for each row the cumulative probability
    ``P(y > j)`` nearest 0.5 is inverted, where the logit is best conditioned:
    ``score = cut_j + scale * logit(P(y > j))``.
    """
    probs = np.asarray(probs, np.float64)
    if mix:
        probs = (probs - mix / probs.shape[1]) / (1.0 - mix)
    above = np.clip(1.0 - np.cumsum(probs, axis=1)[:, :-1], 1e-7, 1 - 1e-7)  # (n, k-1)
    j = np.abs(above - 0.5).argmin(axis=1)
    a = above[np.arange(len(j)), j]
    return np.asarray(cuts)[j] + scale * np.log(a / (1.0 - a))


def fit_cuts(score: np.ndarray, y: np.ndarray, k: int, prior: np.ndarray | None = None, *,
             mix: bool = True) -> dict:
    """Cuts, scale and uniform mix for scores ``score`` and labels ``y`` (the val rows); see the module docstring.

    Args:
        score: one score per row.
        y: the rows' grades.
        k: number of grades.
        prior: the natural grade shares (or counts) to match, default the shares of ``y``.
        mix: whether to fit the uniform mix (False: ``mix`` is 0, for a head that has none).

    Returns:
        ``{"cuts", "scale", "mix", "start", "val_qwk_default_cuts", "val_qwk_prior_cuts",
        "val_qwk_tuned_cuts", "tuned", "val_agreement", "val_qwk_head"}``: ``start`` is ``"prior"`` or
        ``"grade scale"`` (where the tuning began), ``tuned`` False when tuning did not raise the kappa
        of that start (the start is kept); ``val_agreement`` is the share of val rows whose most
        likely grade under the fitted head is their cut grade (at least 95 % unless no scale reaches
        it), ``val_qwk_head`` the val QWK of those most likely grades, the member's own val QWK.
    """
    score = np.asarray(score, np.float64)
    y = np.asarray(y, np.int64)
    default = np.arange(k - 1) + 0.5
    kappa_default = kappa_or_zero(y, np.searchsorted(default, score, side="right"), k)
    if prior is None:
        prior = np.bincount(y, minlength=k)
    matched = prior_cuts(score, np.asarray(prior, np.float64)[:k]) if len(y) else None
    kappa_prior = kappa_or_zero(y, np.searchsorted(matched, score, side="right"), k) if matched is not None else None
    use_prior = matched is not None  # always, where they exist: comparing the two on a few val rows is noise
    start = matched if use_prior else default
    gap = MIN_GAP if k < 3 else min(MIN_GAP, 0.5 * float(np.min(np.diff(start))))
    cuts, kappa, kappa0 = tune_cuts(score, y, k, start.copy(), reach=reach_for(score, y, REACH), min_gap=gap)
    tuned = bool(kappa > kappa0 + 1e-9)
    if not tuned:
        cuts = start.copy()
    grades = np.searchsorted(cuts, score, side="right")
    best = None
    mixes = MIXES if mix and len(y) else MIXES[:1]
    for scale in SCALES:
        probs = head_probs(score, cuts, scale)
        agree = float(np.mean(probs.argmax(axis=1) == grades)) if len(y) else 1.0
        if agree < AGREEMENT:
            continue
        true = probs[np.arange(len(y)), y]
        losses = [float(-np.mean(np.log(np.clip((1.0 - m) * true + m / k, 1e-12, None)))) if len(y) else 0.0
                  for m in mixes]
        i = int(np.argmin(losses))
        if best is None or losses[i] < best[0]:
            best = (losses[i], float(scale), float(mixes[i]))
    scale, mixed = (best[1], best[2]) if best is not None else (float(SCALES[0]), 0.0)
    head = head_probs(score, cuts, scale, mixed).argmax(axis=1) if len(y) else grades
    return {"cuts": [float(c) for c in cuts], "scale": scale, "mix": mixed,
            "start": "prior" if use_prior else "grade scale",
            "val_qwk_default_cuts": float(kappa_default),
            "val_qwk_prior_cuts": None if kappa_prior is None else float(kappa_prior),
            "val_qwk_tuned_cuts": float(kappa), "tuned": tuned,
            "val_agreement": float(np.mean(head == grades)) if len(y) else 1.0,
            "val_qwk_head": float(kappa_or_zero(y, head, k)) if len(y) else 0.0}


def calibrate_head(model, val_probs: np.ndarray, val_labels: np.ndarray, prior: np.ndarray | None = None) -> dict:
    """Tune the regression head of ``model`` on its val probabilities; set its cuts and scale.

    Args:
        model: a Keras model with a ``regression_head`` layer at its training cuts.
        val_probs: the model's val probabilities (n, k) at those cuts.
        val_labels: the val grades (n,).
        prior: the natural grade shares or counts (the trainer passes the train+val counts).

    Returns:
        The fitted values (:func:`fit_cuts`), recorded in ``metrics.json`` as ``regression``.
    """
    head = model.get_layer("regression_head")
    cuts0 = np.asarray(head.cuts.numpy(), np.float64)
    scale0 = float(head.scale.numpy())
    k = cuts0.size + 1
    score = recover_score(val_probs, cuts0, scale0, head_mix(head))
    has_mix = getattr(head, "uniform_mix", False)  # a head saved before the mix has no weight for it
    fitted = fit_cuts(score, np.asarray(val_labels, np.int64), k, prior, mix=has_mix)
    head.cuts.assign(np.asarray(fitted["cuts"], np.float32))
    head.scale.assign(np.float32(fitted["scale"]))
    if has_mix:
        head.mix.assign(np.float32(fitted["mix"]))
    return fitted


def head_mix(head) -> float:
    """The uniform mix of a :class:`RegressionHead` layer (0 for one built without it)."""
    return float(head.mix.numpy()) if getattr(head, "uniform_mix", False) else 0.0


def prior_matched_qwk(probs: np.ndarray, y: np.ndarray, prior: np.ndarray, *, cuts: np.ndarray | None = None,
                      scale: float = 1.0, mix: float = 0.0) -> float:
    """QWK of a regression member's probabilities cut where each grade gets its ``prior`` share of the rows.

    ``val_qwk_prior_matched`` of a regression member's history: its scores are recovered from
    ``probs`` (at the training cuts ``0.5, 1.5, …`` and scale 1 unless given) and cut at
    :func:`members.model.cuts.prior_cuts`, the start of the cuts it ends with, so the figure shows
    how well the member ranks the rows whatever the label shift of class-balanced batches does to
    its scores. 0 where the scores have no spread.

    Example:
        >>> p = head_probs(np.array([0.9, 1.0, 1.1, 1.2]), np.array([0.5, 1.5]), 1.0)
        >>> prior_matched_qwk(p, np.array([0, 0, 1, 2]), np.array([2, 1, 1]))
        1.0
    """
    probs = np.asarray(probs, np.float64)
    k = probs.shape[1]
    cuts = np.arange(k - 1) + 0.5 if cuts is None else np.asarray(cuts, np.float64)
    raw = recover_score(probs, cuts, scale, mix)
    matched = prior_cuts(raw, np.asarray(prior, np.float64)[:k])
    if matched is None:
        return 0.0
    return kappa_or_zero(np.asarray(y, np.int64), np.searchsorted(matched, raw, side="right"), k)


def describe_cuts(fitted: dict) -> str:
    """One log line for :func:`fit_cuts`'s result: the cuts, where they started and the val QWK of each step.

    Example:
        >>> describe_cuts({"cuts": [0.9, 1.8], "scale": 0.3, "start": "prior", "val_qwk_default_cuts": 0.1,
        ...                "val_qwk_prior_cuts": 0.2, "val_qwk_tuned_cuts": 0.25, "tuned": True})
        'regression cuts 0.90, 1.80 (val QWK 0.100 at 0.5, 1.5, ...; 0.200 prior-matched; 0.250 tuned), scale 0.3'
        >>> describe_cuts({"cuts": [0.9], "scale": 0.3, "start": "prior", "val_qwk_default_cuts": 0.1,
        ...                "val_qwk_tuned_cuts": 0.25, "tuned": True, "val_agreement": 0.96,
        ...                "val_qwk_head": 0.21}).split("; ")[-1]
        "the calibrated head's most likely grade is the cut grade for 96% of val rows, so the member's val QWK is 0.210"
    """
    steps = [f"val QWK {fitted['val_qwk_default_cuts']:.3f} at 0.5, 1.5, ..."]
    if fitted.get("val_qwk_prior_cuts") is not None:
        steps.append(f"{fitted['val_qwk_prior_cuts']:.3f} prior-matched")
    steps.append(f"{fitted['val_qwk_tuned_cuts']:.3f} tuned" if fitted["tuned"] else "tuning kept the start")
    mix = f", uniform mix {fitted['mix']:.2f}" if fitted.get("mix") else ""
    line = (f"regression cuts {', '.join(f'{c:.2f}' for c in fitted['cuts'])} ({'; '.join(steps)}), "
            f"scale {fitted['scale']:.3g}{mix}")
    agreement = fitted.get("val_agreement")
    if agreement is not None and agreement < 1.0:  # the saved head grades by argmax: say what that gives
        line += (f"; the calibrated head's most likely grade is the cut grade for {agreement:.0%} of val rows, "
                 f"so the member's val QWK is {fitted['val_qwk_head']:.3f}")
    return line
