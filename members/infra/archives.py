"""What a file passed as a CSV, an image or a folder is instead: an archive or a spreadsheet workbook.

Downloads come packed (Kaggle's ``train.zip``, ``trainLabels.csv.zip``, a split archive's ``train.zip.001``) and
labels come as Excel workbooks; read as text such a file only gives a codec error. :func:`file_kind` tells them by
their first bytes (a zip whose entries hold ``xl/`` is an ``.xlsx``), so the sentence can say what to do.

Example:
    >>> file_kind("trainLabels.csv.zip")               # doctest: +SKIP
    'a zip archive'
    >>> not_a_folder("train.zip", "pass the folder of the images")      # doctest: +SKIP
    'is a zip archive, not a folder: extract it first (e.g. `unzip train.zip`), then pass the folder it holds via --images'
"""

from __future__ import annotations

import os
import re
import shlex
import zipfile

WORKBOOK = "an Excel workbook"
_MAGIC = ((b"PK\x03\x04", "a zip archive"), (b"PK\x05\x06", "a zip archive"), (b"PK\x07\x08", "a zip archive"),
          (b"\x1f\x8b", "a gzip archive"), (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", f"{WORKBOOK} (.xls)"),
          (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"), (b"Rar!\x1a\x07", "a RAR archive"),
          (b"\xfd7zXZ\x00", "an xz archive"), (b"BZh", "a bzip2 archive"))
_PART = re.compile(r"\.(zip|7z|rar|tar|gz)\.\d{2,3}$|\.z\d{2}$|\.part\d+\.rar$", re.IGNORECASE)


def file_kind(path: str | os.PathLike) -> str | None:
    """``path`` as an archive or a workbook, in words (``'a zip archive'``, ``'an Excel workbook (.xlsx)'``,
    ``'one part of a split archive'``), or None: another file (text, an image), a folder, or unreadable."""
    if _PART.search(os.fspath(path)) and os.path.isfile(path):
        return "one part of a split archive"
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return None
    if len(head) > 262 and head[257:262] == b"ustar":
        return "a tar archive"
    kind = next((words for magic, words in _MAGIC if head.startswith(magic)), None)
    if kind == "a zip archive":
        try:
            with zipfile.ZipFile(path) as z:
                if any(n.startswith("xl/") for n in z.namelist()):
                    return f"{WORKBOOK} (.xlsx)"
        except (zipfile.BadZipFile, OSError):  # the first part of a split zip: no central directory
            pass
    return kind


def how_to_open(path: str | os.PathLike, kind: str, what: str) -> str:
    """What to do with ``path``, which is ``kind`` (:func:`file_kind`), to get ``what`` (``'the CSV inside'``)."""
    quoted = shlex.quote(os.fspath(path))
    if kind.startswith(WORKBOOK):
        return "open it in Excel or LibreOffice and save it as CSV (UTF-8), then pass that file"
    if kind == "one part of a split archive":
        return (f"put all its parts in one folder and extract them together (e.g. `7z x {quoted}`), then pass "
                f"{what}")
    packed = {"a gzip archive": "gunzip -k", "an xz archive": "unxz -k", "a bzip2 archive": "bunzip2 -k"}
    command = {"a zip archive": "unzip", "a 7-Zip archive": "7z x", "a RAR archive": "unrar x",
               **({} if re.search(r"\.(tar|tgz|tbz2?|txz)\b", quoted) else packed)}.get(kind, "tar -xf")
    return f"extract it first (e.g. `{command} {quoted}`), then pass {what}"


def not_a_folder(path: str | os.PathLike, fix: str, option: str = "--images") -> str:
    """Why ``path`` is no folder and what to do, as the end of a sentence: an archive to extract (and how), or
    ``fix`` after "does not exist" (naming an archive beside it, ``train.zip`` for ``train``) or "is a file"."""
    path = os.fspath(path)
    kind = file_kind(path) if os.path.isfile(path) else None
    if kind is not None:
        return f"is {kind}, not a folder: {how_to_open(path, kind, f'the folder it holds via {option}')}"
    if os.path.exists(path):
        return f"is a file, not a folder; {fix}"
    packed = next((path.rstrip("/\\") + ext for ext in (".zip", ".7z", ".rar", ".tar", ".tar.gz", ".tgz", ".zip.001")
                   if os.path.isfile(path.rstrip("/\\") + ext)), None)
    if packed is not None:
        return f"does not exist, but {packed} does: extract it first, then pass the folder it holds via {option}"
    return f"does not exist; {fix}"
