"""Faults: kill -9 at several moments of train-member, Ctrl-C, two runs on one member, stale locks,
a diverging loss, a full disk. Nothing a fault leaves behind is trusted by vote, and the same
command run again resumes (or restarts cleanly) and completes.

The kill tests run ``python cli.py train-member`` as real subprocesses, once, in a module
fixture that records what each moment left; one test per case then checks its record.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from members.infra import atomic
from members.infra.atomic import load_npz, read_json, sha256_file
from members.infra.errors import UserError
from members.infra.lock import MemberLock
from tests.helpers import add_member, one_sentence_error, run_cli  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


# ----- helpers -------------------------------------------------------------------------------



def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def temp_files(root: Path) -> list[str]:
    return [p.name for p in root.rglob("*") if ".tmp" in p.name]



def trusted_by_vote(work: Path, name: str) -> bool:
    """Whether vote would use member ``name``; raises when it would refuse the whole workdir."""
    from ensemble.member_set import load_members

    members = load_members(work)
    assert name in members.names or name in members.skipped
    return name in members.names


def readable(member: Path) -> list[str]:
    """Every visible artifact of a member reads back whole (a torn one would only be a hidden temp)."""
    checked = []
    for path in sorted(member.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        if path.suffix == ".npz":
            load_npz(path)
        elif path.suffix == ".json":
            read_json(path)
        elif path.suffix == ".keras":
            with zipfile.ZipFile(path) as zf:
                assert zf.testzip() is None
        checked.append(path.name)
    return checked


# ----- a full disk: atomic writes keep the previous file --------------------------------------

class _FullDisk:
    """A file object that accepts ``budget`` bytes, then fails like a full disk."""

    def __init__(self, f, budget: int):
        self._f, self._left = f, budget

    def write(self, data):
        if len(data) > self._left:
            self._f.write(data[: self._left])
            self._left = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._left -= len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._f.__exit__(*exc)


@pytest.fixture()
def full_disk(monkeypatch):
    """Make every atomic write fail with ENOSPC after 10 bytes (mid-write)."""
    real = os.fdopen
    monkeypatch.setattr(atomic.os, "fdopen", lambda fd, *a, **k: _FullDisk(real(fd, *a, **k), 10))


@pytest.mark.parametrize("writer", ["write_json", "write_text", "write_bytes", "save_npz"])
def test_full_disk_mid_write_keeps_the_previous_file(tmp_path, writer, full_disk):
    path = tmp_path / "artifact"
    path.write_bytes(b"the previous, complete content\n")
    call = {"write_json": lambda: atomic.write_json(path, {"a": list(range(100))}),
            "write_text": lambda: atomic.write_text(path, "x" * 1000),
            "write_bytes": lambda: atomic.write_bytes(path, b"y" * 1000),
            "save_npz": lambda: atomic.save_npz(path, a=np.arange(100))}[writer]
    with pytest.raises(UserError, match=rf"Could not write {re.escape(str(path))} \(No space left on device\).*"
                                        r"previous version of the file.*unchanged.*free some disk space"):
        call()
    assert path.read_bytes() == b"the previous, complete content\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifact"]  # no temp file left


def test_full_disk_on_a_new_file_leaves_nothing(tmp_path, full_disk):
    with pytest.raises(UserError, match="No space left on device"):
        atomic.write_json(tmp_path / "new.json", {"a": "b" * 100})
    assert list(tmp_path.iterdir()) == []


def test_full_disk_during_replace_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "a.json"
    path.write_text("{}")

    def refuse(*_):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(atomic.os, "replace", refuse)
    with pytest.raises(UserError, match="Read-only file system.*check that the folder exists and is writable"):
        atomic.write_json(path, {"x": 1})
    assert path.read_text() == "{}" and sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_prepare_on_a_full_disk_is_one_sentence_and_keeps_the_split(workdir_copy, demo_images, full_disk):
    before = (workdir_copy / "split.csv").read_bytes()
    code, _out, err = run_cli("prepare", "--workdir", workdir_copy, "--labels", demo_images / "trainLabels.csv",
                             "--images", demo_images / "images", "--seed", "9", "--force")
    one_sentence_error(code, err, "Could not write", "No space left on device", "free some disk space")
    assert f"Could not write {workdir_copy}/" in " ".join(err.split()) and ".prepare" not in err  # named as known
    assert (workdir_copy / "split.csv").read_bytes() == before
    assert temp_files(workdir_copy) == []


def test_vote_on_a_full_disk_is_one_sentence(workdir_copy, request):
    add_member(workdir_copy, "a", seed=1)
    add_member(workdir_copy, "b", seed=2)
    request.getfixturevalue("full_disk")
    code, _out, err = run_cli("vote", "--workdir", workdir_copy, "--method", "soft", "--bootstrap", "10", "--keep-collapsed")
    one_sentence_error(code, err, "Could not write", str(workdir_copy / "ensemble"), "No space left on device")
    assert temp_files(workdir_copy) == []


def test_full_disk_while_writing_pngs_keeps_the_images_folder(tmp_path, monkeypatch):
    """ENOSPC raised outside atomic_write (PIL writing a PNG): still one sentence, exit 1, nothing torn.

    The one-sentence part needs ``cli.user_errors`` to catch OSError (see the issue-6 report).
    """
    from members.data import medmnist

    npz = tmp_path / "d.npz"
    rng = np.random.default_rng(0)
    np.savez(npz, **{f"{s}_{kind}": (rng.integers(0, 255, (6, 8, 8), dtype=np.uint8) if kind == "images"
                                     else np.arange(6) % 2) for s in ("train", "val", "test") for kind in ("images", "labels")})
    work = tmp_path / "w"
    code, _, err = run_cli("prepare", "--workdir", work, "--npz", npz)
    assert code == 0, err
    before = files(work)
    with np.load(npz) as data:
        arrays = dict(data)
    np.savez(npz, **{**arrays, "train_labels": np.arange(6) % 3})  # other data: --force rewrites the PNGs
    calls = {"n": 0}
    real = medmnist._save_png

    def save_png(args):
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(args[1]))
        real(args)

    monkeypatch.setattr(medmnist, "_save_png", save_png)
    code, _out, err = run_cli("prepare", "--workdir", work, "--npz", npz, "--force")
    assert [p.name for p in work.iterdir() if p.name.startswith(".images")] == []  # the temp folder is gone
    assert files(work) == before or not (work / "dataset.json").exists()  # never a dataset.json over other images
    assert {k: v for k, v in files(work).items() if k.startswith("images/")} == \
        {k: v for k, v in before.items() if k.startswith("images/")}
    one_sentence_error(code, err, "No space left on device")


@pytest.mark.parametrize("code, cause, not_said", [(errno.EACCES, "no write permission for it", "disk space"),
                                                   (errno.ENOSPC, "no space left on the device holding it", "chmod")])
def test_an_oserror_outside_the_atomic_writes_says_its_one_cause(tmp_path, capsys, code, cause, not_said):
    """"Permission denied (…/members/imp2); files already written are complete: free some disk space or fix the
    permissions": two causes for one, and a path that does not exist instead of the folder that refused it."""
    import typer

    import cli

    (tmp_path / "members").mkdir()

    def import_like():
        raise OSError(code, os.strerror(code), str(tmp_path / "members" / "imp2"))

    with pytest.raises(typer.Exit) as done:
        cli.user_errors(import_like)()
    err = capsys.readouterr().err.strip()
    assert done.value.exit_code == 1 and err.startswith(f"Error: Could not write in {tmp_path / 'members'}: {cause}")
    assert not_said not in err and len(err.splitlines()) == 1


@pytest.fixture
def signal_on_rename(monkeypatch):
    """``arm(sig, nth, inside)``: send ``sig`` to this process right after the ``nth`` rename whose source path holds
    ``inside`` (a Ctrl-C or SIGTERM that lands at that very moment); SIGTERM stops as main() sets it up."""
    import cli

    previous = signal.getsignal(signal.SIGTERM)
    cli._terminate_as_interrupt()
    real_replace, real_rename = os.replace, os.rename

    def arm(sig: int, nth: int, inside: str, *, into_workdir: bool = True) -> None:
        seen = {"n": 0}

        def hook(real):
            def move(src, dst, *args, **kwargs):
                real(src, dst, *args, **kwargs)
                if inside in str(src) and not (into_workdir and inside in str(dst)):
                    seen["n"] += 1
                    if seen["n"] == nth:
                        os.kill(os.getpid(), sig)
            return move

        monkeypatch.setattr(os, "replace", hook(real_replace))
        monkeypatch.setattr(os, "rename", hook(real_rename))

    yield arm
    signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize("sig, nth", [(signal.SIGINT, 1), (signal.SIGTERM, 2)], ids=["sigint", "sigterm"])
def test_an_interruption_during_prepares_commit_waits_for_it_and_says_the_new_dataset_stands(
        workdir_copy, demo_images, signal_on_rename, sig, nth):
    """A Ctrl-C or SIGTERM after prepare's commit point cut the moves half-way (a .prepare.commit left to roll
    forward) and said "Nothing finished was changed", while the old dataset was already being replaced."""
    old = read_json(workdir_copy / "dataset.json")["fingerprint"]
    signal_on_rename(sig, nth, ".prepare.commit")
    code, _out, err = run_cli("prepare", "--workdir", workdir_copy, "--labels", demo_images / "trainLabels.csv",
                              "--images", demo_images / "images", "--seed", "1", "--force")
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert code == 130 and last == (f"Interrupted. The new dataset was committed: {workdir_copy} holds it now, and the "
                                    "members trained on the previous one are stale (vote refuses them): train them "
                                    "again."), err
    new = read_json(workdir_copy / "dataset.json")["fingerprint"]
    assert new != old and sha256_file(workdir_copy / "split.csv") == new  # whole, not half-moved
    assert sorted(p.name for p in workdir_copy.iterdir() if p.name.startswith(".")) == []


def test_an_interruption_before_prepares_commit_point_changes_nothing_and_says_so(workdir_copy, demo_images,
                                                                                   signal_on_rename):
    before = files(workdir_copy)
    signal_on_rename(signal.SIGINT, 1, ".prepare.commit", into_workdir=False)  # a new file written into the staging
    code, _out, err = run_cli("prepare", "--workdir", workdir_copy, "--labels", demo_images / "trainLabels.csv",
                              "--images", demo_images / "images", "--seed", "1", "--force")
    assert code == 130 and err.strip().splitlines()[-1].startswith("Interrupted. Nothing finished was changed"), err
    assert files(workdir_copy) == before and not (workdir_copy / ".prepare.commit").exists()


def test_an_interruption_during_votes_swap_waits_for_it_and_says_the_new_ensemble_stands(workdir_copy,
                                                                                         monkeypatch):
    """vote's folder swap: a SIGTERM right after the exchange deleted the new ensemble's staging (then holding the
    old one) and said "Nothing finished was changed" over the new ensemble."""
    import cli
    from members.infra import transaction

    add_member(workdir_copy, "a", seed=1)
    add_member(workdir_copy, "b", seed=2)
    vote = ("vote", "--workdir", workdir_copy, "--method", "soft", "--bootstrap", "10", "--keep-collapsed")
    assert run_cli(*vote)[0] == 0
    before = files(workdir_copy / "ensemble")
    real = transaction._exchange
    previous = signal.getsignal(signal.SIGTERM)
    cli._terminate_as_interrupt()

    def exchange(a, b):
        done = real(a, b)
        os.kill(os.getpid(), signal.SIGTERM)
        return done

    monkeypatch.setattr(transaction, "_exchange", exchange)
    try:
        code, _out, err = run_cli(*vote, "--seed", "3")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert code == 130 and err.strip().splitlines()[-1] == (
        f"Interrupted. The new ensemble was committed: {workdir_copy / 'ensemble'} holds it now."), err
    assert files(workdir_copy / "ensemble") != before
    assert sorted(p.name for p in workdir_copy.iterdir() if p.name.startswith(".")) == []


def test_ctrl_c_while_the_options_are_read_says_it_was_interrupted(monkeypatch):
    """A SIGINT half a second into prepare (before the command ran) exited 130 with nothing on stderr."""
    import typer

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(typer.core.TyperGroup, "make_context", interrupted)
    code, _out, err = run_cli("prepare", "--workdir", "w")
    assert code == 130 and err.strip() == ("Interrupted. Nothing finished was changed (what this run had begun is "
                                           "discarded): run the same command again.")


# ----- locks ---------------------------------------------------------------------------------

def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _train_args(work: Path, name: str, *extra) -> list:
    return ["train-member", "--workdir", work, "--preset", "tiny", "--input-size", "16", "--name", name, *extra]


def test_lock_held_by_a_live_process_refuses_a_second_run(workdir_copy):
    member = workdir_copy / "members" / "m"
    member.mkdir(parents=True)
    lock = {"pid": os.getpid(), "host": socket.gethostname()}
    (member / ".lock").write_text(json.dumps(lock))
    before = files(workdir_copy)
    code, _out, err = run_cli(*_train_args(workdir_copy, "m"))
    one_sentence_error(code, err, "Member 'm' is being trained by another process", f"pid {os.getpid()}",
                       "choose another --name", str(member / ".lock"))
    assert files(workdir_copy) == before


def test_lock_from_another_host_is_refused(tmp_path):
    (tmp_path / ".lock").write_text(json.dumps({"pid": 1, "host": "elsewhere.example"}))
    with pytest.raises(UserError, match="pid 1 on elsewhere.example"):
        MemberLock(tmp_path).acquire()


@pytest.mark.parametrize("content", ["dead", "", "{\"pid\": ", "[1, 2]", "{\"pid\": -1}", "{\"host\": \"x\"}"],
                         ids=["dead_pid", "empty", "torn", "not_object", "bad_pid", "no_pid"])
def test_stale_or_unreadable_lock_is_taken_over(tmp_path, content):
    if content == "dead":
        content = json.dumps({"pid": _dead_pid(), "host": socket.gethostname()})
    (tmp_path / ".lock").write_text(content)
    with MemberLock(tmp_path):
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
        with pytest.raises(UserError, match=f"pid {os.getpid()}"):  # and it now holds against others
            MemberLock(tmp_path).acquire()
    assert list(tmp_path.iterdir()) == []  # released, and no temp file left


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_a_lock_whose_holder_is_a_zombie_is_taken_over(tmp_path):
    """A killed run's worker re-parented to a container's PID 1 that does not reap it stays a zombie for good:
    os.kill(pid, 0) still succeeds, and its lock was held for ever."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 30
        while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        (tmp_path / ".lock").write_text(json.dumps({"pid": child.pid, "host": socket.gethostname()}))
        with MemberLock(tmp_path):
            assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    finally:
        child.wait()


def test_a_lock_that_cannot_be_written_leaves_no_temp_and_names_the_folder_and_the_one_cause(tmp_path, monkeypatch):
    """A full disk left an empty .vote.lock.<pid>.<n>.tmp that nothing cleaned, and the error named that temp file
    and said "free some disk space or fix the permissions" for a permission problem."""
    from members.infra.lock import LockUnwritable
    from members.infra.transaction import WorkdirLock

    real_open = os.open

    def full(fd, data):  # the temp file is created, its content does not fit
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(LockUnwritable) as refused:
        WorkdirLock(tmp_path, "vote").acquire()
    monkeypatch.undo()
    assert str(refused.value).startswith(f"Could not write in {tmp_path}: no space left on the device holding it")
    assert "free some disk space" in str(refused.value) and "permission" not in str(refused.value)
    assert list(tmp_path.iterdir()) == []

    def denied(path, *args, **kwargs):
        if ".lock." in str(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", denied)
    member = tmp_path / "members" / "t1"
    member.mkdir(parents=True)
    with pytest.raises(LockUnwritable) as refused:
        MemberLock(member).acquire()
    assert str(refused.value).startswith(f"Could not write in {member}: no write permission for it")
    assert f"chmod u+w {member}" in str(refused.value) and "disk space" not in str(refused.value)
    assert list(member.iterdir()) == []


def test_a_killed_runs_lock_temp_has_the_form_the_sweep_deletes(tmp_path, monkeypatch):
    """A lock temp a killed run left (between its write and its unlink) is swept as the atomic writes' are."""
    seen = []
    real_link = os.link
    monkeypatch.setattr(os, "link", lambda src, dst: (seen.append(Path(src).name), real_link(src, dst)))
    with MemberLock(tmp_path):
        pass
    assert len(seen) == 1 and atomic._TEMP_TAG.search(seen[0]), seen


def test_two_takeovers_of_one_stale_lock_cannot_both_hold_it(tmp_path):
    """Both saw the dead run's lock; the first took it over. The second must read the first's fresh lock
    (under the folder guard), not delete it as the stale one it saw: 3 of 30 races ended with two holders."""
    from members.infra.lock import _folder_guard

    (tmp_path / ".lock").write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname()}))
    first, second = MemberLock(tmp_path), MemberLock(tmp_path)
    result: dict = {}
    with _folder_guard(tmp_path):  # the first is mid-takeover: it read the stale lock and holds the guard
        thread = threading.Thread(target=lambda: result.update(error=_acquire_error(second)))
        thread.start()
        time.sleep(0.3)
        assert thread.is_alive()  # the second waits for the guard instead of deleting what it saw
        (tmp_path / ".lock").unlink()
        assert first._create(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    thread.join(10)
    assert "is being trained by another process" in result["error"]  # the first's live lock, refused
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()


def _acquire_error(lock: MemberLock) -> str:
    try:
        lock.acquire()
    except UserError as exc:
        return str(exc)
    return ""


def test_lock_file_is_never_seen_empty(tmp_path, monkeypatch):
    """The lock appears with its content (link of a complete temp file), so no one takes it for stale."""
    seen = []
    real_link = os.link

    def link(src, dst):
        seen.append(Path(src).read_text())
        real_link(src, dst)
        seen.append((tmp_path / ".lock").read_text())

    monkeypatch.setattr(os, "link", link)
    with MemberLock(tmp_path):
        pass
    assert len(seen) == 2 and all(json.loads(s)["pid"] == os.getpid() for s in seen)


# ----- training faults (in-process) ----------------------------------------------------------

def test_nan_loss_stops_with_a_lower_learning_rate_hint(workdir_copy):
    code, _out, err = run_cli(*_train_args(workdir_copy, "nan", "--lr", "1e9", "--l2", "0", "--class-weight", "none",
                                          "--set", "batch_norm=false", "--epochs", "2"))
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert code == 1 and last.startswith("Error: ") and "Traceback" not in err, err
    assert "learning rate is too high" in last and "--lr" in last
    member = workdir_copy / "members" / "nan"
    assert not (member / "metrics.json").exists() and not (member / ".lock").exists()
    add_member(workdir_copy, "a", seed=1)
    add_member(workdir_copy, "b", seed=2)
    assert not trusted_by_vote(workdir_copy, "nan")


class _Crash(BaseException):
    """Stands in for a kill: nothing catches it."""


def _crash_at_state_save(monkeypatch, n: int, after=None):
    """Crash just before the ``n``-th resume point's state.json is written; ``after(path)`` runs after the others."""
    from members.training import trainer as training

    real = atomic.write_json
    calls = {"n": 0}

    def write_json(path, obj):
        if Path(path).name == "state.json":
            calls["n"] += 1
            if calls["n"] == n:
                raise _Crash
            real(path, obj)
            if after is not None:
                after(Path(path))
            return
        real(path, obj)

    monkeypatch.setattr(training.atomic, "write_json", write_json)


def test_crash_between_the_files_of_a_resume_point_resumes_from_the_previous_one(workdir_copy, monkeypatch, tmp_path):
    """Killed after epoch 2's model and best weights were saved but before its state: resume from epoch 1, whole."""
    import keras
    from members.training import trainer as training
    from members.model.spec import load_preset

    spec = load_preset("tiny").replace(input_size=16, epochs=2)
    snap = tmp_path / "after_epoch_1"
    _crash_at_state_save(monkeypatch, 2, after=lambda p: shutil.copytree(p.parent, snap))
    with pytest.raises(_Crash):
        training.train_member(workdir_copy, spec, name="c", log=lambda line: None, show_progress=False)
    monkeypatch.undo()

    started = {}
    real_epoch = training.Trainer._run_epoch

    def run_epoch(self, model, *args, **kwargs):
        started.setdefault("weights", [w.copy() for w in model.get_weights()])
        return real_epoch(self, model, *args, **kwargs)

    monkeypatch.setattr(training.Trainer, "_run_epoch", run_epoch)
    logs = []
    result = training.train_member(workdir_copy, spec, name="c", log=logs.append, show_progress=False)
    assert any("resuming after epoch 1 (plan)" in line for line in logs), logs
    (saved,) = snap.glob("*.keras")
    expected = keras.saving.load_model(saved, safe_mode=True).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(started["weights"], expected, strict=True))
    assert [row["epoch"] for row in _history(result.member_dir)] == ["1", "2"]
    assert not (result.member_dir / ".resume").exists()


def _history(member: Path) -> list[dict]:
    import csv

    with open(member / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("torn", ["state", "model"])
def test_unreadable_resume_point_is_named_and_training_starts_over(workdir_copy, torn):
    """What a kill leaves (a torn resume point, temp files of unfinished writes) is named or cleaned."""
    from members.training import trainer as training
    from members.data.dataset import load_dataset
    from members.model.spec import load_preset

    spec = load_preset("tiny").replace(input_size=16)
    resume = workdir_copy / "members" / "u" / ".resume"
    resume.mkdir(parents=True)
    state = {"spec": spec.to_dict(), "fingerprint": load_dataset(workdir_copy).fingerprint, "stage": "plan",
             "history": [], "best_score": None, "timing": {}, "save_no": 1, "model_file": "last-1.keras",
             "best_file": None}
    (resume / "state.json").write_text(json.dumps(state)[: 40 if torn == "state" else None])
    (resume / "last-1.keras").write_bytes(b"PK\x03\x04 torn")
    leftovers = [".val.npz.k3j_x9.tmp", ".model.tmp.keras", ".metrics.json.abc.tmp"]
    for name in leftovers:
        (resume.parent / name).write_bytes(b"half")
    named = resume / ("state.json" if torn == "state" else "last-1.keras")
    logs = []
    result = training.train_member(workdir_copy, spec, name="u", log=logs.append, show_progress=False)
    assert any(f"the resume point {named} is unreadable" in line and "starting over" in line for line in logs), logs
    assert len(_history(result.member_dir)) == 1 and (result.member_dir / "metrics.json").exists()
    assert temp_files(result.member_dir) == []


def test_metrics_json_is_written_last(trained):
    member = trained / "members" / "t1"
    last = (member / "metrics.json").stat().st_mtime_ns
    others = [p for p in member.iterdir() if p.name != "metrics.json"]
    assert others and all(p.stat().st_mtime_ns <= last for p in others)


# ----- kill -9 and Ctrl-C on real train-member processes ------------------------------------

def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Proc:
    """``python cli.py train-member ...`` in a subprocess, its stderr collected line by line."""

    def __init__(self, args: list):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": ""}
        # A shell without job control starts background jobs (`make test &`, some CI runners) with
        # SIGINT ignored, and children inherit that: Python then leaves it ignored and a Ctrl-C would
        # never reach the run. Give the child the disposition of a terminal's foreground process.
        self.popen = subprocess.Popen([sys.executable, "cli.py", *map(str, args)], cwd=REPO, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      preexec_fn=_default_sigint)
        self.lines: list[str] = []
        self._done = False
        self._cv = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.popen.stderr:
            with self._cv:
                self.lines.append(line)
                self._cv.notify_all()
        with self._cv:
            self._done = True
            self._cv.notify_all()

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 180) -> re.Match:
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for line in self.lines:
                    if match := re.search(pattern, line):
                        return match
                left = deadline - time.monotonic()
                assert not self._done and left > 0, f"no line matching {pattern!r}:\n{self.stderr}"
                self._cv.wait(min(left, 1.0))

    def finish(self, timeout: float = 180) -> int:
        code = self.popen.wait(timeout)
        self._reader.join(10)
        self.stdout = self.popen.stdout.read()
        return code

    def kill(self) -> int:
        self.popen.send_signal(signal.SIGKILL)
        return self.finish()


@dataclass
class Moment:
    """What one run left behind."""

    code: int
    stderr: str
    stdout: str = ""
    pid: int = 0
    files: dict = field(default_factory=dict)
    trusted: bool | None = None
    readable: list = field(default_factory=list)
    lock: dict | None = None
    extra: dict = field(default_factory=dict)


@pytest.fixture(scope="module")
def killed(tmp_path_factory, prepared):
    """Run train-member (3 epochs) and interrupt it at several moments, then let it finish."""
    work = tmp_path_factory.mktemp("faults") / "w"
    shutil.copytree(prepared, work)
    add_member(work, "a", seed=1)
    add_member(work, "b", seed=2)
    member = work / "members" / "k"
    args = _train_args(work, "k", "--epochs", "3", "--no-tta")
    moments: dict[str, Moment] = {}

    def record(name: str, proc: Proc, code: int, **extra) -> None:
        lock = json.loads((member / ".lock").read_text()) if (member / ".lock").exists() else None
        moments[name] = Moment(code, proc.stderr, proc.stdout, proc.popen.pid,
                               {p.name for p in member.iterdir()}, trusted_by_vote(work, "k"),
                               readable(member), lock, extra)

    # 1. kill -9 as soon as the run holds the lock (it is importing TensorFlow)
    proc = Proc(args)
    deadline = time.monotonic() + 120
    while not (member / ".lock").exists() and time.monotonic() < deadline and proc.popen.poll() is None:
        time.sleep(0.005)
    assert (member / ".lock").exists(), proc.stderr
    record("kill_at_lock", proc, proc.kill())

    # 2. the next run takes the dead run's lock over; a second run meanwhile is refused; Ctrl-C after epoch 2
    proc = Proc(args)
    proc.wait_for(r"\[k\] epoch 1/3 ")
    code, _, err = run_cli(*args)
    second = {"code": code, "stderr": err, "lock": json.loads((member / ".lock").read_text())}
    proc.wait_for(r"\[k\] epoch 2/3 ")
    proc.popen.send_signal(signal.SIGINT)
    code = proc.finish()
    state = member / ".resume" / "state.json"
    assert state.exists(), f"the interrupted run (exit {code}) left no resume point:\n{proc.stderr}"
    record("ctrl_c", proc, code, second=second, state=json.loads(state.read_text()))

    # 3. kill -9 right after the last epoch's log line (saving its resume point, or writing artifacts)
    proc = Proc(args)
    proc.wait_for(r"\[k\] epoch 3/3 ")
    record("kill_in_last_epoch", proc, proc.kill())

    # 4. the same command again completes
    proc = Proc(args)
    record("rerun", proc, proc.finish())
    return work, moments


def test_kill_9_while_starting_leaves_a_member_vote_skips(killed):
    _work, moments = killed
    m = moments["kill_at_lock"]
    assert m.code == -signal.SIGKILL
    assert "metrics.json" not in m.files and m.trusted is False
    assert m.lock == {"pid": m.pid, "host": socket.gethostname()}  # the dead run's lock is left behind


def test_next_run_takes_over_the_lock_of_a_killed_run(killed):
    _work, moments = killed
    assert "[k] epoch 1/3 " in moments["ctrl_c"].stderr  # it ran despite the dead run's lock


def test_second_run_on_the_same_member_is_refused_while_the_first_runs(killed):
    _work, moments = killed
    second, first_pid = moments["ctrl_c"].extra["second"], moments["ctrl_c"].pid
    one_sentence_error(second["code"], second["stderr"], "Member 'k' is being trained by another process",
                       f"pid {first_pid}")
    assert second["lock"]["pid"] == first_pid  # the refused run did not touch the holder's lock


def test_ctrl_c_exits_130_with_a_resume_hint_and_no_traceback(killed):
    _work, moments = killed
    m = moments["ctrl_c"]
    assert m.code == 130, m.stderr
    assert "Traceback" not in m.stderr
    assert "Interrupted" in m.stderr and "run the same command again to resume" in m.stderr
    assert m.lock is None  # released
    assert "metrics.json" not in m.files and m.trusted is False
    assert len(m.extra["state"]["history"]) >= 1  # finished epochs are kept


def test_kill_9_in_the_last_epoch_leaves_nothing_vote_would_trust(killed):
    _work, moments = killed
    m = moments["kill_in_last_epoch"]
    assert m.code == -signal.SIGKILL
    assert "resuming after epoch" in m.stderr
    if "metrics.json" in m.files:  # killed after the very last write: then the member is whole
        assert m.trusted and {"model.keras", "val.npz", "test.npz"} <= set(m.readable)
    else:
        assert m.trusted is False


def test_every_visible_file_after_a_kill_is_whole(killed):
    _work, moments = killed
    for name in ("kill_at_lock", "ctrl_c", "kill_in_last_epoch"):
        visible = {f for f in moments[name].files if not f.startswith(".") and "." in f}
        assert visible <= set(moments[name].readable) | {"curves.png", "history.csv", "spec.toml"}, name


def test_rerun_resumes_after_the_last_finished_epoch(killed):
    _work, moments = killed
    saved = len(moments["ctrl_c"].extra["state"]["history"])  # Ctrl-C came after epoch 2 was logged
    assert saved == 2  # an epoch's line is printed only once its resume point is saved
    resumed = [int(n) for n in re.findall(r"resuming after epoch (\d+)", moments["kill_in_last_epoch"].stderr)]
    assert resumed == [saved]
    m = moments["rerun"]
    assert m.code == 0, m.stderr
    again = re.findall(r"resuming after epoch (\d+)", m.stderr)
    # the kill lands in the last epoch, or (rarely, on a slow host) once the member is complete: then nothing resumes
    complete = "metrics.json" in moments["kill_in_last_epoch"].files
    assert (again == []) if complete else (len(again) == 1 and int(again[0]) >= saved), m.stderr


def test_rerun_completes_a_whole_member(killed):
    work, moments = killed
    m = moments["rerun"]
    member = work / "members" / "k"
    assert m.trusted is True and "k:" in m.stdout
    metrics = read_json(member / "metrics.json")
    assert metrics["model_sha256"] == sha256_file(member / "model.keras")
    assert [row["epoch"] for row in _history(member)] == ["1", "2", "3"]
    assert not (member / ".resume").exists() and not (member / ".lock").exists()
    assert temp_files(member) == []


def test_a_ctrl_c_while_sizing_the_weights_stays_an_interrupt():
    """numpy's array coercion swallows an exception raised inside a shape's ``__len__`` (np.prod then
    returned the shape itself and a Ctrl-C became a TypeError traceback, once in CI)."""
    from types import SimpleNamespace

    from members.training.artifacts import _weight_bytes

    class InterruptedShape:
        def __len__(self):
            raise KeyboardInterrupt

        def __iter__(self):
            raise KeyboardInterrupt

    weight = SimpleNamespace(shape=InterruptedShape(), dtype="float32")
    with pytest.raises(KeyboardInterrupt):
        _weight_bytes(SimpleNamespace(weights=[weight]))
    sized = SimpleNamespace(weights=[SimpleNamespace(shape=(3, 4), dtype="float32"),
                                     SimpleNamespace(shape=(), dtype="float32")])
    assert _weight_bytes(sized) == (12 + 1) * 4


def test_sigterm_stops_train_members_like_ctrl_c_and_ends_its_workers(prepared, tmp_path):
    """`timeout` and batch schedulers send SIGTERM to the parent only: its loky workers used to go on training."""
    work = tmp_path / "w"
    shutil.copytree(prepared, work)
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve().parents[1] / "cli.py"), "train-members", "--workdir", str(work),
         "--preset", "tiny", "--preset", "tiny", "--name", "p", "--name", "q", "--jobs", "2", "--epochs", "30",
         "--set", "input_size=16"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    import psutil

    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(list((work / "members").glob("*/.lock"))) < 2:
        time.sleep(0.1)  # both workers hold their member's lock: they are at work
    workers = parent.children(recursive=True)
    assert workers, "no worker processes"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Interrupted. Finished epochs are kept: run the same command again to resume." in err
    assert "Traceback" not in err
    gone, alive = psutil.wait_procs(workers, timeout=30)
    assert not [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE], alive
    assert not (work / "members" / "p" / "metrics.json").exists()  # stopped, not finished behind the user's back
    assert list((work / "members").glob("*/.lock")) == []  # the ended workers' locks released, as the README says


def test_a_file_size_limit_during_a_weights_save_ends_with_one_sentence_not_a_crash(tmp_path) -> None:
    """h5py keeps a half-written HDF5 file open; each dropped handle printed a traceback and HDF5's own
    shutdown at exit segfaulted (exit 139). The CLI now ends such a process at once, with exit 1."""
    import subprocess
    import sys

    target = tmp_path / "best.weights.h5"
    target.write_bytes(b"the previous weights")
    script = f"""
import resource, sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
import keras
from pathlib import Path
from members.infra.errors import UserError
from members.training import artifacts
from members.training.artifacts import save_weights
import cli
artifacts.ensure_free_space = lambda *args, **kwargs: None  # a quota the pre-check cannot see: the write itself fails
model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(256), keras.layers.Dense(256)])
resource.setrlimit(resource.RLIMIT_FSIZE, (40 * 1024, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    save_weights(model, Path({str(target)!r}))
except UserError as exc:
    print("Error:", exc, file=sys.stderr)
    cli._exit_now_if_hdf5_broke(1)
print("not reached", file=sys.stderr)
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    err = "\n".join(line for line in run.stderr.splitlines() if "cuda" not in line.lower() and "absl" not in line)
    assert run.returncode == 1, run.stderr[-2000:]
    assert "Traceback" not in err and "not reached" not in err
    assert f"Could not write {target} (File too large)" in err and "ulimit -f" in err
    assert target.read_bytes() == b"the previous weights"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.weights.h5"]  # the temp file is gone


def test_a_run_killed_for_memory_resumes_with_the_disk_cache(workdir_copy, monkeypatch):
    """cache (like tensorboard) changes how a member trains, not what it learns: the resume point is used."""
    from members.training import trainer as training
    from members.model.spec import load_preset

    spec = load_preset("tiny").replace(input_size=16, epochs=2, cache="memory")
    _crash_at_state_save(monkeypatch, 2)
    with pytest.raises(_Crash):
        training.train_member(workdir_copy, spec, name="c", log=lambda line: None, show_progress=False)
    monkeypatch.undo()
    logs = []
    result = training.train_member(workdir_copy, spec.replace(cache="disk", tensorboard=True), name="c",
                                   log=logs.append, show_progress=False)
    assert any("resuming after epoch 1 (plan)" in line for line in logs), logs
    assert any("resuming with other run settings (cache 'memory' → 'disk'; tensorboard False → True)" in line
               for line in logs), logs
    assert [row["epoch"] for row in _history(result.member_dir)] == ["1", "2"]
    again = []  # complete: the same member whatever the run settings
    training.train_member(workdir_copy, spec, name="c", log=again.append, show_progress=False)
    assert any("already complete with the same spec and data" in line for line in again), again


def test_a_resume_point_of_an_older_version_lacking_newer_fields_is_used(workdir_copy, monkeypatch):
    """A run killed under an older version saved a spec without the fields added since (freeze_stride, ...): each
    counts as its default, as for a member's spec.toml (guard.spec_differences), so the run resumes."""
    from members.training import trainer as training
    from members.model.spec import load_preset

    spec = load_preset("tiny").replace(input_size=16, epochs=2)
    _crash_at_state_save(monkeypatch, 2)
    with pytest.raises(_Crash):
        training.train_member(workdir_copy, spec, name="o", log=lambda line: None, show_progress=False)
    monkeypatch.undo()
    state_path = workdir_copy / "members" / "o" / ".resume" / "state.json"
    state = json.loads(state_path.read_text())
    for added in ("freeze_stride", "swa", "snapshots"):  # fields an older version did not know
        state["spec"].pop(added, None)
    state_path.write_text(json.dumps(state))
    logs = []
    training.train_member(workdir_copy, spec, name="o", log=logs.append, show_progress=False)
    assert any("resuming after epoch 1" in line for line in logs), logs
    assert not any("starting over" in line for line in logs), logs


def test_a_write_sweeps_the_temps_of_killed_writers_of_the_same_file(tmp_path: Path) -> None:
    """A writer killed between its temp file and the rename (SIGKILL) left a hidden ``.<name>.*.tmp`` for good; the
    next write in that folder deletes such temps once untouched for an hour (once per folder and process). A
    fresh temp is left alone whatever its pid says: a writer in another container sharing the folder and the host
    name has a pid this process cannot see, and deleting its temp made its write fail."""
    from members.infra import atomic

    old = time.time() - atomic.STALE_TEMP_SECONDS - 60
    stale = tmp_path / f".preds.csv.{atomic._HOST}-{2**22 + 7}.x1y2ab_c.tmp"
    elsewhere = tmp_path / f".report.json.other-host-{2**22 + 9}.k3j9x0aa.tmp"
    fresh_dead_pid = tmp_path / f".metrics.json.{atomic._HOST}-{2**22 + 8}.a1b2c3d4.tmp"
    not_ours = tmp_path / ".notes.tmp"
    for p in (stale, elsewhere, fresh_dead_pid, not_ours):
        p.write_text("half a file")
    for p in (stale, elsewhere, not_ours):
        os.utime(p, (old, old))
    atomic.write_text(tmp_path / "preds.csv", "image,grade\n")
    assert not stale.exists() and not elsewhere.exists()
    assert fresh_dead_pid.exists() and not_ours.exists()
    assert (tmp_path / "preds.csv").read_text() == "image,grade\n"


def test_a_replaced_file_keeps_its_mode_and_a_link_is_written_through(tmp_path: Path) -> None:
    """Re-running predict --out made a private (0600) predictions file world-readable (every write was 0644),
    and replaced a symbolic link (latest.csv -> day1.csv) by a plain file, the target keeping the old rows.
    Only predict --out follows a link: a workdir cloned as a tree of links must not rewrite the original's files."""
    from members.infra import atomic

    private = tmp_path / "p.csv"
    atomic.write_text(private, "a\n")
    os.chmod(private, 0o600)
    atomic.write_text(private, "b\n")
    assert private.read_text() == "b\n" and (private.stat().st_mode & 0o777) == 0o600
    day1, latest = tmp_path / "day1.csv", tmp_path / "latest.csv"
    atomic.write_text(day1, "old\n")
    latest.symlink_to(day1.name)
    atomic.write_text(latest, "new\n", follow_link=True)
    assert latest.is_symlink() and day1.read_text() == "new\n" and latest.read_text() == "new\n"
    clone = tmp_path / "clone.json"
    clone.symlink_to(day1.name)
    atomic.write_text(clone, "mine\n")  # a workdir file: the link is replaced, its target untouched
    assert not clone.is_symlink() and clone.read_text() == "mine\n" and day1.read_text() == "new\n"
    fresh = tmp_path / "fresh.csv"
    atomic.write_text(fresh, "x\n")
    assert (fresh.stat().st_mode & 0o777) == (0o644 & ~atomic._UMASK)


def test_a_file_size_limit_is_refused_before_hdf5_writes(tmp_path):
    """Under `ulimit -f` HDF5 segfaulted in its own close (exit 139, no word); the limit is checked first."""
    import subprocess
    import sys

    script = ("import resource, signal, sys; from pathlib import Path\n"
              "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
              "resource.setrlimit(resource.RLIMIT_FSIZE, (40 * 1024, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))\n"
              "from members.training.artifacts import ensure_free_space\n"
              "from members.infra.errors import UserError\n"
              "try:\n    ensure_free_space(Path(sys.argv[1]), 2 * 2**20)\n"
              "except UserError as exc:\n    print(exc)\n")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "m")], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"Could not write in {tmp_path / 'm'} (File too large: the file-size limit of this "
                                  "process, ulimit -f, is 40 KiB and the file needs about 2,304 KiB)")
    assert "ulimit -f unlimited" in done.stdout and not (tmp_path / "m").exists()  # refused before any folder
