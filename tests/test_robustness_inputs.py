"""Every input checked with one plain sentence: labels, seeds, every spec field, encodings, corrupt JSON,
image folders as they are in the wild, spreadsheet-safe CSVs, TOML that round-trips, a full disk."""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from members.infra.errors import UserError
from members.model.spec import field_names, load_preset, load_spec_file, toml_text
from tests.helpers import add_member, add_model_member, one_sentence_error, run_cli

HOSTILE = ['a "quoted" word', "new\nline", "back\\slash \\n \\u0041", "tab\tand\r\nCRLF", "ünïcødé ✓ 眼底 🩺",
           "''' \"\"\" [table] = # not a comment", "\x00 nul \x7f del", ""]


# ----- spec.toml round-trips (item 5) -----------------------------------------------------------
@pytest.mark.parametrize("text", HOSTILE)
def test_spec_toml_round_trips_a_hostile_description_and_preset(tmp_path, text):
    spec = load_preset("tiny").replace(description=text)
    path = tmp_path / "spec.toml"
    path.write_text(spec.to_toml(preset=text), encoding="utf-8")
    assert tomllib.loads(path.read_text(encoding="utf-8"))["preset"] == text
    assert load_spec_file(path) == spec


@pytest.mark.parametrize("name", sorted(field_names()))
def test_the_toml_writer_round_trips_every_field_with_hostile_strings(name):
    """Whatever a field may hold (a free string, a path, a choice), its TOML text reads back the same."""
    spec = load_preset("tiny")
    for text in HOSTILE:
        data = spec.to_dict() | {name: text}
        assert tomllib.loads(toml_text(data)) == data
    value = getattr(spec, name)
    assert tomllib.loads(spec.to_toml())[name] == (list(value) if isinstance(value, tuple) else value)


# ----- every spec field, generically (item 3) ---------------------------------------------------
@pytest.mark.parametrize("name", sorted(field_names()))
def test_every_spec_field_refuses_a_value_of_the_wrong_kind(workdir_copy, name):
    before = sorted(p.name for p in workdir_copy.rglob("*"))
    code, _, err = run_cli("train-member", "--workdir", workdir_copy, "--preset", "tiny", "--name", "x",
                           "--set", f"{name}={{a = 1}}")  # an inline table: never a valid field value
    one_sentence_error(code, err, name)
    assert sorted(p.name for p in workdir_copy.rglob("*")) == before


@pytest.mark.parametrize("field, value, needle", [
    ("resize_schedule", 3, "a list of int values"),
    ("resize_schedule", [16, "x"], "items are each an integer"),
    ("epochs", 2.5, "whole number"),
    ("lr", float("inf"), "finite"),
    ("undersample_ratio", float("nan"), "finite"),
    ("width", 2**40, "at most 2147483647"),
    ("seed", -5, "from 0 to 4294967295"),
    ("tta", "yes", "true or false"),
])
def test_spec_values_are_checked_for_type_range_and_finiteness(field, value, needle):
    with pytest.raises(UserError, match=field) as info:
        load_preset("tiny").replace(**{field: value})
    assert needle in str(info.value)


def test_a_spec_file_that_is_not_utf8(tmp_path, workdir_copy):
    path = tmp_path / "latin1.toml"
    path.write_bytes('description = "r\xe9tine"\n'.encode("latin-1"))
    code, _, err = run_cli("train-member", "--workdir", workdir_copy, "--preset", path)
    one_sentence_error(code, err, str(path), "not UTF-8")


def test_a_spec_file_with_a_number_where_a_list_is_expected(tmp_path, workdir_copy):
    path = tmp_path / "s.toml"
    path.write_text("resize_schedule = 3\n")
    code, _, err = run_cli("train-member", "--workdir", workdir_copy, "--preset", path)
    one_sentence_error(code, err, "resize_schedule", "list")


@pytest.mark.parametrize("args, needle", [
    (("vote", "--seed", "-1"), "--seed must be an integer from 0"),
    (("vote", "--seed", str(2**33)), "--seed must be an integer from 0"),
    (("vote", "--bootstrap", str(10**12)), "n_boot must be at most 100,000"),
])
def test_vote_seeds(workdir_copy, args, needle):
    add_member(workdir_copy, "a", seed=1)
    add_member(workdir_copy, "b", seed=2)
    code, _, err = run_cli(args[0], "--workdir", workdir_copy, *args[1:])
    one_sentence_error(code, err, needle)
    assert not (workdir_copy / "ensemble").exists()


@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_prepare_seeds(tmp_path, demo_images, seed):
    work = tmp_path / "w"
    code, _, err = run_cli("prepare", "--workdir", work, "--labels", demo_images / "trainLabels.csv",
                           "--images", demo_images / "images", "--seed", seed)
    one_sentence_error(code, err, "--seed must be an integer from 0")
    assert not work.exists()


# ----- labels: CSV and npz ----------------------------------------------------------------------
def _csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "level"])
        writer.writerows(rows)
    return path


def _report(work: Path) -> dict[str, str]:
    with open(work / "data_report.csv", newline="") as f:
        return {row["image"]: row["reason"] for row in csv.DictReader(f)}


def _good_rows(demo_images: Path) -> list[tuple[str, str]]:
    with open(demo_images / "trainLabels.csv", newline="") as f:
        return [(r["image"], r["level"]) for r in csv.DictReader(f)]


@pytest.mark.parametrize("label, reason", [
    ("99999999999999999999999999", "too large"), ("1" * 5000, "too large"), ("1000", "too large"),
    ("inf", "not a non-negative integer"), ("1e400", "not a non-negative integer"), ("nan", "missing-value marker"),
    ("-1", "not a non-negative integer"), ("2.5", "not a non-negative integer"),
])
def test_bad_csv_labels_drop_their_row_only(tmp_path, demo_images, label, reason):
    rows = _good_rows(demo_images)
    rows[0] = (rows[0][0], label)
    work = tmp_path / "w"
    code, _, err = run_cli("prepare", "--workdir", work, "--labels", _csv(tmp_path / "l.csv", rows),
                           "--images", demo_images / "images")
    assert code == 0, err
    assert reason in _report(work)[rows[0][0]]
    assert json.loads((work / "dataset.json").read_text())["num_classes"] == 5


def _npz(path: Path, *, labels=None, shape=(6, 8, 8)) -> Path:
    rng = np.random.default_rng(0)
    arrays = {}
    for s in ("train", "val", "test"):
        arrays[f"{s}_images"] = rng.integers(0, 255, shape, dtype=np.uint8)
        arrays[f"{s}_labels"] = np.arange(shape[0]) % 2
    if labels is not None:
        arrays["train_labels"] = labels
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("labels, needle", [
    (np.array([0, 1, np.inf, 0, 1, 0]), "must be finite"),
    (np.array([0, 1, np.nan, 0, 1, 0]), "must be finite"),
    (np.array([0, 1, 1e30, 0, 1, 0]), "below 1000"),
    (np.array([0, 1, 2**40, 0, 1, 0], dtype=np.int64), "below 1000"),
    (np.array([0, 1, 2**63, 0, 1, 0], dtype=np.uint64), "below 1000"),
    (np.array([0, 1, -1, 0, 1, 0]), "non-negative integers"),
    (np.array([0, 1, 0.5, 0, 1, 0]), "non-negative integers"),
])
def test_bad_npz_labels(tmp_path, labels, needle):
    work = tmp_path / "w"
    code, _, err = run_cli("prepare", "--workdir", work, "--npz", _npz(tmp_path / "d.npz", labels=labels))
    one_sentence_error(code, err, "train_labels", needle)
    assert not (work / "dataset.json").exists()


@pytest.mark.parametrize("shape", [(6, 0, 0), (6, 8, 0)])
def test_npz_with_empty_images(tmp_path, shape):
    code, _, err = run_cli("prepare", "--workdir", tmp_path / "w", "--npz", _npz(tmp_path / "d.npz", shape=shape))
    one_sentence_error(code, err, "at least one pixel")


# ----- corrupt JSON artifacts -------------------------------------------------------------------
@pytest.mark.parametrize("content", ["[]", "{}", "{\"classes\": [0, 1]}", "\"text\""])
def test_corrupt_dataset_json_is_named_with_the_fix(workdir_copy, content):
    (workdir_copy / "dataset.json").write_text(content)
    code, _, err = run_cli("train-member", "--workdir", workdir_copy, "--preset", "tiny")
    one_sentence_error(code, err, "dataset.json", "prepare")


@pytest.mark.parametrize("content", ["[1, 2]", "{}", "{\"input_size\": \"big\"}"])
def test_predict_names_a_corrupt_metrics_json(trained, tmp_path, content):
    from ensemble.inference import load_member

    member = tmp_path / "t1"
    shutil.copytree(trained / "members" / "t1", member)
    (member / "metrics.json").write_text(content)
    with pytest.raises(UserError, match=r"metrics\.json.*retrain the member 't1'"):
        load_member(member)


# ----- image folders as they are in the wild (item 4) ------------------------------------------
@pytest.fixture()
def wild(tmp_path, demo_images) -> tuple[Path, list[tuple[str, str]]]:
    images = tmp_path / "images"
    shutil.copytree(demo_images / "images", images)
    return images, _good_rows(demo_images)


def _prepare(tmp_path: Path, images: Path, rows) -> tuple[Path, dict[str, str]]:
    work = tmp_path / "w"
    code, _, err = run_cli("prepare", "--workdir", work, "--labels", _csv(tmp_path / "l.csv", rows), "--images", images)
    assert code == 0, err
    return work, _report(work)


def test_a_symlink_loop_is_reported_and_the_rest_is_kept(tmp_path, wild):
    images, rows = wild
    os.symlink("loop_b.jpeg", images / "loop_a.jpeg")
    os.symlink("loop_a.jpeg", images / "loop_b.jpeg")
    work, report = _prepare(tmp_path, images, rows + [("loop_a", "1")])
    assert "symlink loop" in report["loop_a"]
    assert json.loads((work / "dataset.json").read_text())["kept"] == len(rows)


def test_a_link_to_a_file_outside_the_folder_is_refused(tmp_path, wild):
    images, rows = wild
    outside = tmp_path / "elsewhere.jpeg"
    shutil.copy(images / f"{rows[0][0]}.jpeg", outside)
    os.symlink(outside, images / "sneaky.jpeg")
    _, report = _prepare(tmp_path, images, rows + [("sneaky", "1")])
    assert "outside the images folder" in report["sneaky"]


def test_two_names_for_one_file_are_duplicates(tmp_path, wild):
    images, rows = wild
    os.symlink(f"{rows[0][0]}.jpeg", images / "alias.jpeg")
    os.link(images / f"{rows[1][0]}.jpeg", images / "hard.jpeg")
    work, report = _prepare(tmp_path, images, rows + [("alias", rows[0][1]), ("hard", rows[1][1])])
    assert "same file as another listed image" in report["alias"]
    assert "same file as another listed image" in report["hard"]
    split = (work / "split.csv").read_text()
    assert "alias" not in split and "hard" not in split


def test_byte_identical_images_are_reported_and_kept_in_one_split_unless_their_labels_differ(tmp_path, wild):
    images, rows = wild
    for i in range(4):  # four copies of one photo: without the check they would spread over the splits
        shutil.copy(images / f"{rows[0][0]}.jpeg", images / f"copy{i}.jpeg")
    shutil.copy(images / f"{rows[1][0]}.jpeg", images / "relabelled.jpeg")
    other = str((int(rows[1][1]) + 1) % 5)
    rows = rows + [(f"copy{i}", rows[0][1]) for i in range(4)] + [("relabelled", other)]
    work = tmp_path / "w"
    code, _, err = run_cli("prepare", "--workdir", work, "--labels", _csv(tmp_path / "l.csv", rows), "--images", images)
    assert code == 0, err
    assert "Found 4 byte-identical copies" in err and "each set is kept in one split" in err
    with open(work / "split.csv", newline="") as f:
        split = {r["path"]: r["split"] for r in csv.DictReader(f)}
    copies = [f"{rows[0][0]}.jpeg"] + [f"copy{i}.jpeg" for i in range(4)]
    assert len({split[c] for c in copies}) == 1
    # one photograph under two grades, as two files: both dropped, as one file listed twice with two labels is
    assert f"{rows[1][0]}.jpeg" not in split and "relabelled.jpeg" not in split
    report = {r["image"]: r["reason"] for r in csv.DictReader(open(work / "data_report.csv", newline=""))}
    assert report[rows[1][0]] == report["relabelled"] == ("byte-identical to another image that has another label "
                                                          "(every copy dropped)")
    info = json.loads((work / "dataset.json").read_text())
    assert info["identical"] == [copies] and info["kept"] == len(rows) - 2


def test_the_same_stem_with_two_extensions_is_ambiguous(tmp_path, wild):
    images, rows = wild
    name = rows[0][0]
    from PIL import Image

    Image.new("RGB", (16, 16), (9, 9, 9)).save(images / f"{name}.png")
    _, report = _prepare(tmp_path, images, rows)
    assert "ambiguous" in report[name]


def test_names_differing_only_in_case_are_ambiguous(tmp_path, wild):
    images, rows = wild
    name = rows[0][0]
    from PIL import Image

    Image.new("RGB", (16, 16), (7, 7, 7)).save(images / f"{name.upper()}.JPEG")
    rows = [(n.replace(name, name.title()) if n == name else n, lab) for n, lab in rows]  # neither spelling exactly
    _, report = _prepare(tmp_path, images, rows)
    assert "ambiguous" in report[name.title()]


# ----- spreadsheet-safe CSVs (item 7) -----------------------------------------------------------
EVIL = ["=HYPERLINK(\"http://x\")", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\tTAB", "\rCR"]


def test_data_report_cells_never_start_a_formula(tmp_path, demo_images):
    rows = _good_rows(demo_images) + [(name, "1") for name in EVIL] + [("ok-name", "=1+1")]
    work = tmp_path / "w"
    code, _, err = run_cli("prepare", "--workdir", work, "--labels", _csv(tmp_path / "l.csv", rows),
                           "--images", demo_images / "images")
    assert code == 0, err
    with open(work / "data_report.csv", newline="") as f:
        cells = [cell for row in csv.reader(f) for cell in row]
    assert all(not c.startswith(("=", "+", "-", "@", "\t", "\r")) for c in cells), cells
    assert "'=HYPERLINK(\"http://x\")" in cells and "'=1+1" in cells


def test_prediction_csv_cells_never_start_a_formula():
    from ensemble.inference import PredictionResult

    n = len(EVIL)
    result = PredictionResult(paths=EVIL, probs=np.full((n, 2), 0.5), labels=np.zeros(n, np.int64),
                              agreement=np.ones(n), confidence=np.full(n, 0.5), review=np.zeros(n, bool), skipped={},
                              method="soft", members=["a", "b"], referral_note="", classes=["=evil", "-1"])
    rows = list(csv.reader(io.StringIO(result.to_csv(), newline="")))
    cells = [c for row in rows for c in row]
    assert all(not c.startswith(("=", "+", "@", "\t", "\r")) and not (c.startswith("-") and c != "-1")
               for c in cells), cells
    assert rows[1][0] == "'" + EVIL[0] and rows[1][2] == "'=evil"


def test_csvsafe_leaves_numbers_alone():
    from members.infra.csvsafe import cell

    assert [cell(v) for v in ("-1", "+0.5", "-1e-05", "3", 4, "-", "-x")] == ["-1", "+0.5", "-1e-05", "3", 4, "'-", "'-x"]


def test_csvsafe_escaping_is_undone_without_doubt():
    """`-dash.jpg` and `'-dash.jpg` were both written `'-dash.jpg`: a leading quote was left as it was."""
    from members.infra.csvsafe import cell, uncell

    names = ["-dash.jpg", "'-dash.jpg", "''x.jpg", "'plain.jpg", "plain.jpg", "=1+1", "'", "-1", "'-1"]
    written = [cell(n) for n in names]
    assert len(set(written)) == len(names)  # no two names share a cell
    assert written[:2] == ["'-dash.jpg", "''-dash.jpg"] and written[3] == "''plain.jpg"
    assert [uncell(w) for w in written] == names  # the README's rule reads each name back


# ----- a full disk during training (item 6) -----------------------------------------------------
def _last_line_error(code: int, err: str, *needles: str) -> None:
    """Exit 1 and one ``Error:`` sentence last (epoch log lines may come before it), no traceback."""
    assert code == 1 and "Traceback" not in err, err
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert last.startswith("Error: ") and all(n in last for n in needles), last


def test_a_nearly_full_disk_stops_training_with_one_sentence(trained, tmp_path, monkeypatch):
    work = tmp_path / "w"
    shutil.copytree(trained, work)
    before = {p.name: p.read_bytes() for p in (work / "members" / "t1").iterdir() if p.is_file()}
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 2**20, 2**20))
    code, _, err = run_cli("train-member", "--workdir", work, "--preset", "tiny", "--input-size", "16",
                           "--epochs", "1", "--name", "t2")
    _last_line_error(code, err, "No space left on device", "MiB free", "free some disk space")
    assert not (work / "members" / "t2" / "metrics.json").exists()
    assert {p.name: p.read_bytes() for p in (work / "members" / "t1").iterdir() if p.is_file()} == before


def test_an_enospc_from_the_hdf5_writer_is_one_sentence(trained, tmp_path, monkeypatch):
    import keras

    work = tmp_path / "w"
    shutil.copytree(trained, work)

    def full(self, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"\x89HDF")  # a torn file
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(keras.Model, "save_weights", full)
    code, _, err = run_cli("train-member", "--workdir", work, "--preset", "tiny", "--input-size", "16",
                           "--epochs", "1", "--name", "t2")
    _last_line_error(code, err, "Could not write", "No space left on device", "free some disk space")
    resume = work / "members" / "t2" / ".resume"
    assert not any(p.name.endswith(".weights.h5") for p in resume.rglob("*")) if resume.exists() else True


# ----- predict: file names in any encoding ------------------------------------------------------
def test_predict_takes_a_file_name_that_is_not_utf8(trained, tmp_path, demo_images):
    from ensemble.inference import predict_images

    work = tmp_path / "w"
    shutil.copytree(trained, work)
    add_model_member(work, "t2", seed=2)
    code, _, err = run_cli("vote", "--workdir", work, "--method", "soft", "--bootstrap", "10", "--keep-collapsed")
    assert code == 0, err
    name = os.fsdecode(str(tmp_path).encode() + b"/\xff\xfeeye.jpeg")  # latin-1 bytes: not UTF-8
    shutil.copy(next((demo_images / "images").glob("*.jpeg")), name)
    out = tmp_path / "p.csv"
    result = predict_images(work, [name, "=missing.png"], out=out)
    assert len(result.paths) == 1 and result.skipped == {"=missing.png": "does not exist"}
    rows = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8"), newline="")))
    assert rows[1][0].endswith("\\xff\\xfeeye.jpeg") and len(rows) == 3
    assert rows[2][0] == "'=missing.png" and rows[2][-1] == "not graded: does not exist"  # formula-safe, with its row


# ----- images that change after prepare -----------------------------------------------------------
@pytest.fixture()
def own_images(tmp_path, demo_images):
    """A workdir prepared from a private copy of the demo images (so a test may break them)."""
    from members.data.dataset import prepare_csv

    data = tmp_path / "data"
    shutil.copytree(demo_images, data)
    prepare_csv(tmp_path / "w", data / "trainLabels.csv", data / "images", progress=False)
    split = pd.read_csv(tmp_path / "w" / "split.csv")
    return tmp_path / "w", data / "images", split


def test_an_image_removed_after_prepare_is_named_before_training(own_images):
    work, images, split = own_images
    gone = split.loc[split["split"] == "val", "path"].iloc[0]
    (images / gone).unlink()
    code, _, err = run_cli("train-member", "--workdir", work, "--preset", "tiny", "--input-size", "16",
                           "--epochs", "1", "--name", "t")
    _last_line_error(code, err, f"1 of the {len(split)} images listed in", repr(gone), "prepare", "--force")
    assert not (work / "members" / "t").exists()  # refused before any folder was made


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF", "PNG"])
def test_an_image_corrupted_after_prepare_stops_training_with_one_sentence(own_images, fmt):
    from PIL import Image

    from members.data.integrity import REASON_DAMAGED_PNG
    from tests.helpers import damaged_png

    work, images, split = own_images
    broken = images / split.loc[split["split"] == "train", "path"].iloc[0]
    data = broken.read_bytes()
    if fmt == "TIFF":  # a TIFF header with nothing behind it: Pillow's branch of the decoder
        data = b"II*\x00" + bytes(60)
    if fmt == "PNG":  # a PNG with a broken IDAT checksum, which Pillow reads and libpng refuses
        data = damaged_png(np.asarray(Image.open(broken).convert("RGB")), "crc")
    broken.write_bytes(data[:20] if fmt == "JPEG" else data)
    args = ("train-member", "--workdir", work, "--preset", "tiny", "--input-size", "16", "--epochs", "1", "--name",
            "t", "--set", "cache=none")
    code, _, err = run_cli(*args)  # prepare's stamps see other bytes under the name before any decoding
    _last_line_error(code, err, "are other pictures now than the ones prepare recorded",
                     repr(broken.relative_to(images).as_posix()))
    (work / "image_stamps.csv").unlink()  # a workdir prepared before the stamps: the decoder finds it
    code, _, err = run_cli(*args)
    reason = REASON_DAMAGED_PNG if fmt == "PNG" else "image file does not decode"
    _last_line_error(code, err, f"{broken} could not be read: {reason}", "changed after prepare", "--force")
    detail = {"TIFF": "cannot be decoded by Pillow (not an image Pillow recognises)", "JPEG": "Invalid JPEG data",
              "PNG": "Invalid PNG data"}[fmt]
    assert detail in err
    assert not (work / "members" / "t" / "metrics.json").exists()
