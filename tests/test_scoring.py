"""members.scoring against scikit-learn and hand-computed values."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn import metrics as skm

from members.scoring import METRICS, confusion, nan_to_none, qwk, score, score_weighted


def _data(k: int, n: int, seed: int, decimals: int | None = 2):
    rng = np.random.default_rng(seed)
    y = np.r_[np.arange(k), rng.integers(0, k, n - k)]  # every class present
    p = rng.dirichlet(np.ones(k), size=n)
    if decimals is not None:  # rounding creates ties, which AUC must count one half
        p = np.round(p, decimals) + 1e-3
    return y, p / p.sum(axis=1, keepdims=True)


def _sklearn(y, p, pred, k):
    labels = list(range(k))
    return {
        "accuracy": skm.accuracy_score(y, pred),
        "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
        "macro_f1": skm.f1_score(y, pred, average="macro"),
        "qwk": skm.cohen_kappa_score(y, pred, weights="quadratic", labels=labels),
        "auc": skm.roc_auc_score(y, p[:, 1]) if k == 2 else skm.roc_auc_score(y, p, multi_class="ovr", average="macro"),
        "log_loss": skm.log_loss(y, p, labels=labels),
    }


@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize("n", [40, 300])
def test_matches_sklearn(k: int, n: int) -> None:
    y, p = _data(k, n, seed=k * n)
    got = score(y, p)
    assert list(got) == list(METRICS)
    for name, want in _sklearn(y, p, p.argmax(1), k).items():
        assert got[name] == pytest.approx(want, abs=1e-9), name


def test_pred_overrides_label_metrics_and_the_labels_ece_judges() -> None:
    y, p = _data(5, 200, seed=1)
    pred = np.clip(p.argmax(1) + 1, 0, 4)
    got, plain = score(y, p, pred=pred), score(y, p)
    for name, want in _sklearn(y, p, pred, 5).items():
        assert got[name] == pytest.approx(want, abs=1e-9), name
    for name in ("auc", "log_loss"):
        assert got[name] == plain[name]
    conf, hit = p[np.arange(len(y)), pred], (pred == y).astype(float)  # ECE of the labels reported, not the argmax
    bins = np.clip(np.ceil(conf * 15).astype(int) - 1, 0, 14)
    want = sum(abs(hit[bins == b].sum() - conf[bins == b].sum()) for b in range(15)) / len(y)
    assert got["ece"] == pytest.approx(want, abs=1e-12) and got["ece"] != plain["ece"]


@pytest.mark.parametrize("p,pred,want,argmax_want", [
    ([[0.4, 0.4, 0.2]], [1], 0.6, 0.4),  # a hard vote's 1-1 tie, broken toward class 1 (right): |1 - 0.4|
    ([[0.6, 0.3, 0.1]], [1], 0.7, 0.6),  # a +thr grade other than the argmax (right), at its probability 0.3
])
def test_ece_judges_the_reported_label_at_its_probability(p, pred, want, argmax_want) -> None:
    y = np.array([1])
    assert score(y, np.array(p), pred=np.array(pred))["ece"] == pytest.approx(want)
    assert score(y, np.array(p))["ece"] == pytest.approx(argmax_want)


def test_qwk_known_value_and_full_grade_scale() -> None:
    assert qwk(np.array([0, 1, 2, 2]), np.array([0, 1, 2, 1]), 3) == pytest.approx(0.8)
    y, pred = np.array([0, 0, 4, 4, 2]), np.array([0, 4, 4, 4, 0])  # grades 1 and 3 absent
    want = skm.cohen_kappa_score(y, pred, weights="quadratic", labels=list(range(5)))
    assert qwk(y, pred, 5) == pytest.approx(want, abs=1e-12)
    assert math.isnan(qwk(np.array([1, 1]), np.array([1, 1]), 3))  # no spread: undefined


def test_auc_over_present_classes_and_undefined() -> None:
    y, p = _data(3, 60, seed=2)
    keep = y != 2  # class 2 has no positives: left out of the macro mean
    want = np.mean([skm.roc_auc_score(y[keep] == c, p[keep, c]) for c in (0, 1)])
    assert score(y[keep], p[keep])["auc"] == pytest.approx(want, abs=1e-12)
    one_class = score(np.zeros(4, int), np.full((4, 2), 0.5))
    assert math.isnan(one_class["auc"])


def test_ece_hand_example() -> None:
    p = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.6, 0.4]])
    y = np.array([0, 1, 1, 0])  # confidence 0.9: 1 of 2 right; confidence 0.6: 2 of 2 right
    assert score(y, p)["ece"] == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)


def test_log_loss_clips_zero_probability() -> None:
    y, p = np.array([0, 1]), np.array([[0.0, 1.0], [0.5, 0.5]])
    got = score(y, p)["log_loss"]
    assert math.isfinite(got)
    assert got == pytest.approx(skm.log_loss(y, p), abs=1e-9)


def test_weights_equal_repeated_rows() -> None:
    y, p = _data(4, 30, seed=3)
    counts = np.random.default_rng(0).integers(0, 3, size=30)
    rows = np.repeat(np.arange(30), counts)
    weighted = score_weighted(y, p, counts[:, None].astype(float))
    direct = score(y[rows], p[rows], num_classes=4)
    for name in METRICS:
        assert weighted[name][0] == pytest.approx(direct[name], abs=1e-12), name


def test_confusion_and_binary() -> None:
    assert confusion(np.array([0, 1, 1]), np.array([0, 1, 0]), 2).tolist() == [[1, 0], [1, 1]]
    got = score(np.array([0, 1, 1, 0]), np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.4, 0.6]]))
    assert got["accuracy"] == 0.5 and got["auc"] == 0.75  # 3 of the 4 positive-negative pairs ordered right


def test_label_only_scoring_and_errors() -> None:
    got = score(np.array([0, 1, 2]), None, pred=np.array([0, 1, 1]), num_classes=3)
    assert got["accuracy"] == pytest.approx(2 / 3) and math.isnan(got["auc"])
    with pytest.raises(ValueError, match="labels must be in 0..1"):
        score(np.array([0, 2]), np.full((2, 2), 0.5))
    with pytest.raises(ValueError, match="probs has 2 rows but labels has 3"):
        score(np.array([0, 1, 1]), np.full((2, 2), 0.5))


def test_nan_to_none_makes_strict_json() -> None:
    obj = {"a": float("nan"), "b": [np.float32(1.5), np.inf], "c": {"d": np.int64(3)}}
    assert json.dumps(nan_to_none(obj), allow_nan=False) == '{"a": null, "b": [1.5, null], "c": {"d": 3}}'


def test_nan_to_none_takes_numpy_keys_arrays_and_tuples() -> None:
    obj = {np.int64(2): (np.float64(0.5), -np.inf), 1: np.array([np.nan, 2.0]), "k": None}
    assert nan_to_none(obj) == {"2": [0.5, None], 1: [None, 2.0], "k": None}
    assert json.dumps(nan_to_none(obj), allow_nan=False) == '{"2": [0.5, null], "1": [null, 2.0], "k": null}'
