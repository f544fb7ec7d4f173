"""run_vote and load_members on a hand-built workdir (60 rows, 3 complete members, 1 incomplete)."""

from __future__ import annotations

import hashlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from ensemble.member_set import load_members
from ensemble.vote import resolve_methods, run_vote
from members.infra.atomic import save_npz
from members.infra.errors import UserError
from members.scoring import METRICS
from tests.helpers import one_sentence_error, run_cli

K = 5
SPLIT = ["train"] * 20 + ["val"] * 20 + ["test"] * 20
LABELS = np.tile(np.arange(K), 12)  # 4 rows of each grade in every split


def _probs(labels: np.ndarray, skill: float, seed: int) -> np.ndarray:
    """Probabilities that put ``skill`` extra mass on the true grade (0 = noise, 1 = near perfect)."""
    rng = np.random.default_rng(seed)
    noise = rng.dirichlet(np.ones(K), size=len(labels))
    p = (1 - skill) * noise + skill * np.eye(K)[labels]
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def make_workdir(root: Path, skills: dict[str, tuple[float, float]], incomplete: str | None = "d",
                 groups: list[str] | None = None) -> Path:
    """A workdir with dataset.json, split.csv and one member per ``skills`` entry ((val skill, test skill)).

    ``groups``: a patient id per row, written as split.csv's ``group`` column (a split grouped by patient).
    """
    if groups is None:
        rows = ["path,label,split"] + [f"img_{i}.png,{LABELS[i]},{SPLIT[i]}" for i in range(len(SPLIT))]
    else:
        rows = ["path,label,split,group"] + [f"img_{i}.png,{LABELS[i]},{SPLIT[i]},{groups[i]}"
                                             for i in range(len(SPLIT))]
    csv = ("\n".join(rows) + "\n").encode()
    (root / "split.csv").write_bytes(csv)
    fingerprint = hashlib.sha256(csv).hexdigest()
    meta = {"classes": list(range(K)), "num_classes": K, "source": "test", "image_root": str(root),
            "fingerprint": fingerprint, "skipped": {}}
    (root / "dataset.json").write_text(json.dumps(meta))
    split = np.array(SPLIT)
    names = list(skills) + ([incomplete] if incomplete else [])
    for j, name in enumerate(names):
        folder = root / "members" / name
        folder.mkdir(parents=True)
        val_skill, test_skill = skills.get(name, (0.5, 0.5))
        for s, skill in (("val", val_skill), ("test", test_skill)):
            ids = np.flatnonzero(split == s)
            save_npz(folder / f"{s}.npz", probs=_probs(LABELS[ids], skill, seed=10 * j + len(s)),
                     labels=LABELS[ids].astype(np.int64), row_ids=ids.astype(np.int64),
                     fingerprint=np.array(fingerprint))
        if name != incomplete:
            (folder / "metrics.json").write_text(json.dumps(
                {"name": name, "num_classes": K, "classes": list(range(K)), "fingerprint": fingerprint}))
    return root


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    # "a" is best on val but worst on test: best_single must still be "a".
    return make_workdir(tmp_path, {"a": (0.8, 0.0), "b": (0.1, 0.7), "c": (0.05, 0.6)})


def test_load_members_skips_incomplete_by_name(workdir: Path, capsys) -> None:
    ms = load_members(workdir)
    assert ms.names == ["a", "b", "c"]
    assert "d" in ms.skipped and "metrics.json" in ms.skipped["d"]
    assert "'d'" in capsys.readouterr().err
    assert ms.val_probs.shape == (3, 20, K) and ms.test_probs.shape == (3, 20, K)
    assert ms.test_row_ids.tolist() == list(range(40, 60))


def test_load_members_refuses_foreign_fingerprint(workdir: Path) -> None:
    path = workdir / "members" / "b" / "test.npz"
    data = dict(np.load(path))
    data["fingerprint"] = np.array("0" * 64)
    save_npz(path, **data)
    with pytest.raises(UserError, match=r"Member 'b'.*test\.npz.*fingerprint"):
        load_members(workdir)


def test_load_members_refuses_shuffled_row_ids(workdir: Path) -> None:
    path = workdir / "members" / "c" / "val.npz"
    data = dict(np.load(path))
    data["row_ids"] = data["row_ids"][::-1].copy()
    save_npz(path, **data)
    with pytest.raises(UserError, match=r"Member 'c'.*val\.npz.*row_ids"):
        load_members(workdir)


def test_load_members_refuses_other_classes(workdir: Path) -> None:
    path = workdir / "members" / "a" / "metrics.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "num_classes": 3}))
    with pytest.raises(UserError, match=r"Member 'a'.*metrics\.json.*num_classes"):
        load_members(workdir)


def test_load_members_refuses_truncated_npz(workdir: Path) -> None:
    path = workdir / "members" / "a" / "val.npz"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(UserError, match=r"val\.npz"):
        load_members(workdir)


def test_load_members_needs_two_complete(tmp_path: Path) -> None:
    make_workdir(tmp_path, {"a": (0.5, 0.5)})
    with pytest.raises(UserError, match=r"at least two complete members; found 1 \(a\).*train-member"):
        load_members(tmp_path)


def test_load_members_unknown_name_lists_available(workdir: Path) -> None:
    with pytest.raises(UserError, match=r"'zz'.*complete members are a, b, c \(incomplete: d\)"):
        load_members(workdir, ["a", "zz"])


def test_resolve_methods() -> None:
    assert [n for n, _, _ in resolve_methods(["soft"], "auto", 5)] == ["soft", "soft+thr"]
    assert [n for n, _, _ in resolve_methods(["soft"], "auto", 2)] == ["soft"]
    assert [n for n, _, _ in resolve_methods(["stack+thr"], "off", 5)] == ["stack+thr"]
    assert len(resolve_methods(["all"], "off", 5)) == 5
    with pytest.raises(UserError, match="Unknown method 'mean'"):
        resolve_methods(["mean"], "auto", 5)


def _check_entry(entry: dict) -> None:
    assert set(entry) == set(METRICS)
    for metric, v in entry.items():
        assert set(v) == {"value", "ci"}, metric
        lo, hi = v["ci"]
        assert lo <= v["value"] <= hi, (metric, v)


@pytest.fixture(scope="module")
def voted(tmp_path_factory) -> tuple[Path, dict, str]:
    """One full run (every method, grade thresholds) shared by the report tests."""
    root = make_workdir(tmp_path_factory.mktemp("vote"), {"a": (0.8, 0.0), "b": (0.1, 0.7), "c": (0.05, 0.6)})
    console = Console(file=io.StringIO(), width=120)
    report = run_vote(root, n_boot=200, console=console)
    return root, report, console.file.getvalue()


def test_report_schema(voted) -> None:
    root, report, _ = voted
    assert json.loads((root / "ensemble" / "report.json").read_text()) == report
    for key in ("test_size", "baseline", "members", "ensembles", "best_single", "significance", "diversity",
                "val", "best_method", "referral", "skipped", "verdict", "difference", "selection_metric"):
        assert key in report, key
    assert report["test_size"] == 20
    assert list(report["members"]) == ["a", "b", "c"] and "d" in report["skipped"]
    assert len(report["ensembles"]) == 10  # 5 methods, each also with grade thresholds (5 ordered classes)
    for entry in [report["baseline"], *report["members"].values(), *report["ensembles"].values()]:
        _check_entry(entry)
    assert report["baseline"]["accuracy"]["value"] == pytest.approx(0.2)  # 4 rows of each grade
    assert all(s["vs"] == report["best_single"] and 0 <= s["mcnemar_p"] <= 1 for s in report["significance"].values())
    assert report["diversity"]["members"] == ["a", "b", "c"]
    assert np.array(report["diversity"]["q_statistic"]).shape == (3, 3)
    assert 0 < report["referral"]["test_coverage"] <= 1


def test_console_table_gives_every_metric_its_ci_within_80_columns(voted) -> None:
    from ensemble.report import print_table

    _, report, _ = voted
    console = Console(file=io.StringIO(), width=80)
    print_table(report, console)
    lines = console.file.getvalue().splitlines()
    table = lines[:next(i for i, line in enumerate(lines) if "best single member" in line)]
    assert max(len(line) for line in lines) <= 80 and not any("…" in line for line in table)  # nothing cut
    header = next(i for i, line in enumerate(lines) if line.startswith("model"))
    row = next(i for i, line in enumerate(lines) if line.startswith("a *"))
    values, bounds = lines[row].split()[2:], lines[row + 1].split()
    assert len(values) == len(bounds) == 7 == len(lines[header].split()) - 1  # acc … ECE, each with its interval
    a = report["members"]["a"]
    for key, value, bound in zip(("accuracy", "balanced_accuracy", "macro_f1", "qwk", "auc", "log_loss", "ece"),
                                 values, bounds):
        lo, hi = (float(b) for b in bound.replace("–", " ").split())
        assert float(value) == pytest.approx(a[key]["value"], abs=5e-4)
        for shown, bound, sign in zip((lo, hi), a[key]["ci"], (1, -1)):  # two decimals, one at 1 and above: outward
            assert 0 <= sign * (bound - shown) <= (0.01 if abs(bound) < 1 else 0.1) + 1e-9, key


def test_the_best_test_values_are_marked_where_the_console_shows_no_bold(voted) -> None:
    from ensemble.report import BEST_MARK, _best_per_metric, print_table

    _, report, _ = voted
    plain = Console(file=io.StringIO(), width=120)  # a file: Rich drops the bold
    print_table(report, plain)
    text = plain.file.getvalue()
    assert f"{BEST_MARK} = best on test" in " ".join(text.split()) and "bold = best" not in text
    best = _best_per_metric(report)
    marked = sum(len(names) for names in best.values())
    assert marked > 0 and text.count(BEST_MARK) == marked + 1  # each best cell, and the caption
    styled = Console(file=io.StringIO(), width=120, force_terminal=True, color_system="standard")
    print_table(report, styled)
    assert BEST_MARK not in styled.file.getvalue() and "bold" in styled.file.getvalue()


def test_report_md_says_what_zero_wide_intervals_and_in_sample_member_figures_are(voted, tmp_path) -> None:
    import copy

    from ensemble.report import print_table, write_report

    _, report, _ = voted
    write_report(tmp_path / "plain", report)
    md = (tmp_path / "plain" / "report.md").read_text()
    assert "zero width" not in md  # 200 resamples of 20 rows: every interval has a width
    assert "A member's val figures are in-sample wherever it fitted something on these rows" in md
    assert ("- **Grades**: for diabetic retinopathy on the International Clinical DR scale (as EyePACS, IDRiD and APTOS "
            "grade): 0 no diabetic retinopathy, 1 mild, 2 moderate, 3 severe non-proliferative, 4 proliferative.") in md
    threshold = report["referral"]["threshold"]  # written as predict writes it, so both readings cut alike
    assert f"is below {threshold:.4g} (chosen on val" in md and "test eyes sent for review" in md
    named = copy.deepcopy(report)
    named["classes"] = ["none", "mild", "moderate", "severe", "proliferative"]
    write_report(tmp_path / "named", named)
    assert "**Grades**" not in (tmp_path / "named" / "report.md").read_text()  # the names say it already

    # demo-data: soft's accuracy 0.767 [0.767, 0.767] beside wide's [0.633, 0.900], with a footnote that blamed "a
    # class of one row or one patient". The cause is the stratified bootstrap itself: each grade keeps its count, so
    # a model whose rows score alike within every grade never moves. The footnote says so, and the cell is marked.
    stuck = copy.deepcopy(report)
    name = next(n for n, m in stuck["members"].items() if 0 < m["accuracy"]["value"] < 1)
    entry = stuck["members"][name]["accuracy"]
    entry["ci"] = [entry["value"], entry["value"]]
    write_report(tmp_path / "stuck", stuck)
    text = (tmp_path / "stuck" / "report.md").read_text()
    value = f"{entry['value']:.3f}"
    row = next(line for line in text.split("## Test set")[1].splitlines() if line.startswith(f"| {name} "))
    assert row.split(" | ")[2] == f"{value} [{value}, {value}]°"
    note = " ".join(text.split("°: ")[1].split("\n")[0].split())
    assert note.startswith(f"an interval of zero width (e.g. {name}'s accuracy {value} [{value}, {value}]) does not mean "
                           "the figure is exact. The bootstrap draws rows within their grade and keeps each grade's row "
                           "count, so every interval here is conditional on the test split's grade mix")
    assert "one row or one patient" not in text
    console = Console(file=io.StringIO(), width=80)
    print_table(stuck, console)
    shown = console.file.getvalue()
    assert f"{value[1:4]}–{value[1:4]}°" in shown and "° = an interval of zero width: conditional on the test" in (
        " ".join(shown.split()))
    one = copy.deepcopy(report)  # one class for every row: 1/k balanced accuracy and QWK 0 are exact, not flat
    one["members"][name]["balanced_accuracy"] = {"value": 0.2, "ci": [0.2, 0.2]}
    write_report(tmp_path / "one", {**one, "one_class": [name]})
    assert "°" not in (tmp_path / "one" / "report.md").read_text()


def test_vote_says_where_the_report_is_and_labels_the_referable_intervals(tmp_path, capsys) -> None:
    """The console never named ensemble/report.md or the figures, and under a table titled "95 % bootstrap CI" the
    referable lines gave Clopper-Pearson intervals on effective counts unlabelled."""
    root = make_workdir(tmp_path, {"a": (0.8, 0.3), "b": (0.4, 0.3)}, incomplete=None,
                        groups=[f"p{i // 2}" for i in range(len(SPLIT))])
    console = Console(file=io.StringIO(), width=400)
    run_vote(root, methods=["soft"], n_boot=20, console=console)
    err = capsys.readouterr().err
    assert (f"Report: {root / 'ensemble' / 'report.md'} (report.json for scripts); figures beside it: "
            "calibration.png, comparison.png, confusion.png, diversity.png, roc.png.") in err
    lines = [line for line in console.file.getvalue().splitlines() if line.startswith("Referable DR")]
    assert len(lines) == 2 and all("(exact 95 % intervals on effective counts), AUC " in line
                                   and "(95 % bootstrap CI) at threshold" in line for line in lines)


def test_best_single_is_chosen_on_val_not_test(voted) -> None:
    _, report, _ = voted
    assert report["best_single"] == "a"
    assert report["val"]["members"]["a"]["qwk"] > report["val"]["members"]["b"]["qwk"]
    assert report["members"]["a"]["qwk"]["value"] < report["members"]["b"]["qwk"]["value"]
    best = report["best_method"]
    assert all(report["val"]["ensembles"][best]["qwk"] >= v["qwk"] for v in report["val"]["ensembles"].values())


def test_files_written(voted) -> None:
    root, report, printed = voted
    out = root / "ensemble"
    for name, rel in report["combiners"].items():
        saved = json.loads((root / rel).read_text())
        assert rel == f"ensemble/combiners/{name}.json" and saved["member_names"] == ["a", "b", "c"]
    for png in ("comparison.png", "confusion.png", "diversity.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text()
    assert report["verdict"] in md and "+thr" in md and "| majority class |" in md
    assert "a *" in printed and "majority class" in printed


def test_run_vote_binary(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "K", 2)
    monkeypatch.setattr(sys.modules[__name__], "LABELS", np.tile(np.arange(2), 30))
    make_workdir(tmp_path, {"a": (0.5, 0.5), "b": (0.3, 0.6)}, incomplete=None)
    report = run_vote(tmp_path, methods=["soft", "caruana"], n_boot=100, console=Console(file=io.StringIO()))
    assert list(report["ensembles"]) == ["soft", "caruana"]  # no grade thresholds for two classes
    assert report["members"]["a"]["auc"]["value"] is not None
    assert report["thresholds"]["applied"] is False
    md = (tmp_path / "ensemble" / "report.md").read_text()
    assert "classes: 2 (0, 1; two classes)" in md and "ordered grades" not in md  # it said both "ordered" and "not"
    assert "| model | kind | acc | bal-acc | macro-F1 | kappa | AUC |" in md and "by kappa" in report["verdict"]
    assert "Referable DR" not in md and " eyes" not in md
    assert "grader" not in md and "photograph" not in md and " grade " not in md  # classes, images, readers


def test_the_default_positive_class_of_two_is_the_rarer_one(tmp_path: Path, monkeypatch, capsys) -> None:
    """BreastMNIST prepared --classes malignant,benign put benign at index 1: the summary's sensitivity was the
    share of benign lesions found. The rarer class is the condition a screen looks for."""
    monkeypatch.setattr(sys.modules[__name__], "K", 2)
    monkeypatch.setattr(sys.modules[__name__], "LABELS", np.array([1, 1, 0] * 20))  # class 0 is the rarer
    make_workdir(tmp_path, {"a": (0.5, 0.5), "b": (0.3, 0.6)}, incomplete=None)
    report = run_vote(tmp_path, methods=["soft"], n_boot=50, console=Console(file=io.StringIO()))
    assert report["referable"]["positive_index"] == 0
    assert "takes class 0 as positive: the rarer class on val" in capsys.readouterr().err
    report = run_vote(tmp_path, methods=["soft"], n_boot=50, positive_class="1", console=Console(file=io.StringIO()))
    assert report["referable"]["positive_index"] == 1 and "rarer class" not in capsys.readouterr().err
    monkeypatch.setattr(sys.modules[__name__], "LABELS", np.array([0, 1] * 30))  # a tie: neither is the rarer
    (tmp_path / "tie").mkdir()
    make_workdir(tmp_path / "tie", {"a": (0.5, 0.5), "b": (0.3, 0.6)}, incomplete=None)
    report = run_vote(tmp_path / "tie", methods=["soft"], n_boot=50, console=Console(file=io.StringIO()))
    err = capsys.readouterr().err
    assert report["referable"]["positive_index"] == 1 and "rarer" not in err and "equally common on val" in err


def test_a_model_giving_one_class_to_every_test_row_is_marked_and_never_bold(workdir: Path) -> None:
    from ensemble.report import ONE_CLASS, _best_per_metric, render_markdown

    report = run_vote(workdir, methods=["soft"], thresholds="off", n_boot=30, console=Console(file=io.StringIO()))
    assert report["one_class"] == []  # these members grade more than one class
    best = _best_per_metric(report)["accuracy"]
    marked = {**report, "one_class": sorted(best)}  # as if the best on accuracy gave every row the majority class
    assert not (set(_best_per_metric(marked)["accuracy"]) & best)
    md = render_markdown(marked)
    assert f"{ONE_CLASS}: gives every test row one class" in md
    test_table = md.split("## Test set")[1].split("\n## ")[0]
    rows = [line.split("|") for line in test_table.splitlines() if line.startswith("| ")]
    marked_rows = [cells for cells in rows if cells[1].strip().split(" ")[0] in best]
    assert marked_rows and all(ONE_CLASS in cells[1] and "**" not in cells[3] for cells in marked_rows)


def test_the_validation_table_marks_below_the_majority_and_one_class_by_the_test_tables_rules(tmp_path) -> None:
    """The test table had † and ‡, the validation table (where the choices are made) neither."""
    from ensemble.report import BELOW, ONE_CLASS

    root = make_workdir(tmp_path, {"a": (0.8, 0.3), "b": (0.0, 0.3), "c": (0.3, 0.3)}, incomplete=None)
    path = root / "members" / "c" / "val.npz"
    data = dict(np.load(path))
    data["probs"] = np.tile(np.array([0.6, 0.1, 0.1, 0.1, 0.1], np.float32), (len(data["labels"]), 1))
    save_npz(path, **data)  # c gives every val row grade 0
    path = root / "members" / "b" / "val.npz"
    data = dict(np.load(path))
    data["probs"] = _probs((data["labels"] + 1) % K, 0.6, seed=3)  # b is one grade off on every val row
    save_npz(path, **data)
    # b and c sit at chance on val although metrics.json says they learned: vote judges val.npz again and keeps
    # them only with keep_collapsed
    with pytest.raises(UserError, match="b, c collapsed"):
        run_vote(root, methods=["soft"], thresholds="off", n_boot=20, console=Console(file=io.StringIO()))
    report = run_vote(root, methods=["soft"], thresholds="off", n_boot=20, console=Console(file=io.StringIO()),
                      keep_collapsed=True)
    assert report["collapsed_kept"] == ["b", "c"]
    val = report["val"]
    base = val["baseline"]["accuracy"]
    below = [n for n, m in {**val["members"], **val["ensembles"]}.items() if m["accuracy"] < base]
    assert report["val_one_class"] == ["c"] and below
    assert report["val_below_baseline"]["members"] + report["val_below_baseline"]["ensembles"] == below
    md = (root / "ensemble" / "report.md").read_text()
    table = md.split("## Validation set")[1].split("\n## ")[0]
    labels = {line.split(" | ")[0][2:] for line in table.splitlines() if line.startswith("| ") and " | " in line}
    for name in [*val["members"], *val["ensembles"]]:
        shown = next(label for label in labels if label.split(" ")[0] == name)
        assert (BELOW in shown) == (name in below) and (ONE_CLASS in shown) == (name == "c"), shown
    assert (f"{BELOW}: val accuracy below the majority class's ({base:.3f}). {ONE_CLASS}: gives every val row one "
            "class, as the majority class does (c).") in table


def test_select_by_log_loss_minimises_and_names_the_metric(workdir: Path) -> None:
    report = run_vote(workdir, methods=["soft", "hard"], thresholds="off", select_by="log_loss", n_boot=50,
                      console=Console(file=io.StringIO()))
    val = report["val"]
    assert report["selection_metric"].startswith("log_loss")
    assert report["best_single"] == min(val["members"], key=lambda n: val["members"][n]["log_loss"])
    assert report["best_method"] == min(val["ensembles"], key=lambda n: val["ensembles"][n]["log_loss"])
    assert "chosen on val by log-loss" in report["verdict"] and "QWK" in report["verdict"]


def test_select_by_accuracy_and_unknown_metric(workdir: Path) -> None:
    report = run_vote(workdir, methods=["soft"], thresholds="off", select_by="accuracy", n_boot=50,
                      console=Console(file=io.StringIO()))
    acc = {n: v["accuracy"] for n, v in report["val"]["members"].items()}
    assert acc[report["best_single"]] == max(acc.values())
    with pytest.raises(UserError, match=r"select_by must be one of qwk, .*log_loss; got 'kappa'"):
        run_vote(workdir, select_by="kappa", console=Console(file=io.StringIO()))


def test_cli_select_by_choices_match_the_library() -> None:
    import cli
    from ensemble.vote import SELECT_BY

    assert tuple(m.value for m in cli.SelectBy) == SELECT_BY


def test_select_by_auc_breaks_the_thr_tie_by_accuracy(workdir: Path) -> None:
    report = run_vote(workdir, methods=["soft"], thresholds="on", select_by="auc", n_boot=50,
                      console=Console(file=io.StringIO()))
    val = report["val"]["ensembles"]
    assert val["soft"]["auc"] == val["soft+thr"]["auc"]  # same probabilities
    def key(name: str) -> tuple[float, float]:
        return val[name]["accuracy"], val[name]["macro_f1"]
    expected = "soft" if key("soft") >= key("soft+thr") else "soft+thr"
    assert report["best_method"] == expected
    assert report["selection_metric"] == "auc (ties: accuracy, then macro_f1), on val"


def test_cli_vote_select_by(workdir: Path) -> None:
    code, out, _err = run_cli("vote", "--workdir", workdir, "--method", "soft", "--bootstrap", "20",
                              "--select-by", "auc")
    assert code == 0
    report = json.loads((workdir / "ensemble" / "report.json").read_text())
    assert report["selection_metric"].startswith("auc") and "chosen on val by AUC" in report["verdict"]
    code, _out, err = run_cli("vote", "--workdir", workdir, "--select-by", "kappa")
    assert code == 2 and "kappa" in err  # typer names the bad choice and the valid ones


def _mark_collapsed(root: Path, name: str) -> None:
    path = root / "members" / name / "metrics.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "collapsed": True,
                                "collapse": {"reason": "every val prediction is grade 0"}}))


def test_collapsed_member_is_skipped_and_listed(tmp_path: Path, capsys) -> None:
    root = make_workdir(tmp_path, {"a": (0.8, 0.0), "b": (0.1, 0.7), "c": (0.05, 0.6)})
    _mark_collapsed(root, "b")
    console = Console(file=io.StringIO(), width=160)
    report = run_vote(root, methods=["soft"], thresholds="off", n_boot=20, console=console)
    assert list(report["members"]) == ["a", "c"]
    assert report["skipped"]["b"].startswith("collapsed: every val prediction is grade 0")
    assert "--keep-collapsed" in report["skipped"]["b"] and "metrics.json" in report["skipped"]["d"]
    assert json.loads((root / "ensemble" / "combiners" / "soft.json").read_text())["member_names"] == ["a", "c"]
    md = (root / "ensemble" / "report.md").read_text()
    assert "## Skipped" in md and "- b: collapsed: every val prediction is grade 0" in md
    assert "Skipped b: collapsed" in console.file.getvalue()
    assert "Skipping member 'b': collapsed" in capsys.readouterr().err
    kept = run_vote(root, methods=["soft"], thresholds="off", n_boot=20, keep_collapsed=True,
                    console=Console(file=io.StringIO()))
    assert list(kept["members"]) == ["a", "b", "c"] and "b" not in kept["skipped"]
    assert kept["collapsed_kept"] == ["b"]
    assert "Voting collapsed member 'b' anyway (--keep-collapsed): collapsed" in capsys.readouterr().err
    md = (root / "ensemble" / "report.md").read_text()
    assert "- **Collapsed members voted anyway** (`--keep-collapsed`): b: each predicts one class (or sits at chance) on the rows that judge it" in md
    assert "b (COLLAPSED, kept by --keep-collapsed)" in md and "a (COLLAPSED" not in md


def test_the_console_table_and_verdict_mark_a_collapsed_member_kept(tmp_path: Path) -> None:
    """Only stderr and report.md said "COLLAPSED, kept by --keep-collapsed": the console table showed the member as
    any other, and a verdict against it as the best single member did not say what it was compared with."""
    root = make_workdir(tmp_path, {"a": (0.8, 0.0), "b": (0.1, 0.7), "c": (0.05, 0.6)})
    _mark_collapsed(root, "a")
    console = Console(file=io.StringIO(), width=80)
    report = run_vote(root, methods=["soft"], thresholds="off", n_boot=20, keep_collapsed=True, console=console)
    assert report["collapsed_kept"] == ["a"] and report["best_single"] == "a"
    shown = console.file.getvalue()
    rows = [line.split() for line in shown.splitlines()]
    assert ["a", "*", "COLLAPSED"] in [row[:3] for row in rows] and not any(r[:2] == ["c", "COLLAPSED"] for r in rows)
    assert "COLLAPSED = a collapsed member (one class or chance on the rows that judged it), voted by --keep-collapsed" \
        in " ".join(shown.split())
    assert max(len(line) for line in shown.splitlines()) <= 80
    assert ("a, the best single member, is COLLAPSED (one class or chance on the rows that judged it; voted by "
            "--keep-collapsed)") in report["verdict"] and report["verdict"] in " ".join(shown.split())
    plain = run_vote(root, methods=["soft"], thresholds="off", n_boot=20, console=Console(file=io.StringIO()))
    assert "COLLAPSED" not in plain["verdict"]  # a left out: nothing to say


def test_too_few_members_after_collapse_is_one_sentence(tmp_path: Path) -> None:
    root = make_workdir(tmp_path, {"a": (0.8, 0.0), "b": (0.1, 0.7)}, incomplete=None)
    _mark_collapsed(root, "b")
    with pytest.raises(UserError, match=r"b collapsed .*only 1 remain \(a\).*--keep-collapsed"):
        run_vote(root, n_boot=20, console=Console(file=io.StringIO()))
    code, _out, err = run_cli("vote", "--workdir", root, "--bootstrap", "20")
    one_sentence_error(code, err, "b collapsed", "--keep-collapsed")
    code, _out, _err = run_cli("vote", "--workdir", root, "--bootstrap", "20", "--method", "soft", "--keep-collapsed")
    assert code == 0


def test_below_baseline_marked_in_json_md_and_table(tmp_path: Path, monkeypatch) -> None:
    # 12 of 20 val and test rows are grade 0: the majority class scores 0.6; a noise member falls below it.
    skewed = np.r_[np.zeros(12, int), np.arange(1, K), np.arange(1, K)]
    labels = np.r_[np.tile(np.arange(K), 4), skewed, skewed]
    monkeypatch.setattr(sys.modules[__name__], "LABELS", labels)
    root = make_workdir(tmp_path, {"a": (0.6, 0.9), "b": (0.3, 0.0)}, incomplete=None)
    console = Console(file=io.StringIO(), width=200)
    report = run_vote(root, methods=["soft"], thresholds="off", n_boot=20, console=console)
    base = report["baseline"]["accuracy"]["value"]
    below = report["below_baseline"]
    assert below["baseline"] == base and base == pytest.approx(0.6)
    expected = [n for n, m in report["members"].items() if m["accuracy"]["value"] < base]
    assert below["members"] == expected and "b" in expected and "a" not in expected
    assert below["ensembles"] == [n for n, m in report["ensembles"].items() if m["accuracy"]["value"] < base]
    md = (root / "ensemble" / "report.md").read_text()
    assert "| b † | member |" in md and "| a (best single) | member |" in md
    assert "b †" in console.file.getvalue()


def _fake_report(diff_ci: tuple[float, float], acc: tuple[float, float], base_acc: float = 0.7) -> dict:
    def entry(value: float) -> dict:
        return {"value": value, "ci": [value - 0.05, value + 0.05]}

    def model(qwk: float, accuracy: float) -> dict:
        return {"qwk": entry(qwk), "accuracy": entry(accuracy), "balanced_accuracy": entry(0.4)}

    return {"best_method": "stack", "best_single": "wide", "baseline_class": 0, "num_classes": 5, "ordinal": True,
            "ensembles": {"stack": model(0.55, acc[0])}, "members": {"wide": model(0.50, acc[1])},
            "baseline": {"qwk": entry(0.0), "accuracy": entry(base_acc), "balanced_accuracy": entry(0.2)},
            "difference": {"metrics": {"qwk": {"value": 0.05, "ci": list(diff_ci)}}},
            "significance": {"stack": {"vs": "wide", "mcnemar_p": 0.25, "method_only_correct": 7,
                                       "single_only_correct": 3}}}


def test_verdict_says_beat_only_when_the_ci_excludes_zero() -> None:
    from ensemble.vote import _outcome, _verdict

    wide = _fake_report((-0.02, 0.12), (0.75, 0.72))
    assert _outcome(wide, "qwk")["verdict"] == "no clear difference"
    text = _verdict(wide, "qwk")
    assert text.startswith("No clear difference between the best ensemble, stack")
    assert "beat" not in text and "which includes 0" in text
    narrow = _fake_report((0.01, 0.09), (0.75, 0.72))
    assert _outcome(narrow, "qwk")["verdict"] == "beat"
    text = _verdict(narrow, "qwk")
    assert text.startswith("The best ensemble, stack (chosen on val), beat the best single member, wide")
    assert "which excludes 0" in text and "neither is below the majority class on accuracy" in text
    worse = _fake_report((-0.09, -0.01), (0.75, 0.72))
    assert _outcome(worse, "qwk")["verdict"] == "worse" and "did worse than" in _verdict(worse, "qwk")


def test_verdict_compares_both_with_the_majority_class_and_gives_mcnemar_direction() -> None:
    from ensemble.vote import _verdict

    text = _verdict(_fake_report((0.01, 0.09), (0.62, 0.65), base_acc=0.7), "qwk")
    assert "both are below the majority class on accuracy" in text
    assert "accuracy 0.700, balanced accuracy 0.200" in text
    assert "7 test rows only the ensemble gets right vs 3 only the single member gets right, p = 0.25" in text
    single_row = _fake_report((0.01, 0.09), (0.75, 0.72))
    single_row["significance"]["stack"]["method_only_correct"] = 1
    assert "McNemar's exact test: 1 test row only the ensemble gets right vs 3" in _verdict(single_row, "qwk")
    one = _verdict(_fake_report((0.01, 0.09), (0.75, 0.65), base_acc=0.7), "qwk")
    assert "wide is below the majority class on accuracy" in one
    assert "in effect" not in one  # no same_grades figure (an older report): nothing said
    twin = _fake_report((0.0, 0.0), (0.75, 0.75))
    twin["significance"]["stack"].update(method_only_correct=0, single_only_correct=0, same_grades=1.0)
    assert ("stack gives every test row the grade wide gives it: on test it is that member in effect"
            in _verdict(twin, "qwk"))
    twin["significance"]["stack"]["same_grades"] = 0.99
    assert "in effect" not in _verdict(twin, "qwk")
    classes = {**twin, "num_classes": 2}  # two classes: classes, not grades
    classes["significance"]["stack"]["same_grades"] = 1.0
    assert "stack gives every test row the class wide gives it" in _verdict(classes, "qwk")



def test_the_verdict_names_another_metric_whose_paired_interval_excludes_zero(voted) -> None:
    """demo-data said "No difference can be claimed between soft and wide" on QWK while the paired table showed AUC
    -0.078 [-0.143, -0.008] and referable-DR AUC 0.696 vs 0.876: a metric whose paired CI excludes 0, either way,
    is named in one clause of the verdict's first sentence."""
    from ensemble.vote import _verdict

    def entry(value: float, lo: float, hi: float) -> dict:
        return {"value": value, "ci": [lo, hi]}

    wide = _fake_report((-0.18, 0.17), (0.767, 0.767))
    wide["difference"] = {"metrics": {"qwk": entry(-0.005, -0.185, 0.169), "accuracy": entry(0.0, -0.133, 0.133),
                                      "auc": entry(-0.078, -0.143, -0.008), "log_loss": entry(0.044, -0.004, 0.09)},
                          "referable_auc": entry(-0.18, -0.29, -0.097)}
    head = _verdict(wide, "qwk").split("; accuracy")[0]
    assert head.endswith("which includes 0), but stack ranks eyes worse (AUC -0.078 [-0.143, -0.008]) and tells "
                         "referable eyes apart worse (referable-DR AUC -0.180 [-0.290, -0.097])")
    assert "log-loss" not in head and "accuracy" not in head.split("which includes 0")[1]  # their CIs include 0
    wide["difference"]["metrics"]["log_loss"] = entry(0.0002, 0.0001, 0.0004)  # excludes 0, yet prints as +0.000
    assert "log-loss" not in _verdict(wide, "qwk").split("; accuracy")[0]  # "less probability (log-loss +0.000 …)"
    beat = _fake_report((0.01, 0.09), (0.75, 0.72))
    beat["difference"]["metrics"]["log_loss"] = entry(-0.127, -0.211, -0.044)  # lower is better: also ahead
    beat["difference"]["metrics"]["auc"] = entry(-0.05, -0.09, -0.01)
    head = _verdict(beat, "qwk").split("; accuracy")[0]
    assert head.endswith("which excludes 0), and stack also gives the true grade more probability (log-loss -0.127 "
                         "[-0.211, -0.044]), but stack ranks eyes worse (AUC -0.050 [-0.090, -0.010])")
    _, report, _ = voted  # a real vote: the referable-DR AUC difference is in report.json and report.md
    ref = report["difference"]["referable_auc"]
    assert ref["ci"][0] <= ref["value"] <= ref["ci"][1]
    a, b = (report["referable"][role]["auc"]["value"] for role in ("ensemble", "best_single"))
    assert ref["value"] == pytest.approx(a - b)
    root, _, _ = voted
    assert "| AUC of referable DR | " in (root / "ensemble" / "report.md").read_text()


def test_selection_lists_the_candidates_the_val_rows_cannot_tell_from_the_chosen(voted) -> None:
    """report.json ``selection``: every other candidate's val difference from the chosen member/method,
    with a paired-bootstrap CI; ``within_ci`` is exactly those whose CI includes 0."""
    from ensemble import stats
    from ensemble.member_set import load_members

    root, report, _ = voted
    sel = report["selection"]
    assert (sel["rows"], sel["protocol"], sel["metric"]) == (20, "val", "qwk")
    ms = load_members(root)
    for role, pool in (("best_single", "members"), ("best_method", "ensembles")):
        c, val = sel[role], report["val"][pool]
        assert c["name"] == report[role] and c["value"] == pytest.approx(val[c["name"]]["qwk"])
        assert set(c["others"]) == set(val) - {c["name"]} and c["candidates"] == len(val) - 1
        for other, d in c["others"].items():
            assert d["difference"] == pytest.approx(val[other]["qwk"] - val[c["name"]]["qwk"])
            assert d["ci"][0] <= d["difference"] <= d["ci"][1], other
        assert c["within_ci"] == sorted((o for o, d in c["others"].items() if d["ci"][0] <= 0 <= d["ci"][1]),
                                        key=lambda o: -c["others"][o]["difference"])
    # a hand check of one member difference: the same resamples (seed + 1) give the same interval
    indices = stats.bootstrap_indices(20, 200, 1, stratify=ms.val_labels)
    a, b = (ms.val_probs[ms.names.index(n)] for n in ("a", "b"))
    diff = (stats.bootstrap_samples(ms.val_labels, b, b.argmax(1), indices=indices)["qwk"]
            - stats.bootstrap_samples(ms.val_labels, a, a.argmax(1), indices=indices)["qwk"])
    expected = stats.percentile_interval(diff, sel["best_single"]["others"]["b"]["difference"])
    assert sel["best_single"]["others"]["b"]["ci"] == pytest.approx(expected)
    # "a" (val skill 0.8) is clearly ahead of "b" and "c" (0.1, 0.05) on these 20 rows
    assert sel["best_single"]["within_ci"] == [] and all(
        d["ci"][1] < 0 for d in sel["best_single"]["others"].values())


def test_verdict_says_when_the_rows_that_chose_cannot_tell_the_candidates_apart() -> None:
    from ensemble.vote import _verdict

    r = _fake_report((-0.02, 0.12), (0.75, 0.72))
    r["selection"] = {"rows": 112, "protocol": "val", "on": "val", "metric": "qwk",
                      "best_method": {"name": "stack", "candidates": 9, "within_ci": ["soft", "hard", "caruana", "weighted"]},
                      "best_single": {"name": "wide", "candidates": 3, "within_ci": []}}
    assert _verdict(r, "qwk").endswith(
        " On the 112 val rows that made the choices, stack is not clearly ahead of 4 of the other 9 combiners "
        "(soft, hard, caruana, …) (95 % paired-bootstrap CIs of the QWK differences include 0); k-fold members "
        "(`train-member --folds K`) let vote choose on every train+val row.")
    r["selection"].update(protocol="oof", rows=644)
    r["protocol"] = {"name": "oof", "rows": 644}
    assert _verdict(r, "qwk").startswith("No clear difference between the best ensemble, stack (chosen on the "
                                         "out-of-fold rows), and the best single member, wide (chosen on the "
                                         "out-of-fold rows by QWK), on test")
    r["selection"]["best_single"]["within_ci"] = ["deep"]
    assert _verdict(r, "qwk").endswith(
        " On the 644 out-of-fold train+val rows that made the choices, stack is not clearly ahead of 4 of the other "
        "9 combiners (soft, hard, caruana, …) and wide is not clearly ahead of 1 of the other 3 members (deep) "
        "(95 % paired-bootstrap CIs of the QWK differences include 0).")
    r["selection"]["best_method"]["within_ci"] = r["selection"]["best_single"]["within_ci"] = []
    assert "made the choices" not in _verdict(r, "qwk")
    del r["selection"]  # a report written before this section: nothing said
    assert "made the choices" not in _verdict(r, "qwk")

def test_mcnemar_direction_counts_match_a_hand_count(voted) -> None:
    root, report, _ = voted
    from ensemble.member_set import load_members
    from ensemble.combiners import load_combiner

    ms = load_members(root)
    labels = ms.test_labels
    single = ms.test_probs[ms.names.index(report["best_single"])].argmax(1)
    for method, s in report["significance"].items():
        pred = load_combiner(root / "ensemble" / "combiners" / f"{method}.json").predict(ms.test_probs)
        only_m = int(np.sum((pred == labels) & (single != labels)))
        only_s = int(np.sum((pred != labels) & (single == labels)))
        assert (s["method_only_correct"], s["single_only_correct"]) == (only_m, only_s), method
        assert s["direction"] == ("ensemble" if only_m > only_s else "single" if only_s > only_m else "even")
        assert s["same_grades"] == pytest.approx(float(np.mean(pred == single))), method
    out = report["outcome"]
    best = report["significance"][report["best_method"]]
    assert (out["ensemble_only_correct"], out["single_only_correct"]) == (best["method_only_correct"],
                                                                         best["single_only_correct"])
    n = out["ensemble_only_correct"]
    assert f"{n} test row{'' if n == 1 else 's'} only the ensemble gets right" in report["verdict"]
    md = (root / "ensemble" / "report.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith(f"| {report['best_method']} | {n} |"))
    assert row.endswith(f"| {best['same_grades']:.0%} of rows |")


# ---- referable DR and calibration -------------------------------------------------------
def test_referable_threshold_reaches_the_val_target_and_test_figures_match_a_hand_count(voted) -> None:
    from ensemble.combiners import load_combiner
    from ensemble.crossfit import cross_fit

    root, report, printed = voted
    ref = report["referable"]
    assert ref["applicable"] and ref["cut_grade"] == 2 and ref["sensitivity_target"] == 0.9
    ms = load_members(root)
    val_pos, test_pos = ms.val_labels >= 2, ms.test_labels >= 2
    assert (ref["test_positives"], ref["test_negatives"]) == (int(test_pos.sum()), int((~test_pos).sum()))
    best = report["best_method"]
    oof = cross_fit(best.removesuffix("+thr"), ms.val_probs, ms.val_labels, thresholds=best.endswith("+thr"))
    combiner = load_combiner(root / "ensemble" / "combiners" / f"{best}.json")
    j = ms.names.index(report["best_single"])
    for role, val_probs, test_probs in (("best_single", ms.val_probs[j], ms.test_probs[j]),
                                        ("ensemble", oof.probs, combiner.predict_proba(ms.test_probs))):
        r = ref[role]
        val_score = val_probs.astype(np.float64)[:, 2:].sum(1)
        test_score = test_probs.astype(np.float64)[:, 2:].sum(1)
        t, pos_scores = r["threshold"], val_score[val_pos]
        # the highest threshold that still reaches the target on val
        assert np.mean(pos_scores >= t) >= 0.9 and r["val_sensitivity"] == np.mean(pos_scores >= t)
        assert t in pos_scores and all(np.mean(pos_scores >= h) < 0.9 for h in pos_scores[pos_scores > t])
        tp = int(np.sum((test_score >= t) & test_pos))
        tn = int(np.sum((test_score < t) & ~test_pos))
        assert r["sensitivity"]["value"] == pytest.approx(tp / test_pos.sum())
        assert r["specificity"]["value"] == pytest.approx(tn / (~test_pos).sum())
        lo, hi = r["sensitivity"]["ci"]
        assert lo <= r["sensitivity"]["value"] <= hi
        assert set(r["per_grade"]) == {str(g) for g in range(K)}
        assert r["per_grade"]["3"]["referred"] == pytest.approx(np.mean(test_score[ms.test_labels == 3] >= t))
        from ensemble.stats import exact_interval

        assert r["sensitivity"]["ci"] == pytest.approx(exact_interval(tp, int(test_pos.sum())))
        grade = (test_probs.argmax(1) if role == "best_single" else combiner.predict(ms.test_probs)) >= 2
        g = r["by_grade"]  # the model's own grades, the decision predict's class column implies
        assert g["referred"] == int(grade.sum())
        assert g["sensitivity"]["value"] == pytest.approx(np.mean(grade[test_pos]))
        assert g["specificity"]["value"] == pytest.approx(np.mean(~grade[~test_pos]))
    assert (root / "ensemble" / "roc.png").read_bytes()[:4] == b"\x89PNG"
    assert (root / "ensemble" / "calibration.png").read_bytes()[:4] == b"\x89PNG"
    md = (root / "ensemble" / "report.md").read_text()
    assert "## Referable DR" in md and "## Calibration" in md and "## Glossary" in md and "Yule's Q" in md
    assert "Referable DR (grade >= 2)" in printed
    # the clinical answer comes first: at a glance, then the referable section right after the test table
    assert md.index("## At a glance") < md.index("## Setup") < md.index("## Referable DR") < md.index("## Validation")
    glance = md[md.index("## At a glance"):md.index("## Setup")]
    assert f"Test set: {report['test_size']} images" in glance and "Referable DR (grade >= 2" in glance
    assert "by its grades" in glance and "Synthetic demo data" not in glance  # make_workdir's data are not demo-data's
    assert report["data"]["synthetic"] is False


def test_referable_skipped_for_nominal_classes_and_bad_cut(workdir: Path) -> None:
    meta = json.loads((workdir / "dataset.json").read_text())
    (workdir / "dataset.json").write_text(json.dumps({**meta, "ordinal": False}))
    report = run_vote(workdir, methods=["soft"], thresholds="off", n_boot=20, console=Console(file=io.StringIO()))
    assert report["referable"]["applicable"] is False and "ordinal: false" in report["referable"]["note"]
    assert not (workdir / "ensemble" / "roc.png").exists()
    md = (workdir / "ensemble" / "report.md").read_text()
    # not a grading task: no DR section, no DR words, no QWK column (it depends on an arbitrary class order)
    assert "Referable DR" not in md and "referable DR" not in md and "Kaggle DR" not in md
    assert "| model | kind | acc | bal-acc | macro-F1 | AUC | log-loss | ECE |" in md
    assert "QWK" not in md.split("## Glossary")[0].replace("QWK assumes", "")
    assert "Referral to a human reader for review" in md and " eyes" not in md
    assert "macro-F1 (ties: balanced accuracy)" in md  # readable names in the Setup
    (workdir / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match=r"--referable-grade must be a grade between 1 and 4.*got 5"):
        run_vote(workdir, referable_grade=5, n_boot=20, console=Console(file=io.StringIO()))


def test_vote_calibrate_temperature(tmp_path: Path) -> None:
    from ensemble.combiners import Calibrated, load_combiner

    # over-confident members: sharpened probabilities of moderate skill
    root = make_workdir(tmp_path, {"a": (0.5, 0.5), "b": (0.4, 0.4), "c": (0.3, 0.3)}, incomplete=None)
    rng = np.random.default_rng(5)
    for name in ("a", "b", "c"):
        for s in ("val", "test"):
            path = root / "members" / name / f"{s}.npz"
            data = dict(np.load(path))
            z = 5.0 * (rng.normal(size=data["probs"].shape) + 1.2 * np.eye(K)[data["labels"]])  # right ~60 %, too sure
            e = np.exp(z - z.max(axis=1, keepdims=True))
            data["probs"] = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
            save_npz(path, **data)
    plain = run_vote(root, methods=["soft"], thresholds="off", n_boot=20, console=Console(file=io.StringIO()))
    assert plain["calibration"]["method"] == "none"
    console = Console(file=io.StringIO(), width=200)
    report = run_vote(root, methods=["soft"], thresholds="off", n_boot=20, calibrate="temperature", console=console)
    cal = report["calibration"]
    assert cal["method"] == "temperature"
    for name, m in cal["members"].items():
        assert m["temperature"] > 1  # over-confident: softened
        assert m["val"]["log_loss"]["after"] < m["val"]["log_loss"]["before"]
        assert report["members"][name]["accuracy"] == plain["members"][name]["accuracy"]
    ens = cal["ensemble"]
    assert ens["method"] == "soft" and ens["test"]["log_loss"]["before"] == pytest.approx(
        plain["ensembles"]["soft"]["log_loss"]["value"])
    assert ens["test"]["log_loss"]["after"] == pytest.approx(report["ensembles"]["soft"]["log_loss"]["value"])
    saved = load_combiner(root / "ensemble" / "combiners" / "soft.json")
    assert isinstance(saved, Calibrated) and saved.output_.temperature_ == ens["output_temperature"]
    ms = load_members(root)
    np.testing.assert_allclose(saved.predict_proba(ms.test_probs)[:, 2:].sum(1) >= 0, True)
    md = (root / "ensemble" / "report.md").read_text()
    assert "Temperature scaling, fitted on val" in md and "→" in md
    assert "Calibration (temperature, fitted on val (20 rows)): soft test log-loss" in console.file.getvalue()
    assert cal["fitted_on"] == "val (20 rows); never test"
    with pytest.raises(UserError, match="calibrate must be one of none, temperature; got 'platt'"):
        run_vote(root, calibrate="platt", console=Console(file=io.StringIO()))


def test_referral_refers_rows_no_member_agrees_with_and_keeps_the_val_coverage() -> None:
    """A grade only the combination gives (members say 0 and 4, the ensemble 2) is referred whatever its confidence."""
    from types import SimpleNamespace

    from ensemble.vote import Predictions, _referral

    k, n = 5, 40
    y = np.arange(n) % k
    one_hot = np.eye(k)
    members = np.stack([one_hot[y], one_hot[y]])  # both members right ...
    members[0, :8], members[1, :8] = one_hot[0], one_hot[4]  # ... except 8 rows where they say 0 and 4
    ens_pred = y.copy()
    ens_pred[:8] = 2  # the ensemble's expected grade there: a grade neither member gives
    conf = np.linspace(0.99, 0.6, n)  # the contested rows are the most confident ones
    probs = np.full((n, k), 0.0)
    probs[np.arange(n), ens_pred] = conf
    probs += (1 - probs.sum(axis=1, keepdims=True)) / k
    ms = SimpleNamespace(val_probs=members, test_probs=members, test_labels=y)
    best = Predictions(probs, ens_pred, probs, ens_pred)
    ref = _referral(ms, best, 0.75)
    assert ref["refer_without_agreement"] and ref["val_without_agreement"] == ref["test_without_agreement"] == 8
    label_prob = probs[np.arange(n), ens_pred]
    kept = (label_prob >= ref["threshold"]) & (np.arange(n) >= 8)
    assert kept.sum() == 30 and ref["val_coverage"] == pytest.approx(0.75)  # 30 of 40 kept: the 75 % target
    assert ref["test_referred"] == 10 and ref["test_coverage"] == pytest.approx(kept.mean())
    assert ref["test_accuracy_kept"] == 1.0  # the contested rows are all wrong, and all referred


def test_the_review_section_counts_rows_beside_the_majority_class_and_warns_of_a_threshold_below_one_in_k(
        voted, tmp_path) -> None:
    """EyePACS-512 gave "accuracy on the kept rows 0.752" (the majority class's own) with no counts, and a rule
    that graded an eye automatically at 4 % probability of its grade without a word."""
    from types import SimpleNamespace

    from ensemble.report import summary_lines, write_report
    from ensemble.vote import Predictions, _referral

    root, report, _ = voted
    ref = report["referral"]
    assert ref["test_kept"] + ref["test_referred"] == report["test_size"]
    assert ref["test_kept_right"] == round(ref["test_accuracy_kept"] * ref["test_kept"])
    assert ref["majority_class"] == report["baseline_class"] and 0 <= ref["test_majority_kept"] <= 1
    md = (root / "ensemble" / "report.md").read_text()
    assert (f"On the {ref['test_kept']} kept eyes: accuracy {ref['test_accuracy_kept']:.3f} ({ref['test_kept_right']} "
            f"right), balanced accuracy {ref['test_balanced_accuracy_kept']:.3f}; always answering grade "
            f"{report['baseline_class']} would score {ref['test_majority_kept']:.3f} on them") in md
    assert "| coverage | eyes kept | accuracy | balanced accuracy | always grade 0 (accuracy) | threshold |" in md
    assert "**Warning:** the confidence threshold" not in md  # argmax grades: never below 1/k
    # a +thr-like grade the ensemble gives 4 % probability: the threshold falls under 1/5 and the report says so
    k, n = 5, 40
    y = np.arange(n) % k
    probs = np.full((n, k), 0.01)
    probs[:, 0] = 0.96
    probs[np.arange(n), y] += 0.03 * (y > 0)
    probs /= probs.sum(axis=1, keepdims=True)
    members = np.stack([np.eye(k)[y], np.eye(k)[y]])
    ms = SimpleNamespace(val_probs=members, test_probs=members, val_labels=y, test_labels=y, num_classes=k,
                         ordinal=True)
    low = _referral(ms, Predictions(probs, y, probs, y), 0.9)
    assert low["threshold"] < 1 / k and low["test_majority_kept"] is not None
    assert low["warning"].startswith(f"the confidence threshold, {low['threshold']:.4g}, is below 1/5 = 0.200")
    assert "80% of its val grades are not its most probable one" in low["warning"]
    from members.scoring import nan_to_none

    shown = {**report, "referral": nan_to_none(low)}
    write_report(tmp_path, shown)
    assert f"**Warning:** {low['warning']}" in (tmp_path / "report.md").read_text()
    assert any(line.startswith("WARNING (review referral") for line in summary_lines(shown))


@pytest.mark.parametrize("kind,k,cut", [("positive_class", 2, 1), ("positive_class", 2, 0), ("referable_dr", 5, 2)])
def test_the_referral_figures_count_the_rows_predict_refers(kind, k, cut) -> None:
    """report.json referral (coverage, rows referred, kept and referred accuracy) is what predict's refer column
    gives on the same rows: low confidence, no member agreeing, and a class the summary call contradicts (a
    QA vote reported 21 test rows referred where predict referred 64)."""
    from types import SimpleNamespace

    from ensemble.combiners import make_combiner
    from ensemble.inference import Ensemble, _combine
    from ensemble.vote import Predictions, _referral, call_rule

    rng = np.random.default_rng(7)
    n = 80
    labels = {s: rng.integers(0, k, n) for s in ("val", "test")}
    probs = {s: np.stack([_noisy(labels[s], k, 0.3, seed) for seed in (1, 2, 3)]) for s in ("val", "test")}
    soft = make_combiner("soft").fit(probs["val"], labels["val"], member_names=["a", "b", "c"])
    out = {s: (soft.predict_proba(probs[s]), soft.predict(probs[s])) for s in ("val", "test")}
    best = Predictions(*out["val"], *out["test"])
    summary = {"applicable": True, "kind": kind, "cut_grade": 1 if kind == "positive_class" else cut,
               "positive_index": cut, "positive_class": str(cut), "ensemble": {"name": "soft", "threshold": 0.45}}
    ms = SimpleNamespace(val_probs=probs["val"], test_probs=probs["test"], test_labels=labels["test"],
                         num_classes=k, ordinal=True)
    ref = _referral(ms, best, 0.9, call=call_rule(summary))
    assert ref["refer_call_conflicts"] and ref["test_call_conflicts"] > 0  # the case the old figures left out
    for split in ("val", "test"):
        ens = Ensemble(Path("."), "soft", soft, [], ref["threshold"], "", [str(c) for c in range(k)], True,
                       cut, 0.45, "", kind)
        refer = _combine(ens, [f"{i}.png" for i in range(n)], probs[split].astype(np.float64), {}).review
        if split == "val":
            assert ref["val_coverage"] == pytest.approx(1 - refer.mean())
            continue
        right = out["test"][1] == labels["test"]
        assert ref["test_referred"] == int(refer.sum()) and ref["test_coverage"] == pytest.approx(1 - refer.mean())
        assert ref["test_accuracy_kept"] == pytest.approx(right[~refer].mean())
        assert ref["test_accuracy_referred"] == pytest.approx(right[refer].mean())


def test_the_referral_section_says_a_contradicted_call_is_referred_too() -> None:
    from ensemble.report import _referral_md

    ref = {"confidence": "ensemble probability of its predicted class", "threshold": 0.5, "target_coverage": 0.9,
           "refer_without_agreement": True, "refer_call_conflicts": True, "val_without_agreement": 0,
           "test_without_agreement": 1, "val_call_conflicts": 4, "test_call_conflicts": 7, "val_coverage": 0.9,
           "test_coverage": 0.5, "test_referred": 10, "test_accuracy_kept": 0.8, "test_accuracy_referred": 0.4,
           "test_accuracy_all": 0.6, "test_curve": {"coverage": [1.0], "accuracy": [0.6], "threshold": [0.5]}}
    report = {"classes": ["healthy", "sick"], "referable": {"applicable": True, "kind": "positive_class",
                                                            "positive_class": "sick", "positive_index": 1}}
    text = "\n".join(_referral_md(ref, "val", 20, dr=False, report=report))
    assert "and rows where its class and the sick call disagree" in text and "4 on val, 7 on test" in text
    assert "(10 test images sent for review, 10 classified automatically)" in text
    assert "those whose call disagrees are not set apart here" in text


def _noisy(labels: np.ndarray, k: int, skill: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = (1 - skill) * rng.dirichlet(np.ones(k), size=len(labels)) + skill * np.eye(k)[labels]
    return p / p.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("calibrate", ["none", "temperature"])
def test_a_combiners_ece_judges_the_labels_it_reports(tmp_path: Path, calibrate: str) -> None:
    """A hard vote breaks a 1-1-1 tie by summed probability and a +thr method cuts the expected grade: their ECE
    (the table, the calibration section) is of those labels, as their accuracy is, not of argmax(probs) (a QA
    vote showed a hard vote's accuracy 0.658 beside the ECE 0.300 of other labels; its own labels' was 0.217)."""
    from ensemble.combiners import load_combiner

    root = make_workdir(tmp_path, {"a": (0.3, 0.3), "b": (0.2, 0.25), "c": (0.25, 0.2)}, incomplete=None)
    report = run_vote(root, methods=["hard", "soft+thr"], n_boot=50, calibrate=calibrate,
                      console=Console(file=io.StringIO()))
    ms = load_members(root)
    for name in ("hard", "soft+thr"):
        combiner = load_combiner(root / "ensemble" / "combiners" / f"{name}.json")
        probs, pred = combiner.predict_proba(ms.test_probs), combiner.predict(ms.test_probs)
        assert (pred != probs.argmax(axis=1)).any(), name  # the case: labels other than the argmax
        conf, hit = probs[np.arange(len(pred)), pred], (pred == ms.test_labels).astype(float)
        bins = np.clip(np.ceil(conf * 15).astype(int) - 1, 0, 14)  # ECE's 15 bins (lo, hi]
        ece = sum(abs(hit[bins == b].sum() - conf[bins == b].sum()) for b in range(15)) / len(pred)
        assert report["ensembles"][name]["accuracy"]["value"] == pytest.approx(hit.mean())
        assert report["ensembles"][name]["ece"]["value"] == pytest.approx(ece), name
    if calibrate == "temperature":
        best = report["best_method"]
        assert report["calibration"]["ensemble"]["test"]["ece"]["after"] == pytest.approx(
            report["ensembles"][best]["ece"]["value"])


def test_a_class_missing_from_val_is_warned_about_and_the_baseline_is_smoothed(tmp_path: Path, monkeypatch,
                                                                                capsys) -> None:
    """Val without grade 4 (train and test have it): the baseline gave it probability 0 (its test log-loss then
    rested on clipped rows) and stack never predicts it, with no word; now add-one frequencies and one sentence."""
    labels = LABELS.copy()
    labels[20:40][labels[20:40] == 4] = 3  # val: 4 rows each of grades 0-2, 8 of grade 3, none of grade 4
    monkeypatch.setattr(sys.modules[__name__], "LABELS", labels)
    root = make_workdir(tmp_path, {"a": (0.5, 0.5), "b": (0.4, 0.4)}, incomplete=None)
    report = run_vote(root, methods=["soft", "stack"], thresholds="off", n_boot=50, console=Console(file=io.StringIO()))
    err = capsys.readouterr().err
    assert ("Warning: the val rows hold no row of grade 4, which test and train have: the combiners are fitted on "
            "those rows and cannot learn it (stack gives it a probability near 0 and never predicts it;") in err
    assert report["val_missing_classes"] == [4]
    freq = (np.array([4, 4, 4, 8, 0]) + 1) / (20 + 5)  # (count + 1) / (rows + classes)
    want = -np.mean(np.log(freq[labels[40:]]))
    assert report["baseline"]["log_loss"]["value"] == pytest.approx(want) and report["baseline_class"] == 3
    md = (root / "ensemble" / "report.md").read_text()
    assert "add-one (Laplace) smoothed" in md and "**The val rows hold no row of grade 4**" in md


def test_a_grade_with_no_test_row_is_named_and_the_glossary_says_present_grades(tmp_path: Path, monkeypatch) -> None:
    """Test without grade 3: balanced accuracy averages over the 4 grades present (always answering grade 0 scores
    0.25, not 1/5), which the glossary said it did not, and no caution named the empty grade."""
    from ensemble.vote import _thin_test_words

    labels = LABELS.copy()
    labels[40:60][labels[40:60] == 3] = 0
    monkeypatch.setattr(sys.modules[__name__], "LABELS", labels)
    root = make_workdir(tmp_path, {"a": (0.5, 0.5), "b": (0.4, 0.4)}, incomplete=None)
    report = run_vote(root, methods=["soft"], thresholds="off", n_boot=50, console=Console(file=io.StringIO()))
    assert report["baseline"]["balanced_accuracy"]["value"] == pytest.approx(0.25)
    assert report["bootstrap"]["few_row_classes"] == {"3": 0}
    caution = ("Caution: grade 3 has no test row: balanced accuracy, macro-F1 and AUC average over the 4 grades "
               "present (always answering one grade scores 1/4 on balanced accuracy, not 1/5), and no figure above "
               "measures it.")
    assert caution in report["verdict"]
    md = (root / "ensemble" / "report.md").read_text()
    assert caution in md and "scores 1/k with k the grades present" in md
    assert "the mean over the grades present in the split, one against the rest" in md
    # beside another caution (a grade held by one patient, as in the QA's workdir) it is said too
    r = {**report, "bootstrap": {**report["bootstrap"], "single_patient_classes": [4], "few_row_classes": {"3": 0}}}
    words = _thin_test_words(r)
    assert "grade 4, with a single test patient" in words and caution in words


def test_the_consoles_compact_interval_always_holds_the_value_printed_above_it() -> None:
    """The console wrote 0.075 over .07–.07 and 0.343 over .34–.34: bounds rounded to nearest, not outward."""
    from ensemble.report import _num, _short

    assert (_short(0.0705, "lo"), _short(0.0746, "hi")) == (".07", ".08")  # 0.075 over .07–.08
    assert (_short(0.3411, "lo"), _short(0.3434, "hi")) == (".34", ".35")

    def number(text: str) -> float:
        return 0.995 if text == ">.99" else float(text.replace("> ", "").replace("−", "-"))

    rng = np.random.default_rng(0)
    for _ in range(2000):
        value = float(rng.choice([rng.uniform(-1, 1), rng.uniform(0.95, 1.0), rng.uniform(0, 8)]))
        lo, hi = value - float(rng.uniform(0, 0.02)), value + float(rng.uniform(0, 0.02))
        shown = number(_num(value))
        low, high = _short(lo, "lo"), _short(hi, "hi")
        assert number(low) <= shown + 1e-12, (value, lo, low)
        assert high == ">.99" or high == "1" or shown <= number(high) + 1e-12, (value, hi, high)


def test_an_operating_point_that_refers_every_eye_is_called_out() -> None:
    from ensemble import stats
    from ensemble.referable import operating_point
    from ensemble.report import summary_lines

    y = np.repeat(np.arange(5), [60, 10, 20, 5, 5])
    good = np.eye(5)[y] * 0.8 + 0.04  # rows sum to 1; the true grade gets 0.84
    bad = good[:, ::-1].copy()  # referable eyes get the lowest P(grade >= 2): 90 % sensitivity means referring all
    idx = stats.bootstrap_indices(len(y), 50, 0, stratify=y)
    test = (good, y, good.argmax(1))
    fine = operating_point("good", (good, y), test, cut=2, target=0.9, indices=idx)
    flat = operating_point("bad", (bad, y), test, cut=2, target=0.9, indices=idx)
    assert "warning" not in fine and fine["val_specificity"] == 1.0
    assert flat["val_specificity"] <= 0.05
    assert flat["warning"].startswith("bad reaches 90% sensitivity on val only by referring 100% of the val eyes below grade 2")
    ref = {"applicable": True, "positive": "grade >= 2", "sensitivity_target": 0.9, "best_single": fine, "ensemble": flat}
    lines = summary_lines({"referable": ref, "skipped": {}})
    assert sum(line.startswith("WARNING: bad reaches") for line in lines) == 1


def test_an_operating_point_that_refers_every_test_eye_is_called_out() -> None:
    """Chosen on val where it separates, the threshold refers every test eye: said, not printed as a result."""
    from ensemble import stats
    from ensemble.referable import operating_point

    y = np.repeat(np.arange(5), [60, 10, 20, 5, 5])
    val = np.eye(5)[y] * 0.8 + 0.04
    test = np.tile([0.0, 0.0, 0.0, 0.0, 1.0], (len(y), 1))  # every test eye: P(grade >= 2) = 1, above the val threshold 0.92
    idx = stats.bootstrap_indices(len(y), 50, 0, stratify=y)
    point = operating_point("drift", (val, y), (test, y, test.argmax(1)), cut=2, target=0.9, indices=idx)
    assert point["val_specificity"] == 1.0 and point["specificity"]["value"] == 0.0
    assert point["test_referred"] == len(y)
    assert point["warning"].startswith("drift referred 100% of the test eyes below grade 2 at its val-chosen threshold "
                                       "(val specificity 1.00)")


def test_a_test_class_with_one_row_is_said_to_make_the_intervals_too_narrow(tmp_path, monkeypatch, voted) -> None:
    import tests.test_vote as this

    labels = LABELS.copy()
    test_rows = np.flatnonzero(np.array(SPLIT) == "test")
    last = test_rows[labels[test_rows] == K - 1]
    labels[last[1:]] = 0  # class K-1 keeps a single test row
    monkeypatch.setattr(this, "LABELS", labels)
    root = make_workdir(tmp_path, {"a": (0.8, 0.3), "b": (0.6, 0.5)}, incomplete=None)
    report = run_vote(root, n_boot=50, console=Console(file=io.StringIO()))
    assert report["bootstrap"]["single_row_classes"] == [K - 1]
    assert report["verdict"].endswith(
        f"Caution: the test split has 1 class(es) with a single row ({K - 1}), which a bootstrap stratified by class "
        "never varies, so the intervals above are narrower than the real uncertainty (zero-wide when every class has "
        "one row) and neither a 'beat' nor a difference above should be trusted; prepare a larger test split (at "
        "least 50 rows and 3 per class: --test-fraction, or more images).")
    _, balanced, _ = voted
    assert balanced["bootstrap"]["single_row_classes"] == [] and "single row" not in balanced["verdict"]
    # 20 test rows, 4 per class: no single row, but too few rows for any interval to be trusted
    assert balanced["bootstrap"]["test_rows"] == 20 and balanced["bootstrap"]["few_row_classes"] == {}
    assert balanced["verdict"].endswith(
        "Caution: these figures rest on 20 test rows: bootstrap intervals from so few rows are narrower than the real "
        "uncertainty, so neither a 'beat' nor a difference above should be trusted; prepare a larger test split (at "
        "least 50 rows and 3 per class: --test-fraction, or more images).")


def test_no_caution_on_a_test_split_large_enough() -> None:
    from ensemble.vote import _thin_test_words

    assert _thin_test_words({"bootstrap": {"single_row_classes": [], "few_row_classes": {}, "test_rows": 113}}) == ""
    two = _thin_test_words({"bootstrap": {"single_row_classes": [], "few_row_classes": {"4": 2}, "test_rows": 113}})
    assert two.startswith(" Caution: these figures rest on 113 test rows; class 4 has 2:")
    assert _thin_test_words({"bootstrap": {}}) == ""  # a report written before these keys


def test_a_temperature_at_the_end_of_its_range_is_warned(capsys) -> None:
    from ensemble.calibration import at_bound, warn_at_bound
    from ensemble.combiners.temperature import TemperatureScaling

    y = np.array([0, 1, 2] * 4)
    right = np.full((12, 3), 0.2)
    right[np.arange(12), y] = 0.6  # always right, never sure: sharpening without limit lowers the log-loss
    sharp = TemperatureScaling().fit(right, y)
    assert sharp.temperature_ == pytest.approx(0.05, rel=1e-3) and at_bound(sharp)
    y5 = np.tile(np.arange(K), 8)
    mild = TemperatureScaling().fit(_probs(y5, 0.1, seed=2), y5)
    assert 0.5 < mild.temperature_ < 5 and not at_bound(mild)
    assert warn_at_bound([("a", sharp), ("b", mild)], 12) == ["a"]
    err = " ".join(capsys.readouterr().err.split())
    assert "Warning: the calibration temperature of a (T 0.05) sits at the end of its search range" in err
    assert "the 12 rows it was fitted on are too few" in err and " b (" not in err


def test_a_methods_output_temperature_at_its_bound_is_warned_too(tmp_path, monkeypatch) -> None:
    """Members' temperatures at 0.05 or 20 were warned about, a method's output temperature never: the hard vote of
    members always right on val got T 0.05 (near one-hot shares) and the report said '(better)'."""
    root = make_workdir(tmp_path, {"a": (0.9, 0.9), "b": (0.9, 0.9), "c": (0.9, 0.9)}, incomplete=None)
    for name in ("a", "b", "c"):
        for s in ("val", "test"):
            path = root / "members" / name / f"{s}.npz"
            data = dict(np.load(path))
            probs = np.full(data["probs"].shape, 0.1)
            probs[np.arange(len(probs)), data["labels"]] = 0.6  # always right on val, never sure
            data["probs"] = (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)
            save_npz(path, **data)
    from ensemble import calibration

    judged, real = [], calibration.warn_at_bound
    monkeypatch.setattr(calibration, "warn_at_bound", lambda fitted, rows: judged.append([n for n, _ in fitted])
                        or real(fitted, rows))
    report = run_vote(root, methods=["hard", "soft"], thresholds="off", n_boot=20, calibrate="temperature",
                      console=Console(file=io.StringIO()))
    assert judged[-1] == ["hard", "soft"]  # after the members' own temperatures, each method's output one
    assert report["calibration"]["ensemble"]["output_temperature"] > 0


def test_a_workdir_of_demo_data_is_named_synthetic(tmp_path) -> None:
    from ensemble.report import _data_lines, _glance_md
    from ensemble.vote import _data_words
    from members.data.dataset import prepare_csv
    from members.data.synthetic import write_demo_data

    data = write_demo_data(tmp_path / "d", images=40, size=16, seed=1, balanced=True, progress=False).out
    prepare_csv(tmp_path / "w", data / "trainLabels.csv", data / "images", progress=False)
    words = _data_words(tmp_path / "w")
    assert words["synthetic"] is True and words["source"].endswith("trainLabels.csv")
    report = {"data": words, "test_size": 6}
    assert "not photographs of real eyes" in _data_lines(report)[0]
    assert any("**Synthetic demo data**" in line for line in _glance_md(report))
    info = json.loads((tmp_path / "w" / "dataset.json").read_text())
    assert info["synthetic"] is True  # recorded by prepare: moving the data folder later keeps the banner
    moved = data.rename(tmp_path / "moved")
    assert _data_words(tmp_path / "w")["synthetic"] is True
    (tmp_path / "w" / "dataset.json").write_text(json.dumps({k: v for k, v in info.items() if k != "synthetic"}))
    assert _data_words(tmp_path / "w")["synthetic"] is False  # prepared before: judged by the folder it names
    moved.rename(data)
    assert _data_words(tmp_path / "w")["synthetic"] is True
    (data / "demo-data.json").unlink()  # the same files without demo-data's record: taken as real
    prepare_csv(tmp_path / "w2", data / "trainLabels.csv", data / "images", progress=False)
    assert _data_words(tmp_path / "w2")["synthetic"] is False


def test_the_report_opens_with_the_data_it_rests_on(tmp_path) -> None:
    """The report never said how many images and patients, of which grades, in which split, nor which model
    predict uses; and "unlike all of the 400 training and validation images" was a sample of 400 of 644."""
    from ensemble.report import _screen_md, render_markdown
    from ensemble.vote import _data_words
    from members.data.dataset import prepare_csv
    from members.data.synthetic import write_demo_data

    data = write_demo_data(tmp_path / "d", images=40, size=16, seed=1, balanced=True, progress=False).out
    prepare_csv(tmp_path / "w", data / "trainLabels.csv", data / "images", progress=False)
    words = _data_words(tmp_path / "w")
    split = (tmp_path / "w" / "split.csv").read_text().splitlines()[1:]
    assert words["images"] == len(split) == sum(part["images"] for part in words["splits"].values())
    assert words["patients"] == len({line.split(",")[3] for line in split})
    test = [line.split(",") for line in split if line.split(",")[2] == "test"]
    assert words["splits"]["test"]["classes"] == {str(c): sum(int(row[1]) == c for row in test) for c in range(5)}
    assert words["splits"]["test"]["patients"] == len({row[3] for row in test})

    (tmp_path / "v").mkdir()
    voted = run_vote(make_workdir(tmp_path / "v", {"a": (0.8, 0.3), "b": (0.4, 0.3)}, incomplete=None),
                     methods=["soft"], n_boot=20, console=Console(file=io.StringIO()))
    report = {**voted, "data": words}
    md = render_markdown(report)
    assert md.index("## Data") < md.index("## At a glance") < md.index("## Setup")
    section = md.split("## Data")[1].split("## At a glance")[0]
    assert f"- {words['images']} images of {words['patients']} patients (grouped by patient" in section
    assert "| split | images | patients | grade 0 | grade 1 | grade 2 | grade 3 | grade 4 |" in section
    test_counts = " | ".join(str(n) for n in words["splits"]["test"]["classes"].values())
    assert f"| test | {len(test)} | {words['splits']['test']['patients']} | {test_counts} |" in section
    assert (f"- `predict` grades new images with the best ensemble, {voted['best_method']} "
            f"(`ensemble/combiners/{voted['best_method']}.json`, over a, b)") in section
    assert "(`dataset.json` `source`)" in section and "not photographs of real eyes" in section
    sample = _screen_md({"screen": True, "images": 400, "listed": 644, "source": "training and validation"})
    assert "looks unlike a sample of 400 of the 644 training and validation images (" in sample[1]
    every = _screen_md({"screen": True, "images": 30, "listed": 30, "source": "training and validation"})
    assert "looks unlike all of the 30 training and validation images read here" in every[1]


def test_a_split_grouped_by_patient_is_bootstrapped_by_patient(tmp_path: Path) -> None:
    # Rows 2i and 2i+1 are one patient's two eyes (neighbouring grades: LABELS cycles 0..4); the test split
    # (rows 40..59) holds 10 patients.
    skills = {"a": (0.8, 0.1), "b": (0.4, 0.15), "c": (0.3, 0.2)}
    (tmp_path / "plain").mkdir(), (tmp_path / "grouped").mkdir()
    quiet = Console(file=io.StringIO())
    plain = run_vote(make_workdir(tmp_path / "plain", skills, incomplete=None), methods=["soft", "weighted"], n_boot=200,
                     console=quiet)
    grouped_root = make_workdir(tmp_path / "grouped", skills, incomplete=None,
                                groups=[f"p{i // 2}" for i in range(len(SPLIT))])
    grouped = run_vote(grouped_root, methods=["soft", "weighted"], n_boot=200, console=quiet)
    assert plain["bootstrap"]["clustered"] is False and "not grouped by patient" in plain["bootstrap"]["note"]
    assert grouped["bootstrap"]["clustered"] is True and grouped["bootstrap"]["patients"] == 10
    assert "10 test patients (20 rows)" in grouped["bootstrap"]["note"]
    # Same predictions, same point values; other resamples, so other intervals.
    for name in skills:
        for metric in ("accuracy", "qwk"):
            assert grouped["members"][name][metric]["value"] == plain["members"][name][metric]["value"]
    assert grouped["members"]["a"]["accuracy"]["ci"] != plain["members"]["a"]["accuracy"]["ci"]
    md = (grouped_root / "ensemble" / "report.md").read_text()
    assert "whole patients are drawn" in md and "10 test patients" in md
    # McNemar too: each patient's wins and losses summed, exact over patients, and the verdict names the test it used
    assert {s["mcnemar_test"] for s in grouped["significance"].values()} == {"clustered"}
    assert {s["mcnemar_test"] for s in plain["significance"].values()} == {"exact"}
    assert "McNemar's test clustered by patient (exact over patients)" in grouped["verdict"]
    assert "McNemar's exact test" in plain["verdict"] and "exact over flips of whole patients" in md
    ref = grouped["referable"]
    assert ref["applicable"] and ref["clustered"] is True
    assert "effective counts" in md
    for role in ("best_single", "ensemble"):
        sens = ref[role]["sensitivity"]
        assert 0 < sens["n_effective"] <= sens["n"] and sens["ci"][0] <= sens["value"] <= sens["ci"][1]
        patients = ref[role]["by_patient"]  # screening refers patients: either eye
        assert patients["patients"] == 10
        assert patients["sensitivity"]["n"] + patients["specificity"]["n"] == 10
        assert patients["referred"] == patients["sensitivity"]["hits"] + (patients["specificity"]["n"]
                                                                        - patients["specificity"]["hits"])
        counts = ref[role]["val_counts"]  # the operating point's val rows, as counts
        assert counts["positives"] + counts["negatives"] == grouped["val_size"]
        assert f"{_val_pair(counts)}" in md
    # what a clinician reads first and last: eyes of patients, the weights, the limits
    assert "- Test set: 20 eyes of 10 patients, never used" in md
    assert "(best ensemble), by patient | either eye at the threshold |" in md
    assert "; by patient (either eye) " in md.split("## At a glance")[1].split("## Setup")[0]
    assert "by_patient" not in json.dumps(plain["referable"])  # eyes of unknown patients: no patient rows
    weights = grouped["best_method_weights"]  # soft and weighted (and their +thr) combine by weights
    assert set(weights) == set(skills) and sum(weights.values()) == pytest.approx(1.0)
    assert f"Weights of {grouped['best_method']} (the best ensemble): " in md
    assert "## Limitations" in md and "diabetic macular oedema" in md and "not a medical device" in md
    assert "the thresholds are test quantiles, for reading only" in md  # the coverage table chooses nothing
    # a vote leaning on one member says so below 100 % too
    from ensemble.vote import _verdict

    leaning = {**grouped, "best_method_weights": {"a": 0.9, "b": 0.06, "c": 0.04},
               "outcome": {**grouped["outcome"], "same_grades": 0.97}}
    words = _verdict(leaning)
    assert (f"{grouped['best_method']} puts 90% of its weight on a and gives 97% of the test rows the grade "
            f"{grouped['best_single']} gives them: it is close to one member") in words
    even = {**grouped, "best_method_weights": {"a": 0.4, "b": 0.3, "c": 0.3},
            "outcome": {**grouped["outcome"], "same_grades": 0.8}}
    assert "close to one member" not in _verdict(even)


def _val_pair(counts: dict) -> str:
    return f"({counts['flagged_positives']} of {counts['positives']})"


def test_a_grade_held_by_one_test_patient_gets_the_caution(tmp_path: Path) -> None:
    # Test rows 40..59 cycle grades 0..4; the four grade-4 rows are one patient's (the others one row each),
    # so the stratum "highest grade 4" holds one patient, which a stratified cluster bootstrap never varies.
    groups = [f"r{i}" for i in range(len(SPLIT))]
    for i in range(40, 60):
        if LABELS[i] == 4:
            groups[i] = "one"
    root = make_workdir(tmp_path, {"a": (0.8, 0.3), "b": (0.4, 0.3), "c": (0.3, 0.3)}, incomplete=None, groups=groups)
    report = run_vote(root, methods=["soft"], n_boot=100, console=Console(file=io.StringIO()))
    boot = report["bootstrap"]
    assert boot["clustered"] and boot["patients"] == 17 and boot["single_patient_classes"] == [4]
    assert "Caution: grade 4, with a single test patient (patients counted by their highest grade)" in report["verdict"]
    # a bootstrap that never varies a class claims nothing, whatever its interval (1000 resamples, enough otherwise)
    again = run_vote(root, methods=["soft"], n_boot=1000, console=Console(file=io.StringIO()))
    assert again["outcome"]["verdict"] == "no clear difference"
    assert again["verdict"].startswith("No difference can be claimed between the best ensemble") and (
        "from 20 test rows, too few for its intervals to be trusted; see the caution below)" in again["verdict"])
    from ensemble.vote import _outcome, _verdict

    sure = {**again, "difference": {"metrics": {"qwk": {"value": 0.1, "ci": [0.05, 0.15]}}}}
    assert _outcome(sure, "qwk")["verdict"] == "no clear difference"
    large = {**sure, "bootstrap": {**again["bootstrap"], "test_rows": 113}}  # one fixed grade of five: no "beat" either
    assert _outcome(large, "qwk")["verdict"] == "ahead, not claimed"
    three = {**large, "bootstrap": {**large["bootstrap"], "single_patient_classes": [1, 3, 4]}}  # most grades fixed
    assert _outcome(three, "qwk")["verdict"] == "no clear difference"
    words = _verdict({**three, "outcome": _outcome(three, "qwk")})
    assert ("from a bootstrap that never varies the rows of grades 1, 3 and 4, each with a single test patient; see "
            "the caution below)") in words and "never varies those patients' rows" in words


def test_a_grade_held_by_one_test_patient_turns_a_beat_into_ahead_not_claimed() -> None:
    """EyePACS-512 said "beat" and ended "Caution: grade 4, with a single test patient … neither a 'beat' … should be
    trusted": a reader stops at the first word. With any class the bootstrap cannot vary the verdict says the
    ensemble is ahead by the paired bootstrap and that a win cannot be claimed, with the figures and the reason."""
    from ensemble.vote import _outcome, _verdict

    narrow = _fake_report((0.01, 0.09), (0.75, 0.72))
    lone = {**narrow, "bootstrap": {"n_boot": 1000, "test_rows": 113, "clustered": True,
                                    "single_patient_classes": [4], "few_row_classes": {"4": 2}}}
    assert _outcome(lone, "qwk")["verdict"] == "ahead, not claimed"
    text = _verdict(lone, "qwk")
    head = text.split(";")[0]
    assert "beat" not in head and head.startswith(
        "The best ensemble, stack (chosen on val), is ahead of the best single member, wide (chosen on val by QWK), on "
        "test by the paired bootstrap, but a win cannot be claimed: QWK 0.550 vs 0.500 (difference +0.050, 95 % "
        "paired-bootstrap CI [+0.010, +0.090], which excludes 0 but leaves out the variation of grade 4, with a single "
        "test patient, whose rows every resample keeps unchanged")
    assert "Caution: grade 4, with a single test patient" in text
    behind = {**lone, "difference": {"metrics": {"qwk": {"value": -0.05, "ci": [-0.09, -0.01]}}}}
    assert _outcome(behind, "qwk")["verdict"] == "behind, not claimed"
    assert "is behind the best single member" in _verdict(behind, "qwk") and "did worse" not in _verdict(behind, "qwk")
    rows = {**narrow, "bootstrap": {"n_boot": 1000, "test_rows": 113, "clustered": False,
                                    "single_row_classes": [], "few_row_classes": {"3": 2}}}  # 2 rows: barely varied
    assert _outcome(rows, "qwk")["verdict"] == "ahead, not claimed"
    assert "rests on grade 3's 2 test rows, too few for the bootstrap to vary" in _verdict(rows, "qwk")
    enough = {**narrow, "bootstrap": {"n_boot": 1000, "test_rows": 113, "clustered": True,
                                      "single_patient_classes": [], "few_row_classes": {}}}
    assert _outcome(enough, "qwk")["verdict"] == "beat"  # no caution: a beat stays a beat
    assert _verdict(enough, "qwk").startswith("The best ensemble, stack (chosen on val), beat the best single member")


def test_a_two_class_task_gets_sensitivity_and_specificity_of_its_positive_class(tmp_path: Path, monkeypatch) -> None:
    """BreastMNIST-like: class names, two classes; --positive-class picks which one is reported."""
    from ensemble.stats import exact_interval

    monkeypatch.setattr(sys.modules[__name__], "K", 2)
    monkeypatch.setattr(sys.modules[__name__], "LABELS", np.tile(np.arange(2), 30))
    root = make_workdir(tmp_path, {"a": (0.3, 0.3), "b": (0.2, 0.25)}, incomplete=None)
    meta = json.loads((root / "dataset.json").read_text())
    names = ["malignant", "benign"]
    (root / "dataset.json").write_text(json.dumps({**meta, "classes": names, "ordinal": False}))
    for m in ("a", "b"):
        path = root / "members" / m / "metrics.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "classes": names}))
    quiet = Console(file=io.StringIO())
    report = run_vote(root, methods=["soft"], n_boot=100, positive_class="malignant", console=quiet)
    ref = report["referable"]
    assert ref["applicable"] and ref["kind"] == "positive_class" and ref["positive_index"] == 0
    assert ref["cut_grade"] is None  # was 1 beside positive_index 0: no grade cut on two classes
    ms = load_members(root)
    j = ms.names.index(report["best_single"])
    score, positive = ms.test_probs[j][:, 0].astype(np.float64), ms.test_labels == 0  # class index 0 = malignant
    r = ref["best_single"]
    tp, pos = int(((score >= r["threshold"]) & positive).sum()), int(positive.sum())
    assert r["sensitivity"]["value"] == pytest.approx(tp / pos) and r["sensitivity"]["ci"] == exact_interval(tp, pos)
    assert ref["test_positives"] == pos and set(r["per_grade"]) == {"0", "1"}
    assert r["per_grade"]["0"]["n"] == pos  # per-class rows keep the task's own class indices
    md = (root / "ensemble" / "report.md").read_text()
    assert "## Class malignant: sensitivity and specificity" in md and "Referable DR" not in md
    assert (root / "ensemble" / "roc.png").is_file()
    default = run_vote(root, methods=["soft"], n_boot=50, console=quiet)["referable"]
    assert default["positive_class"] == "benign" and default["positive_index"] == 1
    with pytest.raises(UserError, match="--positive-class 'cancer' is not one of this task's classes"):
        run_vote(root, methods=["soft"], n_boot=20, positive_class="cancer", console=quiet)
    for grade in (2, 1):  # 1 was accepted and ignored, though the help says it is refused
        with pytest.raises(UserError, match=rf"--referable-grade {grade} does not apply to a two-class task.*"
                                            r"\(default: the rarer class on val\), and drop --referable-grade\.$"):
            run_vote(root, methods=["soft"], n_boot=20, referable_grade=grade, console=quiet)
    with pytest.raises(UserError, match=r"--sensitivity-target must be in \(0, 1\]"):
        run_vote(root, methods=["soft"], n_boot=20, sensitivity_target=2.0, console=quiet)


def test_summary_options_that_do_not_apply_are_refused_not_ignored(workdir: Path) -> None:
    quiet = Console(file=io.StringIO())
    with pytest.raises(UserError, match="--positive-class applies to two-class tasks; this one has 5 classes"):
        run_vote(workdir, methods=["soft"], n_boot=20, positive_class="1", console=quiet)
    meta = json.loads((workdir / "dataset.json").read_text())
    (workdir / "dataset.json").write_text(json.dumps({**meta, "ordinal": False}))
    with pytest.raises(UserError, match="--referable-grade does not apply here: dataset.json says ordinal: false"):
        run_vote(workdir, methods=["soft"], n_boot=20, referable_grade=3, console=quiet)
    code, _, err = run_cli("vote", "--workdir", workdir, "--members", "a,b,a")
    assert code == 1 and "--members lists a more than once" in err
    code, _, err = run_cli("vote", "--workdir", workdir, "--members", " , ")  # named no member: not "every member"
    assert code == 1 and "names no member; pass comma-separated names" in err
    code, _, err = run_cli("vote", "--workdir", workdir, "--members", "")  # an empty argument: a usage error
    assert code == 2 and "an empty value after --members" in err


def test_a_referral_target_the_confidences_cannot_reach_is_said() -> None:
    from ensemble.report import _referral_md

    ref = {"confidence": "ensemble probability of its predicted grade", "threshold": 0.667, "target_coverage": 0.9,
           "val_coverage": 1.0, "test_coverage": 1.0, "test_referred": 0, "test_accuracy_kept": 0.8,
           "test_accuracy_referred": None, "test_accuracy_all": 0.8,
           "test_curve": {"coverage": [1.0], "accuracy": [0.8], "threshold": [0.667]}}
    text = "\n".join(_referral_md(ref, "val", 10, dr=False))
    assert ("chosen on val for 90% coverage; it keeps 100% of them: the ensemble's confidences take too few distinct "
            "values") in text
    assert "too few values" not in "\n".join(_referral_md({**ref, "val_coverage": 0.89}, "val", 10))


def test_review_fixes_of_the_two_class_and_nominal_reports(tmp_path: Path, monkeypatch) -> None:
    """Named two-class classes still get the kappa column and take --positive-class by index; the referral text
    names the real cause of a missed coverage; the glossary gives the resamples actually drawn."""
    from ensemble.report import coverage_reached

    monkeypatch.setattr(sys.modules[__name__], "K", 2)
    monkeypatch.setattr(sys.modules[__name__], "LABELS", np.tile(np.arange(2), 30))
    root = make_workdir(tmp_path, {"a": (0.3, 0.3), "b": (0.2, 0.25)}, incomplete=None)
    meta = json.loads((root / "dataset.json").read_text())
    (root / "dataset.json").write_text(json.dumps({**meta, "classes": ["malignant", "benign"], "ordinal": False}))
    for m in ("a", "b"):
        path = root / "members" / m / "metrics.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "classes": ["malignant", "benign"]}))
    report = run_vote(root, methods=["soft"], n_boot=120, positive_class="0", console=Console(file=io.StringIO()))
    assert report["referable"]["positive_class"] == "malignant"
    md = (root / "ensemble" / "report.md").read_text()
    assert "| kappa |" in md and "resampled with replacement 120 times" in md and "same class as the single" in md
    assert "Grade thresholds" not in md and "predicted grade" not in md
    why = coverage_reached({"val_coverage": 0.7, "target_coverage": 0.9, "refer_without_agreement": True,
                    "val_without_agreement": 30, "val_rows": 100})
    assert "30 of the 100 rows (30%) have a grade no member gives" in why
    assert "too few distinct values" in coverage_reached({"val_coverage": 1.0, "target_coverage": 0.9})


def test_predicts_referral_line_gives_the_reason_a_coverage_was_missed() -> None:
    """predict's stderr rule names why the val coverage missed its target, as the report does: with the
    no-agreement rule referring most rows, "chosen to keep 90% … it kept 30%" read as a contradiction."""
    from ensemble.inference import referral_rule

    report = {"best_method": "soft", "num_classes": 5, "referral": {
        "threshold": 0.41, "target_coverage": 0.9, "refer_without_agreement": True, "val_coverage": 0.3,
        "val_without_agreement": 70, "val_rows": 100}}
    threshold, alone, note = referral_rule(report, "soft")
    assert (threshold, alone) == (0.41, True)
    assert ("chosen on val to keep 90% of images; it keeps 30% of them: 70 of the 100 rows (70%) have a grade no "
            "member gives, and those are referred whatever the threshold) or when no member gives") in note
    _, _, met = referral_rule({**report, "referral": {**report["referral"], "val_coverage": 0.89}}, "soft")
    assert "it keeps" not in met and "90% of images)" in met
    threshold, alone, other = referral_rule(report, "stack")
    assert threshold is None and not alone and "only for 'soft', not 'stack'" in other


def test_too_few_resamples_never_give_a_beat() -> None:
    """``--bootstrap 1`` to 20 made the verdict say "beat" on data where 1000 resamples say no clear difference:
    under MIN_VERDICT_BOOT resamples no difference is claimed, and the text says why and what to pass."""
    from ensemble.vote import MIN_VERDICT_BOOT, _outcome, _verdict

    narrow = _fake_report((0.01, 0.09), (0.75, 0.72))
    for n_boot, verdict in ((1, "no clear difference"), (MIN_VERDICT_BOOT - 1, "no clear difference"),
                            (MIN_VERDICT_BOOT, "beat"), (1000, "beat")):
        r = {**narrow, "bootstrap": {"n_boot": n_boot}}
        assert _outcome(r, "qwk")["verdict"] == verdict, n_boot
    text = _verdict({**narrow, "bootstrap": {"n_boot": 5}}, "qwk")
    assert text.startswith("No difference can be claimed between the best ensemble, stack")
    assert "from only 5 bootstrap resamples, too few for a 95 % interval; vote again with --bootstrap 200" in text
    assert "beat" not in text.split(".")[0]


def test_vote_on_val_rows_of_one_class_is_one_sentence(tmp_path: Path, monkeypatch) -> None:
    """A given split whose val rows are all grade 0 crashed vote in stacking's solver (a traceback) and, with
    --method soft, ranked a member wrong on every val row above one right on every row (QWK undefined)."""
    labels = LABELS.copy()
    labels[20:40] = 0
    monkeypatch.setattr(sys.modules[__name__], "LABELS", labels)
    root = make_workdir(tmp_path, {"a": (0.9, 0.5), "b": (0.0, 0.5)}, incomplete=None)
    for methods in (["all"], ["soft"]):
        with pytest.raises(UserError) as err:
            run_vote(root, methods=methods, n_boot=20, console=Console(file=io.StringIO()))
        assert str(err.value).startswith("vote fits its combiners and chooses the best member on val, and they hold "
                                         "one class (0): nothing can be fitted or ranked on them.")
    assert not (root / "ensemble").exists()


def test_a_test_split_whose_majority_class_differs_is_said(tmp_path: Path, monkeypatch) -> None:
    """Val mostly class 1, test mostly class 0: the baseline row (val's class 1) sat under every model while always
    answering 0 beat them all on test, and nothing said so."""
    labels = LABELS.copy()
    labels[20:40] = [1] * 12 + [0, 2, 3, 4] * 2
    labels[40:60] = [0] * 16 + [1, 2, 3, 4]
    monkeypatch.setattr(sys.modules[__name__], "LABELS", labels)
    root = make_workdir(tmp_path, {"a": (0.3, 0.1), "b": (0.3, 0.1)}, incomplete=None)
    report = run_vote(root, methods=["soft"], n_boot=20, console=Console(file=io.StringIO()))
    assert report["baseline_class"] == 1
    t = report["test_majority"]
    assert t["class"] == 0 and t["accuracy"] == 0.8
    below = [n for n, m in {**report["members"], **report["ensembles"]}.items() if m["accuracy"]["value"] < 0.8]
    assert sorted(t["members"] + t["ensembles"]) == sorted(below) and below
    assert "On test, though, the most common class is 0" in report["verdict"]
    assert "always answering it scores accuracy 0.800 there" in report["verdict"]
    md = (root / "ensemble" / "report.md").read_text()
    assert "**The test split's most common class is another one**, 0: always answering it scores test accuracy" in md
    monkeypatch.undo()  # the same class mix in val and test: no such key, no such words
    (tmp_path / "even").mkdir()
    even = make_workdir(tmp_path / "even", {"a": (0.3, 0.3), "b": (0.3, 0.3)}, incomplete=None)
    report = run_vote(even, methods=["soft"], n_boot=20, console=Console(file=io.StringIO()))
    assert "test_majority" not in report and "On test, though" not in report["verdict"]


def test_members_of_another_split_get_advice_that_fits_their_kind(tmp_path: Path, capsys) -> None:
    """Skipped for another split, a k-fold member was told to retrain with plain --force and an imported one to
    retrain (which would replace the import by a locally trained member)."""
    root = make_workdir(tmp_path, {"a": (0.5, 0.5), "b": (0.5, 0.5), "kf": (0.5, 0.5), "imp": (0.5, 0.5),
                                   "p": (0.5, 0.5)}, incomplete=None)
    for name, extra in (("kf", {"folds": 3}), ("imp", {"imported": {"kind": "probabilities"}}), ("p", {})):
        path = root / "members" / name / "metrics.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "fingerprint": "f" * 64, **extra}))
    ms = load_members(root)
    assert ms.names == ["a", "b"]
    assert "retrain it with train-member --folds 3 --force, or remove" in ms.skipped["kf"]
    assert "import it again with import-member --force, or remove" in ms.skipped["imp"]
    assert "retrain it with train-member --force, or remove" in ms.skipped["p"]


def test_a_tie_for_the_test_splits_majority_is_no_shift(tmp_path: Path, monkeypatch) -> None:
    """A balanced test split (every class as common as the baseline's) was said to have another majority class."""
    labels = LABELS.copy()
    labels[20:40] = [1] * 12 + [0, 2, 3, 4] * 2  # val: class 1; test: 4 of each class, as LABELS has
    monkeypatch.setattr(sys.modules[__name__], "LABELS", labels)
    root = make_workdir(tmp_path, {"a": (0.3, 0.3), "b": (0.3, 0.3)}, incomplete=None)
    report = run_vote(root, methods=["soft"], n_boot=20, console=Console(file=io.StringIO()))
    assert report["baseline_class"] == 1 and "test_majority" not in report


def test_choices_made_on_too_few_rows_or_resamples_are_not_called_clear() -> None:
    """On 10 val rows of 5 patients (each class one patient) every selection interval had zero width, and on
    --bootstrap 1 the 'not clearly ahead' sentence vanished: the report read as if every choice were clear."""
    from ensemble.vote import _selection_words

    def sel(rows, n_boot, single=()):
        role = {"name": "x", "within_ci": [], "candidates": 3, "others": {}}
        return {"selection": {"rows": rows, "n_boot": n_boot, "protocol": "val", "single_patient_classes": list(single),
                              "best_single": {**role, "name": "m1"}, "best_method": {**role, "name": "soft"}}}

    assert _selection_words(sel(120, 1000), "QWK") == ""  # enough rows and resamples, every other clearly behind
    few = _selection_words(sel(10, 1000, single=[3, 4]), "QWK")
    assert few == (" The 10 val rows that made the choices cannot show whether they are clear (only 10 rows; classes "
                   "3, 4 held by one patient each): take m1 and soft as choices among near-equals.")
    assert "(1 bootstrap resamples)" in _selection_words(sel(122, 1), "QWK")
    assert _selection_words({"selection": {"rows": 120, "protocol": "val",  # a report written before these keys
                                           "best_single": {"name": "m1", "within_ci": [], "candidates": 2},
                                           "best_method": {"name": "soft", "within_ci": [], "candidates": 2}}},
                            "QWK") == ""


def test_a_member_whose_val_npz_is_one_class_is_left_out_though_metrics_json_says_it_learned(tmp_path) -> None:
    """metrics.json's ``collapsed: false`` (hand-edited, or written by an older rule) is not taken on trust."""
    root = make_workdir(tmp_path, {"a": (0.8, 0.3), "b": (0.7, 0.3), "c": (0.6, 0.3)}, incomplete=None)
    folder = root / "members" / "c"
    data = dict(np.load(folder / "val.npz"))
    data["probs"] = np.tile(np.array([0.6, 0.1, 0.1, 0.1, 0.1], np.float32), (len(data["labels"]), 1))
    save_npz(folder / "val.npz", **data)  # c gives every val row grade 0
    metrics = json.loads((folder / "metrics.json").read_text())
    (folder / "metrics.json").write_text(json.dumps({**metrics, "collapsed": False}))
    report = run_vote(root, methods=["soft"], thresholds="off", n_boot=20, console=Console(file=io.StringIO()))
    assert "c" not in report["members"] and sorted(report["members"]) == ["a", "b"]
    assert report["skipped"]["c"].startswith("collapsed: its val predictions fall into one class (0)")
    assert "judged again on its val.npz; its metrics.json says collapsed: false" in report["skipped"]["c"]
    assert json.loads((folder / "metrics.json").read_text())["collapsed"] is False  # the member's files are left as they are


DR_WORDS = ("Referable DR", "referable DR", "referable-DR", "diabetic", "Kaggle DR", "no DR", " eyes", " eye ",
            "either eye", "worst eye", "grade 2, moderate")


@pytest.mark.parametrize("classes", [["low", "mid", "high"], [0, 1, 2]], ids=["named", "integers"])
def test_ordered_grades_that_are_not_dr_get_no_dr_words(tmp_path: Path, monkeypatch, classes) -> None:
    """low/mid/high --ordinal (or any 3-grade integer task) got "Referable DR (grade >= 2 (high or worse))", "It
    grades diabetic retinopathy only", "(grade 2, moderate, by default)", eyes and "no DR": only the DR grades 0-4
    are DR's; other ordered grades are positive at grade >= N, over images."""
    from ensemble import plots
    from ensemble.inference import _referable_rule

    monkeypatch.setattr(sys.modules[__name__], "K", 3)
    monkeypatch.setattr(sys.modules[__name__], "LABELS", np.tile(np.arange(3), 20))
    root = make_workdir(tmp_path, {"a": (0.5, 0.5), "b": (0.4, 0.45)}, incomplete=None,
                        groups=[f"p{i // 2}" for i in range(60)])
    meta = json.loads((root / "dataset.json").read_text())
    (root / "dataset.json").write_text(json.dumps({**meta, "classes": classes, "ordinal": True}))
    for m in ("a", "b"):
        path = root / "members" / m / "metrics.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "classes": classes}))
    console = Console(file=io.StringIO(), width=200)
    report = run_vote(root, n_boot=50, console=console)
    ref = report["referable"]
    assert ref["applicable"] and ref["kind"] == "referable_dr" and ref["cut_grade"] == 2  # the same summary
    md = (root / "ensemble" / "report.md").read_text()
    text = md + console.file.getvalue() + report["verdict"] + report["bootstrap"]["note"]
    assert [w for w in DR_WORDS if w in text] == []
    title = "Positive at grade >= 2 (high or worse)" if classes[0] == "low" else "Positive at grade >= 2"
    assert f"## {title} (operating point chosen before test)" in md and f"- {title} (" in md
    assert "It grades on the scale of its training labels only" in md and "**Positive at the cut grade**" in md
    assert "any image at the threshold" in md and f"{title}, " in console.file.getvalue()
    assert "eyes" not in plots.confusion_caption(2, eyes=False)
    ref_ens = {**ref, "ensemble": {**ref["ensemble"], "name": "soft"}}
    assert _referable_rule(ref_ens, "soft", "val", classes)[2].startswith(ref["positive"] + " when P(grade >= 2)")
    assert _referable_rule(ref_ens, "soft", "val", list(range(5)))[2].startswith("referable DR when")  # DR: as before


def test_a_two_class_report_grouped_by_patient_speaks_of_images_not_eyes(tmp_path: Path, monkeypatch) -> None:
    """"the eye count divided by the design effect of patients' eyes" and "either eye at the threshold" in a
    benign/malignant report grouped by patient."""
    monkeypatch.setattr(sys.modules[__name__], "K", 2)
    monkeypatch.setattr(sys.modules[__name__], "LABELS", np.tile(np.arange(2), 30))
    root = make_workdir(tmp_path, {"a": (0.4, 0.4), "b": (0.3, 0.35)}, incomplete=None,
                        groups=[f"p{i // 2}" for i in range(60)])
    meta = json.loads((root / "dataset.json").read_text())
    (root / "dataset.json").write_text(json.dumps({**meta, "classes": ["benign", "malignant"], "ordinal": False}))
    for m in ("a", "b"):
        path = root / "members" / m / "metrics.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "classes": ["benign", "malignant"]}))
    console = Console(file=io.StringIO(), width=200)
    report = run_vote(root, n_boot=50, console=console)
    assert report["bootstrap"]["clustered"] and report["referable"]["kind"] == "positive_class"
    md = (root / "ensemble" / "report.md").read_text()
    text = md + console.file.getvalue() + report["verdict"] + report["bootstrap"]["note"]
    assert [w for w in DR_WORDS if w in text] == [] and "eye" not in text.replace("Yule", "")
    assert "the image count divided by the design effect of patients' images" in md
    assert "by patient | any image at the threshold" in md
