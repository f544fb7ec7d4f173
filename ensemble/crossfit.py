"""Out-of-fold validation predictions of a combiner, so methods are compared on rows they did not fit.

A combiner fitted on the whole val split and scored on that same split looks better
than it is (stacking and grade thresholds most of all), so choosing the best method
by in-sample val scores favours the most flexible one. ``vote`` therefore scores
each method on val by K-fold cross-fitting: every val row is predicted by a copy of
the combiner fitted on the other folds. The combiner that is saved and evaluated on
test is then refitted on all val rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_SPLITS = 5


@dataclass(frozen=True)
class OutOfFold:
    """Out-of-fold val predictions: ``probs`` (n, k), ``pred`` (n,) and ``pred_thr`` (grade thresholds)."""

    probs: np.ndarray
    pred: np.ndarray
    pred_thr: np.ndarray | None
    n_splits: int


def stratified_folds(y: np.ndarray, n_splits: int, seed: int | np.random.Generator) -> np.ndarray:
    """Fold number (0..n_splits-1) of every row: each class is shuffled and dealt round-robin over the folds.

    The classes are dealt one after the other, continuing the round, so every fold is non-empty
    when ``n >= n_splits``. ``seed`` may be a generator (the stacker's C search passes its own).

    Example:
        >>> np.bincount(stratified_folds(np.array([0] * 6 + [1] * 4), 2, seed=0)).tolist()
        [5, 5]
    """
    rng = np.random.default_rng(seed)
    folds = np.empty(len(y), dtype=np.int64)
    dealt = 0
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c))
        folds[rows] = (dealt + np.arange(rows.size)) % n_splits
        dealt += rows.size
    return folds


def cross_fit(
    method: str,
    P: np.ndarray,
    y: np.ndarray,
    *,
    thresholds: bool = False,
    n_splits: int = N_SPLITS,
    seed: int = 0,
) -> OutOfFold:
    """Predict every val row with ``method`` fitted on the other folds.

    Args:
        method: a combiner method of :data:`ensemble.combiners.METHODS`.
        P: member probabilities ``(m, n, k)`` on val.
        y: val labels ``(n,)``.
        thresholds: also return predictions with grade thresholds fitted on the training
            folds' combined probabilities (what ``make_combiner(method, thresholds=True)`` does).
        n_splits: folds; reduced to ``n // 2`` for tiny val sets. Below 2 folds the
            combiner is fitted and scored in-sample (``n_splits`` is then 1).
        seed: seed of the fold assignment.

    Returns:
        An :class:`OutOfFold`.
    """
    from ensemble.combiners import GradeThresholds, make_combiner

    n, k = P.shape[1], P.shape[2]
    n_splits = min(n_splits, n // 2)
    if n_splits < 2:
        combiner = make_combiner(method).fit(P, y)
        probs = combiner.predict_proba(P)
        pred_thr = GradeThresholds().fit(probs, y).predict(probs) if thresholds else None
        return OutOfFold(probs, combiner.predict(P), pred_thr, 1)
    folds = stratified_folds(y, n_splits, seed)
    probs, pred = np.zeros((n, k)), np.zeros(n, dtype=np.int64)
    pred_thr = np.zeros(n, dtype=np.int64) if thresholds else None
    for fold in range(n_splits):
        held, kept = folds == fold, folds != fold
        combiner = make_combiner(method).fit(P[:, kept], y[kept])
        probs[held] = combiner.predict_proba(P[:, held])
        pred[held] = combiner.predict(P[:, held])
        if thresholds:
            grades = GradeThresholds().fit(combiner.predict_proba(P[:, kept]), y[kept])
            pred_thr[held] = grades.predict(probs[held])
    return OutOfFold(probs, pred, pred_thr, n_splits)


# ----- the out-of-fold protocol (k-fold members, members/training/folds.py) ----------------------------
OOF_FILE = "oof.npz"


@dataclass(frozen=True)
class Protocol:
    """The rows ``vote`` fits and chooses on: ``val`` (the val split) or ``oof`` (every train+val row, out of fold)."""

    name: str
    rows: int
    note: str = ""

    def to_dict(self) -> dict:
        """``report.json``'s ``protocol``: ``{"name": "val" | "oof", "rows": n}``."""
        return {"name": self.name, "rows": self.rows}


def oof_protocol(workdir, ms):
    """``ms`` with its val rows replaced by the out-of-fold train+val rows when every member has them.

    When every voted member is a k-fold member (``metrics.json`` ``folds`` and ``oof.npz``),
    the combiners, grade thresholds, referral threshold and the choice of the best member and
    method all use the OOF predictions of every train+val row (each predicted by a member copy
    that never trained on it), and the selection scores of the combiners are cross-fitted on
    those rows by :func:`cross_fit` — folds inside the members' folds, so nothing is scored
    in-sample. A mixed workdir keeps the val protocol and says so on stderr and in the note.

    Args:
        workdir: the workdir.
        ms: the loaded :class:`ensemble.member_set.MemberSet`.

    Returns:
        ``(member set, Protocol)``; the member set is ``ms`` itself under the val protocol.

    Raises:
        UserError: an ``oof.npz`` that does not match the workdir's split (the message names the member and file).
    """
    import sys
    from dataclasses import replace
    from pathlib import Path

    from members.data.dataset import load_dataset
    from members.training.folds import pool_rows

    root = Path(workdir) / "members"
    have = [n for n in ms.names if ms.metrics[n].get("folds") and (root / n / OOF_FILE).is_file()]
    n_val = len(ms.val_labels)
    if not have:
        return ms, Protocol("val", n_val)
    if len(have) < len(ms.names):
        lacking = [n for n in ms.names if n not in have]
        trained = [n for n in lacking if not ms.metrics[n].get("imported")]  # imported members cannot be retrained
        fix = (f"train {', '.join(trained)} with --folds K (or vote only the k-fold members with --members)" if trained
               else "vote only the k-fold members with --members")
        note = (f"mixed workdir: {', '.join(have)} {'has' if len(have) == 1 else 'have'} out-of-fold predictions but "
                f"{', '.join(lacking)} {'does' if len(lacking) == 1 else 'do'} not, so the combiners are fitted and the "
                f"models chosen on the val split ({n_val} rows); {fix} to use every train+val row")
        print(f"Note: {note}.", file=sys.stderr)
        return ms, Protocol("val", n_val, note)
    pool = pool_rows(load_dataset(workdir))
    row_ids, labels = pool["row_id"].to_numpy(np.int64), pool["label"].to_numpy(np.int64)
    probs = np.stack([_load_oof(root / n / OOF_FILE, n, row_ids, ms.num_classes, ms.fingerprint) for n in ms.names])
    note = (f"out-of-fold: the combiners are fitted and the models chosen on the {len(row_ids)} train+val rows, each "
            "predicted by the member copy that never trained on it (k-fold members); the combiners' selection scores "
            "are cross-fitted on those rows (up to 5 stratified folds), so nothing is scored in-sample")
    from ensemble.member_set import row_groups

    return (replace(ms, val_probs=probs, val_labels=labels, val_row_ids=row_ids, val_groups=row_groups(pool)),
            Protocol("oof", len(row_ids), note))


def _load_oof(path, name: str, row_ids: np.ndarray, k: int, fingerprint: str) -> np.ndarray:
    from ensemble.constants import ROW_SUM_TOL
    from ensemble.member_set import _mismatch
    from members.infra.atomic import load_npz
    from members.infra.errors import UserError

    data = load_npz(path)
    missing = {"probs", "row_ids", "fold", "fingerprint"} - set(data)
    if missing:
        raise UserError(f"Member {name!r}: {path} lacks the array(s) {sorted(missing)}; retrain it with --folds K.")
    if str(data["fingerprint"]) != fingerprint:
        raise _mismatch(name, path, "fingerprint", fingerprint, str(data["fingerprint"]))
    if not np.array_equal(np.asarray(data["row_ids"]), row_ids):
        raise _mismatch(name, path, "row_ids", f"the {row_ids.size} train+val rows of split.csv",
                        f"{np.asarray(data['row_ids']).size} values")
    probs = np.asarray(data["probs"])
    if probs.shape != (row_ids.size, k) or not np.isfinite(probs).all() or probs.min() < 0 \
            or np.abs(probs.sum(axis=1, dtype=np.float64) - 1).max() > ROW_SUM_TOL:
        raise UserError(f"Member {name!r}: {path} must hold finite probabilities of shape {(row_ids.size, k)} with rows "
                        f"summing to 1; retrain it with --folds K. Received: shape={probs.shape}")
    return probs.astype(np.float32, copy=False)


def bagging_gain(workdir, ms, indices: np.ndarray) -> dict:
    """Per k-fold member: its K-fold average against one single-fold copy (copy 0) on test, paired.

    Args:
        workdir: the workdir.
        ms: the voted :class:`ensemble.member_set.MemberSet` (its ``test_probs`` are the K-fold averages).
        indices: the report's bootstrap resamples of the test rows (the same for every model).

    Returns:
        ``{member: {"folds": K, "copy": "folds/0", "single_fold": metrics, "difference": metrics}}``
        where ``difference`` is average minus copy with its 95 % paired-bootstrap CI; empty
        without k-fold members.
    """
    from pathlib import Path

    from ensemble import stats
    from members.infra.atomic import load_npz
    from members.infra.errors import UserError

    out = {}
    for j, name in enumerate(ms.names):
        k = ms.metrics[name].get("folds")
        path = Path(workdir) / "members" / name / "folds" / "0" / "test.npz"
        if not k or not path.is_file():
            continue
        copy = load_npz(path)
        if not np.array_equal(np.asarray(copy.get("row_ids")), ms.test_row_ids) or copy["probs"].shape != ms.test_probs[j].shape:
            raise UserError(f"Member {name!r}: {path} does not hold this workdir's test rows; retrain it with --folds {k}.")
        single = np.asarray(copy["probs"], dtype=np.float64)
        avg = np.asarray(ms.test_probs[j], dtype=np.float64)
        out[name] = {
            "folds": int(k), "copy": "folds/0",
            "single_fold": stats.bootstrap_metrics(ms.test_labels, single, single.argmax(1), indices=indices),
            "difference": stats.bootstrap_difference(ms.test_labels, (avg, avg.argmax(1)), (single, single.argmax(1)),
                                                     indices=indices),
        }
    return out
