"""Tests for members/training/parallel.py: several members on loky, Dask and in-process; failures; mirrored on two CPUs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import joblib
import pytest
from typer.testing import CliRunner

from members.infra.errors import UserError
from members.training.parallel import _Job, plan_members, run_job, train_members
from members.model.spec import load_preset, parse_set

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """40 balanced 32 px demo images, prepared with a test split (a few seconds)."""
    from members.data.dataset import prepare_csv
    from members.data.synthetic import write_demo_data

    base = tmp_path_factory.mktemp("parallel")
    write_demo_data(base / "data", images=40, size=32, seed=0, balanced=True, progress=False)
    prepare_csv(base / "w", base / "data" / "trainLabels.csv", base / "data" / "images",
                val_fraction=0.2, test_fraction=0.2, progress=False)
    return base / "w"


def member_seed(workdir: Path, name: str) -> int:
    return tomllib.loads((workdir / "members" / name / "spec.toml").read_text())["seed"]


# ----- planning: no TensorFlow ---------------------------------------------------------------
def test_parse_set_reads_toml_values_and_keeps_plain_words():
    assert parse_set(["l2=0.001", "head=ordinal", "tta=true", "resize_schedule=[16, 32]", "epochs = 3"]) == {
        "l2": 0.001, "head": "ordinal", "tta": True, "resize_schedule": [16, 32], "epochs": 3}
    with pytest.raises(UserError, match="FIELD=VALUE.*'dropout'"):
        parse_set(["dropout"])


def test_duplicate_presets_get_distinct_names_and_seeds():
    planned = plan_members(["tiny", "tiny", "small", "tiny"], seed=10, overrides={"epochs": 2, "lr": None})
    assert [p.name for p in planned] == ["tiny", "tiny-2", "small", "tiny-3"]
    assert [p.spec.seed for p in planned] == [10, 11, 12, 13]
    assert all(p.spec.epochs == 2 and p.spec.lr == load_preset(p.preset).lr for p in planned)
    # without a base seed each member's own spec seed is the base
    assert [p.spec.seed for p in plan_members(["tiny", "tiny"], sets=["seed=7"])] == [7, 8]


def test_a_bad_member_fails_alone_in_planning():
    planned = plan_members(["tiny", "nope", "tiny"], names=["a", "b", "c"], sets=["dropout=0.5"])
    assert [p.error is None for p in planned] == [True, False, True]
    assert planned[1].error.startswith("Unknown preset 'nope'")  # the user's sentence, no class name
    with pytest.raises(UserError, match="dropout must be"):  # the same mistake for every member: one sentence
        plan_members(["tiny", "small"], sets=["dropout=2"])
    mixed = plan_members(["tiny", "nope"], sets=["dropout=2"])  # two different mistakes: each member's own row
    assert [p.spec for p in mixed] == [None, None] and "dropout must be" in mixed[0].error


@pytest.mark.parametrize("kwargs,message", [
    ({"names": ["a"]}, "got 1 names, 2 presets"),
    ({"names": ["a", "a"]}, "unique; 'a'"),
    ({"names": ["a", "../b"]}, "not a plain folder name"),
    ({"overrides": {"epochs": 1}, "sets": ["epochs=2"]}, "epochs is given both"),
])
def test_bad_names_and_options_fail_fast(kwargs, message):
    with pytest.raises(UserError, match=message):
        plan_members(["tiny", "tiny"], **kwargs)


def test_run_job_returns_a_failure_record_instead_of_raising(tmp_path):
    job = _Job(str(tmp_path), "m", "tiny", load_preset("tiny"), None, echo=False, show_progress=False)
    run = run_job(job)
    assert not run.ok and run.error.startswith("UserError: ") and "not prepared" in run.error
    text = (tmp_path / "members" / "m" / "train.log").read_text()
    assert "[m] failed: UserError: " in text and "Traceback" not in text  # a plain sentence needs no traceback


def test_an_unexpected_failure_keeps_its_traceback_in_the_log_not_on_the_console(tmp_path, monkeypatch, capsys):
    import members.training.trainer as trainer

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(trainer, "train_member", broken)
    run = run_job(_Job(str(tmp_path), "m", "tiny", load_preset("tiny"), None, echo=True, show_progress=False))
    assert not run.ok and run.error == "RuntimeError: a bug"
    err = capsys.readouterr().err
    assert "[m] failed: RuntimeError: a bug" in err and "Traceback" not in err
    assert "Traceback (most recent call last)" in (tmp_path / "members" / "m" / "train.log").read_text()


def test_unprepared_workdir_and_bad_options_are_user_errors(tmp_path, workdir):
    with pytest.raises(UserError, match="not prepared"):
        train_members(tmp_path, ["tiny"])
    with pytest.raises(UserError, match="--jobs must be at least 1"):
        train_members(workdir, ["tiny"], jobs=0)
    with pytest.raises(UserError, match="--scheduler is used by --backend dask"):
        train_members(workdir, ["tiny"], backend="loky", scheduler="tcp://x:1")


# ----- training: tiny members, one epoch -----------------------------------------------------
def test_loky_trains_two_members_and_reports_the_failed_one(workdir):
    from cli import app

    result = CliRunner().invoke(app, ["train-members", "--workdir", str(workdir), "--preset", "tiny", "--preset", "tiny",
                                      "--preset", "nope", "--jobs", "2", "--seed", "3"])
    assert result.exit_code == 1, result.output
    assert "nope" in result.output and "Unknown preset 'nope'" in result.output
    assert "tiny-2" in result.output and "failed" in result.output  # the summary table
    assert "1 of 3 members failed: nope; the reasons are above" in result.output and "<name>" not in result.output
    for name, seed in (("tiny", 3), ("tiny-2", 4)):
        metrics = json.loads((workdir / "members" / name / "metrics.json").read_text())
        assert metrics["name"] == name and metrics["epochs_run"] == 1 and "qwk" in metrics["val"]
        assert member_seed(workdir, name) == seed
        assert "started (preset tiny" in (workdir / "members" / name / "train.log").read_text()
    assert not (workdir / "members" / "nope").exists()
    # the same command again keeps the complete members instead of training them again
    again = train_members(workdir, ["tiny", "tiny", "nope"], jobs=2, seed=3, log=lambda line: None)
    assert [r.status for r in again.results] == ["kept", "kept", "failed"]
    assert again.results[1].score("val") == json.loads((workdir / "members" / "tiny-2" / "metrics.json").read_text())["val"]["qwk"]


def test_dask_cluster_trains_a_member_with_limited_threads(workdir):
    import distributed
    # in-process workers keep the test fast; the code path is the one of a remote scheduler
    tf_was_loaded = "tensorflow" in sys.modules
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        lines: list[str] = []
        outcome = train_members(workdir, ["tiny"], names=["dasky"], backend="dask", scheduler=cluster.scheduler_address,
                                sets=["input_size=16"], log=lines.append)
    assert outcome.failed == []
    (run,) = outcome.results
    assert "dask worker inproc://" in run.host  # it ran on the cluster, not in the caller
    assert run.ok and run.metrics["input_size"] == 16 and run.score("val") is not None
    expected = max(1, joblib.cpu_count() // 2)  # two member slots on this host
    if run.threads == 0:  # in-process worker: TensorFlow already ran in this test process, its threads are fixed
        assert tf_was_loaded, "the worker did not limit TensorFlow's threads"
    else:
        assert run.threads == expected
    assert any(line.startswith("[dasky] done in") and "val QWK" in line for line in lines)
    assert any("--nthreads 1" in line for line in lines)  # two threads per worker: warned
    assert (workdir / "members" / "dasky" / "metrics.json").exists()


def test_one_thread_dask_cluster_runs_on_the_cluster_and_reports_a_locked_member(workdir):
    import distributed
    lock = workdir / "members" / "locked" / ".lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))  # held by a live process
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        outcome = train_members(workdir, ["tiny"], names=["locked"], backend="dask", scheduler=cluster.scheduler_address,
                                log=lambda line: None)
    (run,) = outcome.results
    assert "dask worker inproc://" in run.host
    assert outcome.failed == [("locked", run.error)] and "is being trained by another process" in run.error
    assert not (workdir / "members" / "locked" / "metrics.json").exists()


def test_a_run_refused_by_a_live_lock_leaves_the_training_members_log_alone(workdir):
    """The loser of a train-members race wrote its lines into (and over) the winner's train.log, and the summary
    sent the user there for a reason that log did not hold."""
    import subprocess

    folder = workdir / "members" / "locked"
    folder.mkdir(parents=True, exist_ok=True)
    winner = subprocess.Popen(["sleep", "60"])  # another live process holds the member
    (folder / ".lock").write_text(json.dumps({"pid": winner.pid, "host": socket.gethostname()}))
    (folder / "train.log").write_text("the winner's epoch lines\n")
    lines = []
    try:
        outcome = train_members(workdir, ["tiny"], names=["locked"], backend="sequential", log=lines.append)
    finally:
        winner.kill()
        winner.wait()
    (run,) = outcome.results
    assert "is being trained by another process" in run.error and not run.log_file
    assert (folder / "train.log").read_text() == "the winner's epoch lines\n"
    assert "1 of 1 members failed: locked; the reasons are above" in lines[-1] and "train.log" not in lines[-1]


MIRRORED = textwrap.dedent("""
    import sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from members.training.parallel import train_members
    outcome = train_members(sys.argv[1], ["tiny"], names=["mirrored"], backend="sequential", sets=["strategy=mirrored"])
    sys.exit(1 if outcome.failed else 0)
""")


def test_mirrored_strategy_trains_one_epoch_on_two_logical_cpus(workdir):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-c", MIRRORED, str(workdir)], cwd=ROOT, env=env, check=False,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "mirrored strategy over 2 devices: global batch 32" in proc.stderr
    metrics = json.loads((workdir / "members" / "mirrored" / "metrics.json").read_text())
    assert metrics["epochs_run"] == 1


def test_a_killed_loky_worker_does_not_fail_the_members_beside_it(tmp_path):
    """kill -9 (or the out-of-memory killer) on one loky worker failed every member then running, healthy ones too:
    the unfinished members train once more in a new pool; a second break is reported."""
    from members.model.spec import MemberSpec
    from members.training.parallel import _execute, _Job
    from tests.helpers import killed_once

    jobs = [_Job(str(tmp_path), name, "tiny", MemberSpec(), 1, echo=False, show_progress=False) for name in "abc"]
    lines = []
    runs = list(_execute(jobs, "loky", 2, None, lines.append, run=killed_once))
    assert sorted(r.name for r in runs) == ["a", "b", "c"] and all(r.ok for r in runs)
    assert (tmp_path / ".killed-a").exists()
    assert sum("a worker process was killed" in line for line in lines) == 1, lines


KILLED_RUN = textwrap.dedent("""
    import sys
    from members.model.spec import MemberSpec
    from members.training.parallel import _execute, _Job
    from tests.helpers import locked_sleeper

    jobs = [_Job(sys.argv[1], name, "tiny", MemberSpec(), 1, echo=False, show_progress=False) for name in "ab"]
    list(_execute(jobs, "loky", 2, None, print, run=locked_sleeper))
""")


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (one re-parented to a PID 1 that does not reap)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_loky_workers_end_with_a_killed_run_and_their_locks_are_taken_over(tmp_path):
    """kill -9 of train-members left its loky workers training on, re-parented to init: they held the members'
    locks (a rerun at once failed them as busy) and their memory for minutes. They now end within seconds."""
    import signal
    import time

    from members.infra.lock import MemberLock

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(tmp_path)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pid_files = [tmp_path / "a.pid", tmp_path / "b.pid"]
    deadline = time.monotonic() + 40
    while not all(p.exists() and p.read_text() for p in pid_files):
        assert proc.poll() is None and time.monotonic() < deadline, "the workers never started"
        time.sleep(0.2)
    workers = [int(p.read_text()) for p in pid_files]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 5
    while any(map(_running, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        assert not any(map(_running, workers)), "loky workers outlived the killed run"
    finally:
        for pid in workers:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
    for name in "ab":  # a rerun takes the dead workers' locks over
        with MemberLock(tmp_path / "members" / name):
            pass
