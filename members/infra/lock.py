"""A per-member lock file, so two ``train-member`` runs never write the same member at once.

The lock is a file holding the holder's pid and host, created atomically with its content
(a hard link of a private temp file; ``O_EXCL`` where links are not supported). A lock whose
process is gone (same host, pid not alive; or an unreadable lock) is stale and is taken over.
"""

from __future__ import annotations

import json
import os
import socket
import secrets
from pathlib import Path

from members.infra.errors import REFUSED_WRITES, UserError, write_refusal

# this host's name as temp file names carry it (``.<name>.<host>-<pid>.<random>.tmp``)
HOST_TAG = "".join(c for c in socket.gethostname().split(".")[0] if c.isalnum() or c in "-_")[:32] or "host"


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs: a zombie (ended, not yet reaped: under a container's PID 1 that does not reap,
    a killed run's worker stays one for good) holds no lock."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):  # no /proc (macOS): as os.kill said
        return True


class _folder_guard:
    """An exclusive ``flock`` on a folder for a few system calls (released on exit or process death).

    A no-op where the system has no ``flock`` or the folder cannot be locked (then the takeover
    of a stale lock is as before: rare races between processes starting at the same moment).
    """

    def __init__(self, folder: Path):
        self.folder, self.fd = folder, None

    def __enter__(self):
        try:
            import fcntl

            self.fd = os.open(self.folder, os.O_RDONLY)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except (ImportError, OSError):
            if self.fd is not None:
                os.close(self.fd)
            self.fd = None
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the flock


def _write_all(fd: int, content: str) -> None:
    """Write ``content`` to the new file ``fd`` and close it (the descriptor is closed on failure too)."""
    try:
        data = content.encode("utf-8")
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)


class LockBusy(UserError):
    """The lock is held by another live process (its sentence names it)."""


class LockUnwritable(UserError):
    """The lock file cannot be written: a full disk, a folder without write permission (its sentence says which)."""


def live_holder(path: str | os.PathLike) -> dict | None:
    """The ``{"pid", "host"}`` of the lock file at ``path`` while its process runs (one on another host counts as
    running); None when there is no lock or its process is gone. Read only: a stale lock is left where it is."""
    lock = MemberLock(Path(path).parent)
    lock.path = Path(path)
    holder = lock._holder()
    if holder is None or (holder.get("host") == socket.gethostname() and not _alive(holder["pid"])):
        return None
    return holder


class MemberLock:
    """Context manager holding ``<member_dir>/.lock``.

    Example:
        >>> with MemberLock(Path("/tmp/w/members/a")):  # doctest: +SKIP
        ...     pass
    """

    def __init__(self, member_dir: str | os.PathLike):
        self.path = Path(member_dir) / ".lock"

    def _holder(self) -> dict | None:
        """The lock's ``{"pid", "host"}``; None when it is missing or unreadable (then it is stale)."""
        try:
            holder = json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None
        pid = holder.get("pid") if isinstance(holder, dict) else None
        return holder if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 else None

    def _create(self, content: str) -> bool:
        """Create the lock file with its whole content at once; False when it already exists.

        The content goes to a private temp file that is then hard-linked to the lock's name, so
        another process never sees an empty lock (which it would take for a stale one).
        """
        # named as the atomic writes' temps are (members.infra.atomic), so that one a killed run left is swept later
        tmp = self.path.with_name(f"{self.path.name}.{HOST_TAG}-{os.getpid()}.{secrets.token_hex(6)}.tmp")
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        try:
            _write_all(fd, content)  # a full disk fails here: no lock, and no temp left
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                return False
            except OSError:  # no hard links on this file system: exclusive create, then write
                return self._create_in_place(content)
        finally:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        return True

    def _create_in_place(self, content: str) -> bool:
        """:meth:`_create` where hard links fail: create the lock exclusively, then write it (deleted if that fails)."""
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        try:
            _write_all(fd, content)
        except BaseException:
            self.path.unlink(missing_ok=True)
            raise
        return True

    def acquire(self) -> None:
        """Take the lock.

        Raises:
            LockBusy: another live process holds it.
            LockUnwritable: the lock cannot be written (a full disk, a folder without write permission): one
                sentence naming the folder and that cause.
        """
        me = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
        for _ in range(3):
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                if self._create(me):
                    return
                holder = self._remove_if_stale()
            except OSError as exc:
                if exc.errno not in REFUSED_WRITES:  # a file where the folder goes, a name too long: said as such
                    raise
                raise LockUnwritable(write_refusal(self.path.parent, exc)) from None
            if holder is not None:
                raise LockBusy(self.busy_message(holder))
        raise UserError(f"Could not take the lock {self.path}; delete it and try again.")

    def _remove_if_stale(self) -> dict | None:
        """Delete the lock if its process is gone; return its live holder otherwise (None once deleted).

        The read and the delete happen under an exclusive ``flock`` on the lock's folder, so two
        processes that both found the same stale lock cannot both take it over: the second one
        reads the first one's fresh lock, not the stale one it saw before.
        """
        with _folder_guard(self.path.parent):
            holder = self._holder()
            same_host = holder is not None and holder.get("host") == socket.gethostname()
            if holder is None or (same_host and not _alive(holder["pid"])):
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                return None
            return holder

    def busy_message(self, holder: dict) -> str:
        """The sentence for a lock held by another live process."""
        return (f"Member {self.path.parent.name!r} is being trained by another process "
                f"(pid {holder.get('pid')} on {holder.get('host')}); wait for it to finish, or choose another --name. "
                f"If that process is gone, delete {self.path}.")

    def release(self) -> None:
        holder = self._holder()
        if holder is not None and holder.get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "MemberLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
