"""The training recipe beyond the article: optimizers and schedules, class-rebalanced batches, residual
blocks, the regression head and its val-tuned cuts, early stopping, best-epoch ties, collapse detection
and the majority baseline in metrics.json."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from members.infra.errors import UserError
from members.model.regression import fit_cuts, head_probs, kappa_or_zero, prior_cuts, recover_score
from members.training.sampling import sampled_shares, sampling_acceptance
from members.model.spec import MemberSpec, load_preset
from members.training.checkpoint import better_row as _better_row
from members.training.collapse import CollapseWatch, is_chance as _is_chance, majority_baseline
from tests.conftest import quiet


# ----- spec ------------------------------------------------------------------------------
@pytest.mark.parametrize("changes, words", [
    ({"optimizer": "lion"}, "optimizer must be one of sgd, adam, adamw"),
    ({"sampling": "oversample"}, "sampling must be one of natural, balanced, sqrt"),
    ({"block": "dense"}, "block must be one of plain, residual"),
    ({"weights": "imagenet"}, "a built-in network has no ImageNet weights"),
    ({"weights": "base.h5"}, "starts from \"none\" or from a saved member"),
    ({"freeze_epochs": 1}, "freeze_epochs freezes a pretrained base"),
    ({"freeze_stride": 8}, "freeze_stride keeps the early stages of a pretrained base frozen"),
    ({"architecture": "efficientnet_lite0", "weights": "imagenet", "freeze_stride": 3}, "must be one of 0, 2, 4, 8, 16, 32"),
    ({"architecture": "efficientnet_lite0", "freeze_stride": 8}, "would keep randomly initialised layers frozen"),
    ({"warmup_epochs": 5, "epochs": 5}, "warmup_epochs (5) must be fewer than epochs (5)"),
    ({"finetune_lr_factor": 0.0}, "finetune_lr_factor"),
    ({"weight_decay": -1.0}, "weight_decay must be non-negative"),
    ({"patience": -1}, "patience must be at least 0"),
    ({"keep": "first"}, "keep must be one of best, last"),
    ({"keep": "last", "patience": 2}, 'keep = "last" keeps the last epoch'),
])
def test_bad_recipe_fields_are_refused_in_one_sentence(changes, words):
    with pytest.raises(UserError) as info:
        MemberSpec(**changes)
    assert words in str(info.value)


def test_auto_class_weight_does_not_correct_twice():
    assert MemberSpec().effective_class_weight == "sqrt"
    assert MemberSpec(sampling="balanced").effective_class_weight == "none"
    assert MemberSpec(sampling="sqrt", class_weight="balanced").effective_class_weight == "balanced"


# ----- sampling --------------------------------------------------------------------------
def test_acceptance_gives_the_target_shares():
    labels = np.array([0] * 80 + [1] * 15 + [2] * 5)
    assert sampling_acceptance(labels, 3, "natural") is None
    balanced = sampling_acceptance(labels, 3, "balanced")
    assert balanced.max() == 1.0
    np.testing.assert_allclose(sampled_shares(labels, balanced), [1 / 3] * 3)
    sqrt = sampled_shares(labels, sampling_acceptance(labels, 3, "sqrt"))
    np.testing.assert_allclose(sqrt, np.sqrt([80, 15, 5]) / np.sqrt([80, 15, 5]).sum())
    # a class absent from training is never drawn
    assert sampling_acceptance(np.array([0, 0, 2]), 3, "balanced")[1] == 0.0


@pytest.mark.parametrize("cache", ["memory", "none", "disk"])
def test_balanced_batches_from_an_imbalanced_set(tmp_path, cache):
    from PIL import Image

    from members.data.pipeline import make_dataset

    paths, labels = [], []
    for i in range(60):
        label = 0 if i < 50 else 1
        path = tmp_path / f"{i}.png"
        Image.fromarray(np.full((8, 8, 3), 40 * label + i % 7, np.uint8)).save(path)
        paths.append(str(path))
        labels.append(label)
    acc = sampling_acceptance(np.array(labels), 2, "balanced")
    ds = make_dataset(paths, labels, size=8, batch_size=10, training=True, acceptance=acc, cache=cache,
                      cache_dir=tmp_path / "c", seed=1)
    epochs = []
    for _ in range(3):  # three epochs: each has len(paths) images, about half of them class 1
        epoch = np.concatenate([b[1].numpy() for b in ds])
        assert epoch.size == 60
        epochs.append(epoch)
    assert 0.35 < np.mean([e.mean() for e in epochs]) < 0.65  # 1/6 without rebalancing
    assert not np.array_equal(epochs[1], epochs[2]) and not np.array_equal(epochs[0], epochs[1])  # new draws each epoch


# ----- architecture and heads --------------------------------------------------------------
def test_residual_blocks_add_a_projected_shortcut():
    from members.model.architecture import build_model

    plain = build_model(MemberSpec(input_size=32, depth=3, width=8, convs_per_block=2), 5)
    res = build_model(MemberSpec(input_size=32, depth=3, width=8, convs_per_block=2, block="residual"), 5)
    adds = [layer.name for layer in res.layers if layer.name.endswith("_add")]
    assert adds == ["block1_add", "block2_add", "block3_add"]
    assert not any(layer.name.endswith("_add") for layer in plain.layers)
    # 1x1 projections (8*3... per block, no bias with batch norm) + their batch norms
    extra = sum(c_in * c_out + 4 * c_out for c_in, c_out in ((3, 8), (8, 16), (16, 32)))
    assert res.count_params() - plain.count_params() == extra
    assert res(np.zeros((2, 32, 32, 3), np.float32)).shape == (2, 5)


def test_regression_head_probabilities_and_loss():
    import keras

    from members.model.architecture import ExpectedGradeLoss, build_model

    model = build_model(MemberSpec(input_size=16, depth=2, width=4, head="regression"), 5)
    probs = np.asarray(model(np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 3)).astype("float32")))
    assert probs.shape == (4, 5)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    one_hot = np.eye(5, dtype="float32")[[2, 4]]
    loss = ExpectedGradeLoss("mse")(np.array([0, 4]), one_hot)
    assert float(loss) == pytest.approx(2.0)  # ((2-0)^2 + 0) / 2
    huber = ExpectedGradeLoss("huber")(np.array([0]), one_hot[:1])
    assert float(huber) == pytest.approx(1.5)  # |err| - 0.5 beyond 1
    assert isinstance(keras.losses.deserialize(keras.losses.serialize(ExpectedGradeLoss("huber"))), ExpectedGradeLoss)


def test_score_recovery_inverts_the_head():
    score = np.linspace(-1.5, 5.5, 57)
    cuts = np.array([0.5, 1.5, 2.5, 3.5])
    for scale in (0.3, 1.0):
        np.testing.assert_allclose(recover_score(head_probs(score, cuts, scale), cuts, scale), score, atol=1e-4)
        for mix in (0.2, 0.6):  # the uniform mix is taken out before the inversion
            mixed = head_probs(score, cuts, scale, mix)
            assert mixed.min() >= mix / 5 - 1e-12
            np.testing.assert_allclose(mixed.sum(axis=1), 1.0, atol=1e-12)
            np.testing.assert_allclose(recover_score(mixed, cuts, scale, mix), score, atol=1e-4)


def test_the_uniform_mix_bounds_the_log_loss_of_a_sharp_head_without_moving_any_argmax():
    from members.model.regression import mix_uniform

    rng = np.random.default_rng(5)
    y = rng.choice(5, 400, p=[0.5, 0.08, 0.27, 0.08, 0.07])
    score = y + rng.normal(0, 0.9, 400)  # a noisy member: the narrow grade-1 and grade-3 bands need a sharp scale
    fitted = fit_cuts(score, y, 5)
    cuts = np.array(fitted["cuts"])
    sharp, mixed = head_probs(score, cuts, fitted["scale"]), head_probs(score, cuts, fitted["scale"], fitted["mix"])

    def loss(p):
        return float(-np.mean(np.log(p[np.arange(len(y)), y])))

    assert 0 < fitted["mix"] < 0.95
    assert loss(mixed) < loss(sharp) and loss(mixed) < np.log(5)  # better than a uniform guess
    assert mixed.argmax(axis=1).tolist() == sharp.argmax(axis=1).tolist()
    grades = np.searchsorted(cuts, score, side="right")
    assert np.mean(mixed.argmax(axis=1) == grades) >= 0.95
    for m in (fitted["mix"] - 0.05, fitted["mix"] + 0.05):  # the fitted mix is the log-loss minimum
        assert loss(mix_uniform(sharp, m)) > loss(mixed)
    assert fit_cuts(score, y, 5, mix=False)["mix"] == 0.0


def test_the_regression_head_applies_its_mix_and_a_head_saved_without_one_loads():
    import keras

    from members.model.architecture import RegressionHead, build_model
    from members.model.regression import mix_uniform

    model = build_model(MemberSpec(input_size=16, depth=2, width=4, head="regression"), 5)
    x = np.random.default_rng(1).uniform(0, 255, (3, 16, 16, 3)).astype("float32")
    head = model.get_layer("regression_head")
    assert head.uniform_mix and float(head.mix.numpy()) == 0.0
    before = np.asarray(model(x), np.float64)
    head.mix.assign(0.3)
    np.testing.assert_allclose(np.asarray(model(x)), mix_uniform(before, 0.3), atol=1e-6)
    config = RegressionHead(5).get_config()
    config.pop("uniform_mix")  # as written before the mix existed
    old = RegressionHead.from_config(config)
    old.build((None, 8))
    assert not old.uniform_mix and [w.name for w in old.weights if not w.trainable] == ["cuts", "scale"]
    assert keras.ops.convert_to_numpy(old(np.zeros((2, 8), "float32"))).shape == (2, 5)


def test_fit_cuts_tunes_for_qwk_and_keeps_argmax_on_the_cuts():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 300)
    score = 0.5 * y + rng.normal(0, 0.2, 300)  # a member that under-spreads the grades
    fitted = fit_cuts(score, y, 5)
    assert fitted["tuned"] and fitted["val_qwk_tuned_cuts"] > fitted["val_qwk_default_cuts"] + 0.1
    assert np.all(np.diff(fitted["cuts"]) > 0)
    probs = head_probs(score, np.array(fitted["cuts"]), fitted["scale"])
    grades = np.searchsorted(fitted["cuts"], score, side="right")
    assert np.mean(probs.argmax(axis=1) == grades) >= 0.95
    head = head_probs(score, np.array(fitted["cuts"]), fitted["scale"], fitted["mix"]).argmax(axis=1)
    assert fitted["val_agreement"] == pytest.approx(np.mean(head == grades))  # what the saved head grades
    assert fitted["val_qwk_head"] == pytest.approx(kappa_or_zero(y, head, 5))
    # already right: the prior-matched start is kept untouched
    score = np.arange(5, dtype=float).repeat(3)
    kept = fit_cuts(score, np.arange(5).repeat(3), 5)
    assert not kept["tuned"] and kept["start"] == "prior" and kept["val_qwk_prior_cuts"] == 1.0
    assert np.searchsorted(kept["cuts"], score, side="right").tolist() == np.arange(5).repeat(3).tolist()


def test_prior_matched_cuts_undo_the_label_shift_of_balanced_batches():
    from members.model.cuts import tune_cuts
    from members.model.regression import prior_cuts

    rng = np.random.default_rng(3)
    prior = np.array([0.75, 0.06, 0.12, 0.04, 0.03])
    y = rng.choice(5, 400, p=prior)
    score = 1.6 + 0.6 * y + rng.normal(0, 0.5, 400)  # trained on balanced batches: grade 0 scores ~1.6
    old, _, _ = tune_cuts(score, y, 5, np.arange(4) + 0.5, reach=0.5, min_gap=0.5)  # the grade-scale start
    fitted = fit_cuts(score, y, 5, prior=prior * 1000)
    old_pred = np.searchsorted(old, score, side="right")
    new_pred = np.searchsorted(fitted["cuts"], score, side="right")
    assert fitted["start"] == "prior" and np.mean(old_pred == y) < 0.4
    assert np.mean(new_pred == y) > 0.7 and abs(np.mean(new_pred == 0) - 0.75) < 0.1
    assert fitted["val_qwk_tuned_cuts"] >= fitted["val_qwk_prior_cuts"] > fitted["val_qwk_default_cuts"]
    start = prior_cuts(score, prior)
    assert np.all(np.abs(np.array(fitted["cuts"]) - start) <= 0.5 + 1e-9)  # tuned within half a grade of the start
    assert prior_cuts(np.ones(5), prior) is None  # no spread: no quantiles (the grade scale is the start)
    flat = fit_cuts(np.ones(5), np.array([0, 0, 1, 2, 0]), 5)
    assert flat["start"] == "grade scale" and flat["val_qwk_prior_cuts"] is None


# ----- epochs ----------------------------------------------------------------------------
def _trainer(spec, k=5):
    from members.training.trainer import Trainer

    t = Trainer.__new__(Trainer)
    t.spec, t.k, t.history, t.name, t.log = spec, k, [], "m", quiet
    return t


def test_learning_rate_schedules():
    t = _trainer(MemberSpec(lr=0.1, lr_decay=0.5, epochs=4))
    assert [round(lr, 6) for _, _, lr in t._plan()] == [0.1, 0.05, 0.025, 0.0125]  # the article's decay
    t = _trainer(MemberSpec(lr=0.1, lr_schedule="cosine", warmup_epochs=1, epochs=5))
    lrs = [lr for _, _, lr in t._plan()]
    assert lrs[0] == pytest.approx(0.05)  # warm-up: half way
    assert lrs[1] == pytest.approx(0.1)
    assert lrs[3] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 2 / 4)))
    assert all(a > b for a, b in zip(lrs[1:], lrs[2:])) and lrs[-1] > 0


def test_ties_on_the_monitor_go_to_the_lower_val_loss():
    best = {"val_qwk": 0.0, "val_loss": 1.4}
    assert _better_row("val_qwk", {"val_qwk": 0.0, "val_loss": 1.2}, best)
    assert not _better_row("val_qwk", {"val_qwk": 0.0, "val_loss": 1.5}, best)
    assert not _better_row("val_qwk", {"val_qwk": 0.0, "val_loss": 1.4 - 1e-9}, best)  # equal within 1e-6
    assert _better_row("val_qwk", {"val_qwk": 0.1, "val_loss": 9.0}, best)
    assert _better_row("val_qwk", {"val_qwk": 0.0, "val_loss": 9.0}, None)


def test_chance_and_majority_baseline():
    assert _is_chance({"val_classes_predicted": 1, "val_balanced_accuracy": 0.2}, 5)
    assert _is_chance({"val_classes_predicted": 3, "val_balanced_accuracy": 0.2}, 5)
    assert not _is_chance({"val_classes_predicted": 3, "val_balanced_accuracy": 0.31}, 5)
    # a regression member's epoch (val_auc in its row) is judged by its ranking, not its grades at the fixed cuts
    assert not _is_chance({"val_classes_predicted": 1, "val_balanced_accuracy": 0.2, "val_auc": 0.74}, 5)
    assert _is_chance({"val_classes_predicted": 4, "val_balanced_accuracy": 0.35, "val_auc": 0.52}, 5)
    # no AUC to judge by (one val class: NaN; a row read back after a resume: None): the grade rule
    for auc in (float("nan"), None):
        assert not _is_chance({"val_classes_predicted": 3, "val_balanced_accuracy": 0.31, "val_auc": auc}, 5)
        assert _is_chance({"val_classes_predicted": 1, "val_balanced_accuracy": 0.2, "val_auc": auc}, 5)
    base = majority_baseline(np.array([0, 0, 0, 1, 2]), np.array([0, 1, 1, 0]), 3)
    assert base == {"class": 0, "accuracy": 0.5, "balanced_accuracy": 0.5}


def test_collapse_warning_after_three_epochs_at_one_class():
    lines = []
    watch = CollapseWatch("m", MemberSpec(epochs=5), ["0", "1", "2", "3", "4"], lines.append)
    history = []
    probs = np.tile([0.9, 0.025, 0.025, 0.025, 0.025], (10, 1))
    for epoch in range(1, 5):
        row = {"epoch": epoch, "val_classes_predicted": 1, "val_balanced_accuracy": 0.2}
        history.append(row)
        watch.after_epoch(history, probs)
        assert len(lines) == (0 if epoch < 3 else 1)  # once, at the third epoch
    assert "every val image was predicted as class 0" in lines[0] and "sampling=balanced" in lines[0]


def test_a_regression_member_that_ranks_is_not_warned_about_while_its_grades_sit_at_zero():
    lines = []
    watch = CollapseWatch("r", MemberSpec(epochs=5, head="regression"), ["0", "1", "2", "3", "4"], lines.append)
    history = []
    probs = np.tile([0.9, 0.025, 0.025, 0.025, 0.025], (10, 1))
    for epoch, auc in enumerate((0.5, 0.6, 0.7, 0.75, 0.8), start=1):
        history.append({"epoch": epoch, "val_classes_predicted": 1, "val_balanced_accuracy": 0.2, "val_auc": auc})
        watch.after_epoch(history, probs)
    assert lines == []
    for epoch in range(6, 9):  # then no ranking for three epochs: the warning says so
        history.append({"epoch": epoch, "val_classes_predicted": 2, "val_balanced_accuracy": 0.25, "val_auc": 0.5})
        watch.after_epoch(history, probs)
    assert len(lines) == 1 and "its val AUC stayed at chance (0.500" in lines[0]



def _health(history, val_probs):
    from members.training.collapse import health

    lines = []
    labels = {"train": np.array([0, 0, 0, 1, 2, 3, 4]), "val": np.array([0, 0, 0, 0, 1, 2, 2, 3, 4, 4]),
              "test": np.array([0, 1])}
    results = {"val": {"balanced_accuracy": 0.6, "auc": 0.8, "accuracy": 0.7}, "test": {"accuracy": 0.5}}
    out = health(name="m", spec=MemberSpec(epochs=5), classes=[0, 1, 2, 3, 4], labels=labels,
                 predictions={"val": val_probs, "test": val_probs[:2]}, results=results, history=history,
                 log=lines.append)
    return out, lines


def test_a_collapse_warning_the_kept_weights_overturn_is_said_to_be_overturned():
    """A regression member whose scores drift below the grade scale warns while training; with its
    tuned cuts the kept weights predict several grades: the log and metrics.json say the warning
    does not hold, and the member is kept."""
    at_chance = {"val_classes_predicted": 1, "val_balanced_accuracy": 0.2}
    learned = {"val_classes_predicted": 3, "val_balanced_accuracy": 0.4}
    history = [dict(learned), dict(at_chance), dict(at_chance), dict(at_chance), dict(learned)]
    spread = np.eye(5)[[0, 0, 0, 0, 1, 2, 2, 3, 4, 4]] * 0.9 + 0.02
    out, lines = _health(history, spread)
    assert out["collapsed"] is False
    assert out["collapse"]["epochs_at_chance"] == 3
    assert out["collapse"]["recovered"].startswith("warned while training (3 epochs in a row at chance)")
    assert lines == ["[m] the collapse warning above does not hold for the kept weights: they predict classes "
                     "0, 1, 2, 3, 4 on val (balanced accuracy 0.600 against chance 0.200, AUC 0.800); the member is kept."]
    # two chance epochs apart never made the watch warn: nothing to overturn
    out, lines = _health([at_chance, learned, at_chance, learned, learned], spread)
    assert "recovered" not in out["collapse"] and lines == []
    # kept weights that do predict one class: collapsed, and no "recovered"
    out, lines = _health(history, np.tile([0.9, 0.025, 0.025, 0.025, 0.025], (10, 1)))
    assert out["collapsed"] is True and "recovered" not in out["collapse"]
    assert len(lines) == 1 and "WARNING: collapsed: its val predictions fall into one class (0)" in lines[0]


# ----- end to end --------------------------------------------------------------------------
def test_recipe_member_end_to_end(tmp_path, prepared):
    import keras

    from members.infra.atomic import load_npz
    from members.training.trainer import train_member

    work = tmp_path / "w"
    shutil.copytree(prepared, work)
    spec = load_preset("tiny").replace(
        input_size=16, epochs=2, head="regression", block="residual", convs_per_block=2, optimizer="adamw",
        lr=0.003, lr_schedule="cosine", warmup_epochs=1, sampling="balanced")
    lines = []
    result = train_member(work, spec, name="r", log=lines.append, show_progress=False)
    m = result.metrics
    assert {"collapsed", "collapse", "majority", "below_majority", "regression"} <= set(m)
    assert isinstance(m["collapsed"], bool)
    assert m["majority"]["test"]["accuracy"] == pytest.approx(
        float(np.mean(load_npz(result.member_dir / "test.npz")["labels"] == m["majority"]["test"]["class"])))
    assert m["below_majority"]["test"] == (m["test"]["accuracy"] < m["majority"]["test"]["accuracy"])
    assert len(m["regression"]["cuts"]) == 4 and m["regression"]["scale"] > 0
    assert any("balanced sampling: batches drawn with class shares" in line for line in lines)
    # the saved model carries the tuned cuts: it reproduces val.npz exactly
    model = keras.saving.load_model(result.member_dir / "model.keras", safe_mode=True)
    np.testing.assert_allclose(model.get_layer("regression_head").cuts.numpy(), m["regression"]["cuts"], rtol=1e-6)
    assert float(model.get_layer("regression_head").mix.numpy()) == pytest.approx(m["regression"]["mix"], abs=1e-6)
    saved = json.loads((result.member_dir / "metrics.json").read_text())
    assert saved["regression"] == m["regression"]
    # the member's val QWK (its saved head's most likely grades) is the one the cuts line ends with
    assert m["val"]["qwk"] == pytest.approx(m["regression"]["val_qwk_head"], abs=1e-6)
    if m["regression"]["val_agreement"] < 1:
        assert any(f"so the member's val QWK is {m['val']['qwk']:.3f}" in line for line in lines), lines
    # beside the monitored val_qwk (argmax at the training cuts) the history has the prior-matched QWK
    import pandas as pd

    history = pd.read_csv(result.member_dir / "history.csv")
    assert history["val_qwk_prior_matched"].between(-1, 1).all() and history["val_qwk"].between(-1, 1).all()


def test_the_prior_matched_qwk_of_a_regression_member_ignores_the_label_shift():
    from members.model.regression import prior_matched_qwk

    rng = np.random.default_rng(5)
    prior = np.array([0.7, 0.1, 0.1, 0.05, 0.05])
    y = rng.choice(5, 300, p=prior)
    score = 0.5 * y + rng.normal(0, 0.4, 300)
    cuts = np.arange(4) + 0.5
    k_at = {}
    for shift in (0.0, 1.5):  # 1.5: where class-balanced batches put a natural set's scores
        probs = head_probs(score + shift, cuts, 1.0)
        k_at[shift] = (prior_matched_qwk(probs, y, prior * 900), float(_qwk(y, probs.argmax(axis=1))))
    assert k_at[0.0][0] == pytest.approx(k_at[1.5][0], abs=1e-6) and k_at[0.0][0] > 0.5
    assert k_at[1.5][1] < k_at[1.5][0] - 0.2  # the grade-scale argmax reads the shift as disease
    assert prior_matched_qwk(head_probs(np.ones(10), cuts, 1.0), np.arange(10) % 5, prior) == 0.0  # no spread


def _qwk(y, pred):
    from sklearn.metrics import cohen_kappa_score

    return cohen_kappa_score(y, pred, weights="quadratic", labels=list(range(5)))


def test_early_stopping_and_the_chosen_epoch(tmp_path, prepared):
    from members.training.trainer import train_member

    work = tmp_path / "w"
    shutil.copytree(prepared, work)
    # a learning rate of ~0 and no batch norm: every epoch scores the same, so epoch 1 stays best
    spec = load_preset("tiny").replace(input_size=16, epochs=5, lr=1e-12, batch_norm=False, patience=2, rotation=0.0)
    lines = []
    m = train_member(work, spec, name="es", log=lines.append, show_progress=False).metrics
    assert m["epochs_run"] == 3 and m["best_epoch"] == 1
    assert any("early stop of train 16px after epoch 3" in line for line in lines)


def test_keep_last_keeps_the_end_of_the_schedule(tmp_path, prepared):
    from members.training.trainer import train_member

    work = tmp_path / "w"
    shutil.copytree(prepared, work)
    # as above every epoch scores the same, so keep = "best" would keep epoch 1
    spec = load_preset("tiny").replace(input_size=16, epochs=3, lr=1e-12, batch_norm=False, rotation=0.0, keep="last")
    result = train_member(work, spec, name="last", log=lambda line: None, show_progress=False)
    assert result.metrics["best_epoch"] == 3 and result.metrics["epochs_run"] == 3
    import pandas as pd

    notes = pd.read_csv(result.member_dir / "history.csv")["note"].fillna("").tolist()
    assert notes[-1].endswith("kept: last epoch (keep = last)") and not any("best" in n for n in notes)
    assert all(load_preset(p).keep == "last" and load_preset(p).patience == 0
               for p in ("small", "wide", "deep", "hires", "fundus"))
    assert load_preset("article").keep == "best"  # the article checkpoints its best epoch


def test_tuned_cuts_stay_near_their_prior_matched_start():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 5, 80)
    score = y + rng.normal(0, 0.9, 80)  # a noisy member on a small val set
    fitted = fit_cuts(score, y, 5)
    cuts = np.array(fitted["cuts"])
    start = prior_cuts(score, np.bincount(y, minlength=5))
    assert np.all(np.abs(cuts - start) <= 0.5 + 1e-9)
    assert np.all(np.diff(cuts) >= min(0.5, 0.5 * np.diff(start).min()) - 1e-9)
    assert fitted["val_qwk_tuned_cuts"] >= fitted["val_qwk_prior_cuts"]


def test_kept_weights_a_hair_above_chance_that_do_not_rank_learned_nothing():
    """An IDRiD member predicting grades 0 and 4 at balanced accuracy 0.201 (chance 0.200) and AUC 0.478 had been
    declared recovered and voted; a real one (AUC above 0.55, or clearly above chance) is kept."""
    from members.training.collapse import CHANCE_MARGIN, at_chance_level, health

    assert at_chance_level(0.201, 0.478, 5) and at_chance_level(0.2 + CHANCE_MARGIN, float("nan"), 5)
    assert not at_chance_level(0.201, 0.61, 5) and not at_chance_level(0.3, 0.5, 5)
    labels = {"train": np.array([0, 0, 0, 1, 2, 3, 4]), "val": np.array([0, 0, 0, 0, 1, 2, 2, 3, 4, 4]),
              "test": np.array([0, 1])}
    probs = np.eye(5)[[0, 4, 0, 4, 0, 4, 0, 4, 0, 4]] * 0.9 + 0.02  # two grades, no signal
    lines = []
    out = health(name="m", spec=MemberSpec(epochs=5), classes=[0, 1, 2, 3, 4], labels=labels,
                 predictions={"val": probs, "test": probs[:2]},
                 results={"val": {"balanced_accuracy": 0.201, "auc": 0.478}, "test": {"accuracy": 0.5}},
                 history=[], log=lines.append)
    assert out["collapsed"] is True
    assert out["collapse"]["reason"] == ("its val balanced accuracy 0.201 is at or below chance (not above 1/5 + "
                                         "0.05) and its val AUC 0.478 is not above 0.55")


def test_the_collapse_reason_says_the_chance_rule_is_one_sided():
    """A two-class member at balanced accuracy 0.385 (well below 1/2) with AUC 0.420 is collapsed by the rule
    (not above 1/k + 0.05, AUC not above 0.55); its reason read "at chance (1/2, within 0.05)", which 0.385 is not."""
    from members.training.collapse import judge

    labels = np.array([0] * 6 + [1] * 4)
    probs = np.eye(2)[[0, 1, 1, 0, 1, 0, 0, 1, 0, 0]] * 0.8 + 0.1
    collapsed, out = judge(probs, labels, {"balanced_accuracy": 0.385, "auc": 0.420}, ["healthy", "sick"],
                           judged_on="argmax", spec=None)
    assert collapsed and out["reason"] == ("its val balanced accuracy 0.385 is at or below chance (not above 1/2 + "
                                           "0.05) and its val AUC 0.420 is not above 0.55")
    assert "within" not in out["reason"]
    from ensemble.vote import _collapse_reason  # a member trained before: vote says its reason in today's words

    old = "its val balanced accuracy 0.385 is at chance (1/2, within 0.05) and its val AUC 0.420 near 0.5"
    assert out["reason"] in _collapse_reason({"collapse": {"reason": old}})


def test_on_val_rows_of_one_class_collapse_is_not_judged_either_way():
    """A val split of one class cannot tell a member that learned from one that did not: the kept weights
    predicting grade 4 for every eye were written ``collapsed: false`` with a "recovered" claim. Now nothing is
    claimed: ``collapse.unjudged`` says why and the log warns."""
    at_chance = {"val_classes_predicted": 1, "val_balanced_accuracy": 0.2}
    lines = []
    from members.training.collapse import health

    probs = np.tile([0.02, 0.02, 0.02, 0.02, 0.92], (6, 1))
    out = health(name="m", spec=MemberSpec(epochs=5), classes=[0, 1, 2, 3, 4],
                 labels={"train": np.array([0, 1, 2, 3, 4]), "val": np.zeros(6, int), "test": np.array([0, 1])},
                 predictions={"val": probs, "test": probs[:2]},
                 results={"val": {"balanced_accuracy": 0.0, "auc": float("nan")}, "test": {"accuracy": 0.5}},
                 history=[dict(at_chance)] * 4, log=lines.append)
    assert out["collapsed"] is False and "recovered" not in out["collapse"] and "reason" not in out["collapse"]
    assert out["collapse"]["unjudged"].startswith("the rows that judge collapse hold one class (0)")
    assert lines == [f"[m] WARNING: {out['collapse']['unjudged']}"]


def test_k_fold_and_plain_members_write_the_same_collapse_keys():
    """A script reading ``collapse.val_balanced_accuracy`` got a KeyError on k-fold members (their keys were
    ``oof_balanced_accuracy``, ``predicted_classes``, no ``advice``): both kinds go through one judge."""
    from members.training.collapse import judge

    labels = np.array([0, 0, 1, 1, 2, 2])
    flat = np.tile([0.8, 0.1, 0.1], (6, 1))
    scores = {"balanced_accuracy": 1 / 3, "auc": 0.5}
    plain = judge(flat, labels, scores, [0, 1, 2], judged_on="val rows", spec=MemberSpec(), epochs_at_chance=2)
    folded = judge(flat, labels, scores, [0, 1, 2], judged_on="out-of-fold rows", rows="out-of-fold",
                   spec=MemberSpec(), epochs_at_chance=5)
    assert plain[0] is folded[0] is True and set(plain[1]) == set(folded[1])
    assert {"val_predicted_counts", "val_balanced_accuracy", "val_auc", "chance", "reason", "advice"} <= set(plain[1])
    assert folded[1]["val_predicted_counts"] == [6, 0, 0]
    assert folded[1]["reason"] == "its out-of-fold predictions fall into one class (0)"
    assert plain[1]["reason"] == "its val predictions fall into one class (0)"
