"""Load the complete members' cached val/test predictions from a workdir, checked against its split.

``vote`` never runs a network: it reads ``members/<name>/val.npz`` and ``test.npz``
(written by training) and refuses any file that does not belong to the workdir's
current split, naming the member and the file.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ensemble.constants import ROW_SUM_TOL
from members.infra.atomic import load_npz, read_json
from members.infra.errors import UserError

SPLITS = ("val", "test")
TRAIN_HINT = "`python cli.py train-member --workdir {workdir} --preset <preset> --name <name>`"


@dataclass
class MemberSet:
    """The complete members of a workdir, aligned on the same val and test rows.

    Attributes:
        names: member names, sorted (or in the order asked for).
        val_probs: ``(m, n_val, k)`` float32 probabilities on the val split.
        test_probs: ``(m, n_test, k)`` on the test split.
        val_labels, test_labels: true classes ``(n,)``.
        val_row_ids, test_row_ids: row ids into ``split.csv`` ``(n,)``.
        metrics: each member's ``metrics.json``.
        skipped: members left out (incomplete, or the same network as one loaded), ``{name: reason}``.
        num_classes: ``k``.
        classes: the classes from ``dataset.json`` (integers or names), in index order.
        fingerprint: sha256 of ``split.csv``.
        ordinal: whether the classes are ordered grades (``dataset.json``'s ``ordinal``).
        val_groups, test_groups: the patient of every row (``split.csv``'s ``group``, as text), or
            ``None`` when the split is not grouped by patient; the report's bootstrap draws whole
            patients.
    """

    names: list[str]
    val_probs: np.ndarray
    test_probs: np.ndarray
    val_labels: np.ndarray
    test_labels: np.ndarray
    val_row_ids: np.ndarray
    test_row_ids: np.ndarray
    metrics: dict[str, dict]
    skipped: dict[str, str] = field(default_factory=dict)
    num_classes: int = 0
    classes: list = field(default_factory=list)
    fingerprint: str = ""
    ordinal: bool = True
    val_groups: np.ndarray | None = None
    test_groups: np.ndarray | None = None


@dataclass(frozen=True)
class _Split:
    fingerprint: str
    num_classes: int
    classes: list
    ordinal: bool
    row_ids: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    groups: dict[str, np.ndarray | None]


def load_members(workdir: str | Path, names: Sequence[str] | None = None) -> MemberSet:
    """Load every complete member (or the named ones) of ``workdir``.

    A member without ``metrics.json`` is incomplete (training did not finish): it is
    skipped by name, with the reason logged on stderr and kept in ``skipped``; so is the same network loaded
    twice (:func:`_same_network`: it would weigh twice) and, when ``names`` is None, a member trained on another
    split (the workdir was prepared again since); one named in ``names`` is refused instead.

    Args:
        workdir: the workdir written by ``prepare`` and ``train-member``.
        names: members to load; ``None`` loads all.

    Returns:
        A :class:`MemberSet` with at least two members.

    Raises:
        UserError: an unknown name, fewer than two complete members, or a member whose
            predictions do not match the workdir's split (fingerprint, classes, row ids,
            labels, shapes, corrupt files); the message names the member and the file.

    Example:
        >>> ms = load_members("runs/dr")  # doctest: +SKIP
        >>> ms.val_probs.shape  # doctest: +SKIP
        (3, 120, 5)
    """
    workdir = Path(workdir)
    split = _read_split(workdir)
    root = workdir / "members"
    available = sorted(p.name for p in root.iterdir()  # hidden folders: a replacement being trained
                       if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []
    if names is None:
        chosen = available
    else:
        chosen = list(dict.fromkeys(names))
        unknown = [name for name in chosen if name not in available]
        if unknown:
            complete = [name for name in available if (root / name / "metrics.json").exists()]
            partial = [name for name in available if name not in complete]
            note = f" (incomplete: {', '.join(partial)})" if partial else ""
            raise UserError(
                f"No member named {', '.join(map(repr, unknown))} in {root}; the complete members are "
                f"{', '.join(complete) or 'none'}{note}. Received: members={list(names)}"
            )
    loaded, skipped = [], {}
    for name in chosen:
        if not (root / name / "metrics.json").exists():
            from members.infra.lock import live_holder

            holder = live_holder(root / name / ".lock")
            skipped[name] = ("incomplete: no metrics.json (training did not finish)" if holder is None else
                             f"incomplete: it is training right now (pid {holder.get('pid')} on {holder.get('host')}); "
                             "vote again once it is done to include it")
            print(f"Skipping member {name!r}: {skipped[name]}.", file=sys.stderr)
            continue
        if names is None and (old := _other_split(root / name, split)) is not None:  # prepared again since
            again = ("import it again with import-member --force" if old.get("imported") else
                     f"retrain it with train-member --folds {old['folds']} --force" if old.get("folds") else
                     "retrain it with train-member --force")
            skipped[name] = (f"trained on another split of the data (its metrics.json fingerprint is not "
                             f"dataset.json's: the workdir was prepared again since); {again}, or remove {root / name}")
            print(f"Skipping member {name!r}: {skipped[name]}.", file=sys.stderr)
            continue
        member = _load_member(root / name, name, split)
        alike = [(other, m) for other, m in loaded if all(np.array_equal(member[x], m[x]) for x in SPLITS)]
        twin = next((other for other, m in alike if _same_network(name, member, other, m)), None)
        if twin is not None:  # a copied folder, a snapshot at the very epoch its member keeps
            skipped[name] = f"the same val and test predictions as {twin!r}, so it is counted once"
            print(f"Skipping member {name!r}: {skipped[name]}.", file=sys.stderr)
            continue
        if alike:  # two models, or one imported twice: both vote, which the user should know
            print(f"Note: member {name!r} gives the very same val and test probabilities as {alike[0][0]!r} but is "
                  "another model file (or a probabilities import); both vote, so if they are one model imported "
                  "twice it weighs twice: leave one out with --members.", file=sys.stderr)
        loaded.append((name, member))
    _say_unhashed(workdir, [name for name, m in loaded if m["unhashed"]], {name: m["metrics"] for name, m in loaded})
    if len(loaded) < 2:
        found = ", ".join(name for name, _ in loaded) or "none"
        twins = [n for n, why in skipped.items() if why.startswith("the same val and test predictions")]
        counted = f", {', '.join(twins)} counted once with it" if twins else ""
        stale = [n for n, why in skipped.items() if why.startswith("trained on another split")]
        others = f"; {', '.join(stale)} {'was' if len(stale) == 1 else 'were'} trained on another split" if stale else ""
        raise UserError(
            f"vote needs at least two complete members; found {len(loaded)} ({found}{counted}{others}). "
            f"Train another with {TRAIN_HINT.format(workdir=workdir)}."
        )
    return MemberSet(
        names=[name for name, _ in loaded],
        val_probs=np.stack([m["val"] for _, m in loaded]),
        test_probs=np.stack([m["test"] for _, m in loaded]),
        val_labels=split.labels["val"],
        test_labels=split.labels["test"],
        val_row_ids=split.row_ids["val"],
        test_row_ids=split.row_ids["test"],
        metrics={name: m["metrics"] for name, m in loaded},
        skipped=skipped,
        num_classes=split.num_classes,
        classes=split.classes,
        fingerprint=split.fingerprint,
        ordinal=split.ordinal,
        val_groups=split.groups["val"],
        test_groups=split.groups["test"],
    )


def repair_hint(folder: str | Path, *, then_vote: bool = False) -> str:
    """How to mend the member in ``folder`` (``<workdir>/members/<name>``) whose files are missing or broken: the
    command that trains it again (from its own ``spec.toml``, with its ``--folds``) and the vote that leaves it out;
    ``then_vote``: for predict, whose ensemble has to be voted again after a retrain. Outside a workdir: the short
    form.

    Example:
        >>> repair_hint("work/members/tiny-2")  # doctest: +SKIP
        "retrain the member 'tiny-2' (`python cli.py train-member --workdir work --preset work/members/tiny-2/spec.toml
        --name tiny-2 --force`), or leave it out (`python cli.py vote --workdir work --members tiny,tiny-3`)"
    """
    import shlex

    folder = Path(folder)
    name, root = folder.name, folder.parent
    if root.name != "members":
        return f"retrain the member {name!r}"
    workdir = shlex.quote(str(root.parent))
    metrics, plan = _json_or_empty(folder / "metrics.json"), _json_or_empty(folder / "folds.json")
    if metrics.get("imported"):
        again = f"import the member {name!r} again (`python cli.py import-member --workdir {workdir} --name {name} --force ...`)"
    else:
        preset = shlex.quote(str(folder / "spec.toml")) if (folder / "spec.toml").is_file() else "<preset>"
        folds = metrics.get("folds") or plan.get("folds")
        again = (f"retrain the member {name!r} (`python cli.py train-member --workdir {workdir} --preset {preset} "
                 f"--name {name}{f' --folds {folds}' if isinstance(folds, int) else ''} --force`)")
    others = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != name
                    and (p / "metrics.json").is_file()) if root.is_dir() else []
    leave = (f"leave it out (`python cli.py vote --workdir {workdir} --members {','.join(others)}`)" if len(others) >= 2
             else "leave it out (vote --members, once two other members are complete)")
    return f"{again}{' and vote again' if then_vote else ''}, or {leave}"


def _json_or_empty(path: Path) -> dict:
    try:
        data = read_json(path)
    except UserError:
        return {}
    return data if isinstance(data, dict) else {}


def _same_network(name: str, member: dict, other: str, loaded: dict) -> bool:
    """Whether ``member``, whose val and test predictions equal ``other``'s, is ``other`` again: the same model file
    or a snapshot of the other (two distinct models that happen to agree on every row, one-hot imports say, stay
    two)."""
    a, b = member["metrics"], loaded["metrics"]
    same_file = a.get("model_sha256") is not None and a.get("model_sha256") == b.get("model_sha256")
    return same_file or a.get("snapshot_of") == other or b.get("snapshot_of") == name


def _read_split(workdir: Path) -> _Split:
    from members.data.dataset import load_dataset

    from ensemble.manifest import note_loaded

    data = load_dataset(workdir)  # checks that split.csv still matches dataset.json's fingerprint
    note_loaded(fingerprint=data.fingerprint)
    row_ids, labels, groups = {}, {}, {}
    for s in SPLITS:
        rows = data.rows(s)
        if rows.empty:
            raise UserError(f"{workdir / 'split.csv'} has no '{s}' rows; re-run prepare with a non-zero {s} fraction.")
        row_ids[s], labels[s] = rows["row_id"].to_numpy(np.int64), rows["label"].to_numpy(np.int64)
        groups[s] = row_groups(rows)
    return _Split(data.fingerprint, data.num_classes, list(data.classes), data.ordinal, row_ids, labels, groups)


def row_groups(rows) -> np.ndarray | None:
    """The ``group`` (patient) column of some ``split.csv`` rows as text, or ``None`` when not grouped."""
    if "group" not in rows.columns:
        return None
    return np.array(["" if v is None or v != v else str(v) for v in rows["group"].tolist()], dtype=object)


def _other_split(folder: Path, split: _Split) -> dict | None:
    """The ``metrics.json`` of the member in ``folder`` when it says it was trained on another split (another
    fingerprint), else None; anything unreadable is left to :func:`_load_member`, which says what is wrong."""
    try:
        metrics = read_json(folder / "metrics.json")
        recorded = metrics.get("fingerprint")
    except (UserError, AttributeError):
        return None
    return metrics if isinstance(recorded, str) and recorded != split.fingerprint else None


def _load_member(folder: Path, name: str, split: _Split) -> dict:
    from ensemble.manifest import note_loaded

    metrics_path = folder / "metrics.json"
    note_loaded(member=name, metrics_path=metrics_path)  # hashed before it is read: a swap after it is caught
    fix = repair_hint(folder)
    metrics = read_json(metrics_path, fix=fix)
    if not isinstance(metrics, dict):
        raise UserError(f"Member {name!r}: {metrics_path} is not a JSON object; {fix}.")
    from members.training.guard import damage, missing_files

    missing = missing_files(folder, metrics)
    if missing:  # its training finished, then its model or predictions went
        raise UserError(f"{damage(name, folder, missing)}; {fix}.")
    expected = {"fingerprint": split.fingerprint, "num_classes": split.num_classes, "classes": split.classes}
    for key, want in expected.items():
        if key in metrics and metrics[key] != want:
            raise _mismatch(name, metrics_path, key, want, metrics[key])
    out = {"metrics": metrics}
    for s in SPLITS:
        out[s] = _load_predictions(folder / f"{s}.npz", name, s, split, fix)
    out["unhashed"] = _check_own_files(folder, name, metrics, fix)  # after the content checks, which say more
    return out


def _check_own_files(folder: Path, name: str, metrics: dict, fix: str) -> bool:
    """Refuse a member whose ``model.keras`` or cached predictions are not the files its training wrote
    (``metrics.json`` ``model_sha256``, ``predictions_sha256``): ``predict`` would refuse the ensemble, or the
    report would score another member's predictions under this one's name. A hash of the wrong kind is refused
    as a broken ``metrics.json``. Returns whether the member was trained before the predictions were hashed, so
    they could not be checked (:func:`_say_unhashed`; a member imported as probabilities has no model to check)."""
    from members.infra.atomic import sha256_file

    broken = f"Member {name!r}: {folder / 'metrics.json'} has a {{key}} that is not {{what}}; {fix}."
    is_sha = lambda v: isinstance(v, str) and len(v) == 64  # noqa: E731
    recorded = {}
    if "model_sha256" in metrics:
        if not is_sha(metrics["model_sha256"]):
            raise UserError(broken.format(key="model_sha256", what="a SHA-256"))
        recorded["model.keras"] = metrics["model_sha256"]
    if "predictions_sha256" in metrics:
        hashes = metrics["predictions_sha256"]
        if not isinstance(hashes, dict) or not all(is_sha(hashes.get(s)) for s in SPLITS):
            raise UserError(broken.format(key="predictions_sha256", what="{val, test} SHA-256s"))
        recorded.update({f"{s}.npz": hashes[s] for s in SPLITS})
    for file, sha in recorded.items():
        path = folder / file
        if not path.is_file():
            raise UserError(f"Member {name!r}: {path} does not exist; {fix}.")
        if sha256_file(path).lower() != sha.lower():
            raise UserError(f"Member {name!r}: {path} is not the file its training wrote (its SHA-256 differs from "
                            f"metrics.json); {fix}.")
    return "predictions_sha256" not in metrics and "model_sha256" in metrics  # trained by a version before the hashes


def _say_unhashed(workdir: Path, names: list[str], metrics: dict[str, dict]) -> None:
    """One note for all the voted members trained (or imported) before their predictions were hashed: vote uses their
    val.npz and test.npz unchecked. Only training (or import-member) writes the hashes: vote never writes into a
    member, and hashing the files there now would vouch for the very files the check is there to catch."""
    import shlex

    if not names:
        return
    one = names[0] if len(names) == 1 else "<name>"
    spec = f"{shlex.quote(str(workdir / 'members'))}/{one}/spec.toml"  # a member name needs no quotes
    how = (f"`python cli.py train-member --workdir {shlex.quote(str(workdir))} --preset {spec} --name {one} --force`"
           f"{' for each' if len(names) > 1 else ''}")
    if any(metrics[n].get("imported") for n in names):
        how += " (import-member --force for an imported one)"
    they = ("member", "was", "its") if len(names) == 1 else ("members", "were", "their")
    print(f"Note: {they[0]} {', '.join(names)} {they[1]} trained before predictions were hashed (metrics.json has no "
          f"predictions_sha256), so vote uses {they[2]} val.npz and test.npz unchecked; only retraining records the "
          f"hashes: {how}.", file=sys.stderr)


def _load_predictions(path: Path, name: str, s: str, split: _Split, fix: str) -> np.ndarray:
    data = load_npz(path, fix=fix)
    missing = {"probs", "labels", "row_ids", "fingerprint"} - set(data)
    if missing:
        raise UserError(f"Member {name!r}: {path} lacks the array(s) {sorted(missing)}; {fix}.")
    if str(data["fingerprint"]) != split.fingerprint:
        raise _mismatch(name, path, "fingerprint", split.fingerprint, str(data["fingerprint"]))
    probs, n, k = data["probs"], split.row_ids[s].size, split.num_classes
    if probs.shape != (n, k):
        raise _mismatch(name, path, "probs shape", (n, k), probs.shape)
    if not np.issubdtype(probs.dtype, np.floating) or not np.isfinite(probs).all():
        raise UserError(f"Member {name!r}: {path} holds non-finite or non-float probabilities; {fix}.")
    worst = float(np.abs(probs.sum(axis=1, dtype=np.float64) - 1.0).max())
    if worst > ROW_SUM_TOL or probs.min() < 0:
        raise UserError(
            f"Member {name!r}: {path} probabilities must be >= 0 with rows summing to 1; a row is off by {worst:.3g}; "
            f"{fix}."
        )
    for key, want in (("row_ids", split.row_ids[s]), ("labels", split.labels[s])):
        got = np.asarray(data[key])
        if got.shape != want.shape or not np.array_equal(got, want):
            raise _mismatch(name, path, key, f"the {want.size} '{s}' rows of split.csv", _describe(got, want))
    return probs.astype(np.float32, copy=False)


def _describe(got: np.ndarray, want: np.ndarray) -> str:
    if got.shape != want.shape:
        return f"{got.size} values"
    first = int(np.flatnonzero(got != want)[0])
    return f"{got[first]} at position {first} where split.csv has {want[first]}"


def _mismatch(name: str, path: Path, key: str, want, got) -> UserError:
    return UserError(
        f"Member {name!r} does not match this workdir's split: {path} has a different {key} "
        f"(expected {want!r}). Retrain it on this workdir or remove {path.parent}. Received: {key}={got!r}"
    )
