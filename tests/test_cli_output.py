"""Quiet, complete output: no TensorFlow start-up noise, wide tables and help when piped, --version, --json, TensorBoard."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from members.model.spec import list_presets, load_preset
from tests.helpers import add_member, run_cli

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "TF_CPP_MIN_LOG_LEVEL", "CNN_ENSEMBLE_QUIET")}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)


def test_version():
    code, out, _err = run_cli("--version")
    assert code == 0 and out.strip() == "cnn-ensemble 0.1.0"


def test_piped_help_is_not_cut():
    result = _run("cli.py", "train-member", "--help")
    assert result.returncode == 0
    assert "--resize-schedule" in result.stdout and "…" not in result.stdout


def test_cli_choices_are_the_library_tuples():
    import cli
    from ensemble.calibration import CALIBRATIONS
    from ensemble.combiners import METHODS
    from ensemble.vote import SELECT_BY, THRESHOLD_MODES
    from members.training.parallel import BACKENDS
    from members.model.spec import CACHES

    values = lambda choice: tuple(m.value for m in choice)  # noqa: E731
    assert values(cli.Method) == ("all", *METHODS) and values(cli.SelectBy) == SELECT_BY
    assert values(cli.Thresholds) == THRESHOLD_MODES and values(cli.Calibrate) == CALIBRATIONS
    assert values(cli.CacheMode) == CACHES and values(cli.Backend) == BACKENDS


def test_help_shows_choices_and_defaults_without_numpy():
    vote = _run("cli.py", "vote", "--help").stdout
    assert "<auto|on|off>" in vote and "[default: auto]" in vote and "[default: none]" in vote
    train = _run("cli.py", "train-member", "--help").stdout
    assert "<softmax|ordinal|regression>" in train and "<none|ben>" in train and "preset's value" in train
    result = _run("-X", "importtime", "cli.py", "--help")
    assert result.returncode == 0 and "numpy" not in result.stderr


def test_flags_are_shown_bare_in_every_help():
    """A flag takes no value: ``--force <bool>`` (Typer 0.29's rendering) read as ``--force true``, then refused."""
    import cli

    names = {c.name or c.callback.__name__.replace("_", "-") for c in cli.app.registered_commands}
    commands = [[], *[[name] for name in sorted(names)]]
    assert len(commands) > 8
    for command in commands:
        shown = _run("cli.py", *command, "--help").stdout
        assert "--help" in shown and "<bool>" not in shown, command
    assert "<path>" in _run("cli.py", "presets", "--help").stdout  # an option with a value keeps its type


def test_presets_json_is_complete_and_stderr_is_quiet():
    result = _run("cli.py", "presets", "--json")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no absl / oneDNN / CUDA start-up lines
    rows = json.loads(result.stdout)
    assert [r["preset"] for r in rows] == list_presets()
    for r in rows:
        spec = load_preset(r["preset"])
        assert r["head"] == spec.head and r["pooling"] == spec.pooling
        assert isinstance(r["params"], int) and r["params"] > 0
        assert r["spec"] == json.loads(json.dumps(spec.to_dict()))  # values, not display texts ("64→128")
        assert isinstance(r["spec"]["input_size"], int)


def test_workers_inherit_the_quiet_import():
    code = ("import sys, members; from members.infra.quiet import _QuietFinder; "
            "print(any(isinstance(f, _QuietFinder) for f in sys.meta_path))")
    assert _run("-c", code, env_extra={"CNN_ENSEMBLE_QUIET": "1"}).stdout.strip() == "True"
    assert _run("-c", code).stdout.strip() == "False"


def test_verbose_leaves_tensorflow_alone(monkeypatch):
    from members.infra import quiet

    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    monkeypatch.setenv(quiet.ENV, "1")
    monkeypatch.setattr(sys, "meta_path", [quiet._QuietFinder(), *sys.meta_path])  # a quiet install came first
    quiet.install(verbose=True)
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0" and os.environ[quiet.ENV] == "0"
    assert not any(isinstance(f, quiet._QuietFinder) for f in sys.meta_path)


def test_quiet_capture_replays_on_failure(capfd):
    from members.infra.quiet import stderr_captured

    with stderr_captured():
        os.write(2, b"dropped noise\n")
    with pytest.raises(RuntimeError), stderr_captured():
        os.write(2, b"the real reason\n")
        raise RuntimeError("import failed")
    err = capfd.readouterr().err
    assert "the real reason" in err and "dropped noise" not in err
    with pytest.raises(KeyboardInterrupt), stderr_captured():  # Ctrl-C during TensorFlow's start-up: no replay
        os.write(2, b"oneDNN custom operations are on\n")
        raise KeyboardInterrupt
    assert "oneDNN" not in capfd.readouterr().err


def test_vote_json(workdir_copy):
    add_member(workdir_copy, "a", seed=1)
    add_member(workdir_copy, "b", seed=2)
    code, out, err = run_cli("vote", "--workdir", workdir_copy, "--method", "soft", "--bootstrap", "10", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report == json.loads((workdir_copy / "ensemble" / "report.json").read_text())
    assert set(report["members"]) == {"a", "b"} and report["best_method"] in report["ensembles"]
    code, out, err = run_cli("vote", "--workdir", workdir_copy, "--method", "soft", "--method", "stack",
                             "--bootstrap", "10", "--json", "--thresholds", "off")
    assert code == 0, err
    assert set(json.loads(out)["ensembles"]) == {"soft", "stack"}  # a repeated --method fits each (it kept the last)
    code, out, err = run_cli("vote", "--workdir", workdir_copy, "--method", "soft", "--bootstrap", "10",
                             "--thresholds", "off")
    assert code == 0 and "replaced the previous ensemble" in " ".join(err.split()) and "combiners stack are not in" in \
        " ".join(err.split())


def test_tensorboard_logs(workdir_copy):
    import tensorflow as tf

    code, _out, err = run_cli("train-member", "--workdir", workdir_copy, "--preset", "tiny", "--input-size", "16",
                              "--epochs", "2", "--name", "tb", "--tensorboard")
    assert code == 0, err
    for split, tags in (("train", {"epoch_loss", "epoch_accuracy", "epoch_learning_rate"}),
                        ("validation", {"epoch_loss", "epoch_accuracy", "epoch_qwk"})):
        files = list((workdir_copy / "members" / "tb" / "logs" / split).glob("events.out.tfevents.*"))
        assert len(files) == 1, files
        seen: dict[str, list[int]] = {}
        for event in tf.compat.v1.train.summary_iterator(str(files[0])):
            for value in event.summary.value:
                seen.setdefault(value.tag, []).append(event.step)
        assert tags <= set(seen), (split, seen)
        assert seen["epoch_loss"] == [1, 2]


def test_an_empty_argument_is_refused_not_read_as_the_current_folder(tmp_path, monkeypatch):
    """`-w ''` (an unset shell variable) became the path '.', so prepare wrote dataset.json into the current
    folder; `demo-data ' '` made a folder named by a space."""
    from tests.helpers import run_cli

    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli("prepare", "-w", "", "--labels", "x.csv", "--images", "img")
    assert code == 2 and "an empty value after -w (an unset shell variable?)" in err
    code, _, err = run_cli("demo-data", " ")
    assert code == 2 and "an empty value as argument 2" in err
    code, _, err = run_cli("predict", "--workdir=", "x.jpeg")
    assert code == 2 and "an empty value for --workdir" in err
    code, _, err = run_cli("prepare", "-w=", "--labels", "x.csv", "--images", "img")  # click read '=' as the value
    assert code == 2 and "an empty value for -w" in err
    assert list(tmp_path.iterdir()) == []


def test_columns_zero_does_not_blank_the_output():
    """COLUMNS=0 made Rich print nothing at all, usage errors included."""
    import subprocess

    for columns in ("0", "²", "abc"):  # '²' is a digit to str.isdigit, not to int()
        env = {**os.environ, "COLUMNS": columns}
        out = subprocess.run([sys.executable, "cli.py", "--help"], capture_output=True, text=True, env=env,
                             cwd=Path(__file__).resolve().parents[1])
        assert "Usage" in out.stdout and "train-member" in out.stdout and "Traceback" not in out.stderr


def test_set_takes_one_field_once_and_width_is_not_cut_silently():
    """--set $'epochs=1\\nlr=5' set epochs and dropped lr; --set lr=0.1 --set lr=0.2 kept the last; a width above
    max_width was cut to it silently while spec.toml recorded the width asked."""
    from members.infra.errors import UserError
    from members.model.spec import MemberSpec, parse_set

    with pytest.raises(UserError, match="holds more"):
        parse_set(["epochs=1\nlr=5"])
    with pytest.raises(UserError, match="is given twice"):
        parse_set(["lr=0.1", "lr=0.2"])
    assert parse_set(["head=ordinal", "resize_schedule=[16, 32]"]) == {"head": "ordinal", "resize_schedule": [16, 32]}
    from members.model.spec import check_trainable

    wide = MemberSpec().replace(width=100_000)  # a member trained before the check must still load for predict
    with pytest.raises(UserError, match=r"width \(100000\) is the first block's filters and max_width \(256\)"):
        check_trainable(wide)
    check_trainable(MemberSpec())


def test_prepare_refuses_a_size_it_would_ignore(tmp_path):
    """prepare --npz FILE --size 30 was accepted and the size ignored (it only chooses a --medmnist download)."""
    from tests.helpers import one_sentence_error, run_cli

    code, _, err = run_cli("prepare", "-w", tmp_path / "w", "--npz", tmp_path / "x.npz", "--size", "30")
    one_sentence_error(code, err, "--size chooses the size of a --medmnist download; an npz keeps the size it was "
                                  "saved with: drop --size 30.")
    assert not (tmp_path / "w").exists()
