"""Input layouts: folder-per-class sets, named classes, ordinal or nominal tasks, patient grouping."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from rich.console import Console

from members.data.classes import check_task, encode_labels
from members.infra.errors import UserError
from members.model.spec import load_preset
from tests.helpers import add_member, one_sentence_error, run_cli

RNG = np.random.default_rng(0)
CLASSES = ("cataract", "glaucoma", "normal")


def save(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(RNG.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(path)


def class_folders(root: Path, n: int = 8, *, nested: bool = True) -> Path:
    """``root/<class>/...png``: 8 images per class, half of the normal ones one folder deeper."""
    for c in CLASSES:
        for i in range(n):
            sub = "deeper/" if nested and c == "normal" and i % 2 else ""
            save(root / c / f"{sub}{c[:3]}{i}.png")
    return root


def info(work: Path) -> dict:
    return json.loads((work / "dataset.json").read_text())


def test_folder_per_class_layout(tmp_path):
    data = class_folders(tmp_path / "fundus")
    save(data / "stray.png")  # outside every class folder: ignored, and said so
    code, out, err = run_cli("prepare", "--workdir", tmp_path / "w", "--images", data)
    assert code == 0, err
    meta = info(tmp_path / "w")
    assert meta["classes"] == list(CLASSES) and meta["num_classes"] == 3 and meta["ordinal"] is False
    assert meta["source"] == f"folders:{data.resolve()}"
    split = pd.read_csv(tmp_path / "w" / "split.csv")
    assert len(split) == 24 and sorted(split["label"].unique()) == [0, 1, 2]
    assert all(p.split("/")[0] == CLASSES[label] for p, label in zip(split["path"], split["label"]))
    assert "normal/deeper/nor1.png" in set(split["path"])
    assert set(split["split"]) == {"train", "val", "test"}
    assert "nominal (unordered)" in err and "Ignored 1 image file(s)" in err
    assert "Not grouped by patient" in err and "may land in different splits" in err
    assert "prepared" in out


def test_split_folders_are_honoured(tmp_path):
    data = tmp_path / "fundus"
    for split, n in (("train", 6), ("valid", 2), ("test", 2)):
        for c in CLASSES:
            for i in range(n):
                save(data / split / c / f"{split}_{c}_{i}.png")
    code, _out, err = run_cli("prepare", "--workdir", tmp_path / "w", "--images", data)
    assert code == 0, err
    split = pd.read_csv(tmp_path / "w" / "split.csv")
    expected = split["path"].str.split("/").str[0].map({"train": "train", "valid": "val", "test": "test"})
    assert (split["split"] == expected).all()
    assert info(tmp_path / "w")["split_source"] == "split folders"


def test_integer_class_folders_are_ordinal_grades(tmp_path):
    for grade in range(3):
        for i in range(8):
            save(tmp_path / "g" / str(grade) / f"{grade}_{i}.png")
    code, _out, err = run_cli("prepare", "--workdir", tmp_path / "w", "--images", tmp_path / "g")
    assert code == 0, err
    assert info(tmp_path / "w")["classes"] == [0, 1, 2] and info(tmp_path / "w")["ordinal"] is True
    assert "ordinal (ordered grades)" in err


@pytest.mark.parametrize("case,needle", [
    ("empty_class", "holds no image file"),
    ("integer_name", "a class name that is also an integer is ambiguous"),
    ("no_class_folder", "has no class folder"),
    ("mixed_splits", "mixes split folders"),
])
def test_bad_folder_layouts(tmp_path, case, needle):
    data = tmp_path / "fundus"
    if case != "no_class_folder":
        class_folders(data)
    else:
        save(data / "a.png")
    if case == "empty_class":
        (data / "drusen" / "notes").mkdir(parents=True)
        (data / "drusen" / "notes" / "readme.txt").write_text("no images here")
    elif case == "integer_name":
        save(data / "3" / "x.png")
    elif case == "mixed_splits":
        save(data / "train" / "normal" / "x.png")
    code, _out, err = run_cli("prepare", "--workdir", tmp_path / "w", "--images", data)
    one_sentence_error(code, err, needle)
    assert not (tmp_path / "w" / "dataset.json").exists()


def test_a_nested_copy_with_its_own_split_folders_names_the_images_to_pass(tmp_path):
    """Kaggle's chest-xray-pneumonia: chest_xray/{train,val,test} beside chest_xray/chest_xray/{train,val,test} (and
    __MACOSX) was refused as split folders mixed with a class folder 'chest_xray'; reading both doubles the set."""
    data = tmp_path / "chest_xray"
    for base in (data, data / "chest_xray"):
        for split in ("train", "val", "test"):
            for c in ("NORMAL", "PNEUMONIA"):
                for i in range(3):
                    save(base / split / c / f"{split}_{c}_{i}.png")
    (data / "__MACOSX" / "chest_xray").mkdir(parents=True)
    code, _out, err = run_cli("prepare", "--workdir", tmp_path / "w", "--images", data)
    one_sentence_error(code, err, "holds split folders (test, train, val) and a folder 'chest_xray' with split "
                       "folders of its own (test, train, val)", f"--images {data / 'chest_xray'} (or delete")
    code, _out, err = run_cli("prepare", "--workdir", tmp_path / "w", "--images", data / "chest_xray")
    assert code == 0, err


def _csv_set(tmp_path: Path, labels: list[str], extra: dict[str, list[str]] | None = None) -> tuple[Path, Path]:
    images = tmp_path / "images"
    for i in range(len(labels)):
        save(images / f"im{i}.png")
    columns = {"image": [f"im{i}" for i in range(len(labels))], "level": labels, **(extra or {})}
    csv = tmp_path / "labels.csv"
    pd.DataFrame(columns).to_csv(csv, index=False)
    return csv, images


def test_csv_with_class_names_and_order(tmp_path):
    names = ["mild", "moderate", "none"]
    csv, images = _csv_set(tmp_path, [names[i % 3] for i in range(24)] + [""])
    code, _out, err = run_cli("prepare", "--workdir", tmp_path / "w", "--labels", csv, "--images", images,
                              "--classes", "none,mild,moderate", "--ordinal")
    assert code == 0, err
    meta = info(tmp_path / "w")
    assert meta["classes"] == ["none", "mild", "moderate"] and meta["ordinal"] is True
    split = pd.read_csv(tmp_path / "w" / "split.csv")
    want = {"mild": 1, "moderate": 2, "none": 0}
    assert all(want[names[int(p[2:-4]) % 3]] == label for p, label in zip(split["path"], split["label"]))
    report = pd.read_csv(tmp_path / "w" / "data_report.csv", keep_default_na=False)
    assert report["reason"].tolist() == ["label is empty"]


MARKERS = ["nan", "NaN", "NA", "N/A", "?", "-", "null", "None"]


def test_missing_value_markers_in_a_named_label_column_are_missing_labels_not_classes(tmp_path):
    """`none/mild/moderate` with some NaN, NA, ?, None … cells trained a model with classes 'nan', '?', …"""
    names = ["mild", "moderate", "none"]
    csv, images = _csv_set(tmp_path, [names[i % 3] for i in range(24)] + MARKERS + ["NA", "NA"])
    code, _out, err = run_cli("prepare", "--workdir", tmp_path / "w", "--labels", csv, "--images", images)
    assert code == 0, err
    assert info(tmp_path / "w")["classes"] == names and info(tmp_path / "w")["kept"] == 24
    report = pd.read_csv(tmp_path / "w" / "data_report.csv", keep_default_na=False)
    assert sorted(report["label"].str.lstrip("'")) == sorted(MARKERS + ["NA", "NA"])
    assert set(report["reason"]) == {"label is a missing-value marker (NaN, NA, N/A, null, None, ?, -): no label"}
    said = " ".join(err.split())
    assert "Note: 10 rows have a missing-value marker as their label ('NA' 3, " in said and "'NaN' 1" in said
    assert "dropped 10 label is a missing-value marker" in said  # the summary's count
    assert "a class really named 'NA' is kept by listing it in --classes" in said  # 'None' would clash with 'none'
    code, _out, err = run_cli("prepare", "--workdir", tmp_path / "w2", "--labels", csv, "--images", images,
                              "--classes", "mild,moderate,none,NA")
    assert code == 0, err  # listed in --classes, a marker is a class
    assert info(tmp_path / "w2")["classes"] == [*names, "NA"] and info(tmp_path / "w2")["kept"] == 27


def test_missing_value_markers_beside_integer_labels_are_dropped_not_refused_as_names(tmp_path):
    """0..4 with '?' and 'NaN' cells was refused: "The labels mix class names ('?', 'NaN') with integers"."""
    csv, images = _csv_set(tmp_path, [str(i % 3) for i in range(24)] + ["?", "NaN", "NA"] * 2)
    code, _out, err = run_cli("prepare", "--workdir", tmp_path / "w", "--labels", csv, "--images", images)
    assert code == 0, err
    assert info(tmp_path / "w")["classes"] == [0, 1, 2] and info(tmp_path / "w")["skipped"] == {
        "label is a missing-value marker (NaN, NA, N/A, null, None, ?, -): no label": 6}
    assert "--classes" not in err.split("Note: 6 rows have a missing-value marker")[1].split("\n")[0]


def test_a_marker_that_could_be_a_class_as_frequent_as_one_is_refused_with_both_readings():
    labels = ["None", "Mild", "Severe"] * 6
    with pytest.raises(UserError, match=r"^The label 'None' \(6 rows\) is a missing-value marker, yet as frequent as "
                                        r"a class .*--classes Mild,None,Severe\).*--exclude-label 'None'\.$"):
        encode_labels(labels)
    assert encode_labels(labels, order=["None", "Mild", "Severe"]).classes == ["None", "Mild", "Severe"]
    assert encode_labels(labels, strict=True).classes == ["Mild", "None", "Severe"]  # a folder is a class
    assert encode_labels(["Mild", "Severe"] * 6 + ["None"]).missing == {"None": 1}


@pytest.mark.parametrize("names", [3, 24, 25])
def test_half_names_half_integers_is_refused_not_half_dropped(names):
    """More than a handful of name rows beside integers is refused, whichever kind has more rows (24 names and
    24 integers dropped 24 rows with exit 0; 25 names were refused)."""
    labels = [str(i % 3) for i in range(24)] + [("No_DR", "Mild")[i % 2] for i in range(names)]
    leave = ("--exclude-label 'Mild' --exclude-label 'No_DR'" if names <= 24 else  # the kind with fewer rows
             "--exclude-label '0' --exclude-label '1' --exclude-label '2'")
    with pytest.raises(UserError, match=rf"^The labels mix class names \('Mild', 'No_DR': {names} rows\) with "
                                        rf"integers \('0', '1', '2': 24 rows\); .* {leave}\.$"):
        encode_labels(labels)


@pytest.mark.parametrize("labels,options,needle", [
    (["cat", "dog", "cat", "dog", "1"] * 4, [], "a class name that is also an integer is ambiguous"),
    (["cat", "dog"] * 8, ["--classes", "cat,bird"], "--classes lacks 'dog'"),
    (["No DR", "Mild"] * 8 + ["no dr", "No  DR"], [], "The labels 'No  DR' (1 rows) and 'No DR' (8 rows) and 'no dr' "
                                                    "(1 rows) differ only in case or spacing"),
    (["No DR", "Mild", "Severe"] * 6, ["--ordinal"], "--ordinal says the named classes (Mild, No DR, Severe) are ordered "
                                                    "grades, but not in which order"),
    (["cat", "dog"] * 8, ["--classes", "cat,dog,bird"], "names 'bird', which no row has"),
    ([str(i % 2) for i in range(16)], ["--classes", "a,b"], "drop --classes"),
], ids=["name_and_integer", "order_lacks_a_class", "case_variants", "ordinal_names_without_order", "order_has_an_extra_class",
        "order_for_integers"])
def test_bad_class_labels(tmp_path, labels, options, needle):
    csv, images = _csv_set(tmp_path, labels)
    code, _out, err = run_cli("prepare", "--workdir", tmp_path / "w", "--labels", csv, "--images", images, *options)
    one_sentence_error(code, err, needle)


def test_a_named_class_too_small_to_split_is_named(tmp_path):
    csv, images = _csv_set(tmp_path, ["cat", "dog"] * 8 + ["bird"] * 2)
    code, _out, err = run_cli("prepare", "--workdir", tmp_path / "w", "--labels", csv, "--images", images)
    line = one_sentence_error(code, err, "Class 'bird' has only 2 rows", "add images of class 'bird'")
    assert "Class 0" not in line and "class 0" not in line


def test_split_folders_with_a_val_of_one_class_are_refused(tmp_path):
    data = tmp_path / "fundus"
    class_folders(data / "train", n=6, nested=False)
    for i in range(3):
        save(data / "val" / "normal" / f"v{i}.png")
    code, _out, err = run_cli("prepare", "--workdir", tmp_path / "w", "--images", data)
    one_sentence_error(code, err, "The val split given by the split folders holds only rows of class 'normal' (3 rows)",
                       "put rows of at least two classes in val, or drop the split folders")
    assert not (tmp_path / "w" / "dataset.json").exists()


def test_encode_labels_keeps_integer_csvs_as_they_were():
    assert encode_labels(["0", "1", "moderate"]).classes is None  # a stray name is dropped row by row
    assert encode_labels(["0", "1"] * 200 + ["x"] * 4).classes is None  # 4 of 404: under 1 %, still a handful
    enc = encode_labels(["b", "a", "b"])
    assert enc.classes == ["a", "b"] and enc.texts == ["1", "0", "1"]


def test_group_column(tmp_path):
    patients = [f"p{i // 3}" for i in range(30)]
    csv, images = _csv_set(tmp_path, [str((i // 3) % 2) for i in range(30)], {"patient": patients})
    code, _out, err = run_cli("prepare", "--workdir", tmp_path / "w", "--labels", csv, "--images", images,
                              "--group-column", "patient")
    assert code == 0, err
    split = pd.read_csv(tmp_path / "w" / "split.csv", dtype=str)
    assert split.groupby("group")["split"].nunique().max() == 1  # no patient in two splits
    assert "Grouped by patient from the column patient: 10 groups for 30 images" in err
    assert info(tmp_path / "w")["grouping"] == {"by": "column patient", "groups": 10}


def test_group_pattern_on_a_folder_set(tmp_path):
    data = tmp_path / "fundus"
    for c in CLASSES:
        for i in range(8):
            save(data / c / f"{c}{i // 2}_{'left' if i % 2 else 'right'}.png")
    code, _out, err = run_cli("prepare", "--workdir", tmp_path / "w", "--images", data, "--group-pattern",
                              r"/(\w+?\d+)_")
    assert code == 0, err
    split = pd.read_csv(tmp_path / "w" / "split.csv", dtype=str)
    assert split["group"].nunique() == 12 and split.groupby("group")["split"].nunique().max() == 1
    assert "12 groups for 24 images" in err


@pytest.mark.parametrize("pattern,needle,ok", [
    (r"\d+_left", "has no capture group", False),
    (r"([0-9]+)(_left)", "has 2 capture groups; keep one for the patient id", False),  # the first was taken silently
    (r"([", "is not a valid regular expression", False),
    (r"(zzz)", "gave no patient id for any of the", True),
])
def test_group_pattern_problems(tmp_path, pattern, needle, ok):
    data = class_folders(tmp_path / "fundus")
    code, _out, err = run_cli("prepare", "--workdir", tmp_path / "w", "--images", data, "--group-pattern", pattern)
    if ok:
        assert code == 0 and needle in err and "may land in different splits" in err
    else:
        one_sentence_error(code, err, needle)
        assert "{pattern" not in err and pattern in err  # the pattern itself is quoted back


@pytest.mark.parametrize("where", ["top", "in a class", "in a split"])
def test_a_workdir_inside_the_images_folder_is_not_taken_for_a_class(tmp_path, where, capsys):
    from members.data.dataset import prepare_folders

    data = tmp_path / "fundus"
    if where == "in a split":
        for split in ("train", "val", "test"):
            class_folders(data / split, n=4, nested=False)
        work = data / "train" / "work"
    else:
        class_folders(data)
        work = data / ("work" if where == "top" else "normal/work")
    first = prepare_folders(work, data, progress=False)
    add_member(work, "a", seed=1)  # the workdir fills up with members' files
    (work / "members" / "a" / "curves.png").write_bytes((data / "glaucoma" / "gla0.png").read_bytes()
                                                          if where != "in a split" else b"")
    again = prepare_folders(work, data, progress=False)  # the same data: unchanged, not "a class named work"
    assert again.kept == first.kept and info(work)["classes"] == list(CLASSES)
    if where != "in a class":
        assert f"Left out {work}: it holds the workdir, not a class of images." in capsys.readouterr().err


@pytest.mark.parametrize("where", ["top", "in a class", "in a split", "below a plain folder"])
@pytest.mark.parametrize("names", ["named", "integer"])
def test_another_workdir_inside_the_images_folder_is_passed_over(tmp_path, where, names, capsys):
    """A trained workdir (``dataset.json``, members' plots) is no class, and its PNGs are no training images,
    whether it is the workdir prepared now or another one."""
    from members.data.dataset import prepare_folders

    data = tmp_path / "fundus"
    if where == "in a split":
        for split in ("train", "val", "test"):
            class_folders(data / split, n=4, nested=False)
    else:
        class_folders(data, n=6)
    if names == "integer":  # class folders 0/, 1/, 2/: a folder 'w1' beside them would read as a class name
        for base in ([data / s for s in ("train", "val", "test")] if where == "in a split" else [data]):
            for i, c in enumerate(CLASSES):
                (base / c).rename(base / str(i))
    first_class = "0" if names == "integer" else CLASSES[0]
    other = {"top": data / "w1", "in a class": data / first_class / "w1", "in a split": data / "train" / "w1",
             "below a plain folder": data / "runs" / "w1"}[where]
    prepare_folders(other, data, progress=False)  # the other workdir, prepared and "trained"
    add_member(other, "a", seed=1)
    (other / "members" / "a" / "curves.png").write_bytes(next(data.rglob("*.png")).read_bytes())
    capsys.readouterr()
    result = prepare_folders(tmp_path / "w2", data, progress=False)
    split = pd.read_csv(tmp_path / "w2" / "split.csv")
    assert not any("w1/" in p for p in split["path"]), split["path"].tolist()
    assert info(tmp_path / "w2")["classes"] == ([0, 1, 2] if names == "integer" else list(CLASSES))
    assert result.kept == (36 if where == "in a split" else 18)
    if where != "in a class":
        left = data / "runs" if where == "below a plain folder" else other
        assert f"Left out {left}: it holds another workdir (dataset.json)" in capsys.readouterr().err


@pytest.fixture(scope="module")
def nominal(tmp_path_factory) -> Path:
    """A prepared folder-per-class workdir (nominal) with two members' cached predictions."""
    from members.data.dataset import prepare_folders

    root = tmp_path_factory.mktemp("nominal")
    data = class_folders(root / "fundus", n=12)
    prepare_folders(root / "w", data, progress=False)
    add_member(root / "w", "a", seed=1)
    add_member(root / "w", "b", seed=2)
    return root / "w"


def test_nominal_vote_has_no_thresholds_and_selects_by_macro_f1(nominal, capsys):
    from ensemble.vote import run_vote

    report = run_vote(nominal, n_boot=20, console=Console(file=io.StringIO()))
    assert not any(name.endswith("+thr") for name in report["ensembles"])
    assert report["selection_metric"].startswith("macro_f1") and report["ordinal"] is False
    assert report["classes"] == list(CLASSES) and "QWK" not in report["verdict"]
    assert "chosen by val macro-F1" in capsys.readouterr().err
    md = (nominal / "ensemble" / "report.md").read_text()
    assert "cataract, glaucoma, normal; nominal" in md


def test_nominal_tasks_hold_no_qwk_in_report_json_or_metrics_json(nominal, tmp_path):
    """report.json and metrics.json held QWK on alphabetical class indices for nominal classes, where `presets
    --json` gave null: null in every file now (a {value, ci} entry keeps its shape for readers)."""
    import shutil

    from ensemble.importer import import_member
    from ensemble.vote import run_vote
    from tests.test_import import write_probs

    work = tmp_path / "w"
    shutil.copytree(nominal, work)
    csvs = write_probs(work, tmp_path)
    folder = import_member(work, "imported", val_csv=csvs["val"], test_csv=csvs["test"])
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["test"]["qwk"] is None and metrics["val"]["qwk"] is None and metrics["test"]["macro_f1"] > 0
    from members.training.trainer import train_member

    train_member(work, load_preset("tiny").replace(input_size=16, epochs=1, monitor="val_macro_f1"), name="t",
                 preset="tiny", log=lambda line: None, show_progress=False)
    metrics = json.loads((work / "members" / "t" / "metrics.json").read_text())
    assert metrics["test"]["qwk"] is None and metrics["val"]["qwk"] is None and metrics["test"]["accuracy"] >= 0
    run_vote(work, n_boot=20, console=Console(file=io.StringIO()))
    report = json.loads((work / "ensemble" / "report.json").read_text())
    entries = [report["baseline"], *report["members"].values(), *report["ensembles"].values(),
               report["difference"]["metrics"]]
    assert all(e["qwk"] == {"value": None, "ci": [None, None]} for e in entries)
    assert all(m["qwk"] is None for m in report["val"]["members"].values())
    assert all(e["macro_f1"]["value"] is not None for e in entries[:-1])
    code, out, err = run_cli("presets", "--workdir", work, "--json")
    assert code == 0, err
    assert {r["test_qwk"] for r in json.loads(out)} == {None}


@pytest.mark.parametrize("options,needle", [
    (["--thresholds", "on"], "Grade thresholds cut the expected grade"),
    (["--method", "soft"], None),
    (["--select-by", "qwk"], "--select-by qwk needs ordered grades"),
])
def test_nominal_vote_refuses_grade_logic(nominal, tmp_path, options, needle):
    import shutil

    work = tmp_path / "w"
    shutil.copytree(nominal, work)
    code, _out, err = run_cli("vote", "--workdir", work, "--bootstrap", "10", *options)
    if needle is None:
        assert code == 0, err
    else:
        one_sentence_error(code, err, needle)


def test_nominal_task_refuses_grade_heads_and_qwk_monitor():
    notes = []
    spec = check_task(load_preset("tiny").replace(monitor="val_qwk"), False, notes.append)
    assert spec.monitor == "val_macro_f1" and "instead of val_qwk" in notes[0]
    assert check_task(load_preset("tiny"), True).monitor == load_preset("tiny").monitor
    with pytest.raises(UserError, match="The ordinal head predicts an ordered grade.*nominal"):
        check_task(load_preset("tiny").replace(head="ordinal"), False)


def test_a_recipe_presets_regression_head_becomes_softmax_on_nominal_classes():
    """small, wide, deep... have a regression head; on a nominal task the preset's own head is swapped, with a note,
    while a grade head asked for by the user (one the preset does not have) is still refused."""
    notes = []
    small = load_preset("small")
    assert small.head == "regression"
    spec = check_task(small, False, notes.append, "small")
    assert spec.head == "softmax" and spec.replace(head="regression") == small.replace(monitor=spec.monitor)
    assert "preset small has a regression head" in notes[0] and "softmax head instead" in notes[0]
    assert check_task(small, True, notes.append, "small") is small  # ordered grades: untouched
    with pytest.raises(UserError, match="The ordinal head predicts an ordered grade"):
        check_task(small.replace(head="ordinal"), False, None, "small")
    with pytest.raises(UserError, match="The regression head predicts an ordered grade"):
        check_task(load_preset("tiny").replace(head="regression"), False, None, "tiny")


def test_ordinal_head_refused_at_train_time(nominal, tmp_path):
    import shutil

    work = tmp_path / "w"
    shutil.copytree(nominal, work)
    code, _out, err = run_cli("train-member", "--workdir", work, "--preset", "tiny", "--head", "ordinal",
                              "--name", "o")
    one_sentence_error(code, err, "classes are nominal")
    assert not (work / "members" / "o").exists()


@pytest.mark.parametrize("asked", [["--head", "regression"], ["--set", "head=regression"]])
def test_a_grade_head_asked_for_on_nominal_classes_is_refused_even_when_it_is_the_presets(nominal, tmp_path, asked):
    import shutil

    work = tmp_path / "w"
    shutil.copytree(nominal, work)
    code, _out, err = run_cli("train-member", "--workdir", work, "--preset", "small", "--name", "r", *asked)
    one_sentence_error(code, err, "The regression head predicts an ordered grade", "nominal")
    code, _out, err = run_cli("train-members", "--workdir", work, "--preset", "small", "--preset", "wide",
                              "--set", "head=regression")  # train-members has --set only
    one_sentence_error(code, err, "The regression head predicts an ordered grade")
    assert not (work / "members" / "r").exists() and not (work / "members" / "small").exists()


def test_a_nominal_member_shows_macro_f1_and_leaves_qwk_out_of_its_history(nominal, tmp_path):
    import csv
    import json
    import shutil

    work = tmp_path / "w"
    shutil.copytree(nominal, work)
    code, out, err = run_cli("train-member", "--workdir", work, "--preset", "tiny", "--input-size", "16",
                             "--epochs", "1", "--name", "t")
    assert code == 0, err
    assert "val_macro_f1=" in err and "val_qwk=" not in err and "QWK" not in out and "macro-F1" in out
    member = work / "members" / "t"
    rows = list(csv.DictReader((member / "history.csv").open()))
    assert rows and all(r["val_qwk"] == "" and float(r["val_macro_f1"]) >= 0 for r in rows)
    assert json.loads((member / "metrics.json").read_text())["ordinal"] is False
    code, out, err = run_cli("presets", "--workdir", work, "--json")
    listed = {r["member"]: r for r in json.loads(out)}
    assert listed["t"]["test_qwk"] is None and listed["t"]["score"] == "macro-F1"
    assert isinstance(listed["t"]["test_macro_f1"], float)


@pytest.mark.parametrize("k, ordinal, shown", [(2, True, "val_kappa=0.250"), (5, True, "val_qwk=0.250"),
                                                (3, False, "val_macro_f1=0.500")])
def test_the_epoch_line_names_the_score_of_the_task(k, ordinal, shown):
    from types import SimpleNamespace

    from members.training.epoch_log import EpochLog

    lines: list[str] = []
    row = {"epoch": 1, "phase": "train", "input_size": 16, "lr": 0.01, "val_loss": 1.0, "val_accuracy": 0.5,
           "val_balanced_accuracy": 0.5, "val_qwk": 0.25, "val_macro_f1": 0.5, "seconds": 1.0}
    EpochLog("m", 1, lines.append, num_classes=k, ordinal=ordinal).tell(
        row, SimpleNamespace(loss=1.0, accuracy=0.5, wait_share=0.0))
    scores = [w for w in lines[0].split() if w.startswith(("val_qwk=", "val_kappa=", "val_macro_f1="))]
    assert scores == [shown], lines[0]


def test_a_test_split_without_labels_is_said_to_be_carved_from_train(tmp_path):
    """A Kaggle-style CSV whose test rows have no grade: those rows were dropped and test carved from train, silently."""
    labels = [str(i % 3) for i in range(30)] + [""] * 6
    split = ["train"] * 24 + ["val"] * 6 + ["test"] * 6
    csv, images = _csv_set(tmp_path, labels, {"split": split})
    code, _out, err = run_cli("prepare", "--workdir", tmp_path / "w", "--labels", csv, "--images", images)
    assert code == 0, err
    assert ('Note: all 6 test rows of the CSV were dropped, mostly because "label is empty" (6 rows), so test was carved '
            "from the train rows instead; unlabelled images are graded with `predict`, not scored as test.") in " ".join(
        err.split())
    assert "val rows of the CSV" not in err
    done = pd.read_csv(tmp_path / "w" / "split.csv")
    assert (done["split"] == "test").sum() > 0 and (done["split"] == "val").sum() == 6


def test_collapse_advice_on_nominal_classes_does_not_suggest_a_grade_head():
    from members.training.collapse import collapse_advice

    tiny = load_preset("tiny")
    assert "--set head=regression" in collapse_advice(tiny)
    nominal_advice = collapse_advice(tiny, ordinal=False)
    assert "head=regression" not in nominal_advice and "--set sampling=balanced" in nominal_advice
    assert "fundus_crop=true (fundus photographs)" in nominal_advice


def test_a_file_name_in_another_encoding_is_dropped_and_a_class_folder_in_one_is_refused(tmp_path):
    import os

    data = class_folders(tmp_path / "fundus", nested=False)
    latin1 = os.fsdecode(b"caf\xe9.png")  # a Latin-1 name from a Windows zip: lone surrogates in Python
    save(data / "normal" / latin1)
    work = tmp_path / "w"
    code, out, err = run_cli("prepare", "--workdir", work, "--images", data)
    assert code == 0, err
    assert "dropped      1  image file name is not valid UTF-8" in err
    report = pd.read_csv(work / "data_report.csv")
    assert report["image"].tolist() == ["normal/caf\\xe9.png"]  # escaped, so the UTF-8 report can be written
    assert len(pd.read_csv(work / "split.csv")) == 24
    os.rename(data / "normal", data / os.fsdecode(b"norm\xe9"))
    code, _, err = run_cli("prepare", "--workdir", tmp_path / "w2", "--images", data)
    one_sentence_error(code, err, "norm\\xe9 has a name that is not valid UTF-8", "rename it")


HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64)  # an iPhone photo's header (no pixels)


@pytest.mark.parametrize("layout", ["folders", "csv"])
def test_phone_heic_photos_and_broken_links_are_dropped_saying_what_they_are(tmp_path, layout):
    """A HEIC photo was "no image extension ... needs its extension, .jpg or .png" (folders) or "does not decode
    (truncated or not an image)" (CSV); a link to nothing was "image file not found", where predict says it is a
    symbolic link."""
    from ensemble.inference import check_file
    from members.data.labels import REASON_BROKEN_LINK
    from members.data.pillow_image import REASON_HEIF

    data = class_folders(tmp_path / "fundus", nested=False)
    (data / "normal" / "IMG_0001.HEIC").write_bytes(HEIC)
    (data / "normal" / "IMG_0002").write_bytes(HEIC.replace(b"ftypheic", b"ftypmif1"))  # no extension: its brand
    (data / "glaucoma" / "scan.avif").write_bytes(HEIC.replace(b"heic", b"avif"))
    (data / "normal" / "gone.png").symlink_to("nothere.png")
    args = ["--images", data]
    if layout == "csv":
        names = [p.relative_to(data).as_posix() for p in sorted(data.rglob("*")) if p.is_symlink() or p.is_file()]
        (tmp_path / "labels.csv").write_text("image,level\n" + "".join(f"{n},{n.split('/')[0]}\n" for n in names))
        args += ["--labels", tmp_path / "labels.csv", "--label-column", "level"]
    code, _, err = run_cli("prepare", "--workdir", tmp_path / "w", *args)
    assert code == 0, err
    report = pd.read_csv(tmp_path / "w" / "data_report.csv")
    reasons = dict(zip(report["image"], report["reason"]))
    heif = {"normal/IMG_0001.HEIC", "normal/IMG_0002", "glaucoma/scan.avif"}
    assert reasons == {**{name: REASON_HEIF for name in heif}, "normal/gone.png": REASON_BROKEN_LINK}
    assert "convert it to JPEG or PNG" in REASON_HEIF and "no image extension" not in err
    assert check_file(str(data / "normal" / "IMG_0002")) == REASON_HEIF.removeprefix("image ")  # predict alike
    assert check_file(str(data / "normal" / "gone.png")) == "is a symbolic link to nothere.png, which does not exist"


def test_a_data_sets_own_dataset_json_is_no_workdir(tmp_path):
    """A metadata file called dataset.json in a class folder (a licence note) made prepare drop the whole class
    silently: only a workdir's dataset.json (fingerprint, classes, beside split.csv) marks one."""
    from members.data.dataset import prepare_folders

    data = tmp_path / "fundus"
    class_folders(data, n=6)
    (data / CLASSES[1] / "dataset.json").write_text('{"license": "CC-BY"}')
    result = prepare_folders(tmp_path / "w", data, progress=False)
    assert info(tmp_path / "w")["classes"] == list(CLASSES) and result.kept == 18
