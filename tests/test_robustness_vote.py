"""vote and prepare are transactions: the whole output appears at once or not at all, under a lock; a
manifest ties the combiners, the report and the members together, and predict refuses a mix by name."""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

from members.infra import atomic
from members.infra.atomic import sha256_file
from members.infra.errors import UserError
from tests.helpers import add_member, add_model_member, one_sentence_error, run_cli

ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _vote(work: Path, *extra) -> tuple[int, str, str]:
    return run_cli("vote", "--workdir", work, "--bootstrap", "10", "--keep-collapsed", *extra)


@pytest.fixture()
def voted(workdir_copy) -> Path:
    """Three fake complete members, voted once on t1 and t2."""
    for i, name in enumerate(("t1", "t2", "t3"), 1):
        add_member(workdir_copy, name, seed=i)
    code, _, err = _vote(workdir_copy, "--members", "t1,t2", "--method", "soft")
    assert code == 0, err
    return workdir_copy


def _hidden(work: Path) -> list[str]:
    return sorted(p.name for p in work.iterdir() if p.name.startswith("."))


def test_the_manifest_hashes_every_file_and_names_the_members(voted):
    folder = voted / "ensemble"
    manifest = json.loads((folder / "manifest.json").read_text())
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(manifest["files"]) == files and "report.json" in files and "combiners/soft.json" in files
    assert all(manifest["files"][name] == sha256_file(folder / name) for name in files)
    assert sorted(manifest["members"]) == ["t1", "t2"]
    assert manifest["members"]["t1"]["metrics_sha256"] == sha256_file(voted / "members" / "t1" / "metrics.json")
    assert manifest["fingerprint"] == json.loads((voted / "dataset.json").read_text())["fingerprint"]
    assert _hidden(voted) == []  # no staging folder, no lock left


@pytest.mark.parametrize("where", ["plot", "fsync"])
def test_a_vote_that_fails_midway_leaves_the_previous_ensemble_whole(voted, monkeypatch, where):
    before = _files(voted / "ensemble")
    if where == "plot":
        from ensemble import plots

        def full(*args, **kwargs):
            raise ENOSPC

        monkeypatch.setattr(plots, "plot_confusions", full)
    else:  # the atomic writer meets a full disk after a few files
        calls = {"n": 0}
        real = os.fsync

        def fsync(fd):
            calls["n"] += 1
            if calls["n"] > 3:
                raise ENOSPC
            real(fd)

        monkeypatch.setattr(atomic.os, "fsync", fsync)
    code, _, err = _vote(voted, "--members", "t1,t3")
    one_sentence_error(code, err, "No space left on device")
    assert _files(voted / "ensemble") == before
    assert _hidden(voted) == []


def test_ctrl_c_during_a_vote_keeps_the_previous_ensemble(voted, monkeypatch):
    from ensemble import report

    before = _files(voted / "ensemble")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "write_report", interrupted)
    code, _, err = _vote(voted, "--members", "t2,t3")
    assert code == 130 and "Traceback" not in err
    assert "Nothing finished was changed" in err and "epochs" not in err  # a vote has no epochs to resume
    assert _files(voted / "ensemble") == before and _hidden(voted) == []


def test_a_second_vote_waits_for_the_first(voted):
    parent = os.getppid()  # a live process that is not this one
    (voted / ".vote.lock").write_text(json.dumps({"pid": parent, "host": socket.gethostname()}))
    before = _files(voted / "ensemble")
    code, _, err = _vote(voted)
    one_sentence_error(code, err, "Another `vote` is running", str(parent))
    assert _files(voted / "ensemble") == before


def test_a_new_vote_replaces_the_whole_folder(voted):
    stray = voted / "ensemble" / "combiners" / "old-method.json"
    stray.write_text("{}")
    code, _, err = _vote(voted, "--members", "t1,t3", "--method", "soft")
    assert code == 0, err
    manifest = json.loads((voted / "ensemble" / "manifest.json").read_text())
    assert sorted(manifest["members"]) == ["t1", "t3"] and not stray.exists()
    assert sorted(p.stem for p in (voted / "ensemble" / "combiners").iterdir()) == ["soft", "soft+thr"]


# ----- predict checks the manifest -----------------------------------------------------------
def _load(work: Path, method: str | None = None):
    from ensemble.inference import load_ensemble

    return load_ensemble(work, method)


def test_predict_refuses_a_combiner_from_another_vote(voted, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(voted, other)
    code, _, err = _vote(other, "--members", "t1,t3")
    assert code == 0, err
    shutil.copy(other / "ensemble" / "combiners" / "soft.json", voted / "ensemble" / "combiners" / "soft.json")
    with pytest.raises(UserError, match=r"combiners/soft\.json does not belong to the vote .*manifest\.json"):
        _load(voted, "soft")


def test_predict_refuses_an_edited_report(voted):
    path = voted / "ensemble" / "report.json"
    path.write_text(path.read_text().replace('"best_method"', '"best_method" ', 1))
    with pytest.raises(UserError, match=r"report\.json does not belong to the vote"):
        _load(voted)


@pytest.mark.parametrize("content", ["", "[]", "{\"files\": 3}"])
def test_predict_refuses_a_missing_or_corrupt_manifest(voted, content):
    path = voted / "ensemble" / "manifest.json"
    if content:
        path.write_text(content)
    else:
        path.unlink()
    with pytest.raises(UserError, match=r"manifest\.json .*vote --workdir"):
        _load(voted)


def test_predict_refuses_an_ensemble_voted_on_data_prepare_force_replaced(voted, tmp_path):
    from members.data.dataset import prepare_csv
    from members.data.synthetic import write_demo_data

    before = json.loads((voted / "dataset.json").read_text())
    assert json.loads((voted / "ensemble" / "manifest.json").read_text())["fingerprint"] == before["fingerprint"]
    with pytest.raises(UserError, match="metrics.json is corrupt"):  # stand-in members: this far and no further
        _load(voted)
    data = tmp_path / "other"
    write_demo_data(data, images=40, size=24, seed=11, balanced=True, progress=False)
    prepare_csv(voted, data / "trainLabels.csv", data / "images", force=True, progress=False)
    after = json.loads((voted / "dataset.json").read_text())
    assert after["fingerprint"] != before["fingerprint"]
    with pytest.raises(UserError, match=r"was voted on another prepared dataset .* as after prepare --force; "
                                        r"train the members on the new data"):
        _load(voted)


def test_predict_refuses_a_combiner_added_after_the_vote(voted):
    shutil.copy(voted / "ensemble" / "combiners" / "soft.json", voted / "ensemble" / "combiners" / "mine.json")
    with pytest.raises(UserError, match=r"mine\.json is not part of the vote"):
        _load(voted, "mine")


def test_predict_refuses_a_member_retrained_after_the_vote(tmp_path, trained):
    import keras

    import members.model.architecture  # noqa: F401

    work = tmp_path / "w"
    shutil.copytree(trained, work)
    add_model_member(work, "t2", seed=2)
    code, _, err = _vote(work)
    assert code == 0, err
    _load(work)  # consistent: loads
    folder = work / "members" / "t2"  # "retrain" t2: another model file, metrics updated to match it
    model = keras.saving.load_model(folder / "model.keras", safe_mode=True)
    model.save(folder / "model.keras")
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics["model_sha256"] = sha256_file(folder / "model.keras")
    (folder / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(UserError, match=r"Member 't2' was retrained or replaced after the vote"):
        _load(work)
    assert _vote(work)[0] == 0
    _load(work)
    with (folder / "metrics.json").open("a") as f:  # the model is the vote's, its metrics.json is not (cuts live there)
        f.write(" ")
    with pytest.raises(UserError, match=r"Member 't2' has another metrics.json than the vote read"):
        _load(work)


# ----- prepare -------------------------------------------------------------------------------
def _npz(path: Path, labels_mod: int) -> Path:
    rng = np.random.default_rng(0)
    np.savez(path, **{f"{s}_{kind}": (rng.integers(0, 255, (8, 8, 8), dtype=np.uint8) if kind == "images"
                                      else np.arange(8) % labels_mod) for s in ("train", "val", "test")
                      for kind in ("images", "labels")})
    return path


def test_ctrl_c_during_a_re_prepare_loses_nothing(tmp_path, monkeypatch):
    from members.data import medmnist

    work = tmp_path / "w"
    code, _, err = run_cli("prepare", "--workdir", work, "--npz", _npz(tmp_path / "a.npz", 2))
    assert code == 0, err
    before = _files(work)
    calls = {"n": 0}
    real = medmnist._save_png

    def save_png(args):
        calls["n"] += 1
        if calls["n"] == 10:
            raise KeyboardInterrupt
        real(args)

    monkeypatch.setattr(medmnist, "_save_png", save_png)
    code, _, err = run_cli("prepare", "--workdir", work, "--npz", _npz(tmp_path / "b.npz", 3), "--force")
    assert code == 130, err
    assert _files(work) == before and _hidden(work) == []
    from members.data.dataset import load_dataset

    assert load_dataset(work).num_classes == 2


def test_a_re_prepare_killed_after_its_commit_point_is_finished_by_the_next_reader(tmp_path, monkeypatch):
    from members.infra import transaction
    from members.data.dataset import load_dataset

    work = tmp_path / "w"
    assert run_cli("prepare", "--workdir", work, "--npz", _npz(tmp_path / "a.npz", 2))[0] == 0
    real = transaction._roll_forward
    state = {"calls": 0}

    def killed_after_journal(folder, staging):
        state["calls"] += 1
        if state["calls"] == 1:  # commit_entries' own moves, after the journal: the process "dies" here
            raise KeyboardInterrupt
        real(folder, staging)

    monkeypatch.setattr(transaction, "_roll_forward", killed_after_journal)
    code, _, _ = run_cli("prepare", "--workdir", work, "--npz", _npz(tmp_path / "b.npz", 3), "--force")
    assert code == 130 and (work / ".prepare.commit" / "journal.json").is_file()
    monkeypatch.setattr(transaction, "_roll_forward", real)
    data = load_dataset(work)  # finishes the commit: the new dataset, whole
    assert data.num_classes == 3 and not (work / ".prepare.commit").exists()
    assert sorted(p.name for p in (work / "images").iterdir())[:1] == ["test_00000.png"]


def test_a_reader_leaves_the_files_of_a_running_prepare_alone(tmp_path):
    """A reader (vote, predict, train-member, another prepare) used to delete the commit folder of a
    prepare still writing it; that prepare then moved in what was left and exited 0."""
    from members.data.dataset import load_dataset
    from members.infra.transaction import WorkdirLock

    work = tmp_path / "w"
    assert run_cli("prepare", "--workdir", work, "--npz", _npz(tmp_path / "a.npz", 2))[0] == 0
    before = _files(work)
    commit = work / ".prepare.commit"
    with WorkdirLock(work, "prepare"):  # a live prepare (this process) writing its new files
        (commit / "images").mkdir(parents=True)
        (commit / "images" / "new.png").write_bytes(b"half-written")
        assert load_dataset(work).num_classes == 2  # the old dataset, whole
        assert (commit / "images" / "new.png").read_bytes() == b"half-written"
        code, _, err = run_cli("prepare", "--workdir", work, "--npz", _npz(tmp_path / "b.npz", 3), "--force")
        one_sentence_error(code, err, "Another `prepare` is running")
        assert (commit / "images" / "new.png").is_file()
        (commit / "journal.json").write_text('["images"]')  # its commit point: it is moving the files in now
        with pytest.raises(UserError, match=r"A `prepare` \(pid \d+\) is replacing the files of .* right now; wait"):
            load_dataset(work)
        assert (commit / "images" / "new.png").is_file()
    shutil.rmtree(commit)
    assert _files(work) == before


def test_presets_workdir_marks_collapsed_below_majority_and_stale_members(tmp_path, trained, monkeypatch):
    from members.data.dataset import prepare_csv
    from members.data.synthetic import write_demo_data

    work = tmp_path / "w"
    shutil.copytree(trained, work)
    metrics = json.loads((work / "members" / "t1" / "metrics.json").read_text())
    code, out, err = run_cli("presets", "--workdir", work, "--json")
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["member"] == "t1" and row["stale"] is False
    assert row["collapsed"] == bool(metrics["collapsed"]) and row["below_majority"] == bool(metrics["below_majority"]["test"])
    assert row["test_accuracy"] == metrics["test"]["accuracy"]
    assert row["majority_accuracy"] == metrics["majority"]["test"]["accuracy"]
    assert ("COLLAPSED" in row["marks"]) == row["collapsed"] and ("†" in row["marks"]) == row["below_majority"]
    data = tmp_path / "other"
    write_demo_data(data, images=40, size=24, seed=11, balanced=True, progress=False)
    prepare_csv(work, data / "trainLabels.csv", data / "images", force=True, progress=False)
    code, out, err = run_cli("presets", "--workdir", work, "--json")
    (row,) = json.loads(out)
    assert row["stale"] is True and row["marks"].startswith("STALE (trained on another prepared dataset")
    monkeypatch.setenv("COLUMNS", "200")  # one table row per member, whatever the terminal
    code, out, err = run_cli("presets", "--workdir", work)
    assert code == 0 and f"t1{' †' if row['below_majority'] else ''} (stale)" in out


@pytest.mark.parametrize("replaced", ["member", "dataset"])
def test_a_member_or_dataset_replaced_while_the_vote_runs_is_refused_and_the_old_ensemble_kept(voted, monkeypatch,
                                                                                               replaced):
    """A `train-member --force` (or `prepare --force`) that finishes mid-vote used to be pinned in the new
    manifest as what the combiners were fitted on, and predict then trusted the mix."""
    import ensemble.vote as vote_module

    before = _files(voted / "ensemble")
    real = vote_module.load_members

    def load_then_replace(workdir, names=None):
        ms = real(workdir, names)
        if replaced == "member":  # the member folder swapped in by a --force run: another metrics.json
            path = Path(workdir) / "members" / "t2" / "metrics.json"
            atomic.write_json(path, {**json.loads(path.read_text()), "train_seconds": 1.0})
        else:
            path = Path(workdir) / "dataset.json"
            atomic.write_json(path, {**json.loads(path.read_text()), "fingerprint": "0" * 64})
        return ms

    monkeypatch.setattr(vote_module, "load_members", load_then_replace)
    code, out, err = _vote(voted, "--members", "t1,t2", "--method", "hard")
    assert out == ""  # no table of results for an ensemble that was discarded
    expected = ("Member 't2' was replaced while this vote ran" if replaced == "member"
                else f"The dataset of {voted} was replaced while this vote ran")
    one_sentence_error(code, err, expected, "the previous ensemble is kept")
    assert _files(voted / "ensemble") == before and _hidden(voted) == []


def test_a_write_protected_ensemble_is_refused_before_the_vote_and_stale_staging_is_deleted(voted):
    """With ensemble/ write-protected, vote swapped it out anyway and left the old one in a hidden, write-protected
    .ensemble.staging-<pid> for good, saying nothing; later votes could not delete that folder either."""
    from tests.helpers import run_cli_unprivileged

    ensemble, stale = voted / "ensemble", voted / ".ensemble.staging-1"
    shutil.copytree(ensemble, stale)  # what such a vote left
    before = _files(ensemble)
    protected = [p for p in [ensemble, stale, *ensemble.rglob("*"), *stale.rglob("*")]]
    for path in sorted(protected, key=lambda p: -len(p.parts)):
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        code, _, err = run_cli_unprivileged("vote", "--workdir", voted, "--bootstrap", "10", "--keep-collapsed",
                                            "--members", "t1,t3")
        one_sentence_error(code, err, f"{ensemble} is write-protected", f"chmod -R u+w {ensemble}")
        assert _files(ensemble) == before and _hidden(voted) == []  # kept; the stale staging deleted, no lock left
    finally:
        for path in [ensemble, *ensemble.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
    code, _, err = run_cli_unprivileged("vote", "--workdir", voted, "--bootstrap", "10", "--keep-collapsed",
                                        "--members", "t1,t3", "--method", "soft")
    assert code == 0 and "Note:" not in err, err
    assert _files(ensemble) != before and _hidden(voted) == []


def test_a_file_named_ensemble_is_left_alone_and_named(voted):
    """vote swapped a regular file at W/ensemble into a hidden staging name, where the user would not find it."""
    shutil.rmtree(voted / "ensemble")
    (voted / "ensemble").write_text("my notes")
    code, _, err = _vote(voted, "--members", "t1,t2", "--method", "soft")
    one_sentence_error(code, err, f"{voted / 'ensemble'} is a file, where this command writes its folder; move that "
                                  "file away")
    assert (voted / "ensemble").read_text() == "my notes" and _hidden(voted) == []


def test_a_member_with_the_very_predictions_of_another_is_counted_once(tmp_path, trained):
    """The same network twice (a copied folder, a snapshot at the very epoch its member keeps) would weigh twice;
    two members that merely agree on every row (one-hot imports, say) stay two."""
    from ensemble.member_set import load_members

    work = tmp_path / "w"
    shutil.copytree(trained, work)
    shutil.copytree(work / "members" / "t1", work / "members" / "t1-copy")
    add_model_member(work, "t2", seed=2)
    code, _, err = _vote(work, "--method", "soft")
    assert code == 0, err
    assert "Skipping member 't1-copy': the same val and test predictions as 't1', so it is counted once." in err
    assert sorted(json.loads((work / "ensemble" / "report.json").read_text())["members"]) == ["t1", "t2"]
    code, _, err = _vote(work, "--members", "t1,t1-copy")
    one_sentence_error(code, err, "vote needs at least two complete members; found 1 (t1, t1-copy counted once with it)")
    add_member(work, "p1", seed=5)  # predictions without a model: equal predictions alone do not make a twin
    shutil.copytree(work / "members" / "p1", work / "members" / "p2")
    assert {"p1", "p2"} <= set(load_members(work).names)
    code, _, err = _vote(work, "--members", "p1,p2,t2")  # both vote, and the user is told (one import twice?)
    assert code == 0, err
    assert ("Note: member 'p2' gives the very same val and test probabilities as 'p1' but is another model file (or "
            "a probabilities import); both vote") in err and "Note: member 't2'" not in err


def test_ten_named_classes_get_slanted_names_inside_the_figure(tmp_path, monkeypatch):
    """A 10-class set's confusion.png read 'airplaneautobird catdeerdog…' along its x axis."""
    from ensemble import plots

    shown = {}

    def keep(fig, path, **kw):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        labels = fig.axes[0].get_xticklabels()
        shown[path.name] = ([t.get_rotation() for t in labels],
                            [t.get_window_extent(renderer) for t in labels], fig.bbox)
        return path

    monkeypatch.setattr(plots, "_save", keep)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    cm = np.arange(100).reshape(10, 10)
    plots.plot_confusions(tmp_path / "ten.png", [("a", cm), ("b", cm)], names, word="class")
    plots.plot_confusions(tmp_path / "five.png", [("a", cm[:5, :5])], [0, 1, 2, 3, 4])
    rotation, boxes, page = shown["ten.png"]
    assert set(rotation) == {45.0} and all(b.y0 >= page.y0 for b in boxes)  # slanted, and inside the figure
    # slanted names overlap only where their boxes' corners meet: their left ends stay apart and in order
    assert all(a.x1 <= b.x1 for a, b in zip(boxes, boxes[1:]))
    assert set(shown["five.png"][0]) == {0.0}  # grades 0-4 stay level
