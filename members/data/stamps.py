"""Which pictures a prepared workdir was made from, to notice other pictures under the same file names later.

A labels file and its images folder are read where they lie: ``split.csv`` (and its fingerprint) names the files,
not their pixels. So ``prepare`` records, for the images it kept from a labels file or class folders,
``image_stamps.csv`` (``path, bytes, mtime_ns, digest``) and, in ``dataset.json``, ``images_digest``: the SHA-256
of the kept images' paths, sizes and digests (not their times: a ``touch`` or a copy that keeps the bytes changes no
picture). ``digest`` is BLAKE2b over a file's size and its first and last 64 KiB: a picture replaced, re-encoded or
resized changes them, and reading 128 KiB of each file keeps it cheap on thousands of photographs. A later
``prepare`` and every training run compare the files with the stamps; a file whose size and modification time are
the recorded ones is taken as unchanged without being read.

An ``.npz`` source is not stamped here: prepare writes its pictures into the workdir and compares them itself.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

STAMPS = "image_stamps.csv"
SPAN = 1 << 16  # bytes read at each end of a file

Stamp = tuple[int, int, str]  # (bytes, mtime_ns, digest)


def digest(path: str | os.PathLike) -> str:
    """BLAKE2b (128 bits) of a file's size and its first and last :data:`SPAN` bytes."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        h = hashlib.blake2b(str(size).encode(), digest_size=16)
        h.update(f.read(SPAN))
        if size > SPAN:
            f.seek(max(SPAN, size - SPAN))
            h.update(f.read(SPAN))
    return h.hexdigest()


def take(root: Path, paths: Iterable[str], earlier: Mapping[str, Stamp] | None = None) -> pd.DataFrame:
    """The stamps of ``paths`` under ``root``; a file whose size and mtime are ``earlier``'s keeps its digest unread."""
    rows = []
    for path in paths:
        st = os.stat(root / path)
        old = (earlier or {}).get(path)
        same = old is not None and old[0] == st.st_size and old[1] == st.st_mtime_ns
        rows.append((path, st.st_size, st.st_mtime_ns, old[2] if same else digest(root / path)))
    return pd.DataFrame(rows, columns=["path", "bytes", "mtime_ns", "digest"])


def set_digest(frame: pd.DataFrame) -> str:
    """SHA-256 of the stamps' paths, sizes and digests, in row order (``dataset.json``'s ``images_digest``)."""
    h = hashlib.sha256()
    for path, size, dig in zip(frame["path"], frame["bytes"], frame["digest"]):
        h.update(f"{path}\t{int(size)}\t{dig}\n".encode())
    return h.hexdigest()


def to_csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, lineterminator="\n")


def read(workdir: Path, images_digest: str | None) -> dict[str, Stamp] | None:
    """The workdir's stamps by path, or None: none recorded (an older prepare, an .npz), or a file that is not
    the one ``images_digest`` names (edited, or left from another prepare)."""
    path = Path(workdir) / STAMPS
    if not images_digest or not path.is_file():
        return None
    try:
        frame = pd.read_csv(path, dtype={"path": str, "bytes": "int64", "mtime_ns": "int64", "digest": str},
                            keep_default_na=False)
    except (OSError, ValueError, KeyError, pd.errors.ParserError):
        return None
    if list(frame.columns) != ["path", "bytes", "mtime_ns", "digest"] or set_digest(frame) != images_digest:
        return None
    return {p: (int(b), int(m), d) for p, b, m, d in frame.itertuples(index=False)}


def changed(root: Path, recorded: Mapping[str, Stamp], paths: Iterable[str]) -> list[str]:
    """The ``paths`` whose file is not the recorded picture (other size, or other digest once its mtime moved);
    a path without a stamp or without its file is left to the caller."""
    out = []
    for path in paths:
        stamp = recorded.get(path)
        if stamp is None:
            continue
        try:
            st = os.stat(root / path)
        except OSError:
            continue
        if st.st_size == stamp[0] and st.st_mtime_ns == stamp[1]:
            continue
        try:
            if st.st_size != stamp[0] or digest(root / path) != stamp[2]:
                out.append(path)
        except OSError:
            continue
    return out
