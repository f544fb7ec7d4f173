"""``--from-file``: the list of images ``predict`` and ``explain`` read, one path per line.

A labels file given instead (a Kaggle CSV, DDR's ``<name> <grade>`` lines) is refused with the shell command that
makes a worklist of it, with the images' real folder and extension where they can be found.

Example:
    >>> read_list(Path("worklist.txt"))  # doctest: +SKIP
    ['/data/eyes/10_left.jpeg', '/data/eyes/10_right.jpeg']
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import sys
from collections import Counter
from pathlib import Path

from members.data.labels import EXTENSIONS
from members.infra.errors import UserError


def read_list(from_file: Path | None, workdir: Path | None = None) -> list[str]:
    """The image paths of a ``--from-file`` list: one per line (``-``: stdin); blank and ``#`` lines skipped, and a
    first line that names the column (:data:`HEADERS`, any case) when no file of that name exists, said on stderr;
    a relative path is taken relative to the list file's folder. A labels file given instead (a CSV, or DDR's
    ``<name> <grade>`` lines) is refused with the command that makes a worklist of it (``workdir``: where the
    images' extension and folder are looked up)."""
    if from_file is None:
        return []
    if str(from_file) == "-":
        text, base = sys.stdin.read().removeprefix("\ufeff"), Path.cwd()
    else:
        try:
            text, base = from_file.read_text(encoding="utf-8-sig"), from_file.resolve().parent  # Notepad's BOM
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"--from-file {from_file} cannot be read ({getattr(exc, 'strerror', None) or exc}); pass a "
                            "UTF-8 text file with one image path per line, or - for stdin.") from None
    if "\0" in text:  # no path holds a NUL byte (realpath raised a traceback on one)
        line = text[:text.index("\0")].count("\n") + 1
        raise UserError(f"--from-file {from_file} holds a NUL byte (line {line}): it is not a text list of paths; "
                        "pass a UTF-8 text file with one image path per line.")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    # folders resolved as the OS resolves them ('..' after a linked folder), the file's own name kept as listed
    # (a row named after a link's target read as another file)
    paths = [os.path.join(os.path.realpath(os.path.dirname(full)), os.path.basename(full))
             for full in (str(Path(line) if Path(line).is_absolute() else base / line) for line in lines)]
    if lines and _is_header(lines[0]) and not os.path.lexists(paths[0]):
        print(f"Note: the first line of --from-file {from_file}, {lines[0]!r}, is taken as a column header and skipped "
              "(no file of that name exists).", file=sys.stderr)
        lines, paths = lines[1:], paths[1:]
    if not lines or Path(paths[0]).exists():
        return paths
    sep = next((s for s in (",", ";", "\t") if s in lines[0]), None)
    if sep is not None:
        name = lines[1].split(sep)[0].strip().strip('"') if len(lines) > 1 else ""
        cut = "cut -d, -f1" if sep == "," else ("cut -f1" if sep == "\t" else "cut -d';' -f1")
        raise UserError(f"--from-file {from_file} looks like a CSV (its first line is {lines[0][:60]!r}), but it takes "
                        "one image path per line (absolute, or relative to the list file); write the image column "
                        f"alone with the images folder in front, e.g. `tail -n +2 {shlex.quote(str(from_file))} | "
                        f"{cut} | {_worklist_sed(name, base, workdir)}.")
    if all(re.fullmatch(r"\S+ +[+-]?\d+", line) for line in lines) and not any(os.path.exists(p) for p in paths):
        name = lines[0].split()[0]  # DDR's test.txt: '007-0004-000.jpg 0', no header
        raise UserError(f"--from-file {from_file} looks like a labels list (its first line {lines[0][:60]!r} is a name "
                        "and a grade), but it takes one image path per line (absolute, or relative to the list "
                        "file); write the names alone with the images folder in front, e.g. `cut -d' ' -f1 "
                        f"{shlex.quote(str(from_file))} | {_worklist_sed(name, base, workdir)}.")
    return paths


HEADERS = frozenset({"path", "paths", "file", "files", "filename", "filenames", "file_name", "filepath", "file_path",
                     "image", "images", "image_path", "imagepath", "image_name", "image_file", "name"})
"""A worklist's first line that names its column, not an image (compared ignoring case, quotes and a BOM)."""


def _is_header(line: str) -> bool:
    """Whether ``line`` is one of :data:`HEADERS` (``Path``, ``"filename"``, ``image path``)."""
    return line.strip().strip("\"'").strip().casefold().replace(" ", "_").replace("-", "_") in HEADERS


def _worklist_sed(name: str, base: Path, workdir: Path | None) -> str:
    """The ``sed`` that turns a labels file's image names (``name`` the first) into paths, then ``>
    worklist.txt``: the folder ``name`` is found in (else a placeholder) in front, and, for a name without an
    extension, that file's extension after (else the most common one of the workdir's ``split.csv``, else .jpeg,
    said to be a guess)."""
    found = _find_listed(name, base, workdir) if name else None
    folder = f"{found[0]}/" if found else "/path/to/images/"
    if not name or _has_extension(name):
        return f"sed 's|^|{folder}|' > worklist.txt`"
    ext = os.path.splitext(found[1])[1] if found else _split_suffix(workdir)
    guess = "" if ext else " (the names carry no extension: put your images' one for .jpeg)"
    return f"sed 's|^|{folder}|; s|$|{ext or '.jpeg'}|' > worklist.txt`{guess}"


def _has_extension(name: str) -> bool:
    """Whether a listed image name ends in an extension ('.jpg', '.dcm'; not the '.113619' of a DICOM UID)."""
    suffix = os.path.splitext(name)[1]
    return len(suffix) > 1 and not suffix[1:].isdigit()


def _find_listed(name: str, base: Path, workdir: Path | None) -> tuple[str, str] | None:
    """``(folder, file name)`` of a labels file's ``name`` on disk (a bare name with any image extension): in the
    list's folder, the workdir's images folder, or a folder right under either (Kaggle's ``train_images/``, DDR's
    ``test/``); None when it is in none of them."""
    names = [name] if _has_extension(name) else [name + e for ext in EXTENSIONS for e in (ext, ext.upper())]
    roots = [base]
    if workdir is not None:
        try:
            roots.append(Path(str(json.loads((workdir / "dataset.json").read_text(encoding="utf-8"))["image_root"])))
        except (OSError, ValueError, KeyError, TypeError):
            pass
    for root in roots:
        try:
            subs = sorted(e.path for e in os.scandir(root) if not e.name.startswith(".") and e.is_dir())
        except OSError:
            subs = []
        for folder in [str(root), *subs[:100]]:
            for n in names:
                if os.path.isfile(os.path.join(folder, n)):
                    return os.path.realpath(folder), n
    return None


def _split_suffix(workdir: Path | None) -> str:
    """The most common extension of the workdir's ``split.csv`` paths ("" without one)."""
    if workdir is None:
        return ""
    try:
        with open(workdir / "split.csv", encoding="utf-8", newline="") as f:
            suffixes = Counter(os.path.splitext(row.get("path") or "")[1] for row in csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error):
        return ""
    suffixes.pop("", None)
    return suffixes.most_common(1)[0][0] if suffixes else ""
