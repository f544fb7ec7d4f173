"""predict on a tiny voted workdir: two members (16 and 24 px, one epoch), combiners from run_vote."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from ensemble.inference import check_file, load_ensemble, member_probs, predict_images
from members.infra.atomic import read_json, sha256_file, write_json
from members.infra.errors import UserError


@pytest.fixture(scope="module")
def voted(tmp_path_factory, trained) -> Path:
    """``trained`` (member t1, 16 px) plus t2 (24 px), voted with soft and hard (each also +thr)."""
    from ensemble.vote import run_vote
    from members.model.spec import load_preset
    from members.training.trainer import train_member

    work = tmp_path_factory.mktemp("voted") / "w"
    shutil.copytree(trained, work)
    train_member(work, load_preset("tiny").replace(input_size=24, epochs=1, seed=1), name="t2", preset="tiny",
                 log=lambda line: None, show_progress=False)
    run_vote(work, methods=("soft", "hard"), n_boot=50, keep_collapsed=True, console=Console(file=io.StringIO()))
    return work


@pytest.fixture(scope="module")
def images(demo_images, tmp_path_factory) -> dict[str, list[str]]:
    """Five good JPEGs and five bad inputs: missing, text, empty, truncated JPEG, a directory."""
    good = sorted(str(p) for p in (demo_images / "images").glob("*.jpeg"))[:5]
    bad_dir = tmp_path_factory.mktemp("bad")
    (bad_dir / "notes.jpeg").write_text("this is not an image\n")
    (bad_dir / "empty.png").write_bytes(b"")
    data = Path(good[0]).read_bytes()
    (bad_dir / "cut.jpeg").write_bytes(data[: len(data) // 2])
    (bad_dir / "folder.jpeg").mkdir()
    bad = [str(bad_dir / n) for n in ("missing.jpeg", "notes.jpeg", "empty.png", "cut.jpeg", "folder.jpeg")]
    return {"good": good, "bad": bad}


def _run(work: Path, paths: list[str], tmp_path: Path, **kwargs):
    out = tmp_path / "pred.csv"
    result = predict_images(work, paths, out=out, **kwargs)
    return result, pd.read_csv(out)


def test_csv_rows_probabilities_agreement_and_referral(voted, images, tmp_path, capsys) -> None:
    good, bad = images["good"], images["bad"]
    mixed = [good[0], bad[0], good[1], bad[1], bad[2], good[2], bad[3], good[3], bad[4], good[4]]
    result, full = _run(voted, mixed, tmp_path)
    k = 5
    assert list(full.columns) == ["path", "label", "class", "label_prob", "top_class", "top_prob", "agreement",
                                  "review", *(f"prob_{j}" for j in range(k)), "p_referable", "referable", "note"]
    # every input has a row: the graded ones in the order given, then the ones that could not be read, referred
    assert full["path"].tolist() == good + [p for p in mixed if p in result.skipped]  # ungraded: in input order
    ungraded = full.iloc[len(good):]
    assert (ungraded["review"] == 1).all() and ungraded["label"].isna().all() and ungraded["prob_0"].isna().all()
    assert [n.split(":")[0] for n in ungraded["note"]] == ["not graded"] * len(bad)
    table = full.iloc[:len(good)].astype({"label": int, "top_class": int, "review": int})
    # review 1 exactly where the note says why: here only the review rule (low confidence, no member agreeing)
    assert (table["note"].notna() == (table["review"] == 1)).all()
    assert all(n.startswith("review: ") for n in table["note"].dropna())
    low = result.confidence < read_json(voted / "ensemble" / "report.json")["referral"]["threshold"]
    assert all(("low confidence: " in n) == bool(is_low) for n, is_low in zip(table["note"].fillna(""), low))
    assert (table["class"].astype(int) == table["label"]).all()  # integer grades: the class is the label
    probs = table[[f"prob_{j}" for j in range(k)]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert table["label"].between(0, k - 1).all()
    assert table["agreement"].isin([0.0, 0.5, 1.0]).all()  # two members
    np.testing.assert_allclose(table["label_prob"], probs[np.arange(len(table)), table["label"]], atol=1e-7)
    assert (table["top_class"] == probs.argmax(axis=1)).all()
    np.testing.assert_allclose(table["top_prob"], probs.max(axis=1), atol=1e-7)
    assert (table["top_prob"] >= table["label_prob"] - 1e-7).all()
    report = read_json(voted / "ensemble" / "report.json")
    assert result.method == report["best_method"]
    threshold = report["referral"]["threshold"]
    assert set(table["review"]) <= {0, 1}
    assert report["referral"]["refer_without_agreement"] is True
    assert (table["review"] == ((result.confidence < threshold) | (table["agreement"] == 0)).astype(int)).all()
    # referable DR: P(grade >= 2) against the ensemble's val-chosen operating point in report.json
    ref = report["referable"]
    assert ref["applicable"] and ref["ensemble"]["name"] == result.method and ref["cut_grade"] == 2
    np.testing.assert_allclose(table["p_referable"], probs[:, 2:].sum(axis=1), atol=1e-6)
    assert (table["referable"] == (result.p_referable >= ref["ensemble"]["threshold"]).astype(int)).all()
    assert set(result.skipped) == set(bad)
    err = capsys.readouterr().err
    for path in bad:
        assert f"Skipped {path}" in err
    assert "does not exist" in err and "empty" in err and "directory" in err and "cannot be decoded" in err
    assert "Predicted 5 image(s)" in err and "skipped 5" in err
    assert "SYNTHETIC: this ensemble learned from demo-data's synthetic images" in err  # the demo set


def test_other_method_falls_back_to_agreement(voted, images, tmp_path, capsys) -> None:
    best = read_json(voted / "ensemble" / "report.json")["best_method"]
    other = "hard" if best != "hard" else "soft"
    result, table = _run(voted, images["good"], tmp_path, method=other)
    assert result.method == other
    assert (table["review"] == (table["agreement"] < 0.5).astype(int)).all()
    assert "fewer than 50% of members agree" in capsys.readouterr().err


def test_stdout_when_no_out(voted, images, capsys) -> None:
    predict_images(voted, images["good"][:2])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("path,label,class,label_prob,top_class,top_prob,agreement,review,prob_0") and len(lines) == 3


def test_unknown_method_lists_fitted_ones(voted, images) -> None:
    with pytest.raises(UserError, match=r"No fitted combiner 'nope'.*soft\+thr.*Received: method='nope'"):
        predict_images(voted, images["good"], method="nope")


def test_vote_never_run(trained, images) -> None:
    with pytest.raises(UserError, match=r"run `python cli\.py vote --workdir"):
        predict_images(trained, images["good"])


def test_no_readable_image(voted, images) -> None:
    with pytest.raises(UserError, match="None of the 5 inputs could be read"):
        predict_images(voted, images["bad"])


def test_tampered_model_is_refused(voted, images, tmp_path) -> None:
    work = tmp_path / "w"
    shutil.copytree(voted, work)
    model = work / "members" / "t1" / "model.keras"
    with open(model, "ab") as f:
        f.write(b"\0")
    with pytest.raises(UserError, match=r"t1/model\.keras was modified after training \(SHA-256 differs"):
        predict_images(work, images["good"])


def test_corrupt_model_is_refused(voted, images, tmp_path) -> None:
    work = tmp_path / "w"
    shutil.copytree(voted, work)
    folder = work / "members" / "t2"
    data = (folder / "model.keras").read_bytes()
    (folder / "model.keras").write_bytes(data[: len(data) // 3])
    metrics = read_json(folder / "metrics.json")
    metrics["model_sha256"] = sha256_file(folder / "model.keras")  # a consistent but truncated file
    write_json(folder / "metrics.json", metrics)
    with pytest.raises(UserError, match=r"t2/model\.keras could not be loaded"):
        load_ensemble(work)


def test_a_missing_or_edited_spec_toml_is_refused_by_name(voted, images, tmp_path) -> None:
    """spec.toml decides a member's preprocessing and fundus crop: predict used defaults without it, and an edited one
    as it was; the vote's manifest now pins it, and a member trained with one is refused without it even under an
    older manifest."""
    work = tmp_path / "w"
    shutil.copytree(voted, work)
    spec = work / "members" / "t1" / "spec.toml"
    manifest = read_json(work / "ensemble" / "manifest.json")
    assert manifest["members"]["t1"]["spec_sha256"] == {"spec.toml": sha256_file(spec)}
    text = spec.read_text()
    spec.write_text(text.replace('preprocessing = "none"', 'preprocessing = "ben"'))
    with pytest.raises(UserError, match=r"Member 't1' has another .*t1/spec\.toml than the vote recorded.*restore the "
                                        r"spec\.toml it was trained with, or run `python cli\.py vote --workdir"):
        load_ensemble(work)
    spec.unlink()
    with pytest.raises(UserError, match=r"Member 't1' has lost .*t1/spec\.toml.*restore it, retrain the member 't1'"):
        predict_images(work, images["good"][:1])
    for member in manifest["members"].values():  # a vote written before spec.toml was pinned
        member.pop("spec_sha256")
    write_json(work / "ensemble" / "manifest.json", manifest)
    with pytest.raises(UserError, match=r"Member 't1' has lost .*t1/spec\.toml"):
        load_ensemble(work)


def test_a_member_folder_gone_names_the_vote_that_does_without_it(voted, images, tmp_path) -> None:
    work = tmp_path / "w"
    shutil.copytree(voted, work)
    (work / "members" / "t2").rename(work / "members" / "t2-old")
    with pytest.raises(UserError, match=r"Member 't2' of this ensemble is gone: its folder .*t2 does not exist "
                                        r"\(deleted or renamed\); run `python cli\.py vote --workdir .*` to combine the "
                                        "members that are there, or restore the folder"):
        predict_images(work, images["good"][:1])


def test_a_damaged_or_corrupt_member_names_the_retrain_command(voted, images, tmp_path) -> None:
    work = tmp_path / "w"
    shutil.copytree(voted, work)
    folder = work / "members" / "t2"
    (folder / "test.npz").unlink()
    with pytest.raises(UserError, match=r"Member 't2' is damaged: .* but .*t2/test\.npz is missing .*retrain the "
                                        r"member 't2' \(`python cli\.py train-member --workdir .* --preset "
                                        r".*t2/spec\.toml --name t2 --force`\) and vote again"):
        load_ensemble(work)
    (folder / "metrics.json").write_text("{not json")
    with pytest.raises(UserError, match=r"t2/metrics\.json is not valid JSON .*; retrain the member 't2' "
                                        r"\(`python cli\.py train-member"):
        load_ensemble(work)


def test_cli_predict(voted, images, tmp_path) -> None:
    from typer.testing import CliRunner

    from cli import app

    out = tmp_path / "cli.csv"
    res = CliRunner().invoke(app, ["predict", "--workdir", str(voted), *images["good"][:3], images["bad"][1],
                                   "--out", str(out), "--tta"])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out)
    assert len(table) == 4 and table["note"].iloc[3].startswith("not graded: ")  # the unreadable input has its row
    assert table["review"].iloc[3] == 1
    graded = table.iloc[:3]  # --tta on members cached without it: review by agreement, and the note says so
    assert (graded["note"].notna() == (graded["review"] == 1)).all()
    assert all(n.startswith("review: members disagree: ") for n in graded["note"].dropna())


def test_paths_given_as_arguments_are_written_as_typed(voted, images, tmp_path, monkeypatch) -> None:
    """`./messy/x.jpg` was written `messy/x.jpg`: typer turned the argument into a Path, against the README."""
    from tests.helpers import run_cli

    (tmp_path / "messy").mkdir()
    for name, i in (("x.jpeg", 0), ("y.jpeg", 1)):
        shutil.copy(images["good"][i], tmp_path / "messy" / name)
    monkeypatch.chdir(tmp_path)
    typed = ["./messy/x.jpeg", "messy//y.jpeg", "./messy/../messy/x.jpeg"]
    code, out, err = run_cli("predict", "--workdir", voted, *typed)
    assert code == 0, err
    assert [line.split(",")[0] for line in out.splitlines()[1:]] == typed


def test_a_folder_is_graded_file_by_file_and_an_empty_one_is_skipped(voted, images, tmp_path, capsys) -> None:
    import shutil

    from PIL import Image

    folder = tmp_path / "new eyes"
    (folder / "sub").mkdir(parents=True)
    for p in images["good"][:2]:
        shutil.copy(p, folder)
    Image.open(images["good"][2]).save(folder / "third.tif")  # any format Pillow reads
    (folder / "notes.txt").write_text("not listed: not an image extension")
    (folder / ".hidden.jpeg").write_bytes(Path(images["good"][3]).read_bytes())
    shutil.copy(images["good"][4], folder / "sub")  # sub-folders are not searched
    empty = tmp_path / "empty"
    empty.mkdir()
    result, table = _run(voted, [str(folder), str(empty), images["good"][4]], tmp_path)
    expected = sorted(str(folder / Path(p).name) for p in images["good"][:2]) + [str(folder / "third.tif")]
    notes = str(folder / "notes.txt")
    assert table["path"].tolist() == sorted(expected) + [images["good"][4], notes, str(empty)]  # every file a row
    err = " ".join(capsys.readouterr().err.split())
    assert ("a folder; its 4 files are taken (1 of them is no image: skipped with its reason); 1 sub-folder is not "
            "searched (pass --recursive): sub/.") in err
    assert set(result.skipped) == {str(empty), notes} and "image" in result.skipped[notes]
    assert result.skipped[str(empty)].startswith("is a directory with no image file in it (.jpeg .jpg .png")


def test_a_folder_of_class_folders_says_the_glob_that_reaches_its_images(voted, images, tmp_path, capsys) -> None:
    """A folder-per-class layout (cls/0/*.jpeg) was skipped as "a directory with no image file in it", and a folder of
    images alone was said to skip "one that is no image"."""
    import glob
    import shutil

    from tests.helpers import run_cli

    cls = tmp_path / "cls"
    for grade, picks in (("0", images["good"][:2]), ("1", images["good"][2:3])):
        (cls / grade).mkdir(parents=True)
        for p in picks:
            shutil.copy(p, cls / grade)
    (cls / "0" / "notes.txt").write_text("not counted: no image extension")
    code, _, err = run_cli("predict", "--workdir", voted, cls)
    assert code == 1 and err.strip().splitlines()[-1].startswith("Error: The one input could not be read (its reason "
                                                                 "is above): pass image files")
    assert (f"Skipped {cls}: is a directory with no image file in it (sub-folders are not searched); its 2 "
            f"sub-folders hold 3 images: pass {cls}/*/, or --recursive.") in err
    split = tmp_path / "DIR"
    shutil.copytree(cls, split / "test")
    (split / "train").mkdir()
    assert check_file(str(split) + "/") == ("is a directory with no image file in it (sub-folders are not searched); "
                                            f"the 2 folders inside its 2 sub-folders hold 3 images: pass {split}/*/*/, "
                                            "or --recursive")
    assert check_file(str(split / "train")).startswith("is a directory with no image file in it (.jpeg .jpg .png")
    capsys.readouterr()
    result, table = _run(voted, sorted(glob.glob(f"{cls}/*/")), tmp_path)  # the glob it gives reaches every image
    assert len(result.paths) == 3 and list(result.skipped) == [str(cls / "0" / "notes.txt")]
    err = " ".join(capsys.readouterr().err.split())
    assert f"{cls}/0/: a folder; its 3 files are taken (1 of them is no image: skipped with its reason)" in err
    assert f"{cls}/1/: a folder; its 1 file is taken (sub-folders are not searched)." in err  # nothing skipped there


def test_a_nested_tree_is_counted_whole_and_searched_with_recursive(voted, images, tmp_path, capsys) -> None:
    """nest/2024/p1/a, nest/2024/p2/b, nest/2025/p3/c, nest/2025/x: the hint said "its 2 sub-folders hold 1 image:
    pass nest/*/" (one level only), and nothing searched a tree."""
    import pandas as pd

    from tests.helpers import run_cli

    nest = tmp_path / "nest"
    layout = {"2024/p1/a.jpeg": 0, "2024/p2/b.jpeg": 1, "2025/p3/c.jpeg": 2, "2025/x.jpeg": 3, "2025/.hidden.jpeg": 4}
    for name, i in layout.items():
        (nest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(images["good"][i], nest / name)
    (nest / "2024" / "p1" / "up").symlink_to("../..")  # a link back up the tree: searched once
    (nest / "2025" / "p3" / "loop_a.jpeg").symlink_to("loop_b.jpeg")  # a loop of links: its row, as in a flat folder
    (nest / "2025" / "p3" / "loop_b.jpeg").symlink_to("loop_a.jpeg")
    (nest / ".cache").mkdir()
    shutil.copy(images["good"][0], nest / ".cache")  # a hidden folder: left out, as hidden files are
    code, _, err = run_cli("predict", "--workdir", voted, nest)
    assert code == 1 and (f"Skipped {nest}: is a directory with no image file in it (sub-folders are not searched); "
                          "its 2 sub-folders and the folders below them hold 4 images (1 one level down, 3 two levels "
                          "down): pass --recursive to search them all.") in err
    out = tmp_path / "nest.csv"
    for _ in range(2):  # the same order every time
        code, _, err = run_cli("predict", "--workdir", voted, nest, "--recursive", "--out", out)
        assert code == 0, err
        table = pd.read_csv(out)
        graded = [str(nest / n) for n in ("2024/p1/a.jpeg", "2024/p2/b.jpeg", "2025/p3/c.jpeg", "2025/x.jpeg")]
        loops = [str(nest / "2025" / "p3" / n) for n in ("loop_a.jpeg", "loop_b.jpeg")]
        assert table["path"].tolist() == graded + loops  # graded in path order, then the ungraded rows
        assert table["note"].iloc[4:].tolist() == ["not graded: is a loop of symbolic links"] * 2
    assert (f"{nest}: a folder; its 6 files are taken (searched with --recursive: it and 5 sub-folders; 1 linked "
            f"folder reached a second time not searched again: {nest}/2024/p1/up).") in " ".join(err.split())
    empty = tmp_path / "empty tree"
    (empty / "a" / "b").mkdir(parents=True)
    code, _, err = run_cli("predict", "--workdir", voted, empty, "--recursive")
    assert code == 1 and f"Skipped {empty}: is a directory with no file in it or in its sub-folders" in err


def test_a_folder_holding_predicts_own_out_is_graded_again_and_odd_entries_get_rows(voted, images, tmp_path) -> None:
    """A rerun with --out inside the graded folder was refused ("--out ... is one of the images being graded"), and a
    broken link or a FIFO in a folder vanished without a word."""
    import shutil

    folder = tmp_path / "eyes"
    folder.mkdir()
    for p in images["good"][:2]:
        shutil.copy(p, folder)
    out = folder / "pred.csv"
    for _ in range(2):  # the second run replaces its own earlier CSV and does not grade it
        predict_images(voted, [str(folder)], out=out)
        table = pd.read_csv(out)
        assert sorted(table["path"]) == sorted(str(folder / Path(p).name) for p in images["good"][:2])
    (folder / "gone.jpeg").symlink_to(tmp_path / "nowhere.jpeg")
    os.mkfifo(folder / "pipe")
    result = predict_images(voted, [str(folder)], out=tmp_path / "other.csv")
    assert result.skipped[str(folder / "gone.jpeg")].startswith("is a symbolic link to")
    assert result.skipped[str(folder / "pipe")] == "is not a regular file"
    assert str(out) in result.skipped  # a CSV written by someone else's run is any other file of the folder


def test_out_never_replaces_a_file_predict_did_not_write(voted, images, tmp_path, capsys) -> None:
    labels = tmp_path / "trainLabels.csv"
    labels.write_text("image,level\n1_left,0\n")
    with pytest.raises(UserError, match=r"--out .*trainLabels.csv exists and is not a predictions CSV .* --force"):
        predict_images(voted, images["good"][:1], out=labels)
    assert labels.read_text() == "image,level\n1_left,0\n"
    with pytest.raises(UserError, match="is a folder; pass a file name"):
        predict_images(voted, images["good"][:1], out=tmp_path)
    out = tmp_path / "pred.csv"
    capsys.readouterr()
    predict_images(voted, images["good"][:1], out=out)
    assert "Replaced" not in capsys.readouterr().err  # nothing was there
    predict_images(voted, [images["good"][0], images["bad"][0]], out=out)
    predict_images(voted, images["good"][:2], out=out)  # an earlier predictions CSV is replaced, and that is said
    assert len(pd.read_csv(out)) == 2
    assert f"Replaced {out} (2 earlier rows)." in capsys.readouterr().err.splitlines()  # a graded and an ungraded row
    predict_images(voted, images["good"][:3], out=labels, force=True)
    assert len(pd.read_csv(labels)) == 3
    assert f"Replaced {labels} (a file that was not a predictions CSV, replaced by --force)." in capsys.readouterr().err
    for inside in (voted / "ensemble" / "mine.csv", voted / "members" / "t1" / "mine.csv"):  # deleted by the next swap
        with pytest.raises(UserError, match=r"--out .*mine.csv is inside .*, which (the next vote|a member retrained "
                                            r"with --force) replaces whole, deleting it; write elsewhere"):
            predict_images(voted, images["good"][:1], out=inside, force=True)
        assert not inside.exists()
    for name in ("split.csv", "dataset.json", "data_report.csv", ".vote.lock"):  # the prepared dataset, the locks
        target = voted / name
        before = target.read_bytes() if target.exists() else None
        with pytest.raises(UserError, match=rf"--out .*{name} is .*, (a file of the prepared dataset|a lock or commit "
                                            r"entry) that the workdir needs; write elsewhere"):
            predict_images(voted, images["good"][:1], out=target, force=True)
        assert (target.read_bytes() if target.exists() else None) == before
    predict_images(voted, images["good"][:1], out=voted / "today.csv")  # this workdir's own top level is fine
    assert len(pd.read_csv(voted / "today.csv")) == 1
    (voted / "today.csv").unlink()


def test_cli_predict_json(voted, images) -> None:
    import json

    from tests.helpers import run_cli

    code, out, err = run_cli("predict", "--workdir", voted, *images["good"][:2], images["bad"][0], "--json")
    assert code == 0, err
    data = json.loads(out)  # stdout is the JSON only: no CSV before it
    assert data["synthetic"] is True  # voted on demo-data's images
    for row in data["predictions"]:  # each member's own grade, named: who disagrees
        if row.get("withheld"):
            row = {**row, **row["withheld"]}
        grades = list(row["member_classes"].values())
        assert list(row["member_classes"]) == data["members"]
        assert row["agreement"] == pytest.approx(sum(g == row["class"] for g in grades) / len(grades))
    assert [row["path"] for row in data["predictions"]] == images["good"][:2]
    assert data["classes"] == [0, 1, 2, 3, 4] and list(data["skipped"]) == [images["bad"][0]]
    for row in data["predictions"]:
        assert abs(sum(row["probs"]) - 1) < 1e-6 and row["class"] == row["label"]  # an integer grade, as in classes
        assert isinstance(row["review"], bool)


def _edit_report(work: Path, edit) -> None:
    """Change ``work``'s report.json with ``edit(report)`` and record its new SHA-256 in the vote's manifest."""
    report = read_json(work / "ensemble" / "report.json")
    edit(report)
    write_json(work / "ensemble" / "report.json", report)
    manifest = read_json(work / "ensemble" / "manifest.json")
    manifest["files"]["report.json"] = sha256_file(work / "ensemble" / "report.json")
    write_json(work / "ensemble" / "manifest.json", manifest)


def test_predict_and_explain_warn_of_collapsed_members_and_a_method_below_the_majority(voted, images, tmp_path):
    """An ensemble voted with --keep-collapsed, or whose combiner scored below the majority class on test, graded
    new images without a word: only the synthetic warning existed."""
    import json

    from tests.helpers import run_cli

    work = tmp_path / "w"
    shutil.copytree(voted, work)
    report = read_json(work / "ensemble" / "report.json")
    best = report["best_method"]
    accuracy = report["ensembles"][best]["accuracy"]["value"]

    def bad(r):
        r["collapsed_kept"] = ["t1"]
        r["below_baseline"] = {"metric": "accuracy", "baseline": accuracy + 0.1, "members": [], "ensembles": [best]}
        r["baseline_class"] = 0

    _edit_report(work, bad)
    code, out, err = run_cli("predict", "--workdir", work, images["good"][0], "--json")
    assert code == 0, err
    err = " ".join(err.split())
    assert (f"WARNING: this ensemble ({best}) votes collapsed member t1 (kept by vote --keep-collapsed): it predicts "
            "one class (or sits at chance) on the rows that judged it") in err
    assert (f"WARNING: {best}'s test accuracy was below the majority class's ({accuracy:.3f} against "
            f"{accuracy + 0.1:.3f}): always answering class 0 got more test images right") in err
    data = json.loads(out)
    assert data["collapsed_kept"] == ["t1"]
    assert data["below_majority"] == {"method": best, "accuracy": accuracy, "majority_accuracy": accuracy + 0.1,
                                      "majority_class": 0}
    code, out, err = run_cli("explain", "--workdir", work, images["good"][0], "--out", tmp_path / "maps")
    assert code == 0, err
    assert "votes collapsed member t1" in err and "below the majority class's" in err

    def old(r):  # a report.json written before the keys: loads, and warns of nothing
        for key in ("collapsed_kept", "below_baseline"):
            r.pop(key, None)

    _edit_report(work, old)
    code, out, err = run_cli("predict", "--workdir", work, images["good"][0], "--json")
    assert code == 0 and "WARNING" not in err, err
    assert json.loads(out)["collapsed_kept"] == [] and json.loads(out)["below_majority"] is None


def test_check_file(images) -> None:
    reasons = [check_file(p) for p in images["bad"]]
    assert reasons[0] == "does not exist" and reasons[2] == "is empty (0 bytes)"
    assert "directory" in reasons[4]
    assert reasons[1] == "cannot be decoded as an image (not an image, or truncated/corrupt)"  # text: no magic bytes
    assert reasons[3] == reasons[1]  # a JPEG cut inside its header: Pillow says so, before the decoder would
    assert check_file(images["good"][0]) is None


def test_an_image_too_large_for_memory_is_not_called_corrupt(voted, images, tmp_path, monkeypatch) -> None:
    """Every image the pipeline dropped was "cannot be decoded (not an image, or truncated/corrupt)", an out-of-memory
    decode too; it is read again alone, and out of memory is said as such (here a decode of over 40 px runs out)."""
    import tensorflow as tf
    from PIL import Image

    from ensemble.inference import TOO_LARGE, UNDECODABLE
    from members.data import pipeline

    def out_of_memory(image, size):
        def run(x):
            if x.shape[0] > 40:
                raise MemoryError("cannot allocate")  # as TensorFlow's allocator fails: ResourceExhaustedError
            return x
        checked = tf.numpy_function(run, [image], tf.uint8, stateful=False)
        checked.set_shape(image.shape)
        return tf.image.resize(checked, [size, size], method="bilinear", antialias=True)

    monkeypatch.setattr(pipeline, "_resized", out_of_memory)
    big, small, cut = tmp_path / "big.png", tmp_path / "small.png", tmp_path / "cut.jpeg"
    photo = Image.open(images["good"][0]).convert("RGB")
    photo.resize((64, 64)).save(big)
    photo.resize((36, 36)).save(small)
    photo.resize((36, 36)).save(cut, quality=95)
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size * 4 // 5])  # its header whole: the decoder finds it cut
    result, _ = _run(voted, [str(big), str(small), str(cut)], tmp_path)
    assert result.paths == [str(small)]
    assert result.skipped == {str(big): TOO_LARGE.format(size="64 × 64 px"), str(cut): UNDECODABLE}
    assert "too large to decode in the memory available" in TOO_LARGE and "corrupt" not in TOO_LARGE
    from members.training.loop import image_read_error

    sentence = str(image_read_error(tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")))
    assert sentence.startswith("An image was too large to decode in the memory available") and "changed" not in sentence
    with pytest.raises(UserError, match="The one input could not be read"):
        _run(voted, [str(big)], tmp_path)


def test_a_jpeg_cut_inside_its_header_is_skipped_before_the_decoder(images, tmp_path, capfd) -> None:
    """libjpeg printed "Improper call to JPEG library in state 201" on stderr before the one-sentence skip."""
    from ensemble.inference import UNDECODABLE

    cut = tmp_path / "cut.jpeg"
    cut.write_bytes(Path(images["good"][0]).read_bytes()[:300])
    assert check_file(str(cut)) == UNDECODABLE
    assert "Improper call" not in capfd.readouterr().err


def _tiny_model(flatten: bool):
    import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Flatten()(inputs) if flatten else keras.layers.GlobalAveragePooling2D()(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))


def test_tta_flip_invariant_model_unchanged() -> None:
    x = np.random.default_rng(0).uniform(0, 255, (6, 8, 8, 3)).astype(np.float32)
    model = _tiny_model(flatten=False)  # global average pooling: flip-invariant by construction
    np.testing.assert_allclose(member_probs(model, x, tta=True), member_probs(model, x, tta=False), atol=1e-6)


def test_tta_averages_the_four_flips() -> None:
    import keras

    keras.utils.set_random_seed(1)  # unseeded, a draw of weights could saturate the softmax on every flip alike
    x = np.random.default_rng(1).uniform(0, 1, (4, 8, 8, 3)).astype(np.float32)
    model = _tiny_model(flatten=True)
    flips = [x, x[:, :, ::-1], x[:, ::-1], x[:, ::-1, ::-1]]
    expected = np.mean([member_probs(model, np.ascontiguousarray(f)) for f in flips], axis=0)
    np.testing.assert_allclose(member_probs(model, x, tta=True), expected, atol=1e-6)
    assert not np.allclose(member_probs(model, x, tta=True), member_probs(model, x), atol=1e-4)


def test_combiner_member_order_and_cached_probs(voted) -> None:
    """The members load in the combiner's order; predicting the test images reproduces the cached test probs."""
    from ensemble.inference import ensemble_member_probs
    from members.infra.atomic import load_npz

    ens = load_ensemble(voted, "soft")
    assert [m.name for m in ens.members] == ens.combiner.member_names_ == ["t1", "t2"]
    split = pd.read_csv(voted / "split.csv")
    root = Path(json.loads((voted / "dataset.json").read_text())["image_root"])
    test = split[split["split"] == "test"]
    P, kept = ensemble_member_probs(ens.members, [str(root / p) for p in test["path"]])
    assert len(kept) == len(test)
    for j, m in enumerate(ens.members):
        cached = load_npz(voted / "members" / m.name / "test.npz")["probs"]
        # both members (16 and 24 px) see exactly their training pixels (one image path)
        np.testing.assert_allclose(P[j], cached, rtol=0, atol=1e-6)


def test_cli_explain_writes_one_png_per_image_and_refuses_bad_inputs(voted, prepared, images, tmp_path) -> None:
    from PIL import Image

    from tests.helpers import one_sentence_error, run_cli

    good, bad = images["good"][:2], images["bad"][1]
    out = tmp_path / "heat"
    code, _, err = run_cli("explain", "--workdir", voted, *good, bad, "--out", out)
    assert code == 0, err
    pngs = sorted(out.glob("*.png"))
    assert [p.stem for p in pngs] == sorted(Path(g).stem for g in good)
    with Image.open(pngs[0]) as im:
        assert im.format == "PNG" and im.width > 2 * im.height  # photograph + 2 members + ensemble side by side
    assert f"Skipped {bad}" in err and "Explained 2 image(s)" in err
    one_sentence_error(*run_cli("explain", "--workdir", voted, good[0], "--out", pngs[0])[::2], "is a file")
    one_sentence_error(*run_cli("explain", "--workdir", prepared, good[0], "--out", out)[::2], "vote")
    code, _, err = run_cli("explain", "--workdir", voted, bad, "--out", tmp_path / "never")
    assert code == 1 and err.splitlines()[-1].startswith("Error: The one input could not be read")
    assert "Traceback" not in err and not (tmp_path / "never").exists()  # no empty folder left behind
    folder = tmp_path / "eyes"
    folder.mkdir()
    for g in good:
        (folder / Path(g).name).write_bytes(Path(g).read_bytes())
    code, _, err = run_cli("explain", "--workdir", voted, folder, "--out", tmp_path / "heat2")
    assert code == 0, err
    assert sorted(p.stem for p in (tmp_path / "heat2").glob("*.png")) == sorted(Path(g).stem for g in good)


def test_explain_never_replaces_a_photograph_or_a_foreign_png_and_stays_out_of_replaced_folders(
        voted, images, tmp_path) -> None:
    from PIL import Image

    from tests.helpers import one_sentence_error, run_cli

    folder = tmp_path / "clinic"
    folder.mkdir()
    photo = folder / "eye.png"  # the clinic's own photograph, and the folder is also --out
    Image.open(images["good"][0]).convert("RGB").save(photo)
    other = folder / "b.png"
    Image.new("RGB", (4, 4)).save(other)  # a PNG another program wrote
    (folder / "b.jpeg").write_bytes(Path(images["good"][1]).read_bytes())
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    code, out, err = run_cli("explain", "--workdir", voted, photo, folder / "b.jpeg", "--out", folder)
    assert code == 0, err
    assert all((folder / name).read_bytes() == data for name, data in before.items())  # nothing replaced
    made = {line.split("\t")[0]: line.split("\t")[1] for line in out.splitlines()}
    assert made == {str(photo): str(folder / "eye-2.png"), str(folder / "b.jpeg"): str(folder / "b-2.png")}
    # a second run replaces its own heatmaps (tagged in the PNG), not the photographs
    code, out2, err = run_cli("explain", "--workdir", voted, folder / "b.jpeg", "--out", folder)
    assert code == 0 and out2.split("\t")[1].strip() == str(folder / "b-2.png"), err
    for inside in (voted / "ensemble" / "heat", voted / "members" / "t1"):
        one_sentence_error(*run_cli("explain", "--workdir", voted, photo, "--out", inside)[::2], "replaces whole")
    other = tmp_path / "other-workdir"  # another workdir's figures and folders, as predict --out refuses them
    (other / "ensemble").mkdir(parents=True)
    (other / "dataset.json").write_text("{}")
    for inside in (other, other / "ensemble", other / "new"):
        one_sentence_error(*run_cli("explain", "--workdir", voted, photo, "--out", inside)[::2],
                           f"is inside another workdir, {other} (it holds dataset.json), whose files explain does not")
    assert sorted(p.name for p in other.iterdir()) == ["dataset.json", "ensemble"] and not any(other.rglob("*.png"))
    import json as _json

    root = Path(_json.loads((voted / "dataset.json").read_text())["image_root"])  # heatmaps are no training images
    one_sentence_error(*run_cli("explain", "--workdir", voted, photo, "--out", root / "0")[::2],
                       "is inside the images folder")
    assert not (root / "0").exists()


def test_explain_withholds_the_grade_predict_withholds_and_turns_exif_photos(voted, images, tmp_path, monkeypatch):
    import numpy as np
    from PIL import Image

    from ensemble import explain

    black, noise = tmp_path / "black.png", tmp_path / "noise.png"
    Image.new("RGB", (32, 32)).save(black)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(noise)
    titles = {}
    real = explain.plot_explanation
    monkeypatch.setattr(explain, "plot_explanation", lambda e, plt: (titles.setdefault(Path(e.path).name, e.titles),
                                                                     real(e, plt))[1])
    explain.explain_images(voted, [str(black), images["good"][0]], tmp_path / "heat")
    ens_title = titles["black.png"][-1]
    assert ens_title.startswith("ensemble (") and "withheld, ungradable" in ens_title and "p=" not in ens_title
    assert all(t.split("\n")[0].endswith("grade withheld") for t in titles["black.png"][:-1])
    assert "p=" in titles[Path(images["good"][0]).name][-1]  # a fundus photograph keeps its grade
    # EXIF orientation 6 (turned 90° clockwise to view): drawn upright, as the members score it
    wide = Image.open(images["good"][0]).convert("RGB").resize((48, 32))
    exif = Image.Exif()
    exif[0x0112] = 6
    wide.save(tmp_path / "turned.jpeg", exif=exif.tobytes())
    image, windows = explain._display(str(tmp_path / "turned.jpeg"), [(16, "none", False)])
    assert image.shape[:2] == (48, 32)  # tall, as viewers show it


def test_a_read_only_earlier_result_is_kept_unless_forced_and_explain_writes_beside_it(voted, images, tmp_path):
    """predict --out silently replaced an earlier result the user had write-protected (chmod 444): the rename into
    place does not ask the file. explain likewise replaced a read-only heatmap of its own."""
    import stat

    from tests.helpers import one_sentence_error, run_cli

    out = tmp_path / "prev.csv"
    predict_images(voted, images["good"][:1], out=out, print_csv=False)
    out.chmod(0o444)
    before = out.read_bytes()
    one_sentence_error(*run_cli("predict", "--workdir", voted, *images["good"][:2], "--out", out)[::2],
                       f"--out {out} is read-only; chmod u+w it, or pass another --out or --force.")
    assert out.read_bytes() == before
    code, _out, err = run_cli("predict", "--workdir", voted, *images["good"][:2], "--out", out, "--force")
    assert code == 0 and len(pd.read_csv(out)) == 2, err
    assert stat.S_IMODE(out.stat().st_mode) == 0o444  # replaced as asked, still write-protected

    heat = tmp_path / "heat"
    code, made, err = run_cli("explain", "--workdir", voted, images["good"][0], "--out", heat)
    assert code == 0, err
    first = Path(made.split("\t")[1].strip())
    first.chmod(0o444)
    kept = first.read_bytes()
    code, made, err = run_cli("explain", "--workdir", voted, images["good"][0], "--out", heat)
    assert code == 0 and made.split("\t")[1].strip() == str(first.with_name(f"{first.stem}-2.png")), err
    assert first.read_bytes() == kept


def test_predict_refuses_an_out_it_cannot_write_before_any_work(voted, images, tmp_path) -> None:
    from tests.helpers import one_sentence_error, run_cli

    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    one_sentence_error(*run_cli("predict", "--workdir", voted, images["good"][0], "--out", blocker / "p.csv")[::2],
                       "is a file, not a folder")
    if Path("/proc/self").is_dir():  # a folder no one can create files in, root included (os.access says yes to root)
        one_sentence_error(*run_cli("predict", "--workdir", voted, images["good"][0], "--out", "/proc/p.csv")[::2],
                           "the folder /proc is not writable")


def test_thr_method_label_and_top_class_columns(voted, images, tmp_path) -> None:
    """A +thr method cuts the expected grade: label_prob is its label's probability, top_* the argmax's."""
    from ensemble.combiners import load_combiner
    from ensemble.inference import ensemble_member_probs, load_ensemble

    result, table = _run(voted, images["good"], tmp_path, method="soft+thr")
    ens = load_ensemble(voted, "soft+thr")
    P, kept = ensemble_member_probs(ens.members, images["good"])
    combiner = load_combiner(voted / "ensemble" / "combiners" / "soft+thr.json")
    expected = combiner.predict(P)
    probs = combiner.predict_proba(P)
    assert table["label"].tolist() == expected.tolist()
    np.testing.assert_allclose(table["label_prob"], probs[np.arange(len(kept)), expected], rtol=1e-6)
    np.testing.assert_allclose(table["top_prob"], probs.max(axis=1), rtol=1e-6)
    assert table["top_class"].tolist() == probs.argmax(axis=1).tolist()
    assert table["agreement"].tolist() == pytest.approx((P.argmax(axis=2) == expected).mean(axis=0).tolist())


def test_another_method_than_the_val_chosen_one_leaves_referable_empty(voted, images, tmp_path, capsys) -> None:
    report = read_json(voted / "ensemble" / "report.json")
    other = next(m for m in ("soft", "hard", "soft+thr", "hard+thr") if m != report["best_method"])
    result, table = _run(voted, images["good"][:2], tmp_path, method=other)
    assert result.referable is None and table["referable"].isna().all()
    np.testing.assert_allclose(table["p_referable"], result.probs[:, 2:].sum(axis=1), atol=1e-6)
    assert f"vote chose its threshold for {report['best_method']!r}, not {other!r}" in capsys.readouterr().err
    rows = result.to_json()["predictions"]
    assert all(r["referable"] is None and 0 <= r["p_referable"] <= 1 + 1e-9 for r in rows)


def test_calibrated_combiner_is_applied_by_predict(voted, images, tmp_path) -> None:
    """vote --calibrate temperature saves member and output temperatures; predict applies them."""
    from ensemble.combiners import load_combiner
    from ensemble.combiners.temperature import apply_temperature
    from ensemble.inference import ensemble_member_probs, load_ensemble
    from ensemble.vote import run_vote

    work = tmp_path / "w"
    shutil.copytree(voted, work)
    run_vote(work, methods=("soft",), thresholds="off", calibrate="temperature", n_boot=20, keep_collapsed=True,
             console=Console(file=io.StringIO()))
    saved = read_json(work / "ensemble" / "combiners" / "soft.json")
    assert saved["method"] == "calibrated" and len(saved["member_temperatures"]) == 2
    result, table = _run(work, images["good"], tmp_path, method="soft")
    P, _ = ensemble_member_probs(load_ensemble(work, "soft").members, images["good"])
    temps = [t["temperature"] for t in saved["member_temperatures"]]
    by_hand = apply_temperature(np.mean([apply_temperature(P[j], temps[j]) for j in range(2)], axis=0),
                                saved["output_temperature"]["temperature"])
    np.testing.assert_allclose(result.probs, by_hand, rtol=1e-6, atol=1e-9)
    plain = load_combiner(voted / "ensemble" / "combiners" / "soft.json").predict_proba(P)
    if not np.allclose(temps + [saved["output_temperature"]["temperature"]], 1.0):
        assert not np.allclose(result.probs, plain)


def test_predict_help_explains_every_column() -> None:
    from ensemble.inference import CSV_COLUMNS, NOTE_COLUMN, REFERABLE_COLUMNS
    from tests.helpers import run_cli

    code, out, _ = run_cli("predict", "--help")
    assert code == 0
    rows = [line.split()[0] for line in out.splitlines() if line.strip() and line.startswith(" ")]
    for column in (*CSV_COLUMNS, "prob_0..", *REFERABLE_COLUMNS, NOTE_COLUMN):
        assert column in rows, column  # each column starts a line of the help, with its meaning


def test_a_hard_vote_tie_gives_the_same_label_and_top_class() -> None:
    from ensemble.combiners.hard import HardVote
    from ensemble.inference import PredictionResult

    # two members, a 1-1 tie between classes 0 and 2; class 2 has the larger summed probability
    P = np.array([[[0.55, 0.05, 0.40]], [[0.05, 0.05, 0.90]]])
    combiner = HardVote().fit(np.concatenate([P, P], axis=1), [0, 2])
    probs, labels = combiner.predict_proba(P), combiner.predict(P)
    assert probs.tolist() == [[0.5, 0.0, 0.5]] and labels.tolist() == [2]
    n = len(labels)
    result = PredictionResult(["eye.png"], probs, labels, np.ones(n), probs[np.arange(n), labels], np.zeros(n, bool),
                              {}, "hard", ["a", "b"], "", [0, 1, 2])
    assert result.top_class.tolist() == [2]  # not argmax's first index, 0
    row = pd.read_csv(io.StringIO(result.to_csv())).iloc[0]
    assert row["label"] == row["top_class"] == 2 and row["top_prob"] == row["label_prob"] == 0.5
    thr = PredictionResult(["eye.png"], np.array([[0.6, 0.3, 0.1]]), np.array([1]), np.ones(1), np.array([0.3]),
                           np.zeros(1, bool), {}, "soft+thr", ["a", "b"], "", [0, 1, 2])
    assert thr.top_class.tolist() == [0]  # +thr: the label is not a most probable class, so they differ


def test_flat_images_are_referred_palette_bmps_skipped_and_jfif_read(voted, images, tmp_path) -> None:
    """What a clinic brings: a lens-cap frame, an over-exposed one, a palette BMP (TensorFlow reads its indices as
    grey), a JPEG saved as .jfif: none is graded as a healthy eye without a word."""
    from PIL import Image

    folder = tmp_path / "clinic"
    folder.mkdir()
    Image.new("RGB", (64, 64), (0, 0, 0)).save(folder / "black.png")
    Image.new("RGB", (64, 64), (255, 255, 255)).save(folder / "white.png")
    Image.new("RGB", (64, 64), (100, 50, 20)).save(folder / "brown.png")  # flat in each colour, not across them
    photo = Image.open(images["good"][0]).convert("RGB")
    photo.convert("P").save(folder / "palette.bmp")
    photo.save(folder / "eye.jfif", format="JPEG")
    result, table = _run(voted, [str(folder)], tmp_path)
    rows = {Path(p).name: r for p, r in zip(table["path"], table.to_dict("records"))}
    assert set(rows) == {"black.png", "white.png", "brown.png", "palette.bmp", "eye.jfif"}
    for flat in ("black.png", "white.png", "brown.png"):
        assert rows[flat]["review"] == 1 and rows[flat]["note"].startswith("ungradable: the image is (nearly) one flat")
        assert rows[flat]["label"] != rows[flat]["label"] and rows[flat]["prob_0"] != rows[flat]["prob_0"]  # withheld
    json_rows = {Path(r["path"]).name: r for r in result.to_json()["predictions"]}
    assert json_rows["black.png"]["class"] is None and json_rows["black.png"]["withheld"]["class"] is not None
    assert "withheld" not in json_rows["eye.jfif"]
    jfif = rows["eye.jfif"]["note"]  # graded: no note, or the review rule's (its tiny members are unsure)
    assert jfif != jfif or jfif.startswith("review: ")
    assert rows["palette.bmp"]["note"] == "not graded: image format TensorFlow misreads (a palette or compressed BMP; " \
                                          "convert it to PNG or JPEG)"
    assert str(folder / "palette.bmp") in result.skipped


def test_tta_falls_back_to_the_agreement_rule_and_a_missing_workdir_is_named(voted, images, tmp_path, capsys) -> None:
    result, table = _run(voted, images["good"][:3], tmp_path, tta=True)
    assert "--tta changes the probabilities" in result.referral_note  # the val threshold was chosen without TTA
    assert (table["review"] == (table["agreement"] < 0.5).astype(int)).all()
    with pytest.raises(UserError, match=r"The workdir .*nowhere does not exist; pass the folder"):
        predict_images(tmp_path / "nowhere", images["good"][:1])


def test_a_two_class_ensemble_writes_p_positive_and_positive() -> None:
    from ensemble.inference import POSITIVE_COLUMNS, PredictionResult, _referable_rule

    ref = {"applicable": True, "kind": "positive_class", "positive_index": 0, "positive_class": "malignant",
           "sensitivity_target": 0.9, "ensemble": {"name": "soft", "threshold": 0.3}}
    index, threshold, note = _referable_rule(ref, "soft")
    assert (index, threshold) == (0, 0.3) and note.startswith("class malignant when P(class malignant) >= 0.3")
    assert _referable_rule(ref, "stack")[1] is None  # another method: no threshold
    probs = np.array([[0.8, 0.2], [0.1, 0.9]])
    result = PredictionResult(["a.png", "b.png"], probs, probs.argmax(1), np.ones(2), probs.max(1), np.zeros(2, bool),
                              {}, "soft", ["m1", "m2"], "", ["malignant", "benign"], p_referable=probs[:, 0],
                              referable=probs[:, 0] >= threshold, referable_note=note, referable_kind="positive_class")
    table = pd.read_csv(io.StringIO(result.to_csv()))
    assert list(table.columns[-3:]) == [*POSITIVE_COLUMNS, "note"]
    assert table["positive"].tolist() == [1, 0] and table["p_positive"].tolist() == [0.8, 0.1]
    assert [r["positive"] for r in result.to_json()["predictions"]] == [True, False]


def test_from_file_reads_a_worklist_relative_to_itself_and_stdin(voted, images, tmp_path) -> None:
    from typer.testing import CliRunner

    from cli import app

    lists = tmp_path / "lists"
    lists.mkdir()
    local = lists / "eye.jpeg"
    local.write_bytes(Path(images["good"][0]).read_bytes())
    worklist = lists / "today.txt"
    worklist.write_text(f"# clinic worklist\neye.jpeg\n\n{images['good'][1]}\n../lists/./eye.jpeg\n")
    out = tmp_path / "p.csv"
    res = CliRunner().invoke(app, ["predict", "--workdir", str(voted), "--from-file", str(worklist), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert pd.read_csv(out)["path"].tolist() == [str(local), images["good"][1], str(local)]  # no ../ nor ./ left
    res = CliRunner().invoke(app, ["predict", "--workdir", str(voted), images["good"][2], "--from-file", "-",
                                   "--out", str(out)], input=f"{images['good'][3]}\n")
    assert res.exit_code == 0, res.output
    assert pd.read_csv(out)["path"].tolist() == [images["good"][2], images["good"][3]]
    res = CliRunner().invoke(app, ["predict", "--workdir", str(voted)])
    assert res.exit_code == 1 and "--from-file LIST" in res.output


def test_no_readable_input_still_gets_its_rows_then_one_sentence(voted, images, tmp_path):
    from tests.helpers import run_cli

    out = tmp_path / "none.csv"
    bad = [*images["bad"][:3], images["bad"][1]]  # one given twice: two rows, as a graded image given twice has
    code, _out, err = run_cli("predict", "--workdir", voted, *bad, "--out", out)
    assert code == 1 and err.strip().splitlines()[-1].startswith("Error: None of the 4 inputs could be read (the "
                                                                 "reason for each is above)")
    rows = pd.read_csv(out, keep_default_na=False)
    assert sorted(rows["path"]) == sorted(bad) and (rows["review"] == 1).all() and (rows["label"] == "").all()
    assert all(note.startswith("not graded: ") for note in rows["note"])
    # a typo the next day must not wipe out the day's predictions: an earlier CSV is left as it was
    code, _out, err = run_cli("predict", "--workdir", voted, images["good"][0], "--out", out)
    assert code == 0, err
    before = out.read_bytes()
    code, _out, err = run_cli("predict", "--workdir", voted, images["bad"][0], "--out", out)
    assert code == 1 and err.strip().splitlines()[-1] == (  # one sentence, a folder or a file counted as an input
        "Error: The one input could not be read (its reason is above): pass image files (JPEG, PNG, TIFF, or another "
        f"format Pillow reads) or folders of them; {out} is left as it was. Received: paths={[images['bad'][0]]}")
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _out, err = run_cli("predict", "--workdir", voted, empty, "--out", out)
    assert code == 1 and err.strip().splitlines()[-1].startswith("Error: The one input could not be read")
    assert out.read_bytes() == before


def test_a_labels_csv_as_worklist_is_refused_with_a_command_that_makes_one(tmp_path):
    from tests.helpers import one_sentence_error, run_cli

    labels = tmp_path / "trainLabels.csv"
    labels.write_text("image,level\n10_left,0\n10_right,1\n")
    code, _, err = run_cli("predict", "--workdir", tmp_path / "w", "--from-file", labels)
    one_sentence_error(code, err, "looks like a CSV", f"tail -n +2 {labels} | cut -d, -f1 | "
                       "sed 's|^|/path/to/images/|; s|$|.jpeg|' > worklist.txt` (the names carry no extension: put "
                       "your images' one for .jpeg).")  # no workdir, no image found: the extension is a guess
    named = tmp_path / "named.tsv"
    named.write_text("path\tgrade\nimg/a.png\t0\n")
    code, _, err = run_cli("predict", "--workdir", tmp_path / "w", "--from-file", named)
    one_sentence_error(code, err, f"tail -n +2 {named} | cut -f1 | sed 's|^|/path/to/images/|' > worklist.txt`.")


def test_a_worklist_whose_first_line_is_a_header_skips_it_and_says_so(tmp_path, capsys):
    """A list exported with its column name first (`path`, `Filename`, ...) graded the header as an image: a "does
    not exist" row."""
    from ensemble.worklist import read_list

    folder = Path(os.path.realpath(tmp_path))
    (folder / "a.jpeg").write_bytes(b"x")
    worklist = folder / "list.txt"
    for header in ("path", "FILE", "Filename", '"image"', "Image Path"):
        worklist.write_text(f"{header}\na.jpeg\n")
        assert read_list(worklist) == [str(folder / "a.jpeg")]
        assert f"{header!r}, is taken as a column header and skipped" in capsys.readouterr().err
    (folder / "image").write_bytes(b"x")  # a file of that name: the line is a path
    worklist.write_text("image\na.jpeg\n")
    assert read_list(worklist) == [str(folder / "image"), str(folder / "a.jpeg")]
    assert capsys.readouterr().err == ""


def _worklist_from_hint(line: str, cwd: Path) -> list[str]:
    """Run the command an error line suggests (between backticks) in ``cwd``; the lines of the worklist it writes."""
    import subprocess

    command = line.split("`")[1]
    subprocess.run(["bash", "-c", command], cwd=cwd, check=True)
    return (cwd / "worklist.txt").read_text().splitlines()


def test_a_labels_csv_hint_takes_the_extension_and_folder_of_the_images(tmp_path):
    """The hint's sed appended .jpeg to every bare name: APTOS's .png (IDRiD's .jpg) names then missed every file."""
    from tests.helpers import one_sentence_error, run_cli

    aptos = tmp_path / "aptos folder"
    (aptos / "train_images").mkdir(parents=True)
    for name in ("000c1434d8d7", "001639a390f0"):
        (aptos / "train_images" / f"{name}.png").write_bytes(b"png")
    labels = aptos / "train.csv"
    labels.write_text("id_code,diagnosis\n000c1434d8d7,2\n001639a390f0,4\n")
    code, _, err = run_cli("predict", "--workdir", tmp_path / "w", "--from-file", labels)
    line = one_sentence_error(code, err, f"tail -n +2 '{labels}' | cut -d, -f1 | sed 's|^|{aptos}/train_images/|; "
                              "s|$|.png|' > worklist.txt`.")
    worklist = _worklist_from_hint(line, tmp_path)
    assert len(worklist) == 2 and all(Path(p).is_file() for p in worklist)  # following the advice works
    # the images elsewhere: the extension of the workdir's split.csv paths (the most common one)
    work = tmp_path / "w"
    work.mkdir()
    (work / "split.csv").write_text("path,label,split,group\na/1.jpg,0,train,\na/2.jpg,1,val,\nb.png,0,test,\n")
    idrid = tmp_path / "a. IDRiD_Training Set.csv"
    idrid.write_text("Image name,Retinopathy grade,Risk of macular edema \nIDRiD_001,3,2\n")
    code, _, err = run_cli("predict", "--workdir", work, "--from-file", idrid)
    line = one_sentence_error(code, err, "sed 's|^|/path/to/images/|; s|$|.jpg|' > worklist.txt`.")
    assert "(the names carry no extension" not in line
    # names that carry their extension get nothing appended, whatever split.csv holds
    ddr = tmp_path / "ddr.csv"
    ddr.write_text("image,grade\n007-0004-000.jpg,0\n")
    code, _, err = run_cli("predict", "--workdir", work, "--from-file", ddr)
    one_sentence_error(code, err, "cut -d, -f1 | sed 's|^|/path/to/images/|' > worklist.txt`.")


def test_a_ddr_name_and_grade_list_is_refused_with_a_command_that_makes_a_worklist(voted, images, tmp_path):
    """DDR's test.txt ('007-0004-000.jpg 0' lines) was read line by line as paths: every image "does not exist"."""
    import shutil

    from tests.helpers import one_sentence_error, run_cli

    ddr = tmp_path / "DR_grading"
    (ddr / "test").mkdir(parents=True)
    for i, p in enumerate(images["good"][:3]):
        shutil.copy(p, ddr / "test" / f"007-000{i}-000.jpg")
    listed = ddr / "test.txt"
    listed.write_text("".join(f"007-000{i}-000.jpg {i}\n" for i in range(3)))
    code, _, err = run_cli("predict", "--workdir", voted, "--from-file", listed)
    line = one_sentence_error(code, err, f"{listed} looks like a labels list (its first line '007-0000-000.jpg 0' is "
                              f"a name and a grade)", f"`cut -d' ' -f1 {listed} | sed 's|^|{ddr}/test/|' > "
                              "worklist.txt`.")
    assert "does not exist" not in err
    worklist = tmp_path / "worklist.txt"
    assert _worklist_from_hint(line, tmp_path) == [str(ddr / "test" / f"007-000{i}-000.jpg") for i in range(3)]
    out = tmp_path / "p.csv"
    code, _, err = run_cli("predict", "--workdir", voted, "--from-file", worklist, "--out", out)
    assert code == 0, err
    assert len(pd.read_csv(out)) == 3 and "Skipped" not in err
    # a worklist of files whose names hold a space and a number is still a worklist
    (ddr / "scan 2").write_bytes(Path(images["good"][0]).read_bytes())
    (ddr / "odd.txt").write_text("scan 2\n")
    code, _, err = run_cli("predict", "--workdir", voted, "--from-file", ddr / "odd.txt", "--out", out)
    assert code == 0, err
    assert pd.read_csv(out)["path"].tolist() == [str(ddr / "scan 2")]


def test_a_grade_and_a_referable_call_that_disagree_are_sent_for_review():
    from types import SimpleNamespace

    from ensemble.inference import _call_conflicts
    from ensemble.referral import ReviewRule, review_flags

    def rows(ens, labels, p_ref, judged):  # the rows the shared rule refers for a contradicted call
        rule = ReviewRule(cut=ens.referable_cut, call_threshold=ens.referable_threshold, kind=ens.referable_kind)
        ones = np.ones(len(labels))
        return np.flatnonzero(review_flags(rule, labels, ones, ones, p_ref)["call_conflict"] & judged)

    ens = SimpleNamespace(referable_cut=2, referable_threshold=0.3, referable_kind="referable_dr", classes=[0, 1, 2, 3, 4])
    labels = np.array([0, 0, 3, 3, 1])
    p_ref = np.array([0.35, 0.1, 0.25, 0.9, 0.5])
    conflicts = _call_conflicts(ens, labels, p_ref, rows(ens, labels, p_ref, np.array([True, True, True, True, False])))
    assert conflicts == {
        0: "its grade 0 is below the referable grade 2, yet P(grade >= 2) 0.350 reaches the referable threshold "
           "0.300 chosen on validation",
        2: "its grade 3 is referable, yet P(grade >= 2) 0.250 is under the referable threshold 0.300 chosen on "
           "validation"}  # row 4 disagrees too, but it is an image no call is made on (ungradable, unlike)
    two = SimpleNamespace(referable_cut=0, referable_threshold=0.4, referable_kind="positive_class",
                          classes=["malignant", "benign"])
    labels, p_pos = np.array([1, 0]), np.array([0.45, 0.6])
    out = _call_conflicts(two, labels, p_pos, rows(two, labels, p_pos, np.array([True, True])))
    assert out == {0: "its class benign and the malignant call disagree: P(malignant) 0.450 reaches the threshold "
                      "0.400 chosen on validation"}


def test_out_never_replaces_inputs_records_or_another_workdir_even_with_force(voted, images, tmp_path):
    import json as _json

    good = images["good"][0]
    before = Path(good).read_bytes()
    with pytest.raises(UserError, match="is one of the images being graded"):
        predict_images(voted, [good], out=good, force=True)
    assert Path(good).read_bytes() == before
    other = tmp_path / "other"
    other.mkdir()
    (other / "dataset.json").write_text("{}")
    (other / "split.csv").write_text("path,label,split\n")
    another = rf"is inside another workdir, {re.escape(str(other))} \(it holds dataset.json\), whose files predict"
    for target, words in ((other / "split.csv", another), (other / "members" / "a" / "metrics.csv", another),
                          (other / "y.csv", another), (other / "sub" / "y.csv", another),
                          (tmp_path / "scores.json", "is a .json file, not a CSV"),
                          (tmp_path / "model.keras", "is a .keras file, not a CSV")):
        with pytest.raises(UserError, match=words):
            predict_images(voted, [good], out=target, force=True)
    assert (other / "split.csv").read_text() == "path,label,split\n" and sorted(other.iterdir()) == [
        other / "dataset.json", other / "split.csv"]
    info = _json.loads((voted / "dataset.json").read_text())
    labels = Path(info["source"][len("csv:"):])
    kept = labels.read_bytes()
    with pytest.raises(UserError, match="is the labels file .* was prepared from"):
        predict_images(voted, [good], out=labels, force=True)
    with pytest.raises(UserError, match="is inside the images folder"):
        predict_images(voted, [good], out=Path(info["image_root"]) / "p.csv", force=True)
    assert labels.read_bytes() == kept


def test_out_in_a_workdir_kept_inside_its_images_folder_is_allowed(tmp_path):
    from ensemble.inference import refuse_the_source

    images = tmp_path / "fundus"
    work = images / "work"
    work.mkdir(parents=True)
    (work / "dataset.json").write_text(json.dumps({"source": f"folders:{images}", "image_root": str(images)}))
    refuse_the_source(work / "p.csv", (work / "p.csv").resolve(), work)  # the workdir itself: fine
    with pytest.raises(UserError, match="is inside the images folder"):
        refuse_the_source(images / "p.csv", (images / "p.csv").resolve(), work)
    npz = tmp_path / "npz-work"  # prepare --npz writes its PNGs into the workdir's images/, replaced whole next time
    (npz / "images").mkdir(parents=True)
    (npz / "dataset.json").write_text(json.dumps({"source": "npz:a.npz", "image_root": str(npz / "images")}))
    refuse_the_source(npz / "p.csv", (npz / "p.csv").resolve(), npz)
    for inside in (npz / "images" / "p.csv", npz / "images" / "heat"):
        with pytest.raises(UserError, match="is inside the images folder"):
            refuse_the_source(inside, inside.resolve(), npz)


def test_a_file_that_is_no_image_is_skipped_before_the_decoder_without_a_traceback(voted, images, tmp_path, capfd):
    np.save(tmp_path / "arr.npy", np.zeros(3))
    result = predict_images(voted, [str(tmp_path / "arr.npy"), images["good"][0]], print_csv=False)
    assert result.skipped == {str(tmp_path / "arr.npy"): "cannot be decoded as an image (not an image, or "
                                                         "truncated/corrupt)"}
    assert "Traceback" not in capfd.readouterr().err  # the API has no quiet CLI wrapper to hide TensorFlow's


def test_a_split_csv_path_that_is_relative_to_the_images_folder_is_named_so(voted, tmp_path, monkeypatch):
    data = json.loads((voted / "dataset.json").read_text())
    relative = pd.read_csv(voted / "split.csv")["path"].iloc[0]
    monkeypatch.chdir(tmp_path)  # where that relative path does not exist
    good = str(Path(data["image_root"]) / relative)
    result = predict_images(voted, [relative, good], print_csv=False)
    assert result.skipped[relative] == (f"does not exist here; split.csv paths are relative to the images folder "
                                        f"{data['image_root']}: pass {good}")


def test_worklist_bom_link_loop_and_json_rows_of_inputs_not_graded(voted, images, tmp_path) -> None:
    """A worklist saved with a BOM (Notepad) lost its first image; a loop of symbolic links with --out raised a
    traceback (and was called missing); a link was named after its target; --json merged an unreadable input given
    twice into one entry and printed nothing when no input was readable."""
    from tests.helpers import run_cli

    good = Path(images["good"][0])
    (tmp_path / "l1.jpeg").symlink_to("l2.jpeg")
    (tmp_path / "l2.jpeg").symlink_to("l1.jpeg")
    (tmp_path / "eye.jpeg").symlink_to(good)
    (tmp_path / "gone.jpeg").symlink_to("nowhere.jpeg")
    worklist = tmp_path / "list.txt"
    worklist.write_bytes(b"\xef\xbb\xbfeye.jpeg\r\nl1.jpeg\r\ngone.jpeg\r\ngone.jpeg\r\n")
    out = tmp_path / "p.csv"
    code, _, err = run_cli("predict", "--workdir", voted, "--from-file", worklist, "--out", out)
    assert code == 0, err
    rows = pd.read_csv(out, keep_default_na=False)
    assert rows["path"].tolist() == [str(tmp_path / n) for n in ("eye.jpeg", "l1.jpeg", "gone.jpeg", "gone.jpeg")]
    notes = rows["note"].tolist()
    assert not notes[0].startswith("not graded") and notes[1] == "not graded: is a loop of symbolic links"
    assert notes[2] == notes[3] == "not graded: is a symbolic link to nowhere.jpeg, which does not exist"
    code, stdout, err = run_cli("predict", "--workdir", voted, "--from-file", worklist, "--json")
    assert code == 0, err
    got = json.loads(stdout)
    assert [r["path"] for r in got["not_graded"]] == [str(tmp_path / n) for n in ("l1.jpeg", "gone.jpeg", "gone.jpeg")]
    assert len(got["skipped"]) == 2  # the dict keeps one entry per path, as before
    code, stdout, err = run_cli("predict", "--workdir", voted, tmp_path / "gone.jpeg", tmp_path / "l1.jpeg", "--json")
    assert code == 1 and "None of the 2 inputs could be read" in err
    got = json.loads(stdout)
    assert got["predictions"] == [] and [r["reason"] for r in got["not_graded"]] == [
        "is a symbolic link to nowhere.jpeg, which does not exist", "is a loop of symbolic links"]


def test_predict_progress_is_logged_when_stderr_is_no_terminal(capsys) -> None:
    """A cron job's log got nothing for the 107 s of a 20,000-image run: off a terminal a line is written at every
    tenth of the images (none for a run of two batches or fewer)."""
    import numpy as np

    from ensemble.inference import _progress

    batches = [(np.arange(10), None) for _ in range(10)]
    assert len(list(_progress(iter(batches), 100, 10))) == 10
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line.split(" in ")[0] for line in lines] == [
        f"Predicting: {k * 10} of 100 images ({k * 10}%)" for k in range(1, 11)]
    list(_progress(iter(batches[:2]), 20, 10))
    assert capsys.readouterr().err == ""


def test_an_interrupted_predict_keeps_the_rows_it_graded(voted, images, tmp_path, monkeypatch):
    """Ctrl-C or SIGTERM on a long batch threw every graded row away: the batches every member finished are
    written to <out>.partial.csv, --out is left as it was, and the interruption says where the rows are."""
    from ensemble import inference

    out = tmp_path / "today.csv"
    inference.predict_images(voted, images["good"][:1], out=out, print_csv=False)  # yesterday's predictions
    before = out.read_bytes()
    real, calls = inference.member_probs, []

    def stops_at_the_third_batch(model, batch, **kw):
        calls.append(1)
        if len(calls) > 4:  # two members: batches 1 and 2 finished, batch 3 interrupted
            raise KeyboardInterrupt
        return real(model, batch, **kw)

    monkeypatch.setattr(inference, "member_probs", stops_at_the_third_batch)
    with pytest.raises(inference.PartlyDone) as stop:
        inference.predict_images(voted, images["good"], out=out, batch_size=2, print_csv=False)
    assert out.read_bytes() == before
    partial = pd.read_csv(tmp_path / "today.partial.csv")
    assert partial["path"].tolist() == images["good"][:4] and partial["label"].notna().all()
    assert stop.value.note.startswith(f"4 of 5 images were graded before it: their rows are in {tmp_path / 'today.partial.csv'}")
    monkeypatch.setattr(inference, "member_probs", real)
    full = inference.predict_images(voted, images["good"], out=tmp_path / "all.csv", print_csv=False)
    np.testing.assert_allclose(partial[[c for c in partial.columns if c.startswith("prob_")]].to_numpy(),
                               full.probs[:4], atol=1e-5)  # the same rows a full run gives


def _stops_at_the_third_batch(real):
    """``member_probs`` interrupted (Ctrl-C) at the third batch of a two-member ensemble: batches 1 and 2 finished."""
    calls = []

    def member_probs(model, batch, **kw):
        calls.append(1)
        if len(calls) > 4:
            raise KeyboardInterrupt
        return real(model, batch, **kw)

    return member_probs


def test_an_interruption_during_the_input_screen_keeps_every_graded_image(voted, images, tmp_path, monkeypatch,
                                                                            capsys):
    """The input screen runs after the last batch and took longer than the grading (35 s after a 4,000-image bar had
    reached 100 %): a SIGTERM then said 'Nothing finished was changed' and every graded image was lost. The members'
    probabilities are kept first (a quick .partial.npz), and the rerun writes --out without grading anything again;
    interrupted while the partial rows are screened, a run still keeps the npz."""
    from ensemble import inference

    out = tmp_path / "today.csv"
    real_screen = inference.screen_notes

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(inference, "screen_notes", interrupted)
    with pytest.raises(inference.PartlyDone) as stop:
        inference.predict_images(voted, images["good"], out=out, batch_size=2, print_csv=False)
    csv_path, npz_path = inference.partial_files(out)
    assert npz_path.is_file() and not out.exists()
    assert stop.value.note == (f"5 of 5 images were graded before it: {out} is not written. Run the same command "
                               f"again to write today.csv without grading them again (they are taken from "
                               f"{npz_path.name}).")
    monkeypatch.setattr(inference, "screen_notes", real_screen)
    seen = []
    real = inference.member_probs
    monkeypatch.setattr(inference, "member_probs", lambda model, batch, **kw: seen.append(1) or real(model, batch, **kw))
    capsys.readouterr()
    resumed = inference.predict_images(voted, images["good"], out=out, batch_size=2, print_csv=False)
    assert seen == [] and len(resumed.probs) == 5 and "Resumed: 5 image(s)" in capsys.readouterr().err
    assert not npz_path.exists() and not csv_path.exists()
    # a batch interrupted, then the screen of its partial rows interrupted too: the npz is kept, the rows are not
    monkeypatch.setattr(inference, "member_probs", _stops_at_the_third_batch(real))
    monkeypatch.setattr(inference, "screen_notes", interrupted)
    out.unlink()
    with pytest.raises(inference.PartlyDone) as stop:
        inference.predict_images(voted, images["good"], out=out, batch_size=2, print_csv=False)
    assert npz_path.is_file() and not csv_path.exists()
    assert stop.value.note.startswith(f"4 of 5 images were graded before it: their rows are not written beside {out};")


def test_a_rerun_resumes_from_the_interrupted_rows_and_grades_only_the_rest(voted, images, tmp_path, monkeypatch,
                                                                          capsys):
    """A 100,000-image run stopped at 90 % graded everything again: the rerun takes the graded images' member
    probabilities from <out>.partial.npz (same members, unchanged files), grades the rest, gives the very rows an
    uninterrupted run gives, and removes the partial files; a changed file or other members are graded again."""
    from ensemble import inference

    out = tmp_path / "today.csv"
    real, seen = inference.member_probs, []

    def stops_at_the_third_batch(model, batch, **kw):
        seen.append(int(batch.shape[0]))
        if len(seen) > 4:  # two members: batches 1 and 2 finished, batch 3 interrupted
            raise KeyboardInterrupt
        return real(model, batch, **kw)

    monkeypatch.setattr(inference, "member_probs", stops_at_the_third_batch)
    with pytest.raises(inference.PartlyDone):
        inference.predict_images(voted, images["good"], out=out, batch_size=2, print_csv=False)
    csv_path, npz_path = inference.partial_files(out)
    assert csv_path.is_file() and npz_path.is_file()
    seen.clear()
    monkeypatch.setattr(inference, "member_probs", lambda model, batch, **kw: seen.append(int(batch.shape[0]))
                        or real(model, batch, **kw))
    capsys.readouterr()
    resumed = inference.predict_images(voted, images["good"], out=out, batch_size=2, print_csv=False)
    assert sum(seen) == 2 * 1  # two members, one image left of five
    assert "Resumed: 4 image(s)" in capsys.readouterr().err
    assert not csv_path.exists() and not npz_path.exists()
    full = inference.predict_images(voted, images["good"], out=tmp_path / "all.csv", print_csv=False)
    assert resumed.paths == full.paths
    np.testing.assert_array_equal(resumed.probs, full.probs)
    assert out.read_text().replace("today", "x") == (tmp_path / "all.csv").read_text().replace("all", "x")

    monkeypatch.setattr(inference, "member_probs", stops_at_the_third_batch)  # again, then one file changes
    seen.clear()
    with pytest.raises(inference.PartlyDone):
        inference.predict_images(voted, images["good"], out=out, batch_size=2, print_csv=False)
    changed = Path(images["good"][0])
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    seen.clear()
    monkeypatch.setattr(inference, "member_probs", lambda model, batch, **kw: seen.append(int(batch.shape[0]))
                        or real(model, batch, **kw))
    inference.predict_images(voted, images["good"], out=out, batch_size=2, print_csv=False)
    assert sum(seen) == 2 * 2  # the changed image and the one never graded

    with pytest.raises(inference.PartlyDone):  # other flips (--tta): nothing is taken over
        monkeypatch.setattr(inference, "member_probs", stops_at_the_third_batch)
        seen.clear()
        inference.predict_images(voted, images["good"], out=out, batch_size=2, print_csv=False)
    seen.clear()
    monkeypatch.setattr(inference, "member_probs", lambda model, batch, **kw: seen.append(int(batch.shape[0]))
                        or real(model, batch, **kw))
    capsys.readouterr()
    inference.predict_images(voted, images["good"], out=out, batch_size=2, print_csv=False, tta=True)
    assert sum(seen) == 2 * 5 and "every image is graded again" in capsys.readouterr().err


def test_the_interruption_line_says_where_the_graded_rows_went(capsys):
    import typer

    import cli
    from ensemble.inference import PartlyDone

    def predict_like():
        stop = PartlyDone()
        stop.note = "4 of 5 images were graded before it: their rows are in x.partial.csv"
        raise stop

    with pytest.raises(typer.Exit) as done:
        cli.user_errors(predict_like)()
    assert done.value.exit_code == 130
    assert capsys.readouterr().err.strip() == "Interrupted. 4 of 5 images were graded before it: their rows are in x.partial.csv"


def test_partial_files_predict_did_not_write_are_never_deleted_and_an_unkept_run_says_so(voted, images, tmp_path,
                                                                                        monkeypatch):
    """A finished run deleted any <stem>.partial.csv/.npz beside --out; a partial path that is a folder broke the run
    after its work; and the interruption said "taken from <stem>.partial.npz" when that could not be written."""
    from ensemble import inference

    out = tmp_path / "mine.csv"
    (tmp_path / "mine.partial.csv").write_text("my notes\n")
    (tmp_path / "mine.partial.npz").write_text("not ours\n")
    inference.predict_images(voted, images["good"], out=out, print_csv=False)
    assert (tmp_path / "mine.partial.csv").read_text() == "my notes\n"
    assert (tmp_path / "mine.partial.npz").read_text() == "not ours\n"

    other = tmp_path / "c.csv"
    (tmp_path / "c.partial.npz").mkdir()  # a folder where the resume file goes
    full = inference.predict_images(voted, images["good"], out=other, print_csv=False)
    assert len(full.paths) == len(images["good"]) and (tmp_path / "c.partial.npz").is_dir()
    real = inference.member_probs
    monkeypatch.setattr(inference, "member_probs", _stops_at_the_third_batch(real))
    with pytest.raises(inference.PartlyDone) as stop:
        inference.predict_images(voted, images["good"], out=tmp_path / "new.csv", batch_size=2, print_csv=False)
    assert "is not written" in stop.value.note and "left as it was" not in stop.value.note
    monkeypatch.setattr(inference, "member_probs", _stops_at_the_third_batch(real))
    with pytest.raises(inference.PartlyDone) as stop:
        inference.predict_images(voted, images["good"], out=other, batch_size=2, print_csv=False)
    assert "their rows are in" in stop.value.note and "grade them all" in stop.value.note
    assert "taken from" not in stop.value.note  # the resume file could not be written: no promise to resume


def _graded_result(labels, p_referable, threshold=0.2):
    """A five-grade result whose referable call thresholds ``p_referable`` at ``threshold`` (cut grade 2)."""
    from ensemble.inference import PredictionResult

    labels = np.asarray(labels)
    n = len(labels)
    probs = np.full((n, 5), 0.1)
    probs[np.arange(n), labels] = 0.6
    p = np.asarray(p_referable, dtype=float)
    return PredictionResult([f"{i}.png" for i in range(n)], probs, labels, np.ones(n), np.full(n, 0.6),
                            np.zeros(n, bool), {}, "soft", ["m1", "m2"], "sent for review when ...", list(range(5)),
                            p_referable=p, referable=p >= threshold, referable_kind="referable_dr", referable_cut=2,
                            referable_note=f"referable DR when P(grade >= 2) >= {threshold}, chosen on val",
                            notes=[""] * n, withheld=np.zeros(n, bool))


def test_the_review_column_is_named_review_and_old_refer_predictions_are_still_read(voted, images, tmp_path):
    """``refer`` read as "send to the eye specialist": a confident grade-4 eye had refer 0. The column is ``review``;
    a CSV predict wrote before (header ``...,agreement,refer,...``) is still an earlier predictions CSV for --out
    and for an interrupted run's partial file."""
    from ensemble import inference

    result = _graded_result([4, 0], [0.95, 0.05])
    header = result.to_csv().splitlines()[0].split(",")
    assert "review" in header and "refer" not in header and "referable" in header
    row = result.to_json()["predictions"][0]
    assert row["review"] is False and "refer" not in row and row["referable"] is True  # a confident grade 4
    old = ",".join(inference.OLD_CSV_COLUMNS) + ",prob_0,prob_1,prob_2,prob_3,prob_4,note\na.png,0,0,0.9,0,0.9,1,0,1,0,0,0,0,\n"
    assert "agreement,refer,prob_0" in old
    out = tmp_path / "earlier.csv"
    out.write_text(old)
    predict_images(voted, images["good"][:1], out=out)  # replaced without --force: predict wrote it
    assert pd.read_csv(out).columns[7] == "review"
    partial_csv, _ = inference.partial_files(tmp_path / "today.csv")
    partial_csv.write_text(old)
    assert inference._keep_partial(partial_csv, result.to_csv())  # an old partial file is predict's own
    partial_csv.write_text(old)
    inference._remove_partial(tmp_path / "today.csv")
    assert not partial_csv.exists()


def test_the_referable_line_says_it_rests_on_p_referable_not_the_grade(capsys):
    """stderr said "Referable DR (a finding by grade, apart from refer): 7 of 10" where three of the 7 had grade 0:
    the call thresholds P(grade >= 2), not the grade."""
    from ensemble.inference import _summary

    _summary(_graded_result([0, 4, 3, 0, 1], [0.3, 0.9, 0.1, 0.05, 0.25]), None)
    err = " ".join(capsys.readouterr().err.split())
    assert "a finding by grade" not in err and "refer 1" not in err
    assert "Referable DR: 3 of the 5 assessed images called referable (referable DR when P(grade >= 2) >= 0.2" in err
    assert ("The call rests on P(grade >= 2) at that threshold, not on the class column (the grade): 2 of the 3 called "
            "are graded below 2, and 1 graded 2 or above are not called (each such image has review 1, its note says why)") in err


def test_the_call_line_of_ordered_grades_that_are_not_dr_says_positive(capsys):
    """predict said "Referable DR: …" for low/mid/high grades: only the DR grades 0-4 are DR's."""
    from dataclasses import replace

    from ensemble.inference import _summary

    result = _graded_result([0, 4, 3, 0, 1], [0.3, 0.9, 0.1, 0.05, 0.25])
    _summary(replace(result, classes=["a", "b", "c", "d", "e"],
                     referable_note="grade >= 2 (c or worse) when P(grade >= 2) >= 0.2, chosen on val"), None)
    err = " ".join(capsys.readouterr().err.split())
    assert "Positive: 3 of the 5 assessed images called positive (grade >= 2 (c or worse) when" in err \
        and "Referable DR" not in err
