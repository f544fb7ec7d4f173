"""Robustness of the workdir, the member specs and the options, through the CLI.

Every case runs one command in-process and checks the exit code, the one-sentence message
and that the workdir is byte for byte as before (no half-written member, no report). The
refusals all happen before any training, so the file runs in seconds.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from members.infra.atomic import load_npz, save_npz
from members.model.spec import list_presets
from tests.helpers import add_member, one_sentence_error, run_cli  # noqa: E402

# ----- helpers -------------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root``: kind, mtime and content hash, to prove nothing changed."""
    if not root.exists():
        return {}
    out = {}
    for p in sorted(root.rglob("*")):
        key = p.relative_to(root).as_posix()
        if p.is_dir():
            out[key] = ("dir",)
        else:
            out[key] = ("file", p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
    return out



def refused(work: Path, args: list, *needles: str) -> str:
    """Run a command that must fail with one sentence and leave ``work`` exactly as it was."""
    before = snapshot(work)
    existed = work.exists()
    code, out, err = run_cli(*args)
    line = one_sentence_error(code, err, *needles)
    assert out == ""
    assert work.exists() == existed and snapshot(work) == before
    return line



@pytest.fixture()
def voteable(workdir_copy) -> Path:
    """The prepared workdir with two complete members, ``t1`` and ``t2``."""
    add_member(workdir_copy, "t1", seed=1)
    add_member(workdir_copy, "t2", seed=2)
    return workdir_copy


def vote_args(work: Path) -> list:
    return ["vote", "--workdir", work, "--bootstrap", "20", "--keep-collapsed"]


def edit_npz(path: Path, **changes) -> None:
    arrays = load_npz(path)
    arrays.update(changes)
    save_npz(path, **{k: v for k, v in arrays.items() if v is not None})


def edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


# ----- workdir state -------------------------------------------------------------------------

def test_train_member_on_an_empty_dir_says_prepare_first(tmp_path):
    work = tmp_path / "empty"
    work.mkdir()
    refused(work, ["train-member", "--workdir", work, "--preset", "tiny"],
            f"{work} is not prepared", "python cli.py prepare --workdir")
    assert list(work.iterdir()) == []


def test_vote_on_an_empty_dir_says_prepare_first(tmp_path):
    work = tmp_path / "empty"
    work.mkdir()
    refused(work, vote_args(work), f"{work} is not prepared")
    assert list(work.iterdir()) == []


def test_vote_on_a_missing_dir_creates_nothing(tmp_path):
    refused(tmp_path / "nope", vote_args(tmp_path / "nope"), "is not prepared")


def test_train_member_on_a_file_instead_of_a_folder(tmp_path):
    path = tmp_path / "a_file"
    path.write_text("x")
    code, _, err = run_cli("train-member", "--workdir", path, "--preset", "tiny")
    one_sentence_error(code, err, "is not prepared")
    assert path.read_text() == "x"


def test_vote_with_no_members(workdir_copy):
    refused(workdir_copy, vote_args(workdir_copy), "vote needs at least two complete members; found 0",
            "python cli.py train-member")


def test_vote_with_one_member(workdir_copy):
    add_member(workdir_copy, "t1")
    refused(workdir_copy, vote_args(workdir_copy), "found 1 (t1)")


def test_split_csv_edited_after_prepare(voteable):
    with open(voteable / "split.csv", "a") as f:
        f.write("extra.png,0,train\n")
    refused(voteable, vote_args(voteable), "split.csv is missing or was changed after prepare", "the members stay valid")


def test_corrupt_dataset_json(voteable):
    (voteable / "dataset.json").write_text('{"classes": [0, 1')
    refused(voteable, vote_args(voteable), "dataset.json is not valid JSON")


def _prepare_args(work: Path, data: Path, *extra) -> list:
    return ["prepare", "--workdir", work, "--labels", data / "trainLabels.csv", "--images", data / "images", *extra]


def test_prepare_twice_with_the_same_data_changes_nothing(workdir_copy, demo_images):
    before = snapshot(workdir_copy)
    code, _out, err = run_cli(*_prepare_args(workdir_copy, demo_images))
    assert code == 0, err
    assert "already prepared from this data; nothing changed" in " ".join(err.split())  # rich wraps lines
    assert snapshot(workdir_copy) == before


def test_prepare_writes_a_deleted_or_damaged_split_again_and_the_members_stay_valid(workdir_copy, demo_images):
    """vote says to run prepare again when split.csv is gone or changed: prepare must then mend it, not say
    'nothing changed' and leave the workdir stuck."""
    split = (workdir_copy / "split.csv").read_bytes()
    for damage in ("delete", "overwrite"):
        if damage == "delete":
            (workdir_copy / "split.csv").unlink()
        else:
            (workdir_copy / "split.csv").write_text("path,label,split\n")
        code, _out, err = run_cli(*_prepare_args(workdir_copy, demo_images))
        assert code == 0, err
        said = "".join(err.split())  # rich wraps long paths anywhere: compare without the spaces
        assert "split.csvwasmissingorchanged:writtenagainfromthesamedata" in said
        assert "data_report.csv" not in said  # only the damaged file is named
        assert (workdir_copy / "split.csv").read_bytes() == split
    report = (workdir_copy / "data_report.csv").read_bytes()
    (workdir_copy / "data_report.csv").unlink()
    code, _out, err = run_cli(*_prepare_args(workdir_copy, demo_images))
    said = "".join(err.split())
    assert code == 0 and "data_report.csvwasmissingorchanged" in said and "split.csvwas" not in said, err
    assert (workdir_copy / "data_report.csv").read_bytes() == report
    from members.data.dataset import load_dataset

    assert len(load_dataset(workdir_copy).table) == split.count(b"\n") - 1  # the fingerprint holds again


def test_prepare_says_when_only_a_newer_drop_rule_differs(workdir_copy):
    """A workdir prepared before a drop rule existed (one flat frame kept then): the data are the same, so the
    refusal says the old workdir and its members still work, instead of 'prepared from other data'."""
    from members.data.dataset import _what_differs

    info = json.loads((workdir_copy / "dataset.json").read_text())
    reason = "image is one flat colour (a black, white or blank frame, or a 1-pixel image): nothing to grade"
    old = {**info, "kept": info["kept"] + 1, "skipped": {}}
    words = _what_differs(old, {**info, "skipped": {reason: 1}})
    assert words.startswith("from this data by an earlier version of prepare, which kept rows this one drops "
                            f"(1 row(s): {reason})") and "if nothing else changed, the workdir and its members still " \
                                                         "work as they are" in words
    from members.data.labels import REASON_COPY_CONFLICT  # copies under two grades: images, the old split works

    words = _what_differs({**info, "kept": info["kept"] + 2, "skipped": {}}, {**info, "skipped": {REASON_COPY_CONFLICT: 2}})
    assert "the workdir and its members still work as they are" in words and "cannot train" not in words
    webp = "image is an animated WebP, which TensorFlow cannot decode; save one frame as PNG or JPEG"
    assert "cannot train on such rows" in _what_differs(old, {**info, "skipped": {webp: 1}})
    # another source, or a count the new reasons do not explain: other data, as before
    assert _what_differs({**old, "source_sha256": "other"}, {**info, "skipped": {reason: 1}}).startswith("from other data")
    assert _what_differs({**old, "kept": info["kept"] + 5}, {**info, "skipped": {reason: 1}}).startswith("from other data")


def test_images_moved_after_prepare_are_prepared_again_from_their_new_place_without_force(tmp_path, demo_images):
    """train-member advised `prepare ... --force` for images moved away, which invalidates the members; a plain
    prepare from the new place keeps them."""
    data = tmp_path / "d"
    shutil.copytree(demo_images, data)
    work = tmp_path / "w"
    code, _out, err = run_cli(*_prepare_args(work, data))
    assert code == 0, err
    add_member(work, "t1", seed=1)
    add_member(work, "t2", seed=2)
    moved = data.rename(tmp_path / "moved")
    line = refused(work, ["train-member", "--workdir", work, "--preset", "tiny"], "are no longer in",
                   f"If they were moved, run `python cli.py prepare --workdir {work} --labels <the labels CSV> "
                   "--images <their new folder>` with the options used before and without --force")
    assert line.endswith("if they are gone, restore them.")
    code, _out, err = run_cli(*_prepare_args(work, moved))
    assert code == 0, err
    code, _out, err = run_cli(*vote_args(work))
    assert code == 0 and "Skipping" not in err, err  # the members were kept


def test_a_corrupt_member_metrics_json_names_the_retrain_command_and_the_vote_without_it(voteable):
    add_member(voteable, "t3", seed=3)
    t1 = voteable / "members" / "t1"
    (t1 / "spec.toml").write_text('preset = "tiny"\n')
    (t1 / "metrics.json").write_text("{broken")
    refused(voteable, vote_args(voteable), f"{t1 / 'metrics.json'} is not valid JSON",
            f"retrain the member 't1' (`python cli.py train-member --workdir {voteable} --preset {t1 / 'spec.toml'} "
            f"--name t1 --force`), or leave it out (`python cli.py vote --workdir {voteable} --members t2,t3`)")
    (t1 / "metrics.json").write_text("{}")
    (t1 / "val.npz").write_bytes(b"PK not really")
    refused(voteable, vote_args(voteable), f"Error: {t1 / 'val.npz'} ", "retrain the member 't1'", "--members t2,t3")


def test_prepare_twice_with_other_data_needs_force(workdir_copy, demo_images, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(demo_images, other)
    csv = other / "trainLabels.csv"
    csv.write_text("".join(line for i, line in enumerate(csv.read_text().splitlines(True)) if i != 1))  # drop a row
    refused(workdir_copy, _prepare_args(workdir_copy, other), "was prepared from other data", "--force")


def test_prepare_with_another_seed_needs_force(workdir_copy, demo_images):
    refused(workdir_copy, _prepare_args(workdir_copy, demo_images, "--seed", "5"),
            "was prepared from the same data with other options (seed 0 then, 5 now), which give another split")


def test_members_are_refused_after_prepare_force_with_other_data(voteable, demo_images):
    """After prepare --force, members of the old split are skipped, each named with its reason (vote named only
    the first and told the user to delete it); named in --members, one is refused."""
    code, _, err = run_cli(*_prepare_args(voteable, demo_images, "--seed", "5", "--force"))
    assert code == 0, err
    line = refused(voteable, vote_args(voteable), "found 0 (none; t1, t2 were trained on another split)")
    code, _, err = run_cli(*vote_args(voteable))
    for name in ("t1", "t2"):
        assert f"Skipping member {name!r}: trained on another split of the data" in err
    assert "retrain it with train-member --force" in err and line in err
    refused(voteable, [*vote_args(voteable), "--members", "t1,t2"], "Member 't1' does not match this workdir's split",
            str(voteable / "members" / "t1" / "metrics.json"), "fingerprint")


# ----- members whose predictions disagree with the split -------------------------------------

@pytest.mark.parametrize("case", [
    "npz_fingerprint", "metrics_fingerprint", "metrics_classes", "metrics_num_classes", "row_ids_shuffled",
    "row_ids_fewer", "labels_changed", "probs_extra_class", "probs_fewer_rows", "probs_not_normalised",
    "probs_nan", "missing_array",
])
def test_member_that_disagrees_with_the_split_is_named(voteable, case):
    member = voteable / "members" / "t2"
    test_npz, metrics = member / "test.npz", member / "metrics.json"
    data = load_npz(test_npz)
    n, k = data["probs"].shape
    named = test_npz
    if case == "npz_fingerprint":
        edit_npz(test_npz, fingerprint=np.array("0" * 64))
    elif case == "metrics_fingerprint":  # another split: skipped when all members vote, refused when named
        edit_json(metrics, fingerprint="f" * 64)
        refused(voteable, vote_args(voteable), "found 1 (t1; t2 was trained on another split)")
        refused(voteable, [*vote_args(voteable), "--members", "t1,t2"], "Member 't2'", str(metrics), "etrain")
        return
    elif case == "metrics_classes":
        edit_json(metrics, classes=[0, 1, 2, 3, 5])
        named = metrics
    elif case == "metrics_num_classes":
        edit_json(metrics, num_classes=k + 1)
        named = metrics
    elif case == "row_ids_shuffled":
        edit_npz(test_npz, row_ids=data["row_ids"][::-1].copy())
    elif case == "row_ids_fewer":
        edit_npz(test_npz, row_ids=data["row_ids"][:-1])
    elif case == "labels_changed":
        edit_npz(test_npz, labels=(data["labels"] + 1) % k)
    elif case == "probs_extra_class":
        edit_npz(test_npz, probs=np.full((n, k + 1), 1 / (k + 1), dtype=np.float32))
    elif case == "probs_fewer_rows":
        edit_npz(test_npz, probs=data["probs"][:-1])
    elif case == "probs_not_normalised":
        edit_npz(test_npz, probs=data["probs"] * 2)
    elif case == "probs_nan":
        probs = data["probs"].copy()
        probs[0, 0] = np.nan
        edit_npz(test_npz, probs=probs)
    elif case == "missing_array":
        edit_npz(test_npz, row_ids=None)
    refused(voteable, vote_args(voteable), "Member 't2'", str(named), "etrain")  # "Retrain"/"retrain"


@pytest.mark.parametrize("case", ["garbage", "truncated", "empty", "directory"])
def test_corrupt_npz_is_named(voteable, case):
    path = voteable / "members" / "t2" / "val.npz"
    if case == "garbage":
        path.write_bytes(b"PK\x03\x04 not really a zip at all")
    elif case == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif case == "empty":
        path.write_bytes(b"")
    else:
        path.unlink()
        path.mkdir()
    refused(voteable, vote_args(voteable), str(path))


def test_missing_npz_of_a_complete_member_is_named(voteable):
    path = voteable / "members" / "t2" / "test.npz"
    path.unlink()
    refused(voteable, vote_args(voteable), "Member 't2' is damaged", f"{path} is missing", "--force")


@pytest.mark.parametrize("content", ['{"name": "t2", ', "[1, 2, 3]", "\xff\xfe"], ids=["truncated", "not_object", "binary"])
def test_corrupt_metrics_json_is_named(voteable, content):
    path = voteable / "members" / "t2" / "metrics.json"
    path.write_bytes(content.encode("latin-1"))
    refused(voteable, vote_args(voteable), str(path))


def test_pickled_npz_is_never_loaded(voteable):
    path = voteable / "members" / "t2" / "val.npz"
    arrays = load_npz(path)
    np.savez(path, **{**arrays, "probs": np.array([{"evil": 1}], dtype=object)})  # needs pickle to load
    refused(voteable, vote_args(voteable), str(path), "pickled objects")


def test_incomplete_member_is_skipped_by_name(voteable):
    add_member(voteable, "t3", seed=3, complete=False)
    code, _out, err = run_cli(*vote_args(voteable), "--method", "soft", "--thresholds", "off")
    assert code == 0, err
    assert "Skipping member 't3': incomplete: no metrics.json (training did not finish)" in err
    report = json.loads((voteable / "ensemble" / "report.json").read_text())
    assert sorted(report["members"]) == ["t1", "t2"] and "t3" in report["skipped"]
    import os
    import socket

    (voteable / "members" / "t3" / ".lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    code, _out, err = run_cli(*vote_args(voteable), "--method", "soft", "--thresholds", "off")
    assert code == 0 and f"Skipping member 't3': incomplete: it is training right now (pid {os.getpid()}" in err


def test_asking_for_an_incomplete_member_by_name(voteable):
    (voteable / "members" / "t2" / "metrics.json").unlink()
    refused(voteable, [*vote_args(voteable), "--members", "t1,t2"], "found 1 (t1)")


def test_unknown_member_name_lists_the_complete_ones(voteable):
    refused(voteable, [*vote_args(voteable), "--members", "t1,zz"], "No member named 'zz'",
            "the complete members are t1, t2")


# ----- specs and options ---------------------------------------------------------------------

def _train(work: Path, *extra) -> list:
    return ["train-member", "--workdir", work, *extra]


def test_unknown_preset_lists_the_known_ones(workdir_copy):
    refused(workdir_copy, _train(workdir_copy, "--preset", "huge"),
            "Unknown preset 'huge'", "known presets: " + ", ".join(list_presets()))


def test_missing_spec_file(workdir_copy, tmp_path):
    refused(workdir_copy, _train(workdir_copy, "--preset", tmp_path / "nope.toml"), "nope.toml does not exist")


def test_unknown_field_in_a_toml_spec(workdir_copy, tmp_path):
    spec = tmp_path / "mine.toml"
    spec.write_text('architecture = "convnet"\nepoch = 3\ninput_size = 16\n')
    refused(workdir_copy, _train(workdir_copy, "--preset", spec),
            f"Unknown spec field in {spec}: 'epoch' (did you mean 'epochs'?)", "Known fields:")


def test_invalid_toml_spec_names_the_file(workdir_copy, tmp_path):
    spec = tmp_path / "mine.toml"
    spec.write_text("epochs = = 3\n")
    refused(workdir_copy, _train(workdir_copy, "--preset", spec), f"Spec file {spec} is not valid TOML")


def test_out_of_range_value_in_a_toml_spec(workdir_copy, tmp_path):
    spec = tmp_path / "mine.toml"
    spec.write_text("epochs = 0\ninput_size = 16\ndepth = 2\n")
    refused(workdir_copy, _train(workdir_copy, "--preset", spec), "epochs must be at least 1")


@pytest.mark.parametrize("option,value,needle", [
    ("--epochs", "0", "epochs must be at least 1"),
    ("--input-size", "4", "input_size must be at least 8 pixels"),
    ("--dropout", "1.0", "dropout must be in [0, 1)"),
    ("--dropout", "-0.1", "dropout must be in [0, 1)"),
    ("--batch-size", "0", "batch_size must be at least 1"),
    ("--lr", "0", "lr must be positive"),
    ("--lr-decay", "1.5", "lr_decay"),
    ("--depth", "0", "depth must be at least 1"),
    ("--head", "sigmoid", "head must be one of softmax, ordinal"),
    ("--class-weight", "lots", "class_weight must be one of"),
    ("--set", "rotation=lots", "rotation must be of type float"),
    ("--set", "epochs=0", "epochs must be at least 1"),  # a field that also has its own option
    ("--set", "lr=-1", "lr must be positive"),
    ("--set", "epoch=3", "Unknown spec field in override: 'epoch' (did you mean 'epochs'?)"),
    ("--set", "dropout", "--set takes FIELD=VALUE"),
    ("--name", "../escape", "is not a plain folder name"),
    ("--name", ".resume", "is not a plain folder name"),
], ids=lambda v: v if isinstance(v, str) and v.startswith("--") else None)
def test_bad_option_is_refused_before_training(workdir_copy, option, value, needle):
    refused(workdir_copy, _train(workdir_copy, "--preset", "tiny", option, value), needle)
    assert not (workdir_copy / "members").exists()


def test_option_and_set_for_the_same_field(workdir_copy):
    refused(workdir_copy, _train(workdir_copy, "--preset", "tiny", "--epochs", "2", "--set", "epochs=3"), "epochs")


def test_resize_schedule_on_the_article_preset(workdir_copy):
    refused(workdir_copy, _train(workdir_copy, "--preset", "article", "--resize-schedule", "128,256"),
            "Progressive resizing needs a resolution-agnostic head", "architecture 'article'")


@pytest.mark.parametrize("schedule,needle", [
    ("16,32", "resize_schedule must end at input_size"),
    ("32,16", "resize_schedule must increase strictly"),
    ("4,16", "resize_schedule must list input sizes of at least 8 pixels"),
    ("sixteen", "--resize-schedule takes sizes separated by commas"),
])
def test_resize_schedule_that_contradicts_the_input_size(workdir_copy, schedule, needle):
    refused(workdir_copy, _train(workdir_copy, "--preset", "tiny", "--input-size", "16", "--resize-schedule", schedule),
            needle)


def test_depth_too_large_for_the_input_size(workdir_copy):
    refused(workdir_copy, _train(workdir_copy, "--preset", "tiny", "--input-size", "16", "--depth", "5"),
            "depth 5 halves the image 5 times, too often for input size 16")


def test_prepare_with_npz_and_labels(tmp_path, demo_images):
    work = tmp_path / "w"
    refused(work, ["prepare", "--workdir", work, "--labels", demo_images / "trainLabels.csv",
                   "--images", demo_images / "images", "--npz", tmp_path / "x.npz"], "Give exactly one data source")


def test_prepare_with_npz_and_medmnist(tmp_path):
    work = tmp_path / "w"
    refused(work, ["prepare", "--workdir", work, "--npz", tmp_path / "x.npz", "--medmnist", "retinamnist"],
            "Give exactly one data source")


def test_prepare_labels_without_images(tmp_path, demo_images):
    work = tmp_path / "w"
    refused(work, ["prepare", "--workdir", work, "--labels", demo_images / "trainLabels.csv"],
            "--labels needs --images")


def test_prepare_without_a_source(tmp_path):
    refused(tmp_path / "w", ["prepare", "--workdir", tmp_path / "w"], "Give exactly one data source")


@pytest.mark.parametrize("extra,needle", [
    (["--val-fraction", "0"], "val_fraction must be between 0 and 1"),
    (["--test-fraction", "1.5"], "test_fraction must be between 0 and 1"),
    (["--val-fraction", "0.5", "--test-fraction", "0.5"], "val_fraction + test_fraction must be below 1"),
])
def test_prepare_bad_fractions(workdir_copy, demo_images, extra, needle):
    refused(workdir_copy, _prepare_args(workdir_copy, demo_images, *extra, "--force"), needle)


def test_prepare_into_a_file(tmp_path, demo_images):
    target = tmp_path / "a_file"
    target.write_text("x")
    code, _, err = run_cli(*_prepare_args(target, demo_images))
    one_sentence_error(code, err, "is a file; pass a folder")
    assert target.read_text() == "x"


def test_prepare_with_a_missing_images_folder(tmp_path, demo_images):
    work = tmp_path / "w"
    refused(work, ["prepare", "--workdir", work, "--labels", demo_images / "trainLabels.csv",
                   "--images", tmp_path / "nope"], "Images folder", "does not exist")


@pytest.mark.parametrize("extra,needle", [
    (["--bootstrap", "0"], "--bootstrap (n_boot) must be at least 1 resample"),
    (["--coverage", "0"], "--coverage (target_coverage) must be a share in (0, 1]"),
    (["--coverage", "1.5"], "--coverage (target_coverage) must be a share in (0, 1]"),
])
def test_vote_bad_options(voteable, extra, needle):
    refused(voteable, ["vote", "--workdir", voteable, *extra], needle)


def test_vote_unknown_method_is_a_usage_error(voteable):
    before = snapshot(voteable)
    code, _out, err = run_cli("vote", "--workdir", voteable, "--method", "magic")
    assert code == 2 and "Invalid value for '--method'" in err and "Traceback" not in err
    assert snapshot(voteable) == before


def test_a_file_where_a_member_folder_goes_is_named_as_such(workdir_copy):
    (workdir_copy / "members").mkdir(exist_ok=True)
    (workdir_copy / "members" / "f").write_text("not a folder")
    code, _, err = run_cli("train-member", "--workdir", workdir_copy, "--preset", "tiny", "--name", "f", "--epochs", "1")
    assert code == 1 and "Traceback" not in err
    assert "a file stands where this command needs a folder; move that file away" in " ".join(err.split())
    assert (workdir_copy / "members" / "f").read_text() == "not a folder"


def _with_hashes(folder: Path) -> None:
    """Give an ``add_member`` member a model file and the hashes training writes into metrics.json."""
    from members.infra.atomic import sha256_file
    from members.training.artifacts import predictions_sha256

    (folder / "model.keras").write_bytes(b"weights of " + folder.name.encode())
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics.update(model_sha256=sha256_file(folder / "model.keras"), predictions_sha256=predictions_sha256(folder))
    (folder / "metrics.json").write_text(json.dumps(metrics))


def test_vote_refuses_a_member_whose_model_or_predictions_are_not_its_own(voteable):
    """A swapped test.npz scored another member's predictions under this one's name; a deleted model.keras
    gave an ensemble that predict then refused, after the working one had been replaced."""
    _with_hashes(voteable / "members" / "t1")  # t2 as an older version left it: no hashes, still voted
    code, _out, err = run_cli(*vote_args(voteable))
    assert code == 0, err
    _with_hashes(voteable / "members" / "t2")
    t1 = voteable / "members" / "t1"
    original = (t1 / "test.npz").read_bytes()
    shutil.copy(voteable / "members" / "t2" / "test.npz", t1 / "test.npz")
    refused(voteable, vote_args(voteable), "Member 't1'", "test.npz is not the file its training wrote",
            "retrain the member 't1' (`python cli.py train-member --workdir", "--name t1 --force`), or leave it out")
    (t1 / "test.npz").write_bytes(original)
    (t1 / "model.keras").unlink()
    refused(voteable, vote_args(voteable), "Member 't1' is damaged: its metrics.json says its training finished, but",
            "t1/model.keras is missing", "--force")
    metrics = json.loads((t1 / "metrics.json").read_text())
    (t1 / "model.keras").write_bytes(b"weights of t1")
    (t1 / "metrics.json").write_text(json.dumps({**metrics, "predictions_sha256": "abc"}))
    refused(voteable, vote_args(voteable), "Member 't1'", "has a predictions_sha256 that is not {val, test} SHA-256s")


def test_hash_fields_of_the_wrong_kind_are_refused_and_a_legacy_member_gets_a_note(voteable, capsys):
    t1 = voteable / "members" / "t1"
    _with_hashes(t1)
    _with_hashes(voteable / "members" / "t2")
    metrics = json.loads((t1 / "metrics.json").read_text())
    for key, value in (("predictions_sha256", {}), ("predictions_sha256", None), ("model_sha256", ""),
                       ("model_sha256", None), ("predictions_sha256", {"val": 5, "test": "x"})):
        (t1 / "metrics.json").write_text(json.dumps({**metrics, key: value}))
        refused(voteable, vote_args(voteable), "Member 't1'", f"metrics.json has a {key} that is not")
    legacy = {k: v for k, v in metrics.items() if k != "predictions_sha256"}  # trained before the hashes
    (t1 / "metrics.json").write_text(json.dumps(legacy))
    code, _out, err = run_cli(*vote_args(voteable))
    assert code == 0, err
    assert "Note: member t1 was trained before predictions were hashed" in err
    assert f"only retraining records the hashes: `python cli.py train-member --workdir {voteable} --preset " in err
    t2 = voteable / "members" / "t2"  # two such members: one line for both, not one per member
    t2_metrics = json.loads((t2 / "metrics.json").read_text())
    (t2 / "metrics.json").write_text(json.dumps({k: v for k, v in t2_metrics.items() if k != "predictions_sha256"}))
    code, _out, err = run_cli(*vote_args(voteable))
    assert code == 0, err
    notes = [line for line in err.splitlines() if "before predictions were hashed" in line]
    assert len(notes) == 1 and "members t1, t2 were trained" in notes[0] and "--name <name> --force` for each" in notes[0]


def test_a_dataset_json_that_is_no_object_is_one_sentence(voteable, demo_images):
    (voteable / "dataset.json").write_text("[]")
    code, _out, err = run_cli(*_prepare_args(voteable, demo_images))
    assert code == 1 and "dataset.json is corrupt (not a JSON object); pass --force" in err
    assert "Traceback" not in err


def test_a_deleted_dataset_json_does_not_let_prepare_cut_off_the_members(voteable, demo_images):
    (voteable / "dataset.json").unlink()
    split = (voteable / "split.csv").read_bytes()
    code, _out, err = run_cli(*_prepare_args(voteable, demo_images, "--seed", "5"))
    assert code == 1 and "has no dataset.json, yet holds t1, t2" in err and "--force" in err
    assert (voteable / "split.csv").read_bytes() == split
