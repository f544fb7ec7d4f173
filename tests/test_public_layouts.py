"""Public DR sets as they come: DDR's headerless lists and grade 5, given splits that leak, Messidor's renamed
extensions, IDRiD's parallel folders, unzipped Mac archives, named grades in order."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from rich.console import Console

from tests.helpers import add_member, one_sentence_error, run_cli

RNG = np.random.default_rng(7)


def _image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(RNG.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(path)


def _eyes(folder: Path, patients: int = 12, ext: str = ".png") -> list[tuple[str, int]]:
    """``<patient>_<left|right><ext>`` images, grades 0-4 cycling by patient."""
    rows = []
    for p in range(patients):
        for eye in ("left", "right"):
            name = f"{p + 10}_{eye}{ext}"
            _image(folder / name)
            rows.append((name, p % 5))
    return rows


def _prepare(work: Path, *args) -> tuple[int, str, str]:
    """prepare's exit code, stdout and stderr; stderr's notes are joined into one line (the console wraps them
    at its width, which differs between a terminal and a test worker), its last line kept apart."""
    code, out, err = run_cli("prepare", "--workdir", work, *args)
    lines = err.strip().splitlines()
    notes = " ".join(" ".join(lines[:-1]).split())
    return code, " ".join(out.split()), f"{notes}\n{lines[-1] if lines else ''}"


def test_a_headerless_ddr_list_with_grade_5_is_read_and_5_can_be_left_out(tmp_path):
    rows = _eyes(tmp_path / "img", patients=15)
    for i in range(4):  # DDR's grade 5: ungradable frames
        _image(tmp_path / "img" / f"u{i}_left.png")
    lines = [f"{n} {g}" for n, g in rows] + [f"u{i}_left.png 5" for i in range(4)]
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    code, _out, err = _prepare(tmp_path / "w", "--labels", tmp_path / "train.txt", "--images", tmp_path / "img")
    assert code == 0, err
    assert "has no header; its first column is read as the image names" in err
    assert "--exclude-label 5" in err  # six grades: a hint that 5 may be ungradable
    assert json.loads((tmp_path / "w" / "dataset.json").read_text())["classes"] == [0, 1, 2, 3, 4, 5]
    code, _out, err = _prepare(tmp_path / "w5", "--labels", tmp_path / "train.txt", "--images", tmp_path / "img",
                               "--exclude-label", "5")
    assert code == 0, err
    meta = json.loads((tmp_path / "w5" / "dataset.json").read_text())
    assert meta["classes"] == [0, 1, 2, 3, 4] and meta["kept"] == 30
    report = pd.read_csv(tmp_path / "w5" / "data_report.csv")
    assert len(report) == 4 and set(report["reason"]) == {"label left out (--exclude-label)"}
    code, _out, err = _prepare(tmp_path / "w5", "--labels", tmp_path / "train.txt", "--images", tmp_path / "img")
    assert code == 1 and "with other --exclude-label (5 then, none now)" in err
    code, _out, err = _prepare(tmp_path / "w6", "--labels", tmp_path / "train.txt", "--images", tmp_path / "img",
                               "--exclude-label", "ungradable")
    last = err.strip().splitlines()[-1]  # after the note on the missing header
    assert code == 1 and "Traceback" not in err and last.startswith("Error: --exclude-label 'ungradable' matches no row")
    assert not (tmp_path / "w6" / "dataset.json").exists()


def test_byte_identical_copies_in_several_sub_folders_are_read_once(tmp_path):
    """HAM10000 from Kaggle: HAM10000_images_part_1/, _part_2/ and their lowercase copies ham10000_images_part_1/,
    _part_2/; every row was dropped as "in several sub-folders", with advice that cannot work for a set in parts."""
    rows = _eyes(tmp_path / "flat", patients=15)
    for i, (name, _) in enumerate(rows):
        for part in (f"HAM10000_images_part_{i % 2 + 1}", f"ham10000_images_part_{i % 2 + 1}"):
            (tmp_path / "h" / part).mkdir(parents=True, exist_ok=True)
            (tmp_path / "h" / part / name).write_bytes((tmp_path / "flat" / name).read_bytes())
    pd.DataFrame({"image": [n[:-4] for n, _ in rows], "level": [g for _, g in rows]}).to_csv(tmp_path / "l.csv",
                                                                                           index=False)
    code, _out, err = _prepare(tmp_path / "w", "--labels", tmp_path / "l.csv", "--images", tmp_path / "h")
    assert code == 0, err
    assert ("30 image names are in several sub-folders" in err and "as byte-identical files "
            "(ham10000_images_part_1 holds copies of HAM10000_images_part_1; ham10000_images_part_2 holds copies of "
            "HAM10000_images_part_2); each was read from the first" in err)
    split = pd.read_csv(tmp_path / "w" / "split.csv")
    assert len(split) == 30 and split["path"].str.startswith("HAM10000_images_part_").all()
    # a copy that differs: its rows are dropped, naming the sub-folders, and so is the error when every row is
    for name, _ in rows:
        part = tmp_path / "h" / f"ham10000_images_part_{rows.index((name, _)) % 2 + 1}"
        (part / name).write_bytes((part / name).read_bytes() + b"\0")
    code, _out, err = _prepare(tmp_path / "w2", "--labels", tmp_path / "l.csv", "--images", tmp_path / "h")
    line = one_sentence_error(code, err, "all 30 rows were dropped", "as different files",
                              "remove the sub-folders that do not belong")
    assert any(f"several sub-folders (HAM10000_images_part_{i}, ham10000_images_part_{i})" in line for i in (1, 2))


def test_images_of_excluded_rows_are_listed_not_reported_as_in_no_row(tmp_path):
    """--exclude-label 5 left its rows out before the check, so their images were "in no row of the labels file"."""
    rows = _eyes(tmp_path / "img", patients=15)
    for i in range(4):
        _image(tmp_path / "img" / f"u{i}_left.png")
    _image(tmp_path / "img" / "stray.png")  # truly in no row: still reported
    pd.DataFrame({"image": [n for n, _ in rows] + [f"u{i}_left.png" for i in range(4)],
                  "level": [g for _, g in rows] + [5] * 4}).to_csv(tmp_path / "l.csv", index=False)
    code, _out, err = _prepare(tmp_path / "w", "--labels", tmp_path / "l.csv", "--images", tmp_path / "img",
                               "--exclude-label", "5")
    assert code == 0, err
    assert "Note: 1 image file(s) in" in err and "(e.g. stray.png)" in err


def test_a_given_split_that_spreads_patients_or_copies_is_named_not_called_grouped(tmp_path):
    rows = _eyes(tmp_path / "img", patients=15)
    (tmp_path / "img" / "copy.png").write_bytes((tmp_path / "img" / "10_left.png").read_bytes())
    split = ["train" if i % 2 else "test" for i in range(len(rows))]  # every patient's eyes in two splits
    table = pd.DataFrame({"image": [n for n, _ in rows] + ["copy.png"], "level": [g for _, g in rows] + [0],
                          "split": split + ["train"]})
    table.to_csv(tmp_path / "s.csv", index=False)
    code, out, err = _prepare(tmp_path / "w", "--labels", tmp_path / "s.csv", "--images", tmp_path / "img")
    assert code == 0, err
    assert "Warning: the given split puts the images of 15 of 16 patients in more than one split" in err
    assert "Warning: the given split puts byte-identical copies of 1 image(s) in two splits" in err
    assert "each set is kept in one split" not in err and "(the given split puts 15 patients in two splits)" in out
    meta = json.loads((tmp_path / "w" / "dataset.json").read_text())
    assert meta["grouped"] is False and meta["groups_across_splits"] == 15
    # one odd name among <patient>_<left|right> names no longer turns grouping off for the others
    assert "1 of the 31 images are named otherwise (e.g. copy.png) and are groups of their own" in err


def test_empty_split_cells_count_as_train_and_synonyms_are_read(tmp_path):
    rows = _eyes(tmp_path / "img", patients=20)
    split = ["" if i < 30 else "testing" for i in range(len(rows))]
    pd.DataFrame({"image": [n for n, _ in rows], "level": [g for _, g in rows], "split": split}).to_csv(
        tmp_path / "s.csv", index=False)
    code, _out, err = _prepare(tmp_path / "w", "--labels", tmp_path / "s.csv", "--images", tmp_path / "img")
    assert code == 0, err
    assert "30 rows have an empty split cell; they count as train" in err
    table = pd.read_csv(tmp_path / "w" / "split.csv")
    assert (table["split"] == "test").sum() == 10 and set(table["split"]) == {"train", "val", "test"}
    pd.DataFrame({"image": [n for n, _ in rows], "level": [g for _, g in rows], "split": ["holdout"] * len(rows)}).to_csv(
        tmp_path / "bad.csv", index=False)
    code, _out, err = _prepare(tmp_path / "w2", "--labels", tmp_path / "bad.csv", "--images", tmp_path / "img")
    one_sentence_error(code, err, "write train, val or test in the split column")


def test_renamed_extensions_parallel_folders_and_mac_archives(tmp_path):
    rows = _eyes(tmp_path / "img", patients=15)  # 3 patients a grade: one for each split
    pd.DataFrame({"image": [n.replace(".png", ".JPG") for n, _ in rows], "level": [g for _, g in rows]}).to_csv(
        tmp_path / "jpg.csv", index=False)
    code, _out, err = _prepare(tmp_path / "w", "--labels", tmp_path / "jpg.csv", "--images", tmp_path / "img")
    assert code == 0, err
    assert "30 image names named a file with another extension" in err and "'10_left.JPG' → 10_left.png" in err
    # IDRiD: one name in two sub-folders names them, not extensions
    for part in ("a. Training Set", "b. Testing Set"):
        _image(tmp_path / "par" / part / "IDRiD_001.jpg")
    for i in range(2, 22):
        _image(tmp_path / "par" / "a. Training Set" / f"IDRiD_{i:03d}.jpg")
    pd.DataFrame({"image": [f"IDRiD_{i:03d}" for i in range(1, 22)], "level": [i % 3 for i in range(1, 22)]}).to_csv(
        tmp_path / "idrid.csv", index=False)
    code, _out, err = _prepare(tmp_path / "wi", "--labels", tmp_path / "idrid.csv", "--images", tmp_path / "par")
    assert code == 0, err
    report = pd.read_csv(tmp_path / "wi" / "data_report.csv")
    assert report["reason"].tolist() == ["image name is in several sub-folders (a. Training Set, b. Testing Set) as "
                                         "different files; name it with its sub-folder in the labels file, or remove "
                                         "the folder that does not belong"]
    # an unzipped Mac archive's __MACOSX folder is no class
    for c in ("0 - No DR", "1 - Mild"):
        for i in range(8):
            _image(tmp_path / "cls" / c / f"{c[0]}_{i}.png")
    (tmp_path / "cls" / "__MACOSX" / "0 - No DR").mkdir(parents=True)
    (tmp_path / "cls" / "__MACOSX" / "0 - No DR" / "._0_1.png").write_bytes(b"\x00\x05\x16\x07")
    code, _out, err = _prepare(tmp_path / "wc", "--images", tmp_path / "cls")
    assert code == 0, err
    assert json.loads((tmp_path / "wc" / "dataset.json").read_text())["classes"] == ["0 - No DR", "1 - Mild"]


def test_another_source_names_what_differs(tmp_path):
    rows = _eyes(tmp_path / "data" / "img", patients=15)
    pd.DataFrame({"image": [n for n, _ in rows], "level": [g for _, g in rows]}).to_csv(tmp_path / "data" / "l.csv",
                                                                                       index=False)
    assert _prepare(tmp_path / "w", "--labels", tmp_path / "data" / "l.csv", "--images", tmp_path / "data" / "img")[0] == 0
    (tmp_path / "data" / "img2").mkdir()
    for n, _ in rows[2:]:
        (tmp_path / "data" / "img2" / n).write_bytes((tmp_path / "data" / "img" / n).read_bytes())
    code, _out, err = _prepare(tmp_path / "w", "--labels", tmp_path / "data" / "l.csv", "--images",
                               tmp_path / "data" / "img2")
    line = err.strip().splitlines()[-1]
    assert code == 1 and line.startswith("Error: ") and "was prepared from other data (images in" in line
    assert "rows kept 30 then, 28 now" in line and "source csv:" not in line  # the same labels file is no difference


def test_named_grades_in_order_get_the_referable_summary(tmp_path):
    from ensemble.vote import run_vote

    names = ["0 - No DR", "1 - Mild", "2 - Moderate", "3 - Severe", "4 - PDR"]
    for c in names:
        for i in range(8):
            _image(tmp_path / "cls" / c / f"{c[0]}_{i}.png")
    code, _out, err = _prepare(tmp_path / "w", "--images", tmp_path / "cls", "--ordinal", "--classes", ",".join(names))
    assert code == 0, err
    add_member(tmp_path / "w", "a", seed=1)
    add_member(tmp_path / "w", "b", seed=2)
    report = run_vote(tmp_path / "w", n_boot=20, console=Console(file=io.StringIO()))
    ref = report["referable"]
    assert ref["applicable"] is True and ref["cut_grade"] == 2 and ref["positive"] == "grade >= 2 (2 - Moderate or worse)"


@pytest.mark.parametrize("split", ["training", "Testing"])
def test_split_folder_synonyms(tmp_path, split):
    for s in ("training" if split == "training" else "train", split):
        for c in ("a", "b"):
            for i in range(8):
                _image(tmp_path / "set" / s / c / f"{s}{c}{i}.png")
    code, _out, err = _prepare(tmp_path / "w", "--images", tmp_path / "set")
    assert code == 0, err
    table = pd.read_csv(tmp_path / "w" / "split.csv")
    assert set(table["split"]) == {"train", "val", "test"}


def test_test_rows_whose_files_are_elsewhere_point_at_images(tmp_path):
    """DDR with --images DR_grading/train: the test rows' files are in DR_grading/test, not unlabelled."""
    rows = _eyes(tmp_path / "DR" / "train", patients=15)
    test = _eyes(tmp_path / "DR" / "test", patients=5)
    table = pd.DataFrame({"image": [n for n, _ in rows] + [f"t{n}" for n, _ in test],
                          "level": [g for _, g in rows + test], "split": ["train"] * len(rows) + ["test"] * len(test)})
    table.to_csv(tmp_path / "s.csv", index=False)
    code, _out, err = _prepare(tmp_path / "w", "--labels", tmp_path / "s.csv", "--images", tmp_path / "DR" / "train")
    assert code == 0, err
    text = " ".join(err.split())
    assert 'all 10 test rows of the CSV were dropped, mostly because "image file not found"' in text
    assert "check that --images is the folder above all the splits' images" in text and "unlabelled" not in text


def test_eyes_of_a_patient_delivered_in_two_parts_are_one_patient(tmp_path):
    """EyePACS delivered in parts: 13_left in part1, 13_right in part2 are one patient, not two."""
    rows = _eyes(tmp_path / "img", patients=20)
    for i, (name, _) in enumerate(rows):
        part = tmp_path / "img" / f"part{i % 2 + 1}"
        part.mkdir(exist_ok=True)
        (tmp_path / "img" / name).rename(part / name)
    pd.DataFrame({"image": [n for n, _ in rows], "level": [g for _, g in rows]}).to_csv(tmp_path / "l.csv", index=False)
    code, _out, err = _prepare(tmp_path / "w", "--labels", tmp_path / "l.csv", "--images", tmp_path / "img")
    assert code == 0, err
    table = pd.read_csv(tmp_path / "w" / "split.csv", dtype=str)
    assert table["group"].nunique() == 20 and table.groupby("group")["split"].nunique().max() == 1


def test_an_exact_name_anywhere_beats_another_extension_and_headerless_bare_names_read(tmp_path):
    """IDRiD/DRIVE-like: images/x.jpeg and masks/x.png; the CSV lists x.jpeg: the photo, not the mask."""
    rows = _eyes(tmp_path / "R" / "images", patients=15, ext=".jpeg")
    for name, _ in rows:
        _image(tmp_path / "R" / "masks" / name.replace(".jpeg", ".png"))
    (tmp_path / "l.txt").write_text("".join(f"{n.replace('.jpeg', '')} {g}\n" for n, g in rows))  # EyePACS-style
    code, _out, err = _prepare(tmp_path / "w", "--labels", tmp_path / "l.txt", "--images", tmp_path / "R")
    assert code == 1 and "image name is in several sub-folders" in err  # bare names: photo or mask, never guessed
    (tmp_path / "l.txt").write_text("".join(f"{n} {g} {'test' if i % 5 == 0 else 'train'}\n"
                                            for i, (n, g) in enumerate(rows)))
    code, _out, err = _prepare(tmp_path / "w", "--labels", tmp_path / "l.txt", "--images", tmp_path / "R")
    assert code == 0, err
    assert "its third as the split" in err and "another extension" not in err
    table = pd.read_csv(tmp_path / "w" / "split.csv")
    assert table["path"].str.startswith("images/").all() and (table["split"] == "test").sum() == 6



def test_images_pointed_at_the_parent_of_the_class_folders_says_where_they_are(tmp_path):
    for c in ("0 - No DR", "1 - Mild"):
        for i in range(8):
            _image(tmp_path / "data" / "classfolders" / c / f"{c[0]}_{i}.png")
    code, _out, err = _prepare(tmp_path / "w", "--images", tmp_path / "data")
    assert code == 1 and f"pass --images {tmp_path / 'data' / 'classfolders'}" in err


def test_grades_with_a_decimal_comma_in_a_semicolon_file_are_grades_and_the_group_column_is_read_alike(tmp_path):
    """Excel in de/fr locales writes `2,0` in a `;` file: it became five unordered classes '0,0' … '4,0'. And
    --group-column read the same file with commas only: 'no column patient'."""
    rows = _eyes(tmp_path / "img", patients=15)
    (tmp_path / "l.csv").write_text("image;level;patient\n" + "".join(
        f"{n};{g},0;P{n.split('_')[0]}\n" for n, g in rows))
    code, _out, err = _prepare(tmp_path / "w", "--labels", tmp_path / "l.csv", "--images", tmp_path / "img",
                               "--group-column", "patient")
    assert code == 0, err
    meta = json.loads((tmp_path / "w" / "dataset.json").read_text())
    assert meta["classes"] == [0, 1, 2, 3, 4] and meta["ordinal"] is True and meta["grouped"] is True
    table = pd.read_csv(tmp_path / "w" / "split.csv")
    assert (table.groupby(table["path"].str.split("_").str[0])["split"].nunique() == 1).all()  # eyes kept together


def test_a_csv_layout_given_without_labels_is_refused_with_the_labels_and_folder_to_pass(tmp_path):
    """APTOS' train.csv + train_images/ + test_images/ passed as --images alone trained a 'which folder' task."""
    for split in ("train_images", "test_images"):
        for i in range(4):
            _image(tmp_path / "aptos" / split / f"{split[:2]}{i}.png")
    (tmp_path / "aptos" / "train.csv").write_text("id_code,diagnosis\n" + "".join(f"tr{i},{i}\n" for i in range(4)))
    code, _out, err = _prepare(tmp_path / "w", "--images", tmp_path / "aptos")
    assert code == 1 and "look like the split folders" in err
    assert f"--labels {tmp_path / 'aptos' / 'train.csv'} --images {tmp_path / 'aptos' / 'train_images'}" in err
    assert not (tmp_path / "w" / "dataset.json").exists()


def test_a_chain_of_single_folders_above_the_classes_is_named_before_any_image_is_decoded(tmp_path, monkeypatch):
    deep = tmp_path / "x" / "gaussian_filtered_images" / "gaussian_filtered_images"
    for c in ("Mild", "No_DR"):
        for i in range(3):
            _image(deep / c / f"{c}{i}.png")
    from members.data import labels

    monkeypatch.setattr(labels, "_decode_all", lambda *a, **k: pytest.fail("decoded before the refusal"))
    code, _out, err = run_cli("prepare", "--workdir", tmp_path / "w", "--images", tmp_path / "x")
    one_sentence_error(code, err, f"pass --images {deep}")


def test_class_folder_files_without_an_image_extension_are_counted_in_a_note(tmp_path):
    """A camera's IMG_0001 (a PNG without extension) was left out unsaid; sidecar notes stay out of the rows."""
    for c in ("0", "1"):
        for i in range(8):
            _image(tmp_path / "cls" / c / f"{c}_{i}.png")
    Image.fromarray(RNG.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "cls" / "1" / "IMG_0001",
                                                                          format="PNG")
    (tmp_path / "cls" / "0" / "notes.txt").write_text("graded by Dr X\n")
    (tmp_path / "cls" / "0" / "Thumbs.db").write_bytes(b"\0" * 64)
    code, _out, err = _prepare(tmp_path / "w", "--images", tmp_path / "cls")
    assert code == 0, err
    assert len(pd.read_csv(tmp_path / "w" / "split.csv")) == 16
    assert not (pd.read_csv(tmp_path / "w" / "data_report.csv")["image"].tolist())
    assert "2 file(s) in the class folders have no image extension and are not used (e.g. 0/notes.txt, 1/IMG_0001)" in err


def test_split_like_folders_holding_class_folders_are_told_the_names_prepare_reads(tmp_path):
    for split in ("training_set", "test_set"):
        for c in ("cats", "dogs"):
            for i in range(3):
                _image(tmp_path / "ds" / split / c / f"{c}{i}.png")
    code, _out, err = run_cli("prepare", "--workdir", tmp_path / "w", "--images", tmp_path / "ds")
    one_sentence_error(code, err, "look like split folders holding class folders", "rename them so",
                       f"--images {tmp_path / 'ds' / 'training_set'}")


def test_absolute_paths_of_another_machine_are_matched_by_their_end_and_unlisted_files_are_noted(tmp_path):
    """Colab's /content/drive/… and Windows' C:\\… names dropped every row as 'outside the images folder'."""
    rows = _eyes(tmp_path / "d" / "train_images", patients=15)
    _image(tmp_path / "d" / "train_images" / "stray.png")
    for prefix, sep in (("/content/drive/MyDrive/aptos/train_images/", "/"),
                        ("C:\\Users\\me\\aptos\\train_images\\", "\\")):
        (tmp_path / "l.csv").write_text("image,level\n" + "".join(f"{prefix}{n},{g}\n" for n, g in rows))
        for images, rel in ((tmp_path / "d" / "train_images", ""), (tmp_path / "d", "train_images/")):
            work = tmp_path / f"w{len(sep)}{len(rel)}"
            code, _out, err = _prepare(work, "--labels", tmp_path / "l.csv", "--images", images)
            assert code == 0, err
            assert "absolute paths that do not exist here" in err
            assert pd.read_csv(work / "split.csv")["path"].str.startswith(rel).all()
            assert len(pd.read_csv(work / "split.csv")) == len(rows)
            assert "1 image file(s) in" in err and "(e.g. stray.png)" in err
    (tmp_path / "l.csv").write_text("image,level\n" + "".join(f"/elsewhere/{n}x,{g}\n" for n, g in rows))
    code, _out, err = _prepare(tmp_path / "wx", "--labels", tmp_path / "l.csv", "--images", tmp_path / "d")
    assert code == 1 and "absolute path that does not exist here" in err


def test_files_gone_since_the_last_prepare_are_named_as_a_data_change_not_a_new_version(tmp_path):
    rows = _eyes(tmp_path / "img", patients=15)
    (tmp_path / "l.csv").write_text("image,level\n" + "".join(f"{n},{g}\n" for n, g in rows))
    args = ("--labels", tmp_path / "l.csv", "--images", tmp_path / "img")
    assert _prepare(tmp_path / "w", *args)[0] == 0
    (tmp_path / "img" / rows[0][0]).unlink()
    code, _out, err = _prepare(tmp_path / "w", *args)
    line = err.strip().splitlines()[-1]
    assert code == 1 and line.startswith("Error: ") and "the images or labels changed since" in line
    assert "earlier version of prepare" not in err and "1 row(s): image file not found" in line


def test_a_local_absolute_path_gone_is_missing_not_foreign_and_dotted_names_count_as_listed(tmp_path):
    """A file of the images folder itself, listed by its absolute path and deleted since, was called "a path from
    another machine" (and the refusal blamed an earlier prepare); names with dots (DICOM UIDs) listed without their
    extension were noted as "in no row"."""
    folder = tmp_path / "img"
    rows = [(f"1.2.826.0.1.3680043.8.498.100{i:02d}", i % 5) for i in range(30)]
    for name, _ in rows:
        _image(folder / f"{name}.png")
    (tmp_path / "l.csv").write_text("image,level\n" + "".join(f"{folder / n},{g}\n" for n, g in rows))
    args = ("--labels", tmp_path / "l.csv", "--images", folder)
    code, _out, err = _prepare(tmp_path / "w", *args)
    assert code == 0 and "in no row of the labels file" not in err, err
    (folder / f"{rows[0][0]}.png").unlink()
    code, _out, err = _prepare(tmp_path / "w", *args)
    line = err.strip().splitlines()[-1]
    assert code == 1 and "the images or labels changed since" in line and "image file not found" in line, line
    assert "another machine" not in line


def test_idrids_download_tree_given_as_images_points_to_its_labels_file(tmp_path):
    """IDRiD unzipped: B. Disease Grading/{1. Original Images/a. Training Set, 2. Groundtruths/*.csv}; the labels
    folder was taken for an empty class."""
    root = tmp_path / "B. Disease Grading"
    for i in range(4):
        _image(root / "1. Original Images" / "a. Training Set" / f"IDRiD_{i:03d}.jpg")
    labels = root / "2. Groundtruths" / "a. IDRiD_Disease Grading_Training Labels.csv"
    labels.parent.mkdir(parents=True)
    labels.write_text("Image name,Retinopathy grade\n" + "".join(f"IDRiD_{i:03d},{i % 2}\n" for i in range(4)))
    code, _out, err = run_cli("prepare", "--workdir", tmp_path / "w", "--images", root)
    one_sentence_error(code, err, "holds labels files", "is a set whose labels are in a file",
                       f"--labels '{labels}'")
    code, _out, err = run_cli("prepare", "--workdir", tmp_path / "w", "--images", root / "1. Original Images")
    one_sentence_error(code, err, f"--images '{root / '1. Original Images' / 'a. Training Set'}'")
