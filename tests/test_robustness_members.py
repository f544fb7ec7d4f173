"""Finished members are sacred: another spec is refused by name, --force swaps a complete replacement in,
bad options never touch the workdir, and folder swaps survive a kill at any point."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest

from members.infra import transaction
from members.infra.transaction import recover_dir, replace_dir
from tests.helpers import one_sentence_error, run_cli

TINY = ("--preset", "tiny", "--input-size", "16", "--epochs", "1")  # the `trained` fixture's spec


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def trained_copy(tmp_path, trained) -> Path:
    work = tmp_path / "w"
    shutil.copytree(trained, work)
    return work


def _hidden(work: Path) -> list[str]:
    return sorted(p.name for p in (work / "members").iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("extra, needle", [
    (("--seed", "7"), "seed 0 → 7"),
    (("--set", "dense_units=8"), "dense_units 16 → 8"),
    (("--epochs", "2"), "epochs 1 → 2"),
])
def test_another_spec_never_touches_a_complete_member(trained_copy, extra, needle):
    member = trained_copy / "members" / "t1"
    before = _snapshot(member)
    args = [a for a in TINY if a not in ("--epochs", "1")] if "--epochs" in extra else list(TINY)
    code, _, err = run_cli("train-member", "--workdir", trained_copy, *args, "--name", "t1", *extra)
    line = one_sentence_error(code, err, "'t1'", "already complete with another spec", needle, "--force")
    assert "never overwritten" in line
    assert _snapshot(member) == before


def test_the_same_spec_is_already_complete_and_nothing_is_retrained(trained_copy):
    member = trained_copy / "members" / "t1"
    before = _snapshot(member)
    code, out, err = run_cli("train-member", "--workdir", trained_copy, *TINY, "--name", "t1")
    assert code == 0, err
    assert "already complete with the same spec" in err and "t1: test accuracy" in out
    assert _snapshot(member) == before


@pytest.mark.parametrize("gone", ["model.keras", "val.npz", "test.npz"])
def test_a_complete_member_missing_a_file_is_named_damaged_and_force_trains_it_again(trained_copy, gone):
    """metrics.json alone made a member complete: with its model or predictions deleted, the same spec said
    "nothing to train" and vote only "val.npz does not exist"."""
    member = trained_copy / "members" / "t1"
    (member / gone).unlink()
    before = _snapshot(member)
    code, out, err = run_cli("train-member", "--workdir", trained_copy, *TINY, "--name", "t1")
    one_sentence_error(code, err, "Member 't1' is damaged: its metrics.json says its training finished, but",
                       f"{member / gone} is missing", "pass --force to train it again", "--members")
    assert "nothing to train" not in err and _snapshot(member) == before
    code, out, err = run_cli("train-member", "--workdir", trained_copy, *TINY, "--name", "t1", "--force")
    assert code == 0, err
    assert (member / gone).is_file() and "replaced the previous one" in err


def test_a_k_fold_member_needs_its_copies_files(tmp_path):
    from members.training.guard import missing_files

    folder = tmp_path / "cv"
    for f in ("val.npz", "test.npz", "oof.npz", "folds/0/metrics.json", "folds/0/model.keras", "folds/1/metrics.json"):
        (folder / f).parent.mkdir(parents=True, exist_ok=True)
        (folder / f).write_bytes(b"x")
    assert missing_files(folder, {"folds": 2}) == ["folds/1/model.keras"]
    assert missing_files(folder, {"model_sha256": "0" * 64}) == ["model.keras"]  # a plain member: its own model
    assert missing_files(folder, {}) == []  # imported as probabilities: no model


def test_a_model_without_metrics_is_said_to_be_replaced(trained_copy):
    """A member folder holding a model.keras but no metrics.json (a killed run, a deleted metrics.json) was
    trained over without a word."""
    member = trained_copy / "members" / "t1"
    (member / "metrics.json").unlink()
    code, _, err = run_cli("train-member", "--workdir", trained_copy, *TINY, "--name", "t1")
    assert code == 0, err
    said = [line for line in err.splitlines() if "holds a model.keras but no metrics.json" in line]
    assert len(said) == 1 and "replaces its files" in said[0], err
    assert (member / "metrics.json").is_file()


@pytest.mark.parametrize("extra, needle", [
    (("--seed", "-1"), "seed must be an integer from 0 to 4294967295"),
    (("--seed", str(2**40)), "seed must be an integer from 0"),
    (("--set", "undersample_ratio=inf"), "undersample_ratio must be of type float"),
    (("--set", "resize_schedule=3"), "resize_schedule must be of type tuple[int, ...]"),
    (("--set", "lr=nan"), "lr must be of type float"),
    (("--input-size", "100000"), "would need about"),
    (("--set", "dense_units=2000000000"), "would need about"),
])
def test_a_bad_option_is_refused_before_any_file_is_touched(trained_copy, extra, needle):
    before = _snapshot(trained_copy)
    code, _, err = run_cli("train-member", "--workdir", trained_copy, *TINY, "--name", "t1", *extra)
    one_sentence_error(code, err, needle)
    assert _snapshot(trained_copy) == before


def test_memory_estimate_is_in_the_message(trained_copy):
    code, _, err = run_cli("train-member", "--workdir", trained_copy, *TINY, "--name", "big", "--input-size", "100000")
    line = one_sentence_error(code, err, "GiB", "input_size=100000", "lower input_size")
    assert not (trained_copy / "members" / "big").exists(), line


def test_force_trains_beside_and_swaps_in_only_a_complete_member(trained_copy):
    member = trained_copy / "members" / "t1"
    old_model = (member / "model.keras").read_bytes()
    code, out, err = run_cli("train-member", "--workdir", trained_copy, *TINY, "--name", "t1", "--seed", "3", "--force")
    assert code == 0, err
    assert "replaced the previous one" in err
    assert "was voted with the member this run replaced" not in err  # no ensemble there
    spec = (member / "spec.toml").read_text()
    assert "seed = 3" in spec
    metrics = json.loads((member / "metrics.json").read_text())
    from members.infra.atomic import sha256_file

    assert metrics["model_sha256"] == sha256_file(member / "model.keras")
    assert (member / "model.keras").read_bytes() != old_model
    assert _hidden(trained_copy) == [] and not (member / ".lock").exists()
    (trained_copy / "ensemble").mkdir(exist_ok=True)  # now a voted ensemble uses t1: the replacement says so
    (trained_copy / "ensemble" / "manifest.json").write_text(json.dumps({"members": {"t1": {}}}))
    code, _, err = run_cli("train-member", "--workdir", trained_copy, *TINY, "--name", "t1", "--seed", "5", "--force")
    assert code == 0 and "was voted with the member this run replaced: run vote again" in " ".join(err.split()), err


@pytest.mark.parametrize("fault", [KeyboardInterrupt(), OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))])
def test_a_forced_run_that_dies_leaves_the_old_member_whole(trained_copy, monkeypatch, fault):
    from members.training import trainer as training

    member = trained_copy / "members" / "t1"
    before = _snapshot(member)

    def dies(self, model, seconds):
        (self.dir / "val.npz").write_bytes(b"half")  # some final artifacts are already written
        raise fault

    monkeypatch.setattr(training.Trainer, "_finish", dies)
    code, _, err = run_cli("train-member", "--workdir", trained_copy, *TINY, "--name", "t1", "--seed", "4", "--force")
    assert "Traceback" not in err
    said = [line for line in err.splitlines() if line.startswith(("Error: ", "Interrupted."))]  # after the epoch logs
    if isinstance(fault, KeyboardInterrupt):
        assert code == 130 and said == ["Interrupted. Finished epochs are kept: run the same command again to resume."]
    else:
        assert code == 1 and len(said) == 1, err
        assert "No space left on device" in said[0] and "free some disk space" in said[0]
    assert _snapshot(member) == before
    from members.data.dataset import load_dataset
    from members.training.guard import existing_member
    from members.model.spec import load_preset

    spec = load_preset("tiny").replace(input_size=16, epochs=1)
    assert existing_member(member, spec, load_dataset(trained_copy).fingerprint).differences == []


def test_train_members_refuses_an_auto_name_with_another_spec(trained_copy):
    from members.training.parallel import train_members

    member = trained_copy / "members" / "t1"
    before = _snapshot(member)
    shutil.copytree(member, trained_copy / "members" / "tiny")
    lines: list[str] = []
    outcome = train_members(trained_copy, ["tiny"], backend="sequential", sets=["input_size=16", "epochs=1"],
                            seed=9, log=lines.append)
    (run,) = outcome.results
    assert run.status == "failed" and "already complete with another spec" in run.error and "seed 0 → 9" in run.error
    assert _snapshot(trained_copy / "members" / "tiny") == before
    again = train_members(trained_copy, ["tiny"], backend="sequential", sets=["input_size=16", "epochs=1"],
                          log=lines.append)
    assert again.results[0].status == "kept"


def test_train_members_validates_the_base_seed(trained_copy):
    code, _, err = run_cli("train-members", "--workdir", trained_copy, "--preset", "tiny", "--seed", "-3")
    one_sentence_error(code, err, "--seed must be an integer from 0")


# ----- the folder swap ---------------------------------------------------------------------------
def _folder(path: Path, **files: str) -> Path:
    path.mkdir(parents=True)
    for name, text in files.items():
        (path / name).write_text(text)
    return path


@pytest.mark.parametrize("exchange", [True, False])
def test_replace_dir_swaps_whole_folders(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(transaction, "_exchange", lambda a, b: False)
    target = _folder(tmp_path / "ensemble", **{"report.json": "old", "stale.json": "x"})
    new = _folder(tmp_path / ".ensemble.staging-1", **{"report.json": "new"})
    replace_dir(new, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ensemble"]
    assert sorted(p.name for p in target.iterdir()) == ["report.json"] and (target / "report.json").read_text() == "new"


@pytest.mark.parametrize("exchange", [True, False])
def test_a_previous_folder_that_cannot_be_deleted_is_named_in_one_line(tmp_path, monkeypatch, capsys, exchange):
    """vote left the old ensemble in a hidden, write-protected .ensemble.staging-<pid> for good, and said nothing."""
    if not exchange:
        monkeypatch.setattr(transaction, "_exchange", lambda a, b: False)
    monkeypatch.setattr(transaction, "remove_tree", lambda path: False)
    target = _folder(tmp_path / "ensemble", **{"report.json": "old"})
    replace_dir(_folder(tmp_path / ".ensemble.staging-1", **{"report.json": "new"}), target)
    left = next(p for p in tmp_path.iterdir() if p.name != "ensemble")
    assert capsys.readouterr().err == (f"Note: the previous {target} is left in {left}, which could not be deleted; "
                                       f"delete it with `chmod -R u+w {left} && rm -rf {left}`.\n")
    assert (target / "report.json").read_text() == "new"


def test_a_kill_between_the_two_renames_is_recovered(tmp_path):
    target = tmp_path / "members" / "a"
    aside = _folder(tmp_path / "members" / f".a{transaction.ASIDE}123", **{"metrics.json": "{}", "model.keras": "m"})
    recover_dir(target, complete="metrics.json")
    assert (target / "model.keras").read_text() == "m" and not aside.exists()
    # a folder that exists (the lock re-created it) but lacks the marker gets the complete one back
    shutil.rmtree(target)
    _folder(target, **{".lock": "{}"})
    _folder(aside, **{"metrics.json": "{}"})
    recover_dir(target, complete="metrics.json")
    assert (target / "metrics.json").exists() and not aside.exists()


def test_staged_folder_appears_only_on_success(tmp_path):
    target = _folder(tmp_path / "ensemble", **{"report.json": "old"})
    with pytest.raises(RuntimeError):
        with transaction.staged(target) as tmp:
            (tmp / "report.json").write_text("half")
            raise RuntimeError("killed")
    assert (target / "report.json").read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["ensemble"]
    with transaction.staged(target) as tmp:
        (tmp / "report.json").write_text("new")
    assert (target / "report.json").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["ensemble"]


def test_a_new_member_cannot_take_a_combiners_name_or_odd_characters(tmp_path) -> None:
    """Members imported as ``soft``, ``soft+thr`` and ``majority class`` were shown in vote's tables as that
    combiner or as the baseline (two ``soft *`` rows, a combiner labelled best single). New names keep to
    letters, digits, '-', '_' and '.', and are not a combiner's; a folder that exists keeps its name."""
    from ensemble.constants import METHODS
    from members.infra.errors import UserError
    from members.training.trainer import RESERVED_NAMES, member_dir

    assert set(RESERVED_NAMES) == set(METHODS)
    for bad, words in (("soft", "is the name of one of vote's combiners"), ("Stack", "combiners"),
                       ("soft+thr", "characters other than"), ("majority class", "pass e.g. --name majority-class")):
        with pytest.raises(UserError, match=words):
            member_dir(tmp_path, bad, new=True)
    assert member_dir(tmp_path, "lite-224_fs8.v2", new=True) == tmp_path / "members" / "lite-224_fs8.v2"
    (tmp_path / "members" / "old name").mkdir(parents=True)
    assert member_dir(tmp_path, "old name", new=True).name == "old name"  # an existing member is read as it is
    assert member_dir(tmp_path, "soft").name == "soft"  # reading is not refused
    long = "m" * 120  # allowed before the limit: an existing one is still resumed, re-confirmed, replaced
    (tmp_path / "members" / long).mkdir()
    assert member_dir(tmp_path, long, new=True).name == long
    with pytest.raises(UserError, match="120 characters long"):
        member_dir(tmp_path, "n" * 120, new=True)


def test_train_members_and_import_refuse_a_combiners_name_before_anything_is_written(tmp_path) -> None:
    from tests.helpers import one_sentence_error, run_cli

    data, work = tmp_path / "d", tmp_path / "w"
    assert run_cli("demo-data", data, "--images", "40", "--size", "16", "--balanced")[0] == 0
    assert run_cli("prepare", "--workdir", work, "--labels", data / "trainLabels.csv", "--images", data / "images")[0] == 0
    code, _, err = run_cli("import-member", "--workdir", work, "--name", "soft", "--model", tmp_path / "x.keras")
    one_sentence_error(code, err, "is the name of one of vote's combiners")
    code, _, err = run_cli("train-members", "--workdir", work, "--preset", "tiny", "--preset", "tiny",
                           "--name", "a", "--name", "soft+thr", "--epochs", "1")
    one_sentence_error(code, err, "'soft+thr' has characters other than letters")
    assert not (work / "members").exists() or not any((work / "members").iterdir())


def test_a_finished_replacement_swapped_in_by_the_next_run_carries_no_scratch(trained_copy):
    """A kill between a forced run's last write and its swap left .resume/ and temp files in the replacement; the
    next forced run swapped them into the finished member."""
    members = trained_copy / "members"
    code, _, err = run_cli("train-member", "--workdir", trained_copy, *TINY, "--name", "t1", "--seed", "3", "--force")
    assert code == 0, err
    staged = members / ".t1.replacement"
    shutil.copytree(members / "t1", staged, ignore=shutil.ignore_patterns(".lock*"))  # finished (seed 3), not swapped
    (staged / ".resume").mkdir()
    (staged / ".resume" / "last-2.keras").write_bytes(b"a resume point")
    (staged / ".metrics.json.host-1.abc.tmp").write_text("a killed writer's")
    spec = members / "t1" / "spec.toml"
    spec.write_text(spec.read_text().replace("seed = 3", "seed = 2"))  # the member in place: another spec
    code, _, err = run_cli("train-member", "--workdir", trained_copy, *TINY, "--name", "t1", "--seed", "3", "--force")
    assert code == 0 and "replaced the previous one" in err, err
    assert "seed = 3" in spec.read_text() and not staged.exists() and "epoch 1/" not in err  # swapped, not trained
    assert not (members / "t1" / ".resume").exists() and not list((members / "t1").glob("*.tmp"))


def test_an_unfinished_replacement_beside_a_complete_member_is_named_not_left_unsaid(trained_copy):
    """A --force run killed mid-training leaves its epochs in .t1.replacement; rerunning the old spec ("already
    complete") kept them without a word, for good."""
    members = trained_copy / "members"
    spec = (members / "t1" / "spec.toml").read_text()
    seed = next(line.split("=")[1].strip() for line in spec.splitlines() if line.startswith("seed"))
    staged = members / ".t1.replacement"
    (staged / ".resume").mkdir(parents=True)
    (staged / ".resume" / "last-1.keras").write_bytes(b"a resume point")
    code, _, err = run_cli("train-member", "--workdir", trained_copy, *TINY, "--name", "t1", "--seed", seed)
    assert code == 0 and "already complete with the same spec and data" in err, err
    assert f"{staged} holds the unfinished replacement an interrupted --force run began" in " ".join(err.split())
    assert (staged / ".resume" / "last-1.keras").exists()  # its epochs are kept for that command


def test_reruns_that_change_nothing_pass_on_a_read_only_workdir(trained_copy, demo_images):
    """On a read-only workdir, `train-member` of a complete member with the same spec and `prepare` with the same
    data both failed with "Permission denied" on their lock's temp file, though neither writes anything."""
    from tests.helpers import run_cli_unprivileged

    before, entries = _snapshot(trained_copy), sorted(trained_copy.rglob("*"))
    folders = [trained_copy, *(p for p in trained_copy.rglob("*") if p.is_dir())]
    for folder in folders:
        folder.chmod(0o555)
    try:
        code, _out, err = run_cli_unprivileged("train-member", "--workdir", trained_copy, *TINY, "--name", "t1")
        assert code == 0 and "already complete with the same spec and data" in err, err
        prepare = ("prepare", "--workdir", trained_copy, "--labels", demo_images / "trainLabels.csv",
                   "--images", demo_images / "images")
        code, _out, err = run_cli_unprivileged(*prepare)
        assert code == 0 and "nothing changed" in " ".join(err.split()), err
        code, _out, err = run_cli_unprivileged(*prepare, "--seed", "1", "--force")  # a change: refused, plainly
        one_sentence_error(code, err, f"Could not write in {trained_copy}: no write permission for it",
                           f"chmod u+w {trained_copy}")
    finally:
        for folder in folders:
            folder.chmod(0o755)
    assert _snapshot(trained_copy) == before and sorted(trained_copy.rglob("*")) == entries
