"""``predict``: grade new images with the fitted ensemble, with member agreement and referral.

The only module of ``ensemble/`` that runs networks; TensorFlow and Keras are imported
inside functions, so ``python cli.py --help`` stays fast.

How one call works:

1. The fitted combiner is read from ``ensemble/combiners/<method>.json`` (default: the
   report's ``best_method``), then the members it was fitted on, in its order. Each
   ``model.keras`` is checked against ``metrics.json``'s SHA-256 *before* loading (a
   modified file is refused) and loaded with ``safe_mode=True``.
2. Files are checked one by one (missing, a folder, empty, a decompression bomb, a format
   TensorFlow cannot read); the rest stream through one ``tf.data`` pipeline that reads each
   file once and prepares it for every member with :func:`members.data.pipeline.load_variants` —
   the function training uses, so a member sees exactly the ``uint8`` pixels training's
   evaluation gave it (decode at the member's reduced JPEG scale, shared by members whose
   sizes share that scale; fundus crop, resize, Ben preprocessing as its spec says). An image
   that fails to decode (not an image, truncated) is dropped by ``ignore_errors`` *before*
   batching, so it never costs the other images of its batch; it is listed on stderr, with why (it is read
   again alone: out of memory is "too large to decode in the memory available", not corrupt).
3. Batches of 64 images go through every member with training's own evaluation
   (:func:`members.training.loop.predict_probs`); with ``tta`` the member's probabilities are
   averaged over four flips (identity, horizontal, vertical, both). A member trained with
   ``tta = true`` (its ``metrics.json``) always gets TTA: its cached val probabilities, on
   which the combiner was fitted, were made that way.
4. The combiner's ``predict_proba`` and ``predict`` (grade thresholds included) give the
   ensemble's probabilities and label (a combiner saved by ``vote --calibrate temperature``
   scales every member and the output by their val-fitted temperatures first). The CSV
   gives ``label_prob``, the probability of that label, and ``top_class`` / ``top_prob``,
   the most probable class and its probability: they differ only for a ``+thr`` method,
   whose grade thresholds cut the expected grade instead of taking the argmax.
   ``label_prob`` is the score the referral threshold of ``report.json`` was chosen on
   (val, for the target coverage).
"""

from __future__ import annotations

import csv
import io
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ensemble import appearance
from ensemble.manifest import SPEC, check_files, check_member, check_spec, missing_spec
from ensemble.member_set import repair_hint
from ensemble.referral import AGREEMENT_FALLBACK, ReviewRule, call_score, conflict_words, review_flags
from ensemble.referable import dr_grades, summary_name
from members.data.dataset import PREPARED_FILES
from members.infra import csvsafe
from members.infra.atomic import read_json, sha256_file, write_text
from members.infra.errors import UserError

BATCH_SIZE = 64
CSV_COLUMNS = ("path", "label", "class", "label_prob", "top_class", "top_prob", "agreement", "review")
"""The ``predict`` CSV's leading columns (then ``prob_0..prob_{k-1}``); their meaning is in
``predict --help`` and the README: ``label`` the ensemble's class index, ``class`` its grade or
name, ``label_prob`` its probability,
``top_class``/``top_prob`` the most probable class and its probability (they differ from
``label``/``label_prob`` only for ``+thr`` methods), ``agreement`` the share of members whose
own top class is ``label``, ``review`` 1 = a human grader should look (low confidence, members that disagree, a
grade the referable call contradicts, an image that cannot be graded): not a referral to an eye specialist, which
is ``referable``. On ordered grades with a referable-DR section in ``report.json``, :data:`REFERABLE_COLUMNS`
follow the probabilities. Predictions written before 2026-12-08 call ``review`` ``refer``
(:data:`OLD_CSV_COLUMNS`): every reader of a predictions CSV takes both."""
OLD_CSV_COLUMNS = (*CSV_COLUMNS[:-1], "refer")
"""The header predict wrote before 2026-12-08, when ``review`` was called ``refer``."""
REFERABLE_COLUMNS = ("p_referable", "referable")
"""``p_referable`` = P(grade >= the report's referable cut), ``referable`` 1/0 = at or above the threshold
``vote`` chose on val for the sensitivity target (empty for a method other than the one it was chosen for, and
for an image noted as ungradable or unlike the training images; ``null`` in ``--json``)."""
POSITIVE_COLUMNS = ("p_positive", "positive")
"""On a two-class task: ``p_positive`` = P(the report's positive class), ``positive`` 1/0 at the val-chosen threshold."""
NOTE_COLUMN = "note"
"""The last column, why ``review`` is 1 (empty exactly where it is 0): ``review: ...`` (the referral rule: low
confidence, members that disagree), ``ungradable: ...`` (a flat image) or ``unlike the training images: ...``
(graded, but referred, ``referable`` empty), or ``not graded: <reason>`` for an input that could not be read (its
other cells empty): every input given has a row."""
VOTE_HINT = "run `python cli.py vote --workdir {workdir}` first"
UNIFORM_NOTE = ("ungradable: the image is (nearly) one flat colour — a black or white frame, or samples that decode to "
                "one value; referred")


@dataclass(frozen=True)
class LoadedMember:
    """One member network, ready to predict.

    Attributes:
        name: the member's folder name.
        model: the Keras model (inputs: float32 pixels 0–255).
        input_size: square input side in pixels.
        preprocessing: ``"none"`` or ``"ben"``.
        fundus_crop: the member's images are cropped to the fundus disc.
        tta: the member was trained (and its val probabilities cached) with flip TTA.
        num_classes: output classes.
    """

    name: str
    model: Any = field(repr=False)
    input_size: int
    preprocessing: str = "none"
    fundus_crop: bool = False
    tta: bool = False
    num_classes: int = 0


@dataclass
class Ensemble:
    """A fitted combiner, its members (in the combiner's order) and the referral rule."""

    workdir: Path
    method: str
    combiner: Any
    members: list[LoadedMember]
    refer_threshold: float | None
    referral_note: str
    classes: list = field(default_factory=list)
    refer_without_agreement: bool = False  # report.json referral says rows no member agrees with are referred too
    referable_cut: int | None = None  # lowest referable grade (report.json referable.cut_grade); None: not applicable
    # (on two classes: the positive class's index, and referable_kind "positive_class")
    referable_threshold: float | None = None  # on P(grade >= cut), chosen on val for this method; None: another method
    referable_note: str = ""
    referable_kind: str = "referable_dr"
    appearance: dict | None = None  # ensemble/appearance.json: the range of the training images' looks
    synthetic: bool = False  # report.json data.synthetic: trained on demo-data's synthetic images
    collapsed_kept: list[str] = field(default_factory=list)  # its members that collapsed, voted by --keep-collapsed
    below_majority: dict | None = None  # its test accuracy below the majority class's (report.json below_baseline)

    @property
    def review_rule(self) -> ReviewRule:
        """The rule that sets ``review`` (:mod:`ensemble.referral`, the one ``vote``'s referral figures count)."""
        return ReviewRule(self.refer_threshold, self.refer_without_agreement, self.referable_cut,
                          self.referable_threshold, self.referable_kind)


@dataclass
class PredictionResult:
    """The ensemble's output for the readable images (``n`` rows, ``k`` classes).

    Attributes:
        paths: the readable images, in the order given.
        probs: ``(n, k)`` ensemble probabilities, rows sum to 1.
        labels: ``(n,)`` ensemble labels.
        agreement: ``(n,)`` share of members whose argmax equals the ensemble label.
        confidence: ``(n,)`` ensemble probability of its label (``label_prob`` in the CSV).
        review: ``(n,)`` bool, True where a human grader should look at the image (the CSV's ``review``; not a
            referral to an eye specialist, which is ``referable``).
        skipped: unreadable inputs, ``{path: reason}``.
        method: the combiner used; ``members``: its members; ``referral_note``: the rule used.
        classes: the class of each label index (``dataset.json``'s ``classes``: integers or names).
        p_referable: ``(n,)`` P(grade >= the referable cut), or ``None`` when the task has no referable cut.
        referable: ``(n,)`` bool at the val-chosen threshold, or ``None`` (no cut, or no threshold for this method).
        referable_cut: the lowest referable grade (two classes: the positive class's index), or ``None``.
        notes: per graded row, ``""`` or why it is referred: an image referred whatever its grade
            (:data:`UNIFORM_NOTE`, unlike the training images) or ``review: <reason>`` (low confidence,
            members that disagree); ``review`` is 1 exactly where the note is not empty.
        collapsed_kept: the members that collapsed and were voted by ``vote --keep-collapsed`` (``report.json``
            ``collapsed_kept``); ``below_majority``: ``{method, accuracy, majority_accuracy, majority_class}`` when
            the method's test accuracy was below the majority class's (``below_baseline``), else ``None``.
        withheld: ``(n,)`` bool, True for images referred whatever their grade (ungradable, unlike the training
            images): their grade and ``referable`` are left empty in the CSV and ``to_json`` (which keeps the raw
            output under ``withheld``). The arrays above keep the raw output for every row, so leave these rows
            out (``result.labels[~result.withheld]``) before counting grades or referable eyes.
    """

    paths: list[str]
    probs: np.ndarray
    labels: np.ndarray
    agreement: np.ndarray
    confidence: np.ndarray
    review: np.ndarray
    skipped: dict[str, str]
    method: str
    members: list[str]
    referral_note: str
    classes: list = field(default_factory=list)
    p_referable: np.ndarray | None = None
    referable: np.ndarray | None = None
    referable_note: str = ""
    referable_kind: str = "referable_dr"
    referable_cut: int | None = None  # the lowest referable grade (two classes: the positive class's index)
    notes: list[str] = field(default_factory=list)
    given: list[str] = field(default_factory=list)  # every input in order, repeats included: a row each
    synthetic: bool = False  # the ensemble learned from demo-data's synthetic images: its grades mean nothing for eyes
    member_labels: np.ndarray | None = None  # (m, n) each member's own top class, in the order of ``members``
    withheld: np.ndarray | None = None  # (n,) bool: ungradable or unlike the training images: no grade is shown
    collapsed_kept: list[str] = field(default_factory=list)  # members that collapsed, voted by --keep-collapsed
    below_majority: dict | None = None  # the method's test accuracy below the majority class's (figures in it)

    def is_withheld(self, i: int) -> bool:
        """Whether row ``i``'s grade is withheld: a flat frame or an image unlike the training images, whose
        grade means nothing (its CSV cells are empty, as an unreadable input's; ``--json`` keeps the raw output
        under ``withheld``)."""
        return self.withheld is not None and bool(self.withheld[i])

    def referable_of(self, i: int) -> bool | None:
        """Row ``i``'s referable call, or ``None``: no threshold for this method, or an image that is
        ungradable or unlike the training images, whose grade no call can rest on."""
        if self.referable is None or self.is_withheld(i):
            return None
        return bool(self.referable[i])

    @property
    def summary_columns(self) -> tuple[str, str]:
        """:data:`REFERABLE_COLUMNS`, or :data:`POSITIVE_COLUMNS` on a two-class task."""
        return POSITIVE_COLUMNS if self.referable_kind == "positive_class" else REFERABLE_COLUMNS

    def note_of(self, i: int) -> str:
        """Why row ``i`` is referred (``review: ...``, ungradable, unlike the training images), or ``""``."""
        return self.notes[i] if i < len(self.notes) else ""

    def class_value(self, label: int):
        """The class of a label index as ``dataset.json`` holds it: an integer grade or a name (JSON keeps the type)."""
        return self.classes[label] if 0 <= label < len(self.classes) else label

    def class_of(self, label: int) -> str:
        """The class name (or integer grade) of a label index."""
        return str(self.classes[label]) if 0 <= label < len(self.classes) else str(label)

    @property
    def top_class(self) -> np.ndarray:
        """``(n,)`` the most probable class of the ensemble probabilities; a tie goes to ``label`` when it is
        among the most probable (a hard vote's 1–1 tie, broken by summed probability), so that
        ``top_class`` differs from ``label`` only where ``label`` is not a most probable class (``+thr``)."""
        top = self.probs.argmax(axis=1)
        if not len(top):
            return top
        at_top = self.probs[np.arange(len(top)), self.labels] >= self.probs.max(axis=1)
        return np.where(at_top, self.labels, top)

    @property
    def top_prob(self) -> np.ndarray:
        """``(n,)`` the largest ensemble probability (of :attr:`top_class`)."""
        return self.probs.max(axis=1)

    def to_json(self) -> dict:
        """The predictions as plain JSON values: method, members, classes, one entry per image, skipped inputs."""
        top_class, top_prob = self.top_class, self.top_prob
        rows = [{"path": path, "label": int(self.labels[i]), "class": self.class_value(int(self.labels[i])),
                 "label_prob": float(self.confidence[i]), "top_class": int(top_class[i]),
                 "top_prob": float(top_prob[i]), "agreement": float(self.agreement[i]), "review": bool(self.review[i]),
                 "probs": [float(p) for p in self.probs[i]], "note": self.note_of(i)}
                for i, path in enumerate(self.paths)]
        if self.member_labels is not None:  # who said what: agreement alone does not name the dissenting member
            for i, row in enumerate(rows):
                row["member_classes"] = {name: self.class_value(int(self.member_labels[j, i]))
                                         for j, name in enumerate(self.members)}
        for row in rows:
            row["path"] = printable_path(row["path"])  # valid UTF-8 whatever the file name's bytes
        out = {"method": self.method, "members": list(self.members), "classes": list(self.classes),
               "synthetic": self.synthetic, "collapsed_kept": list(self.collapsed_kept),
               "below_majority": self.below_majority,
               "referral": self.referral_note, "predictions": rows,
               "skipped": {printable_path(p): why for p, why in self.skipped.items()},
               "not_graded": [{"path": printable_path(p), "reason": self.skipped[p]}  # a row per input, repeats too
                              for p in ([p for p in self.given if p in self.skipped] or list(self.skipped))]}
        if self.p_referable is not None:
            p_key, key = self.summary_columns
            for i, row in enumerate(rows):
                row[p_key] = float(self.p_referable[i])
                row[key] = self.referable_of(i)
            out["referable"] = self.referable_note
        for i, row in enumerate(rows):
            if self.is_withheld(i):  # the raw output, for research, away from the keys a reader acts on
                raw = {key: row[key] for key in ("label", "class", "label_prob", "top_class", "top_prob", "agreement",
                                                  "probs", "member_classes", *self.summary_columns) if key in row}
                row.update({key: None for key in raw}, withheld=raw)
        return out

    def to_csv(self) -> str:
        """One row per image, columns :data:`CSV_COLUMNS` then ``prob_0..prob_{k-1}``."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        k = self.probs.shape[1]
        extra = self.summary_columns if self.p_referable is not None else ()
        writer.writerow(csvsafe.row([*CSV_COLUMNS, *(f"prob_{j}" for j in range(k)), *extra, NOTE_COLUMN]))
        top_class, top_prob = self.top_class, self.top_prob
        blank = [""] * (len(CSV_COLUMNS) - 2 + k + len(extra))  # label .. agreement, probs, referable columns
        for i, path in enumerate(self.paths):  # csvsafe: no cell a spreadsheet would run as a formula
            if self.is_withheld(i):  # ungradable, or unlike the training images: no grade to act on
                writer.writerow(csvsafe.row([printable_path(path), *blank[:6], 1, *blank[6:], self.note_of(i)]))
                continue
            call = self.referable_of(i)
            tail = [] if not extra else [f"{self.p_referable[i]:.8g}", "" if call is None else int(call)]
            writer.writerow(csvsafe.row([
                printable_path(path), int(self.labels[i]), self.class_of(int(self.labels[i])), f"{self.confidence[i]:.8g}",
                int(top_class[i]), f"{top_prob[i]:.8g}", f"{self.agreement[i]:.6g}", int(self.review[i]),
                *(f"{p:.8g}" for p in self.probs[i]), *tail, self.note_of(i)]))
        ungraded = [p for p in self.given if p in self.skipped] or list(self.skipped)  # an input given twice: 2 rows
        for path in ungraded:  # every input is accounted for: the ungraded ones, referred
            row = [printable_path(path), *blank[:6], 1, *blank[6:], f"not graded: {self.skipped[path]}"]
            writer.writerow(csvsafe.row(row))
        return buf.getvalue()


def printable_path(path: str) -> str:
    """``path`` as text that any UTF-8 output takes: bytes that are not UTF-8 become ``\\xNN`` escapes."""
    return csvsafe.printable(path)


# ---- loading ---------------------------------------------------------------------------
def fitted_methods(workdir: str | Path) -> list[str]:
    """The combiner methods fitted by ``vote`` in ``workdir`` (file stems, sorted)."""
    folder = Path(workdir) / "ensemble" / "combiners"
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def _refuse_without_model(name: str, metrics: dict) -> None:
    if (metrics.get("imported") or {}).get("kind") == "probabilities":
        raise UserError(f"Member {name!r} was imported as val/test probabilities and has no model, so it cannot "
                        f"grade or explain new images: vote with --members naming only members that have a model.")


def load_member(member_dir: str | Path, *, of: str | None = None) -> LoadedMember:
    """Load one complete member, refusing a ``model.keras`` that differs from ``metrics.json``'s SHA-256 (``of``:
    the k-fold member a copy folder belongs to, named in the messages instead of the copy's number).

    Raises:
        UserError: no ``metrics.json``, a modified, corrupt or truncated ``model.keras``.
    """
    import keras

    import members.model.architecture  # noqa: F401  (registers OrdinalHead for safe_mode loading)
    from members.model.spec import load_spec_file

    member_dir = Path(member_dir)
    name = of or member_dir.name
    if of is None:
        _refuse_gone(member_dir)
    fix = repair_hint(member_dir.parent.parent if of else member_dir, then_vote=True)
    if not (member_dir / "metrics.json").exists():
        raise UserError(f"Member {name!r} is incomplete: {member_dir / 'metrics.json'} does not exist; "
                        "finish its training or re-run vote without it.")
    metrics = read_json(member_dir / "metrics.json", keys=("input_size",), fix=fix)
    _refuse_without_model(name, metrics)
    if metrics.get("folds"):  # a k-fold member: its K copies, averaged over one shared decode
        return _load_folded(member_dir, metrics)
    path = member_dir / "model.keras"
    if not path.is_file():
        raise UserError(f"{path} does not exist; {fix}.")
    if sha256_file(path) != metrics.get("model_sha256"):
        raise UserError(f"{path} was modified after training (SHA-256 differs from metrics.json); {fix}.")
    try:  # no compile: predicting needs no loss or optimizer (an imported model's custom loss is not loadable)
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # noqa: BLE001 (zip, HDF5 and config errors all mean the same to the user)
        again = (f"import {name!r} again (import-member --force)" if metrics.get("imported")
                 else f"retrain the member {name!r}")
        from ensemble.importer import foreign_classes

        foreign = foreign_classes(path)
        if foreign:  # imported before import-member refused custom code
            raise UserError(f"{path} uses {', '.join(repr(c) for c in foreign[:3])}, custom code that only built-in "
                            f"Keras layers can replace here; rebuild the model from built-in layers and {again}, or "
                            f"vote with --members leaving {name!r} out.") from None
        raise UserError(f"{path} could not be loaded ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                        f"the file is corrupt or truncated, {again}.") from None
    spec_path = member_dir / SPEC
    if not spec_path.exists() and (not metrics.get("imported") or (metrics["imported"] or {}).get("source_member")):
        raise UserError(missing_spec(name, spec_path, fix))  # trained (or imported from a member) with one
    spec = load_spec_file(spec_path) if spec_path.exists() else None
    if not isinstance(metrics["input_size"], int) or isinstance(metrics["input_size"], bool):
        raise UserError(f"{member_dir / 'metrics.json'} is corrupt: input_size is {metrics['input_size']!r}, not an "
                        f"integer; {fix}.")
    return LoadedMember(name=name, model=model, input_size=int(metrics["input_size"]),
                        preprocessing=spec.preprocessing if spec else "none",
                        fundus_crop=spec.fundus_crop if spec else False, tta=bool(metrics.get("tta", False)), num_classes=int(metrics.get("num_classes", 0)))


def _refuse_gone(member_dir: Path) -> None:
    """Refuse, with the vote that does without it, a member whose whole folder is gone (deleted or renamed)."""
    if member_dir.is_dir():
        return
    import shlex

    raise UserError(f"Member {member_dir.name!r} of this ensemble is gone: its folder {member_dir} does not exist "
                    f"(deleted or renamed); run `python cli.py vote --workdir {shlex.quote(str(member_dir.parent.parent))}` "
                    "to combine the members that are there, or restore the folder.")


def _check_member_files(report_folder: Path, name: str, manifest: dict) -> None:
    """Before any model loads, refuse member ``name`` of the vote in ``report_folder`` whose folder is gone, whose
    ``metrics.json`` is corrupt, that has only probabilities, that lacks files its training wrote, or whose
    ``spec.toml`` is missing or not the one the vote recorded."""
    from members.training.guard import damage, missing_files

    folder = report_folder.parent / "members" / name
    _refuse_gone(folder)
    path = folder / "metrics.json"
    if not path.is_file():
        return  # load_member says it is incomplete
    fix = repair_hint(folder, then_vote=True)
    metrics = read_json(path, fix=fix)
    if not isinstance(metrics, dict):
        raise UserError(f"{path} is corrupt: it holds no JSON object; {fix}.")
    _refuse_without_model(name, metrics)
    missing = missing_files(folder, metrics)
    if missing:
        raise UserError(f"{damage(name, folder, missing)}; {fix}.")
    check_spec(report_folder, name, folder, manifest, fix)


def _load_folded(member_dir: Path, metrics: dict) -> LoadedMember:
    """A k-fold member (``members/training/folds.py``) as one member whose model averages its K copies' probabilities."""
    from members.training.folds import FOLDS_DIR, AveragedModel

    copies = [load_member(member_dir / FOLDS_DIR / str(i), of=member_dir.name) for i in range(int(metrics["folds"]))]
    return replace(copies[0], name=member_dir.name,
                   model=AveragedModel([c.model for c in copies], metrics.get("regression")))


def require_report(workdir: Path) -> Path:
    """``workdir``'s ``ensemble/report.json``; a :class:`UserError` when the workdir is missing or vote never ran."""
    if not workdir.is_dir():
        raise UserError(f"The workdir {workdir} {'is a file' if workdir.exists() else 'does not exist'}; pass the "
                        "folder that prepare, train-member and vote wrote (--workdir).")
    report_path = workdir / "ensemble" / "report.json"
    if not report_path.is_file():
        raise UserError(f"No fitted ensemble in {workdir}: {report_path} does not exist; "
                        f"{VOTE_HINT.format(workdir=workdir)}.")
    return report_path


def load_ensemble(workdir: str | Path, method: str | None = None) -> Ensemble:
    """The fitted combiner ``method`` (default: the report's best) with its members loaded.

    Raises:
        UserError: ``vote`` was never run, an unknown method (the message lists the fitted
            ones), a member missing, modified or corrupt.
    """
    from ensemble.combiners import load_combiner

    workdir = Path(workdir)
    report_path = require_report(workdir)
    manifest = check_files(report_path.parent, ["report.json"])  # one vote wrote it: see ensemble.manifest
    _refuse_another_dataset(workdir, manifest)
    report = read_json(report_path, keys=("best_method",), fix=VOTE_HINT.format(workdir=workdir))
    best = report.get("best_method")
    chosen = method or best
    fitted = fitted_methods(workdir)
    if chosen not in fitted:
        raise UserError(f"No fitted combiner {chosen!r} in {workdir / 'ensemble' / 'combiners'}; expected one of "
                        f"{', '.join(fitted) or 'none'} (re-run vote to fit others). Received: method={chosen!r}")
    check_files(report_path.parent, [f"combiners/{chosen}.json"], manifest)
    combiner = load_combiner(workdir / "ensemble" / "combiners" / f"{chosen}.json")
    names = list(getattr(combiner, "member_names_", []))
    for name in names:  # before any model loads: one sentence, not a half-loaded ensemble
        _check_member_files(report_path.parent, name, manifest)
    members = [load_member(workdir / "members" / name) for name in names]
    for name in names:
        path = workdir / "members" / name / "metrics.json"
        check_member(report_path.parent, name, read_json(path), manifest, sha256_file(path))
    for m in members:
        if m.num_classes and m.num_classes != combiner.n_classes_:
            raise UserError(f"Member {m.name!r} has {m.num_classes} classes but the {chosen!r} combiner was fitted "
                            f"on {combiner.n_classes_}; {VOTE_HINT.format(workdir=workdir)} again.")
    threshold, alone, note = referral_rule(report, chosen)
    classes = report.get("classes") or list(range(combiner.n_classes_))
    ref = report.get("referable") or {}
    cut, ref_threshold, ref_note = _referable_rule(ref, chosen, _rows_of(report), classes)
    kind = "positive_class" if ref.get("kind") == "positive_class" else "referable_dr"
    if ref_threshold is not None:  # a grade the call contradicts is referred too (ensemble.referral)
        name = ref.get("positive_class") if kind == "positive_class" else classes[cut] if 0 <= cut < len(classes) else cut
        note += f"; or when {conflict_words(kind, str(name))}"
    looks = None
    if appearance.FILE in manifest["files"] or (report_path.parent / appearance.FILE).is_file():  # older votes: none
        check_files(report_path.parent, [appearance.FILE], manifest)  # a deleted one is refused, not skipped
        looks = appearance.load(report_path.parent)
    kept = report.get("collapsed_kept")
    return Ensemble(workdir, chosen, combiner, members, threshold, note, list(classes), alone,
                    cut, ref_threshold, ref_note, kind, looks,
                    synthetic=bool((report.get("data") or {}).get("synthetic")),
                    collapsed_kept=[n for n in names if isinstance(kept, list) and n in kept],  # older votes: none
                    below_majority=_below_majority(report, chosen, list(classes)))


def _below_majority(report: dict, chosen: str, classes: list) -> dict | None:
    """``{method, accuracy, majority_accuracy, majority_class}`` when ``report.json`` ``below_baseline`` lists the
    combiner ``chosen`` (its test accuracy below always answering the majority class); None otherwise, and for a
    report written before the key."""
    below = report.get("below_baseline")
    if not isinstance(below, dict) or chosen not in (below.get("ensembles") or []):
        return None
    accuracy = (((report.get("ensembles") or {}).get(chosen) or {}).get("accuracy") or {}).get("value")
    c = report.get("baseline_class")
    return {"method": chosen, "accuracy": accuracy, "majority_accuracy": below.get("baseline"),
            "majority_class": classes[c] if isinstance(c, int) and 0 <= c < len(classes) else c}


def ensemble_warnings(ens: "Ensemble | PredictionResult") -> list[str]:
    """The warnings ``predict`` and ``explain`` give with their summary each time they use an ensemble (``ens``, or a
    result it gave): members that collapsed and were voted by ``--keep-collapsed`` (``report.json``
    ``collapsed_kept``), and a combiner whose test accuracy was below the majority class's (``below_baseline``)."""
    out = []
    if ens.collapsed_kept:
        many = len(ens.collapsed_kept) > 1
        out.append(f"WARNING: this ensemble ({ens.method}) votes collapsed member{'s' if many else ''} "
                   f"{', '.join(ens.collapsed_kept)} (kept by vote --keep-collapsed): {'each' if many else 'it'} "
                   "predicts one class (or sits at chance) on the rows that judged it, yet weighs in every grade the "
                   f"ensemble gives; retrain {'them' if many else 'it'}, or vote again without --keep-collapsed.")
    b = ens.below_majority
    if b:
        figures = ("" if not all(isinstance(b.get(k), (int, float)) for k in ("accuracy", "majority_accuracy")) else
                   f" ({b['accuracy']:.3f} against {b['majority_accuracy']:.3f})")
        out.append(f"WARNING: {ens.method}'s test accuracy was below the majority class's{figures}: always answering "
                   f"class {b.get('majority_class')} got more test images right than these grades do (report.json "
                   "below_baseline); do not act on them.")
    return out


def warn_of(ens: "Ensemble | PredictionResult") -> None:
    """Print :func:`ensemble_warnings` on stderr."""
    for line in ensemble_warnings(ens):
        print(line, file=sys.stderr, flush=True)


def referral_rule(report: dict, chosen: str) -> tuple[float | None, bool, str]:
    """``(threshold, refer_without_agreement, note)`` of ``report.json``'s referral rule for combiner ``chosen``:
    the val-chosen rule for the best method, the agreement fallback for any other."""
    best = report.get("best_method")
    referral = report.get("referral") or {}
    threshold, coverage = referral.get("threshold"), referral.get("target_coverage")
    alone = bool(referral.get("refer_without_agreement"))
    if chosen == best and threshold is not None:
        from ensemble.report import coverage_reached

        graded = report.get("ordinal", True) is not False and (report.get("num_classes") or 0) > 2
        note = (f"sent for review when the ensemble's confidence < {threshold:.4g} (chosen on {_rows_of(report)} to "
                f"keep {coverage:.0%} of images{coverage_reached(referral, graded)})" if coverage
                else f"sent for review when confidence < {threshold:.4g}")
        note += f" or when no member gives the ensemble's {'grade' if graded else 'class'}" if alone else ""
    else:
        alone = False
        threshold = None
        note = (f"sent for review when fewer than {AGREEMENT_FALLBACK:.0%} of members agree with the ensemble "
                f"(report.json holds a review threshold only for {best!r}, not {chosen!r})")
    return threshold, alone, note


def _rows_of(report: dict) -> str:
    """The rows vote chose its thresholds on: ``val``, or the out-of-fold rows of k-fold members."""
    return "the out-of-fold train+val rows" if (report.get("protocol") or {}).get("name") == "oof" else "val"


def _referable_rule(ref: dict, chosen: str, rows: str = "val",
                    classes: Sequence = range(5)) -> tuple[int | None, float | None, str]:
    """``(cut grade or positive class index, threshold, note)`` of ``report.json``'s referable-DR (or two-class
    positive-class, or other ordered grades': positive at the cut) section for the method ``chosen``."""
    two = ref.get("kind") == "positive_class"
    cut = ref.get("positive_index") if two else ref.get("cut_grade")
    if not ref.get("applicable") or not isinstance(cut, int):
        return None, None, ""
    score, p_col, col = ((f"P(class {ref.get('positive_class')})", "p_positive", "positive") if two else
                         (f"P(grade >= {cut})", "p_referable", "referable"))
    point = ref.get("ensemble") or {}
    threshold = point.get("threshold")
    if point.get("name") != chosen or not isinstance(threshold, (int, float)):
        return cut, None, (f"{p_col} = {score}; `{col}` is left empty: vote chose its threshold for "
                           f"{point.get('name')!r}, not {chosen!r}")
    target = ref.get("sensitivity_target")
    why = f", chosen on {rows} for {target:.0%} sensitivity" if isinstance(target, (int, float)) else ""
    what = summary_name(ref, classes)
    return cut, float(threshold), f"{what} when {score} >= {threshold:.4g}{why}"


def _refuse_another_dataset(workdir: Path, manifest: dict) -> None:
    """Refuse an ensemble voted on another prepared dataset than the workdir holds now (``prepare --force`` since).

    Its members and combiners were fitted on the old rows (and maybe other classes); grading with them
    under the new ``dataset.json`` would mix two datasets silently. A manifest without a fingerprint
    (an older vote) or a workdir without ``dataset.json`` is not checked.
    """
    from members.data.dataset import PREPARE
    from members.infra.transaction import roll_forward

    voted_on = manifest.get("fingerprint")
    roll_forward(workdir, PREPARE)  # a re-prepare killed after its commit point is finished first
    meta = workdir / "dataset.json"
    if not voted_on or not meta.is_file():
        return
    info = read_json(meta)
    if not isinstance(info, dict):
        raise UserError(f"{meta} is corrupt (not a JSON object); run `python cli.py prepare --workdir {workdir} ...` "
                        "again with the options it was prepared with.")
    now = info.get("fingerprint")
    if now and now != voted_on:
        raise UserError(f"The ensemble in {workdir / 'ensemble'} was voted on another prepared dataset than the one "
                        f"{meta} describes now (split fingerprint {str(voted_on)[:12]}… then, {str(now)[:12]}… now), "
                        f"as after prepare --force; train the members on the new data and "
                        f"{VOTE_HINT.format(workdir=workdir).replace(' first', '')}, or predict from a workdir that "
                        "still holds the old data.")


# ---- images ----------------------------------------------------------------------------
UNDECODABLE = "cannot be decoded as an image (not an image, or truncated/corrupt)"
TOO_LARGE = ("is too large to decode in the memory available ({size}); downscale it (to 4096 px on its longer side, "
             "say) or free memory, and grade it again")


def _resolved(path: str) -> Path | None:
    """``path`` resolved as the OS resolves it; None for a loop of symbolic links (it is skipped with its reason)."""
    try:
        return Path(path).resolve()
    except (RuntimeError, OSError):
        return None


def check_file(path: str, *, recursive: bool = False) -> str | None:
    """Why ``path`` cannot be graded (missing, a folder, empty, unreadable, too large, an animated WebP), or None
    (``recursive``: a folder left in by :func:`expand_folders` with ``recursive`` holds no file at any depth).

    Besides the file checks, the header is read with Pillow (no pixels are decoded): a
    decompression bomb (more pixels than Pillow's ``Image.MAX_IMAGE_PIXELS`` limit allows, the
    rule ``prepare`` applies) is refused before TensorFlow would allocate it, and so is an
    animated WebP (TensorFlow cannot decode one into RGB). An animated GIF is graded on its
    first frame, as ``decode_image`` reads it; TIFF, PPM, JPEG 2000 and the other formats TensorFlow
    cannot decode are decoded with Pillow (their first frame); a file Pillow cannot identify is left
    to TensorFlow's decoder when it starts like one of TensorFlow's formats (JPEG, PNG, GIF, BMP, WebP),
    and is refused as no image otherwise (the decoder would print a traceback for it).
    """
    p = Path(path)
    if not p.exists():
        if p.is_symlink():  # a link whose target is missing, or a loop of links
            try:
                p.resolve(strict=True)
            except RuntimeError:
                return "is a loop of symbolic links"
            except OSError:
                pass
            return f"is a symbolic link to {os.readlink(p)}, which does not exist"
        return "does not exist"
    if p.is_dir():
        from members.data.folders import IMAGE_EXTENSIONS

        if not os.access(p, os.R_OK | os.X_OK):
            return "is a folder that cannot be read (permission denied)"
        if recursive:
            return "is a directory with no file in it or in its sub-folders (hidden ones aside)"
        return _images_below(path) or (f"is a directory with no image file in it ({' '.join(IMAGE_EXTENSIONS)}; "
                                        "sub-folders are not searched)")
    if not p.is_file():
        return "is not a regular file"
    if p.stat().st_size == 0:
        return "is empty (0 bytes)"
    if not os.access(p, os.R_OK):
        return "cannot be read (permission denied)"
    return _header_problem(p)


def _images_below(folder: str) -> str | None:
    """Why a folder of sub-folders only (a folder per class, ``DIR/test/0/``) gave no image: the images every folder
    below it holds (counted by extension) and how to reach them, ``--recursive`` (or the glob, when they all lie one
    or two levels down); None when none lies there."""
    import shlex
    from collections import Counter

    from members.data.folders import IMAGE_EXTENSIONS

    below = _walk(folder, limit=WALK_LIMIT)
    depths = Counter(depth for depth, path in below.files  # depth 2: in a sub-folder
                     if depth > 1 and os.path.splitext(path)[1].casefold() in IMAGE_EXTENSIONS and os.path.isfile(path))
    n = sum(depths.values())
    if not n:
        return None
    subs = sum(1 for depth, _ in below.folders if depth == 1)
    s_ = lambda k: "s" if k != 1 else ""  # noqa: E731
    count = f"{'at least ' if below.cut else ''}{n} image{s_(n)}"
    shown = shlex.quote(printable_path(folder.rstrip(os.sep) or folder))
    head = "is a directory with no image file in it (sub-folders are not searched); "
    if set(depths) == {3}:
        inner = sum(1 for depth, _ in below.folders if depth == 2)
        return (f"{head}the {inner} folder{s_(inner)} inside its {subs} sub-folder{s_(subs)} "
                f"hold{'s' if inner == 1 else ''} {count}: pass {shown}/*/*/, or --recursive")
    if set(depths) == {2}:
        return f"{head}its {subs} sub-folder{s_(subs)} hold{'s' if subs == 1 else ''} {count}: pass {shown}/*/, or --recursive"
    levels = ", ".join(f"{depths[d]} {_LEVELS.get(d - 1, f'{d - 1} levels')} down" for d in sorted(depths))
    return (f"{head}its {subs} sub-folder{s_(subs)} and the folders below them hold {count} ({levels}): pass "
            "--recursive to search them all")


_LEVELS = {1: "one level", 2: "two levels", 3: "three levels"}
WALK_LIMIT = 200_000
"""Entries a folder's hint counts at most (it then says "at least"): a folder of sub-folders given by mistake may
be a whole disk."""


@dataclass
class Below:
    """What lies below a folder, depth first in sorted order (hidden entries aside): ``files`` ``(depth, path)``
    (1 = in the folder itself; anything that is not a folder: a file, a broken link, a loop of links, a FIFO),
    ``folders`` ``(depth, path)`` searched, ``again`` linked folders not searched twice (a link back up the tree,
    or a second link to one), ``unreadable`` folders that could not be listed, ``cut``: stopped at the limit."""

    files: list[tuple[int, str]] = field(default_factory=list)
    folders: list[tuple[int, str]] = field(default_factory=list)
    again: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    cut: bool = False


def _walk(folder: str, skip: frozenset[str] | set[str] = frozenset(), limit: int | None = None) -> Below:
    """Every entry below ``folder`` (:class:`Below`), leaving out the files whose real path is in ``skip``; a folder
    reached twice (links make cycles) is searched once."""
    below = Below()
    seen = {os.path.realpath(folder)}

    def entries(d: str, depth: int) -> list[tuple[str, int]]:
        try:
            names = sorted(n for n in os.listdir(d) if not n.startswith("."))
        except OSError:
            below.unreadable.append(d)
            return []
        return [(os.path.join(d, n), depth) for n in reversed(names)]

    stack = entries(folder, 1)
    while stack:
        if limit is not None and len(below.files) + len(below.folders) >= limit:
            below.cut = True
            break
        path, depth = stack.pop()
        if not os.path.isdir(path):
            if not skip or os.path.realpath(path) not in skip:
                below.files.append((depth, path))
            continue
        real = os.path.realpath(path)
        if real in seen:
            below.again.append(path)
            continue
        seen.add(real)
        below.folders.append((depth, path))
        stack += entries(path, depth + 1)
    return below


def _header_problem(path: Path) -> str | None:
    from PIL import Image

    from members.data.integrity import REASON_DAMAGED_JPEG, REASON_DAMAGED_PNG, png_damage
    from members.data.labels import REASON_FORMAT, _bmp_decodable
    from members.data.pillow_image import REASON_HEIF, heif_file
    from members.infra.archives import file_kind, how_to_open

    try:
        with Image.open(path) as im:
            fmt, frames, pixels = im.format, int(getattr(im, "n_frames", 1)), im.width * im.height
            if fmt == "BMP" and (im.mode == "P" or not _bmp_decodable(path)):  # prepare's rule: TF reads grey indices
                return REASON_FORMAT
    except Image.DecompressionBombError:
        return (f"is too large to decode safely (over Pillow's limit of {2 * Image.MAX_IMAGE_PIXELS:,} pixels, "
                "the one prepare applies); downscale it first")
    except Exception as exc:  # noqa: BLE001 - not identified: TensorFlow's own formats go to its decoder, the rest is no image
        if heif_file(path):  # prepare's reason: a phone's HEIC is no corrupt file, it wants converting
            return REASON_HEIF.removeprefix("image ")
        if "truncated" in str(exc).casefold():  # the file ends inside its header: libjpeg would print its own line
            return UNDECODABLE
        try:
            with open(path, "rb") as f:
                head = f.read(12)
        except OSError:
            return None
        ours = head.startswith((b"\xff\xd8", b"\x89PNG", b"GIF8", b"BM")) or (head[:4] == b"RIFF" and head[8:] == b"WEBP")
        kind = None if ours else file_kind(path)  # a download's train.zip passed as it came
        if kind is not None:
            return f"is {kind}, not an image: {how_to_open(path, kind, 'the images it holds')}"
        return None if ours else UNDECODABLE  # before the pipeline: no decoder traceback on stderr
    if fmt == "WEBP" and frames > 1:
        return f"is an animated WebP ({frames} frames), which TensorFlow cannot decode; save one frame as PNG or JPEG"
    if fmt == "PNG" and png_damage(path):  # prepare's check: Pillow reads past it, TensorFlow's libpng refuses it
        return REASON_DAMAGED_PNG.removeprefix("image file ")
    if fmt in ("JPEG", "MPO") and _cut_short(path):  # prepare's check: its grade would rest on blank grey blocks
        return REASON_DAMAGED_JPEG.removeprefix("image file ")
    return None if pixels > 0 else "has no pixels"


def _cut_short(path: Path) -> bool:
    """Whether a JPEG's data ends early (:func:`members.data.thumbnail.glance`, at a reduced scale); one that does
    not decode at all is left to the decoder, which names it undecodable."""
    from PIL import Image

    from members.data.thumbnail import glance

    try:
        with Image.open(path) as im:
            return glance(im)[1]
    except Exception:  # noqa: BLE001 - truncated, broken: not this check's to say
        return False


def settle_skipped(paths: Sequence[str], candidates: Sequence[str], kept, skipped: dict[str, str],
                   variants: Sequence[tuple[int, str, bool]] = (), *, left: str = "") -> None:
    """Add the ``candidates`` the decoder dropped (not in ``kept``) to ``skipped``, each with why
    (:func:`undecoded_reason`, reading it alone for ``variants``); refuse when none is left (``left``: what the
    refusal adds before its ``Received:``, e.g. that ``--out`` is left as it was).

    Raises:
        UserError: no input of ``paths`` (files, or a folder without any) could be read (the reasons are listed on
            stderr first).
    """
    decoded = set(np.asarray(kept).tolist())
    for i, p in enumerate(candidates):
        if i not in decoded and p not in skipped:
            skipped[p] = undecoded_reason(p, variants) if variants else UNDECODABLE
    if not decoded:
        _report_skipped(skipped)
        n = len(paths)  # a file or a folder: inputs, not images
        head = ("The one input could not be read (its reason is above)" if n == 1 else
                f"None of the {n} inputs could be read (the reason for each is above)")
        raise UserError(f"{head}: pass image files (JPEG, PNG, TIFF, or another format Pillow reads) or folders of "
                        f"them{'; ' + left if left else ''}. Received: paths={list(paths[:3])}"
                        f"{'...' if n > 3 else ''}")


def undecoded_reason(path: str, variants: Sequence[tuple[int, str, bool]]) -> str:
    """Why the pipeline dropped ``path``: it is read again, alone, as :func:`image_batches` reads it. Out of memory
    (TensorFlow's ``ResourceExhaustedError``, Python's ``MemoryError``) is :data:`TOO_LARGE`, not corruption; any
    other failure is :data:`UNDECODABLE`; a file that decodes alone failed for want of memory beside the others."""
    import tensorflow as tf

    from members.data.pipeline import load_variants, orientation_table

    name = os.fsencode(str(path))
    try:
        load_variants(tf.constant(name), variants, orientation_table([name]))
    except (tf.errors.ResourceExhaustedError, MemoryError):
        return TOO_LARGE.format(size=_pixel_size(path))
    except Exception:  # noqa: BLE001 - the decoder's many errors: not an image, truncated, corrupt
        return UNDECODABLE
    return (f"could not be decoded beside the other images, though it decodes alone ({_pixel_size(path)}: out of "
            "memory with several large images at once?); grade it on its own")


def _pixel_size(path: str) -> str:
    """``"12000 × 12000 px"`` from the file's header, or ``"its size unknown"``."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return f"{im.width} × {im.height} px"
    except Exception:  # noqa: BLE001 - only for the message
        return "its size unknown"


def member_variant(member: LoadedMember) -> tuple[int, str, bool]:
    """How ``member`` wants its images: ``(input size, preprocessing, fundus crop)``."""
    return member.input_size, member.preprocessing, member.fundus_crop


def image_batches(paths: Sequence[str], variants: Sequence[tuple[int, str, bool]], *, batch_size: int = BATCH_SIZE):
    """Batches ``(indices, images per variant)``, each image exactly as training prepares it.

    Every file is read once and prepared for every variant by
    :func:`members.data.pipeline.load_variants`, the function training's pipeline uses, so each
    member sees the very pixels (``uint8``) it would see in training's evaluation; one decode
    serves every member size that shares its reduced JPEG scale.

    Args:
        paths: readable image files (see :func:`check_file`).
        variants: ``(input size, preprocessing, fundus crop)`` triples.
        batch_size: images per batch.

    Returns:
        A ``tf.data.Dataset`` of ``(int64 indices into paths, (uint8 batch per variant, ...))``; images
        that fail to decode are missing from ``indices``.
    """
    import tensorflow as tf

    from members.data.pipeline import load_variants, orientation_table

    variants = [(int(size), str(prep), bool(crop)) for size, prep, crop in variants]
    names = [os.fsencode(str(p)) for p in paths]  # bytes: file names in any encoding reach the file system as they are
    turns = orientation_table(names)  # EXIF-turned JPEGs, as training turns them
    ds = tf.data.Dataset.from_tensor_slices((np.arange(len(paths), dtype=np.int64), names))
    ds = ds.map(lambda i, path: (i, load_variants(path, variants, turns)), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.ignore_errors(log_warning=False).batch(batch_size).prefetch(tf.data.AUTOTUNE)


def member_probs(model, images, *, tta: bool = False) -> np.ndarray:
    """One member's probabilities for a batch of images (0–255), rows renormalised to 1.

    Training's own evaluation (:func:`members.training.loop.predict_probs`) on this one batch, so
    ``predict`` and the cached val/test probabilities share one TTA (four flips, averaged).
    """
    import tensorflow as tf

    from members.training.loop import predict_probs

    return predict_probs(model, tf.data.Dataset.from_tensors(images), tta=tta)


class PartlyDone(KeyboardInterrupt):
    """An interruption of :func:`ensemble_member_probs` carrying what every member finished: ``probs`` (m, n, k) and
    the ``indices`` of those paths (None when no batch was finished)."""

    probs: np.ndarray | None = None
    indices: np.ndarray | None = None
    note: str = ""


def ensemble_member_probs(members: Sequence[LoadedMember], paths: Sequence[str], *, tta: bool = False,
                          batch_size: int = BATCH_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Every member's probabilities for the decodable ``paths``: ``(P (m, n, k), indices (n,))``.
    """
    variants = list(dict.fromkeys(member_variant(m) for m in members))
    slot = [variants.index(member_variant(m)) for m in members]
    parts: list[list[np.ndarray]] = [[] for _ in members]
    kept: list[np.ndarray] = []
    try:
        for indices, images in _progress(image_batches(paths, variants, batch_size=batch_size), len(paths),
                                         batch_size):
            kept.append(indices.numpy())
            for j, m in enumerate(members):
                parts[j].append(member_probs(m.model, images[slot[j]], tta=tta or m.tta))
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the batches every member finished go with the interruption
        done = min(len(p) for p in parts)
        stop = PartlyDone()
        if done:
            stop.probs = np.stack([np.concatenate(p[:done]) for p in parts])
            stop.indices = np.concatenate(kept[:done])
        raise stop from None
    if not kept:
        return np.zeros((len(members), 0, 0)), np.zeros(0, dtype=np.int64)
    return np.stack([np.concatenate(p) for p in parts]), np.concatenate(kept)


def _progress(batches, n: int, batch_size: int):
    from rich.console import Console
    from rich.progress import Progress

    console = Console(stderr=True)
    if not console.is_terminal:  # a log file or a pipe (cron, a batch job): a line at every tenth, not silence
        import time

        start, done, step = time.perf_counter(), 0, 1
        for batch in batches:
            yield batch
            done += int(batch[0].shape[0])
            if n > 2 * batch_size and done >= step * n / 10:
                step = int(done * 10 // n) + 1
                print(f"Predicting: {done:,} of {n:,} images ({done / n:.0%}) in {time.perf_counter() - start:.0f} s",
                      file=sys.stderr, flush=True)
        return
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("Predicting", total=n)
        for batch in batches:
            yield batch
            progress.advance(task, int(batch[0].shape[0]))


# ---- the verb --------------------------------------------------------------------------
def predict_images(workdir: str | Path, paths: str | Sequence[str], *, out: str | Path | None = None,
                   method: str | None = None, tta: bool = False, batch_size: int = BATCH_SIZE,
                   print_csv: bool = True, force: bool = False, recursive: bool = False) -> PredictionResult:
    """Grade ``paths`` with the fitted ensemble; write the CSV to ``out`` (or stdout) and a summary to stderr.

    Args:
        workdir: a workdir where ``vote`` has run.
        paths: image files, or folders whose files are graded (each gets a row; not recursing unless
            ``recursive``); missing or unreadable ones are listed on stderr and skipped.
        out: the CSV to write (atomically); ``None`` prints it on stdout. An existing file is only
            replaced when it is an earlier predictions CSV (its header is this one's, or the one before 2026-12-08 that
            named ``review`` ``refer``), or with ``force``.
        method: a fitted combiner (``ensemble/combiners/<method>.json``); default: the report's best.
        tta: average every member over four flips (members trained with TTA always get it).
        batch_size: images per batch.
        print_csv: print the CSV on stdout when ``out`` is None (the Python API turns it off).
        force: replace ``out`` whatever it holds.
        recursive: grade the files of a folder's sub-folders too, at any depth (:func:`expand_folders`).

    Returns:
        A :class:`PredictionResult`.

    Raises:
        UserError: no fitted ensemble, an unknown method, a modified or corrupt member model,
            or no readable image.

    Example:
        >>> r = predict_images("runs/dr", ["eye1.jpeg", "eye2.jpeg"], out="grades.csv")  # doctest: +SKIP
        >>> r.probs.shape  # doctest: +SKIP
        (2, 5)
    """
    from ensemble.api import image_paths

    require_report(Path(workdir))  # before the folders are listed: their notes would say they are graded
    own = [] if out is None else [Path(out), *partial_files(out)]
    paths = expand_folders(image_paths(paths), leave_out=own, recursive=recursive)  # a path is one image, not one per character
    if not paths:
        raise UserError("No image given; pass one or more image files (or folders of them). Received: paths=[]")
    if out is not None:
        check_out(Path(out), force=force, workdir=Path(workdir), inputs=paths)
    ens = with_tta(load_ensemble(workdir, method), tta)
    skipped = {p: why for p in paths if (why := check_file(p, recursive=recursive)) is not None}
    _hint_image_root(workdir, skipped)
    candidates = [p for p in paths if p not in skipped]
    key = _members_key(ens, tta) if out is not None else ""
    before, P0 = _resume(out, key, candidates) if out is not None and candidates else ([], None)
    taken = set(before)
    todo = [i for i in range(len(candidates)) if i not in taken]
    try:
        P, kept = (ensemble_member_probs(ens.members, [candidates[i] for i in todo], tta=tta, batch_size=batch_size)
                   if todo else (None, np.zeros(0, dtype=np.int64)))
    except PartlyDone as stop:  # a long batch interrupted: the rows graded so far are kept beside --out
        P, kept = _joined(P0, before, stop.probs, None if stop.indices is None else np.asarray(todo)[stop.indices])
        if out is not None and len(kept):
            stop.note = _keep_interrupted(ens, out, key, [candidates[i] for i in kept], P, len(candidates))
        raise
    P, kept = _joined(P0, before, P, np.asarray(todo, dtype=np.int64)[kept] if len(kept) else kept)
    if before:
        print(f"Resumed: {len(before)} image(s) graded by an interrupted run with the same members were taken from "
              f"{partial_files(out)[1]}; {len(kept) - len(before)} graded now.", file=sys.stderr)
    kept_out = out is not None and Path(out).exists()  # a run that graded nothing never replaces earlier predictions
    try:
        settle_skipped(paths, candidates, kept, skipped, [member_variant(m) for m in ens.members],
                       left=f"{out} is left as it was" if kept_out else "")
    except UserError as exc:  # every input still gets its row ("not graded: <reason>"), then the one sentence
        exc.result = replace(_none_graded(ens, skipped), given=list(paths))  # the command prints it with --json
        if not kept_out:
            _write(exc.result.to_csv(), out, print_csv)
        raise
    graded = [candidates[i] for i in kept]
    try:
        notes = screen_notes(ens, graded)
    except KeyboardInterrupt:  # every image graded, the input screen under way: the grading is kept all the same
        stop = PartlyDone()
        if out is not None and len(graded):
            stop.note = _keep_interrupted(ens, out, key, graded, P, len(candidates), rows=False)
        raise stop from None
    result = replace(_combine(ens, graded, P, skipped, notes=notes), given=list(paths), synthetic=ens.synthetic)
    earlier = _earlier(out) if out is not None else None
    _write(result.to_csv(), out, print_csv)
    if earlier is not None:  # replaceable, but never without a word
        print(f"Replaced {out} ({earlier}).", file=sys.stderr)
    if out is not None:  # the complete CSV supersedes an interrupted run's rows (only files predict wrote there)
        _remove_partial(out)
    _summary(result, out)
    return result


def with_tta(ens: Ensemble, tta: bool) -> Ensemble:
    """``ens`` with the rules ``--tta`` leaves standing: on members whose cached probabilities were not TTA, the
    thresholds vote chose without it would not keep their coverage or sensitivity, so review falls back to the
    members' agreement and the referable (positive-class) call is not made; ``predict`` and ``explain`` alike."""
    if not tta or ens.refer_threshold is None or all(m.tta for m in ens.members):
        return ens
    ens = replace(ens, refer_threshold=None, refer_without_agreement=False, referral_note=(
        f"sent for review when fewer than {AGREEMENT_FALLBACK:.0%} of members agree with the ensemble (--tta "
        "changes the probabilities, so the confidence threshold vote chose without it would not keep its coverage)"))
    if ens.referable_threshold is not None:  # the same holds for the referable / positive-class threshold
        ens = replace(ens, referable_threshold=None, referable_note=(
            f"{ens.referable_note.split(' when ')[0]}: the column is left empty with --tta, since vote chose its "
            "threshold on probabilities without TTA; the probability column is filled"))
    return ens


def _keep_interrupted(ens: "Ensemble", out: str | Path, key: str, graded: Sequence[str], P: np.ndarray, total: int,
                      *, rows: bool = True) -> str:
    """Keep an interrupted run's grading beside ``out`` and say so: the members' probabilities first (a quick
    ``.partial.npz`` the same command resumes from), then, with ``rows``, their CSV rows, whose input screen takes
    longer; an interruption of that screen keeps the npz. The sentence the interruption ends with."""
    csv_path, npz_path = partial_files(out)
    resumable = _save_partial(npz_path, key, graded, P)
    kept = False
    if rows:
        try:
            done = replace(_combine(ens, graded, P, {}, notes=screen_notes(ens, graded)), given=list(graded),
                           synthetic=ens.synthetic)
            kept = _keep_partial(csv_path, done.to_csv())
        except KeyboardInterrupt:  # a second Ctrl-C or SIGTERM: the npz above is kept, the rows are not written
            pass
    left = f"{out} is left as it was" if Path(out).exists() else f"{out} is not written"
    where = (f"their rows are in {csv_path}; " if kept else f"their rows are not written beside {out}; " if rows
             else "")
    if resumable and len(graded) == total:
        again = f"write {Path(out).name} without grading them again (they are taken from {npz_path.name})"
    elif resumable:
        again = f"grade the other {total - len(graded)} (the graded ones are taken from {npz_path.name})"
    else:
        again = "grade them all"
    return (f"{len(graded)} of {total} images were graded before it: {where}{left}. Run the same command again to "
            f"{again}.")


def partial_files(out: str | Path) -> tuple[Path, Path]:
    """An interrupted predict's rows beside ``out``: ``<stem>.partial.csv`` to read, ``<stem>.partial.npz`` to resume
    from (every member's probabilities of the graded images, the files' sizes and times, and the members' identity)."""
    out = Path(out)
    return out.with_name(f"{out.stem}.partial.csv"), out.with_name(f"{out.stem}.partial.npz")


def _members_key(ens: Ensemble, tta: bool) -> str:
    """What a member's probabilities depend on: each member's model and metrics as the vote's manifest records them
    (a retrained member has another), and whether it is averaged over flips."""
    import json

    try:
        recorded = read_json(Path(ens.workdir) / "ensemble" / "manifest.json").get("members") or {}
    except (UserError, AttributeError):
        recorded = {}
    return json.dumps([[m.name, recorded.get(m.name), bool(tta or m.tta), m.input_size, m.preprocessing,
                        m.fundus_crop] for m in ens.members], sort_keys=True)


def _stamp(path: str) -> str:
    st = os.stat(path)
    return f"{st.st_size}:{st.st_mtime_ns}"


def _keep_partial(path: Path, text: str) -> bool:
    """Write the interrupted run's rows to ``path``, unless it is something predict did not write; False if not."""
    if path.exists() and not (path.is_file() and _is_predictions_csv(path)):
        print(f"Note: {path} exists and is no predictions CSV that predict wrote, so the graded rows are not written "
              "there.", file=sys.stderr)
        return False
    try:
        _write(text, path, False)
    except (OSError, UserError) as exc:
        print(f"Note: could not write the graded rows to {path} ({exc}).", file=sys.stderr)
        return False
    return True


def _save_partial(path: Path, key: str, graded: Sequence[str], P: np.ndarray) -> bool:
    """Keep what a rerun resumes from in ``path``; False (said on stderr) when it cannot be written."""
    from members.infra.atomic import save_npz

    try:
        if path.exists() and not path.is_file():
            raise IsADirectoryError(f"{path} is a folder")
        save_npz(path, key=np.array(key), paths=np.array([os.path.abspath(p) for p in graded], dtype=str),
                 stamps=np.array([_stamp(p) for p in graded], dtype=str), probs=P)
    except (OSError, UserError) as exc:  # the CSV beside it still holds the rows; the next run grades them again
        print(f"Note: could not keep {path} to resume from ({exc}); the next run grades every image again.",
              file=sys.stderr)
        return False
    return True


def _is_predictions_csv(path: Path) -> bool:
    """Whether ``path`` begins with the header predict writes, or wrote before 2026-12-08 (:data:`OLD_CSV_COLUMNS`)."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            return tuple(next(csv.reader(f), [])[:len(CSV_COLUMNS)]) in (CSV_COLUMNS, OLD_CSV_COLUMNS)
    except (OSError, UnicodeDecodeError, csv.Error):
        return False


def _earlier(out: str | Path) -> str | None:
    """What an existing ``out`` holds, for the line that says it is replaced (``"12 earlier rows"``); None when
    there is no file."""
    path = Path(out)
    if not path.is_file():
        return None
    if not _is_predictions_csv(path):
        return "a file that was not a predictions CSV, replaced by --force"
    try:
        with open(path, encoding="utf-8", newline="") as f:
            n = max(sum(1 for _ in csv.reader(f)) - 1, 0)
    except (OSError, UnicodeDecodeError, csv.Error):
        return "its earlier rows"
    return f"{n} earlier row{'s' if n != 1 else ''}"


def _remove_partial(out: str | Path) -> None:
    """Delete the interrupted run's files beside ``out`` — only files predict wrote (its CSV header, its npz keys)."""
    csv_path, npz_path = partial_files(out)
    if csv_path.is_file() and _is_predictions_csv(csv_path):
        csv_path.unlink(missing_ok=True)
    if npz_path.is_file():
        import zipfile

        try:
            with np.load(npz_path, allow_pickle=False) as saved:
                ours = {"key", "paths", "stamps", "probs"} <= set(saved.files)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, AttributeError):  # (a .npy has no .files)
            ours = False
        if ours:
            npz_path.unlink(missing_ok=True)


def _resume(out: str | Path, key: str, candidates: Sequence[str]) -> tuple[list[int], np.ndarray | None]:
    """The ``candidates`` an interrupted run with the same members graded (unchanged files only) and their
    probabilities ``(m, len(indices), k)``; nothing when there is no such run."""
    from members.infra.atomic import load_npz

    path = partial_files(out)[1]
    if not path.is_file():
        return [], None
    try:
        saved = load_npz(path)
        same = str(saved["key"]) == key
        where = {p: i for i, p in enumerate(saved["paths"].tolist())}
        stamps, probs = saved["stamps"].tolist(), saved["probs"]
    except (UserError, KeyError) as exc:
        print(f"Note: {path} cannot be resumed from ({exc}); every image is graded again.", file=sys.stderr)
        return [], None
    if not same:
        print(f"Note: {path} was written with other members (or another --tta): every image is graded again.",
              file=sys.stderr)
        return [], None
    indices, rows = [], []
    for i, p in enumerate(candidates):
        j = where.get(os.path.abspath(p))
        if j is not None and stamps[j] == _stamp(p):  # a file changed since is graded again
            indices.append(i)
            rows.append(j)
    return indices, (probs[:, rows] if indices else None)


def _joined(P0: np.ndarray | None, before: Sequence[int], P1: np.ndarray | None,
            kept1: np.ndarray | None) -> tuple[np.ndarray | None, np.ndarray]:
    """Resumed and newly graded probabilities ``(m, n, k)`` and their candidate indices, in the candidates' order."""
    parts = [(P0, np.asarray(before, dtype=np.int64))] if before else []
    if P1 is not None and kept1 is not None and len(kept1):
        parts.append((P1, np.asarray(kept1, dtype=np.int64)))
    if not parts:
        return None, np.zeros(0, dtype=np.int64)
    indices = np.concatenate([i for _, i in parts])
    order = np.argsort(indices, kind="stable")
    return np.concatenate([p for p, _ in parts], axis=1)[:, order], indices[order]


def screen_notes(ens: Ensemble, paths: Sequence[str]) -> list[str]:
    """Per image, why its grade is withheld — ungradable (:data:`UNIFORM_NOTE`) or unlike the training images
    (vote's range of their looks, :mod:`ensemble.appearance`) — or ``""``; ``predict`` and ``explain`` alike."""
    looks = appearance.looks(paths)  # the raw image at 128 px, as vote read the training images
    unlike = appearance.screen(ens.appearance, looks) if ens.appearance is not None else [""] * len(paths)
    return [UNIFORM_NOTE if is_flat else why for is_flat, why in zip(flat_images(looks), unlike)]


def _hint_image_root(workdir: str | Path, skipped: dict[str, str]) -> None:
    """A relative path that does not exist here but does under the workdir's images folder (a ``split.csv`` path,
    which is relative to ``dataset.json``'s ``image_root``): say so in its reason."""
    if "does not exist" not in skipped.values():
        return  # nothing missing: dataset.json is not read
    try:
        root = Path(str(read_json(Path(workdir) / "dataset.json").get("image_root") or ""))
    except (UserError, OSError, AttributeError):
        return
    for path, why in skipped.items():
        if why == "does not exist" and str(root) and not Path(path).is_absolute() and (root / path).is_file():
            skipped[path] = (f"does not exist here; split.csv paths are relative to the images folder {root}: pass "
                             f"{root / path}")


def flat_images(looks: np.ndarray) -> np.ndarray:
    """``(n,)`` bool: the image is (nearly) one flat colour in each channel — judged on the file's own pixels
    (:func:`ensemble.appearance.look`), not on a member's preprocessed input, where Ben's filter flattens a tiny
    thumbnail that is not flat at all; by prepare's rule on prepare's picture (:mod:`members.data.thumbnail`), so
    the two commands decide alike. An image Pillow cannot read (a row of ``nan``) is not called flat."""
    from members.data.thumbnail import is_flat

    stds = [appearance.FEATURES.index(f) for f in ("std_red", "std_green", "std_blue")]
    return is_flat(np.asarray(looks, dtype=np.float64).reshape(len(looks), -1)[:, stds])  # prepare's own rule


def _write(text: str, out: str | Path | None, print_csv: bool) -> None:
    if out is not None:
        write_text(out, text, follow_link=True)  # a latest.csv link the user keeps
    elif print_csv:
        sys.stdout.write(text)
        sys.stdout.flush()


def _none_graded(ens: Ensemble, skipped: dict[str, str]) -> PredictionResult:
    """The result when no input could be read: only the "not graded" rows."""
    k = len(ens.classes)
    empty = np.zeros(0)
    return PredictionResult([], np.zeros((0, k)), np.zeros(0, dtype=np.int64), empty, empty, np.zeros(0, dtype=bool),
                            skipped, ens.method, [m.name for m in ens.members], ens.referral_note, ens.classes,
                            p_referable=None if ens.referable_cut is None else empty,
                            referable=None if ens.referable_threshold is None else np.zeros(0, dtype=bool),
                            referable_note=ens.referable_note, referable_kind=ens.referable_kind,
                            referable_cut=ens.referable_cut, collapsed_kept=list(ens.collapsed_kept),
                            below_majority=ens.below_majority)


def expand_folders(paths: Sequence[str], leave_out: Sequence[str | os.PathLike] = (), *,
                   recursive: bool = False) -> list[str]:
    """``paths`` with each folder replaced by its entries (sorted; hidden ones and sub-folders left out), so that
    every entry of the folder gets its row: an image is graded whatever its extension, and anything else (a
    DICOM, a note, a broken link, a FIFO) is skipped with its reason, as a path given by name is. A folder without
    entries is kept (which :func:`check_file` then skips); the sub-folders are named on stderr. ``leave_out``:
    files of a folder not to list (predict's own ``--out`` and its partial file, written there by an earlier run).
    ``recursive``: the entries of its sub-folders too, at any depth (:func:`_walk`: sorted by path, hidden ones
    left out, a folder reached twice through links searched once, one that cannot be listed kept for its row)."""
    from members.data.folders import IMAGE_EXTENSIONS

    skip = {os.path.realpath(p) for p in leave_out}
    out: list[str] = []
    for p in paths:
        if not os.path.isdir(p):
            out.append(p)
            continue
        if recursive:
            below = _walk(p, skip)
            found = [f for _, f in below.files] + [d for d in below.unreadable if d != p]
            n = len(below.folders)
            also = (f" (searched with --recursive: it and {n} sub-folder{'s' if n != 1 else ''}"
                    + (f"; {len(below.again)} linked folder{'s' if len(below.again) != 1 else ''} reached a second "
                       f"time not searched again: {', '.join(map(printable_path, below.again[:3]))}"
                       f"{', ...' if len(below.again) > 3 else ''}"
                       if below.again else "") + ")")
        else:
            entries = sorted(f for f in os.listdir(p) if not f.startswith(".")
                             and os.path.realpath(os.path.join(p, f)) not in skip)
            found = [os.path.join(p, f) for f in entries if not os.path.isdir(os.path.join(p, f))]
            subs = [f + "/" for f in entries if os.path.isdir(os.path.join(p, f))]
            also = (f"; {len(subs)} sub-folder{' is' if len(subs) == 1 else 's are'} not searched (pass --recursive): "
                    f"{', '.join(subs[:5])}{', ...' if len(subs) > 5 else ''}" if subs
                    else " (sub-folders are not searched)")
        if not found:  # left in: check_file skips it with its reason
            out.append(p)
            continue
        others = [f for f in found if os.path.splitext(f)[1].casefold() not in IMAGE_EXTENSIONS and check_file(f)]
        skips = (f" ({len(others)} of them {'is' if len(others) == 1 else 'are'} no image: skipped with "
                 f"{'its' if len(others) == 1 else 'their'} reason)" if others else "")
        print(f"{printable_path(p)}: a folder; its {len(found)} file{'s are' if len(found) != 1 else ' is'} "
              f"taken{skips}{also}.", file=sys.stderr)
        out += found
    return out


def refuse_replaced_folder(out: Path, workdir: Path, example: str) -> None:
    """Refuse an ``--out`` inside a folder the toolkit replaces whole (``ensemble/``, a member's folder) or on a file of the prepared dataset (``split.csv``, ``dataset.json``,
    ``data_report.csv``) or a lock or commit entry of the workdir, even with ``--force``."""
    target = out.resolve()
    root = workdir.resolve()
    named = target.name.casefold() in {f.casefold() for f in PREPARED_FILES}  # SPLIT.CSV is split.csv on macOS
    if target.parent == root and (named or target.name.startswith(".")):
        what = "a file of the prepared dataset" if named else "a lock or commit entry"
        raise UserError(f"--out {out} is {workdir / target.name}, {what} that the workdir needs; write elsewhere, "
                        f"e.g. --out {workdir / example}.")
    for folder, replaced_by in ((workdir / "ensemble", "the next vote"),
                                (workdir / "members", "a member retrained with --force")):
        if target.is_relative_to(folder.resolve()):
            raise UserError(f"--out {out} is inside {folder}, which {replaced_by} replaces whole, deleting it; "
                            f"write elsewhere, e.g. --out {workdir / example}.")


NEVER_OUT = frozenset({".keras", ".h5", ".npz", ".json", ".toml", ".weights"})
"""Suffixes of a model, its predictions or its records: an ``--out`` of that kind is refused even with ``--force``."""


def check_out(out: Path, *, force: bool = False, workdir: Path | None = None, inputs: Sequence[str] = ()) -> None:
    """Refuse an ``--out`` that would replace a file predict did not write (a labels CSV, say), that
    lies in a folder the toolkit replaces whole (``ensemble/``, a member's folder), or whose folder
    cannot be written, or that is read-only, before any work. Even with ``--force``: an image being graded or any image file, a
    model, predictions or records file (:data:`NEVER_OUT`), any file inside another workdir (a folder holding
    ``dataset.json``), and this workdir's labels CSV or images."""
    from members.data.folders import IMAGE_EXTENSIONS
    from members.infra.atomic import refuse_read_only

    target = out.resolve()
    if any(_resolved(p) == target for p in inputs):
        raise UserError(f"--out {out} is one of the images being graded; pass another --out.")
    if workdir is not None:
        refuse_replaced_folder(out, workdir, "predictions.csv")
        refuse_the_source(out, target, workdir)
    refuse_other_workdir(out, target.parent, workdir, "predict")
    if target.suffix.casefold() in IMAGE_EXTENSIONS or target.suffix.casefold() in NEVER_OUT:
        raise UserError(f"--out {out} is a {target.suffix} file, not a CSV; predict writes a CSV there: pass a file "
                        "name ending in .csv, e.g. --out predictions.csv.")
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise UserError(f"--out {out} cannot be written: {parent} is a file, not a folder; pass another --out.")
    if parent.exists() and not _writable(parent):
        raise UserError(f"--out {out} cannot be written: the folder {parent} is not writable; pass another --out.")
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; pass a file name for the predictions CSV, e.g. {out / 'predictions.csv'}.")
    if force or not out.exists():
        return
    refuse_read_only(out, "--out")  # a write-protected earlier result is kept (the rename would not ask)
    if not _is_predictions_csv(out):
        raise UserError(f"--out {out} exists and is not a predictions CSV that predict wrote (its first line is not "
                        f"{','.join(CSV_COLUMNS)},prob_0,...); pass another --out, or --force to replace it.")


def refuse_other_workdir(out: Path, folder: Path, workdir: Path | None, verb: str) -> None:
    """Refuse an ``--out`` whose files land in ``folder`` when the nearest workdir holding it (a folder with
    ``dataset.json``) is not ``workdir``: another workdir's folders are for its own commands."""
    own = workdir.resolve() if workdir is not None else None
    for place in (folder, *folder.parents):
        if (place / "dataset.json").is_file():
            if place != own:
                raise UserError(f"--out {out} is inside another workdir, {place} (it holds dataset.json), whose "
                                f"files {verb} does not write; pass an --out outside it.")
            return


def refuse_the_source(out: Path, target: Path, workdir: Path) -> None:
    """Refuse an ``--out`` on the labels CSV this workdir was prepared from, or inside its images folder."""
    try:
        info = read_json(workdir / "dataset.json")
    except (UserError, OSError):
        return
    if not isinstance(info, dict):
        return
    source = str(info.get("source") or "")
    labels = Path(source[len("csv:"):]).resolve() if source.startswith("csv:") else None
    root = Path(str(info.get("image_root") or "")).resolve() if info.get("image_root") else None
    if labels is not None and target == labels:
        raise UserError(f"--out {out} is the labels file {workdir} was prepared from; pass another --out.")
    inside_workdir = target.is_relative_to(workdir.resolve())
    written_here = source.startswith("npz:")  # prepare --npz writes images/ in the workdir and replaces it whole
    if root is not None and target.is_relative_to(root) and (not inside_workdir or written_here):
        # (a workdir kept inside its class folders' root is passed over by prepare: writing there is fine; but the
        # images/ that prepare --npz writes inside the workdir is replaced whole by the next prepare)
        raise UserError(f"--out {out} is inside the images folder {root} that {workdir} was prepared from; pass "
                        "another --out.")


def _writable(folder: Path) -> bool:
    """Whether a file can be created in ``folder`` (tried: ``os.access`` says yes to root on any folder)."""
    import tempfile

    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".predict-probe-"):
            return True
    except OSError:
        return False


def _combine(ens: Ensemble, paths: list[str], P: np.ndarray, skipped: dict[str, str],
             notes: list[str] | None = None) -> PredictionResult:
    probs = np.asarray(ens.combiner.predict_proba(P), dtype=np.float64)
    labels = np.asarray(ens.combiner.predict(P), dtype=np.int64)
    agreement = (P.argmax(axis=2) == labels).mean(axis=0)
    confidence = probs[np.arange(len(labels)), labels]
    notes = [""] * len(labels) if notes is None else list(notes)  # one per graded image (a mismatch fails below)
    # nothing to grade, or unlike anything the members learned from: a human looks at it, whatever they say
    noted = np.array([bool(n) for n in notes], dtype=bool).reshape(labels.shape)
    p_ref = referable = None
    if ens.referable_cut is not None:
        p_ref = call_score(probs, ens.referable_cut, ens.referable_kind)
        referable = None if ens.referable_threshold is None else p_ref >= ens.referable_threshold
    flags = review_flags(ens.review_rule, labels, confidence, agreement, p_ref)  # the rule vote's figures count
    notes = [n or reason for n, reason in zip(notes, _review_reasons(ens, confidence, agreement, flags))]
    conflicts = np.flatnonzero(flags["call_conflict"] & ~noted)  # the grade and the referable call disagree
    for i, why in _call_conflicts(ens, labels, p_ref, conflicts).items():
        notes[i] = f"{notes[i]}; {why}" if notes[i] else f"review: {why}"
    review = np.array([bool(n) for n in notes], dtype=bool).reshape(labels.shape)  # review 1 exactly where a note is
    return PredictionResult(paths, probs, labels, agreement, confidence, review, skipped, ens.method,
                            [m.name for m in ens.members], ens.referral_note, ens.classes, p_referable=p_ref,
                            referable=referable, referable_note=ens.referable_note,
                            referable_kind=ens.referable_kind, referable_cut=ens.referable_cut, notes=notes,
                            member_labels=P.argmax(axis=2), withheld=noted, collapsed_kept=list(ens.collapsed_kept),
                            below_majority=ens.below_majority)


def _apart(value: float, threshold: float) -> tuple[str, str]:
    """``value`` and ``threshold`` with as many decimals (3 to 6) as it takes to show them different."""
    for digits in range(3, 7):
        a, b = f"{value:.{digits}f}", f"{threshold:.{digits}f}"
        if a != b:
            break
    return a, b


def _call_conflicts(ens: Ensemble, labels: np.ndarray, p_ref: np.ndarray, rows: np.ndarray) -> dict[int, str]:
    """Why each of ``rows`` (the ``call_conflict`` rows of :func:`ensemble.referral.review_flags`) is referred:
    a grade below the referable one called referable at the val-chosen threshold (set for sensitivity, so lower
    than the grades' own boundary), or the reverse; on two classes, the class and the positive call."""
    cut, thr = ens.referable_cut, ens.referable_threshold
    name = lambda j: ens.classes[j] if 0 <= j < len(ens.classes) else j  # noqa: E731
    out = {}
    for i in rows:
        label, p = int(labels[i]), float(p_ref[i])
        call = p >= thr
        shown, limit = _apart(p, thr)
        if ens.referable_kind == "positive_class":
            out[int(i)] = (f"its class {name(label)} and the {name(cut)} call disagree: P({name(cut)}) {shown} "
                           f"{'reaches' if call else 'is under'} the threshold {limit} chosen on validation")
        else:
            out[int(i)] = (f"its grade {name(label)} is {'below the referable grade' if call else 'referable'}"
                           f"{f' {name(cut)}' if call else ''}, yet P(grade >= {name(cut)}) {shown} "
                           f"{'reaches' if call else 'is under'} the referable threshold {limit} chosen on validation")
    return out


def _review_reasons(ens: Ensemble, confidence: np.ndarray, agreement: np.ndarray,
                    flags: dict[str, np.ndarray]) -> list[str]:
    """Per graded row, why the referral rule (``flags``: :func:`ensemble.referral.review_flags`) sends it to a
    human grader for its confidence or its members, or ``""`` (a call that contradicts the grade: :func:`_call_conflicts`)."""
    word = "grade" if ens.referable_cut is not None and ens.referable_kind == "referable_dr" else "class"
    reasons = []
    for i, (conf, agree) in enumerate(zip(confidence, agreement)):
        why = []
        if flags["low_confidence"][i]:
            shown, limit = _apart(float(conf), float(ens.refer_threshold))
            why.append(f"low confidence: {shown} is below {limit}, the review threshold chosen on validation")
        if flags["no_agreement"][i]:
            why.append(f"no member gives the ensemble's {word}")
        if flags["members_disagree"][i]:
            why.append(f"members disagree: {agree:.0%} of them give the ensemble's {word} (under "
                       f"{AGREEMENT_FALLBACK:.0%})")
        reasons.append(f"review: {'; '.join(why)}" if why else "")
    return reasons


def _report_skipped(skipped: dict[str, str]) -> None:
    for path, why in skipped.items():
        print(f"Skipped {printable_path(path)}: {why}.", file=sys.stderr)


def _summary(r: PredictionResult, out: str | Path | None) -> None:
    _report_skipped(r.skipped)
    if r.synthetic:
        print("SYNTHETIC: this ensemble learned from demo-data's synthetic images, not real eyes; its grades say "
              "nothing about a patient.", file=sys.stderr)
    warn_of(r)
    where = f" → {out}" if out is not None else ""
    graded = r.referable_kind == "referable_dr" and r.p_referable is not None  # DR grades, not classes
    word, reader = ("grade", "grader") if graded else ("class", "reader")
    print(f"Predicted {len(r.paths)} image(s) with {r.method} over {len(r.members)} members "
          f"({', '.join(r.members)}){where}; sent to a human {reader} (review 1, the reason in note) "
          f"{int(r.review.sum())}, skipped {len(r.skipped)}{' (a row each, review 1)' if r.skipped else ''}. "
          f"Review rule: {r.referral_note}.", file=sys.stderr)
    flat = sum(1 for n in r.notes if n == UNIFORM_NOTE)
    if flat:
        print(f"Ungradable: {flat} image(s) are (nearly) one flat colour (a black or white frame, or samples that decode "
              f"to one value); they are referred and their {word} is withheld (empty cells; note column).",
              file=sys.stderr)
    unlike = sum(1 for n in r.notes if n.startswith("unlike"))
    if unlike:
        print(f"Unlike the training images: {unlike} image(s) lie well outside the range of the training and "
              "validation images' looks (noise, a document or another kind of picture?); they are referred and their "
              f"{word} is withheld (empty cells; --json keeps the raw output under withheld).", file=sys.stderr)
    if r.referable is not None:
        what = "Referable DR" if r.referable_kind == "referable_dr" and dr_grades(r.classes) else "Positive"
        calls = [r.referable_of(i) for i in range(len(r.paths))]
        unassessed = sum(c is None for c in calls)
        assessed = len(r.paths) - unassessed
        print(f"{what}: {sum(c is True for c in calls)} of the {assessed} assessed image{'s' if assessed != 1 else ''} "
              f"called {what.split()[0].lower()} ({r.referable_note}; columns {', '.join(r.summary_columns)})"
              + (f"; {unassessed} not assessed (ungradable, or unlike the training images: "
                 f"{r.summary_columns[1]} empty, review 1)" if unassessed else "") + ". " + _call_basis(r, calls),
              file=sys.stderr)
    elif r.p_referable is not None:
        print(f"Note: {r.referable_note}.", file=sys.stderr)


def _call_basis(r: PredictionResult, calls: Sequence[bool | None]) -> str:
    """What the referable (two classes: positive) call rests on — P(grade >= cut) at the val-chosen threshold, not
    the grade — and how many calls the class column contradicts; the call is a finding apart from ``review``."""
    name = r.class_of(r.referable_cut)
    if r.referable_kind == "positive_class":
        score, column, own = f"P(class {name})", "the class column", lambda label: label == r.referable_cut
        above, below = f"have another class than {name}", f"of class {name}"
    else:
        score, column, own = f"P(grade >= {name})", "the class column (the grade)", lambda label: label >= r.referable_cut
        above, below = f"are graded below {name}", f"graded {name} or above"
    called = [i for i, c in enumerate(calls) if c is True]
    against = sum(not own(int(r.labels[i])) for i in called)
    missed = sum(c is False and own(int(r.labels[i])) for i, c in enumerate(calls))
    return (f"The call rests on {score} at that threshold, not on {column}: {against} of the {len(called)} called "
            f"{above}, and {missed} {below} are not called (each such image has review 1, its note says why); the "
            "call is a finding, apart from review.")
