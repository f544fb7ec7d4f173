"""k-fold members (members/training/folds.py): the out-of-fold property, groups, the bagged test average, resume, predict."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from members.infra.atomic import load_npz, read_json
from members.infra.errors import UserError
from members.data.dataset import load_dataset
from members.training.folds import assign_folds, pool_folds, train_folded
from members.model.spec import load_preset
from tests.conftest import quiet

SPEC = load_preset("tiny").replace(input_size=16, epochs=1)


@pytest.fixture(scope="module")
def folded(tmp_path_factory, prepared):
    """``prepared`` with one 2-fold member ``cv``, and the image paths each copy trained on."""
    from members.training import trainer as training

    work = tmp_path_factory.mktemp("folded") / "w"
    shutil.copytree(prepared, work)
    seen: dict[str, set[str]] = {}
    original = training.Trainer._dataset

    def spy(self, split, size, *, training=False, subset=None, seed_offset=0):
        if training:
            paths = self.paths[split] if subset is None else [self.paths[split][i] for i in subset]
            seen.setdefault(self.name, set()).update(paths)
        return original(self, split, size, training=training, subset=subset, seed_offset=seed_offset)

    mp = pytest.MonkeyPatch()
    mp.setattr(training.Trainer, "_dataset", spy)
    try:
        result = train_folded(work, SPEC, name="cv", k=2, preset="tiny", jobs=1, log=quiet)
    finally:
        mp.undo()
    return work, result, seen


def _split(work):
    return pd.read_csv(work / "split.csv", keep_default_na=False)


@pytest.mark.parametrize("k", [2, 3])
def test_folds_are_stratified_seeded_and_cover_every_row(k):
    labels = np.repeat(np.arange(4), [9, 7, 5, 3])
    folds = assign_folds(labels, k, seed=1)
    assert sorted(set(folds.tolist())) == list(range(k))
    for c in range(4):
        counts = np.bincount(folds[labels == c], minlength=k)
        assert counts.max() - counts.min() <= 1, (c, counts)
    assert np.array_equal(folds, assign_folds(labels, k, seed=1))
    assert not np.array_equal(folds, assign_folds(labels, k, seed=2))


def test_groups_never_span_two_folds():
    rng = np.random.default_rng(0)
    groups = np.repeat([f"p{i}" for i in range(30)], 2)
    labels = np.repeat(rng.integers(0, 3, 30), 2)
    folds = assign_folds(labels, 3, groups=groups, seed=0)
    for g in np.unique(groups):
        assert len(set(folds[groups == g].tolist())) == 1, g
    assert sorted(set(folds.tolist())) == [0, 1, 2]


@pytest.mark.parametrize("k", [1, 21, 2.5, True])
def test_bad_fold_counts_are_refused(k):
    with pytest.raises(UserError, match="--folds must be a whole number from 2 to 20"):
        assign_folds(np.array([0, 1, 0, 1]), k)


def test_more_folds_than_groups_is_refused():
    with pytest.raises(UserError, match="3 folds need at least 3 patient groups .* got 2"):
        assign_folds(np.array([0, 0, 1, 1]), 3, groups=np.array(["a", "a", "b", "b"]))


def test_no_row_is_predicted_by_a_copy_that_trained_on_it(folded):
    work, result, seen = folded
    oof = load_npz(work / "members" / "cv" / "oof.npz")
    assert set(oof) == {"probs", "row_ids", "fold", "fingerprint"}
    split = _split(work)
    pool = split[split["split"].isin(["train", "val"])]
    assert oof["row_ids"].tolist() == pool.index.tolist()  # every train+val row, once, in split.csv order
    assert oof["probs"].shape == (len(pool), 5)
    np.testing.assert_allclose(oof["probs"].sum(axis=1), 1.0, atol=1e-5)
    root = read_json(work / "dataset.json")["image_root"]
    for i in range(2):
        trained_on = seen[f"cv/fold{i}"]
        predicted = {f"{root}/{p}" for p in split.loc[oof["row_ids"][oof["fold"] == i], "path"]}
        assert predicted and not predicted & trained_on  # the copy that predicted a row never trained on it
        assert len(trained_on | predicted) == len(pool)  # ... and trained on every other train+val row
        held = load_npz(work / "members" / "cv" / "folds" / str(i) / "val.npz")
        assert np.array_equal(held["row_ids"], oof["row_ids"][oof["fold"] == i])
        np.testing.assert_allclose(held["probs"], oof["probs"][oof["fold"] == i], atol=1e-6)


def test_patients_never_span_two_folds_of_the_member(folded):
    work, _, _ = folded
    oof = load_npz(work / "members" / "cv" / "oof.npz")
    groups = _split(work).loc[oof["row_ids"], "group"].to_numpy()
    assert len(set(groups)) < len(groups)  # the demo set has both eyes of each patient
    for g in set(groups):
        assert len(set(oof["fold"][groups == g].tolist())) == 1, g


def test_test_is_the_mean_of_the_copies_and_val_is_the_val_rows_of_oof(folded):
    work, result, _ = folded
    member = work / "members" / "cv"
    test = load_npz(member / "test.npz")
    copies = [load_npz(member / "folds" / str(i) / "test.npz")["probs"].astype(np.float64) for i in range(2)]
    mean = np.mean(copies, axis=0)
    np.testing.assert_allclose(test["probs"], mean / mean.sum(axis=1, keepdims=True), atol=1e-6)
    oof, val = load_npz(member / "oof.npz"), load_npz(member / "val.npz")
    split = _split(work)
    assert val["row_ids"].tolist() == split.index[split["split"] == "val"].tolist()
    np.testing.assert_allclose(val["probs"], oof["probs"][np.isin(oof["row_ids"], val["row_ids"])], atol=1e-6)
    m = read_json(member / "metrics.json")
    assert m == result.metrics and m["folds"] == 2 and len(m["fold_scores"]) == 2
    assert m["oof_rows"] == len(oof["row_ids"]) and set(m["single_fold_test"]) >= {"accuracy", "qwk"}
    assert m["single_fold_test"] == read_json(member / "folds" / "0" / "metrics.json")["test"]


def test_a_killed_fold_resumes_alone_and_a_finished_fold_is_never_retrained(folded, tmp_path, monkeypatch):
    from members.training import trainer as training

    work = tmp_path / "w"
    shutil.copytree(folded[0], work)
    member = work / "members" / "cv"
    (member / "metrics.json").unlink()  # killed after copy 0, during copy 1
    (member / "folds" / "1" / "metrics.json").unlink()
    before = (member / "folds" / "0" / "model.keras").stat().st_mtime_ns
    trained = []
    original = training.Trainer.run
    monkeypatch.setattr(training.Trainer, "run", lambda self: (trained.append(self.name), original(self))[1])
    result = train_folded(work, SPEC, name="cv", k=2, preset="tiny", log=quiet)
    assert trained == ["cv/fold1"]
    assert (member / "folds" / "0" / "model.keras").stat().st_mtime_ns == before
    assert result.metrics["folds"] == 2 and (member / "metrics.json").exists()
    trained.clear()
    train_folded(work, SPEC, name="cv", k=2, preset="tiny", log=quiet)  # complete: kept
    assert trained == []


def test_another_fold_plan_drops_the_old_folds_and_makes_the_member_incomplete(folded, tmp_path):
    from members.training.folds import _start

    work = tmp_path / "w"
    shutil.copytree(folded[0], work)
    member = work / "members" / "cv"
    data = load_dataset(work)
    _start(data, "cv", SPEC, "tiny", 2, quiet)  # the same plan keeps the finished copies
    assert (member / "folds" / "0" / "metrics.json").exists() and not (member / "metrics.json").exists()
    _start(data, "cv", SPEC, "tiny", 3, quiet)
    assert not (member / "folds").exists() and not (member / "oof.npz").exists()
    pool, folds = pool_folds(data, 3, SPEC.seed)
    assert read_json(member / "folds.json")["folds"] == 3 and read_json(member / "folds.json")["rows"] == len(pool)


def test_a_plain_run_on_a_bagged_member_is_another_spec(folded, tmp_path):
    """train-member without --folds on a complete k-fold member: refused naming folds; --force makes it plain."""
    from members.training.trainer import train_member

    work = tmp_path / "w"
    shutil.copytree(folded[0], work)
    with pytest.raises(UserError, match=r"Member 'cv' .* already complete with another spec \(folds 2 → none\)"):
        train_member(work, SPEC, name="cv", preset="tiny", log=quiet, show_progress=False)
    assert read_json(work / "members" / "cv" / "metrics.json")["folds"] == 2
    with pytest.raises(UserError, match=r"already complete with another spec \(epochs 1 → 2\).* or pass --force"):
        train_folded(work, SPEC.replace(epochs=2), name="cv", k=2, preset="tiny", log=quiet)
    result = train_member(work, SPEC, name="cv", preset="tiny", log=quiet, show_progress=False, force=True)
    assert "folds" not in result.metrics and "folds" not in read_json(work / "members" / "cv" / "metrics.json")


def test_predict_averages_the_copies_over_one_decode(folded):
    from ensemble.inference import ensemble_member_probs, load_member

    work, _, _ = folded
    member = work / "members" / "cv"
    split = _split(work)
    root = read_json(work / "dataset.json")["image_root"]
    paths = [f"{root}/{p}" for p in split.loc[split["split"] == "test", "path"]]
    bagged = load_member(member)
    assert bagged.name == "cv" and len(bagged.model.models) == 2
    copies = [load_member(member / "folds" / str(i)) for i in range(2)]
    P, kept = ensemble_member_probs([bagged, *copies], paths)
    assert kept.tolist() == list(range(len(paths)))
    np.testing.assert_allclose(P[0], P[1:].mean(axis=0), atol=1e-5)
    cached = load_npz(member / "test.npz")["probs"]
    np.testing.assert_allclose(P[0], cached, atol=2e-2)  # the training pipeline's pixels, within resize noise


def test_train_members_with_folds_runs_one_task_per_fold(workdir_copy):
    from members.training.parallel import train_members

    outcome = train_members(workdir_copy, ["tiny"], names=["b"], jobs=2, backend="loky", folds=2,
                            overrides={"input_size": 16}, log=quiet, console=Console(file=io.StringIO()))
    assert not outcome.failed
    member = workdir_copy / "members" / "b"
    metrics = read_json(member / "metrics.json")
    assert metrics["folds"] == 2
    split = _split(workdir_copy)  # the majority baseline, as for a trained member: the pool's most frequent class
    pool = split.loc[split["split"] != "test", "label"].to_numpy()
    top = int(np.bincount(pool).argmax())
    test = split.loc[split["split"] == "test", "label"].to_numpy()
    assert metrics["majority"]["test"]["class"] == top
    assert metrics["majority"]["test"]["accuracy"] == pytest.approx(float(np.mean(test == top)))
    assert metrics["below_majority"]["test"] == (metrics["test"]["accuracy"] < metrics["majority"]["test"]["accuracy"])
    logs = "".join((member / "folds" / str(i) / "train.log").read_text() for i in range(2))
    assert "[b/fold1] started (preset tiny, seed 1)" in logs  # copy i trains with the member's seed + i
    assert all((member / "folds" / str(i) / "train.log").exists() for i in range(2))
    again = train_members(workdir_copy, ["tiny"], names=["b"], backend="sequential", folds=2,
                          overrides={"input_size": 16}, log=quiet, console=Console(file=io.StringIO()))
    assert again.results[0].kept


def test_explain_maps_a_k_fold_member_as_the_mean_of_its_copies(folded):
    from ensemble.explain import _cam, _copies, _forward, _unit, gradcam
    from ensemble.inference import image_batches, load_member, member_variant

    work, _, _ = folded
    bagged = load_member(work / "members" / "cv")
    split = _split(work)
    root = read_json(work / "dataset.json")["image_root"]
    paths = [f"{root}/{p}" for p in split.loc[split["split"] == "test", "path"]][:3]
    _, (images,) = next(iter(image_batches(paths, [member_variant(bagged)], batch_size=3)))
    copies = _copies(bagged.model)
    forwards = [_forward(c) for c in copies]
    grades = np.array([0, 1, 2])
    cam = _cam(bagged.model, images, grades, forwards)
    assert cam.shape == (3, 16, 16) and np.isfinite(cam).all() and cam.min() >= 0
    each = [_unit(gradcam(c, images, grades, forward=f)) for c, f in zip(copies, forwards)]
    np.testing.assert_allclose(cam, np.mean(each, axis=0), atol=1e-6)


def test_a_regression_member_averages_its_copies_scores_not_their_probabilities():
    from members.model.regression import head_probs
    from members.training.folds import averaged_head

    cuts = [0.5, 1.5, 2.5, 3.5]
    copies = [{"cuts": cuts, "scale": 0.1}, {"cuts": cuts, "scale": 0.1}]
    outputs = [head_probs(np.array([1.0, 0.0]), np.array(cuts), 0.1), head_probs(np.array([3.0, 0.0]), np.array(cuts), 0.1)]
    member = {"copies": copies, "cuts": cuts, "scale": 0.1}
    probs = averaged_head(outputs, member)
    assert probs.argmax(axis=1).tolist() == [2, 0]  # scores 1 and 3 average to 2
    assert np.mean(outputs, axis=0)[0].argmax() in (1, 3)  # the probability mean splits between 1 and 3
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    shifted = averaged_head(outputs, {**member, "cuts": [0.5, 2.5, 3.0, 3.5]})  # the member's own cuts decide
    assert shifted.argmax(axis=1).tolist() == [1, 0]


def test_copies_scoring_on_different_scales_are_put_on_one_scale_before_pooling_and_averaging():
    from members.model.regression import fit_cuts, head_probs, recover_score
    from members.training.folds import _regression_member, averaged_head

    rng = np.random.default_rng(0)
    k, cuts = 5, np.array([0.5, 1.5, 2.5, 3.5])
    labels = np.repeat(np.arange(k), 12)
    folds = np.tile([0, 1], len(labels) // 2)  # each fold holds six rows of every grade
    truth = labels + rng.normal(0, 0.2, len(labels))
    test_truth = np.arange(k, dtype=np.float64)
    shift = [(0.0, 1.0), (1.5, 0.5)]  # copy 1 scores every eye 1.5 higher and half as spread
    held = [head_probs(a + b * truth[folds == i], cuts, 1.0) for i, (a, b) in enumerate(shift)]
    tests = [head_probs(a + b * test_truth, cuts, 1.0) for a, b in shift]
    copies = [{"head": "regression", "regression": {"cuts": cuts.tolist(), "scale": 1.0}}] * 2
    oof, test, regression = _regression_member(copies, held, tests, folds, labels, k)
    c0, c1 = regression["copies"]
    assert c1["centre"] - c0["centre"] == pytest.approx(1.5 + (0.5 - 1.0) * np.mean(truth[folds == 0]), abs=0.3)
    assert c1["spread"] / c0["spread"] == pytest.approx(0.5, rel=0.15)
    assert regression["centre"] == pytest.approx((c0["centre"] + c1["centre"]) / 2)
    on_common = [recover_score(p, cuts, 1.0) for p in tests]
    on_common = [regression["centre"] + regression["spread"] * (s - c["centre"]) / c["spread"]
                 for s, c in zip(on_common, (c0, c1))]
    np.testing.assert_allclose(on_common[0], on_common[1], atol=0.25)  # one eye, one score, whichever copy
    assert oof.argmax(axis=1).tolist() == labels.tolist()  # the pooled cuts fit both copies' rows
    assert test.argmax(axis=1).tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(test, averaged_head(tests, regression), atol=1e-12)
    raw = np.empty(len(labels))  # pooled as they come, copy 1's grade-0 eyes sit among copy 0's grade-1 and -2 eyes
    for i, p in enumerate(held):
        raw[folds == i] = recover_score(p, cuts, 1.0)
    fitted = fit_cuts(raw, labels, k)
    assert np.mean(np.searchsorted(fitted["cuts"], raw, side="right") == labels) < 0.9  # common scale: 1.0


def test_a_regression_k_fold_member_cuts_the_mean_score_with_cuts_tuned_out_of_fold(prepared, tmp_path):
    from ensemble.inference import ensemble_member_probs, load_member
    from members.training.folds import averaged_head

    work = tmp_path / "w"
    shutil.copytree(prepared, work)
    spec = SPEC.replace(head="regression")
    result = train_folded(work, spec, name="reg", k=2, preset="tiny", jobs=1, log=quiet)
    member = work / "members" / "reg"
    regression = result.metrics["regression"]
    assert regression["averaging"] == "scores" and len(regression["copies"]) == 2
    assert regression["spread"] > 0 and all(c["spread"] > 0 and np.isfinite(c["centre"]) for c in regression["copies"])
    for i, head in enumerate(regression["copies"]):
        assert head["cuts"] == read_json(member / "folds" / str(i) / "metrics.json")["regression"]["cuts"]
    assert len(regression["cuts"]) == 4 and regression["start"] == "prior" and np.all(np.diff(regression["cuts"]) >= 0)
    copies = [load_npz(member / "folds" / str(i) / "test.npz")["probs"].astype(np.float64) for i in range(2)]
    np.testing.assert_allclose(load_npz(member / "test.npz")["probs"], averaged_head(copies, regression), atol=1e-5)
    assert "scores" in result.metrics["protocol"]
    split = _split(work)
    root = read_json(work / "dataset.json")["image_root"]
    paths = [f"{root}/{p}" for p in split.loc[split["split"] == "test", "path"]]
    bagged = load_member(member)
    each = [load_member(member / "folds" / str(i)) for i in range(2)]
    P, _ = ensemble_member_probs([bagged, *each], paths)
    np.testing.assert_allclose(P[0], averaged_head([P[1], P[2]], regression), atol=1e-5)  # predict = assemble


def test_train_member_refuses_jobs_and_backend_without_folds(prepared, tmp_path):
    from tests.helpers import one_sentence_error, run_cli

    for option in (["--jobs", "0"], ["--backend", "dask"]):
        code, _out, err = run_cli("train-member", "--workdir", prepared, "--preset", "tiny", "--name", "j", *option)
        one_sentence_error(code, err, f"{option[0]} sets how the fold copies of a k-fold member train and needs "
                                      "--folds K; to train several members at once, use train-members --jobs N.")
    assert not (prepared / "members" / "j").exists()


def test_a_modified_copy_names_its_k_fold_member(folded, tmp_path):
    """A copy's model.keras swapped for another's said "retrain the member '0'": the member is 'cv'."""
    from ensemble.inference import load_member
    from members.infra.errors import UserError

    work = tmp_path / "w"
    shutil.copytree(folded[0] / "members" / "cv", work / "cv")
    shutil.copy2(work / "cv" / "folds" / "1" / "model.keras", work / "cv" / "folds" / "0" / "model.keras")
    with pytest.raises(UserError) as err:
        load_member(work / "cv")
    assert "folds/0/model.keras was modified after training" in str(err.value)
    assert str(err.value).endswith("retrain the member 'cv'.")


def test_a_k_fold_member_has_curves_and_a_fold_column_in_its_history(folded):
    """DESIGN lists curves.png for every member, and history.csv held K rows per epoch with the fold only in the
    free-text note: the member now has a curves.png of its copies and a ``fold`` column."""
    from PIL import Image

    work, _, _ = folded
    member = work / "members" / "cv"
    with Image.open(member / "curves.png") as im:
        assert im.format == "PNG" and im.size[0] > 300
    history = pd.read_csv(member / "history.csv")
    assert list(history.columns)[-1] == "fold" and sorted(history["fold"].unique().tolist()) == [0, 1]
    for i in (0, 1):
        own = pd.read_csv(member / "folds" / str(i) / "history.csv")
        assert (history["fold"] == i).sum() == len(own)


def test_force_replaces_a_complete_member_by_a_k_fold_one_only_once_it_is_complete(folded, tmp_path, monkeypatch,
                                                                                   capfd):
    """--force with --folds was refused ("cannot be combined yet"). The new k-fold member trains in a hidden folder
    beside the complete one; a run that fails leaves the complete member exactly as it was (and its finished
    copies for the next run); a complete run swaps it in whole, under the member's own name."""
    from members.training import folds as folding

    work = tmp_path / "w"
    shutil.copytree(folded[0], work)
    member = work / "members" / "cv"
    before = {p.relative_to(member): p.read_bytes() for p in member.rglob("*") if p.is_file()}
    real_assemble = folding.assemble

    def dies(*args, **kwargs):
        raise UserError("the disk filled up")

    monkeypatch.setattr(folding, "assemble", dies)
    first = []
    with pytest.raises(UserError, match=r"did not finish: .*the disk filled up.* The complete member 'cv' is left as it"):
        train_folded(work, SPEC.replace(epochs=2), name="cv", k=2, preset="tiny", log=first.append, force=True)
    lines = first + capfd.readouterr().err.splitlines()  # the copies' own lines (epochs, cuts) name the member too
    assert any(line.startswith("[cv/fold1] ") and "done" not in line for line in lines), lines
    assert not any(line.startswith("[.cv") for line in lines), lines
    assert {p.relative_to(member): p.read_bytes() for p in member.rglob("*") if p.is_file()} == before
    staged = work / "members" / folding.staging_name("cv")
    assert (staged / "folds" / "0" / "metrics.json").exists()  # the new copies, kept for the next run
    monkeypatch.setattr(folding, "assemble", real_assemble)
    lines = []
    result = train_folded(work, SPEC.replace(epochs=2), name="cv", k=2, preset="tiny", log=lines.append, force=True)
    assert "[cv] 2 of 2 folds already complete: kept" in lines  # the log names the member, not the hidden folder
    assert not any(line.startswith("[.cv.replacement-folds]") for line in lines)
    metrics = read_json(member / "metrics.json")
    assert metrics["name"] == "cv" and result.metrics["name"] == "cv" and metrics["epochs_run"] == 4
    assert not staged.exists() and not (member / ".lock").exists()
    assert sorted(p.name for p in (work / "members").iterdir()) == ["cv"]  # no hidden folder left beside it
    from ensemble.inference import load_member

    assert load_member(member).name == "cv" and len(load_member(member).model.models) == 2


def test_a_member_finished_by_another_run_meanwhile_is_not_overwritten(folded, tmp_path):
    """run_folded decides again under the lock: a plain member completed by another run after the caller looked
    was turned into a k-fold member without --force."""
    from members.training.folds import run_folded
    from members.training.parallel import PlannedMember
    from members.training.trainer import train_member

    work = tmp_path / "w"
    shutil.copytree(folded[0], work)
    train_member(work, SPEC, name="r", preset="tiny", log=quiet, show_progress=False)  # "meanwhile"
    before = (work / "members" / "r" / "metrics.json").read_bytes()
    [run] = run_folded(work, [PlannedMember("r", "tiny", SPEC)], 2, log=quiet)
    assert run.error and "already complete with another spec (folds none → 2" in run.error.replace("None", "none")
    assert (work / "members" / "r" / "metrics.json").read_bytes() == before


def test_staging_leftovers_are_never_built_on_and_a_finished_replacement_is_swapped_in(folded, tmp_path):
    """A kill right after the swap's exchange left the old member in the hidden folder, and the next forced run
    trained on top of it (a k-fold member carrying a plain model.keras); a replacement finished but not yet swapped
    in is swapped in, not trained again. A member named 'cv.old-1' is no set-aside folder of 'cv'."""
    from members.infra.transaction import recover_dir
    from members.training import folds as folding

    work = tmp_path / "w"
    shutil.copytree(folded[0], work)
    members = work / "members"
    staged = members / folding.staging_name("cv")
    shutil.copytree(members / "cv", staged)  # a complete member of another spec (epochs 1) left in the staging
    (staged / "model.keras").write_bytes(b"a plain member's model")
    lines = []
    train_folded(work, SPEC.replace(epochs=2), name="cv", k=2, preset="tiny", log=lines.append, force=True)
    assert not any("folds already complete: kept" in line for line in lines)  # it started empty
    assert not (members / "cv" / "model.keras").exists() and read_json(members / "cv" / "metrics.json")["epochs_run"] == 4
    assert read_json(members / "cv" / "folds" / "0" / "metrics.json")["name"] == "cv/fold0"
    # a finished replacement (epochs 3) that a kill kept from its swap: the next forced run swaps it in
    shutil.copytree(members / "cv", staged)
    path = staged / "metrics.json"
    path.write_text(json.dumps({**read_json(path), "marker": "the staged one"}))
    for i in (0, 1):
        copy = staged / "folds" / str(i) / "spec.toml"
        copy.write_text(copy.read_text().replace("epochs = 2", "epochs = 3"))
    (staged / "spec.toml").write_text((staged / "spec.toml").read_text().replace("epochs = 2", "epochs = 3"))
    (staged / "folds" / "0" / ".metrics.json.host-1.abc.tmp").write_text("a killed writer's")  # the kill's scratch
    (staged / "folds" / "1" / ".resume").mkdir()
    train_folded(work, SPEC.replace(epochs=3), name="cv", k=2, preset="tiny", log=quiet, force=True)
    assert read_json(members / "cv" / "metrics.json")["marker"] == "the staged one" and not staged.exists()
    assert not list((members / "cv").rglob("*.tmp")) and not list((members / "cv").rglob(".resume"))
    # a member whose name extends another's is not that one's set-aside folder
    (members / ".cv.old-1.replacement-folds").mkdir()
    recover_dir(members / "cv", complete="metrics.json")
    assert (members / ".cv.old-1.replacement-folds").exists()


def test_presets_workdir_does_not_list_a_replacement_being_trained(folded, tmp_path):
    """presets --workdir listed .cv.replacement-folds as a member (vote, rightly, never sees it)."""
    from tests.helpers import run_cli

    work = tmp_path / "w"
    shutil.copytree(folded[0], work)
    shutil.copytree(work / "members" / "cv", work / "members" / ".cv.replacement-folds")
    code, out, err = run_cli("presets", "--workdir", work, "--json")
    assert code == 0, err
    assert [row["member"] for row in json.loads(out)] == ["cv"]


def test_a_plain_force_run_never_builds_on_a_set_aside_k_fold_member(folded, tmp_path):
    """The reverse crossing: a plain --force run reused a staging folder holding the old k-fold member (left by a
    kill after the swap's exchange), and the new plain member carried its folds/, folds.json and oof.npz."""
    from members.training.trainer import train_member

    work = tmp_path / "w"
    shutil.copytree(folded[0], work)
    members = work / "members"
    shutil.copytree(members / "cv", members / ".cv.replacement")
    train_member(work, SPEC, name="cv", preset="tiny", log=quiet, show_progress=False, force=True)
    assert not (members / "cv" / "folds").exists() and not (members / "cv" / "oof.npz").exists()
    assert "folds" not in read_json(members / "cv" / "metrics.json") and not (members / ".cv.replacement").exists()
