"""All-or-nothing folder writes: build a folder beside its target, then swap it in at once.

A command that writes several files (``vote``'s ``ensemble/``, a member replaced with
``--force``) writes them into a fresh staging folder next to the target
(``.<name>.staging-<pid>``), and :func:`replace_dir` swaps the two: on Linux with one
``renameat2(RENAME_EXCHANGE)`` call (readers see the old folder or the new one, never a
mix), elsewhere by renaming the old folder aside first. The previous folder is deleted
only after the swap. A run killed at any moment leaves the old folder or the new one
whole; :func:`recover_dir` (called under the lock before the next write) puts a folder
that was set aside back and deletes leftovers.

Example:
    >>> with staged(Path("work/ensemble")) as tmp:        # doctest: +SKIP
    ...     (tmp / "report.json").write_text("{}")
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

from members.infra.errors import UserError
from members.infra.interrupts import uninterrupted
from members.infra.lock import LockUnwritable, MemberLock

STAGING = ".staging-"
ASIDE = ".old-"
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2``); False where the system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        func = libc.renameat2
    except (OSError, AttributeError):
        return False
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    func.restype = ctypes.c_int
    if func(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: this file system cannot exchange
        return False
    raise OSError(err, os.strerror(err), str(b))


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_tree(path: str | os.PathLike) -> bool:
    """Delete a folder of this toolkit's own scratch (a staging folder, a folder set aside); folders in it that are
    write-protected are made writable first, as its owner may. Returns False when it could not be deleted."""
    path = Path(path)
    shutil.rmtree(path, ignore_errors=True)
    if not os.path.lexists(path) or path.is_symlink():
        return not os.path.lexists(path)
    for folder in [path, *(p for p in path.rglob("*") if p.is_dir() and not p.is_symlink())]:
        try:
            os.chmod(folder, folder.stat().st_mode | stat.S_IWUSR | stat.S_IXUSR | stat.S_IRUSR)
        except OSError:
            pass
    shutil.rmtree(path, ignore_errors=True)
    return not os.path.lexists(path)


def _remove_or_say(path: Path, what: str) -> None:
    """:func:`remove_tree`, and one line on stderr naming ``path`` (holding ``what``) and how to delete it when it
    stays (the work is done: nothing fails for it)."""
    if not remove_tree(path):
        print(f"Note: {what} is left in {path}, which could not be deleted; delete it with "
              f"`chmod -R u+w {path} && rm -rf {path}`.", file=sys.stderr, flush=True)


def refuse_write_protected(target: str | os.PathLike) -> None:
    """Refuse, before any work, to replace a folder whose old version could not be deleted afterwards: ``target`` or
    a folder in it is write-protected (``chmod -R a-w``), which says it is to be kept.

    Raises:
        UserError: naming the first such folder and how to allow the replacement.
    """
    target = Path(target)
    if not target.is_dir() or target.is_symlink():
        return
    for folder in [target, *sorted(p for p in target.rglob("*") if p.is_dir() and not p.is_symlink())]:
        if not os.access(folder, os.W_OK | os.X_OK):
            inside = "" if folder == target else f" ({folder} in it is not writable)"
            raise UserError(f"{target} is write-protected{inside}, and this command replaces that whole folder; make "
                            f"it writable with `chmod -R u+w {target}` to let it, or run the command on a copy of the "
                            "workdir.")


def staging_path(target: Path) -> Path:
    """A fresh staging folder name beside ``target`` (hidden: ``.<name>.staging-<pid>``)."""
    return target.with_name(f".{target.name}{STAGING}{os.getpid()}")


def replace_dir(new: str | os.PathLike, target: str | os.PathLike, *, note: str | None = None) -> None:
    """Make folder ``new`` appear at ``target`` at once; the previous ``target`` is deleted afterwards.

    Ctrl-C and SIGTERM are held until both are done (:func:`members.infra.interrupts.uninterrupted`, with
    ``note``, default "<target> holds the new version.", as what an interruption then says).

    Raises:
        OSError: the rename failed (then ``target`` is unchanged).
    """
    new, target = Path(new), Path(target)
    with uninterrupted(f"{target} holds the new version." if note is None else note):
        if not target.exists():
            os.rename(new, target)
        elif _exchange(new, target):
            _remove_or_say(new, f"the previous {target}")  # ``new`` now holds the previous folder
        else:
            aside = target.with_name(f".{target.name}{ASIDE}{os.getpid()}")
            os.rename(target, aside)
            os.rename(new, target)  # a kill between the two renames: recover_dir puts ``aside`` back
            _remove_or_say(aside, f"the previous {target}")
        _fsync_dir(target.parent)


def recover_dir(target: str | os.PathLike, *, complete: str | None = None) -> None:
    """Undo what a killed :func:`replace_dir` or staging run left beside ``target``.

    A previous folder set aside while ``target`` is missing (or lacks the ``complete``
    marker file that the aside one has) is put back; staging folders and other set-aside
    folders are deleted. Call it while holding the lock that guards ``target``.
    """
    target = Path(target)
    if not target.parent.is_dir():
        return
    pattern = re.compile(re.escape(f".{target.name}{ASIDE}") + r"\d+")  # exactly ours: a member 'a.old-1' is not 'a'
    asides = sorted(p for p in target.parent.iterdir() if pattern.fullmatch(p.name) and p.is_dir())
    for aside in asides:
        missing = not target.exists() or (complete is not None and not (target / complete).exists()
                                          and (aside / complete).exists())
        if missing:
            replace_dir(aside, target, note="")  # the state before an interrupted run: nothing new to tell
        else:
            remove_tree(aside)


def remove_staging(target: str | os.PathLike, *, keep: Path | None = None) -> None:
    """Delete staging folders of ``target`` left by killed runs (all but ``keep``)."""
    target = Path(target)
    if not target.parent.is_dir():
        return
    pattern = re.compile(re.escape(f".{target.name}{STAGING}") + r"\d+")
    for path in target.parent.iterdir():
        if pattern.fullmatch(path.name) and path != keep and path.is_dir():
            remove_tree(path)  # a write-protected one too (the old folder of a swap that could not delete it)


@contextlib.contextmanager
def staged(target: str | os.PathLike, *, note: str | None = None) -> Iterator[Path]:
    """Yield an empty staging folder; on a clean exit swap it in as ``target``, else delete it.

    The caller holds the lock that guards ``target``; ``note``: see :func:`replace_dir`.
    """
    target = Path(target)
    recover_dir(target)
    if target.exists() and not target.is_dir():
        raise UserError(f"{target} is a file, where this command writes its folder; move that file away (it is "
                        "left as it is), then run the command again.")
    remove_staging(target)
    refuse_write_protected(target)
    tmp = staging_path(target)
    try:
        tmp.mkdir(parents=True)
        yield tmp
        replace_dir(tmp, target, note=note)
    except BaseException as exc:
        remove_tree(tmp)
        raise_as_known(exc, tmp, target)


def raise_as_known(exc: BaseException, tmp: Path, target: Path):
    """Raise ``exc`` naming the files as the user knows them (``target``), not the staging folder ``tmp``."""
    if isinstance(exc, UserError):
        raise UserError(str(exc).replace(str(tmp), str(target))) from None
    if isinstance(exc, OSError) and exc.filename and str(exc.filename).startswith(str(tmp)):
        exc.filename = str(target) + str(exc.filename)[len(str(tmp)):]
    raise exc


class WorkdirLock(MemberLock):
    """A lock file at ``<folder>/<name>`` for one kind of work (``vote``, ``prepare``) on a workdir.

    Example:
        >>> with WorkdirLock(Path("work"), "vote"):  # doctest: +SKIP
        ...     pass
    """

    def __init__(self, folder: str | os.PathLike, what: str):
        super().__init__(folder)
        self.path = Path(folder) / f".{what}.lock"
        self.what = what

    def busy_message(self, holder: dict) -> str:
        return (f"Another `{self.what}` is running on {self.path.parent} (pid {holder.get('pid')} on "
                f"{holder.get('host')}); wait for it to finish and run the command again. "
                f"If that process is gone, delete {self.path}.")



JOURNAL = "journal.json"


def journal_path(folder: str | os.PathLike, what: str) -> Path:
    """The staging folder of a :func:`commit_entries` transaction named ``what`` in ``folder``."""
    return Path(folder) / f".{what}.commit"


def commit_entries(folder: str | os.PathLike, what: str, write, order: list[str], *, note: str | None = None) -> None:
    """Replace several entries of ``folder`` (files or folders) as one transaction, rolled forward after a kill.

    ``write(staging)`` writes every new entry into an empty staging folder; then a journal
    naming ``order`` is written there (the commit point), and the entries are moved into
    ``folder`` in that order (put the file that marks the whole as valid last). A kill
    before the journal leaves ``folder`` as it was; a kill after it is finished by
    :func:`roll_forward`, which the readers of ``folder`` call first. Ctrl-C and SIGTERM are
    held from the journal until the last move (:func:`members.infra.interrupts.uninterrupted`,
    with ``note``, default "<folder> holds the new files of this <what>.", as what an
    interruption then says). A folder entry that is write-protected is refused before any work.
    """
    import json

    from members.infra.atomic import write_text

    staging = journal_path(folder, what)
    roll_forward(folder, what, locked=True)
    for name in dict.fromkeys(order):
        refuse_write_protected(Path(folder) / name)
    remove_tree(staging)
    staging.mkdir(parents=True)
    journal = staging / JOURNAL
    try:
        write(staging)
        missing = [name for name in order if not (staging / name).exists()]
        if missing:
            raise RuntimeError(f"commit_entries: {missing} were not written")
        with uninterrupted(f"{folder} holds the new files of this `{what}`." if note is None else note):
            write_text(journal, json.dumps(order))  # the commit point
            _roll_forward(Path(folder), staging)
    except BaseException as exc:
        if not journal.exists():  # before the commit point: the old entries stand, the new ones go
            remove_tree(staging)
        raise_as_known(exc, staging, Path(folder))


def roll_forward(folder: str | os.PathLike, what: str, *, locked: bool = False) -> None:
    """Finish (or, without its journal, discard) a :func:`commit_entries` transaction that a kill interrupted.

    Only the holder of the ``what`` lock may touch the staging folder: a reader (``locked``
    False) takes the lock for the roll-forward, and where a live process holds it (a
    ``prepare`` writing its new files, or moving them in) leaves the folder alone: before the
    journal the old entries stand untouched, and after it the reader is told to wait.
    """
    folder, staging = Path(folder), journal_path(folder, what)
    if not staging.is_dir():
        return
    if locked:
        _roll_forward(folder, staging)
        return
    lock = WorkdirLock(folder, what)
    try:
        lock.acquire()
    except (LockUnwritable, OSError):
        return  # a read-only workdir (or a full disk): nothing this reader may change
    except UserError:
        if (staging / JOURNAL).is_file():
            holder = lock._holder() or {}
            raise UserError(f"A `{what}` (pid {holder.get('pid')}) is replacing the files of {folder} right now; wait "
                            "for it to finish and run the command again.") from None
        return  # it is still writing its new files beside the old ones, which stand until its commit point
    try:
        _roll_forward(folder, staging)
    finally:
        lock.release()


def _roll_forward(folder: Path, staging: Path) -> None:
    """Move a committed transaction's entries in, Ctrl-C and SIGTERM held meanwhile (what was committed is told by
    the run that committed it: :func:`commit_entries`)."""
    import json

    if not staging.is_dir():
        return
    try:
        order = json.loads((staging / JOURNAL).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # no journal: the transaction never reached its commit point
        remove_tree(staging)
        return
    with uninterrupted(""):
        for name in order:
            new, old = staging / name, folder / name
            try:
                if new.is_dir():
                    aside = staging / f"{ASIDE}{name}"
                    if old.exists():
                        remove_tree(aside)
                        os.rename(old, aside)
                    os.rename(new, old)  # a kill between the renames: ``new`` is still there, moved next time
                elif new.exists():
                    os.replace(new, old)
            except FileNotFoundError:  # moved already (by a concurrent reader finishing the same commit)
                continue
        _fsync_dir(folder)
        (staging / JOURNAL).unlink(missing_ok=True)  # done: what is left is only the replaced entries
        _remove_or_say(staging, f"what {folder} held before")
