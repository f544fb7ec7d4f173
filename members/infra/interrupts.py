"""Commit points that Ctrl-C and SIGTERM cannot cut in half, and what an interruption says.

A command that replaces finished work (``prepare``'s dataset, ``vote``'s ``ensemble/``, a member
swapped in with ``--force``) moves the new files in inside :func:`uninterrupted`: a SIGINT or
SIGTERM that arrives meanwhile is held until the move is whole, then raised as a
:class:`KeyboardInterrupt` whose ``note`` says what was committed. The note is also kept for the
rest of the command (:func:`committed`), so an interruption later in the same run (while the
summary prints) is not told as "nothing finished was changed" either.

Example:
    >>> with uninterrupted("w/ensemble holds the new ensemble."):  # doctest: +SKIP
    ...     os.replace(new, target)
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

_notes: list[str] = []  # what this command committed, in order
_depth = [0]  # nested commits: the outermost one holds the signals and raises


class AfterCommit(KeyboardInterrupt):
    """An interruption held until a commit was whole; ``note`` says what was committed."""

    def __init__(self, note: str):
        super().__init__(note)
        self.note = note


def committed() -> str:
    """What this command has committed so far (empty when nothing)."""
    return " ".join(_notes)


def forget() -> None:
    """Start a new command: nothing committed yet."""
    _notes.clear()


@contextlib.contextmanager
def uninterrupted(note: str) -> Iterator[None]:
    """Run the block with SIGINT and SIGTERM held; record ``note`` once it is done, and raise an interruption that
    came meanwhile as :class:`AfterCommit`. Outside the main thread (no handlers can be set) the block runs as is.

    Args:
        note: one sentence saying what stands after the block, e.g. which folder holds the new files ("": none
            of its own, inside a commit that says it).
    """
    if _depth[0] or threading.current_thread() is not threading.main_thread():
        yield  # an outer commit holds the signals (or none can be held here)
        _notes.extend([note] if note else [])
        return
    held: list[int] = []
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, lambda signum, frame: held.append(signum))
        except (ValueError, OSError, AttributeError):  # a platform without the signal
            pass
    _depth[0] += 1
    try:
        yield
        _notes.extend([note] if note else [])
    finally:
        _depth[0] -= 1
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
    if held:
        raise AfterCommit(committed())
