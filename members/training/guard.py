"""Finished members are sacred: what a member folder already holds, compared with a new run.

A member is complete once its ``metrics.json`` exists. A run with the same spec on the
same data finds it complete and trains nothing; a run with another spec (or after the
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
    return ExistingMember(True, metrics, differences)


def refusal(name: str, directory: Path, differences: list[str], *, option: str = "--name") -> UserError:
    """The one sentence that refuses to overwrite a complete member (``--force`` would replace it)."""
    shown = "; ".join(differences[:MAX_SHOWN]) + (f"; and {len(differences) - MAX_SHOWN} more"
                                                  if len(differences) > MAX_SHOWN else "")
    way = ", or pass --force to train the new one beside it and replace it once the new one is complete"
    return UserError(
        f"Member {name!r} in {directory.parent} is already complete with another spec ({shown}), and a finished "
        f"member is never overwritten: choose another {option}{way}.")
