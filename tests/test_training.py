"""train-member: artifacts per the workdir contract, progressive resizing, rollback of a bad retraining round."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest


from members.infra.atomic import load_npz  # noqa: E402
from members.data.dataset import load_dataset  # noqa: E402
from members.model.spec import load_preset  # noqa: E402
from members.training.trainer import train_member  # noqa: E402
from tests.conftest import quiet  # noqa: E402

CONTRACT_FILES = ("spec.toml", "model.keras", "history.csv", "curves.png", "val.npz", "test.npz", "metrics.json")
HISTORY_COLUMNS = ["phase", "epoch", "input_size", "lr", "loss", "accuracy", "val_loss", "val_accuracy"]


def _history(member_dir):
    with open(member_dir / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_member_leaves_every_artifact_of_the_contract(trained):
    member = trained / "members" / "t1"
    for name in CONTRACT_FILES:
        assert (member / name).stat().st_size > 0, name
    data = load_dataset(trained)
    metrics = json.loads((member / "metrics.json").read_text())
    assert metrics["fingerprint"] == data.fingerprint
    assert metrics["num_classes"] == data.num_classes == 5
    from members.infra.atomic import sha256_file

    assert metrics["predictions_sha256"] == {s: sha256_file(member / f"{s}.npz") for s in ("val", "test")}
    for split in ("val", "test"):
        arrays = load_npz(member / f"{split}.npz")
        rows = data.rows(split)
        assert arrays["probs"].dtype == np.float32
        assert arrays["probs"].shape == (len(rows), 5)
        np.testing.assert_allclose(arrays["probs"].sum(axis=1), 1.0, atol=1e-5)
        np.testing.assert_array_equal(arrays["row_ids"], rows["row_id"].to_numpy())
        np.testing.assert_array_equal(arrays["labels"], rows["label"].to_numpy())
        assert str(arrays["fingerprint"]) == data.fingerprint
        for key in ("accuracy", "balanced_accuracy", "macro_f1", "qwk", "auc"):
            assert key in metrics[split]
    for key in ("params", "train_seconds", "images_per_second", "input_wait_share", "model_sha256"):
        assert key in metrics
    assert 0.0 <= metrics["input_wait_share"] <= 1.0
    history = _history(member)
    assert list(history[0])[: len(HISTORY_COLUMNS)] == HISTORY_COLUMNS
    assert len(history) == 1 and history[0]["phase"] == "train" and history[0]["input_size"] == "16"
    assert not (member / ".resume").exists() and not (member / ".lock").exists()


def test_same_seed_gives_the_same_predictions(workdir_copy):
    spec = load_preset("tiny").replace(input_size=16, epochs=1, seed=5)
    probs = []
    for name in ("r1", "r2"):
        train_member(workdir_copy, spec, name=name, log=quiet, show_progress=False)
        probs.append(load_npz(workdir_copy / "members" / name / "val.npz")["probs"])
    np.testing.assert_allclose(probs[0], probs[1], atol=1e-5)


def test_progressive_resizing_records_both_sizes(workdir_copy):
    spec = load_preset("tiny").replace(resize_schedule=(16, 24), input_size=24, epochs=1)
    result = train_member(workdir_copy, spec, name="prog", log=quiet, show_progress=False)
    history = _history(result.member_dir)
    assert [row["input_size"] for row in history] == ["16", "24"]
    assert result.metrics["stage_sizes"] == [16, 24]
    lrs = [float(row["lr"]) for row in history]
    assert lrs[1] == pytest.approx(lrs[0] * spec.lr_decay)


def test_undersample_phase_and_retraining_are_recorded(workdir_copy):
    spec = load_preset("tiny").replace(input_size=16, epochs=1, undersample_epochs=1, retrain_rounds=1)
    lines = []
    result = train_member(workdir_copy, spec, name="phases", log=lines.append, show_progress=False)
    history = _history(result.member_dir)
    # a one-epoch 16-px member cannot grade every training image of five classes right, so the round runs
    assert [row["phase"] for row in history] == ["train", "undersample", "retrain1"]
    said = re.search(r"retrain1: (\d+) mispredicted training images \+ (\d+) replayed", "\n".join(lines))
    assert said and int(said[1]) > 0
    assert history[-1]["note"].startswith(f"{said[1]} wrong + {said[2]} replayed")


def test_retraining_round_that_hurts_validation_is_rolled_back(workdir_copy, monkeypatch):
    import members.training.loop as loop

    real = loop.evaluate
    scores = iter([0.6, 0.1])  # the first (train) epoch scores 0.6 on val, the retraining epoch only 0.1

    def scripted(labels, probs, k):
        out = real(labels, probs, k)
        out["val_qwk"] = next(scores)
        return out

    monkeypatch.setattr(loop, "evaluate", scripted)
    from members.training.trainer import Trainer

    before = {}
    original_round = Trainer._retrain_round

    def recording_round(self, model, r):
        before["weights"] = [w.copy() for w in model.get_weights()]
        return original_round(self, model, r)

    monkeypatch.setattr(Trainer, "_retrain_round", recording_round)
    spec = load_preset("tiny").replace(input_size=16, epochs=1, retrain_rounds=1, retrain_epochs=1, monitor="val_qwk",
                                       retrain_lr_factor=1.0, lr=0.5)
    result = train_member(workdir_copy, spec, name="rb", log=quiet, show_progress=False)
    history = _history(result.member_dir)
    assert [row["phase"] for row in history] == ["train", "retrain1"]  # a one-epoch member mispredicts some images
    assert "rolled back" in history[-1]["note"] and "previous weights restored" in history[-1]["note"]
    # the saved model holds exactly the weights from before the round
    import keras

    model = keras.saving.load_model(result.member_dir / "model.keras", safe_mode=True)
    assert result.metrics["best_epoch"] == 1
    for saved, kept in zip(model.get_weights(), before["weights"], strict=True):
        np.testing.assert_array_equal(saved, kept)


def test_nan_loss_stops_with_a_clear_message(workdir_copy):
    from members.infra.errors import UserError

    spec = load_preset("tiny").replace(input_size=16, epochs=2, lr=1e9, batch_norm=False, l2=0.0, class_weight="none")
    with pytest.raises(UserError, match="learning rate is too high.*--lr"):
        train_member(workdir_copy, spec, name="nan", log=quiet, show_progress=False)
    assert not (workdir_copy / "members" / "nan" / "metrics.json").exists()
