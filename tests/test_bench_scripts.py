"""The benchmark scripts: a user's workdir and the committed result files are never replaced unasked, and bad
input is one sentence (no traceback)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import _common
from bench import sets as bench_sets
from members.infra.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def demo_set(monkeypatch, demo_images):
    """A benchmark set ``demo`` read from the conftest's demo images (the workdir ``prepared`` holds it)."""
    monkeypatch.setattr(bench_sets, "SHARED", demo_images.parent)
    monkeypatch.setitem(bench_sets.SETS, "demo", bench_sets.RealSet("demo", demo_images.name, labels="trainLabels.csv"))
    return "demo"


@pytest.fixture
def other_workdir(tmp_path) -> Path:
    """A user's workdir prepared from another dataset, with a (fake) member in it."""
    from members.data.dataset import prepare_csv
    from members.data.synthetic import write_demo_data

    data = tmp_path / "user-data"
    write_demo_data(data, images=30, size=32, seed=11, balanced=True, progress=False)
    work = tmp_path / "user-work"
    prepare_csv(work, data / "trainLabels.csv", data / "images", progress=False)
    (work / "members" / "mine").mkdir(parents=True)
    (work / "members" / "mine" / "metrics.json").write_text("{}")
    return work


def _snapshot(work: Path) -> dict[str, bytes]:
    return {str(p.relative_to(work)): p.read_bytes() for p in sorted(work.rglob("*")) if p.is_file()}


# ----- item 1: a workdir holding another dataset is never prepared again unasked ---------------------------------
def test_prepare_set_refuses_a_workdir_of_another_dataset_and_changes_nothing(demo_set, other_workdir):
    before = _snapshot(other_workdir)
    with pytest.raises(UserError) as info:
        bench_sets.prepare_set(demo_set, other_workdir)
    message = str(info.value)
    assert str(other_workdir) in message and "--force" in message and "\n" not in message
    assert _snapshot(other_workdir) == before


def test_prepare_set_with_force_prepares_it_from_the_set(demo_set, other_workdir, demo_images):
    bench_sets.prepare_set(demo_set, other_workdir, force=True)
    info = json.loads((other_workdir / "dataset.json").read_text())
    assert info["source"] == f"csv:{demo_images / 'trainLabels.csv'}"


def test_prepare_set_keeps_a_workdir_that_holds_the_set_and_its_members(demo_set, trained, tmp_path):
    work = tmp_path / "w"
    shutil.copytree(trained, work)
    before = _snapshot(work)
    bench_sets.prepare_set(demo_set, work)
    assert _snapshot(work) == before  # nothing rewritten: member t1 still counts


def test_accuracy_refuses_a_users_workdir_before_writing_anything(other_workdir):
    from bench import accuracy

    before = _snapshot(other_workdir)
    with pytest.raises(UserError, match="--force"):
        accuracy.main(["synthetic", "--workdir", str(other_workdir), "--quick", "--train-only"])
    assert _snapshot(other_workdir) == before
    assert not (other_workdir.parent / f"{other_workdir.name}-data").exists()  # no demo set written beside it


# ----- item 2: quick runs in their own workdir; bad options refused before any data is written -------------------
def test_quick_and_full_runs_never_share_a_workdir():
    from bench.accuracy import default_workdir

    for dataset in ("retinamnist", "synthetic"):
        assert default_workdir(dataset, True, 0) != default_workdir(dataset, False, 0)
    assert default_workdir("idrid", False, 0) == ROOT / "bench" / "work" / "idrid"  # the full run's is unchanged
    assert default_workdir("idrid", True, 0).name == "idrid-quick"


@pytest.mark.parametrize("option", [["--folds", "1"], ["--seed", "-1"], ["--jobs", "0", "--folds", "2"]])
def test_accuracy_refuses_bad_options_before_any_data_is_written(tmp_path, option):
    from bench import accuracy

    work = tmp_path / "w"
    with pytest.raises(UserError):
        accuracy.main(["synthetic", "--workdir", str(work), *option])
    assert list(tmp_path.iterdir()) == []


# ----- item 3: vote --quick keeps the full run's figures; its help shows no absolute path -----------------------
def test_vote_quick_writes_its_own_file(tmp_path, monkeypatch, capsys):
    from bench import vote

    monkeypatch.setattr(vote, "RESULTS", tmp_path)
    monkeypatch.setattr(vote, "MEMBERS", 3)
    monkeypatch.setattr(vote, "ROWS", 400)
    monkeypatch.setattr(vote, "SCALE_MEMBERS", (2, 3))
    monkeypatch.setattr(vote, "SCALE_ROWS", (200, 400))
    assert vote.main(["--quick"]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["vote-quick.json"]
    with pytest.raises(SystemExit):
        vote.main(["--help"])
    shown = capsys.readouterr().out
    assert "bench/results/vote.json" in shown and str(ROOT) not in shown


# ----- item 4: the committed result files of the workdir benchmarks ---------------------------------------------
def test_a_default_result_file_of_other_workdirs_is_refused_before_any_work(tmp_path, monkeypatch, prepared):
    from bench import appearance

    default = tmp_path / "appearance.json"
    default.write_text(json.dumps({"scored": {"eyepacs512-scaled": {}, "idrid": {}}}))  # a committed file's shape
    monkeypatch.setattr(appearance, "DEFAULT_OUT", default)
    with pytest.raises(UserError, match="--out"):
        appearance.main([str(prepared)])
    assert json.loads(default.read_text()) == {"scored": {"eyepacs512-scaled": {}, "idrid": {}}}


def test_the_result_records_its_workdirs_and_a_rerun_on_them_may_replace_it(tmp_path, monkeypatch, prepared):
    from bench import appearance

    default = tmp_path / "appearance.json"
    monkeypatch.setattr(appearance, "DEFAULT_OUT", default)
    assert appearance.main([str(prepared), "--seed", "2"]) == 0
    first = json.loads(default.read_text())
    assert first["workdir_paths"] == [str(prepared.resolve())] and first["seed"] == 2
    assert first["scored"][prepared.name]["workdir"] == str(prepared.resolve())
    assert appearance.main([str(prepared), "--seed", "2"]) == 0  # the same workdirs: allowed


def test_guard_reads_the_older_files_that_only_name_their_workdirs(tmp_path):
    default = tmp_path / "clustered-bootstrap.json"
    default.write_text(json.dumps({"workdirs": {"bench/work/eyepacs512": {}}}))
    ours = ROOT / "bench" / "work" / "eyepacs512"
    assert _common.guard_default_output(None, default, [ours], "--json") == default
    with pytest.raises(UserError, match="--json"):
        _common.guard_default_output(None, default, [tmp_path / "demo"], "--json")
    explicit = tmp_path / "mine.json"
    assert _common.guard_default_output(explicit, default, [tmp_path / "demo"], "--json") == explicit


# ----- the committed result files of the set benchmarks (accuracy, free_members, monitor) ------------------------
def test_a_set_benchmark_on_a_users_workdir_keeps_the_committed_figures(tmp_path, monkeypatch, other_workdir):
    from bench import accuracy, free_members, monitor

    committed = {"benchmark": {"command": "python bench/accuracy.py synthetic --quick --workdir /work/runs/q"}}
    results = tmp_path / "bench" / "results"
    results.mkdir(parents=True)
    (results / "synthetic-quick.json").write_text(json.dumps(committed))
    (results / "free-members-demo.json").write_text(json.dumps({"workdir": "/work/runs/free-demo"}))
    (results / "monitor-demo.json").write_text(json.dumps({"workdir": "/work/runs/monitor-demo"}))
    monkeypatch.setattr(accuracy, "ROOT", tmp_path)
    monkeypatch.setattr(free_members, "ROOT", tmp_path)
    monkeypatch.setattr(monitor, "ROOT", tmp_path)
    monkeypatch.setitem(free_members.SETS, "demo", None)
    monkeypatch.setitem(monitor.SETS, "demo", None)
    before = _snapshot(other_workdir)
    for main, argv, name in ((accuracy.main, ["synthetic", "--quick"], "synthetic-quick.json"),
                             (free_members.main, ["demo"], "free-members-demo.json"),
                             (monitor.main, ["demo"], "monitor-demo.json")):
        with pytest.raises(UserError, match=f"holds the committed figures of a run on /work/runs/.*pass --json PATH"):
            main([*argv, "--workdir", str(other_workdir), "--force"])
        assert (results / name).read_text() != ""
    assert _snapshot(other_workdir) == before  # refused before any work, --force or not
    assert json.loads((results / "synthetic-quick.json").read_text()) == committed


def test_set_guard_allows_the_documented_command_and_the_recorded_workdir(tmp_path):
    from bench import accuracy

    default = tmp_path / "retinamnist-defaults.json"
    default.write_text(json.dumps({"benchmark": {"command": "python bench/accuracy.py retinamnist --members "
                                                            "defaults --workdir bench/work/rmn-x"}}))
    own = accuracy.default_workdir("retinamnist", False, 0)
    recorded = ROOT / "bench" / "work" / "rmn-x"
    assert _common.recorded_set_workdir(json.loads(default.read_text()), accuracy.workdir_of) == recorded
    # the script's own workdir (here or in another clone's bench/work) and the recorded one may replace the figures
    assert _common.guard_set_output(None, default, own, own, accuracy.workdir_of) == default
    clone = tmp_path / "clone" / "bench" / "work" / "rmn-x"
    assert _common.guard_set_output(None, default, clone, own, accuracy.workdir_of) == default
    with pytest.raises(UserError, match="bench/work/rmn-x"):
        _common.guard_set_output(None, default, tmp_path / "mine", own, accuracy.workdir_of)
    mine = tmp_path / "mine.json"
    assert _common.guard_set_output(mine, default, tmp_path / "mine", own, accuracy.workdir_of) == mine
    # a command without --workdir ran in the script's default for its arguments (the seed's own synthetic set)
    seeded = {"benchmark": {"command": "python bench/accuracy.py synthetic --seed 3"}}
    assert _common.recorded_set_workdir(seeded, accuracy.workdir_of) == ROOT / "bench" / "work" / "synthetic-s3"


def test_ablate_merges_only_rows_of_the_same_seed_and_split(tmp_path):
    from bench.ablate import check_merge

    path = tmp_path / "ablate-idrid.json"
    legacy = {"dataset": "idrid", "variants": {"small defaults": {"preset": "small"}}}  # no seed recorded: seed 0
    check_merge(legacy, path, 0, "f" * 64)
    with pytest.raises(UserError, match="seed 0, this run's is 1"):
        check_merge(legacy, path, 1, "f" * 64)
    recorded = {"variants": {"a": {"seed": 0, "fingerprint": "a" * 64, "workdir": "/x"}}}
    with pytest.raises(UserError, match="--json"):
        check_merge(recorded, path, 0, "b" * 64)


# ----- item 5: a variant without its colon ---------------------------------------------------------------------
def test_a_variant_without_its_colon_is_refused_not_trained_as_the_base():
    from bench.ablate import _parse_variant

    with pytest.raises(UserError, match='small-128: input_size=128'):
        _parse_variant("small-128 input_size=128", "small")
    with pytest.raises(UserError, match='"lite:"'):
        _parse_variant("lite", "small")
    assert _parse_variant("wide-112@wide: input_size=112", "small") == ("wide-112", "wide", {"input_size": 112})
    assert _parse_variant("lite (defaults):", "lite") == ("lite (defaults)", "lite", {})


# ----- item 6: one sentence, no traceback ----------------------------------------------------------------------
@pytest.mark.parametrize("argv", [["bench/clustered.py", "/nonexistent"], ["bench/appearance.py", "/nonexistent"],
                                  ["bench/tta.py", "/nonexistent"], ["bench/tables.py", "bench/results/vote.json"]])
def test_bad_input_is_one_sentence_and_exit_1(argv):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and len(lines) == 1, done.stderr
    assert argv[1] in lines[0]


def test_sets_help_says_what_it_lists():
    done = subprocess.run([sys.executable, "bench/sets.py", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and "usage" in done.stdout
