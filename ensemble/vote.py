"""``vote``: fit the combiners on val, compare everything on test, write the report.

Nothing is chosen on test: the combiners are fitted on the val split, the best single
member and the best method are picked by their val scores (methods by out-of-fold val
scores, see :mod:`ensemble.crossfit`), and the referral threshold is set on val. Test
only measures, with paired bootstrap intervals (the same resamples for every model).

When every voted member is a k-fold member (``--folds K``), "val" above means every
train+val row, each predicted out of fold (:func:`ensemble.crossfit.oof_protocol`): the
same rules on about six times the rows. A mixed workdir keeps the val split and says so.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ensemble import stats
from ensemble.constants import MINIMISED_SELECT_BY, SELECT_BY, THR, THRESHOLD_MODES
from ensemble.crossfit import bagging_gain, cross_fit, oof_protocol
from ensemble.manifest import after_commit, output_folder, transactional
from ensemble.member_set import MemberSet, load_members
from ensemble.referral import ReviewRule, call_score, referred, review_flags
from members.infra.errors import UserError
from members.scoring import confusion, nan_to_none, qwk_for_task, score

MAX_BOOT = 100_000  # resamples × test rows are held in memory at once
METRIC_LABELS = {"qwk": "QWK", "accuracy": "accuracy", "balanced_accuracy": "balanced accuracy",
                 "macro_f1": "macro-F1", "auc": "AUC", "log_loss": "log-loss"}


SMALL_TEST = 50  # test rows below which the verdict says its intervals cannot be trusted
FEW_ROWS = 3  # test rows of a class below which the same is said (two: a resample of it is one of four)

@dataclass(frozen=True)
class Predictions:
    """One model's outputs on val (out-of-fold for methods) and on test."""

    val_probs: np.ndarray
    val_pred: np.ndarray
    test_probs: np.ndarray
    test_pred: np.ndarray


@transactional
def run_vote(
    workdir: str | Path,
    *,
    methods: Sequence[str] = ("all",),
    members: Sequence[str] | None = None,
    thresholds: str | bool = "auto",
    n_boot: int = 1000,
    seed: int = 0,
    target_coverage: float = 0.9,
    select_by: str | None = None,
    keep_collapsed: bool = False,
    referable_grade: int | None = None,
    sensitivity_target: float = 0.90,
    positive_class: str | int | None = None,
    calibrate: str = "none",
    console=None,
) -> dict:
    """Fit the combiners on val, score baseline, members and methods on test, write the report.

    Args:
        workdir: a workdir with at least two complete members.
        methods: combiner methods (:data:`ensemble.combiners.METHODS`), ``"all"``, or
            ``"<method>+thr"`` for one thresholded variant.
        members: member names to vote; ``None`` = every complete member.
        thresholds: ``"auto"`` adds a ``<method>+thr`` variant of every method when the
            classes are ordered grades (3 or more); ``"on"`` always, ``"off"`` never.
        n_boot: bootstrap resamples for the 95 % intervals.
        seed: seed of the resamples and of the cross-fitting folds.
        target_coverage: share of val rows the referral threshold keeps.
        select_by: the val metric that picks the best single member and the best method
            (:data:`SELECT_BY`; ``log_loss`` is minimised, the others maximised; ties go to
            macro-F1 — to accuracy first for AUC and log-loss, which cannot tell a method
            from its ``+thr`` variant). ``None``: QWK, the Kaggle DR metric, for ordered
            grades; macro-F1 for nominal classes (QWK assumes an order), said on stderr.
        keep_collapsed: also vote members whose ``metrics.json`` says ``collapsed: true``
            (they predict one class on val); by default they are left out and listed under
            ``skipped`` with the reason.
        referable_grade: the lowest referable grade of the referable-DR summary (ordinal
            grade tasks only; skipped with a note otherwise).
        sensitivity_target: val sensitivity of the referable-DR operating point.
        positive_class: on a two-class task, the class (name or index) whose sensitivity and
            specificity are reported (default: index 1).
        calibrate: ``"temperature"`` fits a temperature per member and for each combiner's
            output on val (saved in the combiner JSON, applied by ``predict``); ``"none"``.
        console: a Rich console for the table; ``None`` prints on stdout.

    The whole ``ensemble/`` folder (combiners, report, plots, ``manifest.json``) is one
    transaction: written beside the old one under the workdir's vote lock and swapped in
    at once (:func:`ensemble.manifest.transactional`).

    Returns:
        The ``report.json`` dict (``nan`` as ``None``).

    Raises:
        UserError: bad options, or a workdir that cannot be voted (see :func:`load_members`).

    Example:
        >>> report = run_vote("runs/dr", methods=["soft", "stack"])  # doctest: +SKIP
        >>> report["best_method"]  # doctest: +SKIP
        'soft+thr'
    """
    from members.infra.validate import check_seed

    check_seed(seed, "--seed")
    if n_boot < 1:
        raise UserError(f"--bootstrap (n_boot) must be at least 1 resample; got {n_boot}. Pass e.g. --bootstrap 1000.")
    if n_boot > MAX_BOOT:
        raise UserError(f"n_boot must be at most {MAX_BOOT:,} (the resamples are held in memory); got {n_boot}. "
                        "Pass --bootstrap 1000.")
    if select_by is not None and select_by not in SELECT_BY:
        raise UserError(f"select_by must be one of {', '.join(SELECT_BY)}; got {select_by!r}. "
                        "Pass e.g. --select-by qwk.")
    if not 0.0 < target_coverage <= 1.0:
        raise UserError(f"--coverage (target_coverage) must be a share in (0, 1]; got {target_coverage}. Pass e.g. "
                        "--coverage 0.9.")
    workdir = Path(workdir)
    from ensemble import calibration, referable

    calibrate = calibration.check_calibration(calibrate)
    if not 0.0 < sensitivity_target <= 1.0:  # before any member is read
        raise UserError(f"--sensitivity-target must be in (0, 1]; got {sensitivity_target}. Pass e.g. "
                        "--sensitivity-target 0.9.")
    ms = drop_collapsed(load_members(workdir, members), keep=keep_collapsed)
    _say_probabilities_only(ms)
    ms, protocol = oof_protocol(workdir, ms)  # k-fold members: "val" becomes every out-of-fold train+val row
    _refuse_one_class(ms, protocol)
    lacking = _missing_classes(workdir, ms, protocol)
    variants = resolve_methods(methods, thresholds, ms.num_classes, ordinal=ms.ordinal)
    select_by = default_select_by(select_by, ms.ordinal)
    referable_grade, positive = _summary_options(ms, referable_grade, sensitivity_target, positive_class)
    raw, temps = ms, None
    if calibrate == "temperature":
        ms, temps = calibration.calibrate_members(ms)
    out = output_folder(workdir)  # a staging folder, swapped in whole at the end (see ensemble.manifest)
    baseline_class, baseline = _baseline(ms)
    models = {name: Predictions(val, val.argmax(1), test, test.argmax(1))
              for name, val, test in zip(ms.names, ms.val_probs, ms.test_probs)}
    methods_out, saved, out_temps, weights = _fit_methods(ms, variants, out / "combiners", seed, temps=temps, raw=raw)
    val = {"baseline": score(ms.val_labels, baseline.val_probs, pred=baseline.val_pred),
           "members": {n: _val_score(ms, p) for n, p in models.items()},
           "ensembles": {n: _val_score(ms, p) for n, p in methods_out.items()}}
    best_single, best_method = _select(val["members"], select_by), _select(val["ensembles"], select_by)
    indices = stats.bootstrap_indices(len(ms.test_labels), n_boot, seed, stratify=ms.test_labels,
                                      groups=ms.test_groups)

    def test(p: Predictions) -> dict:
        return stats.bootstrap_metrics(ms.test_labels, p.test_probs, p.test_pred, indices=indices)

    single, best = models[best_single], methods_out[best_method]
    summary = referable.referable_section(
        {"best_single": (best_single, ((single.val_probs, ms.val_labels),
                                       (single.test_probs, ms.test_labels, single.test_pred))),
         "ensemble": (best_method, ((best.val_probs, ms.val_labels),
                                    (best.test_probs, ms.test_labels, best.test_pred)))},
        classes=ms.classes, ordinal=ms.ordinal, cut=referable_grade, target=sensitivity_target, indices=indices,
        member_auc=_referable_auc(ms, models, referable_grade, positive), rows=_rows_word(protocol),
        positive=positive)
    uncal = _uncalibrated(raw, best_method, out_temps, best) if temps else None
    difference = {"method": best_method, "vs": best_single, "metrics": stats.bootstrap_difference(
        ms.test_labels, (best.test_probs, best.test_pred), (single.test_probs, single.test_pred), indices=indices)}
    if summary.get("applicable") and summary.get("kind") == "referable_dr":
        difference["referable_auc"] = _referable_difference(ms.test_labels, summary, best, single, indices)
    report = {
        "test_size": len(ms.test_labels),
        "val_size": len(ms.val_labels),
        "protocol": protocol.to_dict(),
        "num_classes": ms.num_classes,
        "classes": ms.classes,
        "ordinal": ms.ordinal,
        "baseline": test(baseline),
        "baseline_class": baseline_class,
        "members": {n: test(p) for n, p in models.items()},
        "ensembles": {n: test(p) for n, p in methods_out.items()},
        "best_single": best_single,
        "best_method": best_method,
        "best_method_weights": weights.get(best_method),
        "selection_metric": _selection_note(select_by, _rows_word(protocol)),
        "significance": _significance(ms.test_labels, methods_out, best_single, single, groups=ms.test_groups),
        "difference": difference,
        "diversity": stats.diversity(ms.test_labels, {n: p.test_pred for n, p in models.items()}),
        "val": val,
        "data": _data_words(workdir),
        "referable": summary,
        "referral": _referral(ms, best, target_coverage, call=call_rule(summary), majority=baseline_class),
        "calibration": calibration.calibration_section(
            raw, ms if temps else None, temps, uncal, rows=_rows_word(protocol)),
        "collapsed_kept": [n for n in ms.names if is_collapsed(ms.metrics[n])],
        "imported": [n for n in ms.names if (ms.metrics[n] or {}).get("imported")],  # report.md's kind column says so
        "val_missing_classes": lacking,
        "skipped": ms.skipped,
        "thresholds": _threshold_note(thresholds, ms.num_classes, variants, ms.ordinal, _rows_word(protocol)),
        "combiner_protocol": (
            f"fitted on {_rows_word(protocol)} only and evaluated on test; their scores there are out-of-fold (each "
            "row is predicted by a copy fitted on the other folds, up to 5 stratified folds), so the best method is "
            "chosen without in-sample optimism. Saved as ensemble/combiners/<method>.json."),
        "combiners": saved,
        "bootstrap": {"n_boot": n_boot, "seed": seed, "level": 0.95, "stratified": True, **_bootstrap_words(
            indices, n_boot, seed, len(ms.test_labels), graded=bool(ms.ordinal) and ms.num_classes >= 3,
            eyes=bool(ms.ordinal) and referable.dr_grades(ms.classes or range(ms.num_classes))),
            "single_row_classes": [ms.classes[c] if c < len(ms.classes or []) else c for c, n in
                                   enumerate(np.bincount(ms.test_labels, minlength=ms.num_classes).tolist()) if n == 1],
            "few_row_classes": {str(ms.classes[c] if c < len(ms.classes or []) else c): n for c, n in
                                enumerate(np.bincount(ms.test_labels, minlength=ms.num_classes).tolist())
                                if n < FEW_ROWS},
            "test_rows": int(len(ms.test_labels))},
    }
    if isinstance(indices, stats.GroupDraws):  # a grade whose stratum holds one patient is never varied either
        worst = np.full(indices.groups, -1)
        np.maximum.at(worst, indices.row_group, ms.test_labels)
        report["bootstrap"]["single_patient_classes"] = [
            ms.classes[c] if c < len(ms.classes or []) else c for c, n in
            enumerate(np.bincount(worst, minlength=ms.num_classes).tolist()) if n == 1]
    bagging = bagging_gain(workdir, ms, indices)  # k-fold members: K-fold average vs one copy, on test
    if bagging:
        report["bagging"] = bagging
    if protocol.note:  # the out-of-fold protocol, or why a mixed workdir fell back to val
        report["protocol_note"] = protocol.note
        if protocol.name == "oof":
            report["combiner_protocol"] = f"{protocol.note}. Saved as ensemble/combiners/<method>.json."
    report["selection"] = _selection(ms, val, models, methods_out, (best_single, best_method), select_by,
                                     n_boot=n_boot, seed=seed, rows=_rows_word(protocol), protocol=protocol.name)
    report["appearance"] = _appearance(workdir, out, seed)
    report["below_baseline"] = _below_baseline(report)
    shifted = _test_majority(report, ms.test_labels)
    if shifted:
        report["test_majority"] = shifted
    report["one_class"] = [n for n, p in {**models, **methods_out}.items()  # the majority class in effect
                           if len(np.unique(p.test_pred)) == 1 and len(np.unique(ms.test_labels)) > 1]
    report["val_below_baseline"], report["val_one_class"] = _val_marks(val, {**models, **methods_out}, ms.val_labels)
    report["outcome"] = _outcome(report, select_by)
    report["verdict"] = _verdict(report, select_by)
    report = nan_to_none(qwk_for_task(report, ordinal=ms.ordinal, num_classes=ms.num_classes))  # no order: no QWK
    before = None if uncal is None else ((raw.test_probs[raw.names.index(best_single)], None), (uncal[2], uncal[4]))
    _write_outputs(out, report, ms, single, best, before=before)
    after_commit(lambda: _show(report, console, workdir))  # not for a vote discarded at its end
    return report


def _show(report: dict, console, workdir: Path) -> None:
    """The table and verdict on ``console``, then on stderr where the full report and its figures are."""
    from ensemble.manifest import ENSEMBLE
    from ensemble.report import print_table

    print_table(report, console)
    folder = Path(workdir) / ENSEMBLE
    figures = sorted(p.name for p in folder.glob("*.png"))
    print(f"Report: {folder / 'report.md'} (report.json for scripts)"
          + (f"; figures beside it: {', '.join(figures)}" if figures else "") + ".", file=sys.stderr)


def _appearance(workdir: Path, out: Path, seed: int) -> dict:
    """Write ``out/appearance.json``, the range of the training and validation images' looks that
    ``predict`` screens inputs against (:mod:`ensemble.appearance`, numpy and Pillow); its summary
    for ``report.json``."""
    from ensemble import appearance
    from members.data.dataset import load_dataset

    try:
        data = load_dataset(workdir)
    except UserError as exc:  # replaced while this vote ran: the transaction refuses the vote (ensemble.manifest)
        return {"screen": False, "reason": f"the dataset could not be read ({exc})"}
    listed = [*data.absolute_paths("train"), *data.absolute_paths("val")]
    ref, why = appearance.fit_reference(listed, source="training and validation", seed=seed)
    if ref is None:
        if not Path(data.image_root).is_dir():
            why = f"the image folder {data.image_root} is not there (moved or unmounted?)"
        if len(listed) >= appearance.MIN_IMAGES:  # enough images listed, too few read: say so (a small set is quiet)
            print(f"Note: predict will not screen inputs for images unlike the training images: {why}.",
                  file=sys.stderr)
        return {"screen": False, "reason": why}
    from members.infra.atomic import write_json

    write_json(out / appearance.FILE, ref)
    return {"screen": True, "images": ref["images"], "listed": len(listed), "source": ref["source"],
            "file": appearance.FILE, "rule": ref["rule"]}


def is_collapsed(metrics: dict) -> bool:
    """Whether a member's ``metrics.json`` marks it as collapsed (predicting one class on val)."""
    return bool(metrics.get("collapsed", False))


def _collapse_reason(metrics: dict) -> str:
    from members.training.collapse import one_sided_words

    info = metrics.get("collapse")
    detail = next((one_sided_words(info[key]) for key in ("reason", "message", "note")  # an older member's words too
                   if isinstance(info, dict) and isinstance(info.get(key), str)), None)
    return (f"collapsed: {detail or 'its val predictions fall into one class'} "
            "(metrics.json collapsed: true; vote --keep-collapsed keeps it)")


def _judged_again(ms: MemberSet, j: int) -> str | None:
    """The collapse reason of member ``j`` judged again on its ``val.npz`` by training's rule
    (:func:`members.training.collapse.judge`), when its ``metrics.json`` says it did not collapse: a hand-edited or
    older ``collapsed: false`` is not taken on trust. None when it learned, or for a k-fold member (judged on its
    out-of-fold rows, not on ``val.npz``)."""
    from members.training.collapse import judge

    if ms.metrics[ms.names[j]].get("folds"):
        return None
    probs = ms.val_probs[j]
    collapsed, info = judge(probs, ms.val_labels, score(ms.val_labels, probs, num_classes=ms.num_classes), ms.classes,
                            judged_on="argmax of val.npz", spec=None, ordinal=ms.ordinal)
    if not collapsed:
        return None
    return (f"collapsed: {info['reason']} (judged again on its val.npz; its metrics.json says collapsed: false; "
            "vote --keep-collapsed keeps it)")


def drop_collapsed(ms: MemberSet, *, keep: bool = False) -> MemberSet:
    """``ms`` without the members whose ``metrics.json`` says ``collapsed: true``, or whose ``val.npz`` training's
    rule judges collapsed (:func:`_judged_again`), listed in ``skipped``.

    Args:
        ms: the loaded members.
        keep: keep the collapsed members (``report.json`` then names them in ``collapsed_kept``).

    Raises:
        UserError: fewer than two members left; the message names the collapsed ones.
    """
    reasons = {name: _collapse_reason(ms.metrics[name]) for name in ms.names if is_collapsed(ms.metrics[name])}
    metrics = dict(ms.metrics)
    for j, name in enumerate(ms.names):  # metrics.json's word is not taken for it: its val.npz is judged again
        if name not in reasons and (again := _judged_again(ms, j)):
            reasons[name] = again  # and marked so in memory, for report.json's collapsed_kept (the file is left as is)
            metrics[name] = {**metrics[name], "collapsed": True}
    ms = replace(ms, metrics=metrics)
    collapsed = [name for name in ms.names if name in reasons]
    if keep and collapsed:
        for name in collapsed:
            print(f"Voting collapsed member {name!r} anyway (--keep-collapsed): {reasons[name]}.", file=sys.stderr)
    if keep or not collapsed:
        return ms
    kept = [j for j, name in enumerate(ms.names) if name not in collapsed]
    if len(kept) < 2:
        left = ", ".join(ms.names[j] for j in kept) or "none"
        raise UserError(
            f"vote needs at least two members that did not collapse, but {', '.join(collapsed)} collapsed "
            f"(they predict one class or sit at chance on the rows that judge them) and only {len(kept)} remain ({left}); "
            "retrain them with the remedies their training warning names, or pass --keep-collapsed to vote them anyway.")
    skipped = dict(ms.skipped)
    for name in collapsed:
        skipped[name] = reasons[name]
        print(f"Skipping member {name!r}: {skipped[name]}.", file=sys.stderr)
    return replace(ms, names=[ms.names[j] for j in kept], val_probs=ms.val_probs[kept], test_probs=ms.test_probs[kept],
                   metrics={ms.names[j]: ms.metrics[ms.names[j]] for j in kept}, skipped=skipped)


def default_select_by(select_by: str | None, ordinal: bool) -> str:
    """The selection metric: the one asked for, else QWK for grades and macro-F1 for nominal classes.

    Raises:
        UserError: QWK asked for on nominal classes.
    """
    if select_by is None:
        select_by = "qwk" if ordinal else "macro_f1"
        if not ordinal:
            print("Nominal classes: the best member and method are chosen by val macro-F1 (QWK assumes ordered "
                  "grades); pass --select-by to choose another metric.", file=sys.stderr)
    elif select_by == "qwk" and not ordinal:
        raise UserError("--select-by qwk needs ordered grades, but this workdir's classes are nominal (dataset.json "
                        "has ordinal false); choose macro_f1, balanced_accuracy or log_loss.")
    return select_by


def resolve_methods(methods: Sequence[str], thresholds: str | bool, num_classes: int, *,
                    ordinal: bool = True) -> list[tuple[str, str, bool]]:
    """``(name, base method, thresholds)`` for every variant to fit, in report order.

    Nominal classes (``ordinal`` false) never get grade thresholds: they cut an expected grade.
    """
    from ensemble.combiners import METHODS

    mode = {True: "on", False: "off"}.get(thresholds, thresholds)
    if mode not in THRESHOLD_MODES:
        raise UserError(f"thresholds must be one of {', '.join(THRESHOLD_MODES)}; got {thresholds!r}.")
    asked_thr = mode == "on" or any(m.endswith(THR) for m in methods)
    if not ordinal and asked_thr:
        raise UserError("Grade thresholds cut the expected grade, which needs ordered classes, but this workdir's "
                        "classes are nominal (dataset.json has ordinal false); drop --thresholds on and '+thr'. "
                        f"Received: methods={list(methods)}, thresholds={mode!r}")
    add_thr = mode == "on" or (mode == "auto" and num_classes >= 3 and ordinal)
    names: list[str] = []
    for method in methods:
        base, explicit_thr = method.removesuffix(THR), method.endswith(THR)
        if method != "all" and base not in METHODS:
            raise UserError(f"Unknown method {method!r}; expected 'all' or one of {', '.join(METHODS)} "
                            f"(optionally with '{THR}'). Received: methods={list(methods)}")
        for b in METHODS if method == "all" else (base,):
            names += [] if explicit_thr else [b]
            names += [b + THR] if add_thr or explicit_thr else []
    names = list(dict.fromkeys(names))
    if not names:
        raise UserError(f"No combiner method selected; expected one of {', '.join(METHODS)}. "
                        f"Received: methods={list(methods)}")
    return [(name, name.removesuffix(THR), name.endswith(THR)) for name in names]


def _baseline(ms: MemberSet) -> tuple[int, Predictions]:
    """The majority baseline: always the most common class of the choosing rows, with their class frequencies as
    probabilities, add-one (Laplace) smoothed — ``(count + 1) / (n + k)`` — so that a class those rows lack gets a
    small probability instead of 0 (whose clipped log-loss would swamp the baseline's)."""
    k = ms.num_classes
    counts = np.bincount(ms.val_labels, minlength=k)
    freq = (counts + 1.0) / (len(ms.val_labels) + k)
    cls = int(counts.argmax())
    n_val, n_test = len(ms.val_labels), len(ms.test_labels)
    return cls, Predictions(np.tile(freq, (n_val, 1)), np.full(n_val, cls),
                            np.tile(freq, (n_test, 1)), np.full(n_test, cls))


def _fit_methods(ms: MemberSet, variants, folder: Path, seed: int, *, temps=None,
                 raw: MemberSet | None = None) -> tuple[dict[str, Predictions], dict[str, str], dict[str, float],
                                                        dict[str, dict[str, float]]]:
    """Cross-fit each base method on val (out-of-fold scores), then fit every variant on all val rows.
    The last item returned: each variant's weight per member, where it combines by weights (not stacking).

    With member temperatures ``temps`` (``ms`` then holds the scaled members, ``raw`` the
    unscaled ones), each variant's output also gets a temperature fitted on its out-of-fold
    val output, and the saved combiner is the :class:`~ensemble.combiners.Calibrated` wrapper
    that ``predict`` applies to the raw member outputs.
    """
    from ensemble.combiners import Calibrated, TemperatureScaling

    from rich.console import Console
    from rich.progress import Progress

    from ensemble.combiners import make_combiner

    bases = list(dict.fromkeys(base for _, base, _ in variants))
    out, saved, out_temps, weights, outputs = {}, {}, {}, {}, []
    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("Fitting combiners on val", total=len(bases) + len(variants))
        oof = {}
        for base in bases:
            progress.update(task, description=f"Cross-fitting {base} on val")
            wants_thr = any(b == base and thr for _, b, thr in variants)
            oof[base] = cross_fit(base, ms.val_probs, ms.val_labels, thresholds=wants_thr, seed=seed)
            progress.advance(task)
        for name, base, thr in variants:
            progress.update(task, description=f"Fitting {name} on val")
            combiner = make_combiner(base, thresholds=thr).fit(ms.val_probs, ms.val_labels, member_names=ms.names)
            if getattr(combiner, "weights_", None) is not None:
                weights[name] = {m: float(w) for m, w in zip(ms.names, combiner.weights_)}
            fold = oof[base]
            val_probs, test_in = fold.probs, ms.test_probs
            if temps is not None:
                output = TemperatureScaling().fit(fold.probs, ms.val_labels)
                combiner, test_in = Calibrated(combiner, temps, output), raw.test_probs
                val_probs, out_temps[name] = output.predict_proba(fold.probs), output.temperature_
                outputs.append((name, output))
            saved[name] = (Path("ensemble") / combiner.save(folder / f"{name}.json").relative_to(folder.parent)).as_posix()
            out[name] = Predictions(val_probs, fold.pred_thr if thr else fold.pred,
                                    combiner.predict_proba(test_in), combiner.predict(test_in))
            progress.advance(task)
    if outputs:  # an output temperature at its bound, as a member's is: near one-hot shares (T 0.05), or flat ones
        from ensemble.calibration import warn_at_bound

        warn_at_bound(outputs, len(ms.val_labels))
    return out, saved, out_temps, weights


def _bootstrap_words(indices, n_boot: int, seed: int, rows: int, *, graded: bool = True, eyes: bool = True) -> dict:
    """``report.json``'s bootstrap ``clustered``, ``patients`` and ``note``: how the test rows were resampled
    (``graded``: ordered grades, else classes; ``eyes``: the DR grades, of a patient's eyes)."""
    common = (f"seed {seed}; the same resamples for every model, so differences are paired; percentile intervals, "
              "widened to contain the point value where the resamples are shifted away from it (ECE on small sets).")
    if isinstance(indices, stats.GroupDraws):
        return {"clustered": True, "patients": indices.groups, "single_patient_classes": [], "note": (
            f"{n_boot} bootstrap resamples of the {indices.groups} test patients ({rows} rows): the rows of a patient "
            f"{'(both eyes) ' if graded and eyes else ''}are drawn together, since they are not independent, and patients are "
            f"drawn within the class of their {'highest grade' if graded else 'highest-numbered class'} (so each such "
            f"stratum keeps its patient count); {common}")}
    return {"clustered": False, "note": (
        f"{n_boot} bootstrap resamples of the test rows, stratified by class (class counts kept, as in the split), "
        f"{common} The split is not grouped by patient, so rows are resampled as independent.")}


def _selection(ms: MemberSet, val: dict, models: dict[str, Predictions], methods_out: dict[str, Predictions],
               chosen: tuple[str, str], metric: str, *, n_boot: int, seed: int, rows: str, protocol: str) -> dict:
    """How clear the choices are on the rows that made them (val, or the out-of-fold rows).

    For the chosen member and the chosen method, each other candidate's difference in the selection
    ``metric`` (candidate minus chosen) with its 95 % paired-bootstrap CI on those rows; ``within_ci``
    names the candidates whose interval includes 0, best first: the rows cannot tell them from the
    chosen one. (The methods' val outputs are out-of-fold, so their differences are not in-sample.)
    """
    labels, k = ms.val_labels, ms.num_classes
    indices = stats.bootstrap_indices(len(labels), n_boot, seed + 1, stratify=labels, groups=ms.val_groups)
    sign = -1.0 if metric in MINIMISED_SELECT_BY else 1.0
    out = {"rows": int(len(labels)), "on": rows, "protocol": protocol, "metric": metric, "level": 0.95,
           "n_boot": int(n_boot)}
    if isinstance(indices, stats.GroupDraws):  # a class held by one patient never varies in these draws
        out["single_patient_classes"] = [ms.classes[c] for c in range(k)
                                         if len(np.unique(np.asarray(ms.val_groups)[labels == c])) == 1]

    def samples(p: Predictions) -> np.ndarray:
        return stats.bootstrap_samples(labels, p.val_probs, p.val_pred, indices=indices, num_classes=k,
                                       metrics=(metric,))[metric]  # the others (the AUC above all) cost and go unread

    for role, name, pool, preds in (("best_single", chosen[0], val["members"], models),
                                    ("best_method", chosen[1], val["ensembles"], methods_out)):
        base = samples(preds[name])
        others = {}
        for other, p in preds.items():
            value = pool[other][metric] - pool[name][metric]
            if other == name or math.isnan(value):
                continue
            lo, hi = stats.percentile_interval(samples(p) - base, value)
            others[other] = {"difference": float(value), "ci": [float(lo), float(hi)]}
        inside = sorted((o for o, d in others.items() if d["ci"][0] <= 0.0 <= d["ci"][1]),
                        key=lambda o: -sign * others[o]["difference"])
        out[role] = {"name": name, "value": float(pool[name][metric]), "others": others, "within_ci": inside,
                     "candidates": len(preds) - 1}
    return out


def _selection_words(r: dict, label: str) -> str:
    """One sentence when the rows that chose cannot tell the chosen member or method from others ("" if they can)."""
    sel = r.get("selection")
    if not sel:
        return ""
    parts = []
    for role, kind in (("best_method", "combiners"), ("best_single", "members")):
        c = sel[role]
        if c["within_ci"]:
            shown = ", ".join(c["within_ci"][:3]) + (", …" if len(c["within_ci"]) > 3 else "")
            parts.append(f"{c['name']} is not clearly ahead of {len(c['within_ci'])} of the other {c['candidates']} "
                         f"{kind} ({shown})")
    where = "val" if sel["protocol"] == "val" else "out-of-fold train+val"
    thin = [why for why, yes in (
        (f"only {sel['rows']} rows", sel["rows"] < 50),
        (f"{sel.get('n_boot')} bootstrap resamples", (sel.get("n_boot") or 1000) < 200),
        (f"class{'es' if len(sel.get('single_patient_classes') or []) > 1 else ''} "
         f"{', '.join(map(str, sel.get('single_patient_classes') or []))} held by one patient each",
         bool(sel.get("single_patient_classes")))) if yes]
    if thin:  # the intervals below cannot vary enough to say a choice is clear (zero-wide, or from a resample)
        return (f" The {sel['rows']} {where} rows that made the choices cannot show whether they are clear "
                f"({'; '.join(thin)}): take {sel['best_single']['name']} and {sel['best_method']['name']} as "
                "choices among near-equals.")
    if not parts:
        return ""
    advice = ("; k-fold members (`train-member --folds K`) let vote choose on every train+val row"
              if sel["protocol"] == "val" else "")
    return (f" On the {sel['rows']} {where} rows that made the choices, " + " and ".join(parts)
            + f" (95 % paired-bootstrap CIs of the {label} differences include 0){advice}.")


def _refuse_one_class(ms: MemberSet, protocol) -> None:
    """The rows vote fits and chooses on must hold two classes: on one, stacking cannot be fitted and every
    ranking metric is undefined (a member right on every row and one wrong on every row tie at QWK 0)."""
    present = np.unique(ms.val_labels)
    if len(present) < 2:
        held = f"one class ({ms.classes[int(present[0])]})" if len(present) else "no row"
        raise UserError(f"vote fits its combiners and chooses the best member on {_rows_word(protocol)}, and they "
                        f"hold {held}: nothing can be fitted or ranked on them. Prepare the workdir again with val "
                        "rows of at least two classes (without a split column prepare draws a stratified split).")


def _missing_classes(workdir: Path, ms: MemberSet, protocol) -> list:
    """The classes the test or train split holds and the rows that fit and choose (val, or the out-of-fold rows)
    do not, said on stderr in one sentence: nothing fitted on those rows can learn them."""
    splits = {"test": set(np.unique(ms.test_labels).tolist())}
    try:
        from members.data.dataset import load_dataset

        splits["train"] = set(load_dataset(workdir).rows("train")["label"].astype(int).tolist())
    except (UserError, KeyError, ValueError, TypeError):  # replaced while this vote ran: the transaction refuses it
        pass
    have = set(np.unique(ms.val_labels).tolist())
    missing = sorted(set().union(*splits.values()) - have)
    if not missing:
        return []
    names = [ms.classes[c] if c < len(ms.classes or []) else c for c in missing]
    word = ("grade" if ms.ordinal and ms.num_classes >= 3 else "class") + ("s" if len(names) > 1 else "")
    shown = ", ".join(map(str, names))
    where = " and ".join(s for s, held in splits.items() if held & set(missing))
    it = "them" if len(names) > 1 else "it"
    rows, split = ("the val rows", "val") if protocol.name == "val" else (_rows_word(protocol), "train and val")
    print(f"Warning: {rows} hold no row of {word} {shown}, which {where} {'have' if ' and ' in where else 'has'}: "
          f"the combiners are fitted on those rows and cannot learn {it} (stack gives {it} a probability near 0 and "
          f"never predicts {it}; grade thresholds and the best member and method are chosen without {it}); prepare "
          f"the workdir again with every class in {split} (without a split column prepare draws a stratified split).",
          file=sys.stderr)
    return names


def _rows_word(protocol) -> str:
    """The rows that combiners, thresholds and temperatures are fitted on, in words."""
    return "val" if protocol.name == "val" else "the out-of-fold train+val rows"


def _uncalibrated(raw: MemberSet, name: str, out_temps: dict[str, float], best: Predictions):
    """``(method, output temperature, test probs of the method fitted on the raw members, calibrated test probs,
    their labels before, after)``: ECE and the reliability diagram judge the labels each one reports."""
    from ensemble.combiners import make_combiner

    combiner = make_combiner(name.removesuffix(THR), thresholds=name.endswith(THR))
    combiner.fit(raw.val_probs, raw.val_labels, member_names=raw.names)
    return (name, out_temps.get(name), combiner.predict_proba(raw.test_probs), best.test_probs,
            combiner.predict(raw.test_probs), best.test_pred)


def _summary_options(ms: MemberSet, referable_grade: int | None, target: float,
                     positive_class: str | int | None) -> tuple[int, int]:
    """``(cut grade, positive class index)`` of the referable-DR / positive-class summary, checked before any work.

    ``--referable-grade`` applies to ordered grades (default 2), ``--positive-class`` to two classes (default:
    the rarer class on val, as the condition a screen looks for usually is; index 1 on a tie); either given where
    it does not apply is refused, so that no option is silently ignored.
    """
    from ensemble import referable

    k = ms.num_classes  # the target's range was checked by run_vote before any member was read
    if positive_class is not None and k != 2:
        raise UserError(f"--positive-class applies to two-class tasks; this one has {k} classes (for ordered grades "
                        "use --referable-grade). Received: positive_class=" + repr(positive_class))
    if k == 2:
        if positive_class is not None:
            positive = referable.positive_index(ms.classes, positive_class)
        else:
            counts = np.bincount(ms.val_labels, minlength=2)
            positive = 0 if counts[0] < counts[1] else 1
            name = ms.classes[positive] if positive < len(ms.classes or []) else positive
            why = (f"the rarer class on val ({int(counts[positive])} of {int(counts.sum())} rows)"
                   if counts[0] != counts[1] else
                   f"the second class, as the two are equally common on val ({int(counts[0])} rows each)")
            print(f"The two-class summary (sensitivity, specificity, predict's positive column) takes class {name!r} as "
                  f"positive: {why}; pass --positive-class to choose another.", file=sys.stderr)
        referable.check_options(referable_grade, target, k)  # any --referable-grade is refused on two classes
        return 1, positive
    why = referable.not_applicable(ms.classes, ms.ordinal, k)
    if why is not None:
        if referable_grade is not None:
            raise UserError(f"--referable-grade does not apply here: {why}. Drop it. Received: "
                            f"referable_grade={referable_grade}")
        return referable.DEFAULT_CUT, 1
    cut = referable.DEFAULT_CUT if referable_grade is None else referable_grade
    referable.check_options(cut, target, k)
    return cut, 1


def _referable_auc(ms: MemberSet, models: dict[str, Predictions], cut: int, positive: int = 1) -> dict[str, float]:
    from ensemble.referable import not_applicable, positive_rows, positive_score
    from members.scoring import score as _score

    if not_applicable(ms.classes, ms.ordinal, ms.num_classes) or not 1 <= cut < ms.num_classes:
        return {}
    ref = {"kind": "positive_class" if ms.num_classes == 2 else "referable_dr", "cut_grade": cut,
           "positive_index": positive}
    pos = positive_rows(ms.test_labels, ref).astype(np.int64)
    if pos.min() == pos.max():
        return {}
    out = {}
    for name, p in models.items():
        s = positive_score(p.test_probs, ref)
        out[name] = _score(pos, np.stack([1 - s, s], axis=1).clip(0, 1))["auc"]
    return out


def _val_score(ms: MemberSet, p: Predictions) -> dict[str, float]:
    return score(ms.val_labels, p.val_probs, pred=p.val_pred, num_classes=ms.num_classes)


def _select(scores: dict[str, dict], metric: str = "qwk") -> str:
    """The name with the best val ``metric``, ties broken by :func:`_tie_breaks`, then by order."""
    sign = -1.0 if metric in MINIMISED_SELECT_BY else 1.0

    def key(name: str) -> tuple[float, ...]:
        values = (sign * scores[name][metric], *(scores[name][m] for m in _tie_breaks(metric)))
        return tuple(-math.inf if math.isnan(v) else v for v in values)

    return max(scores, key=key)


def _tie_breaks(metric: str) -> tuple[str, ...]:
    """Macro-F1 breaks ties (balanced accuracy when macro-F1 is the metric); a probability-only metric (AUC,
    log-loss) ties between a method and its ``+thr`` variant, so accuracy decides first there."""
    if metric in ("auc", "log_loss"):
        return ("accuracy", "macro_f1")
    return ("balanced_accuracy",) if metric == "macro_f1" else ("macro_f1",)


def _selection_note(metric: str, rows: str = "val") -> str:
    return f"{metric} (ties: {', then '.join(_tie_breaks(metric))}), on {rows}"


def _referable_difference(labels: np.ndarray, summary: dict, a: Predictions, b: Predictions, indices) -> dict:
    """The paired-bootstrap difference ``a`` minus ``b`` of the referable-DR AUC (of ``P(grade >= cut)``) on test."""
    from ensemble.referable import positive_rows, positive_score

    def binary(p: Predictions) -> np.ndarray:
        score = positive_score(p.test_probs, summary)
        return np.stack([1.0 - score, score], axis=1).clip(0.0, 1.0)

    positive = positive_rows(labels, summary).astype(np.int64)
    return stats.bootstrap_difference(positive, (binary(a), None), (binary(b), None), indices=indices)["auc"]


def _significance(labels, methods_out: dict[str, Predictions], vs: str, single: Predictions,
                  groups=None) -> dict:
    """McNemar per method against the best single member: exact on rows, or exact over patients' sums
    (:func:`stats.mcnemar_clustered`) when the split is grouped by patient (``mcnemar_test`` says which)."""
    out = {}
    clustered = stats.group_codes(groups) is not None
    for name, p in methods_out.items():
        right, right_single = p.test_pred == labels, single.test_pred == labels
        only_m, only_s = int(np.sum(right & ~right_single)), int(np.sum(~right & right_single))
        p_value = (stats.mcnemar_clustered(labels, p.test_pred, single.test_pred, groups) if clustered
                   else stats.mcnemar_exact(labels, p.test_pred, single.test_pred))
        out[name] = {"vs": vs, "mcnemar_p": p_value, "mcnemar_test": "clustered" if clustered else "exact",
                     "method_only_correct": only_m, "single_only_correct": only_s,
                     "direction": "ensemble" if only_m > only_s else "single" if only_s > only_m else "even",
                     "same_grades": float(np.mean(p.test_pred == single.test_pred)) if len(labels) else None}
    return out


def _confidence(p_probs: np.ndarray, pred: np.ndarray) -> np.ndarray:
    return p_probs[np.arange(len(pred)), pred]


def call_rule(summary: dict) -> ReviewRule:
    """The referable-DR (or positive-class) call of ``report.json``'s ``referable`` section for its ensemble, as
    ``predict`` makes it: a grade it contradicts is referred (:mod:`ensemble.referral`); no call when not applicable."""
    point = summary.get("ensemble") or {}
    if not summary.get("applicable") or not isinstance(point.get("threshold"), (int, float)):
        return ReviewRule()
    kind = "positive_class" if summary.get("kind") == "positive_class" else "referable_dr"
    cut = summary["positive_index"] if kind == "positive_class" else summary["cut_grade"]
    return ReviewRule(cut=int(cut), call_threshold=float(point["threshold"]), kind=kind)


def _referral(ms: MemberSet, best: Predictions, target: float, *, call: ReviewRule | None = None,
              majority: int | None = None) -> dict:
    """``report.json`` ``referral``: the rows ``predict`` refers, by its rule (:func:`ensemble.referral.review_flags`):
    the ensemble's probability of its grade below the val-chosen threshold, no member grading it as the ensemble
    does (a grade only the combination gives, e.g. the expected grade between members that say 0 and 4), or a
    grade the referable / positive-class ``call`` (:func:`call_rule`) contradicts. The threshold is chosen among
    the rows the other reasons leave, so that all of them together keep ``target`` of val where they can.

    The kept and referred test rows are counted, with what always answering ``majority`` (the baseline's class;
    default: val's most common) scores on the kept ones, and a ``warning`` when the threshold is below 1/k."""
    rule = replace(call or ReviewRule(), threshold=0.0, without_agreement=True)  # 0: no row is low on confidence

    def flags(probs: np.ndarray, pred: np.ndarray, member_probs: np.ndarray) -> dict[str, np.ndarray]:
        agreement = (member_probs.argmax(axis=2) == pred).mean(axis=0)
        p_call = call_score(probs, rule.cut, rule.kind) if rule.calls else None
        return review_flags(rule, pred, _confidence(probs, pred), agreement, p_call)

    val_conf = _confidence(best.val_probs, best.val_pred)
    val_fixed = referred(flags(best.val_probs, best.val_pred, ms.val_probs))  # referred whatever the threshold
    threshold = stats.choose_refer_threshold(val_conf, target, referred=val_fixed)
    rule = replace(rule, threshold=threshold)
    val_flags, test_flags = (flags(best.val_probs, best.val_pred, ms.val_probs),
                             flags(best.test_probs, best.test_pred, ms.test_probs))
    conf = _confidence(best.test_probs, best.test_pred)
    agreement = (ms.test_probs.argmax(axis=2) == best.test_pred).mean(axis=0)
    kept, right = ~referred(test_flags), best.test_pred == ms.test_labels
    val_labels = getattr(ms, "val_labels", None)
    if majority is None and val_labels is not None and len(val_labels):
        majority = int(np.bincount(val_labels).argmax())
    k = getattr(ms, "num_classes", None) or best.test_probs.shape[1]
    counts = {"test_kept": int(kept.sum()), "test_kept_right": int(right[kept].sum()),
              "test_referred_right": int(right[~kept].sum()), "majority_class": majority,
              "test_majority_kept": None if majority is None else _mean(ms.test_labels[kept] == majority),
              "test_balanced_accuracy_kept": (score(ms.test_labels[kept], None, pred=best.test_pred[kept],
                                                    num_classes=k)["balanced_accuracy"] if kept.any() else float("nan"))}
    from ensemble.referable import dr_grades

    low = _low_threshold(threshold, k, val_conf, best, rows=int(len(val_conf)),
                         dr=bool(getattr(ms, "ordinal", True)) and k > 2, test_low=int((conf < threshold).sum()),
                         n_test=len(conf), eyes=dr_grades(getattr(ms, "classes", None) or range(k)))
    return {**({"warning": low} if low else {}), **counts, 
        "confidence": ("ensemble probability of its predicted "
                       f"{'grade' if getattr(ms, 'ordinal', True) and getattr(ms, 'num_classes', 3) > 2 else 'class'}"),
        "val_rows": int(len(val_conf)),
        "tie_break": "share of members agreeing with the ensemble",
        "target_coverage": target,
        "threshold": threshold,
        "refer_without_agreement": True,
        "refer_call_conflicts": rule.calls,
        "val_coverage": float(np.mean(~referred(val_flags))),
        "val_without_agreement": int(val_flags["no_agreement"].sum()),
        "val_call_conflicts": int(val_flags["call_conflict"].sum()),
        "val_referred_anyway": int(val_fixed.sum()),
        "test_coverage": float(kept.mean()),
        "test_without_agreement": int(test_flags["no_agreement"].sum()),
        "test_call_conflicts": int(test_flags["call_conflict"].sum()),
        "test_referred": int((~kept).sum()),
        "test_accuracy_kept": _mean(right[kept]),
        "test_accuracy_referred": _mean(right[~kept]),
        "test_accuracy_all": float(right.mean()),
        "test_curve": stats.coverage_curve(ms.test_labels, best.test_pred, conf, agreement,
                                           majority=majority).to_dict(),
    }


def _low_threshold(threshold: float, k: int, val_conf: np.ndarray, best: Predictions, *, rows: int, dr: bool,
                   test_low: int, n_test: int, eyes: bool = True) -> str:
    """A warning when the review threshold is below 1/k, the probability of every class when the ensemble cannot
    tell them apart (a model's most probable class always has at least that): the rule then accepts a grade
    given almost no probability and sends hardly a row for review on confidence, since the probabilities are
    spread out, uncalibrated, or (``+thr``) the grade given is not the most probable one. ``""`` otherwise."""
    if not k or threshold >= 1.0 / k:
        return ""
    word, what = ("grade", "eye" if eyes else "image") if dr else ("class", "image")
    off = float(np.mean(best.val_pred != best.val_probs.argmax(axis=1))) if len(best.val_pred) else 0.0
    why = (f", and {off:.0%} of its val {word}s are not its most probable one (a `+thr` {word} cuts the expected "
           f"{word})" if off > 0 else "")
    return (f"the confidence threshold, {threshold:.4g}, is below 1/{k} = {1.0 / k:.3f}, what every {word} gets when "
            f"the ensemble cannot tell them apart: a {word} it gives {threshold:.0%} probability or more is accepted "
            f"without review, and the rule sends almost no {what} for review on confidence ({int((val_conf < threshold).sum())} "
            f"of {rows} val rows, {test_low} of {n_test} test rows). The ensemble's probabilities are too spread out, "
            f"or not calibrated, for its confidence to pick out the {what}s it gets wrong{why}. Do not count on this "
            f"rule to catch its errors; a lower `--coverage` sends more {what}s for review.")


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


def _threshold_note(mode, k: int, variants, ordinal: bool = True, rows: str = "val") -> dict:
    applied = any(t for _, _, t in variants)
    note = ("`<method>` predicts the most probable class (hard vote: the most votes); `<method>+thr` cuts the "
            f"expected grade of the same probabilities at k-1 thresholds tuned on {rows} for QWK, so only its label "
            "metrics differ, ECE among them (it judges the grade each gives, at its probability); AUC and log-loss "
            "equal the plain method's." if applied else
            f"not used ({'the classes are nominal (unordered)' if not ordinal else 'two classes: the most probable class is taken' if k < 3 else 'turned off'}).")
    return {"mode": {True: "on", False: "off"}.get(mode, mode), "applied": applied, "note": note}


def _below(r: dict, accuracy: float | None) -> dict[str, list[str]]:
    """``{"members", "ensembles"}``: the models whose test accuracy is below ``accuracy``."""
    def below(block: dict) -> list[str]:
        return [name for name, m in block.items()
                if accuracy is not None and m["accuracy"]["value"] is not None and m["accuracy"]["value"] < accuracy]

    return {"members": below(r["members"]), "ensembles": below(r["ensembles"])}


def _val_marks(val: dict, preds: dict[str, Predictions], labels: np.ndarray) -> tuple[dict, list[str]]:
    """The validation table's marks, by the test table's rules: ``({"baseline", "members", "ensembles"}`` below the
    majority class on val accuracy``)`` and the models that give every val row one class."""
    base = val["baseline"]["accuracy"]
    below = {kind: [n for n, m in val[kind].items() if m["accuracy"] is not None and m["accuracy"] < base]
             for kind in ("members", "ensembles")}
    one = [n for n, p in preds.items() if len(np.unique(p.val_pred)) == 1 and len(np.unique(labels)) > 1]
    return {"metric": "accuracy", "baseline": base, **below}, one


def _below_baseline(r: dict) -> dict:
    """The members and methods whose test accuracy is below the majority baseline's."""
    base = r["baseline"]["accuracy"]["value"]
    return {"metric": "accuracy", "baseline": base, **_below(r, base)}


MIN_VERDICT_BOOT = 200  # fewer resamples give a 95 % percentile interval from a handful of tail draws


def too_few_resamples(n_boot) -> bool:
    """Whether ``n_boot`` resamples are too few for the verdict to call a difference (a report without the count,
    from an older vote, is taken as it was)."""
    return isinstance(n_boot, int) and n_boot < MIN_VERDICT_BOOT


def _test_majority(r: dict, test_labels: np.ndarray) -> dict | None:
    """When the test split's most common class is not the choosing rows' (a class mix that shifted between the
    splits), what always answering it scores on test and which models it beats on accuracy: the baseline row
    compares with the choosing rows' majority class, and a model can clear that while learning less than the test
    split's own class frequencies (the article's 80 %). None when the two classes agree."""
    if not len(test_labels):
        return None
    base = r.get("baseline_class")
    counts = np.bincount(test_labels, minlength=(base or 0) + 1)
    cls = int(counts.argmax())
    if cls == base or (isinstance(base, int) and counts[base] == counts.max()):  # a tie: the baseline's class too
        return None
    acc = float(counts[cls] / len(test_labels))
    return {"class": cls, "accuracy": acc, **_below(r, acc)}


AHEAD, BEHIND = "ahead, not claimed", "behind, not claimed"  # outcomes of a CI that excludes 0 on a thin class


def _outcome(r: dict, select_by: str) -> dict:
    """``beat`` / ``worse`` only when the paired-bootstrap CI of the difference excludes 0, else
    ``no clear difference``; :data:`AHEAD` / :data:`BEHIND` when it excludes 0 but leaves out the variation of a
    test class the bootstrap cannot vary (:func:`_unclaimable`): no win or loss is claimed then."""
    diff = r["difference"]["metrics"][select_by]
    lo, hi = diff["ci"]
    sign = -1.0 if select_by in MINIMISED_SELECT_BY else 1.0
    n_boot = (r.get("bootstrap") or {}).get("n_boot")
    if (lo is None or hi is None or (isinstance(lo, float) and math.isnan(lo)) or too_few_resamples(n_boot)
            or _too_thin(r)):
        word = "no clear difference"
    elif sign * lo > 0 and sign * hi > 0:
        word = AHEAD if _unclaimable(r) else "beat"
    elif sign * lo < 0 and sign * hi < 0:
        word = BEHIND if _unclaimable(r) else "worse"
    else:
        word = "no clear difference"
    s = r["significance"][r["best_method"]]
    only_m, only_s = s["method_only_correct"], s["single_only_correct"]
    return {"verdict": word, "metric": select_by, "difference": diff["value"], "ci": [lo, hi],
            "mcnemar_p": s["mcnemar_p"], "ensemble_only_correct": only_m, "single_only_correct": only_s,
            "same_grades": s.get("same_grades")}


def _f(value, sign: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:+.3f}" if sign else f"{value:.3f}"


DOMINANT_WEIGHT = 0.75  # one member's share of a vote's weight from which the verdict says the vote leans on it
DOMINANT_SAME = 0.95  # the share of test grades shared with the best single member from which it says so too


def _verdict(r: dict, select_by: str = "qwk") -> str:
    """A few sentences: the val-chosen ensemble against the val-chosen single member, on test.

    "Beat" only when the 95 % paired-bootstrap CI of the difference in the selection metric
    excludes 0 and no test class is too thin for the bootstrap to vary (then "ahead of ... by the
    paired bootstrap, but a win cannot be claimed"); otherwise "no clear difference". Both are
    compared with the majority class on accuracy and balanced accuracy, and McNemar's test is given
    with its direction.
    """
    bm, bs = r["best_method"], r["best_single"]
    a, b, base = r["ensembles"][bm], r["members"][bs], r["baseline"]
    out = r.get("outcome") or _outcome(r, select_by)
    labels = {**METRIC_LABELS, **({"qwk": "kappa"} if r.get("num_classes") == 2 else {})}  # QWK of 2 classes
    label = labels[select_by]
    lo, hi = out["ci"]
    figures = (f"{label} {_f(a[select_by]['value'])} vs {_f(b[select_by]['value'])} (difference "
               f"{_f(out['difference'], True)}, 95 % paired-bootstrap CI [{_f(lo, True)}, {_f(hi, True)}]")
    on = "the out-of-fold rows" if (r.get("protocol") or {}).get("name") == "oof" else "val"
    who = f"the best ensemble, {bm} (chosen on {on}), {{}} the best single member, {bs} (chosen on {on} by {label}), on test"
    if out["verdict"] == "beat":
        head = who.format("beat") + f": {figures}, which excludes 0)"
    elif out["verdict"] == "worse":
        head = who.format("did worse than") + f": {figures}, which excludes 0)"
    elif out["verdict"] in (AHEAD, BEHIND):
        ahead = out["verdict"] == AHEAD
        head = (f"the best ensemble, {bm} (chosen on {on}), is {'ahead of' if ahead else 'behind'} the best single "
                f"member, {bs} (chosen on {on} by {label}), on test by the paired bootstrap, but "
                f"{'a win' if ahead else 'a loss'} cannot be claimed: {figures}, which excludes 0 but "
                f"{_unclaimable(r)}; see the caution below)")
    elif why := _too_thin(r):
        head = (f"No difference can be claimed between the best ensemble, {bm} (chosen on {on}), and the best single "
                f"member, {bs} (chosen on {on} by {label}), on test: {figures}, {why}; see the caution below)")
    elif too_few_resamples(n_boot := (r.get("bootstrap") or {}).get("n_boot")):
        head = (f"No difference can be claimed between the best ensemble, {bm} (chosen on {on}), and the best single "
                f"member, {bs} (chosen on {on} by {label}), on test: {figures} from only {n_boot} bootstrap "
                f"resamples, too few for a 95 % interval; vote again with --bootstrap {MIN_VERDICT_BOOT} or more, "
                "1000 by default)")
    else:
        head = (f"No clear difference between the best ensemble, {bm} (chosen on {on}), and the best single member, "
                f"{bs} (chosen on {on} by {label}), on test: {figures}, which includes 0)")
    head = head[0].upper() + head[1:] + _other_differences(r, select_by, out["verdict"], labels)
    extra = ", ".join(f"{labels[m]} {_f(a[m]['value'])} vs {_f(b[m]['value'])}"
                      for m in (("qwk",) if r.get("ordinal", True) else ()) + ("accuracy", "balanced_accuracy")
                      if m != select_by)
    base_acc, base_bal = base["accuracy"]["value"], base["balanced_accuracy"]["value"]
    below = [name for name, m in ((bm, a), (bs, b)) if base_acc is not None and m["accuracy"]["value"] is not None
             and m["accuracy"]["value"] < base_acc]
    not_above_bal = [name for name, m in ((bm, a), (bs, b)) if base_bal is not None
                     and m["balanced_accuracy"]["value"] is not None and m["balanced_accuracy"]["value"] <= base_bal]
    if len(below) == 2:
        acc_words = "both are below the majority class on accuracy"
    elif below:
        acc_words = f"{below[0]} is below the majority class on accuracy"
    else:
        acc_words = "neither is below the majority class on accuracy"
    bal_words = ("" if not not_above_bal else
                 f"; {' and '.join(not_above_bal)} {'are' if len(not_above_bal) == 2 else 'is'} no better than it "
                 "on balanced accuracy")
    baseline = (f"Against the majority class (always class {_class_label(r)}: accuracy {_f(base_acc)}, "
                f"balanced accuracy {_f(base_bal)}), {bm} has {_f(a['accuracy']['value'])} and "
                f"{_f(a['balanced_accuracy']['value'])}, {bs} {_f(b['accuracy']['value'])} and "
                f"{_f(b['balanced_accuracy']['value'])}: {acc_words}{bal_words}.")
    p = out["mcnemar_p"]
    n_only = out["ensemble_only_correct"]
    test = ("McNemar's test clustered by patient (exact over patients)" if (r.get("significance") or {}).get(bm, {}).get("mcnemar_test")
            == "clustered" else "McNemar's exact test")
    mcnemar = (f"{test}: {n_only} test row{'' if n_only == 1 else 's'} only the ensemble gets right vs "
               f"{out['single_only_correct']} only the single member gets right, p = {p:.3g} "
               f"({'significant' if p < 0.05 else 'not significant'} at 0.05).")
    same = out.get("same_grades")
    from ensemble.report import is_graded

    word = "grade" if is_graded(r) else "class"
    weights = r.get("best_method_weights") or {}
    heavy = max(weights.items(), key=lambda kv: kv[1]) if weights else None
    heavy = heavy if heavy and heavy[1] >= DOMINANT_WEIGHT and len(weights) > 1 else None
    if same == 1.0:  # e.g. a weighted vote that put nearly all its weight on one member
        mcnemar += (f" {bm} gives every test row the {word} {bs} gives it: on test it is that member in effect, "
                    "not a combination of members.")
    elif heavy or (same is not None and same >= DOMINANT_SAME):
        parts = ([f"puts {heavy[1]:.0%} of its weight on {heavy[0]}"] if heavy else []) + (
            [f"gives {same:.0%} of the test rows the {word} {bs} gives them"] if same is not None and same >= DOMINANT_SAME
            else [])
        mcnemar += f" {bm} {' and '.join(parts)}: it is close to one member, not an even combination of members."
    return (f"{head}; {extra}.{_collapsed_words(r, bs)} {baseline}{_test_majority_words(r, bm, bs)} {mcnemar}"
            f"{_selection_words(r, label)}{_thin_test_words(r)}")


def _collapsed_words(r: dict, bs: str) -> str:
    """A sentence when the best single member is a collapsed one that ``--keep-collapsed`` voted: the comparison is
    then with a member that learned next to nothing, not with a working single model; else ``""``."""
    if bs not in (r.get("collapsed_kept") or []):
        return ""
    return (f" {bs}, the best single member, is COLLAPSED (one class or chance on the rows that judged it; voted by "
            "--keep-collapsed): the ensemble is compared with a member that learned next to nothing, not with a "
            "working single model.")


OTHER_WORDS = {  # what the ensemble does when a paired difference excludes 0: (better, worse); {rows}, {word}
    "accuracy": ("{verb} more {rows} right", "{verb} fewer {rows} right"),
    "balanced_accuracy": ("does better across the {word}s", "does worse across the {word}s"),
    "macro_f1": ("does better across the {word}s", "does worse across the {word}s"),
    "qwk": ("{verb} closer to the true {word}s", "{verb} further from the true {word}s"),
    "auc": ("ranks {rows} better", "ranks {rows} worse"),
    "log_loss": ("gives the true {word} more probability", "gives the true {word} less probability"),
    "ece": ("is better calibrated", "is worse calibrated"),
    "referable_auc": ("tells {call} {rows} apart better", "tells {call} {rows} apart worse"),
}


def _other_differences(r: dict, select_by: str, verdict: str, labels: dict[str, str]) -> str:
    """``, but soft ranks eyes worse (AUC -0.078 [-0.143, -0.008])``: the other reported metrics (and the
    referable-DR AUC) whose paired-bootstrap CI of the ensemble-minus-member difference excludes 0, in one clause
    ("" when none), so that a verdict on the selection metric alone does not hide them."""
    from ensemble.report import columns, is_dr, is_graded

    diff = r.get("difference") or {}
    entries = {key: diff.get("metrics", {}).get(key) for key, _ in columns(r) if key != select_by}
    entries["referable_auc"] = diff.get("referable_auc")
    dr, graded = is_dr(r), is_graded(r)
    names = {**labels, "ece": "ECE", "referable_auc": "referable-DR AUC" if dr else "AUC at the cut grade"}
    fill = {"verb": "grades" if graded else "classifies", "rows": "eyes" if dr else "images",
            "word": "grade" if graded else "class", "call": "referable" if dr else "positive"}
    found: dict[tuple[str, bool], list[str]] = {}
    for key, e in entries.items():
        lo, hi = (e or {}).get("ci") or (None, None)
        if lo is None or hi is None or math.isnan(lo) or math.isnan(hi) or lo <= 0.0 <= hi:
            continue
        if float(_f(e["value"], True)) == 0.0:  # it would read "+0.000 [+0.000, +0.000]": no difference to name
            continue
        better = (lo > 0) != (key in ("log_loss", "ece"))  # lower is better for those two
        phrase = OTHER_WORDS[key][0 if better else 1].format(**fill)
        found.setdefault((phrase, better), []).append(f"{names[key]} {_f(e['value'], True)} [{_f(lo, True)}, "
                                                      f"{_f(hi, True)}]")
    if not found:
        return ""
    ahead = {"beat": True, AHEAD: True, "worse": False, BEHIND: False}.get(verdict)
    words = {True: [], False: []}
    for (phrase, better), figures in found.items():
        words[better].append(f"{phrase} ({'; '.join(figures)})")
    same, other = (words[ahead], words[not ahead]) if ahead is not None else ([], words[True] + words[False])
    bm = r["best_method"]
    parts = ([f"and {bm} also {' and '.join(same)}"] if same else []) + (
        [f"but {bm} {' and '.join(other)}"] if other else [])
    return ", " + ", ".join(parts)


def _test_majority_words(r: dict, bm: str, bs: str) -> str:
    """`` On test, though, the most common class is ...`` when the test split's majority class is another one."""
    t = r.get("test_majority")
    if not t:
        return ""
    under = [n for n in (bm, bs) if n in t["ensembles"] or n in t["members"]]
    tail = (f": {' and '.join(under)} {'are' if len(under) == 2 else 'is'} below what that alone scores" if under
            else "; neither is below it")
    return (f" On test, though, the most common class is {_class_label(r, t['class'])} "
            f"(the class mix differs from that of the rows that chose): always answering it scores accuracy "
            f"{_f(t['accuracy'])} there{tail}.")


def _data_words(workdir: Path) -> dict:
    """``report.json`` ``data``: where the images came from (``dataset.json`` ``source``), and whether they are
    the synthetic set of ``demo-data`` (``dataset.json`` ``synthetic``, recorded by prepare; for a workdir prepared
    before, its ``demo-data.json`` beside the images now), so no reader takes its figures for real eyes."""
    from members.data.synthetic import made_by_demo_data
    from members.infra.atomic import read_json

    info = read_json(workdir / "dataset.json")
    synthetic = info.get("synthetic")
    if not isinstance(synthetic, bool):
        synthetic = made_by_demo_data(str(info.get("image_root", "")))
    out = {"source": info.get("source"), "image_root": info.get("image_root"), "synthetic": synthetic}
    return {**out, **_split_counts(workdir, info)}


def _split_counts(workdir: Path, info: dict) -> dict:
    """``report.json`` ``data``'s ``images``, ``patients`` (``None`` on a split not grouped by patient), ``grouping``
    and ``splits`` {split: {images, patients, classes: {class: rows}}}, from ``split.csv``; ``{}`` when it cannot be
    read (replaced while the vote ran: the transaction refuses the vote then)."""
    from members.data.dataset import load_dataset

    try:
        table = load_dataset(workdir).table
        k = int(info["num_classes"])
    except (UserError, KeyError, ValueError, TypeError):
        return {}
    grouped = "group" in table.columns
    classes = [str(c) for c in info.get("classes") or range(k)]
    splits = {}
    for split in ("train", "val", "test"):
        part = table[table["split"] == split]
        counts = np.bincount(part["label"].to_numpy(dtype=np.int64), minlength=k)[:k]
        splits[split] = {"images": int(len(part)), "patients": int(part["group"].nunique()) if grouped else None,
                         "classes": dict(zip(classes, counts.tolist()))}
    return {"images": int(len(table)), "patients": int(table["group"].nunique()) if grouped else None,
            "grouping": (info.get("grouping") or {}).get("by") if grouped else None, "splits": splits}


def _say_probabilities_only(ms: MemberSet) -> None:
    """A note on stderr: members imported as probabilities have no model, so no combiner with them grades new images."""
    from ensemble.importer import has_model

    alone = [name for name in ms.names if not has_model(ms.metrics.get(name) or {})]
    if alone:
        print(f"Note: {', '.join(alone)} {'were' if len(alone) > 1 else 'was'} imported as probabilities only (no model): "
              "this vote scores them, but `predict` and `explain` cannot use a combiner that includes them; vote with "
              "--members leaving them out for an ensemble that grades new images.", file=sys.stderr)


def _too_thin(r: dict) -> str:
    """Why the test split is too thin for the verdict to claim any difference, or ``""``: fewer than
    :data:`SMALL_TEST` rows, or half its classes or more fixed in every resample (:func:`_fixed_classes`; a
    bootstrap of 5 patients over 5 grades barely varies, however its interval looks). A larger split with one
    fixed class gets the caution only: its intervals are somewhat too narrow, not meaningless."""
    boot = r.get("bootstrap") or {}
    n, (thin, lone) = boot.get("test_rows"), _fixed_classes(r)
    fixed = thin or lone
    k = r.get("num_classes") or len(r.get("classes") or []) or 0
    if fixed and k and 2 * len(fixed) >= k:
        return f"from a bootstrap that never varies the rows of {_fixed_words(r, thin, lone)}"
    if isinstance(n, int) and n < SMALL_TEST:
        return f"from {n} test rows, too few for its intervals to be trusted"
    return ""


def _unclaimable(r: dict) -> str:
    """Why an interval that excludes 0 still cannot carry a "beat" (or "did worse than"), as the clause that
    follows "which excludes 0 but", or ``""``: a test class the bootstrap never varies (one row, or one patient when
    patients are drawn), or one of fewer than :data:`FEW_ROWS` rows, which it barely varies. The interval then
    leaves out that class's variation: the caution at the end of the verdict says the same."""
    from ensemble.report import is_graded

    thin, lone = _fixed_classes(r)
    word = "grade" if is_graded(r) else "class"
    if thin or lone:
        kept = "which every resample keeps" if thin else "whose rows every resample keeps"
        return f"leaves out the variation of {_fixed_words(r, thin, lone)}, {kept} unchanged"
    few = {c: n for c, n in ((r.get("bootstrap") or {}).get("few_row_classes") or {}).items() if n > 0}
    if not few:
        return ""
    c = min(few, key=few.get)
    return (f"rests on {word} {c}'s {few[c]} test row{'s' * (few[c] != 1)}, too few for the bootstrap to vary as "
            "another sample would, so it leaves out most of that " + word + "'s variation")


def _fixed_classes(r: dict) -> tuple[list, list]:
    """The test classes the bootstrap never varies: ``(one row each, one patient each)``. It draws rows within
    their class (patients within their highest class when grouped), so a class of one row or one patient is in
    every resample as it is, and the intervals are narrower than the real uncertainty."""
    boot = r.get("bootstrap") or {}
    # drawing patients, a class is fixed when one patient holds it: that list is the one that counts
    thin = [] if boot.get("clustered") else boot.get("single_row_classes") or []
    return thin, [c for c in boot.get("single_patient_classes") or [] if c not in thin]


def _fixed_words(r: dict, thin: list, lone: list) -> str:
    """``class 3`` / ``classes 1, 3 and 4``, each with a single row (or patient) in the test split."""
    from ensemble.report import is_graded

    classes = thin or lone
    word = ("grade" if is_graded(r) else "class") + ("s" if len(classes) > 1 else "")
    names = [_class_label(r, c) if isinstance(c, int) else str(c) for c in classes]  # indices, or names already
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    what = "row" if thin else "patient"
    return f"{word} {listed}, {'each ' if len(names) > 1 else ''}with a single test {what}"


def _thin_test_words(r: dict) -> str:
    """A sentence when the test split is too small for its intervals: a class with one row (which a
    bootstrap stratified by class never varies), or fewer than :data:`SMALL_TEST` rows or a class
    with fewer than :data:`FEW_ROWS` (resamples of so few rows vary too little to be trusted); then one naming a
    class with no test row at all (:func:`_absent_words`)."""
    return _thin_words(r) + _absent_words(r)


def _absent_words(r: dict) -> str:
    """A caution naming the classes with no test row (``bootstrap.few_row_classes`` at 0): balanced accuracy,
    macro-F1 and AUC average over the classes present, so always answering one class scores 1/(classes present)."""
    from ensemble.report import is_graded

    absent = [c for c, n in ((r.get("bootstrap") or {}).get("few_row_classes") or {}).items() if n == 0]
    k = r.get("num_classes") or len(r.get("classes") or [])
    if not absent or not k:
        return ""
    word = "grade" if is_graded(r) else "class"
    names = absent[0] if len(absent) == 1 else f"{', '.join(absent[:-1])} and {absent[-1]}"
    held, it = k - len(absent), "it" if len(absent) == 1 else "them"
    return (f" Caution: {word}{'s' if len(absent) > 1 else ''} {names} {'has' if len(absent) == 1 else 'have'} no "
            f"test row: balanced accuracy, macro-F1 and AUC average over the {held} {word}s present (always answering "
            f"one {word} scores 1/{held} on balanced accuracy, not 1/{k}), and no figure above measures {it}.")


def _thin_words(r: dict) -> str:
    boot = r.get("bootstrap") or {}
    thin, lone = _fixed_classes(r)
    n = boot.get("test_rows")
    few = {c: rows for c, rows in (boot.get("few_row_classes") or {}).items() if rows > 0}  # none: _absent_words
    fix = (f"prepare a larger test split (at least {SMALL_TEST} rows and {FEW_ROWS} per class: --test-fraction, or "
           "more images)")
    if thin:
        return (f" Caution: the test split has {len(thin)} class(es) with a single row ({', '.join(map(str, thin))}), "
                "which a bootstrap stratified by class never varies, so the intervals above are narrower than the "
                "real uncertainty (zero-wide when every class has one row) and neither a 'beat' nor a difference "
                f"above should be trusted; {fix}.")
    if lone:
        from ensemble.report import is_graded

        top = "highest grade" if is_graded(r) else "highest-numbered class"
        whose = "that patient's" if len(lone) == 1 else "those patients'"
        return (f" Caution: {_fixed_words(r, [], lone)} (patients counted by their {top}); the bootstrap "
                f"draws patients within their {top}, so it never varies {whose} rows, and the intervals "
                f"above are narrower than the real uncertainty: neither a 'beat' nor a difference above should be "
                f"trusted; {fix}.")
    if n is None or (n >= SMALL_TEST and not few):
        return ""
    fewest = f"; class {min(few, key=few.get)} has {min(few.values())}" if few else ""
    return (f" Caution: these figures rest on {n} test rows{fewest}: bootstrap intervals from so few rows are narrower "
            f"than the real uncertainty, so neither a 'beat' nor a difference above should be trusted; {fix}.")


def _class_label(r: dict, c: int | None = None) -> str:
    """Class ``c`` (default: the baseline's) as shown: its name when the classes are named."""
    classes, c = r.get("classes") or [], r["baseline_class"] if c is None else c
    return str(classes[c]) if 0 <= c < len(classes) else str(c)


def _write_outputs(out: Path, report: dict, ms: MemberSet, single: Predictions, best: Predictions,
                   *, before: tuple[tuple, tuple] | None = None) -> None:
    from ensemble import plots
    from ensemble.report import is_dr, is_graded, write_report

    write_report(out, report)
    k = ms.num_classes
    plots.plot_comparison(out / "comparison.png", report)
    n = len(ms.test_labels)
    plots.plot_confusions(out / "confusion.png", [
        (f"best ensemble: {report['best_method']} (test, n={n})", confusion(ms.test_labels, best.test_pred, k)),
        (f"best single: {report['best_single']} (test, n={n})", confusion(ms.test_labels, single.test_pred, k))],
        ms.classes, cut=(report.get("referable") or {}).get("cut_grade") if is_graded(report) else None,
        word="grade" if is_graded(report) else "class", eyes=is_dr(report))
    plots.plot_diversity(out / "diversity.png", report["diversity"], n=len(ms.test_labels))
    _write_clinical_figures(out, report, ms, single, best, before)


def _write_clinical_figures(out: Path, report: dict, ms: MemberSet, single: Predictions, best: Predictions,
                            before: tuple[tuple, tuple] | None) -> None:
    """``calibration.png`` (reliability of the best single member's and the ensemble's own labels: a hard vote's
    tie-break, a ``+thr`` grade) and, for ordinal grades, ``roc.png`` (referable DR). ``before``: the best single
    member's and the ensemble's ``(test probs, labels or None for the argmax)`` before calibration."""
    from ensemble import plots
    from ensemble.referable import dr_grades, positive_rows, positive_score, summary_title

    bs, bm = report["best_single"], report["best_method"]
    panels = []
    # the ensemble left, the best single member right, as in confusion.png (``before`` is single's, then ensemble's)
    for j, (title, p) in ((1, (f"best ensemble: {bm}", best)), (0, (f"best single: {bs}", single))):
        series = [("calibrated" if before is not None else "test",
                   stats.reliability(ms.test_labels, p.test_probs, p.test_pred))]
        if before is not None:
            series.append(("before calibration", stats.reliability(ms.test_labels, *before[j])))
        panels.append((f"{title} (test, n={len(ms.test_labels)})", series))
    plots.plot_calibration(out / "calibration.png", panels)
    ref = report.get("referable") or {}
    if not ref.get("applicable"):
        return
    from ensemble.report import chosen_on as report_chosen_on

    pos = positive_rows(ms.test_labels, ref)
    curves = [(f"best single {name}" if name == bs else name, "single" if name == bs else "member", pos,
               positive_score(p, ref))
              for name, p in zip(ms.names, ms.test_probs)]
    curves.append((f"ensemble {bm}", "ensemble", pos, positive_score(best.test_probs, ref)))
    points = []
    for role, kind in (("best_single", "single"), ("ensemble", "ensemble")):
        r = ref[role]
        if r["specificity"]["value"] is not None and r["sensitivity"]["value"] is not None:
            points.append((f"{r['name']} at val-chosen threshold {r['threshold']:.4g}", kind,
                           1 - r["specificity"]["value"], r["sensitivity"]["value"]))
    dr = ref.get("kind") != "positive_class" and dr_grades(ms.classes or range(ms.num_classes))
    what = f"Referable DR (grade >= {ref['cut_grade']})" if dr else summary_title(ref, ms.classes)
    plots.plot_roc(out / "roc.png", curves, points, dr=dr, title=(
        f"{what} on test: n={len(pos)}, {int(pos.sum())} positive\n"
        f"operating points: thresholds chosen on {report_chosen_on(report)} for {ref['sensitivity_target']:.0%} sensitivity"))
