"""The one exception type for problems with the user's input.

The CLI catches :class:`UserError`, prints its message as one plain sentence on
stderr and exits with code 1, never with a traceback. Library code raises it
with a message that says what was wrong, what was expected and how to fix it.
"""

from __future__ import annotations

import errno


class UserError(Exception):
    """A problem the user can fix: bad data, bad options, a workdir in the wrong state.

    Example:
        >>> raise UserError("Epochs must be at least 1; got 0. Pass --epochs 1 or more.")
        Traceback (most recent call last):
        ...
        members.infra.errors.UserError: Epochs must be at least 1; got 0. Pass --epochs 1 or more.
    """


REFUSED_WRITES = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)  # what write_refusal explains


def write_refusal(path, exc: OSError) -> str:
    """One sentence for an ``OSError`` writing ``path`` (a file or folder; one not made yet counts as its nearest
    existing folder): what could not be written and its one cause with the fix, never "disk space or permissions".

    Example:
        >>> write_refusal("/nonexistent-root-x/w/.vote.lock.tmp", PermissionError(13, "Permission denied"))
        'Could not write in /: no write permission for it (Permission denied); fix it with `chmod u+w /` or run the command as the owner of /, then run the command again.'
    """
    from pathlib import Path

    where = Path(path)
    while not where.exists() and where != where.parent:  # the folder that refused the new entry
        where = where.parent
    what = f"Could not write {where}" if where.is_file() else f"Could not write in {where}"
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"{what}: no space left on the device holding it ({reason}); free some disk space there, then run "
                "the command again.")
    if exc.errno == errno.EROFS:
        return (f"{what}: it is on a read-only file system ({reason}); remount it writable or choose a workdir or "
                "path elsewhere, then run the command again.")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return (f"{what}: no write permission for it ({reason}); fix it with `chmod u+w {where}` or run the command "
                f"as the owner of {where}, then run the command again.")
    return f"{what} ({reason}); files already written are complete: fix the cause, then run the command again."


def quiet_h5py_unraisable() -> None:
    """Stop printing h5py's unraisable errors (tracebacks "Exception ignored in h5py._objects.ObjectID.__dealloc__").

    After an HDF5 write fails mid-way (a full disk, a file-size limit) h5py keeps the file open and
    HDF5 retries the write whenever a handle is dropped; each retry printed a traceback before the
    one-sentence error. Other unraisable errors are still printed.
    """
    import sys
    import traceback

    previous, previous_except = sys.unraisablehook, sys.excepthook
    if getattr(previous, "quiet_h5py", False):
        return

    def hook(unraisable) -> None:
        if "h5py" in repr(getattr(unraisable, "object", "")) or "h5py" in str(getattr(unraisable, "err_msg", "")):
            return
        previous(unraisable)

    def except_hook(kind, value, tb) -> None:  # Cython prints a __dealloc__ error's traceback through it first
        frames = traceback.extract_tb(tb) if tb is not None else []
        if kind is RuntimeError and frames and all("h5py" in f.filename for f in frames):
            return
        previous_except(kind, value, tb)

    hook.quiet_h5py = except_hook.quiet_h5py = True
    sys.unraisablehook, sys.excepthook = hook, except_hook


def hdf5_write_failed() -> None:
    """Note that an HDF5 write failed mid-way: the process must not finalize normally.

    HDF5's shutdown at exit retries the failed write and segfaulted (exit 139 after the clean error
    message); :func:`must_exit_hard` tells the CLI to end the process with ``os._exit`` once its
    message is out (every lock and temp file is released before).
    """
    global _HARD_EXIT
    _HARD_EXIT = True
    quiet_h5py_unraisable()


def must_exit_hard() -> bool:
    """Whether :func:`hdf5_write_failed` was called in this process."""
    return _HARD_EXIT


_HARD_EXIT = False
