"""ensemble.stats: bootstrap, McNemar, diversity and referral against known values."""

from __future__ import annotations

import numpy as np
import pytest

from ensemble.stats import (
    bootstrap_difference,
    bootstrap_indices,
    bootstrap_metrics,
    bootstrap_samples,
    choose_refer_threshold,
    coverage_curve,
    diversity,
    mcnemar_exact,
    percentile_interval,
)
from members.scoring import METRICS, score


def _model(n: int, k: int = 5, skill: float = 0.15, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    p = (1 - skill) * rng.dirichlet(np.ones(k), n) + skill * np.eye(k)[y]
    return y, p / p.sum(axis=1, keepdims=True)


def test_indices_seeded_and_stratified() -> None:
    y = np.array([0] * 7 + [1] * 3)
    a, b = bootstrap_indices(10, 50, seed=1, stratify=y), bootstrap_indices(10, 50, seed=1, stratify=y)
    assert a.shape == (50, 10) and np.array_equal(a, b)
    assert not np.array_equal(a, bootstrap_indices(10, 50, seed=2, stratify=y))
    assert (y[a] == y).all()  # each class is resampled within itself


def test_resamples_are_scored_exactly() -> None:
    y, p = _model(60, k=3)
    idx = bootstrap_indices(60, 4, seed=0)
    samples = bootstrap_samples(y, p, indices=idx)
    for b in range(4):
        direct = score(y[idx[b]], p[idx[b]], num_classes=3)
        for name in METRICS:
            assert samples[name][b] == pytest.approx(direct[name], abs=1e-12, nan_ok=True), name


def test_interval_contains_value_and_shrinks_with_n() -> None:
    widths = []
    for n in (100, 2000):
        y, p = _model(n, seed=n)
        result = bootstrap_metrics(y, p, n_boot=300, seed=0)
        assert set(result) == set(METRICS)
        for name, entry in result.items():
            lo, hi = entry["ci"]
            assert lo <= entry["value"] <= hi, name
        widths.append(np.diff(result["accuracy"]["ci"])[0])
    assert widths[1] < widths[0] / 2  # ~ 1/sqrt(n): 4.5x narrower for 20x the rows


def test_bootstrap_is_seeded() -> None:
    y, p = _model(80)
    assert bootstrap_metrics(y, p, n_boot=100, seed=3) == bootstrap_metrics(y, p, n_boot=100, seed=3)
    assert bootstrap_metrics(y, p, n_boot=100, seed=3) != bootstrap_metrics(y, p, n_boot=100, seed=4)


def test_percentile_interval_widens_to_value_and_ignores_nan() -> None:
    assert percentile_interval(np.array([0.5, 0.6, np.nan]), 0.1) == [0.1, pytest.approx(0.5975)]
    assert all(np.isnan(percentile_interval(np.array([np.nan]), 0.5)))


def test_paired_difference() -> None:
    y, p = _model(200)
    idx = bootstrap_indices(200, 200, seed=0)
    same = bootstrap_difference(y, (p, None), (p, None), indices=idx)
    assert all(same[m]["value"] == 0 and same[m]["ci"] == [0, 0] for m in METRICS)
    _, worse = _model(200, skill=0.0, seed=9)
    diff = bootstrap_difference(y, (p, None), (worse, None), indices=idx)
    assert diff["accuracy"]["ci"][0] > 0


def test_mcnemar_hand_values() -> None:
    y = np.zeros(10, int)
    a = np.r_[0, np.ones(9, int)]  # right on row 0 only
    b = np.r_[1, np.zeros(9, int)]  # right on rows 1..9
    assert mcnemar_exact(y, a, b) == 0.021484375  # 2 * (1 + 10) / 2**10
    assert mcnemar_exact(y, b, a) == 0.021484375
    assert mcnemar_exact(y, a, a) == 1.0
    assert mcnemar_exact(np.zeros(6, int), np.r_[0, 0, 0, 1, 1, 1], np.r_[1, 1, 1, 0, 0, 0]) == 1.0


def test_diversity_hand_example() -> None:
    y = np.zeros(6, int)
    a = np.array([0, 0, 0, 0, 1, 1])  # right, right, right, right, wrong, wrong
    b = np.array([0, 0, 0, 1, 0, 1])  # N11 = 3, N10 = 1, N01 = 1, N00 = 1
    d = diversity(y, {"a": a, "b": b})
    assert d["members"] == ["a", "b"]
    assert d["q_statistic"][0][1] == pytest.approx((3 * 1 - 1 * 1) / (3 * 1 + 1 * 1))
    assert d["disagreement"][0][1] == pytest.approx(2 / 6)
    assert d["double_fault"][0][1] == pytest.approx(1 / 6)
    assert d["double_fault"][0][0] == pytest.approx(2 / 6)  # the diagonal is the error rate
    assert d["q_statistic"][1][1] == 1.0


def test_coverage_curve_and_threshold() -> None:
    y = np.array([0, 0, 0, 0])
    pred = np.array([0, 0, 1, 1])
    conf = np.array([0.9, 0.8, 0.7, 0.6])
    curve = coverage_curve(y, pred, conf, levels=np.array([0.5, 0.75, 1.0]))
    assert curve.coverage == [0.5, 0.75, 1.0]
    assert curve.accuracy == [1.0, pytest.approx(2 / 3), 0.5]
    assert curve.threshold == [0.8, 0.7, 0.6]
    tied = coverage_curve(y, pred, np.full(4, 0.5), agreement=np.array([0.0, 1.0, 0.0, 0.0]), levels=np.array([0.25]))
    assert tied.accuracy == [1.0]  # agreement breaks the tie: row 1 (right) is kept first
    few = coverage_curve(y, pred, conf)  # 4 rows, 20 default levels: one point per number of rows kept
    assert few.coverage == [0.25, 0.5, 0.75, 1.0] and few.accuracy == [1.0, 1.0, pytest.approx(2 / 3), 0.5]
    counted = coverage_curve(np.array([0, 1, 0, 2]), np.array([0, 0, 0, 2]), conf, levels=np.array([0.5, 1.0]),
                             majority=0)
    assert counted.rows == [2, 4] and counted.accuracy == [0.5, 0.75]
    assert counted.balanced_accuracy == [0.5, pytest.approx((1 + 0 + 1) / 3)]  # mean recall of the classes kept
    assert counted.majority_accuracy == [0.5, 0.5]  # always 0 scores as much on the two most confident rows
    assert coverage_curve(y, pred, conf).majority_accuracy == []  # no baseline class given: none
    assert choose_refer_threshold(conf, 0.5) == 0.8
    assert choose_refer_threshold(np.arange(1, 11) / 10, 0.9) == 0.2  # 0.9 * 10 rounds to 9.000000000000002: keep 9
    with pytest.raises(ValueError, match="target_coverage"):
        choose_refer_threshold(conf, 0.0)


def test_threshold_for_sensitivity_hand_example() -> None:
    from ensemble.stats import threshold_for_sensitivity

    scores = np.array([0.95, 0.10, 0.70, 0.40, 0.30, 0.80, 0.20])
    positive = np.array([1, 0, 1, 1, 0, 1, 0], bool)  # positives score 0.95, 0.80, 0.70, 0.40
    assert threshold_for_sensitivity(scores, positive, 0.75) == 0.70  # 3 of 4 flagged
    assert threshold_for_sensitivity(scores, positive, 0.76) == 0.40  # needs all 4
    assert threshold_for_sensitivity(scores, positive, 0.25) == 0.95
    with pytest.raises(ValueError, match="at least one positive"):
        threshold_for_sensitivity(scores, np.zeros(7, bool), 0.9)


def test_sensitivity_specificity_counts_and_exact_intervals() -> None:
    from ensemble.stats import bootstrap_indices, sensitivity_specificity

    positive = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], bool)
    flagged = np.array([1, 1, 1, 0, 1, 0, 0, 0, 0, 0], bool)
    idx = bootstrap_indices(10, 300, seed=1, stratify=positive.astype(int))
    out = sensitivity_specificity(positive, flagged, indices=idx)
    assert out["sensitivity"]["value"] == 0.75 and out["specificity"]["value"] == pytest.approx(5 / 6)
    for key in ("sensitivity", "specificity"):
        lo, hi = out[key]["ci"]
        assert 0 <= lo <= out[key]["value"] <= hi <= 1 and lo < hi
    assert (out["sensitivity"]["hits"], out["sensitivity"]["n"]) == (3, 4)
    assert out["sensitivity"]["ci"] == pytest.approx([0.1941, 0.9937], abs=1e-4)  # Clopper-Pearson 3 of 4
    perfect = sensitivity_specificity(positive, positive, indices=idx)
    # all 4 and all 6 right: still compatible with less than perfect (a bootstrap gave [1, 1])
    assert perfect["sensitivity"]["ci"] == pytest.approx([0.3976, 1.0], abs=1e-4)
    assert perfect["specificity"]["ci"] == pytest.approx([0.5407, 1.0], abs=1e-4)


def test_reliability_bins_reproduce_ece() -> None:
    from ensemble.stats import reliability
    from members.scoring import score

    rng = np.random.default_rng(4)
    probs = rng.dirichlet(np.ones(4), size=200)
    labels = rng.integers(0, 4, 200)
    bins = reliability(labels, probs)
    count = np.array(bins["count"])
    assert count.sum() == 200 and len(bins["edges"]) == len(count) + 1
    conf, acc = np.nan_to_num(bins["confidence"]), np.nan_to_num(bins["accuracy"])
    ece = float(np.sum(count * np.abs(acc - conf)) / 200)
    assert ece == pytest.approx(score(labels, probs)["ece"], abs=1e-12)
    pred = (probs.argmax(axis=1) + 1) % 4  # a combiner's own labels (a +thr grade): the diagram judges those
    bins = reliability(labels, probs, pred)
    count, conf, acc = np.array(bins["count"]), np.nan_to_num(bins["confidence"]), np.nan_to_num(bins["accuracy"])
    assert float(np.sum(count * np.abs(acc - conf)) / 200) == pytest.approx(score(labels, probs, pred=pred)["ece"],
                                                                           abs=1e-12)


def test_cluster_bootstrap_draws_whole_patients_within_their_worst_grade() -> None:
    from ensemble.stats import GroupDraws

    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 0, 0])
    groups = ["a", "a", "b", "c", "c", "d", "e", "e", "f", "g"]  # a, c and e have two rows
    draws = bootstrap_indices(10, 500, seed=0, stratify=labels, groups=groups)
    assert isinstance(draws, GroupDraws) and draws.shape == (500, 10) and draws.groups == 7
    counts = draws.counts(0, 500)  # (rows, resamples)
    assert np.array_equal(counts[0], counts[1]) and np.array_equal(counts[3], counts[4])
    assert np.array_equal(counts[6], counts[7])
    # strata by the patient's highest grade: {a, b, f, g} (0), {c, d} (1), {e} (2); each keeps its patient count
    per_patient = counts[[0, 2, 3, 5, 6, 8, 9]]  # one row per patient a, b, c, d, e, f, g
    assert np.all(per_patient[[0, 1, 5, 6]].sum(axis=0) == 4) and np.all(per_patient[[2, 3]].sum(axis=0) == 2)
    assert np.all(per_patient[4] == 1)  # the only grade-2 patient is drawn once in every resample
    # the same seed gives the same draws; rows without a shared group fall back to row indices
    assert np.array_equal(draws.draws, bootstrap_indices(10, 500, seed=0, stratify=labels, groups=groups).draws)
    plain = bootstrap_indices(10, 5, seed=0, groups=[str(i) for i in range(10)])
    assert isinstance(plain, np.ndarray) and np.array_equal(plain, bootstrap_indices(10, 5, seed=0))


def test_cluster_bootstrap_widens_intervals_when_both_eyes_agree() -> None:
    # 100 patients whose two eyes share label and prediction: 200 rows carry 100 rows' information,
    # so the interval of a proportion is about sqrt(2) wider than the one that treats eyes as independent.
    rng = np.random.default_rng(0)
    y_patient = rng.integers(0, 2, 100)
    right = rng.random(100) < 0.7
    pred_patient = np.where(right, y_patient, 1 - y_patient)
    y, pred = np.repeat(y_patient, 2), np.repeat(pred_patient, 2)
    groups = np.repeat(np.arange(100), 2).astype(str)
    eyes = bootstrap_metrics(y, None, pred, indices=bootstrap_indices(200, 2000, 1, stratify=y), num_classes=2)
    patients = bootstrap_metrics(y, None, pred, num_classes=2,
                                 indices=bootstrap_indices(200, 2000, 1, stratify=y, groups=groups))
    width = {name: np.diff(m["accuracy"]["ci"])[0] for name, m in (("eyes", eyes), ("patients", patients))}
    assert eyes["accuracy"]["value"] == patients["accuracy"]["value"]
    assert 1.25 < width["patients"] / width["eyes"] < 1.6


def test_sensitivity_on_clustered_rows_uses_effective_counts() -> None:
    from ensemble.stats import effective_counts, exact_interval, sensitivity_specificity

    positive = np.ones(40, dtype=bool)
    flagged = np.repeat(np.arange(20) % 4 != 0, 2)  # 15 of 20 patients flagged in both eyes
    groups = np.repeat(np.arange(20), 2).astype(str)
    draws = bootstrap_indices(40, 10, seed=0, groups=groups)
    clustered = sensitivity_specificity(positive, flagged, indices=draws)["sensitivity"]
    plain = sensitivity_specificity(positive, flagged, indices=bootstrap_indices(40, 10, seed=0))["sensitivity"]
    assert clustered["value"] == plain["value"] == 0.75 and plain["ci"] == exact_interval(30, 40)
    hits, n = effective_counts(flagged, groups)
    assert n == pytest.approx(20.0) and hits / n == pytest.approx(0.75)  # eyes that agree: one per patient
    assert clustered["ci"] == exact_interval(hits, n) and clustered["n_effective"] == round(n, 1)
    assert clustered["ci"][0] < plain["ci"][0] and clustered["ci"][1] > plain["ci"][1]


def test_clustered_mcnemar_matches_the_exact_test_on_single_rows_and_is_weaker_on_concordant_pairs() -> None:
    from ensemble.stats import mcnemar_clustered, mcnemar_exact

    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 80)
    a = np.where(rng.random(80) < 0.7, y, (y + 1) % 3)
    b = np.where(rng.random(80) < 0.5, y, (y + 2) % 3)
    only_a, only_b = int(np.sum((a == y) & (b != y))), int(np.sum((a != y) & (b == y)))
    assert only_a + only_b > 20
    plain = mcnemar_exact(y, a, b)
    assert mcnemar_clustered(y, a, b, np.arange(80)) == pytest.approx(plain)  # one row per group: the exact test
    # the same rows doubled as two eyes of one patient: independent-eye counting halves p; patients do not
    y2, a2, b2 = np.repeat(y, 2), np.repeat(a, 2), np.repeat(b, 2)
    assert mcnemar_clustered(y2, a2, b2, np.repeat(np.arange(80), 2)) == pytest.approx(plain)
    assert mcnemar_clustered(y2, a2, b2, np.arange(160)) < plain
    assert mcnemar_clustered(y, y, y, np.arange(80)) == 1.0


def test_effective_counts_at_zero_or_one_count_patients_not_independent_eyes() -> None:
    from ensemble.stats import effective_counts, exact_interval

    for groups, size in ((np.repeat(np.arange(50), 2), 2), (np.repeat(np.arange(25), 4), 4)):
        hits, n = effective_counts(np.ones(100), groups)
        assert hits == n and n == pytest.approx(100 / size, rel=0.1)  # about the patient count
        perfect = exact_interval(hits, n)
        missed_patient = exact_interval(*effective_counts(np.r_[np.ones(100 - size), np.zeros(size)], groups))
        assert perfect[0] > missed_patient[0] and perfect[1] == 1.0  # never less certain than one missed patient
        assert perfect[0] < exact_interval(100, 100)[0]  # wider than the eyes-as-independent interval
        none = exact_interval(*effective_counts(np.zeros(100), groups))
        assert none[0] == 0.0 and none[1] > exact_interval(0, 100)[1]
    # eyes of one patient are one observation
    assert effective_counts(np.ones(3), np.zeros(3)) == (1.0, 1.0)
    # never fewer observations than patients, however few patients (the g / (g - 1) correction alone gave 1 of 2)
    for hit, groups in ((np.ones(4), np.repeat([0, 1], 2)), (np.ones(6), np.repeat([0, 1, 2], 2)),
                        (np.r_[1, 1, 0, 0, 1, 1], np.repeat([0, 1, 2], 2))):
        hits, n = effective_counts(hit, groups)
        assert len(set(groups)) <= n <= len(hit) and hits / n == pytest.approx(hit.mean())
    # groups of unequal size: the ceiling is Kish's sum(m^2) / n, not n / g (one patient of 10 images all wrong
    # beside 10 patients of one image: n / g gave 11 observations, too narrow an interval)
    hits, n = effective_counts(np.r_[[0] * 10, [1] * 10], np.r_[[0] * 10, np.arange(1, 11)])
    assert n == pytest.approx(20 / (110 / 20)) and hits / n == pytest.approx(0.5)


def test_clustered_mcnemar_is_exact_with_few_discordant_patients() -> None:
    from ensemble.stats import mcnemar_clustered

    # four patients, one eye each won by the ensemble: the chi-square approximation gave p = 0.046,
    # the exact sign flips of four patients give 2 / 16
    y = np.zeros(8, int)
    a = np.zeros(8, int)
    b = np.r_[1, 0, 1, 0, 1, 0, 1, 0]
    assert mcnemar_clustered(y, a, b, np.repeat(np.arange(4), 2)) == pytest.approx(0.125)
    # unequal sums: patients won by +2, +1 and lost by -1; |sum| = 2; flips reach |s| >= 2 in 6 of 8
    y = np.zeros(6, int)
    a = np.r_[0, 0, 0, 0, 1, 1]
    b = np.r_[1, 1, 1, 0, 0, 1]
    assert mcnemar_clustered(y, a, b, np.r_[0, 0, 1, 1, 2, 2]) == pytest.approx(6 / 8)


def test_bootstrap_samples_of_one_metric_skip_the_auc_and_equal_the_full_run(monkeypatch):
    from ensemble import stats
    """vote's selection CIs read one metric but scored all seven on every resample, the per-class AUC (a third of
    vote's CPU on 8,000 rows) included; asked for one, the others are not computed."""
    from members import scoring

    rng = np.random.default_rng(3)
    labels, probs = rng.integers(0, 4, 300), rng.dirichlet(np.ones(4), 300)
    indices = stats.bootstrap_indices(300, 50, 0, stratify=labels)
    full = stats.bootstrap_samples(labels, probs, indices=indices, num_classes=4)
    monkeypatch.setattr(scoring, "_macro_auc", lambda *a, **k: pytest.fail("the AUC was computed unasked"))
    one = stats.bootstrap_samples(labels, probs, indices=indices, num_classes=4, metrics=("qwk",))
    assert list(one) == ["qwk"] and np.array_equal(one["qwk"], full["qwk"])
    assert set(stats.bootstrap_samples(labels, probs, indices=indices, num_classes=4,
                                       metrics=("log_loss", "ece"))) == {"log_loss", "ece"}
