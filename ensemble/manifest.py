"""``ensemble/manifest.json``: what one vote wrote, so ``predict`` never mixes two votes.

``vote`` writes the whole ``ensemble/`` folder in a staging folder and swaps it in at once
(:func:`members.infra.transaction.staged`); the manifest is the staging folder's last file. It
holds the SHA-256 of every other file of the folder (combiners, report, plots), the
members voted with the identity of each one (the SHA-256 of its ``model.keras``, of its
``metrics.json`` and of its ``spec.toml`` files) and the dataset fingerprint. ``predict`` checks the report and the
combiner it uses against it, and each member it loads, and refuses a mismatch by name.

Example:
    >>> manifest = write_manifest(Path("work/.ensemble.staging-1"), members, fingerprint)  # doctest: +SKIP
    >>> check_files(Path("work/ensemble"), ["report.json", "combiners/soft.json"])           # doctest: +SKIP
"""

from __future__ import annotations

import contextvars
import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path

from members.infra.atomic import read_json, sha256_file, write_json
from members.infra.errors import UserError

ENSEMBLE = "ensemble"
MANIFEST = "manifest.json"
SPEC = "spec.toml"
VERSION = 1
VOTE_AGAIN = "run `python cli.py vote --workdir {workdir}` again to write a consistent ensemble"


def write_manifest(folder: Path, members: dict[str, dict], fingerprint: str, *, member_root: Path,
                   metrics_sha256: dict[str, str] | None = None) -> dict:
    """Hash every file under ``folder`` and write ``folder/manifest.json`` last.

    Args:
        folder: the (staging) ensemble folder, complete but for the manifest.
        members: ``{name: metrics}`` of the members voted.
        fingerprint: the dataset fingerprint (sha256 of split.csv).
        member_root: ``<workdir>/members``, to hash each member's ``metrics.json``.
        metrics_sha256: ``{name: sha256}`` of each ``metrics.json`` as the vote read it (hashed
            from ``member_root`` where not given).
    """
    metrics_sha256 = metrics_sha256 or {}
    files = {p.relative_to(folder).as_posix(): sha256_file(p)
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}
    manifest = {
        "version": VERSION,
        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "fingerprint": fingerprint,
        "members": {name: {"model_sha256": m.get("model_sha256"),
                           "metrics_sha256": metrics_sha256.get(name) or _sha_or_none(member_root / name / "metrics.json"),
                           "spec_sha256": spec_hashes(member_root / name, m)}
                    for name, m in members.items()},
        "files": files,
    }
    write_json(folder / MANIFEST, manifest)
    return manifest


def _sha_or_none(path: Path) -> str | None:
    return sha256_file(path) if path.is_file() else None


def spec_files(metrics: dict) -> list[str]:
    """The ``spec.toml`` files of a member, relative to its folder, that decide how ``predict`` prepares its images
    (preprocessing, fundus_crop): its own, and each copy's of a k-fold member (``metrics.json`` ``copies``)."""
    copies = metrics.get("copies") if isinstance(metrics.get("copies"), list) else []
    return [SPEC, *(f"{c}/{SPEC}" for c in copies if isinstance(c, str))]


def spec_hashes(member_dir: Path, metrics: dict) -> dict[str, str]:
    """``{file: sha256}`` of the member's :func:`spec_files` that exist (an import of a foreign model has none)."""
    return {f: sha256_file(member_dir / f) for f in spec_files(metrics) if (member_dir / f).is_file()}


def check_spec(folder: Path, name: str, member_dir: Path, manifest: dict, fix: str) -> None:
    """Refuse member ``name`` whose ``spec.toml`` (or a k-fold copy's) is missing or not the one the vote recorded in
    the manifest (votes before the manifest held ``spec_sha256``: nothing to compare): predict would prepare its
    images otherwise than it was trained. ``fix``: how to do without the member (see
    :func:`ensemble.member_set.repair_hint`)."""
    recorded = (manifest["members"].get(name) or {}).get("spec_sha256")
    for file, sha in (recorded.items() if isinstance(recorded, dict) else ()):
        path = member_dir / file
        if not path.is_file():
            raise UserError(missing_spec(name, path, fix))
        if sha256_file(path) != sha:
            raise UserError(f"Member {name!r} has another {path} than the vote recorded (its SHA-256 differs from "
                            f"{folder / MANIFEST}), and it decides how its images are prepared (preprocessing, "
                            f"fundus_crop): restore the spec.toml it was trained with, or run `python cli.py vote "
                            f"--workdir {folder.parent}` again to vote with the edited one.")


def missing_spec(name: str, path: Path, fix: str) -> str:
    """The sentence refusing member ``name`` whose ``spec.toml`` at ``path`` is gone."""
    return (f"Member {name!r} has lost {path}, which says how its images are prepared before its model "
            f"(preprocessing, fundus_crop): restore it, {fix}.")


def read_manifest(folder: Path) -> dict:
    """The manifest of ``folder`` (``<workdir>/ensemble``), refusing a missing or malformed one."""
    workdir = folder.parent
    path = folder / MANIFEST
    if not path.is_file():
        raise UserError(f"{path} is missing, so nothing shows that the files of {folder} come from one vote "
                        f"(written by an older version, or edited by hand); {VOTE_AGAIN.format(workdir=workdir)}.")
    manifest = read_json(path)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict) \
            or not isinstance(manifest.get("members"), dict):
        raise UserError(f"{path} is not a vote manifest (no 'files' and 'members'); {VOTE_AGAIN.format(workdir=workdir)}.")
    return manifest


def check_files(folder: Path, names: list[str], manifest: dict | None = None) -> dict:
    """Refuse, by name, any of ``names`` (relative to ``folder``) that is not the file the vote wrote.

    Returns:
        The manifest.
    """
    manifest = manifest or read_manifest(folder)
    for name in names:
        path = folder / name
        expected = manifest["files"].get(name)
        if expected is None:
            raise UserError(f"{path} is not part of the vote recorded in {folder / MANIFEST} (it was added or "
                            f"copied in later); {VOTE_AGAIN.format(workdir=folder.parent)}.")
        if not path.is_file() or sha256_file(path) != expected:
            raise UserError(f"{path} does not belong to the vote that wrote {folder / 'report.json'} (its SHA-256 "
                            f"differs from {folder / MANIFEST}); {VOTE_AGAIN.format(workdir=folder.parent)}.")
    return manifest


def check_member(folder: Path, name: str, metrics: dict, manifest: dict, metrics_sha256: str | None = None) -> None:
    """Refuse a member that was retrained (or is not one of the members) since the vote, or whose
    ``metrics.json`` (``metrics_sha256``: its hash now) is not the one the vote read."""
    recorded = manifest["members"].get(name)
    if recorded is None:
        raise UserError(f"Member {name!r} is not one of the members of the vote recorded in {folder / MANIFEST}; "
                        f"{VOTE_AGAIN.format(workdir=folder.parent)}.")
    if recorded.get("model_sha256") != metrics.get("model_sha256"):
        raise UserError(f"Member {name!r} was retrained or replaced after the vote (its model.keras is not the one "
                        f"the combiners were fitted on, per {folder / MANIFEST}); "
                        f"{VOTE_AGAIN.format(workdir=folder.parent)}.")
    if metrics_sha256 and recorded.get("metrics_sha256") and recorded["metrics_sha256"] != metrics_sha256:
        raise UserError(f"Member {name!r} has another metrics.json than the vote read (its SHA-256 differs from "
                        f"{folder / MANIFEST}; a regression member's grade cuts live there); "
                        f"{VOTE_AGAIN.format(workdir=folder.parent)}.")


_STAGING: contextvars.ContextVar[Path | None] = contextvars.ContextVar("ensemble_staging", default=None)
_LOADED: contextvars.ContextVar[dict | None] = contextvars.ContextVar("ensemble_loaded", default=None)
_AFTER: contextvars.ContextVar[list | None] = contextvars.ContextVar("ensemble_after", default=None)


def after_commit(show: Callable[[], None]) -> None:
    """Run ``show`` (printing the vote's results) once the running vote's ensemble is swapped in — never for a vote
    that is then discarded (a member or the dataset replaced while it ran); at once outside :func:`transactional`."""
    pending = _AFTER.get()
    if pending is None:
        show()
    else:
        pending.append(show)


def output_folder(workdir: Path) -> Path:
    """Where the running vote writes: its staging folder inside :func:`transactional`, else ``workdir/ensemble``."""
    return _STAGING.get() or Path(workdir) / ENSEMBLE


def note_loaded(*, fingerprint: str | None = None, member: str | None = None, metrics_path: Path | None = None) -> None:
    """Record, for the running vote, the dataset fingerprint it read or the hash of a member's
    ``metrics.json`` just before it is read (a no-op outside :func:`transactional`).

    The vote's manifest pins these, not what the files hold when it ends: a member replaced
    (``train-member --force``) or a dataset re-prepared while the vote ran is then refused by
    name instead of recorded as what the combiners were fitted on.
    """
    loaded = _LOADED.get()
    if loaded is None:
        return
    if fingerprint is not None:
        loaded.setdefault("fingerprint", fingerprint)
    if member is not None and metrics_path is not None:
        loaded["members"].setdefault(member, _sha_or_none(metrics_path))


def _check_unchanged(workdir: Path, loaded: dict, names) -> None:
    """Refuse to swap in a vote whose dataset or members were replaced while it ran."""
    fingerprint = read_json(workdir / "dataset.json").get("fingerprint", "") if (workdir / "dataset.json").is_file() else ""
    if loaded.get("fingerprint") is not None and fingerprint != loaded["fingerprint"]:
        raise UserError(f"The dataset of {workdir} was replaced while this vote ran (`prepare --force` finished "
                        f"meanwhile); the previous ensemble is kept; run `python cli.py vote --workdir {workdir}` again.")
    for name in names:
        recorded = loaded["members"].get(name)
        if recorded is not None and _sha_or_none(workdir / "members" / name / "metrics.json") != recorded:
            raise UserError(f"Member {name!r} was replaced while this vote ran (a `train-member --force` or "
                            f"`import-member --force` finished meanwhile), so the combiners were fitted on its old "
                            f"predictions; the previous ensemble is kept; run `python cli.py vote --workdir {workdir}` "
                            "again.")


def transactional(func):
    """Run ``func(workdir, **options)`` (a vote) as one transaction on ``workdir/ensemble``.

    Under the workdir's vote lock, ``func`` writes into a staging folder (see
    :func:`output_folder`); the manifest is added, then the folder is swapped in whole. A
    failure (a bad option, a full disk, Ctrl-C) leaves the previous ``ensemble/`` as it was,
    and so does a member or dataset replaced while the vote ran (:func:`note_loaded`).
    The returned report's ``members`` are the members recorded in the manifest.
    """
    from members.infra.transaction import WorkdirLock, staged

    @functools.wraps(func)
    def wrapper(workdir, *args, **kwargs):
        workdir = Path(workdir)
        if not (workdir / "dataset.json").is_file():
            return func(workdir, *args, **kwargs)  # refuses (not prepared) without creating anything
        root = workdir / "members"
        with WorkdirLock(workdir, "vote"), staged(workdir / ENSEMBLE, note=f"The new ensemble was committed: "
                                                   f"{workdir / ENSEMBLE} holds it now.") as out:
            before = sorted(p.stem for p in (workdir / ENSEMBLE / "combiners").glob("*.json"))
            loaded, pending = {"members": {}}, []
            token, token_loaded, token_after = _STAGING.set(out), _LOADED.set(loaded), _AFTER.set(pending)
            try:
                report = func(workdir, *args, **kwargs)
            finally:
                _STAGING.reset(token)
                _LOADED.reset(token_loaded)
                _AFTER.reset(token_after)
            names = list(report.get("members", {}))
            _check_unchanged(workdir, loaded, names)
            members = {name: read_json(root / name / "metrics.json") for name in names}
            fingerprint = loaded.get("fingerprint") or read_json(workdir / "dataset.json").get("fingerprint", "")
            write_manifest(out, members, fingerprint, member_root=root, metrics_sha256=loaded["members"])
            now = sorted(p.stem for p in (out / "combiners").glob("*.json"))
        for show in pending:  # the results of the ensemble that now stands
            show()
        gone = [m for m in before if m not in now]
        if gone:  # a vote is the whole ensemble: say which fitted combiners the new one no longer has
            print(f"This vote replaced the previous ensemble in {workdir / ENSEMBLE}; its combiners {', '.join(gone)} are "
                  f"not in the new one (fitted now: {', '.join(now)}); vote with --method all to fit every combiner.",
                  file=sys.stderr)
        return report

    return wrapper
