"""Tests for members/data/dataset.py: prepare_csv end to end, the workdir files, load_dataset."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from members.data import labels as L
from members.data.split import SPLITS
from members.data.dataset import PreparedDataset, load_dataset, prepare_csv
from members.infra.errors import UserError
from tests.conftest import SHARED_DATA

IDRID = SHARED_DATA / "idrid_grading_512"
RNG = np.random.default_rng(0)


def image(path: Path, mode="RGB", fmt="JPEG"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(RNG.integers(0, 255, (8, 8, 3), dtype=np.uint8)).convert(mode).save(path, fmt)


def simple_set(tmp_path: Path, n: int = 24, k: int = 3, prefix: str = "img", header: str = "image,level", extra=""):
    """n good JPEGs labelled i % k, listed without extension."""
    images = tmp_path / "images"
    for i in range(n):
        image(images / f"{prefix}{i}.jpeg")
    csv = tmp_path / "labels.csv"
    csv.write_text(header + "\n" + "".join(f"{prefix}{i},{i % k}{extra}\n" for i in range(n)))
    return csv, images


@pytest.fixture()
def messy(tmp_path):
    """A Kaggle-style folder with every kind of bad row, a BOM and CRLF line ends."""
    images = tmp_path / "images"
    rows = []
    for i in range(18):  # the good ones: 6 per class, listed in various spellings
        name = f"good {i} ñ"
        image(images / f"{name}.JPEG")
        rows.append((name if i % 2 else f"{name}.jpeg", str(i % 3)))
    image(images / "cmyk.jpg", mode="CMYK")
    rows.append(("cmyk", "0"))
    Image.fromarray((np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)).save(images / "deep.png")
    rows.append(("deep.png", "1"))
    image(images / "png_inside.jpeg", fmt="PNG")
    rows.append(("png_inside", "2.0"))
    image(images / "scan.bmp", mode="P", fmt="BMP")  # TensorFlow ignores a BMP palette
    (images / "empty.jpeg").write_bytes(b"")
    (images / "text.jpeg").write_text("hello")
    image(tmp_path / "secret.jpeg")
    (images / "link.jpeg").symlink_to(tmp_path / "secret.jpeg")
    rows += [("scan.bmp", "1"), ("empty", "1"), ("text", "1"), ("link", "1"), ("../secret", "1"),
             (str(tmp_path / "secret.jpeg"), "1"), ("missing", "1"), ("good 0 ñ", "0"), ("good 1 ñ", "2"),
             ("good 2 ñ", ""), ("good 3 ñ", "-1"), ("good 3 ñ", "abc"), ("good 4 ñ", "2.5")]
    csv = tmp_path / "labels.csv"
    body = "image,level\r\n" + "".join(f'"{a}",{b}\r\n' for a, b in rows)
    csv.write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))
    return csv, images


def test_prepare_messy_csv(tmp_path, messy):
    csv, images = messy
    work = tmp_path / "work"
    result = prepare_csv(work, csv, images, progress=False)
    assert result.kept == 20  # 18 good - good 1 (conflict) + cmyk + deep + png_inside
    assert result.skipped == {
        L.REASON_OUTSIDE: 3, L.REASON_BAD_LABEL: 3, L.REASON_CONFLICT: 2, L.REASON_FORMAT: 1, L.REASON_EMPTY: 1,
        L.REASON_UNDECODABLE: 1, L.REASON_MISSING: 1, L.REASON_DUPLICATE: 1, L.REASON_NO_LABEL: 1}
    assert not result.grouped
    info = json.loads((work / "dataset.json").read_text())
    assert info["classes"] == [0, 1, 2] and info["num_classes"] == 3
    assert info["source"] == f"csv:{csv.resolve()}" and info["image_root"] == str(images.resolve())
    assert info["fingerprint"] == hashlib.sha256((work / "split.csv").read_bytes()).hexdigest() == result.fingerprint
    assert info["skipped"] == result.skipped and info["kept"] == 20 and info["seed"] == 0
    assert info["val_fraction"] == 0.15 and info["test_fraction"] == 0.15 and info["grouped"] is False
    split = pd.read_csv(work / "split.csv", keep_default_na=False)
    assert split.columns.tolist() == ["path", "label", "split"]
    assert {"cmyk.jpg", "deep.png", "png_inside.jpeg", "good 0 ñ.JPEG"} <= set(split["path"])
    assert "good 1 ñ.JPEG" not in set(split["path"])
    assert all((images / p).is_file() for p in split["path"])
    assert sum(sum(c.values()) for c in result.counts.values()) == 20
    assert all(result.counts[s][c] >= 1 for s in ("train", "val", "test") for c in range(3))
    report = pd.read_csv(work / "data_report.csv", keep_default_na=False)
    assert report.columns.tolist() == ["row", "image", "label", "reason"]
    assert len(report) == 14 and report["row"].is_monotonic_increasing
    assert report.loc[report["image"] == "scan.bmp", "row"].item() == 23  # 1-based CSV line, header is 1


def test_load_dataset_rows_and_paths(tmp_path):
    csv, images = simple_set(tmp_path)
    prepare_csv(tmp_path / "w", csv, images, progress=False)
    data = load_dataset(tmp_path / "w")
    assert isinstance(data, PreparedDataset) and data.num_classes == 3 and data.classes == [0, 1, 2]
    table = pd.read_csv(tmp_path / "w" / "split.csv")
    for split in ("train", "val", "test"):
        rows = data.rows(split)
        assert rows.columns.tolist()[:4] == ["row_id", "path", "label", "split"]
        assert (table.loc[rows["row_id"], "path"].to_numpy() == rows["path"].to_numpy()).all()
        assert all(Path(p).is_file() and Path(p).is_absolute() for p in data.absolute_paths(split))
    assert sum(len(data.rows(s)) for s in ("train", "val", "test")) == 24
    with pytest.raises(ValueError):
        data.rows("training")


def test_load_dataset_errors(tmp_path):
    with pytest.raises(UserError) as info:
        load_dataset(tmp_path / "w")
    work = tmp_path / "w"
    assert str(info.value) == f"{work} is not prepared: run `python cli.py prepare --workdir {work} ...` first."
    csv, images = simple_set(tmp_path)
    prepare_csv(tmp_path / "w", csv, images, progress=False)
    split_csv = tmp_path / "w" / "split.csv"
    split_csv.write_text(split_csv.read_text().replace(",0,", ",1,", 1))
    with pytest.raises(UserError, match="was changed after prepare"):
        load_dataset(tmp_path / "w")


def test_same_data_is_noop_other_data_needs_force(tmp_path):
    csv, images = simple_set(tmp_path)
    first = prepare_csv(tmp_path / "w", csv, images, progress=False)
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "w").iterdir()}
    again = prepare_csv(tmp_path / "w", csv, images, progress=False)
    assert again == first
    assert stamps == {p.name: p.stat().st_mtime_ns for p in (tmp_path / "w").iterdir()}
    with pytest.raises(UserError) as info:
        prepare_csv(tmp_path / "w", csv, images, seed=1, progress=False)
    assert str(info.value) == (f"{tmp_path / 'w'} was prepared from the same data with other options (seed 0 then, "
                               "1 now), which give another split; pass --force to overwrite it "
                               "(trained members there will be invalidated).")
    assert stamps == {p.name: p.stat().st_mtime_ns for p in (tmp_path / "w").iterdir()}
    forced = prepare_csv(tmp_path / "w", csv, images, seed=1, force=True, progress=False)
    assert forced.fingerprint != first.fingerprint
    assert load_dataset(tmp_path / "w").fingerprint == forced.fingerprint


def test_prepare_force_waits_for_a_training_member_and_decides_under_its_lock(tmp_path, monkeypatch):
    """prepare --force replaced a workdir's images and split under a member that was training (it finished on
    both); and two prepares could both pass the "already prepared?" check before either took the lock."""
    import json
    import os
    import socket

    from members.data import dataset

    csv, images = simple_set(tmp_path)
    work = tmp_path / "w"
    first = prepare_csv(work, csv, images, progress=False)
    lock = work / "members" / "d" / ".lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))  # a live trainer: this process
    with pytest.raises(UserError, match=r"^Member 'd' is being trained in .* right now \(pid \d+ on .*\); prepare "
                                        "would change its images or split under it"):
        prepare_csv(work, csv, images, seed=1, force=True, progress=False)
    assert load_dataset(work).fingerprint == first.fingerprint  # nothing written
    assert prepare_csv(work, csv, images, progress=False) == first  # the same data: no change, no refusal
    lock.write_text(json.dumps({"pid": 2 ** 22 + 12345, "host": socket.gethostname()}))  # its process is gone
    under_lock = []
    real = dataset._previous
    monkeypatch.setattr(dataset, "_previous", lambda w, f: under_lock.append((w / ".prepare.lock").exists())
                        or real(w, f))
    forced = prepare_csv(work, csv, images, seed=1, force=True, progress=False)
    assert forced.fingerprint != first.fingerprint and under_lock == [True]
    assert not (work / ".prepare.lock").exists()


def test_nominal_or_ordinal_on_a_prepared_workdir_needs_force(tmp_path):
    """The same split read as unordered classes is another task: refused like another --seed, nothing rewritten."""
    csv, images = simple_set(tmp_path)
    prepare_csv(tmp_path / "w", csv, images, progress=False)
    before = (tmp_path / "w" / "dataset.json").read_bytes()
    with pytest.raises(UserError) as info:
        prepare_csv(tmp_path / "w", csv, images, ordinal=False, progress=False)
    assert str(info.value) == (f"{tmp_path / 'w'} was prepared from the same data with other options (ordered grades "
                               "(--ordinal) then, unordered classes (--nominal) now); pass --ordinal to keep it as it "
                               "is, or --force to change it (the members and the vote there were made for ordered "
                               "grades: retrain and vote again).")
    assert (tmp_path / "w" / "dataset.json").read_bytes() == before
    prepare_csv(tmp_path / "w", csv, images, ordinal=True, progress=False)  # what it was: unchanged
    assert (tmp_path / "w" / "dataset.json").read_bytes() == before
    prepare_csv(tmp_path / "w", csv, images, ordinal=False, force=True, progress=False)
    assert json.loads((tmp_path / "w" / "dataset.json").read_text())["ordinal"] is False
    with pytest.raises(UserError, match=r"unordered classes \(--nominal\) then, ordered grades \(--ordinal\) now\); "
                                        "pass --nominal to keep it"):
        prepare_csv(tmp_path / "w", csv, images, progress=False)  # the default would flip it back silently


def test_reordered_classes_are_named_as_the_difference(tmp_path):
    names = ["No_DR", "Mild", "Moderate"]
    csv, images = simple_set(tmp_path)
    csv.write_text("".join(line.rsplit(",", 1)[0] + "," + names[int(line.rsplit(",", 1)[1])] + "\n"
                           if i else line + "\n" for i, line in enumerate(csv.read_text().splitlines())))
    prepare_csv(tmp_path / "w", csv, images, progress=False)  # alphabetical: Mild, Moderate, No_DR
    with pytest.raises(UserError) as info:
        prepare_csv(tmp_path / "w", csv, images, classes=names, progress=False)
    assert str(info.value).startswith(
        f"{tmp_path / 'w'} was prepared from the same data with other options (classes Mild, Moderate, No_DR then, "
        "No_DR, Mild, Moderate now: another order, from --classes); pass --force")
    assert "split differs" not in str(info.value)


def test_coarse_patient_groups_far_from_the_fractions_are_warned_about(tmp_path, demo_images, capsys):
    """--group-pattern '^(\\d)' makes 5 groups of the demo's 24 patients: 70/15/15 cannot be kept, and it is said."""
    csv, images = demo_images / "trainLabels.csv", demo_images / "images"
    result = prepare_csv(tmp_path / "a", csv, images, group_pattern=r"^(\d)", progress=False)
    again = prepare_csv(tmp_path / "b", csv, images, group_pattern=r"^(\d)", seed=5, progress=False)
    share = {s: round(100 * sum(result.counts[s].values()) / result.kept) for s in SPLITS}
    assert abs(share["train"] - 70) > 5
    assert abs(sum(again.counts["train"].values()) / again.kept - 0.70) > 0.05  # another seed: no help, as said
    err = " ".join(capsys.readouterr().err.split())
    assert (f"Warning: the split by patient group is far from the shares asked (train 70 %, val 15 %, test 15 %): "
            f"5 groups (the largest holds 12 of the 48 rows) gave train {share['train']} %, val {share['val']} %, "
            f"test {share['test']} %") in err and "another --seed will not fix it" in err
    capsys.readouterr()
    prepare_csv(tmp_path / "c", csv, images, progress=False)  # by patient (two eyes): no such warning
    assert "far from the shares asked" not in capsys.readouterr().err


def test_split_is_deterministic_per_seed(tmp_path):
    csv, images = simple_set(tmp_path, n=60)
    a = prepare_csv(tmp_path / "a", csv, images, progress=False)
    b = prepare_csv(tmp_path / "b", csv, images, progress=False)
    c = prepare_csv(tmp_path / "c", csv, images, seed=7, progress=False)
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_moved_images_folder_updates_image_root_only(tmp_path):
    csv, images = simple_set(tmp_path)
    first = prepare_csv(tmp_path / "w", csv, images, progress=False)
    moved = shutil.copytree(images, tmp_path / "moved")
    again = prepare_csv(tmp_path / "w", csv, moved, progress=False)
    assert again.fingerprint == first.fingerprint
    assert load_dataset(tmp_path / "w").image_root == moved.resolve()


def test_other_pictures_under_the_same_names_are_noticed_by_prepare_and_training(tmp_path, capsys):
    """A labels file's images are read where they lie and split.csv names files, not pixels: new pictures copied over
    the old names passed as 'nothing changed', and a member trained on them was voted with members of the old ones."""
    from members.data.stamps import STAMPS

    csv, images = simple_set(tmp_path)
    work = tmp_path / "w"
    first = prepare_csv(work, csv, images, progress=False)
    assert len(pd.read_csv(work / STAMPS)) == first.kept
    for path in images.iterdir():  # a touch (or a copy that keeps the bytes) changes no picture
        path.touch()
    assert prepare_csv(work, csv, images, progress=False) == first
    load_dataset(work).check_images()
    (work / "members" / "m").mkdir(parents=True)
    (work / "members" / "m" / "metrics.json").write_text(json.dumps({"fingerprint": first.fingerprint}))
    for name in ("img3.jpeg", "img7.jpeg"):
        image(images / name)  # other random pixels under the same names
    for force in (False, True):  # a member made on the old pictures: refused, --force or not
        with pytest.raises(UserError, match=r"prepared from other pictures under the same file names: 2 of the 24 "
                                            r"images differ .*\(e\.g\. 'img3\.jpeg'\), so the members made there \(m\)"):
            prepare_csv(work, csv, images, force=force, progress=False)
    with pytest.raises(UserError, match=r"2 of the 24 images listed in .* are other pictures now than the ones "
                                        r"prepare recorded \(e\.g\. 'img3\.jpeg'"):
        load_dataset(work).check_images()  # what train-member, import-member and k-fold training run first
    shutil.rmtree(work / "members")
    with pytest.raises(UserError, match="pass --force to prepare the new pictures here"):
        prepare_csv(work, csv, images, progress=False)
    again = prepare_csv(work, csv, images, force=True, progress=False)
    assert again.fingerprint == first.fingerprint  # the same rows and labels: only the pictures changed
    load_dataset(work).check_images()


def test_an_older_workdir_gets_its_pictures_recorded_and_keeps_its_members(tmp_path, capsys):
    from members.data.stamps import STAMPS

    csv, images = simple_set(tmp_path)
    work = tmp_path / "w"
    first = prepare_csv(work, csv, images, progress=False)
    info = json.loads((work / "dataset.json").read_text())
    del info["images_digest"]  # as prepare wrote it before the stamps
    (work / "dataset.json").write_text(json.dumps(info))
    (work / STAMPS).unlink()
    load_dataset(work).check_images()  # nothing recorded: nothing to compare
    capsys.readouterr()
    again = prepare_csv(work, csv, images, progress=False)
    assert again.fingerprint == first.fingerprint and (work / STAMPS).is_file()
    assert "Recorded which pictures the 24 images are" in " ".join(capsys.readouterr().err.split())
    (work / STAMPS).write_text("path,bytes,mtime_ns,digest\n")  # edited: not the file dataset.json names
    load_dataset(work).check_images()
    prepare_csv(work, csv, images, progress=False)
    assert "was missing or changed: written again from the same data" in " ".join(capsys.readouterr().err.split())
    assert len(pd.read_csv(work / STAMPS)) == 24


def test_patient_names_are_grouped(tmp_path):
    images = tmp_path / "images"
    lines = ["image,level"]
    for patient in range(40):
        for eye in ("left", "Right"):
            image(images / f"{patient}_{eye}.jpeg")
            lines.append(f"{patient}_{eye},{patient % 4}")
    (tmp_path / "l.csv").write_text("\n".join(lines) + "\n")
    result = prepare_csv(tmp_path / "w", tmp_path / "l.csv", images, progress=False)
    assert result.grouped
    split = pd.read_csv(tmp_path / "w" / "split.csv", dtype={"group": str})
    assert split.columns.tolist() == ["path", "label", "split", "group"]
    assert split.groupby("group")["split"].nunique().max() == 1
    assert split.groupby("group").size().eq(2).all()
    groups = load_dataset(tmp_path / "w").table["group"].tolist()
    assert groups.count("0") == 2 and all(isinstance(g, str) for g in groups)


def test_split_column_is_honoured_and_val_carved(tmp_path):
    csv, images = simple_set(tmp_path, n=40, k=2, header="image,level,split")
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join([lines[0]] + [f"{line},{'TEST' if i >= 30 else 'train'}"
                                           for i, line in enumerate(lines[1:])]) + "\n")
    result = prepare_csv(tmp_path / "w", csv, images, progress=False)
    split = pd.read_csv(tmp_path / "w" / "split.csv")
    assert (split["split"].iloc[30:] == "test").all()
    assert result.counts["val"] == {0: 3, 1: 3}  # 15 % of 20 rows per class, taken from train
    assert json.loads((tmp_path / "w" / "dataset.json").read_text())["split_source"] == "csv column"


@pytest.mark.parametrize("case,needle", [
    ("no_images", "Images folder"),
    ("columns", "has no column 'level'; its columns are 'image', 'grade'"),
    ("header_only", "has a header but no rows"),
    ("too_few", "Class 2 has only 2 rows, too few to split"),
    ("all_dropped", "No usable row in"),
    ("one_class", "at least two classes"),
    ("fractions", r"val_fraction \+ test_fraction must be below 1"),
])
def test_fatal_errors_write_nothing(tmp_path, case, needle):
    csv, images = simple_set(tmp_path, n=12)
    kwargs = {}
    if case == "no_images":
        images = tmp_path / "nope"
    elif case == "columns":
        csv.write_text(csv.read_text().replace("image,level", "image,grade"))
    elif case == "header_only":
        csv.write_text("image,level\n")
    elif case == "too_few":
        csv.write_text("image,level\n" + "".join(f"img{i},{i % 2}\n" for i in range(10)) + "img10,2\nimg11,2\n")
    elif case == "all_dropped":
        images = tmp_path / "empty_dir"
        images.mkdir()
    elif case == "one_class":
        csv.write_text("image,level\n" + "".join(f"img{i},0\n" for i in range(12)))
    elif case == "fractions":
        kwargs = {"val_fraction": 0.5, "test_fraction": 0.5}
    with pytest.raises(UserError, match=needle):
        prepare_csv(tmp_path / "w", csv, images, progress=False, **kwargs)
    assert not (tmp_path / "w").exists()


@pytest.mark.skipif(not (IDRID / "labels.csv").exists(), reason=f"shared IDRiD set absent ({IDRID})")
def test_idrid(tmp_path):
    result = prepare_csv(tmp_path / "w", IDRID / "labels.csv", IDRID / "images", progress=False)
    # three pairs of byte-identical photographs carry two grades each (train 118 as grade 0 is test 064 as grade
    # 3): every copy is dropped, as one file listed with two labels is
    assert result.kept == 510 and not result.grouped
    assert result.skipped == {"byte-identical to another image that has another label (every copy dropped)": 6}
    assert sum(result.counts["test"].values()) == 102
    assert result.counts["test"] == {0: 34, 1: 5, 2: 32, 3: 18, 4: 13}
    assert sum(result.counts["val"].values()) == 77  # 15 % of 510, carved from IDRiD's train
    data = load_dataset(tmp_path / "w")
    assert all(p.startswith("test_") for p in data.rows("test")["path"])


def _with_grade_7(tmp_path: Path, n: int) -> tuple[Path, Path]:
    csv, images = simple_set(tmp_path, n=n, k=5)
    image(images / "typo.jpeg")
    image(images / "twin.jpeg")
    (images / "twin_copy.jpeg").write_bytes((images / "twin.jpeg").read_bytes())  # byte-identical rows survive
    with open(csv, "a") as f:
        f.write("twin,1\ntwin_copy,1\ntypo,7\n")
    return csv, images


def test_a_few_rows_beyond_a_gap_in_the_grades_are_dropped_and_reported(tmp_path, capsys):
    csv, images = _with_grade_7(tmp_path, 200)
    result = prepare_csv(tmp_path / "w", csv, images, progress=False)
    assert result.kept == 202 and sum(result.skipped.values()) == 1
    (reason,) = result.skipped
    assert reason.startswith("label beyond a gap in the labels (no row has 5, 6): not one of this set's classes 0–4")
    info = json.loads((tmp_path / "w" / "dataset.json").read_text())
    assert info["classes"] == [0, 1, 2, 3, 4] and info["identical"] == [["twin.jpeg", "twin_copy.jpeg"]]
    report = pd.read_csv(tmp_path / "w" / "data_report.csv", keep_default_na=False)
    assert report.to_dict("records") == [{"row": 204, "image": "typo", "label": 7, "reason": reason}]
    assert "Dropped 1 row(s) whose label lies beyond a gap: 7 (1 row(s), line 204)" in capsys.readouterr().err


def test_a_top_grade_too_rare_to_split_is_dropped_and_reported(tmp_path, capsys):
    csv, images = simple_set(tmp_path, n=200, k=5)
    for name in ("five_a", "five_b"):
        image(images / f"{name}.jpeg")
    with open(csv, "a") as f:
        f.write("five_a,5\nfive_b,5\n")  # a grade 5 typed twice in a 0-4 set: 1 % of the rows
    result = prepare_csv(tmp_path / "w", csv, images, progress=False)
    assert result.kept == 200
    (reason,) = result.skipped
    assert reason == "label 5 has only 2 row(s), too few to split into train, val and test: left out (add images of " \
                     "it, or --exclude-label 5)"
    assert json.loads((tmp_path / "w" / "dataset.json").read_text())["classes"] == [0, 1, 2, 3, 4]
    report = pd.read_csv(tmp_path / "w" / "data_report.csv")
    assert report["image"].tolist() == ["five_a", "five_b"] and report["label"].tolist() == [5, 5]
    assert "Dropped 2 row(s) of label 5 (line 202, 203)" in capsys.readouterr().err
    # in a small set the same two rows are a real share of it: refused by the split, as before
    small_csv, small_images = simple_set(tmp_path / "small", n=40, k=5)
    for name in ("five_a", "five_b"):
        image(small_images / f"{name}.jpeg")
    with open(small_csv, "a") as f:
        f.write("five_a,5\nfive_b,5\n")
    with pytest.raises(UserError, match="Class 5 has only 2 rows"):
        prepare_csv(tmp_path / "w2", small_csv, small_images, progress=False)
    # a split given by the CSV needs no class in every split: the two rows are kept there
    given_csv, given_images = simple_set(tmp_path / "given", n=200, k=5, header="image,level,split")
    lines = given_csv.read_text().splitlines()
    body = [f"{line},{('train', 'val', 'test')[i % 3]}" for i, line in enumerate(lines[1:])]
    for name in ("five_a", "five_b"):
        image(given_images / f"{name}.jpeg")
    given_csv.write_text("\n".join([lines[0], *body, "five_a,5,train", "five_b,5,test"]) + "\n")
    result = prepare_csv(tmp_path / "w3", given_csv, given_images, progress=False)
    assert result.kept == 202 and json.loads((tmp_path / "w3" / "dataset.json").read_text())["num_classes"] == 6


def test_many_rows_beyond_a_gap_are_refused_naming_the_gap_and_the_lines(tmp_path):
    csv, images = _with_grade_7(tmp_path, 40)
    with pytest.raises(UserError, match=r"no row has 5, 6, yet 1 of the 43 rows have a larger label: 7 \(1 row\(s\), "
                                        r"line 44\)\. Labels are the class indices 0 … k-1"):
        prepare_csv(tmp_path / "w", csv, images, progress=False)
    assert not (tmp_path / "w" / "split.csv").exists()
