"""Members for free (members/training/snapshots.py): cosine-restart snapshots as members, SWA with batch norm recomputed."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from members.infra.atomic import load_npz, read_json
from members.infra.errors import UserError
from members.training.snapshots import FreeMembers, cosine_lr, cycle_ends, recompute_batch_norm
from members.model.spec import load_preset
from members.training.trainer import train_member
from tests.conftest import quiet

TINY = load_preset("tiny").replace(input_size=16)


def test_cycles_and_cosine_restarts():
    assert cycle_ends(4, 2) == [1, 3] and cycle_ends(10, 3) == [3, 6, 9]
    lrs = [cosine_lr(0.1, e, [1, 3]) for e in range(4)]
    np.testing.assert_allclose(lrs, [0.1, 0.05, 0.1, 0.05])
    assert cosine_lr(0.1, 7, [1, 3]) == 0.1  # after the cycles (undersample epochs): the base rate


@pytest.mark.parametrize("changes, message", [
    ({"epochs": 3, "snapshots": 1}, "snapshots must be 0 .off. or from 2 to the train phase's 3 epochs"),
    ({"epochs": 3, "snapshots": 4}, "snapshots must be 0 .off. or from 2"),
    ({"epochs": 3, "swa": 4}, "swa averages the last N epochs and must be at most the plan's 3 epochs"),
    ({"epochs": 4, "swa": 2, "snapshots": 2}, "swa and snapshots cannot be combined"),
    ({"epochs": 4, "swa": 2, "retrain_rounds": 1}, "swa cannot be combined with retrain_rounds"),
])
def test_bad_snapshot_and_swa_settings_are_refused(changes, message):
    with pytest.raises(UserError, match=message):
        TINY.replace(**changes)


@pytest.mark.parametrize("changes", [{"snapshots": 2}, {"swa": 2}])
def test_patience_with_snapshots_or_swa_is_refused_before_training_but_such_a_spec_still_loads(
        workdir_copy, tmp_path, changes):
    from members.model.spec import load_spec_file

    spec = TINY.replace(epochs=4, patience=1, **changes)  # a spec.toml of a member trained before the check loads
    (tmp_path / "spec.toml").write_text(spec.to_toml(preset="tiny"))
    assert load_spec_file(tmp_path / "spec.toml") == spec
    field = next(iter(changes))
    with pytest.raises(UserError, match=f"{field} and patience cannot be combined: early stopping would end"):
        train_member(workdir_copy, spec, name="p", preset="tiny", log=quiet, show_progress=False)
    assert not (workdir_copy / "members" / "p").exists()


def test_snapshots_become_members_with_every_artifact(workdir_copy):
    result = train_member(workdir_copy, TINY.replace(epochs=4, snapshots=2), name="s", preset="tiny", log=quiet,
                          show_progress=False)
    with open(workdir_copy / "members" / "s" / "history.csv", newline="") as f:
        lrs = [float(row["lr"]) for row in csv.DictReader(f)]
    np.testing.assert_allclose(lrs, [0.02, 0.01, 0.02, 0.01], rtol=1e-5)  # two cosine cycles, restarted
    probs = []
    for j, epochs in ((1, 2), (2, 4)):
        folder = workdir_copy / "members" / f"s-snap{j}"
        for artifact in ("spec.toml", "model.keras", "history.csv", "curves.png", "val.npz", "test.npz", "metrics.json"):
            assert (folder / artifact).is_file(), (j, artifact)
        m = read_json(folder / "metrics.json")
        assert (m["name"], m["snapshot"], m["snapshots"], m["snapshot_of"], m["best_epoch"]) == (f"s-snap{j}", j, 2, "s", epochs)
        with open(folder / "history.csv", newline="") as f:
            assert len(list(csv.DictReader(f))) == epochs
        probs.append(load_npz(folder / "val.npz")["probs"])
    assert not np.allclose(probs[0], probs[1])  # two different networks
    assert result.metrics["epochs_run"] == 4 and not (workdir_copy / "members" / "s" / ".snapshots").exists()


def test_a_snapshot_folder_filled_while_training_is_never_replaced(workdir_copy, monkeypatch):
    """Checked free at the start, s-snap1 became an imported member mid-run: it used to be overwritten."""
    import json

    from tests.helpers import add_member

    real = FreeMembers._write_snapshots

    def import_then_write(self, model):
        folder = add_member(workdir_copy, "s-snap1", seed=7)
        metrics = {**json.loads((folder / "metrics.json").read_text()), "imported": {"from": "elsewhere"}}
        (folder / "metrics.json").write_text(json.dumps(metrics))
        return real(self, model)

    monkeypatch.setattr(FreeMembers, "_write_snapshots", import_then_write)
    lines = []
    train_member(workdir_copy, TINY.replace(epochs=4, snapshots=2), name="s", preset="tiny", log=lines.append,
                 show_progress=False)
    imported = read_json(workdir_copy / "members" / "s-snap1" / "metrics.json")
    assert imported["imported"] == {"from": "elsewhere"} and "snapshot_of" not in imported
    assert not (workdir_copy / "members" / "s-snap1" / "model.keras").exists()
    assert read_json(workdir_copy / "members" / "s-snap2" / "metrics.json")["snapshot_of"] == "s"
    assert any("WARNING: snapshot 1 was not written" in line and "became an imported member" in line for line in lines)


def test_force_replaces_a_snapshot_run_whole_and_another_members_folder_is_refused_before_any_folder(workdir_copy):
    from tests.helpers import add_member

    members = workdir_copy / "members"
    train_member(workdir_copy, TINY.replace(epochs=4, snapshots=2), name="s", preset="tiny", log=quiet,
                 show_progress=False)
    old = {j: (members / f"s-snap{j}" / "model.keras").read_bytes() for j in (1, 2)}
    longer = TINY.replace(epochs=6, snapshots=2)
    with pytest.raises(UserError, match="Member 's-snap1' in .* is already complete with another spec .*pass --force"):
        train_member(workdir_copy, longer, name="s", preset="tiny", log=quiet, show_progress=False)
    assert {j: (members / f"s-snap{j}" / "model.keras").read_bytes() for j in (1, 2)} == old
    lines = []
    train_member(workdir_copy, longer, name="s", preset="tiny", log=lines.append, show_progress=False, force=True)
    for j, epoch in ((1, 3), (2, 6)):  # both snapshots are the new run's
        m = read_json(members / f"s-snap{j}" / "metrics.json")
        assert (m["snapshot_of"], m["best_epoch"]) == ("s", epoch)
        assert (members / f"s-snap{j}" / "model.keras").read_bytes() != old[j]
    assert sorted(p.name for p in members.iterdir()) == ["s", "s-snap1", "s-snap2"]  # no .replacement left
    # fewer snapshots, and the last one now the member: the replaced run's s-snap2 goes, not left for vote to count
    lines = []
    train_member(workdir_copy, TINY.replace(epochs=4, snapshots=2, keep="last"), name="s", preset="tiny",
                 log=lines.append, show_progress=False, force=True)
    assert sorted(p.name for p in members.iterdir()) == ["s", "s-snap1"]
    assert any("removed s-snap2, a snapshot of the run --force replaced" in line for line in lines)
    # a snapshot folder holding another member: refused at once, before this run makes any folder
    add_member(workdir_copy, "t-snap2", seed=3)
    with pytest.raises(UserError, match=r"^Member 't' would write its snapshot 2 to .*t-snap2, which holds another "
                                        r"member, not a snapshot of it; .* choose another --name for this run\.$"):
        train_member(workdir_copy, TINY.replace(epochs=4, snapshots=2), name="t", preset="tiny", log=quiet,
                     show_progress=False, force=True)
    assert not (members / "t").exists() and not (members / "t-snap1").exists()


def test_force_retires_stale_snapshots_even_of_an_incomplete_member_and_a_busy_folder_is_passed_over(workdir_copy):
    import json
    import os
    import socket

    from tests.helpers import add_member

    members = workdir_copy / "members"
    stale = add_member(workdir_copy, "u-snap3", seed=4)  # a snapshot of an earlier run of u (u itself unfinished)
    metrics = {**json.loads((stale / "metrics.json").read_text()), "snapshot_of": "u", "snapshot": 3}
    (stale / "metrics.json").write_text(json.dumps(metrics))
    (members / "u-snap1").mkdir()  # another run trains a member of that name right now
    (members / "u-snap1" / ".lock").write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname()}))
    lines = []
    train_member(workdir_copy, TINY.replace(epochs=4, snapshots=2), name="u", preset="tiny", log=lines.append,
                 show_progress=False, force=True)
    assert (members / "u" / "metrics.json").is_file() and (members / "u-snap2" / "metrics.json").is_file()
    assert not stale.exists() and any("removed u-snap3" in line for line in lines)
    assert not (members / "u-snap1" / "metrics.json").exists()  # passed over, with a warning; its lock untouched
    assert (members / "u-snap1" / ".lock").is_file()
    assert any("WARNING: snapshot 1 was not written" in line and "being trained by another process" in line
               for line in lines)


def test_with_keep_last_the_last_snapshot_is_the_member_and_is_not_written_twice(workdir_copy):
    lines = []
    train_member(workdir_copy, TINY.replace(epochs=4, snapshots=2, keep="last"), name="s", preset="tiny",
                 log=lines.append, show_progress=False)
    members = workdir_copy / "members"
    assert sorted(p.name for p in members.iterdir()) == ["s", "s-snap1"]
    assert read_json(members / "s" / "metrics.json")["best_epoch"] == 4  # the member is snapshot 2
    assert any("snapshot 2/2 (epoch 4) is the member itself" in line for line in lines)


def test_swa_member_holds_the_average_of_the_last_epochs(workdir_copy, monkeypatch):
    seen = []
    original = FreeMembers.after_epoch

    def spy(self, model, epoch, row):
        if epoch >= self.swa_from:
            seen.append([w.copy() for w in model.get_weights()])
        return original(self, model, epoch, row)

    monkeypatch.setattr(FreeMembers, "after_epoch", spy)
    train_member(workdir_copy, TINY.replace(epochs=3, swa=2), name="w", preset="tiny", log=quiet, show_progress=False)
    import keras

    model = keras.saving.load_model(workdir_copy / "members" / "w" / "model.keras", safe_mode=True)
    assert len(seen) == 2
    names = [w.path for w in model.weights]
    for got, name, a, b in zip(model.get_weights(), names, *seen):
        if "moving_" in name:
            continue  # recomputed, not averaged
        np.testing.assert_allclose(got, (a + b) / 2, rtol=1e-5, atol=1e-6, err_msg=name)
    with open(workdir_copy / "members" / "w" / "history.csv", newline="") as f:
        assert "SWA average of the last 2 epochs" in list(csv.DictReader(f))[-1]["note"]


def test_recompute_batch_norm_sets_the_exact_mean_of_the_batch_statistics():
    import keras
    import tensorflow as tf

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.BatchNormalization()(inputs))
    batches = [np.full((4, 3), v, dtype=np.float32) + np.arange(4, dtype=np.float32)[:, None] for v in (1.0, 5.0, 9.0)]
    assert recompute_batch_norm(model, tf.data.Dataset.from_tensor_slices(np.concatenate(batches)).batch(4)) == 3
    bn = model.layers[-1]
    np.testing.assert_allclose(bn.moving_mean.numpy(), [np.mean([b.mean(0) for b in batches], axis=0)][0], rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), np.full(3, 1.25), rtol=1e-4)  # var of 0..3 in every batch
    assert bn.momentum == 0.99  # restored
