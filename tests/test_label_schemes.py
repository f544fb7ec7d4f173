"""Label schemes prepare must recognise rather than half-drop: negative or gapped numbers, one number spelled
several ways, names holding commas, names beside a number, one name in two Unicode forms."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from members.data.classes import encode_labels
from members.infra.errors import UserError
from tests.helpers import one_sentence_error, run_cli

RNG = np.random.default_rng(7)


def _save(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(RNG.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(path)


def _csv_set(tmp_path: Path, labels: list[str]) -> tuple[Path, Path]:
    images = tmp_path / "images"
    for i in range(len(labels)):
        _save(images / f"im{i}.png")
    csv = tmp_path / "labels.csv"
    pd.DataFrame({"image": [f"im{i}" for i in range(len(labels))], "level": labels}).to_csv(csv, index=False)
    return csv, images


def _prepare(tmp_path: Path, labels: list[str], *options: str, work: str = "w") -> tuple[int, str, str]:
    csv, images = (tmp_path / "labels.csv", tmp_path / "images") if (tmp_path / "images").is_dir() else \
        _csv_set(tmp_path, labels)
    return run_cli("prepare", "--workdir", tmp_path / work, "--labels", csv, "--images", images, *options)


def _info(work: Path) -> dict:
    return json.loads((work / "dataset.json").read_text())


def test_negative_integer_labels_are_refused_naming_them_not_dropped_as_a_class(tmp_path):
    """-1/0/1 dropped every -1 row ("not a non-negative integer") and exited 0: a whole class gone silently."""
    labels = [("-1", "0", "1")[i % 3] for i in range(36)]
    code, _out, err = _prepare(tmp_path, labels)
    one_sentence_error(code, err, "The labels include negative integers ('-1': 12 rows", "--classes=-1,0,1",
                       "--nominal", "--exclude-label -1")
    assert not (tmp_path / "w" / "dataset.json").exists()
    for options, classes, ordinal in ((["--classes=-1,0,1", "--ordinal"], ["-1", "0", "1"], True),
                                      (["--nominal"], ["-1", "0", "1"], False),
                                      (["--exclude-label", "-1"], [0, 1], True)):
        work = "w" + "".join(options)
        code, _out, err = _prepare(tmp_path, labels, *options, work=work)
        assert code == 0, err
        meta = _info(tmp_path / work)
        assert meta["classes"] == classes and meta["ordinal"] is ordinal
        assert meta["kept"] == (24 if "--exclude-label" in options else 36)


def test_negative_and_positive_labels_name_the_negative_not_a_start_at_one():
    """-1/1 said "The integer labels start at 1, not 0", never naming -1; with one class left after leaving -1
    out, --exclude-label is not offered."""
    with pytest.raises(UserError, match=r"^The labels include negative integers \('-1': 10 rows; 10 of the 20 rows\)"
                                        r".*--classes=-1,1 .*--nominal \(unordered classes\)\.$"):
        encode_labels(["-1", "1"] * 10)


@pytest.mark.parametrize("odd,needle", [("0.5", "numbers that are not integers ('0.5': 10 rows"),
                                        ("1000", "numbers too large for a class index (at most 999) ('1000': 10")])
def test_any_class_of_numbers_a_row_check_would_drop_is_refused(odd, needle):
    """The class of problem: no per-row bad-label drop removes a class's worth of rows (a handful still drops)."""
    with pytest.raises(UserError, match=r"^The labels include " + needle.replace("(", r"\(").replace(")", r"\)")):
        encode_labels(["0", "1", odd] * 10)
    assert encode_labels(["0", "1"] * 20 + [odd]).classes is None  # one typo: dropped and reported by prepare
    assert encode_labels(["0", "1", odd] * 10, nominal=True).classes == sorted(["0", "1", odd], key=float)


def test_one_number_spelled_several_ways_is_one_class_with_a_note_and_kept_apart_by_classes(tmp_path):
    """0, 00, 1, 01 became classes 0 and 1 with no word; 2 and 2.0 stay one class (as before), now said."""
    labels = [("0", "00", "1", "01")[i % 4] for i in range(32)]
    code, _out, err = _prepare(tmp_path, labels, "--nominal")
    assert code == 0, err
    said = " ".join(err.split())
    assert "Note: the labels spell one number several ways, read as one class each ('0' and '00' as 0; '1' and " \
           "'01' as 1)" in said and "--classes 0,00,1,01" in said
    assert _info(tmp_path / "w")["classes"] == [0, 1]
    code, _out, err = _prepare(tmp_path, labels, "--classes", "0,00,1,01", work="w2")
    assert code == 0, err
    assert _info(tmp_path / "w2")["classes"] == ["0", "00", "1", "01"] and "spell one number" not in err
    assert encode_labels(["2", "2.0", "1", "0"]).merged == {"2": ["2", "2.0"]}


def test_class_names_holding_commas_are_given_one_per_classes_option(tmp_path):
    names = ["Normal", "Pneumonia, viral", "Pneumonia, bacterial"]
    labels = [names[i % 3] for i in range(30)]
    code, _out, err = _prepare(tmp_path, labels, "--classes", ",".join(names), "--ordinal")
    one_sentence_error(code, err, "--classes names 'Pneumonia' twice",
                       "one --classes per name: --classes 'Pneumonia, bacterial' --classes")
    code, _out, err = _prepare(tmp_path, labels, "--ordinal")
    one_sentence_error(code, err, "the named classes (Normal, 'Pneumonia, bacterial', 'Pneumonia, viral')",
                       "one --classes per name")
    order = [a for n in names for a in ("--classes", n)]
    code, _out, err = _prepare(tmp_path, labels, *order, "--ordinal", work="w2")
    assert code == 0, err
    assert _info(tmp_path / "w2")["classes"] == names
    assert "Classes: Normal, 'Pneumonia, viral', 'Pneumonia, bacterial' — ordinal" in " ".join(err.split())


def test_names_beside_a_number_folder_advise_leaving_out_the_few_and_the_advice_works(tmp_path):
    """Six named folders and one `10`: the advice listed 3 of the 6 names to exclude (following it repeated the
    error); the numbers are the few, so they are the ones to leave out or keep as a name."""
    names = ["cat", "Dog", "zebra fish", "Ärger", "x-ray", "bird", "10"]
    for name in names:
        for j in range(6):
            _save(tmp_path / "data" / name / f"{j}.png")
    code, _out, err = run_cli("prepare", "--workdir", tmp_path / "w", "--images", tmp_path / "data")
    line = one_sentence_error(code, err, "a class name that is also an integer is ambiguous",
                              "leave the numbers' rows out with --exclude-label '10'.")
    assert "'Dog,bird,cat,x-ray,zebra fish,Ärger,10'" in line  # quoted: a name holds a space
    code, _out, err = run_cli("prepare", "--workdir", tmp_path / "w", "--images", tmp_path / "data",
                              "--exclude-label", "10")
    assert code == 0, err
    assert len(_info(tmp_path / "w")["classes"]) == 6
    code, _out, err = run_cli("prepare", "--workdir", tmp_path / "w2", "--images", tmp_path / "data",
                              "--classes", "cat,Dog,zebra fish,Ärger,x-ray,bird,10")
    assert code == 0, err
    assert _info(tmp_path / "w2")["classes"][-1] == "10"
    many = [f"n{i}" for i in range(8) for _ in range(3)] + [str(i % 3) for i in range(30)]
    with pytest.raises(UserError, match=r"keep the numbers as class names with --classes listing every label in "
                                        r"order \(e\.g\. --classes n0,n1,.*\)\.$"):  # 8 names: no exclude advice
        encode_labels(many)


def test_gapped_integer_labels_offer_and_honour_keeping_the_numbers_as_names(tmp_path):
    """0, 2, 4: "fix or remove those rows" would have deleted two of the three classes."""
    labels = [("0", "2", "4")[i % 3] for i in range(30)]
    code, _out, err = _prepare(tmp_path, labels)
    one_sentence_error(code, err, "The integer labels leave a gap: no row has 1, 3",
                       "keep them as class names (--classes 0,2,4, adding --ordinal", "or --nominal)")
    for options, ordinal in ((["--classes", "0,2,4", "--ordinal"], True), (["--nominal"], False)):
        work = "w" + options[-1]
        code, _out, err = _prepare(tmp_path, labels, *options, work=work)
        assert code == 0, err
        assert _info(tmp_path / work)["classes"] == ["0", "2", "4"] and _info(tmp_path / work)["ordinal"] is ordinal


def test_start_at_one_advice_names_the_numbers_themselves(tmp_path):
    labels = [("1", "2", "3")[i % 3] for i in range(30)]
    code, _out, err = _prepare(tmp_path, labels)
    one_sentence_error(code, err, "The integer labels start at 1", "(--classes 1,2,3 --ordinal, or --nominal")
    code, _out, err = _prepare(tmp_path, labels, "--classes", "1,2,3", "--ordinal", work="w2")
    assert code == 0, err


def test_one_folder_name_in_two_unicode_forms_is_one_class(tmp_path):
    """macOS writes `éclair` decomposed (e + combining accent); beside a composed copy it made two classes that look
    the same."""
    composed, decomposed = "éclair", unicodedata.normalize("NFD", "éclair")
    assert composed != decomposed
    for folder in (composed, decomposed, "tart"):
        for j in range(6):
            _save(tmp_path / "data" / folder / f"{j}.png")
    code, _out, err = run_cli("prepare", "--workdir", tmp_path / "w", "--images", tmp_path / "data")
    assert code == 0, err
    meta = _info(tmp_path / "w")
    assert meta["classes"] == ["tart", composed] and meta["kept"] == 18
    assert "are written in two Unicode forms" in err
    csv = tmp_path / "labels.csv"  # a labels CSV alike
    pd.DataFrame({"image": [f"{f}/{j}.png" for f in (composed, decomposed, "tart") for j in range(6)],
                  "level": [f for f in (composed, decomposed, "tart") for _ in range(6)]}).to_csv(csv, index=False)
    code, _out, err = run_cli("prepare", "--workdir", tmp_path / "w2", "--labels", csv, "--images", tmp_path / "data")
    assert code == 0, err
    assert _info(tmp_path / "w2")["classes"] == ["tart", composed]
