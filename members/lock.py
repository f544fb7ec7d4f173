"""A per-member lock file, so two ``train-member`` runs never write the same member at once.

The lock is a file holding the holder's pid and host, created with ``O_EXCL``. A lock
whose process is gone (same host, pid not alive) is stale and is taken over.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from members.errors import UserError


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class MemberLock:
    """Context manager holding ``<member_dir>/.lock``.

    Example:
        >>> with MemberLock(Path("/tmp/w/members/a")):  # doctest: +SKIP
        ...     pass
    """

    def __init__(self, member_dir: str | os.PathLike):
        self.path = Path(member_dir) / ".lock"

    def _holder(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                same_host = holder is not None and holder.get("host") == socket.gethostname()
                if holder is None or (same_host and not _alive(int(holder.get("pid", -1)))):
                    self.path.unlink(missing_ok=True)  # stale: its process is gone
                    continue
                raise UserError(
                    f"Member {self.path.parent.name!r} is being trained by another process "
                    f"(pid {holder.get('pid')} on {holder.get('host')}); wait for it to finish, or choose another --name. "
                    f"If that process is gone, delete {self.path}."
                ) from None
            with os.fdopen(fd, "w") as f:
                f.write(me)
            return
        raise UserError(f"Could not take the lock {self.path}; delete it and try again.")

    def release(self) -> None:
        holder = self._holder()
        if holder is not None and holder.get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "MemberLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
