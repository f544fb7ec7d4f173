"""Finished members are sacred: what a member folder already holds, compared with a new run.

A member is complete once its ``metrics.json`` exists. A run with the same spec on the
same data finds it complete and trains nothing, unless files it needs are gone since (:func:`missing_files`: a
damaged member, refused by name; ``--force`` trains it again); a run with another spec (or after the
workdir was prepared again) is refused with the differing fields named, unless
``--force``, which trains the new member beside the old one and swaps it in only when it
is complete (see :func:`members.training.trainer.train_member`).

Example:
    >>> state = existing_member(Path("work/members/a"), spec, fingerprint)  # doctest: +SKIP
    >>> state.complete, state.differences                                     # doctest: +SKIP
    (True, ['seed 0 → 1'])
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from members.infra.errors import UserError
from members.model.spec import MemberSpec

MAX_SHOWN = 6
DAMAGED = "files missing:"  # the difference a complete member lacking files it needs has (see missing_files)


@dataclass(frozen=True)
class ExistingMember:
    """The state of a member folder: ``complete`` (metrics.json present), its metrics, how it differs."""

    complete: bool
    metrics: dict = field(default_factory=dict, repr=False)
    differences: list[str] = field(default_factory=list)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def spec_differences(old: dict, new: MemberSpec) -> list[str]:
    """``"field old → new"`` for every field whose value differs (a field missing on disk counts as its default),
    but :data:`members.model.spec.RUNTIME_FIELDS`, which change how a member is trained, not what it learns."""
    from members.model.spec import learned_fields

    wanted = learned_fields(new)
    had = learned_fields(old)
    out = []
    for key in list(wanted) + sorted(set(had) - set(wanted)):
        a, b = had.get(key, "(absent)"), wanted.get(key, "(absent)")
        if a != b:
            out.append(f"{key} {_short(a)} → {_short(b)}")
    return out


def missing_files(directory: Path, metrics: dict) -> list[str]:
    """The files of a complete member (``metrics.json`` written) that ``directory`` lacks, relative to it: ``val.npz``
    and ``test.npz``; ``model.keras`` where ``metrics.json`` records its ``model_sha256`` (an import of probabilities
    has none); for a k-fold member ``oof.npz`` and each copy's ``metrics.json`` and ``model.keras``."""
    from members.training.folds import FOLDS_DIR, OOF_FILE

    need = ["val.npz", "test.npz"]
    folds = metrics.get("folds")
    if isinstance(folds, int) and not isinstance(folds, bool) and folds > 0:
        need += [OOF_FILE, *(f"{FOLDS_DIR}/{i}/{f}" for i in range(folds) for f in ("metrics.json", "model.keras"))]
    elif metrics.get("model_sha256"):
        need.append("model.keras")
    return [f for f in need if not (directory / f).is_file()]


def damage(name: str, directory: Path, missing: list[str]) -> str:
    """The start of the sentence naming member ``name`` in ``directory`` as damaged: ``missing`` files
    (:func:`missing_files`) gone though its ``metrics.json`` says it is complete; the caller adds the fix."""
    shown = ", ".join(str(directory / f) for f in missing[:3]) + (f" and {len(missing) - 3} more"
                                                                  if len(missing) > 3 else "")
    return (f"Member {name!r} is damaged: its metrics.json says its training finished, but {shown} "
            f"{'is' if len(missing) == 1 else 'are'} missing (deleted or moved since)")


def existing_member(directory: Path, spec: MemberSpec, fingerprint: str) -> ExistingMember:
    """What ``directory`` holds compared with training ``spec`` on data ``fingerprint``.

    A ``metrics.json`` that cannot be read still marks the member complete (it is never
    silently replaced); the reason is one of the differences.
    """
    metrics_path = directory / "metrics.json"
    if not metrics_path.exists():
        return ExistingMember(False)
    differences: list[str] = []
    try:
        import json

        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        if not isinstance(metrics, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        metrics = {}
        differences.append(f"metrics.json unreadable ({exc.__class__.__name__})")
    try:
        old = tomllib.loads((directory / "spec.toml").read_text(encoding="utf-8"))
        differences += spec_differences(old, spec)
    except FileNotFoundError:
        differences.append("spec.toml missing")
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        differences.append(f"spec.toml unreadable ({exc.__class__.__name__})")
    if metrics and metrics.get("fingerprint") != fingerprint:
        differences.append("data (the workdir was prepared again since)")
    missing = missing_files(directory, metrics)
    if missing:  # never "nothing to train" for a member whose model or predictions are gone
        differences.insert(0, f"{DAMAGED} {', '.join(missing)}")
    return ExistingMember(True, metrics, differences)


def refusal(name: str, directory: Path, differences: list[str], *, option: str = "--name") -> UserError:
    """The one sentence that refuses to overwrite a complete member (``--force`` would replace it), or a damaged one
    (:data:`DAMAGED`: ``--force`` trains it again)."""
    gone = next((d for d in differences if d.startswith(DAMAGED)), None)
    if gone is not None:
        return UserError(f"{damage(name, directory, gone[len(DAMAGED):].strip().split(', '))}; pass --force to train "
                         "it again (the new one replaces it once complete), or leave it out of the vote with "
                         "`python cli.py vote --members` naming the others.")
    shown = "; ".join(differences[:MAX_SHOWN]) + (f"; and {len(differences) - MAX_SHOWN} more"
                                                  if len(differences) > MAX_SHOWN else "")
    way = ", or pass --force to train the new one beside it and replace it once the new one is complete"
    return UserError(
        f"Member {name!r} in {directory.parent} is already complete with another spec ({shown}), and a finished "
        f"member is never overwritten: choose another {option}{way}.")
