"""Tests for ensemble.combiners: known answers on small hand-made arrays."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from ensemble.combiners import (
    METHODS,
    CaruanaSelection,
    GradeThresholds,
    HardVote,
    SoftVote,
    Stacking,
    WeightedVote,
    load_combiner,
    make_combiner,
)
from ensemble.combiners.temperature import TemperatureScaling
from ensemble.combiners.thresholds import _best_cut, kappa_or_zero
from members.infra.errors import UserError
from members.scoring import qwk


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _members(n: int = 120, k: int = 5, strengths=(3.0, 1.0, 0.5), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Members whose logits favour the true class by ``strength`` plus unit noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    logits = rng.normal(size=(len(strengths), n, k))
    logits[:, np.arange(n), y] += np.asarray(strengths)[:, None]
    return _softmax(logits), y


def _ordinal(n: int = 200, k: int = 5, shift: float = 1.0, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Three members whose probabilities peak ``shift`` grades below the truth."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    grid = np.arange(k)
    centre = y[None, :, None] - shift + rng.normal(scale=0.6, size=(3, n, 1))
    return _softmax(-((grid - centre) ** 2)), y


P3, Y3 = _members()
PORD, YORD = _ordinal()


# ---- hard and soft voting -------------------------------------------------------------
@pytest.mark.parametrize(
    "P, expected",
    [
        # 1-1 tie between classes 0 and 1: class 1 has the larger summed probability (1.0 vs 0.55)
        ([[[0.5, 0.4, 0.1]], [[0.05, 0.6, 0.35]]], 1),
        # the same tie the other way round
        ([[[0.9, 0.05, 0.05]], [[0.3, 0.4, 0.3]]], 0),
        # 2-2 tie between classes 2 and 0: class 0 sums to 1.9, class 2 to 1.4
        ([[[0.4, 0.0, 0.6]], [[0.4, 0.0, 0.6]], [[0.55, 0.35, 0.1]], [[0.55, 0.35, 0.1]]], 0),
        # a 2-1 majority for class 1 wins although class 0 has the larger sum (1.68 vs 1.32)
        ([[[0.34, 0.66, 0.0]], [[0.34, 0.66, 0.0]], [[1.0, 0.0, 0.0]]], 1),
    ],
)
def test_hard_vote_majority_and_tie_break(P, expected):
    P = np.asarray(P)
    hard = HardVote().fit(P, [expected])
    assert hard.predict(P).tolist() == [expected]
    np.testing.assert_allclose(hard.predict_proba(P).sum(axis=1), 1.0)


def test_hard_vote_shares():
    P = np.asarray([[[0.6, 0.4]], [[0.7, 0.3]], [[0.2, 0.8]]])
    np.testing.assert_allclose(HardVote().fit(P, [0]).predict_proba(P), [[2 / 3, 1 / 3]])


def test_soft_vote_is_the_mean():
    soft = SoftVote().fit(P3, Y3)
    np.testing.assert_allclose(soft.predict_proba(P3), P3.mean(axis=0), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(soft.predict(P3), P3.mean(axis=0).argmax(axis=1))
    np.testing.assert_allclose(soft.weights_, [1 / 3] * 3)


def test_soft_vote_fixed_weights_are_normalised():
    soft = SoftVote(weights=(2, 1, 1)).fit(P3, Y3)
    np.testing.assert_allclose(soft.weights_, [0.5, 0.25, 0.25])
    np.testing.assert_allclose(soft.predict_proba(P3), np.tensordot([0.5, 0.25, 0.25], P3, axes=1), atol=1e-12)


# ---- weighted voting and Caruana selection ---------------------------------------------
@pytest.mark.parametrize("position", [0, 2, 4])
@pytest.mark.parametrize("k", [2, 5])
def test_weighted_vote_finds_the_informative_member(position, k):
    rng = np.random.default_rng(position + k)
    n = 150
    y = np.arange(n) % k
    P = _softmax(rng.normal(size=(5, n, k)))  # pure noise members
    P[position] = _softmax(2.5 * np.eye(k)[y] + rng.normal(size=(n, k)))
    w = WeightedVote().fit(P, y).weights_
    assert np.all(w >= 0)
    assert w.sum() == pytest.approx(1.0, abs=1e-12)
    assert w[position] > 0.95


@pytest.mark.parametrize("metric", ["log_loss", "accuracy", "qwk"])
def test_caruana_starts_from_the_best_member(metric):
    P = P3[[2, 0, 1]]  # the strong member is now index 1
    car = CaruanaSelection(steps=7, metric=metric).fit(P, Y3, member_names=["weak", "strong", "mid"])
    assert len(car.trace_) == 7
    assert car.trace_[0] == {"step": 1, "added": 1, "score": car.trace_[0]["score"]}
    assert [t["step"] for t in car.trace_] == list(range(1, 8))
    assert car.counts_.sum() == 7
    np.testing.assert_allclose(car.weights_, car.counts_ / 7)
    assert car.weights_.sum() == pytest.approx(1.0)
    assert car.candidate_scores_.shape == (7, 3)
    from sklearn.metrics import accuracy_score, cohen_kappa_score

    alone = P[1].argmax(axis=1)  # the first step's score is the strong member's own, computed here independently
    expected = {"log_loss": -np.log(P[1, np.arange(len(Y3)), Y3]).mean(), "accuracy": accuracy_score(Y3, alone),
                "qwk": cohen_kappa_score(Y3, alone, weights="quadratic")}[metric]
    assert car.trace_[0]["score"] == pytest.approx(expected)


def test_caruana_explains_zero_weights():
    rng = np.random.default_rng(3)
    P = np.concatenate([P3[:1], _softmax(rng.normal(size=(1, len(Y3), 5)))])  # strong + pure noise
    car = CaruanaSelection(steps=5).fit(P, Y3, member_names=["strong", "noise"])
    report = {r["name"]: r for r in car.selection_report()}
    assert report["strong"]["count"] == 5 and report["noise"]["count"] == 0
    assert report["noise"]["reason"].startswith("never selected: its best log_loss as a candidate was")
    assert report["noise"]["best_candidate_score"] > car.trace_[report["noise"]["best_step"] - 1]["score"]


def test_caruana_init_top_members():
    car = CaruanaSelection(steps=4, init=2).fit(P3, Y3)
    assert [t["added"] for t in car.trace_[:2]] == [0, 1]  # the two best single members in order


# ---- stacking ---------------------------------------------------------------------------
def test_stacking_recovers_a_permuted_member():
    k, n = 4, 200
    rng = np.random.default_rng(5)
    y = np.arange(n) % k
    good = _softmax(3.0 * np.eye(k)[y] + rng.normal(scale=0.5, size=(n, k)))
    permuted = good[:, (np.arange(k) - 1) % k]  # the member reports class (c + 1) % k
    noise = _softmax(rng.normal(size=(2, n, k)))
    P = np.concatenate([permuted[None], noise])
    stack = Stacking().fit(P, y)
    soft_acc = (SoftVote().fit(P, y).predict(P) == y).mean()
    assert (stack.predict(P) == y).mean() > 0.97
    assert soft_acc < 0.1
    assert stack.coef_.shape == (k, 3 * k) and stack.intercept_.shape == (k,)
    assert stack.C_ in stack.Cs_


def test_stacking_reduces_folds_for_rare_classes():
    y = np.array([0] * 20 + [1] * 20 + [2] * 2)
    rng = np.random.default_rng(0)
    P = _softmax(2 * np.eye(3)[y] + rng.normal(size=(2, y.size, 3)))
    stack = Stacking(cv=5).fit(P, y)
    assert stack.n_folds_ == 2
    assert np.all(np.isfinite(stack.predict_proba(P)))


def test_stacking_subsamples_the_cv_and_caps_the_refit():
    P, y = _members(n=300, k=3, strengths=(2.0, 1.0))
    stack = Stacking(cv_max_rows=100, refit_max_iter=3).fit(P, y)
    assert stack.n_iter_ <= 3
    assert (stack.predict(P) == y).mean() > 0.8


# ---- grade thresholds -------------------------------------------------------------------
def test_thresholds_improve_kappa_on_a_biased_ordinal_toy():
    soft = SoftVote().fit(PORD, YORD)
    argmax_kappa = qwk(YORD, soft.predict(PORD), 5)
    tuned = SoftVote(thresholds=True).fit(PORD, YORD)
    tuned_kappa = qwk(YORD, tuned.predict(PORD), 5)
    gt = tuned.grade_thresholds_
    assert tuned_kappa > argmax_kappa + 0.05
    assert gt.kappa_ == pytest.approx(tuned_kappa) and gt.kappa_ >= gt.init_kappa_
    assert np.all(np.diff(gt.thresholds_) >= 0)
    np.testing.assert_array_equal(tuned.predict_proba(PORD), soft.predict_proba(PORD))  # probabilities unchanged


def test_thresholds_predict_cuts_the_expected_grade():
    gt = GradeThresholds(init=(0.5, 1.5)).fit(np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1.0]]), [0, 1, 2])
    probs = np.array([[0.6, 0.4, 0.0], [0.2, 0.2, 0.6], [0.0, 0.5, 0.5]])  # E = 0.4, 1.4, 1.5
    assert gt.predict(probs).tolist() == [0, 1, 2]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("j", [0, 1, 3])
def test_threshold_search_kappa_is_exact(seed, j):
    """The incremental kappa of every candidate cut equals a from-scratch kappa."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 5, 80)
    E = np.clip(y + rng.normal(scale=0.9, size=80) - 0.4, 0, 4)
    thr = np.array([0.5, 1.5, 2.5, 3.5])
    pred = np.searchsorted(thr, E, side="right")
    cut, kappa = _best_cut(E, y, pred, thr, j, 5)
    moved = thr.copy()
    moved[j] = cut
    assert np.all(np.diff(moved) >= 0)
    assert kappa == pytest.approx(qwk(y, np.searchsorted(moved, E, side="right"), 5), abs=1e-12)
    assert kappa >= qwk(y, pred, 5) - 1e-12


def test_undefined_kappa_counts_as_zero():
    assert kappa_or_zero(np.array([2, 2, 2]), np.array([2, 2, 2]), 5) == 0.0
    assert kappa_or_zero(np.array([0, 1, 2]), np.array([0, 2, 2]), 3) == pytest.approx(0.8)


# ---- JSON round-trip --------------------------------------------------------------------
@pytest.mark.parametrize("thresholds", [False, True])
@pytest.mark.parametrize("method", METHODS)
def test_json_round_trip_is_bit_for_bit(method, thresholds, tmp_path):
    P = PORD.astype(np.float32)
    fitted = make_combiner(method, thresholds=thresholds).fit(P, YORD, member_names=["a", "b", "c"])
    path = fitted.save(tmp_path / f"{method}.json")
    text = path.read_text()
    assert json.loads(text)["method"] == method
    loaded = load_combiner(path)
    assert type(loaded) is type(fitted) and loaded.get_params() == fitted.get_params()
    assert loaded.member_names_ == ["a", "b", "c"]
    new = _ordinal(n=60, seed=9)[0]
    for data in (P, new):
        assert loaded.predict_proba(data).tobytes() == fitted.predict_proba(data).tobytes()
        np.testing.assert_array_equal(loaded.predict(data), fitted.predict(data))
    assert (loaded.grade_thresholds_ is not None) == thresholds
    assert loaded.save(tmp_path / "again.json").read_text() == text


def test_make_combiner_and_methods():
    assert METHODS == ("hard", "soft", "weighted", "caruana", "stack")
    assert isinstance(make_combiner("caruana", steps=3), CaruanaSelection)
    with pytest.raises(UserError, match="Unknown combiner method 'vote'; expected one of hard, soft"):
        make_combiner("vote")
    with pytest.raises(UserError, match="Bad option for the 'soft' combiner"):
        make_combiner("soft", steps=3)


def test_load_combiner_refuses_other_json(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"method": "magic"}')
    with pytest.raises(UserError, match="is not a saved combiner: its \"method\" is 'magic'"):
        load_combiner(path)


# ---- validation -------------------------------------------------------------------------
def _bad(P=None, y=None):
    return (P3 if P is None else P), (Y3 if y is None else y)


NAN = P3.copy()
NAN[1, 4, 2] = np.nan
UNNORMALISED = P3.copy()
UNNORMALISED[2, 7] *= 1.01


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "args, message",
    [
        (_bad(y=Y3[:-1]), "P has 120 rows but y has 119"),
        (_bad(P=P3[:1]), "needs at least 2 members; got 1"),
        (_bad(P=P3[0]), "P must be a 3-D array (members, rows, classes); got 2 dimensions"),
        (_bad(P=NAN), "P holds 1 NaN or infinite value(s)"),
        (_bad(P=UNNORMALISED), "Every row of P must sum to 1 within 0.001; member 2 row 7 sums to 1.01"),
        (_bad(y=np.where(Y3 == 4, 5, Y3)), "y holds 24 label(s) outside 0..4 (P has 5 classes)"),
        (_bad(y=Y3 - 0.5), "y must hold integer class labels 0..4"),
        (_bad(P=-P3), "P holds negative values"),
    ],
)
def test_fit_validation_messages(method, args, message):
    with pytest.raises(UserError) as err:
        make_combiner(method).fit(*args)
    assert message in str(err.value)


def test_cross_argument_messages():
    with pytest.raises(UserError, match="P has 3 members but member_names has 2"):
        SoftVote().fit(P3, Y3, member_names=["a", "b"])
    with pytest.raises(UserError, match="P has 3 members but weights has 4"):
        SoftVote(weights=[1, 1, 1, 1]).fit(P3, Y3)
    fitted = SoftVote().fit(P3, Y3)
    with pytest.raises(UserError, match="P has 2 members but the combiner was fitted on 3"):
        fitted.predict(P3[:2])
    with pytest.raises(UserError, match="init has 2 threshold"):
        GradeThresholds(init=(0.5, 1.5)).fit(PORD[0], YORD)
    with pytest.raises(UserError, match=r"^GradeThresholds takes one model's probabilities, shape \(rows, classes\); "
                                        rf"got shape \({PORD.shape[0]}, {PORD.shape[1]}, {PORD.shape[2]}\)\. For the "):
        GradeThresholds().fit(PORD, YORD)
    with pytest.raises(UserError, match="metric must be one of log_loss, accuracy, qwk; got 'auc'"):
        CaruanaSelection(metric="auc").fit(P3, Y3)
    with pytest.raises(NotFittedError, match=r"^Stacking is not fitted yet; call fit\(P, y\) first\.$"):
        Stacking().predict(P3)


@pytest.mark.parametrize("unfitted, call", [
    (lambda: SoftVote().predict_proba(P3), "fit(P, y)"), (lambda: Stacking().predict_proba(P3), "fit(P, y)"),
    (lambda: GradeThresholds().predict(P3[0]), "fit(probs, y)"),
    (lambda: TemperatureScaling().predict_proba(P3[0]), "fit(probs, y)"),
])
def test_an_unfitted_combiner_raises_scikit_learns_not_fitted_error(unfitted, call):
    with pytest.raises(NotFittedError, match="is not fitted yet; call " + re.escape(call) + " first") as info:
        unfitted()
    assert isinstance(info.value, ValueError) and isinstance(info.value, AttributeError)  # as sklearn's own


def test_grade_thresholds_start_prior_matched_and_stay_within_reach():
    from members.model.cuts import prior_cuts, reach_for

    rng = np.random.default_rng(5)
    y = rng.choice(5, 300, p=[0.75, 0.06, 0.12, 0.04, 0.03])
    E = np.clip(1.5 + 0.5 * y + rng.normal(0, 0.6, 300), 0, 4)  # members trained on balanced batches
    probs = np.zeros((300, 5))
    lo = np.floor(E).astype(int).clip(0, 3)
    probs[np.arange(300), lo] = 1 - (E - lo)
    probs[np.arange(300), lo + 1] += E - lo
    gt = GradeThresholds().fit(probs, y)
    start = prior_cuts(E, np.bincount(y, minlength=5))
    assert np.all(np.abs(gt.thresholds_ - start) <= reach_for(E, y) + 1e-9)
    assert abs(np.mean(gt.predict(probs) == 0) - 0.75) < 0.1  # the grade-0 share of the labels, not of the scores
    free = GradeThresholds(init=(0.5, 1.5, 2.5, 3.5)).fit(probs, y)  # an explicit start is tuned without limits
    assert free.init_kappa_ < gt.init_kappa_ and GradeThresholds.from_dict(gt.to_dict()).thresholds_.tolist() == gt.thresholds_.tolist()


@pytest.mark.parametrize("counts", [(9, 1), (18, 2), (6, 1, 1), (4, 1, 1, 0, 0)])
def test_stack_fits_when_a_fold_holds_one_class(counts):
    """A val class of 1-2 rows left a fold (of the C search, or of cross-fitting) with one class, and scikit-learn's
    'needs samples of at least 2 classes' reached the user as a traceback from the default vote."""
    from ensemble.crossfit import cross_fit

    rng = np.random.default_rng(0)
    k = len(counts)
    y = np.repeat(np.arange(k), counts)
    P = rng.dirichlet(np.ones(k), (3, len(y)))
    P[:, np.arange(len(y)), y] += 1.0
    P /= P.sum(axis=2, keepdims=True)
    oof = cross_fit("stack", P, y)
    assert oof.probs.shape == (len(y), k) and np.allclose(oof.probs.sum(axis=1), 1.0)
    fitted = Stacking().fit(P, y)
    assert np.allclose(fitted.predict_proba(P).sum(axis=1), 1.0)
