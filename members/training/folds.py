"""k-fold (bagged) members: K copies of one member, each trained on K−1 folds of the train+val rows.

``train-member --folds K`` (and ``train-members --folds K``) pools the train and val rows of
the split, deals them into K folds stratified by class and grouped by patient (rows of one
``group`` of split.csv never span two folds; seeded by the spec's seed), and trains copy ``i``
with the ordinary :class:`members.training.trainer.Trainer` on a per-fold view of the data set:
train = the other K−1 folds, val = fold ``i`` (where the copy picks its best epoch), test
unchanged. Each copy is a complete member folder of its own, ``members/<name>/folds/<i>/``
(seed: the spec's seed + ``i``); one task per fold runs on the backends of
:mod:`members.training.parallel`, a killed fold resumes after its last epoch, and a finished fold is
never retrained. ``folds.json`` records the fold plan; a different plan (K, seed, split)
starts the folds over.

Then the member itself is assembled, ``metrics.json`` last:

- ``oof.npz``: ``probs`` (rows × classes) for every train+val row, each predicted by the one
  copy that never trained on it; ``row_ids`` (rows of split.csv, ascending); ``fold`` (each
  row's fold, which is also the copy that predicted it); ``fingerprint``;
- ``val.npz``: the out-of-fold rows of the val split, so vote's val protocol still works;
- ``test.npz``: the mean of the K copies' test probabilities (regression copies: their mean score, each
  copy's put on a common scale by its held-out centre and spread, cut by cuts tuned on the
  out-of-fold scores; ``regression`` in ``metrics.json``);
- ``metrics.json``: ``folds`` (K), ``fold_scores`` (each copy's held-out and test scores),
  ``oof`` (scores on every OOF row), ``val``, ``test`` (the K-fold average) and
  ``single_fold_test`` (copy 0 alone), so the gain of bagging is on record.

The OOF probabilities never come from a copy that saw the row; they are mildly optimistic in
one way only: each copy chose its best epoch on the very fold it predicts.

Example:
    >>> result = train_folded("work", load_preset("tiny"), name="tiny-cv", k=5, jobs=2)  # doctest: +SKIP
    >>> result.metrics["folds"], result.metrics["oof_rows"]                              # doctest: +SKIP
    (5, 410)
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import shutil
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from members.infra import atomic
from members.infra.errors import UserError
from members.model.spec import MemberSpec

FOLDS_DIR = "folds"
OOF_FILE = "oof.npz"
PLAN_FILE = "folds.json"
MAX_FOLDS = 20
POOL = ("train", "val")


# ----- the folds ---------------------------------------------------------------------------
def check_folds(k: int) -> int:
    """``k`` as an int when it is a usable number of folds (2..20; a NumPy integer too), else a :class:`UserError`."""
    from members.infra.validate import is_int

    if not is_int(k) or not 2 <= k <= MAX_FOLDS:
        raise UserError(f"--folds must be a whole number from 2 to {MAX_FOLDS} (each copy trains on K-1 folds); "
                        f"pass e.g. --folds 5. Received: folds={k!r}")
    return int(k)


def pool_rows(data) -> pd.DataFrame:
    """The train and val rows of a prepared data set, in split.csv order, with ``row_id`` first."""
    part = data.table[data.table["split"].isin(POOL)]
    return part.reset_index(names="row_id").astype({"row_id": "int64"})


def assign_folds(labels: np.ndarray, k: int, *, groups: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """Fold of every row, ``0..k-1``: stratified by class; rows of one group always share a fold.

    Without groups every class is dealt as evenly as possible (sizes differ by at most one);
    with groups the greedy assignment of :mod:`members.data.split` keeps each fold's class counts
    close to an even share.

    Raises:
        UserError: fewer rows (or groups) than folds, so a fold would be empty.

    Example:
        >>> np.bincount(assign_folds(np.array([0] * 6 + [1] * 3), 3)).tolist()
        [3, 3, 3]
    """
    from members.data.split import _partition, class_counts

    labels = np.asarray(labels, dtype=np.int64)
    k = check_folds(k)
    units = len(set(groups.tolist())) if groups is not None else len(labels)
    if units < k:
        what = "patient groups" if groups is not None else "rows"
        raise UserError(f"{k} folds need at least {k} {what} in the train and val splits; got {units}. "
                        f"Pass fewer --folds. Received: folds={k}")
    counts = class_counts(labels, int(labels.max()) + 1 if len(labels) else 0)
    targets = np.zeros((k, len(counts)), dtype=np.int64)
    start = 0
    for c, n in enumerate(counts):  # the remainder of each class starts where the last one stopped
        base, extra = divmod(int(n), k)
        targets[:, c] = base
        targets[(start + np.arange(extra)) % k, c] += 1
        start = (start + extra) % k
    folds = _partition(labels, None if groups is None else np.asarray(groups, dtype=str), targets,
                       np.random.default_rng(seed))
    empty = sorted(set(range(k)) - set(folds.tolist()))
    if empty:
        raise UserError(f"Fold {empty[0]} of {k} got no row (too few patient groups per class); pass fewer --folds.")
    return folds.astype(np.int64)


def pool_folds(data, k: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """The pooled train+val rows and the fold of each, grouped by ``group`` when split.csv has one."""
    pool = pool_rows(data)
    groups = pool["group"].to_numpy(str) if "group" in pool.columns else None
    return pool, assign_folds(pool["label"].to_numpy(np.int64), k, groups=groups, seed=seed)


class FoldView:
    """A prepared data set seen by copy ``fold``: train = the other folds, val = this fold, test unchanged.

    Everything else (``image_root``, ``classes``, ``fingerprint``...) is the data set's own.
    """

    def __init__(self, data, pool: pd.DataFrame, folds: np.ndarray, fold: int):
        self._data = data
        self._parts = {"train": pool[folds != fold].reset_index(drop=True),
                       "val": pool[folds == fold].reset_index(drop=True)}
        self.fold = fold

    def rows(self, split: str) -> pd.DataFrame:
        """The rows this copy sees as ``split``, with ``row_id`` first."""
        return self._parts[split] if split in self._parts else self._data.rows(split)

    def absolute_paths(self, split: str) -> list[str]:
        return [str(self._data.image_root / p) for p in self.rows(split)["path"]]

    def __getattr__(self, name: str):
        return getattr(self._data, name)


def fold_dir(workdir: str | Path, name: str, fold: int) -> Path:
    """``<workdir>/members/<name>/folds/<fold>``."""
    from members.training.trainer import member_dir

    return member_dir(workdir, name) / FOLDS_DIR / str(fold)


def copy_spec(spec: MemberSpec, fold: int) -> MemberSpec:
    """The spec of copy ``fold``: the member's, seeded ``seed + fold`` (the folds use the member's seed)."""
    return spec.replace(seed=spec.seed + fold)


def fold_plan(data, spec: MemberSpec, k: int) -> dict:
    """What ``folds.json`` records: K, the seed, the split's fingerprint and a hash of the assignment."""
    pool, folds = pool_folds(data, k, spec.seed)
    digest = hashlib.sha256(np.stack([pool["row_id"].to_numpy(np.int64), folds]).tobytes()).hexdigest()
    return {"folds": k, "seed": spec.seed, "fingerprint": data.fingerprint, "rows": len(pool),
            "assignment_sha256": digest}


class AveragedModel:
    """The K copies of a k-fold member seen as one model.

    Softmax and ordinal copies: ``predict_on_batch`` averages their probabilities. Regression
    copies (``regression`` is the member's ``metrics.json`` entry, with ``copies``): each copy's
    score is recovered from its probabilities and put on the member's common scale, the K scores
    are averaged and cut by the member's own cuts and scale (tuned on the out-of-fold scores), the
    same as ``assemble`` computes test (:func:`averaged_head`).
    """

    def __init__(self, models: list, regression: dict | None = None):
        self.models = list(models)
        self.regression = regression if regression and regression.get("copies") else None

    def _combine(self, outputs: list) -> np.ndarray:
        outputs = [np.asarray(o, dtype=np.float64) for o in outputs]
        if self.regression is None:
            return np.mean(outputs, axis=0)
        return averaged_head(outputs, self.regression)

    def predict(self, x, **kwargs) -> np.ndarray:
        return self._combine([m.predict(x, **kwargs) for m in self.models])

    def predict_on_batch(self, x) -> np.ndarray:
        return self._combine([m.predict_on_batch(x) for m in self.models])

    def count_params(self) -> int:
        return sum(int(m.count_params()) for m in self.models)


def averaged_head(outputs: list, regression: dict) -> np.ndarray:
    """Probabilities of a regression k-fold member from its copies' probabilities ``outputs``.

    Each copy's score (:func:`members.model.regression.recover_score` with its own cuts and scale)
    is put on the member's common scale (:func:`common_scale`), the K scores are averaged and cut
    by the member's cuts and scale. Averaging probabilities instead spreads mass over the middle
    grades wherever the copies disagree by a grade.
    """
    from members.model.regression import head_probs, recover_score

    scores = np.mean([common_scale(recover_score(p, np.asarray(c["cuts"]), float(c["scale"]), float(c.get("mix", 0.0))),
                                   c, regression)
                      for p, c in zip(outputs, regression["copies"], strict=True)], axis=0)
    return head_probs(scores, np.asarray(regression["cuts"]), float(regression["scale"]), float(regression.get("mix", 0.0)))


def common_scale(score: np.ndarray, copy: dict, regression: dict) -> np.ndarray:
    """A copy's scores on the member's common scale: its held-out centre and spread mapped onto the member's.

    Copies trained on different folds score on different scales (on EyePACS-512 the held-out means
    of one member's three copies were 1.19–2.05, their SDs 0.62–1.36), while their held-out folds
    share one class mix (the folds are stratified). So each copy's scores are standardised by the
    mean and SD of its own held-out scores (no labels used) and mapped onto the mean of the copies'
    centres and spreads. An entry without ``centre`` (written before the common scale) is left as it is.
    """
    if "centre" not in copy or "centre" not in regression:
        return score
    return float(regression["centre"]) + float(regression["spread"]) * (score - float(copy["centre"])) / float(copy["spread"])


def _centre_spread(score: np.ndarray) -> tuple[float, float]:
    """Mean and SD of held-out scores; an SD of (nearly) zero counts as 1, so a constant copy is only shifted."""
    centre = float(np.mean(score)) if score.size else 0.0
    spread = float(np.std(score)) if score.size > 1 else 0.0
    return centre, spread if spread > 1e-6 else 1.0


def _regression_member(copies: list[dict], held: list[np.ndarray], tests: list[np.ndarray], folds: np.ndarray,
                       labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, dict] | None:
    """OOF and test probabilities of a regression k-fold member, and its ``regression`` entry; None otherwise.

    Each held-out row's score comes from the one copy that did not train on it, put on the
    member's common scale (:func:`common_scale`); the member's cuts and scale are tuned on those
    out-of-fold scores (every train+val row, not one fold), and test is the mean of the copies'
    scores on the common scale, cut the same way.
    """
    from members.model.regression import fit_cuts, head_probs, recover_score

    heads = [m.get("regression") for m in copies]
    if any(m.get("head") != "regression" for m in copies) or not all(h and h.get("cuts") for h in heads):
        return None
    each = [{"cuts": [float(c) for c in h["cuts"]], "scale": float(h["scale"]), "mix": float(h.get("mix", 0.0))}
            for h in heads]
    raw = [recover_score(probs, np.asarray(head["cuts"]), head["scale"], head["mix"])
           for probs, head in zip(held, each, strict=True)]
    for head, score in zip(each, raw, strict=True):
        head["centre"], head["spread"] = _centre_spread(score)
    common = {"centre": float(np.mean([h["centre"] for h in each])), "spread": float(np.mean([h["spread"] for h in each]))}
    oof_score = np.empty(len(folds))
    for i, (score, head) in enumerate(zip(raw, each, strict=True)):
        oof_score[folds == i] = common_scale(score, head, common)
    fitted = fit_cuts(oof_score, labels, k)
    regression = {**fitted, "averaging": "scores", **common,
                  "fitted_on": "out-of-fold scores of every train+val row, each copy's on the common scale",
                  "copies": each}
    oof = head_probs(oof_score, np.asarray(fitted["cuts"]), fitted["scale"], fitted["mix"])
    return oof, averaged_head(tests, regression), regression


# ----- one copy (worker) -------------------------------------------------------------------
def train_fold(workdir: str | Path, spec: MemberSpec, *, name: str, fold: int, k: int, preset: str = "custom",
               log: Callable[[str], None] | None = None, show_progress: bool | None = None, force: bool = False):
    """Train copy ``fold`` of the k-fold member ``name`` into ``members/<name>/folds/<fold>``.

    ``spec`` is the member's spec; the copy gets :func:`copy_spec`. A killed copy resumes after
    its last finished epoch, like any member. ``force`` is accepted for the worker's sake and
    unused: the copies of an incomplete member are never finished members themselves.

    Returns:
        The copy's :class:`members.training.trainer.TrainResult`.
    """
    from members.data.dataset import load_dataset
    from members.infra.lock import MemberLock
    from members.training.trainer import Trainer, _remove_temp_files

    log = log or _stderr
    data = load_dataset(workdir)
    data.check_images()
    pool, folds = pool_folds(data, k, spec.seed)
    directory = fold_dir(workdir, name, fold)
    this = copy_spec(spec, fold)
    with MemberLock(directory):
        from members.training.loop import is_terminal

        (directory / "metrics.json").unlink(missing_ok=True)
        _remove_temp_files(directory)
        atomic.write_text(directory / "spec.toml", this.to_toml(preset=preset))
        trainer = Trainer(FoldView(data, pool, folds, fold), this, f"{shown_name(name)}/fold{fold}", directory,
                          preset=preset, log=log, show_progress=is_terminal() if show_progress is None else show_progress)
        return trainer.run()


def finished_fold(workdir: str | Path, name: str, fold: int, spec: MemberSpec, fingerprint: str) -> dict | None:
    """The metrics of copy ``fold`` when it is complete (its files all there) with its spec (run settings aside) on this
    data, else None."""
    from members.model.spec import learned_fields, load_spec_file
    from members.training.guard import missing_files

    directory = fold_dir(workdir, name, fold)
    try:
        metrics = atomic.read_json(directory / "metrics.json")
        same = learned_fields(load_spec_file(directory / "spec.toml")) == learned_fields(copy_spec(spec, fold))
        whole = not missing_files(directory, metrics)  # its model or predictions deleted since: trained again
        return metrics if same and whole and metrics.get("fingerprint") == fingerprint else None
    except (UserError, OSError, ValueError, TypeError, AttributeError):
        return None


# ----- the member (parent) -----------------------------------------------------------------
def existing_folded(workdir: str | Path, name: str, spec: MemberSpec, k: int, fingerprint: str,
                    preset: str | None = None):
    """What ``members/<name>`` holds compared with a k-fold member of ``spec`` and ``k`` folds on this data.

    Returns:
        A :class:`members.training.guard.ExistingMember`; a complete member with another K (or a plain
        member) differs by ``folds``.
    """
    from members.training.guard import ExistingMember, existing_member
    from members.training.trainer import member_dir

    state = existing_member(member_dir(workdir, name), _task_spec(spec, workdir, preset=preset), fingerprint)
    if state.complete and state.metrics.get("folds") != k:
        return ExistingMember(True, state.metrics, [*state.differences, f"folds {state.metrics.get('folds')} → {k}"])
    return state


def _task_spec(spec: MemberSpec, workdir, log=None, preset: str | None = None) -> MemberSpec:
    """The spec the copies train with on this task (nominal classes: no grade head, no QWK monitor)."""
    from members.data.classes import check_task
    from members.data.dataset import load_dataset

    if spec.snapshots:
        raise UserError("snapshots cannot be combined with --folds: every copy would make its own snapshot members; "
                        f"use one of them (swa works with --folds). Received: snapshots={spec.snapshots}")
    return check_task(spec, load_dataset(workdir).ordinal, log, preset)


def _start(data, name: str, spec: MemberSpec, preset: str, k: int, log) -> dict:
    """Make the member incomplete, write its spec and fold plan; a different old plan drops the old folds."""
    from members.training.trainer import member_dir

    folder = member_dir(data.workdir, name)
    (folder / "metrics.json").unlink(missing_ok=True)  # from here on the member is incomplete
    plan = fold_plan(data, spec, k)
    try:
        old = atomic.read_json(folder / PLAN_FILE) if (folder / PLAN_FILE).exists() else None
    except UserError:
        old = None
    if old is not None and old != plan and (folder / FOLDS_DIR).exists():
        log(f"[{name}] the fold plan changed ({old.get('folds')} → {k} folds, or another seed or split); "
            "training its folds over")
        shutil.rmtree(folder / FOLDS_DIR, ignore_errors=True)
    for stale in (OOF_FILE, "val.npz", "test.npz", "model.keras"):  # model.keras: a plain run's, killed here before
        (folder / stale).unlink(missing_ok=True)
    from members.training.resume import RESUME_DIR

    shutil.rmtree(folder / RESUME_DIR, ignore_errors=True)  # a killed plain run's state: no k-fold member resumes it
    atomic.write_text(folder / "spec.toml", spec.to_toml(preset=preset))
    atomic.write_json(folder / PLAN_FILE, plan)
    return plan


def assemble(workdir: str | Path, name: str, spec: MemberSpec, *, preset: str, k: int,
             seconds: float | None = None) -> dict:
    """Write ``oof.npz``, ``val.npz``, ``test.npz``, ``history.csv`` and, last, ``metrics.json`` of a k-fold member.

    Every copy must be complete. Each copy's held-out rows (its ``val.npz``) are checked
    against the fold plan, so a row can only be predicted by the copy that did not train on it.

    Returns:
        The member's metrics.

    Raises:
        UserError: a copy is missing or its held-out rows are not its fold's.
    """
    from members.training.artifacts import predictions_sha256, save_predictions
    from members.training.collapse import majority_section
    from members.data.dataset import load_dataset
    from members.scoring import nan_to_none, qwk_for_task, score
    from members.training.trainer import member_dir

    data = load_dataset(workdir)
    folder = member_dir(workdir, name)
    pool, folds = pool_folds(data, k, spec.seed)
    n, c = len(pool), data.num_classes
    oof = np.full((n, c), np.nan)
    tests, copies, history, helds, histories = [], [], [], [], []
    for i in range(k):
        d = fold_dir(workdir, name, i)
        metrics = finished_fold(workdir, name, i, spec, data.fingerprint)
        if metrics is None:
            raise UserError(f"Copy {i} of the k-fold member {name!r} is not complete ({d}); run the same "
                            "command again to train it.")
        held = atomic.load_npz(d / "val.npz")
        want = pool["row_id"].to_numpy(np.int64)[folds == i]
        if not np.array_equal(np.asarray(held["row_ids"]), want):
            raise UserError(f"The held-out rows of {d / 'val.npz'} are not fold {i}'s; delete {d} and run the same "
                            "command again.")
        oof[folds == i] = held["probs"]
        helds.append(np.asarray(held["probs"], dtype=np.float64))
        tests.append(np.asarray(atomic.load_npz(d / "test.npz")["probs"], dtype=np.float64))
        copies.append(metrics)
        rows = _read_history(d / "history.csv")
        histories.append(rows)
        history += [{**row, "fold": i, "note": f"fold {i}" + (f"; {row['note']}" if row.get("note") else "")}
                    for row in rows]
    labels = pool["label"].to_numpy(np.int64)
    test_rows = data.rows("test")
    test_labels, test_probs = test_rows["label"].to_numpy(np.int64), np.mean(tests, axis=0)
    regression = _regression_member(copies, helds, tests, folds, labels, c)
    if regression is not None:
        oof, test_probs, regression = regression
    atomic.save_npz(folder / OOF_FILE, probs=(oof / oof.sum(axis=1, keepdims=True)).astype(np.float32),
                    row_ids=pool["row_id"].to_numpy(np.int64), fold=folds, fingerprint=np.array(data.fingerprint))
    val = (pool["split"] == "val").to_numpy()
    save_predictions(folder / "val.npz", oof[val], labels[val], pool["row_id"].to_numpy(np.int64)[val], data.fingerprint)
    save_predictions(folder / "test.npz", test_probs, test_labels, test_rows["row_id"].to_numpy(), data.fingerprint)
    _write_history(folder / "history.csv", history)
    from members.training.artifacts import plot_fold_curves

    plot_fold_curves(folder / "curves.png", histories, f"{name}: {k} copies (k-fold)", monitor=copies[0].get("monitor"),
                     best_epochs=[m.get("best_epoch") for m in copies])
    has_test = len(test_labels) > 0
    first = copies[0]
    oof_scores = score(labels, oof, num_classes=c)
    from members.training.collapse import judge  # the plain member's rule, on the out-of-fold rows

    collapsed, collapse = judge(oof, labels, oof_scores, data.classes, rows="out-of-fold", spec=spec,
                                ordinal=bool(data.ordinal),
                                judged_on="argmax of the out-of-fold probabilities of every train+val row",
                                epochs_at_chance=sum(int((m.get("collapse") or {}).get("epochs_at_chance") or 0)
                                                     for m in copies))
    metrics = {
        "name": name, "preset": preset, "num_classes": c, "classes": list(data.classes),
        "ordinal": bool(data.ordinal),
        "fingerprint": data.fingerprint, "predictions_sha256": predictions_sha256(folder),
        "folds": k, "fold_seed": spec.seed, "oof_rows": n,
        "copies": [f"{FOLDS_DIR}/{i}" for i in range(k)],
        **{key: first.get(key) for key in ("input_size", "stage_sizes", "head", "params", "monitor", "tta")},
        "epochs_run": sum(int(m.get("epochs_run", 0)) for m in copies),
        "train_seconds": round(seconds if seconds is not None else sum(float(m.get("train_seconds", 0)) for m in copies), 3),
        "images_per_second": round(float(np.mean([m.get("images_per_second") or 0.0 for m in copies])), 2),
        "input_wait_share": _mean_or_none([m.get("input_wait_share") for m in copies]) or 0.0,
        "train_size": n,
        "collapsed": bool(collapsed),
        "collapse": collapse,
        "fold_scores": [{"fold": i, "rows": int(np.sum(folds == i)), "best_epoch": m.get("best_epoch"),
                         "train_seconds": m.get("train_seconds"), "held_out": m.get("val", {}), "test": m.get("test", {})}
                        for i, m in enumerate(copies)],
        "oof": oof_scores,
        "val": score(labels[val], oof[val], num_classes=c) if val.any() else {},
        "test": score(test_labels, test_probs, num_classes=c) if has_test else {},
        "single_fold_test": first.get("test", {}),
        "protocol": ("k-fold bagging: test = mean of the K copies' test " +
                     ("scores, cut by cuts tuned on the out-of-fold scores" if regression else "probabilities") +
                     "; oof.npz and val.npz hold each train+val row as predicted by the copy that did not train on it"),
    }
    if regression is not None:
        metrics["regression"] = regression
    # the copies learned from the train+val pool: its most frequent class is the baseline's
    metrics.update(majority_section({"train": labels, "val": labels[val], "test": test_labels}, metrics, c))
    metrics = nan_to_none(qwk_for_task(metrics, ordinal=bool(data.ordinal), num_classes=c))
    atomic.write_json(folder / "metrics.json", metrics)
    return metrics


def _mean_or_none(values: list) -> float | None:
    values = [float(v) for v in values if v is not None]
    return round(float(np.mean(values)), 4) if values else None


def _read_history(path: Path) -> list[dict]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except OSError:
        return []


def _write_history(path: Path, rows: list[dict]) -> None:
    from members.training.artifacts import HISTORY_COLUMNS

    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[*HISTORY_COLUMNS, "fold"], extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic.write_text(path, buf.getvalue())


REPLACEMENT = ".replacement-folds"  # the hidden folder a k-fold member replacing a complete one trains in


def staging_name(name: str) -> str:
    """``.<name>.replacement-folds``: where ``--force --folds`` trains the member that replaces ``name``."""
    return f".{name}{REPLACEMENT}"


def shown_name(name: str) -> str:
    """The member a folder name stands for in the log: ``cv`` for :func:`staging_name`'s ``.cv.replacement-folds``."""
    return name[1:-len(REPLACEMENT)] if name.startswith(".") and name.endswith(REPLACEMENT) else name


def run_folded(workdir: str | Path, planned: list, k: int, *, jobs: int = 1, backend: str = "sequential",
               scheduler: str | None = None, log: Callable[[str], None] | None = None,
               replacing: Collection[str] = ()) -> list:
    """Train the unfinished copies of every planned member, one task per fold, then assemble each member.

    Args:
        workdir: a prepared workdir (absolute path on a cluster).
        planned: :class:`members.training.parallel.PlannedMember` records with a spec.
        k: folds per member.
        jobs, backend, scheduler: as for :func:`members.training.parallel.train_members`.
        log: progress lines (default: stderr).
        replacing: names of complete members to replace (``--force``): each new member trains beside its old
            one, in :func:`staging_name`'s hidden folder (a killed run resumes there), and is swapped in whole
            once assembled; until then the old member stays as it was.

    Returns:
        One :class:`members.training.parallel.MemberRun` per member, in the order given; a member with a
        failed copy fails (its finished copies are kept for the next run).
    """
    from members.data.dataset import load_dataset
    from members.infra.lock import MemberLock
    from members.training.parallel import MemberRun, _cores, _error_text, _execute, _in_process, _Job
    from members.training.trainer import member_dir

    log = log or _stderr
    k = check_folds(k)
    workdir = Path(workdir).resolve()
    data = load_dataset(workdir)
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        from members.infra.transaction import recover_dir

        for p in planned:
            stack.enter_context(MemberLock(member_dir(workdir, p.name)))
            recover_dir(member_dir(workdir, p.name), complete="metrics.json")  # a swap killed half-way, elsewhere
            if p.name in replacing:
                stack.enter_context(MemberLock(member_dir(workdir, staging_name(p.name))))
        todo, runs = [], []
        owner = {staging_name(p.name): p.name for p in planned if p.name in replacing}
        planned = [replace(p, spec=_task_spec(p.spec, workdir, log, p.preset),
                           name=staging_name(p.name) if p.name in replacing else p.name) for p in planned]
        for name in owner.values():
            log(f"[{name}] training the k-fold member that replaces it beside it, in {staging_name(name)}; the "
                "complete member stays until the new one is complete")
        settled: dict[str, tuple] = {}  # decided under the lock: (metrics, None) kept as is, (None, why) refused
        for p in planned:
            state = existing_folded(workdir, p.name, p.spec, k, data.fingerprint, p.preset)
            if state.complete and p.name not in owner:  # finished by another run since the caller looked
                from members.training.guard import refusal

                settled[p.name] = ((state.metrics, None) if not state.differences else
                                   (None, str(refusal(p.name, member_dir(workdir, p.name), state.differences))))
                continue
            if state.complete and not state.differences:  # a finished replacement a killed run did not swap in
                settled[p.name] = (state.metrics, "swap")
                continue
            if state.complete:  # a staging folder holding another complete member (the one a swap killed before
                # its clean-up set aside, or a replacement of another spec): not this run's, so it starts empty
                shutil.rmtree(member_dir(workdir, p.name), ignore_errors=True)
                member_dir(workdir, p.name).mkdir(parents=True)
                MemberLock(member_dir(workdir, p.name)).acquire()
            _start(data, p.name, p.spec, p.preset, k, log)
            done = [i for i in range(k) if finished_fold(workdir, p.name, i, p.spec, data.fingerprint) is not None]
            if done:
                log(f"[{owner.get(p.name, p.name)}] {len(done)} of {k} folds already complete: kept")
            todo += [(p, i) for i in range(k) if i not in done]
        jobs = min(jobs, max(1, len(todo)))
        local = _in_process(backend, jobs)
        job_list = [_Job(str(workdir), p.name, p.preset, p.spec, None if local else max(1, _cores() // jobs),
                         echo=True, show_progress=None if local else False, fold=(i, k)) for p, i in todo]
        if job_list:
            log(f"training {len(job_list)} fold copies of {len(planned)} k-fold member(s) on "
                f"{'this process, one at a time' if local else f'{backend}, {jobs} at a time'}")
        failed: dict[str, str] = {}
        try:
            for run in _execute(job_list, backend, jobs, scheduler, log):
                log(f"[{owner.get(run.name, run.name)}/fold{run.fold}] " + ("done" if run.ok else f"FAILED — {run.error}")
                    + f" in {run.seconds:.1f}s")
                if not run.ok:
                    failed.setdefault(run.name, f"fold {run.fold}: {run.error}")
        except (UserError, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001  (a loky worker died: the copies it had are incomplete)
            for p, _ in todo:
                failed.setdefault(p.name, f"{_error_text(exc)} (run the same command again to resume)")
        seconds = time.perf_counter() - started
        for p in planned:
            run = MemberRun(owner.get(p.name, p.name), p.preset, p.spec.seed, seconds)
            if p.name in settled and settled[p.name][1] != "swap":
                run.metrics, run.error = settled[p.name]
                run.kept = run.metrics is not None
            elif p.name in settled:
                run.metrics = _swap_in_folded(workdir, p.name, owner[p.name], settled[p.name][0], log, k)
            elif p.name in failed:
                run.error = failed[p.name]
            else:
                try:
                    run.metrics = assemble(workdir, p.name, p.spec, preset=p.preset, k=k)
                    if p.name in owner:
                        run.metrics = _swap_in_folded(workdir, p.name, owner[p.name], run.metrics, log, k)
                except UserError as exc:
                    run.error = _error_text(exc)
            runs.append(run)
    return runs


def _swap_in_folded(workdir: Path, staged: str, name: str, metrics: dict, log, k: int) -> dict:
    """Make the assembled k-fold member in ``staged`` the member ``name``, in one step (the caller holds both
    locks; the staged folder's lock comes along and is released as ``name``'s). Its copies and its figure are
    named for ``name`` first, not for the hidden folder they trained in."""
    from members.infra.transaction import replace_dir
    from members.training.artifacts import plot_fold_curves
    from members.training.trainer import _say_if_voted, member_dir, tidy_complete

    new, directory = member_dir(workdir, staged), member_dir(workdir, name)
    tidy_complete(new)
    copies = []
    for i in range(k):
        path = new / FOLDS_DIR / str(i) / "metrics.json"
        copy = atomic.read_json(path)
        if copy.get("name") != f"{name}/fold{i}":
            atomic.write_json(path, {**copy, "name": f"{name}/fold{i}"})
        copies.append(copy)
    plot_fold_curves(new / "curves.png", [_read_history(new / FOLDS_DIR / str(i) / "history.csv") for i in range(k)],
                     f"{name}: {k} copies (k-fold)", monitor=copies[0].get("monitor"),
                     best_epochs=[c.get("best_epoch") for c in copies])
    metrics = {**metrics, "name": name}
    atomic.write_json(new / "metrics.json", metrics)
    try:
        replace_dir(new, directory)
    except OSError as exc:
        raise atomic._write_error(directory, exc) from exc
    log(f"[{name}] the new k-fold member replaced the previous one")
    _say_if_voted(Path(workdir), name, log)
    return metrics


def train_folded(workdir: str | Path, spec: MemberSpec, *, name: str, k: int, preset: str = "custom",
                 jobs: int = 1, backend: str = "loky", scheduler: str | None = None,
                 log: Callable[[str], None] | None = None, force: bool = False):
    """Train one k-fold member (``train-member --folds K``): its K copies, then its assembled artifacts.

    Args:
        workdir: a prepared workdir.
        spec: the member's resolved spec.
        name: the member's folder name.
        k: folds (2..20).
        preset: recorded in metrics.json.
        jobs: copies trained at once (1: in this process, with a progress bar on a terminal).
        backend: ``loky``, ``dask``, ``ray`` or ``sequential`` (see :mod:`members.training.parallel`).
        scheduler: a Dask scheduler address.
        log: progress lines (default: stderr).
        force: replace a complete member of another spec or K (or a plain one): the new one trains beside it
            and is swapped in once complete (:func:`run_folded`'s ``replacing``).

    Returns:
        A :class:`members.training.trainer.TrainResult` of the member.

    Raises:
        UserError: bad folds, an unprepared workdir, a locked member, a complete member with
            another spec or K, or a copy that failed.
    """
    from members.data.dataset import load_dataset
    from members.training.guard import refusal
    from members.training.parallel import BACKENDS, PlannedMember
    from members.training.trainer import TrainResult, member_dir

    k = check_folds(k)
    from members.training.snapshots import check_early_stop

    check_early_stop(spec)  # SWA works with folds; patience would cut its window
    from members.model.spec import check_trainable

    check_trainable(spec)
    if backend not in BACKENDS:
        raise UserError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}.")
    from members.infra.validate import is_int

    if not is_int(jobs) or jobs < 1:
        raise UserError(f"--jobs must be at least 1, a whole number; got {jobs!r}.")
    workdir, jobs = Path(workdir).resolve(), int(jobs)
    member_dir(workdir, name, new=True)
    data = load_dataset(workdir)
    existing = existing_folded(workdir, name, spec, k, data.fingerprint, preset)
    if existing.complete and not existing.differences:
        (log or _stderr)(f"[{name}] already complete with the same spec, folds and data: nothing to train "
                         "(another copy trains under another --name with another --seed)")
        return TrainResult(name, member_dir(workdir, name), existing.metrics)
    if existing.complete and not force:
        raise refusal(name, member_dir(workdir, name), existing.differences)
    member = PlannedMember(name, preset, spec)
    [run] = run_folded(workdir, [member], k, jobs=jobs, backend=backend, scheduler=scheduler, log=log,
                       replacing=[name] if existing.complete else [])
    if run.error:
        kept = (f" The complete member {name!r} is left as it was until the new one is complete." if existing.complete
                else "")
        reason = run.error.removeprefix("UserError: ").rstrip(".")
        raise UserError(f"The k-fold member {name!r} did not finish: {reason}. Finished folds are kept: run the "
                        f"same command again to resume.{kept}")
    return TrainResult(name, member_dir(workdir, name), run.metrics)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
