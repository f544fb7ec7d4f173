"""vote on out-of-fold rows (ensemble/crossfit.py oof_protocol): k-fold members fit and choose on every train+val row."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ensemble.combiners import load_combiner, make_combiner
from ensemble.crossfit import oof_protocol, stratified_folds
from ensemble.member_set import load_members
from ensemble.vote import run_vote
from members.infra.atomic import load_npz, save_npz
from tests.helpers import one_sentence_error, run_cli
from tests.test_vote import LABELS, SPLIT, _probs, make_workdir

POOL = np.flatnonzero(np.isin(np.array(SPLIT), ["train", "val"]))  # 40 train+val rows


def add_oof(root: Path, name: str, skill: float, seed: int) -> np.ndarray:
    """Give member ``name`` an oof.npz (2 folds) and mark it a k-fold member; returns its OOF probabilities."""
    folder = root / "members" / name
    fingerprint = str(load_npz(folder / "val.npz")["fingerprint"])
    probs = _probs(LABELS[POOL], skill, seed)
    save_npz(folder / "oof.npz", probs=probs, row_ids=POOL.astype(np.int64), fold=(POOL % 2).astype(np.int64),
             fingerprint=np.array(fingerprint))
    metrics = json.loads((folder / "metrics.json").read_text())
    (folder / "metrics.json").write_text(json.dumps({**metrics, "folds": 2}))
    for i in range(2):  # its copies, which a complete k-fold member holds (guard.missing_files)
        (folder / "folds" / str(i)).mkdir(parents=True, exist_ok=True)
        for file in ("metrics.json", "model.keras"):
            (folder / "folds" / str(i) / file).write_text("{}")
    return probs


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    # On val alone "a" looks best; on all 40 out-of-fold rows "b" is.
    return make_workdir(tmp_path, {"a": (0.9, 0.1), "b": (0.1, 0.7), "c": (0.05, 0.6)}, incomplete=None)


def test_vote_on_oof_rows_fits_and_chooses_on_every_train_val_row(workdir: Path, capsys) -> None:
    oof = {name: add_oof(workdir, name, skill, seed) for name, skill, seed in (("a", 0.0, 1), ("b", 0.8, 2), ("c", 0.4, 3))}
    report = run_vote(workdir, methods=["soft", "stack"], n_boot=20)
    assert report["protocol"] == {"name": "oof", "rows": 40}
    assert json.loads((workdir / "ensemble" / "report.json").read_text())["protocol"] == {"name": "oof", "rows": 40}
    assert report["best_single"] == "b"  # chosen on the OOF rows, not on val (where "a" leads)
    P = np.stack([oof[n] for n in ("a", "b", "c")])
    ms = load_members(workdir)
    saved = load_combiner(workdir / "ensemble" / "combiners" / "stack.json")
    fresh = make_combiner("stack").fit(P, LABELS[POOL])
    np.testing.assert_allclose(saved.predict_proba(ms.test_probs), fresh.predict_proba(ms.test_probs), atol=1e-6)
    assert "mixed" not in capsys.readouterr().err
    md = (workdir / "ensemble" / "report.md").read_text()
    assert "Protocol: combiners fitted and models chosen on out-of-fold predictions (40 rows)" in md
    assert "out-of-fold (train+val) rows: 40" in md and "val rows: 40" not in md
    assert report["selection_metric"].endswith("on the out-of-fold train+val rows")
    assert "## Out-of-fold rows: every train+val row" in md and "## Validation set" not in md
    assert "chosen on val" not in md


def test_oof_selection_scores_are_cross_fitted_not_in_sample(workdir: Path) -> None:
    for name, skill, seed in (("a", 0.3, 1), ("b", 0.3, 2), ("c", 0.3, 3)):
        add_oof(workdir, name, skill, seed)
    ms, protocol = oof_protocol(workdir, load_members(workdir))
    assert protocol.name == "oof" and ms.val_probs.shape == (3, 40, 5) and ms.val_row_ids.tolist() == POOL.tolist()
    report = run_vote(workdir, methods=["stack"], n_boot=20)
    in_sample = make_combiner("stack").fit(ms.val_probs, ms.val_labels).predict_proba(ms.val_probs)
    from members.scoring import score

    optimistic = score(ms.val_labels, in_sample)["log_loss"]
    assert report["val"]["ensembles"]["stack"]["log_loss"] > optimistic  # out-of-fold scores are not the in-sample ones


def test_mixed_workdir_falls_back_to_val_and_says_so(workdir: Path, capsys) -> None:
    add_oof(workdir, "a", 0.5, 1)
    add_oof(workdir, "b", 0.5, 2)
    report = run_vote(workdir, methods=["soft"], n_boot=20)
    assert report["protocol"] == {"name": "val", "rows": 20}
    err = capsys.readouterr().err
    assert "mixed workdir" in err and "c does not" in err
    assert "c does not" in report["protocol_note"] and "--folds" in report["protocol_note"]
    assert "mixed workdir" in (workdir / "ensemble" / "report.md").read_text()


def test_an_oof_file_of_another_split_is_refused_in_one_sentence(workdir: Path) -> None:
    for name, seed in (("a", 1), ("b", 2), ("c", 3)):
        add_oof(workdir, name, 0.5, seed)
    path = workdir / "members" / "b" / "oof.npz"
    data = load_npz(path)
    save_npz(path, **{**data, "row_ids": data["row_ids"][::-1].copy()})
    code, _, err = run_cli("vote", "--workdir", workdir, "--bootstrap", 10)
    one_sentence_error(code, err, "'b'", "oof.npz", "row_ids")


def test_calibration_and_referable_threshold_use_the_oof_rows(workdir: Path) -> None:
    for name, skill, seed in (("a", 0.0, 1), ("b", 0.8, 2), ("c", 0.4, 3)):
        add_oof(workdir, name, skill, seed)
    report = run_vote(workdir, methods=["soft"], thresholds="off", calibrate="temperature", n_boot=20)
    assert report["calibration"]["fitted_on"] == "the out-of-fold train+val rows (40 rows); never test"
    assert report["referable"]["chosen_on"].startswith("the out-of-fold train+val rows")


def test_the_bagging_gain_is_shown_per_k_fold_member(workdir: Path) -> None:
    from ensemble import stats

    for name, seed in (("a", 1), ("b", 2), ("c", 3)):
        add_oof(workdir, name, 0.5, seed)
    folder = workdir / "members" / "b"
    test = load_npz(folder / "test.npz")
    copy = _probs(test["labels"], 0.2, seed=9)  # a weaker single-fold copy than the K-fold average
    (folder / "folds" / "0").mkdir(parents=True, exist_ok=True)
    save_npz(folder / "folds" / "0" / "test.npz", **{**test, "probs": copy})
    report = run_vote(workdir, methods=["soft"], n_boot=50)
    assert list(report["bagging"]) == ["b"]  # only members with a copy on disk
    b = report["bagging"]["b"]
    indices = stats.bootstrap_indices(len(test["labels"]), 50, 0, stratify=test["labels"])
    want = stats.bootstrap_difference(test["labels"], (test["probs"], test["probs"].argmax(1)), (copy, copy.argmax(1)),
                                      indices=indices)
    assert b["folds"] == 2 and b["difference"]["qwk"]["value"] == pytest.approx(want["qwk"]["value"])
    assert b["difference"]["qwk"]["ci"] == pytest.approx(want["qwk"]["ci"])
    assert b["single_fold"]["accuracy"]["value"] == pytest.approx(float(np.mean(copy.argmax(1) == test["labels"])))
    assert "## Bagging: the K-fold average against a single-fold copy (test)" in (
        workdir / "ensemble" / "report.md").read_text()


def test_stratified_folds_takes_a_seed_or_a_generator():
    y = np.array([0] * 7 + [1] * 5 + [2] * 3)
    folds = stratified_folds(y, 3, 4)
    assert np.array_equal(folds, stratified_folds(y, 3, np.random.default_rng(4)))
    assert np.bincount(folds).tolist() == [5, 5, 5]
    assert all(np.bincount(folds[y == c], minlength=3).max() - np.bincount(folds[y == c], minlength=3).min() <= 1
               for c in range(3))


def test_the_mixed_workdir_note_does_not_ask_to_retrain_an_imported_member(workdir: Path, capsys) -> None:
    """An imported member cannot be trained with --folds K; the note said to."""
    add_oof(workdir, "a", 0.5, 1)
    add_oof(workdir, "b", 0.5, 2)
    path = workdir / "members" / "c" / "metrics.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "imported": {"kind": "probabilities"}}))
    report = run_vote(workdir, methods=["soft"], n_boot=20)
    assert report["protocol_note"].endswith("c does not, so the combiners are fitted and the models chosen on the "
                                            "val split (20 rows); vote only the k-fold members with --members to use "
                                            "every train+val row")


def test_an_oof_report_names_the_out_of_fold_rows_not_val(workdir: Path) -> None:
    """With every member k-fold, thresholds, the baseline and the referable operating points are chosen on the
    out-of-fold rows; the report's columns and sentences said "val"."""
    for name, skill, seed in (("a", 0.4, 1), ("b", 0.4, 2), ("c", 0.4, 3)):
        add_oof(workdir, name, skill, seed)
    report = run_vote(workdir, methods=["soft"], n_boot=20)
    md = (workdir / "ensemble" / "report.md").read_text()
    assert report["protocol"]["name"] == "oof"
    assert "| out-of-fold sensitivity | out-of-fold specificity |" in md and "| val sensitivity" not in md
    assert "Baseline: always predict the majority class of out-of-fold rows" in md
    assert "thresholds tuned on the out-of-fold train+val rows for QWK" in md
