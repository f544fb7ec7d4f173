"""The vote report as text: report.json, report.md and the Rich table printed on stdout.

``report`` here is the JSON-ready dict that :func:`ensemble.vote.run_vote` builds
(``nan`` already turned into ``None``); this module only renders and writes it.
"""

from __future__ import annotations

from pathlib import Path

from ensemble.referable import dr_grades, summary_name, summary_title
from ensemble.referral import conflict_words
from members.infra.atomic import write_json, write_text
from members.scoring import LOWER_IS_BETTER, METRICS

COLUMNS = (("accuracy", "acc"), ("balanced_accuracy", "bal-acc"), ("macro_f1", "macro-F1"), ("qwk", "QWK"),
           ("auc", "AUC"), ("log_loss", "log-loss"), ("ece", "ECE"))


def columns(report: dict) -> tuple[tuple[str, str], ...]:
    """The metric columns of the report's tables: no QWK on nominal classes (it depends on an arbitrary class
    order), and QWK called kappa on two classes (there it is Cohen's kappa)."""
    if report.get("num_classes") == 2:  # Cohen's kappa: the same whichever class comes first
        return tuple((key, "kappa" if key == "qwk" else short) for key, short in COLUMNS)
    if report.get("ordinal", True) is False:
        return tuple(c for c in COLUMNS if c[0] != "qwk")
    return COLUMNS


def is_graded(report: dict) -> bool:
    """Whether the report speaks of grades (and a referable cut): ordered grades, at least three."""
    return report.get("ordinal", True) is not False and (report.get("num_classes") or 0) >= 3


def is_dr(report: dict) -> bool:
    """Whether the report speaks of eyes and referable DR: the five DR grades 0-4 (:func:`ensemble.referable.dr_grades`;
    a report without ``classes`` has them as indices). Other ordered grades are graded in neutral words."""
    return is_graded(report) and dr_grades(report.get("classes") or range(report.get("num_classes") or 0))


def _classes(report: dict | None) -> list:
    return list((report or {}).get("classes") or range((report or {}).get("num_classes") or 0))


def write_report(folder: str | Path, report: dict) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` into ``folder`` atomically."""
    folder = Path(folder)
    return write_json(folder / "report.json", report), write_text(folder / "report.md", render_markdown(report))


def _short(value, side: str = "") -> str:
    """A CI bound as compact as the console table needs to fit 80 columns: ``-.14``, ``.60``, ``1`` (exactly
    one), ``>.99`` (an upper bound under one that would round to it), ``7.8`` (one decimal at 1 and above, as
    log-loss can be). ``side`` ``"lo"`` / ``"hi"`` rounds the bound outward (down / up), so that the interval
    always holds the 3-decimal value printed above it (``0.075`` over ``.07–.08``, not ``.07–.07``).

    Example:
        >>> _short(0.0701, "lo"), _short(0.0746, "hi"), _short(0.991, "hi"), _short(1.234, "hi"), _short(-0.141, "lo")
        ('.07', '.08', '>.99', '1.3', '-.15')
    """
    import math

    if value is None:
        return "n/a"
    if value == 1.0:
        return "1"
    digits = 1 if abs(value) >= 1 else 2
    scale = 10 ** digits
    rounded = {"lo": math.floor(value * scale + 1e-9) / scale,  # the 1e-9: a bound already on the grid stays
               "hi": math.ceil(value * scale - 1e-9) / scale}.get(side, value)
    if value < 1.0 and (rounded >= 1.0 or (not side and value >= 0.995)):
        return ">.99"  # under one, never written as one
    if digits == 1:
        return f"{rounded:.1f}"
    return f"{rounded:.2f}".replace("0.", ".", 1)


def _num(value, digits: int = 3) -> str:
    """``value`` with ``digits`` decimals; one that is under 1 but would round to it is written ``> 0.999``, so
    that a near-perfect AUC is not read as a perfect one (and ``< 0.001`` likewise above 0)."""
    if value is None:
        return "n/a"
    step = 10.0 ** -digits
    if 1.0 - step / 2 <= value < 1.0:
        return f"> {1.0 - step:.{digits}f}"
    if 0.0 < value < step / 2:
        return f"< {step:.{digits}f}"
    return f"{value:.{digits}f}"


def _exact(value, digits: int = 3) -> str:
    """A threshold or other cut-off as it is, rounded (never ``> 0.999``: it is a value, not a score)."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def _class_name(report: dict, index: int) -> str:
    """The display name of class ``index`` (the index itself when the report has no class list)."""
    classes = report.get("classes") or []
    return str(classes[index]) if 0 <= index < len(classes) else str(index)


def _rows(report: dict) -> list[tuple[str, str, dict]]:
    rows = [("majority class", "baseline", report["baseline"])]
    rows += [(name, "member", m) for name, m in report["members"].items()]
    rows += [(name, "ensemble", m) for name, m in report["ensembles"].items()]
    return rows


def _kind(name: str, kind: str, report: dict) -> str:
    """The kind column's text: ``member (imported)`` for a member import-member brought in."""
    return f"{kind} (imported)" if kind == "member" and name in (report.get("imported") or ()) else kind


def _best_per_metric(report: dict) -> dict[str, set[str]]:
    """Names holding the best test value of each metric among members and ensembles."""
    out = {}
    single = set(report.get("one_class") or ())  # the majority class in effect: never "best"
    rows = [(name, m) for name, kind, m in _rows(report) if kind != "baseline" and name not in single]
    for metric in METRICS:
        values = [(m[metric]["value"], name) for name, m in rows if m[metric]["value"] is not None]
        if values:
            pick = min if metric in LOWER_IS_BETTER else max
            best = pick(v for v, _ in values)
            out[metric] = {name for v, name in values if v == best}
    return out


BELOW = "†"
"""Marks a model whose test accuracy is below the majority baseline's."""
ONE_CLASS = "‡"
"""Marks a model that gives every test row one class (a combiner can, as a member that collapsed does)."""
BEST_MARK = "▲"
"""Marks the best test value in the printed table where the console shows no bold (a file, a pipe)."""
COLLAPSED = "COLLAPSED"
"""Marks a member voted by ``--keep-collapsed`` though it collapsed (``report.json`` ``collapsed_kept``)."""
ZERO_WIDTH = "°"
"""Marks a test interval of zero width: conditional on the test split's grade mix, not a sign of an exact figure."""


def _below(name: str, kind: str, report: dict, split: str = "test") -> bool:
    """Whether ``name`` is below the majority class on ``split`` accuracy (``report.json`` ``below_baseline``,
    ``val_below_baseline``)."""
    key = "below_baseline" if split == "test" else f"{split}_below_baseline"
    block = (report.get(key) or {}).get({"member": "members"}.get(kind, "ensembles"), ())
    return kind != "baseline" and name in block


def _label(name: str, report: dict, kind: str = "", split: str = "test") -> str:
    """The row label: its roles, a collapsed member kept, and the marks ‡ (one class for every ``split`` row) and
    † (below the majority class on ``split`` accuracy)."""
    roles = (("best_single", "best single"), ("best_method", "best ensemble"))
    tags = [tag for key, tag in roles if report.get(key) == name]
    if kind == "member" and name in (report.get("collapsed_kept") or []):
        tags.append(f"{COLLAPSED}, kept by --keep-collapsed")
    label = f"{name} ({', '.join(tags)})" if tags else name
    one = report.get("one_class" if split == "test" else f"{split}_one_class") or ()
    label += f" {ONE_CLASS}" if kind and kind != "baseline" and name in one else ""
    return label + (f" {BELOW}" if kind and _below(name, kind, report, split) else "")


READABLE = {"qwk": "QWK", "macro_f1": "macro-F1", "balanced_accuracy": "balanced accuracy", "log_loss": "log-loss",
            "accuracy": "accuracy", "auc": "AUC", "kappa": "kappa"}


def _readable_metrics(text: str) -> str:
    """``qwk (ties: macro_f1), on val`` as ``QWK (ties: macro-F1), on val``."""
    import re

    return re.sub(r"\b(" + "|".join(sorted(READABLE, key=len, reverse=True)) + r")\b",
                  lambda m: READABLE[m.group(1)], text)


def _weights_words(report: dict) -> str:
    """`` Weights of <best method>: a 0.11, b 0.89.`` when the best method combines its members by weights."""
    weights = report.get("best_method_weights") or {}
    if len(weights) < 2:
        return ""
    return (f" Weights of {report['best_method']} (the best ensemble): "
            + ", ".join(f"{name} {w:.2f}" for name, w in weights.items()) + ".")


def _skipped_lines(report: dict) -> list[str]:
    return [f"{name}: {why}" for name, why in (report.get("skipped") or {}).items()]


def render_markdown(report: dict) -> str:
    """``report.md``: verdict, setup, test and val tables, significance, diversity, referral, referable DR,
    calibration, glossary."""
    cols = columns(report)
    lines = ["# Ensemble vote report", "", f"**Verdict.** {report['verdict']}", ""]
    lines += _data_md(report)
    lines += _glance_md(report)
    lines += ["## Setup", ""]
    lines += [
        (f"- Test rows: {report['test_size']}; "
         f"{'out-of-fold (train+val) rows' if chosen_on(report) != 'val' else 'val rows'}: {report['val_size']}; "
         f"classes: {report['num_classes']} "
         f"({', '.join(map(str, report.get('classes') or []))}; "
         f"{_order_words(report)})."),
        f"- Members voted: {', '.join(report['members'])}.{_weights_words(report)}",
        *([f"- **Collapsed members voted anyway** (`--keep-collapsed`): {', '.join(report['collapsed_kept'])}: each "
           "predicts one class (or sits at chance) on the rows that judge it — val, or a k-fold member's out-of-fold "
           "rows; their figures say nothing about the images."]
          if report.get("collapsed_kept") else []),
        f"- Skipped members: {'none' if not report['skipped'] else 'see Skipped below'}.",
        f"- Protocol: combiners fitted and models chosen on {_protocol(report)}.",
        f"- Selection (never on test): {_readable_metrics(report['selection_metric'])}.",
        f"- Combiners: {report['combiner_protocol']}",
        f"- {'Grade thresholds' if is_graded(report) else 'Thresholds'}: {report['thresholds']['note']}",
        f"- Intervals: {report['bootstrap']['note']}" + (
            f" Sensitivity and specificity of {summary_name(report['referable'], _classes(report))}: exact "
            f"(Clopper-Pearson) binomial intervals{_on_effective(report) if report['bootstrap'].get('clustered') else ''}."
            if (report.get("referable") or {}).get("applicable") else ""),
        *_calibration_setup(report.get("calibration")),
        (f"- Baseline: always predict the majority class of {chosen_on(report)} (class "
         f"{_class_name(report, report['baseline_class'])}), with their class frequencies as probabilities, add-one "
         "(Laplace) smoothed, (count + 1) / (rows + classes), so that a class they lack is not given 0."),
        *([f"- **The {'val' if chosen_on(report) == 'val' else 'out-of-fold'} rows hold no row of "
           f"{'grade' if is_graded(report) else 'class'}{'s' if len(lacking) > 1 else ''} "
           f"{', '.join(map(str, lacking))}**, which the test or train split has: the combiners fitted on them cannot "
           "learn it (stack never predicts it), and the members and methods are chosen without it."]
          if (lacking := report.get("val_missing_classes")) else []),
        *([f"- **The test split's most common class is another one**, {_class_name(report, t['class'])}: always "
           f"answering it scores test accuracy {_num(t['accuracy'])}; below that: "
           f"{', '.join([*t['members'], *t['ensembles']]) or 'no model'}."]
          if (t := report.get("test_majority")) else []),
        "",
        "## Test set (95 % bootstrap intervals)",
        "",
        "| model | kind | " + " | ".join(short for _, short in cols) + " |",
        "| --- | --- | " + " | ".join("---" for _ in cols) + " |",
    ]
    best = _best_per_metric(report)
    for name, kind, m in _rows(report):
        cells = [(("**" + _ci_text(m[key]) + "**") if name in best.get(key, ()) else _ci_text(m[key]))
                 + (ZERO_WIDTH if _flat(report, name, kind, key) else "") for key, _ in cols]
        lines.append(f"| {_label(name, report, kind)} | {_kind(name, kind, report)} | " + " | ".join(cells) + " |")
    base_acc = _num((report.get("below_baseline") or {}).get("baseline"))
    one = report.get("one_class") or []
    lines += ["", "Bold: best test value among members and ensembles (log-loss and ECE: lowest). "
              f"{BELOW}: test accuracy below the majority class's ({base_acc})."
              + (f" {ONE_CLASS}: gives every test row one class, as the majority class does ({', '.join(one)}); "
                 "never bold." if one else "")
              + _zero_width_note(report), ""]
    lines += _referable_md(report.get("referable"), report)
    if lines[-1] != "":
        lines.append("")  # a section ends with a blank line before the next heading
    if report["skipped"]:
        lines += ["## Skipped", "", "Members left out of the vote, with the reason:", ""]
        lines += [f"- {line}" for line in _skipped_lines(report)] + [""]
    lines += [
              ("## Validation set (selection happens here)" if chosen_on(report) == "val" else
               "## Out-of-fold rows: every train+val row, predicted by a copy that did not train on it "
               "(selection happens here)"), "",
              "| model | kind | " + " | ".join(short for _, short in cols) + " |",
              "| --- | --- | " + " | ".join("---" for _ in cols) + " |"]
    val = report["val"]
    for kind, block in (("baseline", {"majority class": val["baseline"]}), ("member", val["members"]),
                        ("ensemble (out-of-fold)", val["ensembles"])):
        for name, m in block.items():
            cells = " | ".join(_num(m[key]) for key, _ in cols)
            lines.append(f"| {_label(name, report, kind.split()[0], split='val')} | {_kind(name, kind, report)} | "
                         f"{cells} |")
    lines += _val_marks_note(report)
    if chosen_on(report) == "val":
        lines += ["", "A member's val figures are in-sample wherever it fitted something on these rows (a regression "
                  "head's cuts, the epoch it kept when chosen by a val metric), so they flatter it beside the "
                  "ensembles' out-of-fold figures; the test table above is the fair comparison."]
    lines += ["", f"## Significance: each ensemble against {report['best_single']} (test)", "",
              ("McNemar's test on the rows exactly one of the two gets right (two-sided), clustered by patient "
               "(each patient's wins and losses summed, since a patient's "
               f"{'eyes are' if is_dr(report) else 'images are'} not independent, and the p-value exact over "
               "flips of whole patients)."
               if any(v.get("mcnemar_test") == "clustered" for v in report["significance"].values()) else
               "McNemar's exact test on the rows exactly one of the two gets right (two-sided)."), "",
              f"| ensemble | ensemble alone right | single alone right | favours | p | same "
              f"{'grade' if is_graded(report) else 'class'} as the single |",
              "| --- | --- | --- | --- | --- | --- |"]
    for method, s in report["significance"].items():
        favours = {"ensemble": method, "single": report["best_single"]}.get(s.get("direction"), "neither")
        if favours != "neither" and s["mcnemar_p"] >= 0.05:
            favours = f"neither (p ≥ 0.05; {favours} has more)"
        same = s.get("same_grades")
        lines.append(f"| {method} | {s['method_only_correct']} | {s['single_only_correct']} | {favours} "
                     f"| {s['mcnemar_p']:.4g} | {'n/a' if same is None else f'{same:.0%} of rows'} |")
    diff = report["difference"]
    lines += ["", f"Paired bootstrap difference {diff['method']} minus {diff['vs']} on test:", "",
              "| metric | difference [95 % CI] |", "| --- | --- |"]
    lines += [f"| {short} | {_ci_text(diff['metrics'][key])} |" for key, short in cols]
    if diff.get("referable_auc"):
        lines.append(f"| AUC of {summary_name(report.get('referable') or {}, _classes(report))} | "
                     f"{_ci_text(diff['referable_auc'])} |")
    lines += bagging_md(report.get("bagging"), cols)
    lines += _diversity_md(report["diversity"]) + _referral_md(report["referral"], chosen_on(report),
                                                               report["test_size"], dr=is_graded(report), report=report)
    lines += _screen_md(report.get("appearance"))
    lines += _calibration_md(report.get("calibration"))
    lines += _limitations_md(report)
    lines += _glossary_md(report)
    return "\n".join(lines) + "\n"


def _val_marks_note(report: dict) -> list[str]:
    """The validation table's footnote on † and ‡ (none from an older report without the val marks)."""
    below, one = report.get("val_below_baseline"), report.get("val_one_class") or []
    if not below:
        return []
    rows = "val" if chosen_on(report) == "val" else "out-of-fold"
    return ["", f"{BELOW}: {rows} accuracy below the majority class's ({_num(below.get('baseline'))})."
            + (f" {ONE_CLASS}: gives every {rows} row one class, as the majority class does ({', '.join(one)})."
               if one else "")]


def _limitations_md(report: dict) -> list[str]:
    """What the figures do not say: the task's scope, the data they hold for, the input screen, the tool's status."""
    data = (report.get("data") or {}).get("source") or "this workdir's data"
    scope = ("It grades diabetic retinopathy only, on the grade scale of its training labels: it does not look for "
             "diabetic macular oedema (which screening programmes refer for by itself), glaucoma, age-related macular "
             "degeneration or any other disease, and an eye it calls below the referable grade may still need a "
             "specialist for those." if is_dr(report) else
             "It grades on the scale of its training labels only: anything else in an image goes unseen."
             if is_graded(report) else
             "It tells apart the classes of its training labels only: anything else in an image goes unseen.")
    return ["", "## Limitations", "", f"- {scope}",
            f"- The figures hold for images like its test split ({data}); another camera, clinic or population can "
            "change them: measure it on local data before relying on it.",
            "- `predict`'s input screen catches gross mistakes (noise, a document, a thumbnail), not poor image "
            f"quality: a blurred, dark or partly covered image of the usual kind is "
            f"{'graded' if is_graded(report) else 'classified'} like any other.",
            "- It is a research tool, not a medical device, and its output is not a diagnosis."]


def bagging_md(bagging: dict | None, cols: tuple[tuple[str, str], ...] = COLUMNS) -> list[str]:
    """The gain of bagging: each k-fold member's K-fold average against its single-fold copy 0, on test."""
    if not bagging:
        return []
    shown = dict(cols)
    keys = tuple((key, shown[key]) for key in ("accuracy", "qwk", "macro_f1", "auc", "log_loss")
                 if key in shown and (key != "macro_f1" or "qwk" not in shown))
    out = ["", "## Bagging: the K-fold average against a single-fold copy (test)", "",
           "Each k-fold member's test probabilities are the mean of its K copies; copy 0 alone was trained on "
           "(K-1)/K of the train+val rows. Difference: average minus copy, 95 % paired-bootstrap CI.", "",
           "| member | K | " + " | ".join(f"{short} copy 0 | {short} difference" for _, short in keys) + " |",
           "| --- | --- | " + " | ".join("--- | ---" for _ in keys) + " |"]
    for name, b in bagging.items():
        cells = " | ".join(f"{_num(b['single_fold'][key]['value'])} | {_ci_text(b['difference'][key])}" for key, _ in keys)
        out.append(f"| {name} | {b['folds']} | {cells} |")
    return out


def chosen_on(report: dict) -> str:
    """The rows that made the choices, in words: ``"val"`` or ``"out-of-fold rows"`` (the OOF protocol)."""
    return "out-of-fold rows" if (report.get("protocol") or {}).get("name") == "oof" else "val"


def _protocol(report: dict) -> str:
    protocol = report.get("protocol") or {"name": "val", "rows": report.get("val_size")}
    words = {"val": "the val split", "oof": "out-of-fold predictions"}.get(protocol["name"], protocol["name"])
    note = report.get("protocol_note") if protocol["name"] != "oof" else None
    return f"{words} ({protocol['rows']} rows)" + (f" — {note}" if note else "")


def _diversity_md(div: dict) -> list[str]:
    names = div["members"]
    out = ["", "## Diversity of the members (test, right/wrong per row)", "",
           ("Disagreement: share of rows exactly one of the pair gets right. Yule's Q: 1 = they err on the same rows, "
            "0 = independent, negative = they err on different rows. Double fault: share both get wrong."), ""]
    for key, title in (("disagreement", "Disagreement"), ("q_statistic", "Yule's Q"), ("double_fault", "Double fault")):
        out += [f"**{title}**", "", "| | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
        out += [f"| {name} | " + " | ".join(_num(v, 2) for v in row) + " |" for name, row in zip(names, div[key])]
        out.append("")
    return out


def _referral_md(ref: dict, rows: str = "val", n_test: int | None = None, dr: bool = True,
                 report: dict | None = None) -> list[str]:
    """The review section: the rule ``predict``'s ``review`` applies (:mod:`ensemble.referral`) and what it does on
    test (``report``: the whole report, whose ``referable`` call a contradicted grade is referred by; ``dr``: ordered
    grades, of eyes when the report's are the DR grades)."""
    n = ref.get("test_referred")
    eyes = dr and (report is None or is_dr(report))
    what, done = ("eyes" if eyes else "images", "graded") if dr else ("images", "classified")
    counts = (f" ({n} test {what} sent for review" + (f", {n_test - n} {done} automatically" if n_test is not None else "")
              + ")") if n is not None else ""
    who, verb = ("grader", "grades") if dr else ("reader", "classifies")
    reasons = [f"Rows whose {ref['confidence']} is below {ref['threshold']:.4g} (chosen on {rows} for "  # as predict says it
               f"{ref['target_coverage']:.0%} coverage{coverage_reached(ref, dr)})"]
    if ref.get("refer_without_agreement"):
        reasons.append(f"rows no member {verb} as the ensemble does ({ref['val_without_agreement']} on {rows}, "
                       f"{ref['test_without_agreement']} on test)")
    summary = (report or {}).get("referable") or {}
    if ref.get("refer_call_conflicts") and summary.get("applicable"):
        two = summary.get("kind") == "positive_class"
        name = str(summary["positive_class"]) if two else _class_name(report, summary["cut_grade"])
        seen = f"{ref.get('val_call_conflicts', 0)} on {rows}, {ref.get('test_call_conflicts', 0)} on test"
        reasons.append("rows where " + conflict_words("positive_class" if two else "referable_dr", name, dr, seen))
    rule = (reasons[0] if len(reasons) == 1 else ", ".join(reasons[:-1]) + ", and " + reasons[-1])
    set_apart = ["the rows no member agrees with"] * bool(ref.get("refer_without_agreement")) + (
        ["those whose call disagrees"] if ref.get("refer_call_conflicts") else [])
    out = ["## Referral to a human grader for review (not referable DR)" if eyes else
           "## Referral to a human grader for review" if dr else "## Referral to a human reader for review", "",
           ("Coverage is the share of eyes the ensemble grades on its own; the rest go to a human grader. This "
            "is about whether its grade can stand alone, not about disease: referable DR is above." if eyes else
            "Coverage is the share of images the ensemble grades on its own; the rest go to a human grader. This "
            "is about whether its grade can stand alone, not about which grade it is." if dr else
            "Coverage is the share of images the ensemble classifies on its own; the rest go to a human reader. "
            "This is about whether its class can stand alone, not about which class it is."), "",
           f"{rule} are sent to a human {who} for review: the `review` column of `predict`, whose rule the figures "
           "below count (a row sent for more than one reason counts once).",
           "",
           f"- Test coverage {_num(ref['test_coverage'])}{counts}{_kept_words(ref, report, what)}",
           *(["", f"**Warning:** {ref['warning']}"] if ref.get("warning") else []),
           "", (f"Test accuracy at each coverage, by the confidence threshold alone ({' and '.join(set_apart)} are not "
                "set apart here, as the rule above does; the thresholds are test quantiles, for reading only):"
                if set_apart else
                "Test accuracy at each coverage (the thresholds are test quantiles, for reading only):"), ""]
    curve = ref["test_curve"]
    base = ref.get("majority_class")
    table = [("coverage", [f"{c:.2f}" for c in curve["coverage"]]),
             (f"{what} kept", [str(n) for n in curve.get("rows") or []]),
             ("accuracy", [_num(a) for a in curve["accuracy"]]),
             ("balanced accuracy", [_num(b) for b in curve.get("balanced_accuracy") or []]),
             (f"always {'grade' if dr else 'class'} {_class_name(report or {}, base or 0)} (accuracy)",
              [_num(m) for m in curve.get("majority_accuracy") or []]),
             ("threshold", [_exact(t) for t in curve["threshold"]])]
    table = [(title, cells) for title, cells in table if cells]  # an older report: coverage, accuracy, threshold
    out += ["| " + " | ".join(title for title, _ in table) + " |", "|" + " --- |" * len(table)]
    out += ["| " + " | ".join(row) + " |" for row in zip(*(cells for _, cells in table))]
    return out


def _kept_words(ref: dict, report: dict | None, what: str) -> str:
    """``. On the 59 kept eyes: accuracy 0.746 (44 right), balanced accuracy 0.425; always answering grade 0 would
    score 0.712 on them. On the 54 eyes sent for review: … On all 113: …``: the review figures with their row
    counts and the majority baseline on the kept rows (a report written before the counts: accuracy alone)."""
    kept = ref.get("test_kept")
    if kept is None:  # a report written before the counts
        return (f"; accuracy on the kept rows {_num(ref['test_accuracy_kept'])}, on the rows sent for review "
                f"{_num(ref['test_accuracy_referred'])}, on all rows {_num(ref['test_accuracy_all'])}.")
    sent = ref["test_referred"]
    base, majority = ref.get("majority_class"), ref.get("test_majority_kept")
    dr = is_graded(report) if report else what == "eyes"
    baseline = ""
    if base is not None and majority is not None:
        name = f"{'grade' if dr else 'class'} {_class_name(report or {}, base)}"
        no_better = (" — the ensemble is no better than that on the rows it keeps"
                     if ref["test_accuracy_kept"] is not None and ref["test_accuracy_kept"] <= majority else "")
        baseline = f"; always answering {name} would score {_num(majority)} on them{no_better}"
    out = (f". On the {kept} kept {what}: accuracy {_num(ref['test_accuracy_kept'])} ({ref['test_kept_right']} right), "
           f"balanced accuracy {_num(ref.get('test_balanced_accuracy_kept'))}{baseline}.")
    if sent:
        out += (f" On the {sent} {what} sent for review: accuracy {_num(ref['test_accuracy_referred'])} "
                f"({ref['test_referred_right']} right).")
    return out + f" On all {kept + sent}: accuracy {_num(ref['test_accuracy_all'])}."


def _screen_md(screen: dict | None) -> list[str]:
    """One paragraph on ``predict``'s input screen (``report.json`` ``appearance``)."""
    if not screen:
        return []
    if screen.get("screen"):
        listed = screen.get("listed")
        which = (f"a sample of {screen['images']} of the {listed} {screen['source']} images"
                 if isinstance(listed, int) and listed > screen["images"] else
                 f"all of the {screen['images']} {screen['source']} images read here")
        text = (f"`predict` also refers any input that looks unlike {which} (noise, a scanned page, another kind of "
                "picture), with the reason in its `note` column; ensemble/appearance.json holds their range. It "
                "screens for gross mistakes; it does not grade image quality.")
    else:
        text = f"`predict` does not screen inputs for images unlike the training images: {screen.get('reason', '')}."
    return ["", text]


def coverage_reached(ref: dict, dr: bool = True) -> str:
    """``; it keeps 100% of them: ...`` when the coverage reached on the selection rows is not the target, and why."""
    got, target = ref.get("val_coverage"), ref.get("target_coverage")
    if got is None or target is None or abs(got - target) <= 0.02:
        return ""
    alone, rows = ref.get("val_referred_anyway", ref.get("val_without_agreement")), ref.get("val_rows")
    if got < target and ref.get("refer_without_agreement") and alone and rows and alone / rows > 1 - target:
        word = "grade" if dr else "class"
        what = (f"a {word} no member gives or one the {'referable' if dr else 'positive-class'} call contradicts"
                if ref.get("val_call_conflicts") else f"a {word} no member gives")
        why = f"{alone} of the {rows} rows ({alone / rows:.0%}) have {what}, and those are referred whatever the threshold"
    else:
        why = "the ensemble's confidences take too few distinct values to stop nearer it (a hard vote of a few members)"
    return f"; it keeps {got:.0%} of them: {why}"


def _flat(report: dict, name: str, kind: str, key: str) -> bool:
    """Whether the test interval of ``key`` of a member or an ensemble has zero width away from the ends of its
    scale: the stratified bootstrap never moved it (a perfect model scores 1 in every resample, and one that gives
    one class scores 1/k on balanced accuracy and 0 on QWK by definition: those are exact, not flat)."""
    if kind == "baseline":
        return False
    if name in (report.get("one_class") or ()) and key in ("balanced_accuracy", "qwk"):
        return False
    entry = ((report.get({"member": "members"}.get(kind, "ensembles")) or {}).get(name) or {}).get(key)
    ci = entry.get("ci") if isinstance(entry, dict) else None
    return (ci is not None and entry.get("value") not in (None, 0.0, 1.0) and None not in ci
            and abs(ci[1] - ci[0]) < 1e-12)


def _zero_width(report: dict) -> list[tuple[str, str]]:
    """The ``(model, metric)`` test intervals of zero width (:func:`_flat`), in table order."""
    return [(name, key) for name, kind, _ in _rows(report) for key, _ in columns(report)
            if _flat(report, name, kind, key)]


def _zero_width_note(report: dict) -> str:
    """Why an interval can have zero width, for the test table's footnote ("" when none has): the bootstrap keeps
    each grade's count, so its intervals are conditional on the split's grade mix, and a model whose patients (rows)
    score alike within every grade gets the same figure in every resample. Such a figure is not exact."""
    flat = _zero_width(report)
    if not flat:
        return ""
    name, key = flat[0]
    m = (report["members"].get(name) or report["ensembles"][name])[key]
    word = "grade" if is_graded(report) else "class"
    short = dict(columns(report))[key]
    label = short if key == "qwk" else READABLE.get(key, short)  # QWK, or kappa on two classes
    worst = "worst eye" if is_dr(report) else "highest-graded image" if is_graded(report) else "highest-numbered image"
    drawn = ((f"draws patients within the {word} of their {worst}"
              f" and keeps each {word}'s patient count", f"a model whose patients score alike within every {word}")
             if (report.get("bootstrap") or {}).get("clustered") else
             (f"draws rows within their {word} and keeps each {word}'s row count",
              f"a model that gets every row of a {word} right, or every one wrong, {word} by {word},"))
    return (f" {ZERO_WIDTH}: an interval of zero width (e.g. {name}'s {label} {_ci_text(m)}) does not mean the "
            f"figure is exact. The bootstrap {drawn[0]}, so every interval here is conditional on the test split's "
            f"{word} mix, and {drawn[1]} gets the same figure in every resample: its interval leaves out the "
            f"uncertainty that other {'patients' if (report.get('bootstrap') or {}).get('clustered') else 'rows'} or "
            f"another {word} mix would bring.")


def _ci_text(entry: dict, digits: int = 3) -> str:
    lo, hi = entry["ci"]
    return f"{_num(entry['value'], digits)} [{_num(lo, digits)}, {_num(hi, digits)}]"


def _operating_rows(ref: dict, by: str, rule: str, *, eyes: bool = True) -> list[str]:
    """The operating-point table rows of the best single member and the ensemble (each also "``by``" its own
    prediction, ``rule``; by patient: either eye, or any image where ``eyes`` is false), then the warnings of a
    degenerate point."""
    out, short = [], []
    for role, title in (("best_single", "best single"), ("ensemble", "best ensemble")):
        r = ref[role]
        c = r.get("val_counts") or {}
        val_sens = _num(r["val_sensitivity"]) + (f" ({c['flagged_positives']} of {c['positives']})" if c else "")
        val_spec = (_num(r.get("val_specificity")) + (f" ({c['negatives'] - c['flagged_negatives']} of {c['negatives']})"
                                                        if c else ""))
        out.append(f"| {r['name']} ({title}) | {_exact(r['threshold'], 4)} | {val_sens} | {val_spec} | "
                   f"{_ci_text(r['sensitivity'])} | {_ci_text(r['specificity'])} | {_ci_text(r['auc'])} | "
                   f"{r['test_referred']} |")
        g = r.get("by_grade")
        if g:
            out.append(f"| {r['name']} ({title}), {by} | {rule} | | | {_ci_text(g['sensitivity'])} | "
                       f"{_ci_text(g['specificity'])} | | {g['referred']} |")
        pt = r.get("by_patient")
        if pt:
            out.append(f"| {r['name']} ({title}), by patient | {'either eye' if eyes else 'any image'} at the threshold | | | "
                       f"{_ci_text(pt['sensitivity'])} ({pt['sensitivity']['hits']} of {pt['sensitivity']['n']}) | "
                       f"{_ci_text(pt['specificity'])} ({pt['specificity']['hits']} of {pt['specificity']['n']}) | | "
                       f"{pt['referred']} patients |")
        sens, target = r["sensitivity"], ref["sensitivity_target"]
        if sens["value"] is not None and sens["value"] < target:
            lo, hi = sens["ci"]
            tell = (f"its 95 % interval [{_num(lo, 2)}, {_num(hi, 2)}] includes the target: {sens['n']} positive test "
                    "rows cannot tell the two apart" if hi is not None and hi >= target else
                    f"its 95 % interval [{_num(lo, 2)}, {_num(hi, 2)}] lies below the target")
            short.append(f"{r['name']}'s test sensitivity {_num(sens['value'], 2)} is below the {target:.0%} it was "
                         f"chosen for on {_choosing(ref)} ({tell})")
    warnings = [f"**Warning:** {ref[role]['warning']}" for role in ("best_single", "ensemble") if ref[role].get("warning")]
    notes = ([f"The threshold reaching the target on {_choosing(ref)} did not reach it on test: {'; '.join(short)}."]
             if short else [])
    return out + (["", *notes] if notes else []) + (["", *warnings] if warnings else [])


def _choosing(ref: dict, short: bool = False) -> str:
    """The rows a referable section's thresholds were chosen on: ``val``, or the out-of-fold rows (``short``: as a
    column's adjective, ``val`` / ``out-of-fold``)."""
    chosen = str(ref.get("chosen_on") or "val")
    if chosen.startswith("val"):
        return "val"
    return "out-of-fold" if short else "the out-of-fold rows"


def _positive_md(ref: dict) -> list[str]:
    """The two-class summary: sensitivity and specificity of the positive class at a val-chosen threshold."""
    name = ref["positive_class"]
    out = ["", f"## Class {name}: sensitivity and specificity (operating point chosen before test)", "",
           (f"Positive = {ref['positive']} ({ref['test_positives']} of {ref['test_positives'] + ref['test_negatives']} "
            f"test rows; `vote --positive-class` chooses the class). Score: {ref['score']}. Each model's threshold is "
            f"the highest one reaching {ref['sensitivity_target']:.0%} sensitivity on {ref['chosen_on']}; test only "
            "measures. Intervals: exact (Clopper-Pearson) for sensitivity and specificity"
            f"{_on_effective(None, eyes=False) if ref.get('clustered') else ''}, the paired bootstrap for AUC. "
            f"Rows \"by its class\" call an image {name} when the model's own class is {name} (its most probable "
            "class, `predict`'s `class`). ROC curves: `roc.png`."), "",
           f"| model | threshold | {_choosing(ref, short=True)} sensitivity | {_choosing(ref, short=True)} specificity | "
           f"test sensitivity | test specificity | AUC ({name}) "
           f"| called {name} |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    out += _operating_rows(ref, "by its class", f"class {name}", eyes=False)
    if ref.get("member_auc"):
        out += ["", f"AUC of class {name}, every member (test): "
                + ", ".join(f"{n} {_num(v)}" for n, v in ref["member_auc"].items()) + "."]
    return out


def _referable_md(ref: dict | None, report: dict | None = None) -> list[str]:
    """The section at the referable cut: referable DR on the DR grades, "positive at grade >= N" on other ordered
    grades (images, not eyes), the positive class on two classes."""
    if not ref or (report is not None and not ref.get("applicable") and not is_graded(report)):
        return []  # not a grading task: report.json keeps the note, report.md has no such section
    if ref.get("kind") == "positive_class":
        return _positive_md(ref)
    dr = report is None or is_dr(report)
    title = "Referable DR" if dr else summary_title(ref, _classes(report))
    out = ["", f"## {title} (operating point chosen before test)", ""]
    if not ref.get("applicable"):
        return out + [ref["note"]]
    cut = ref["cut_grade"]
    refer, eye = ("referred", "eye") if dr else ("flagged", "image")
    patients = ("as a screening programme refers them: a patient with referable DR in either eye is a positive, "
                "referred when either eye is flagged" if dr else
                "a patient with any image at the cut or above is a positive, flagged when any of their images is")
    out += [(f"{'Referable' if dr else 'Positive'} = {ref['positive']} ({ref['test_positives']} of "
             f"{ref['test_positives'] + ref['test_negatives']} test rows). Score: {ref['score']}. Each model's "
             f"threshold is the highest one reaching {ref['sensitivity_target']:.0%} sensitivity on {ref['chosen_on']}; "
             "test only measures. Intervals: exact (Clopper-Pearson) for sensitivity and specificity"
             f"{_on_effective(report) if ref.get('clustered') else ''}, the paired bootstrap for AUC. "
             f"Rows \"by its grades\" {'refer an eye' if dr else 'flag an image'} when the model's own grade is "
             f"{cut} or worse — the decision a reader of its grades (and of `predict`'s `class`) makes; they can "
             f"differ from the threshold's. Rows \"by patient\" (a split grouped by patient) count patients, {patients}"
             ". ROC curves: `roc.png`."), "",
            f"| model | threshold | {_choosing(ref, short=True)} sensitivity | {_choosing(ref, short=True)} specificity "
            f"| test sensitivity | test specificity | AUC ({'referable' if dr else 'positive'}) | {refer} |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    out += _operating_rows(ref, "by its grades", f"grade ≥ {cut}", eyes=dr)
    grades = list(ref["best_single"]["per_grade"])
    out += ["", f"Per-grade recall on test (share of each true grade given that grade) and share {refer} "
            f"(score at or above the threshold; grades >= {cut} should be {refer}):", "",
            "| grade | n | " + " | ".join(f"{ref[r]['name']} recall | {ref[r]['name']} {refer}"
                                       for r in ("best_single", "ensemble")) + " |",
            "| --- | --- |" + " --- | --- |" * 2]
    for g in grades:
        cells = []
        for role in ("best_single", "ensemble"):
            pg = ref[role]["per_grade"][g]
            cells += [_num(pg["recall"]), _num(pg["referred"])]
        out.append(f"| {g} | {ref['best_single']['per_grade'][g]['n']} | " + " | ".join(cells) + " |")
    if ref.get("member_auc"):
        out += ["", f"AUC of {summary_name(ref, _classes(report)) if report else 'referable DR'}, every member "
                "(test): " + ", ".join(f"{n} {_num(v)}" for n, v in ref["member_auc"].items()) + "."]
    return out


def _data_lines(report: dict) -> list[str]:
    """Where the images came from (``dataset.json`` ``source``), flagged when they are `demo-data`'s."""
    data = report.get("data") or {}
    if not data.get("source"):
        return []
    synthetic = (" — **synthetic images written by `demo-data`, not photographs of real eyes: these figures say "
                 "nothing about patients**") if data.get("synthetic") else ""
    root = f", images under {data['image_root']}" if data.get("image_root") else ""
    return [f"- Source: {data['source']} (`dataset.json` `source`){root}{synthetic}."]


def _data_md(report: dict) -> list[str]:
    """The Data section: the source, images (and patients) in all and per split with their class counts, and the
    model ``predict`` uses by default (the best ensemble's combiner over the members voted)."""
    data = report.get("data") or {}
    source = _data_lines(report)
    if not source:
        return []
    out = ["## Data", "", *source]
    splits = data.get("splits")
    dr = is_graded(report)
    if splits:
        patients = data.get("patients") is not None
        of = f" of {data['patients']} patients" if patients else ""
        how = (f" (grouped by patient: `{data['grouping']}`), a patient's images all in one split"
               if patients and data.get("grouping")
               else ", a patient's images all in one split" if patients else
               " (not grouped by patient: two images of one patient can fall in two splits)")
        out.append(f"- {data['images']} images{of}{how}:")
        names = list(next(iter(splits.values()))["classes"])
        word = "grade" if dr else "class"
        out += ["", "| split | images | " + ("patients | " if patients else "")
                + " | ".join(f"{word} {c}" for c in names) + " |",
                "| --- | --- | " + ("--- | " if patients else "") + " | ".join("---" for _ in names) + " |"]
        total = {"images": data["images"], "patients": data.get("patients"),
                 "classes": {c: sum(part["classes"][c] for part in splits.values()) for c in names}}
        for split, part in [*splits.items(), ("all", total)]:
            out.append(f"| {split} | {part['images']} | " + (f"{part['patients']} | " if patients else "")
                       + " | ".join(str(part["classes"][c]) for c in names) + " |")
        out.append("")
    bm = report.get("best_method")
    if bm:
        out.append(f"- `predict` {'grades' if dr else 'classifies'} new images with the best ensemble, {bm} "
                   f"(`ensemble/combiners/{bm}.json`, over {', '.join(report.get('members') or [])}), unless "
                   "`--method` names another fitted combiner.")
    return out + [""]


def _glance_md(report: dict) -> list[str]:
    """The answers a clinician looks for first: which data, referable DR of both models, the grades they miss."""
    out = ["## At a glance", ""]
    data = report.get("data") or {}
    if data.get("synthetic"):
        out.append("- **Synthetic demo data** (`demo-data`), not real eyes: the figures below show the tool at work, "
                   "not clinical performance.")
    n = report["test_size"]
    boot = report.get("bootstrap") or {}
    what = (f"{n} eyes of {boot['patients']} patients" if boot.get("clustered") and is_dr(report)
            else f"{n} images of {boot['patients']} patients" if boot.get("clustered") else f"{n} images")
    out.append(f"- Test set: {what}, never used to fit or choose anything; intervals are 95 %.")
    ref = report.get("referable") or {}
    if ref.get("applicable") and ref.get("kind") == "positive_class":
        for role, title in (("ensemble", "ensemble"), ("best_single", "best single member")):
            r = ref[role]
            out.append(f"- Class {ref['positive_class']} ({ref['test_positives']} of "
                       f"{ref['test_positives'] + ref['test_negatives']} test images), {title} {r['name']}: sensitivity "
                       f"{_pct(r['sensitivity'])}, specificity {_pct(r['specificity'])} at its threshold.")
    elif ref.get("applicable"):
        dr = is_dr(report)
        rows = "eyes" if dr else "images"
        for role, title in (("ensemble", "ensemble"), ("best_single", "best single member")):
            r = ref[role]
            g = r.get("by_grade") or {}
            by = (f"; by its grades {_pct(g['sensitivity'])} and {_pct(g['specificity'])}"
                  if g else "")
            pt = r.get("by_patient")
            by += (f"; by patient ({'either eye' if dr else 'any image'}) {_pct(pt['sensitivity'])} and "
                   f"{_pct(pt['specificity'])} of {pt['patients']} patients" if pt else "")
            name = f"Referable DR ({ref['positive']}, " if dr else f"{summary_title(ref, _classes(report))} ("
            out.append(f"- {name}{ref['test_positives']} of {ref['test_positives'] + ref['test_negatives']} test "
                       f"{rows}), {title} {r['name']}: sensitivity {_pct(r['sensitivity'])}, specificity "
                       f"{_pct(r['specificity'])} at its threshold{by}{_missed_words(ref, r, dr)}.")
        weak = [(gr, pg) for gr, pg in ref["ensemble"]["per_grade"].items()
                if pg["n"] and pg["recall"] == pg["recall"] and pg["recall"] < 0.5]
        if weak:
            out.append("- Grades the ensemble mostly misses on test (recall below 0.5): " + ", ".join(
                f"grade {gr} ({round(pg['recall'] * pg['n'])} of {pg['n']} {rows} right)" for gr, pg in weak) + ".")
    cal = report.get("calibration") or {}
    worse = _calibration_worse(cal)
    if worse:
        out.append(f"- {worse}")
    return out + [""]


def _missed_words(ref: dict, r: dict, dr: bool = True) -> str:
    """``; below the 90% target on test: 4 of 25 referable test eyes missed`` when the val-chosen threshold fell
    short of the target on test, else ``""`` (``dr``: eyes of referable DR, else positive images)."""
    sens, target = r.get("sensitivity") or {}, ref.get("sensitivity_target")
    if sens.get("value") is None or target is None or sens["value"] >= target or sens.get("n") is None:
        return ""
    dr = dr and ref.get("kind") != "positive_class"
    what = "referable test eyes" if dr else "positive test images"
    return f"; below the {target:.0%} target on test: {sens['n'] - sens['hits']} of {sens['n']} {what} missed"


def _pct(entry: dict) -> str:
    lo, hi = entry["ci"]
    return f"{_num(entry['value'], 2)} [{_num(lo, 2)}, {_num(hi, 2)}]"


def _calibration_setup(cal: dict | None) -> list[str]:
    if not cal or cal.get("method") in (None, "none"):
        return []
    return [f"- Calibration: {cal['method']} scaling, fitted on {cal.get('fitted_on', 'val')}: every probability in "
            "the tables is the calibrated one (before and after: Calibration, below)."]


def _calibration_worse(cal: dict) -> str | None:
    """A sentence when calibration made the ensemble's test log-loss or ECE worse."""
    ens = (cal or {}).get("ensemble") or {}
    test = ens.get("test") or {}
    worse = [name for key, name in (("log_loss", "log-loss"), ("ece", "ECE"))
             if key in test and test[key]["after"] is not None and test[key]["before"] is not None
             and test[key]["after"] > test[key]["before"]]
    if not worse:
        return None
    return (f"Temperature calibration made the ensemble's test {' and '.join(worse)} worse (" + ", ".join(
        f"{name} {_num(test[key]['before'])} → {_num(test[key]['after'])}" for key, name in
        (("log_loss", "log-loss"), ("ece", "ECE")) if name in worse) + "): fitted on few rows, it did not carry over.")


def _calibration_md(cal: dict | None) -> list[str]:
    if not cal:
        return []
    out = ["", "## Calibration", "", "Reliability diagrams of the best single member and the best ensemble: "
           "`calibration.png`.", ""]
    if cal["method"] == "none":
        return out + [f"Probabilities {cal['note']}"]
    out += [f"Temperature scaling, fitted on {cal['fitted_on']}. {cal['note']}", "",
            "| model | T | val log-loss | val ECE | test log-loss | test ECE |", "| --- | --- | --- | --- | --- | --- |"]

    def arrow(pair: dict) -> str:
        return f"{_num(pair['before'])} → {_num(pair['after'])}"

    for name, m in cal["members"].items():
        out.append(f"| {name} | {_num(m['temperature'])} | {arrow(m['val']['log_loss'])} | {arrow(m['val']['ece'])} "
                   f"| {arrow(m['test']['log_loss'])} | {arrow(m['test']['ece'])} |")
    ens = cal.get("ensemble")
    if ens:
        out.append(f"| {ens['method']} (best ensemble; before = fitted on the unscaled members) | "
                   f"{_num(ens['output_temperature'])} | | | {arrow(ens['test']['log_loss'])} | "
                   f"{arrow(ens['test']['ece'])} |")
    worse = _calibration_worse(cal)
    if worse:
        out += ["", f"**{worse}**"]
    return out


_ON_EFFECTIVE = (" on effective counts (the eye count divided by the design effect of patients' eyes, which are not "
                 "independent)")


def _on_effective(report: dict | None, *, eyes: bool | None = None) -> str:
    """:data:`_ON_EFFECTIVE`, of eyes on the DR grades and of images otherwise (``eyes`` decides when given)."""
    eyes = (report is None or is_dr(report)) if eyes is None else eyes
    return _ON_EFFECTIVE if eyes else _ON_EFFECTIVE.replace("eye", "image")

GLOSSARY = (
    ("Out-of-fold (OOF)", "a prediction for a row made by a copy of the model that did not see that row while "
     "fitting (the rows that choose — val, or every train+val row when all members are k-fold — are split into folds; "
     "each fold is predicted by a copy fitted on the others). Scores on "
     "out-of-fold rows are honest estimates; scores on the rows a model was fitted on are optimistic."),
    ("QWK", "quadratic weighted kappa: agreement between predicted and true grades, 1 = perfect, 0 = no better than "
     "chance; a prediction two grades off costs four times as much as one grade off. The Kaggle DR metric."),
    ("ECE", "expected calibration error: how far the stated confidence is from the observed accuracy, averaged over "
     "confidence bins (0 = a model that says 80 % is right 80 % of the time). The confidence is the model's "
     "probability of the grade it gives and the accuracy that grade's (a hard vote's tie-break, a '+thr' grade). "
     "Lower is better."),
    ("McNemar's test", "looks only at the rows exactly one of two models gets right and asks whether one model wins "
     "those rows more often than a coin flip would; a small p says the two models really differ. When the split is "
     "grouped by patient, each patient's wins and losses are summed first and the test is exact over patients, since "
     "a patient's two eyes are not independent; otherwise rows are counted as independent."),
    ("Yule's Q", "whether two members make their mistakes on the same rows: 1 = always the same rows, 0 = unrelated, "
     "negative = different rows. Members with low or negative Q help each other most in a vote."),
    ("Referable DR", "diabetic retinopathy of the cut grade or worse (grade 2, moderate, by default): the eyes a "
     "screening programme sends to an eye specialist. Sensitivity = share of those eyes the model flags; "
     "specificity = share of the other eyes it lets pass."),
    ("Referral", "sending an eye to a human grader: either because it looks referable, or (`predict`'s `review`) "
     "because the ensemble is not confident enough about its grade, no member gives that grade, or the grade and "
     "the referable call disagree."),
    ("Operating point", "the threshold on P(referable) at which an eye is called referable: the highest one that "
     "flags the sensitivity target's share (90 % by default) of the referable val eyes; test then shows what that "
     "threshold does on eyes it was not chosen on."),
    ("Effective count", "with two eyes of a patient, which tend to agree, the eyes count as fewer independent "
     "observations: the eye count divided by the design effect (how much more the proportion varies between "
     "patients than it would between independent eyes). The exact (Clopper-Pearson) interval of a proportion is "
     "computed on it, so it is as wide as the patients make it."),
    ("Majority baseline", "always answering the most common grade of the rows that choose (val, or the out-of-fold "
     "rows); a model below it on accuracy has learned "
     "less than the class frequencies (marked †)."),
    ("Balanced accuracy", "the mean, over the grades present in the split, of the share of each grade's eyes graded "
     "right: every grade counts the same, however rare, so always answering 'no DR' scores 1/k with k the grades "
     "present (a grade with no eye in the split is left out, as scikit-learn does), not the share of healthy eyes."),
    ("Macro-F1", "the mean of F1 (the harmonic mean of precision and recall for that grade) over the grades present "
     "in the split or predicted."),
    ("AUC", "area under the ROC curve: the chance that a random eye of a grade scores higher for that grade than a "
     "random eye of another; here the mean over the grades present in the split, one against the rest (0.5 = "
     "chance, 1 = perfect). For referable DR, the AUC of P(referable)."),
    ("Log-loss", "how much probability a model gave the true grade, on a log scale; lower is better, and a "
     "confident wrong grade costs most. A hard vote's probabilities are its vote shares, often 0 for the true grade, "
     "so its log-loss is large by construction."),
    ("Combiners", "how member predictions are joined: hard = majority vote of their grades; soft = mean of their "
     "probabilities; weighted = a weighted mean with weights fitted on the selection rows; caruana = greedy "
     "selection of members, with repeats, that most improves the selection metric; stack = a logistic regression "
     "on all members' probabilities. '+thr' cuts the expected grade at thresholds tuned for QWK instead of taking "
     "the most probable grade."),
    ("Paired bootstrap", "the test eyes are resampled with replacement 1,000 times and every model is scored on the "
     "same resamples; the middle 95 % of a score, or of a difference between two models, is its interval. When the "
     "split is grouped by patient, whole patients are drawn (both eyes together, since a patient's two eyes tend to "
     "share a grade); otherwise eyes are drawn as if independent, and the intervals are too narrow if several "
     "images come from one patient. Set-up says which."),
    ("Coverage", "the share of eyes the ensemble grades without sending them to a human grader."),
    ("Temperature", "one number dividing a model's logits before the softmax, fitted so that its stated "
     "probabilities match its accuracy; it never changes which grade is most probable."),
)


DR_GRADES = ("for diabetic retinopathy on the International Clinical DR scale (as EyePACS, IDRiD and APTOS grade): "
             "0 no diabetic retinopathy, 1 mild, 2 moderate, 3 severe non-proliferative, 4 proliferative.")

GENERIC_GLOSSARY = {
    "ECE": ("expected calibration error: how far the stated confidence is from the observed accuracy, averaged over "
            "confidence bins (0 = a model that says 80 % is right 80 % of the time). The confidence is the model's "
            "probability of the class it gives and the accuracy that class's (a hard vote's tie-break). Lower is "
            "better."),
    "McNemar's test": ("looks only at the rows exactly one of two models gets right and asks whether one model wins "
                       "those rows more often than a coin flip would; a small p says the two models really differ. When "
                       "the split is grouped by patient, each patient's wins and losses are summed first and the test is "
                       "exact over patients; otherwise rows are counted as independent."),
    "QWK": ("quadratic weighted kappa; with two classes it is Cohen's kappa: agreement between predicted and true "
            "classes beyond chance, 1 = perfect, 0 = no better than chance."),
    "Referral": ("sending an image to a human reader (`predict`'s `review`) because the ensemble is not confident "
                 "enough about its class, no member gives that class, or (two classes) the class and the positive "
                 "call disagree."),
    "Majority baseline": ("always answering the most common class of the rows that choose (val, or the "
                          "out-of-fold rows); a model below it on accuracy has learned "
                          "less than the class frequencies (marked †)."),
    "Balanced accuracy": ("the mean, over the classes present in the split, of the share of each class's images "
                          "classified right: every class counts the same, however rare, so always answering the "
                          "majority class scores 1/k with k the classes present (a class with no image in the split "
                          "is left out, as scikit-learn does)."),
    "Macro-F1": ("the mean of F1 (the harmonic mean of precision and recall for that class) over the classes present "
                 "in the split or predicted."),
    "AUC": ("area under the ROC curve: the chance that a random image of a class scores higher for that class than a "
            "random image of another; the mean over the classes present in the split, one against the rest (0.5 = "
            "chance, 1 = perfect)."),
    "Log-loss": ("how much probability a model gave the true class, on a log scale; lower is better, and a confident "
                 "wrong class costs most. A hard vote's probabilities are its vote shares, often 0 for the true "
                 "class, so its log-loss is large by construction."),
    "Combiners": ("how member predictions are joined: hard = majority vote of their classes; soft = mean of their "
                  "probabilities; weighted = a weighted mean with weights fitted on the selection rows; caruana = greedy "
                  "selection of members, with repeats, that most improves the selection metric; stack = a logistic "
                  "regression on all members' probabilities."),
    "Paired bootstrap": ("the test images are resampled with replacement 1,000 times and every model is scored on the "
                         "same resamples; the middle 95 % of a score, or of a difference between two models, is its "
                         "interval. When the split is grouped by patient, a patient's images are drawn together; "
                         "otherwise images are drawn as if independent. Set-up says which."),
    "Coverage": "the share of images the ensemble classifies without sending them to a human reader.",
    "Temperature": ("one number dividing a model's logits before the softmax, fitted so that its stated probabilities "
                    "match its accuracy; it never changes which class is most probable."),
    "Operating point": ("the threshold on P(positive class) at which an image is called positive: the highest one "
                        "that calls the sensitivity target's share (90 % by default) of the positive val images; test "
                        "then shows what that threshold does on images it was not chosen on."),
    "Effective count": ("with several images of a patient, which tend to agree, the images count as fewer independent "
                        "observations: the image count divided by the design effect. The exact (Clopper-Pearson) "
                        "interval of a proportion is computed on it."),
}


GRADED_GLOSSARY = {
    "QWK": ("quadratic weighted kappa: agreement between predicted and true grades, 1 = perfect, 0 = no better than "
            "chance; a prediction two grades off costs four times as much as one grade off."),
    "Referable DR": ("Positive at the cut grade", "a grade at or above the cut grade (`vote --referable-grade`, 2 by "
                     "default): sensitivity = share of those images the model flags (P(grade >= cut) at or above its "
                     "threshold); specificity = share of the other images it lets pass."),
    "Referral": ("sending an image to a human grader (`predict`'s `review`) because the ensemble is not confident enough "
                 "about its grade, no member gives that grade, or the grade and the call at the cut grade disagree."),
    "Operating point": ("the threshold on P(grade >= cut) at which an image is flagged: the highest one that flags the "
                        "sensitivity target's share (90 % by default) of the positive val images; test then shows what "
                        "that threshold does on images it was not chosen on."),
    "AUC": ("area under the ROC curve: the chance that a random image of a grade scores higher for that grade than a "
            "random image of another; the mean over the grades present in the split, one against the rest (0.5 = "
            "chance, 1 = perfect). At the cut grade, the AUC of P(grade >= cut)."),
    "Coverage": "the share of images the ensemble grades without sending them to a human grader.",
}
"""Ordered grades that are not DR's: :data:`GLOSSARY`'s grade words without eyes or DR (``Referable DR`` renamed), the
generic entries of :data:`GRADED_FROM_GENERIC`."""
GRADED_FROM_GENERIC = ("McNemar's test", "Effective count", "Balanced accuracy", "Paired bootstrap")


def _glossary_md(report: dict | None = None) -> list[str]:
    """The glossary: DR words (eyes, grades, referable DR) for DR grades, grade words without eyes for other ordered
    grades, plain words (images, classes) else; no QWK entry on nominal classes (the tables leave it out)."""
    entries = list(GLOSSARY)
    ref = (report or {}).get("referable") or {}
    if report is not None and not ref.get("applicable"):  # no operating point in this report
        entries = [(term, words) for term, words in entries if term != "Operating point"]
    if report is not None and not ((report.get("bootstrap") or {}).get("clustered")):  # no effective counts either
        entries = [(term, words) for term, words in entries if term != "Effective count"]
    if report is not None and is_graded(report) and not is_dr(report):
        entries = [GRADED_GLOSSARY[term] if term == "Referable DR" else
                   (term, GENERIC_GLOSSARY[term] if term in GRADED_FROM_GENERIC else GRADED_GLOSSARY.get(term, words))
                   for term, words in entries]
    elif report is not None and not is_dr(report):
        entries = [(term, GENERIC_GLOSSARY.get(term, words)) for term, words in entries
                   if term != "Referable DR" and not (term == "QWK" and report.get("ordinal", True) is False
                                                      and report.get("num_classes") != 2)]
        ref = report.get("referable") or {}
        if ref.get("kind") == "positive_class":
            entries.append(("Sensitivity and specificity", f"the share of class-{ref['positive_class']} images the "
                            "model calls that class, and the share of the other images it does not."))
    n_boot = ((report or {}).get("bootstrap") or {}).get("n_boot")
    if isinstance(n_boot, int):
        entries = [(term, words.replace("1,000 times", f"{n_boot:,} times")) for term, words in entries]
    if report is not None and is_dr(report) and report.get("num_classes") == 5 and all(
            str(c) == str(i) for i, c in enumerate(report.get("classes") or range(5))):
        entries.insert(0, ("Grades", DR_GRADES))
    return ["", "## Glossary", ""] + [f"- **{term}**: {words}" for term, words in entries]


def _order_words(report: dict) -> str:
    if report.get("ordinal", True) is False:
        return "nominal, unordered"
    return "two classes" if report.get("num_classes") == 2 else "ordered grades"


def summary_lines(report: dict) -> list[str]:
    """Plain lines printed under the table: the synthetic-data caveat, skipped members, referable DR, calibration."""
    out = ([f"SYNTHETIC DATA (demo-data), not real eyes: these figures show the tool at work, not clinical "
            f"performance."] if (report.get("data") or {}).get("synthetic") else [])
    out += [f"Skipped {line}" for line in _skipped_lines(report)]
    ref = report.get("referable") or {}
    if ref.get("applicable"):
        for role in ("best_single", "ensemble"):
            r = ref[role]
            what = summary_title(ref, _classes(report))
            exact = "exact 95 % intervals" + (" on effective counts" if ref.get("clustered") else "")
            out.append(f"{what}, {r['name']}: test sensitivity {_ci_text(r['sensitivity'], 2)} and "
                       f"specificity {_ci_text(r['specificity'], 2)} ({exact}), AUC {_ci_text(r['auc'], 2)} "
                       f"(95 % bootstrap CI) at threshold "
                       f"{_exact(r['threshold'], 3)} ({_choosing(ref, short=True)} sensitivity "
                       f"{_num(r['val_sensitivity'], 2)}, target "
                       f"{ref['sensitivity_target']:.0%}){_missed_words(ref, r, is_dr(report))}.")
            if r.get("warning"):
                out.append(f"WARNING: {r['warning']}")
    elif ref and is_graded(report):
        out.append(ref["note"])
    if (report.get("referral") or {}).get("warning"):
        out.append(f"WARNING (review referral, `predict`'s refer): {report['referral']['warning']}")
    cal = report.get("calibration") or {}
    if cal.get("method") == "temperature" and cal.get("ensemble"):
        e = cal["ensemble"]["test"]

        def change(entry: dict) -> str:  # lower is better for both
            before, after = entry["before"], entry["after"]
            word = ("" if before is None or after is None or after == before
                    else " (better)" if after < before else " (worse)")
            return f"{_num(before)} → {_num(after)}{word}"

        out.append(f"Calibration (temperature, fitted on {cal['fitted_on'].split(';')[0]}): "
                   f"{cal['ensemble']['method']} test log-loss {change(e['log_loss'])}, ECE {change(e['ece'])}.")
    return out


def print_table(report: dict, console=None) -> None:
    """The test comparison as a Rich table on ``console`` (stdout by default), best values in bold.

    Rows: the majority-class baseline, the members, the ensembles; ``*`` marks the best
    single member and ``**`` the best ensemble (both chosen on val).
    """
    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    styled = console.color_system is not None  # redirected to a file or a pipe, bold is lost: a mark instead
    table = Table(title=f"Test set, n={report['test_size']}: value and 95 % bootstrap CI",
                  box=box.SIMPLE_HEAD, padding=(0, 0), show_edge=False,
                  caption=(f"* best single member, ** best ensemble (chosen on {chosen_on(report)}); "
                           f"{'bold' if styled else BEST_MARK} = best on test; "
                           f"{BELOW} = accuracy below the majority class"
                           + (f"; {ONE_CLASS} = one class for every test row" if report.get("one_class") else "")
                           + (f"; {COLLAPSED} = a collapsed member (one class or chance on the rows that judged it), "
                              "voted by --keep-collapsed" if report.get("collapsed_kept") else "")
                           + (f"; {ZERO_WIDTH} = an interval of zero width: conditional on the test split's "
                              f"{'grade' if is_dr(report) else 'class'} mix, not exact (report.md says why)"
                              if _zero_width(report) else "")))
    table.add_column("model", no_wrap=True)
    cols = columns(report)
    for _, short in cols:
        table.add_column(short, justify="right", no_wrap=True)
    best = _best_per_metric(report)
    marks = {report.get("best_single"): " *", report.get("best_method"): " **"}
    for name, kind, m in _rows(report):
        cells = []
        for key, _ in cols:
            top = name in best.get(key, ())
            text = _num(m[key]["value"]) + (BEST_MARK if top and not styled else "")
            if _flat(report, name, kind, key):  # rounded outward it would look wide: as it is, marked
                text += f"\n[dim]{_short(m[key]['ci'][0])}–{_short(m[key]['ci'][1])}{ZERO_WIDTH}[/dim]"
            elif m[key].get("ci") is not None:
                lo, hi = m[key]["ci"]
                text += f"\n[dim]{_short(lo, 'lo')}–{_short(hi, 'hi')}[/dim]"  # outward: it holds the value
            cells.append(f"[bold green]{text}[/bold green]" if top and styled else text)
        end = kind == "baseline" or name == list(report["members"])[-1]
        label = "majority class" if kind == "baseline" else name + marks.get(name, "")
        label += f" {COLLAPSED}" if kind == "member" and name in (report.get("collapsed_kept") or ()) else ""
        label += f" {ONE_CLASS}" if kind != "baseline" and name in (report.get("one_class") or ()) else ""
        label += f" {BELOW}" if _below(name, kind, report) else ""
        table.add_row(escape(label), *cells, end_section=end)
    console.print(table)
    for line in summary_lines(report):
        console.print(escape(line))
    console.print(escape(report["verdict"]))
