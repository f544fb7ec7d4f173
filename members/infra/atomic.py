"""Crash-safe file writes and pickle-free reads.

Every artifact of the workdir is written to a temporary file in the same folder
and moved into place with :func:`os.replace`, so a crash, a kill or a full disk
leaves either the previous file or the new one, never half of one.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from members.infra.errors import UserError
from members.infra.lock import HOST_TAG as _HOST  # the host as temp names carry it


_UMASK = os.umask(0)
os.umask(_UMASK)
_SWEPT: set[str] = set()  # folders whose dead temps were deleted by this process
_TEMP_TAG = re.compile(r"\.[A-Za-z0-9_-]+-\d+\.[^.]+\.tmp$")  # .<host>-<pid>.<random>.tmp of atomic_write


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], *, mode: str = "wb",
                 follow_link: bool = False) -> Path:
    """Call ``write(fileobj)`` on a temp file beside ``path``, fsync it, then ``os.replace`` it.

    A file that is replaced keeps its permission bits. A symbolic link at ``path`` is replaced by the file,
    unless ``follow_link`` (``predict --out latest.csv``, a link the user keeps): then its target is replaced and
    the link kept. Workdir files never follow links (a workdir cloned as a tree of links must not rewrite the
    original's files).

    Args:
        path: the final file.
        write: a function that writes the whole content to the open file object.
        mode: ``"wb"`` or ``"w"`` (UTF-8 text).

    Returns:
        The final path.

    Raises:
        UserError: the file could not be written (a full disk, no permission, a read-only
            file system...); the message names it, and the previous file is left as it was.
    """
    path = Path(path)
    if follow_link and path.is_symlink():  # latest.csv -> day1.csv: the link stays, its target is replaced
        path = Path(os.path.realpath(path))
    try:
        bits = path.stat().st_mode & 0o7777 if path.is_file() else 0o644 & ~_UMASK  # a replaced file keeps its mode
    except OSError:
        bits = 0o644 & ~_UMASK
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _sweep_dead_temps(path.parent)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_HOST}-{os.getpid()}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    try:
        encoding = None if "b" in mode else "utf-8"
        newline = None if "b" in mode else "\n"
        with os.fdopen(fd, mode, encoding=encoding, newline=newline) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, bits)
        os.replace(tmp, path)
    except BaseException as exc:
        discard_temp(tmp, path, exc)
        raise
    return path


def read_only(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an existing file that is write-protected: no write bit for its owner (``chmod a-w``, which
    root's writes would ignore), or one this process may not write. A link counts as its target. :func:`atomic_write`
    would replace it all the same (a rename needs only its folder writable): a command writing to a file the user
    named asks :func:`refuse_read_only` first."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return False
    return stat.S_ISREG(mode) and (not mode & stat.S_IWUSR or not os.access(path, os.W_OK))


def refuse_read_only(path: str | os.PathLike, option: str, *, force: str | None = "--force") -> None:
    """Refuse, before any work, a user-named output ``path`` (given as ``option``) that is write-protected; the
    ``force`` option, when the command has one, replaces it anyway (the caller skips this check then)."""
    if read_only(path):
        raise UserError(f"{option} {path} is read-only; chmod u+w it, or pass another {option}"
                        f"{f' or {force}' if force else ''}.")


STALE_TEMP_SECONDS = 3600  # a temp file untouched this long belongs to a writer that was killed (a write takes
# seconds): whose pid is alive cannot be told across containers sharing a host name and a folder


def _sweep_dead_temps(folder: Path) -> None:
    """Delete the temp files that writers killed before their rename (SIGKILL, a power cut) left in ``folder``:
    those with this toolkit's ``.<name>.<host>-<pid>.<random>.tmp`` form, untouched for
    :data:`STALE_TEMP_SECONDS`. A live writer's temp is never that old. Once per folder and process, so writing
    many files stays linear."""
    key = str(folder)
    if key in _SWEPT:
        return
    _SWEPT.add(key)
    cutoff = time.time() - STALE_TEMP_SECONDS
    try:
        entries = [e for e in os.scandir(folder) if e.name.startswith(".") and e.name.endswith(".tmp")
                   and _TEMP_TAG.search(e.name)]
        for entry in entries:
            if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                try:
                    os.unlink(entry.path)
                except OSError:
                    pass
    except OSError:
        return


def discard_temp(tmp: str | os.PathLike, path: Path, exc: BaseException) -> None:
    """After a failed write of ``path``: delete its temp file; an OSError becomes the one-sentence :class:`UserError`."""
    try:
        os.unlink(tmp)
    except OSError:
        pass
    if isinstance(exc, OSError):
        raise _write_error(path, exc) from exc


def _write_error(path: Path, exc: OSError) -> UserError:
    reason = exc.strerror or str(exc) or exc.__class__.__name__
    hint = ("free some disk space" if exc.errno in (errno.ENOSPC, errno.EDQUOT)
            else "raise the file-size limit (`ulimit -f`) or write to a file system that takes larger files"
            if exc.errno == errno.EFBIG else "check that the folder exists and is writable")
    return UserError(f"Could not write {path} ({reason}); the previous version of the file, if any, is unchanged: "
                     f"{hint} and run the command again.")


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(data))


def write_text(path: str | os.PathLike, text: str, *, follow_link: bool = False) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (``follow_link``: see :func:`atomic_write`)."""
    return atomic_write(path, lambda f: f.write(text), mode="w", follow_link=follow_link)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike, *, keys: tuple[str, ...] | None = None,
              fix: str = "delete it and re-create it") -> Any:
    """Read a JSON file; a missing or corrupt file is a :class:`UserError` naming it and saying ``fix``.

    Args:
        path: the file.
        keys: when given, the file must hold a JSON object with at least these keys.
        fix: what the user should do about a corrupt file (ends the message).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} does not exist.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON ({exc}); {fix}.") from None
    except OSError as exc:
        raise UserError(f"{path} cannot be read ({exc.strerror or exc}); {fix}.") from None
    if keys is not None:
        if not isinstance(data, dict):
            raise UserError(f"{path} is corrupt: it holds a JSON {type(data).__name__}, not an object; {fix}.")
        missing = [k for k in keys if k not in data]
        if missing:
            raise UserError(f"{path} is corrupt: it lacks {', '.join(map(repr, missing))}; {fix}.")
    return data


def save_npz(path: str | os.PathLike, **arrays: Any) -> Path:
    """Save arrays to an uncompressed ``.npz`` atomically (no object arrays allowed)."""
    for key, value in arrays.items():
        if np.asarray(value).dtype == object:
            raise TypeError(f"save_npz refuses object arrays (they need pickle); got key={key!r}.")
    return atomic_write(path, lambda f: np.savez(f, **arrays))


def load_npz(path: str | os.PathLike, *, fix: str | None = None) -> dict[str, np.ndarray]:
    """Load every array of an ``.npz`` eagerly, never with pickle.

    Args:
        path: the file.
        fix: what the user should do about a missing or corrupt file (ends the message; a corrupt one: "re-create
            it" when not given).

    Raises:
        UserError: the file is missing, truncated, not an npz, or holds pickled objects;
            the message names the file.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} does not exist{f'; {fix}' if fix else ''}.")
    fix = fix or "re-create it"
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except ValueError as exc:
        with open(path, "rb") as f:
            head = f.read(6)
        if head[:2] != b"PK" and head != b"\x93NUMPY":  # numpy's fallback for any other file is to unpickle it
            raise UserError(f"{path} is not an .npz file (it does not begin as a zip archive); {fix}.") from None
        if "pickle" in str(exc).lower():
            raise UserError(f"{path} holds pickled objects, which are never loaded; {fix}.") from None
        raise UserError(f"{path} is corrupt or not an .npz file ({exc}); {fix}.") from None
    except (OSError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise UserError(f"{path} is corrupt or not an .npz file ({exc}); {fix}.") from None


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
