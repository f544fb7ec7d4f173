"""Read a labels CSV and check every row: its label, its image name and its file.

Problems with single rows are not fatal: the row is dropped with one of the ``REASON_*``
strings below and reported. Problems with the file as a whole (missing, not CSV, wrong
columns, no rows) raise :class:`UserError`. Decode checks run in a small thread pool,
with a rich progress bar on stderr for large sets.
"""

from __future__ import annotations

import csv
import io
import os
import re
import sys
import unicodedata
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from members.data.classes import MISSING_LABELS
from members.infra.archives import file_kind, how_to_open
from members.infra.csvsafe import is_utf8
from members.infra.errors import UserError

REASON_NO_NAME = "image name is empty"
REASON_NO_LABEL = "label is empty"
REASON_MISSING_LABEL = "label is a missing-value marker (NaN, NA, N/A, null, None, ?, -): no label"
REASON_BAD_LABEL = "label is not a non-negative integer"
REASON_LABEL_RANGE = "label is too large for a class index (at most 999)"
REASON_BAD_SPLIT = "split is not train, val or test (or training, valid, validation, testing)"
REASON_DUPLICATE = "image listed twice (kept the first row)"
REASON_CONFLICT = "image listed with conflicting labels (all its rows dropped)"
REASON_COPY_CONFLICT = "byte-identical to another image that has another label (every copy dropped)"
REASON_OUTSIDE = "image name points outside the images folder"
REASON_MISSING = "image file not found"
REASON_EMPTY = "image file is empty (0 bytes)"
REASON_UNDECODABLE = "image file does not decode (truncated or not an image)"
REASON_FORMAT = "image format TensorFlow misreads (a palette or compressed BMP; convert it to PNG or JPEG)"
REASON_ANIMATED = "image is an animated WebP, which TensorFlow cannot decode; save one frame as PNG or JPEG"
REASON_FLAT = "image is one flat colour (a black, white or blank frame, or a 1-pixel image): nothing to grade"
FLAT_STD = 2.0
"""Grey levels: an image whose pixels vary less than this in every colour (standard deviation) is flat."""
REASON_TOO_LARGE = "image too large to decode safely (PIL decompression-bomb limit)"
REASON_LOOP = "image file is a symlink loop (or a chain of links too long to follow)"
REASON_BROKEN_LINK = "image file is a symbolic link to a file that does not exist (moved or deleted?)"
REASON_AMBIGUOUS = "image name is ambiguous: several files match it (another extension or case); name it exactly"
REASON_AMBIGUOUS_FOLDERS = "image name is in several sub-folders"
"""The start of the reason for a name found as different files in several sub-folders; the reason names them
(:func:`ambiguous_folders`). Byte-identical copies are no ambiguity: the first is read, with a note."""
REASON_NOT_UTF8 = ("image file name is not valid UTF-8 (written in another system's encoding, e.g. a Windows zip); "
                   "rename the file")
REASON_FOREIGN = ("image name is an absolute path that does not exist here, and no file under the images folder "
                  "matches its end (a path from another machine?)")
REASON_SAME_FILE = "image is the same file as another listed image (a link or another spelling; kept the first)"

# What tf.io.decode_image(channels=3, expand_animations=False) reads (MPO is a camera JPEG); the
# pipeline reads every other format Pillow decodes with Pillow (members/data/pillow_image.py).
TF_FORMATS = frozenset({"JPEG", "MPO", "PNG", "GIF", "BMP", "WEBP"})
# The extensions an image name without one is matched against, and a class folder's images.
SYSTEM_FOLDERS = {"__macosx", "$recycle.bin", "system volume information", "@eadir"}
"""Folders an unzip or a file system adds (macOS resource forks, Windows' bin, Synology thumbnails): never classes,
never searched for images."""
EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pnm", ".jp2",
              ".jfif", ".jpe", ".heic", ".heif", ".avif")  # .jfif: the name Windows gives JPEGs; .heic: phones'
# photos (an AVIF Pillow reads is decoded by Pillow; the rest is dropped by check_image, saying to convert them)

_FOREIGN = re.compile(r"^(/|\\\\|[A-Za-z]:[\\/])")  # /…, \\server\…, C:\… or C:/…
_INT = re.compile(r"^\+?\d+(\.0*)?$")
_SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                "test": "test", "testing": "test"}
PROGRESS_MIN_ROWS = 200


@dataclass(frozen=True)
class CheckedRows:
    """The outcome of checking a labels CSV.

    Attributes:
        kept: columns ``row, image, path, label`` (+ ``split`` when the CSV has one); ``path``
            is relative to the images folder, POSIX style; in CSV order.
        dropped: columns ``row, image, label, reason``; ``row`` is the CSV line number.
        has_split: whether the CSV had a split column.
        identical: sets of byte-identical kept rows (indices into ``kept``), each kept in one split.
    """

    kept: pd.DataFrame
    dropped: pd.DataFrame
    has_split: bool
    identical: list[list[int]] = field(default_factory=list)  # sets of byte-identical kept rows (indices)
    notes: list[str] = field(default_factory=list)  # names read otherwise than written (NameResolver.notes)


def _key(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()


class NameResolver:
    """Find image files under one folder by name, with or without extension, in any case.

    Each folder is listed (and its real path resolved) once, so resolving thousands of names
    stays fast. A name that leaves the folder (``../x``, an absolute path elsewhere, a
    symlink to outside) is refused.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = os.path.realpath(root)
        self._prefix = self.root.rstrip(os.sep) + os.sep
        self._folders: dict[str, tuple[str, set[str], dict[str, list[str]], set[str]]] = {}
        self.loops: set[str] = set()  # symlinks that cannot be followed (loops, links to nothing), full paths
        self._tree: dict | None = None  # sub-folders of the root, listed on the first name not found at its place
        self._where: dict[str, list[str]] = {}  # with _tree: a case-folded file name -> the sub-folders holding it
        self.elsewhere: list[tuple[str, str]] = []  # (name, path found in a sub-folder)
        self.backslashed = 0  # names read with \ as /
        self.reextended: list[tuple[str, str]] = []  # (name, file with another image extension)
        self.foreign: list[tuple[str, str]] = []  # (another machine's absolute path, the file its end names)
        self.copies: dict[tuple[str, ...], int] = {}  # sub-folders holding a name as byte-identical files -> names

    def _inside(self, real: str) -> bool:
        return real == self.root or real.startswith(self._prefix)

    def _folder(self, folder: str) -> tuple[str, set[str], dict[str, list[str]], set[str]]:
        """(real path, file names, case-folded name -> names, names that are symlinks); loops go to ``self.loops``."""
        if folder not in self._folders:
            files, loops = _list_files(folder)
            folded: dict[str, list[str]] = {}
            for name, _ in files + [(n, True) for n in loops]:
                folded.setdefault(_key(name), []).append(name)
            links = {name for name, link in files if link} | loops
            self.loops |= {os.path.join(folder, n) for n in loops}
            self._folders[folder] = (os.path.realpath(folder), {n for n, _ in files} | loops, folded, links)
        return self._folders[folder]

    def resolve(self, name: str) -> tuple[str | None, str | None]:
        """``(path relative to the root, POSIX style, None)`` or ``(None, reason)``.

        A name not found where it points is looked for again with ``\\`` read as ``/`` (a path
        written on Windows) and, for a bare file name, in the sub-folders of the root, where it
        must name exactly one file (EyePACS delivered in parts, ``images/part1/…``,
        ``images/part2/…``; a name found as different files in two sub-folders is ambiguous, as byte-identical
        ones it is read from the first, HAM10000's ``ham10000_images_part_1/`` copy of ``HAM10000_images_part_1/``).
        """
        for other_ext in (False, True):  # a file under another extension only when no exact name exists anywhere
            found, reason = self._resolve(name, other_ext)
            if reason == REASON_MISSING and "\\" in name and os.sep == "/":
                found, reason = self._resolve(name.replace("\\", "/"), other_ext)
                self.backslashed += reason is None
                name = name.replace("\\", "/")
            if reason == REASON_MISSING and "/" not in name.strip("/"):
                found, reason = self._in_subfolders(name.strip("/"), other_ext)
                if found is not None:
                    self.elsewhere.append((name, found))
            if reason != REASON_MISSING:
                break
        here = name.startswith("/") and self._inside(os.path.realpath(os.path.dirname(name)))
        if found is None and _FOREIGN.match(name) and not os.path.exists(name) and not here:
            found, reason = self._by_its_end(name)  # (a missing file of this very folder is just missing)
        if found is not None:
            self._note_extension(name, found)
        return found, reason

    def _by_its_end(self, name: str) -> tuple[str | None, str | None]:
        """An absolute path of another machine (Colab's ``/content/drive/…``, ``C:\\Users\\…``) matched by its
        longest end that names a file under the root (``train_images/x.png``, else ``x.png`` anywhere below)."""
        parts = [p for p in re.split(r"[\\/]+", name) if p and not re.fullmatch(r"[A-Za-z]:", p)]
        for i in range(1, len(parts)):
            tail = "/".join(parts[i:])
            found, reason = self._resolve(tail)
            if found is None and i == len(parts) - 1:
                found, reason = self._in_subfolders(tail)
            if found is not None:
                self.foreign.append((name, found))
                return found, None
            if reason == REASON_AMBIGUOUS or (reason or "").startswith(REASON_AMBIGUOUS_FOLDERS):
                return None, reason
        return None, REASON_FOREIGN

    def _note_extension(self, name: str, found: str) -> None:
        """Count a name whose extension is another than its file's (``x.JPG`` read as ``x.png``)."""
        ext = os.path.splitext(name)[1].casefold()
        if ext in EXTENSIONS and os.path.splitext(found)[1].casefold() != ext:
            self.reextended.append((name, found))

    def notes(self) -> list[str]:
        """What :meth:`resolve` read otherwise than written, for prepare's output."""
        out = []
        if self.backslashed:
            out.append(f"Note: {self.backslashed} image names were Windows paths (with \\); they were read with / instead.")
        if self.reextended:
            name, found = self.reextended[0]
            out.append(f"Note: {len(self.reextended)} image names named a file with another extension, which was not "
                       f"there; each matched the one file of that name with another image extension (e.g. {name!r} → "
                       f"{found}: converted after labelling?); check that they are the same pictures.")
        if self.foreign:
            name, found = self.foreign[0]
            out.append(f"Note: {len(self.foreign)} image names were absolute paths that do not exist here (another "
                       f"machine's?); each was matched by its end inside {self.root} (e.g. {name!r} → {found}).")
        if self.elsewhere:
            name, found = self.elsewhere[0]
            out.append(f"Note: {len(self.elsewhere)} image names were not in {self.root} itself but each matched one file "
                       f"in its sub-folders (e.g. {name!r} → {found}); name the sub-folder in the labels file if a "
                       "name could mean another image.")
        if self.copies:
            copies = "; ".join(f"{', '.join(others)} {'holds' if len(others) == 1 else 'hold'} copies of {first}"
                               for first, *others in list(self.copies)[:3])
            more = " …" if len(self.copies) > 3 else ""
            out.append(f"Note: {sum(self.copies.values())} image names are in several sub-folders of {self.root} as "
                       f"byte-identical files ({copies}{more}); each was read from the first.")
        return out

    def _in_subfolders(self, name: str, other_ext: bool = False) -> tuple[str | None, str | None]:
        if self._tree is None:
            self._tree = {}
            for folder, dirs, files in os.walk(self.root):
                if folder != self.root and "dataset.json" in files:  # a workdir inside the images: not images
                    dirs[:] = []
                    continue
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d.casefold() not in SYSTEM_FOLDERS)
                if folder != self.root:
                    self._tree[folder] = self._folder(folder)
            self._where = {}  # case-folded file name -> the sub-folders holding it, in the tree's order
            for folder, (_, _, folded, _) in self._tree.items():
                for key in folded:
                    self._where.setdefault(key, []).append(folder)
        stem = os.path.splitext(name)[0]
        keys = [_key(name), *(_key(name + ext) for ext in EXTENSIONS), *(_key(stem + ext) for ext in EXTENSIONS)]
        order = {folder: i for i, folder in enumerate(self._tree)}
        near = sorted({f for key in keys for f in self._where.get(key, ())}, key=order.__getitem__)
        hits = []
        for folder in near:  # only the folders holding one of the names _match may take: one lookup, not a scan
            _, names, folded, _ = self._tree[folder]
            found, reason = _match(name, names, folded, other_ext)
            if reason == REASON_AMBIGUOUS:
                return None, REASON_AMBIGUOUS
            if found is not None:
                hits.append(os.path.relpath(os.path.join(folder, found), self.root))
        if len(hits) > 1 and not _same_bytes([os.path.join(self.root, h) for h in hits]):
            return None, ambiguous_folders([os.path.dirname(h) for h in hits])
        if not hits:
            return None, REASON_MISSING
        if len(hits) > 1:  # HAM10000 from Kaggle: HAM10000_images_part_1/ and its copy ham10000_images_part_1/
            folders = tuple(Path(os.path.dirname(h)).as_posix() for h in hits)
            self.copies[folders] = self.copies.get(folders, 0) + 1
        return self._resolve(hits[0])

    def _resolve(self, name: str, other_ext: bool = False) -> tuple[str | None, str | None]:
        folder, base = os.path.split(os.path.normpath(os.path.join(self.root, name)))
        real_folder, names, folded, links = self._folder(folder)
        if not self._inside(real_folder):
            return None, REASON_OUTSIDE
        found, reason = _match(base, names, folded, other_ext)
        if found is None:
            return None, reason
        if os.path.join(folder, found) in self.loops:  # a loop, or a link whose target is gone
            return None, REASON_BROKEN_LINK if _dangling(os.path.join(folder, found)) else REASON_LOOP
        path = os.path.join(folder, found)
        real = os.path.realpath(path) if found in links else os.path.join(real_folder, found)
        if not self._inside(real):
            return None, REASON_OUTSIDE
        rel = os.path.relpath(path, self.root)
        return Path(rel if not rel.startswith("..") else os.path.relpath(real, self.root)).as_posix(), None


def ambiguous_folders(folders: Sequence[str]) -> str:
    """The reason for a name found as different files in ``folders`` (relative to the images folder), naming them."""
    shown = ", ".join(Path(f).as_posix() or "." for f in folders[:3]) + (" …" if len(folders) > 3 else "")
    return (f"{REASON_AMBIGUOUS_FOLDERS} ({shown}) as different files; name it with its sub-folder in the labels "
            "file, or remove the folder that does not belong")


def _same_bytes(paths: Sequence[str]) -> bool:
    """Whether the files ``paths`` hold the same bytes: sizes first, then the contents of same-sized files only."""
    import filecmp

    try:
        if len({os.path.getsize(p) for p in paths}) > 1:
            return False
        return all(filecmp.cmp(paths[0], p, shallow=False) for p in paths[1:])
    except OSError:
        return False


def _dangling(path: str) -> bool:
    """Whether ``path`` is a symbolic link whose target does not exist (not a loop of links)."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return False


def _list_files(folder: str) -> tuple[list[tuple[str, bool]], set[str]]:
    """``([(file name, is a symlink)], {names of links that cannot be followed: loops, links to nothing})``: one bad
    entry never hides the others."""
    files, loops = [], set()
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                try:
                    if entry.is_file():
                        files.append((entry.name, entry.is_symlink()))
                    elif entry.is_symlink() and not os.path.exists(entry.path):  # a link to nothing: named as one
                        loops.add(entry.name)
                except OSError:  # ELOOP: a link to itself, or a chain too long
                    loops.add(entry.name)
    except OSError:
        pass
    return sorted(files), loops


def _match(base: str, names: set[str], folded: dict[str, list[str]],
           other_ext: bool = False) -> tuple[str | None, str | None]:
    """The one file ``base`` names: exactly, else ignoring case and the extension; two candidates are ambiguous.
    ``other_ext``: also the one file of ``base``'s stem with another image extension (the last resort of
    :meth:`NameResolver.resolve`)."""
    if base in names:
        return base, None
    candidates: list[str] = []
    for key in [_key(base)] + [_key(base + ext) for ext in EXTENSIONS]:
        candidates += [n for n in folded.get(key, []) if n not in candidates]
    stem, ext = os.path.splitext(base)
    if other_ext and not candidates and ext.casefold() in EXTENSIONS:  # x.JPG listed, x.png on disk (converted)
        candidates = [n for other in EXTENSIONS for n in folded.get(_key(stem + other), [])]
        candidates = list(dict.fromkeys(candidates))
    if len(candidates) > 1:
        return None, REASON_AMBIGUOUS
    return (candidates[0], None) if candidates else (None, REASON_MISSING)


def _bmp_decodable(path: str | os.PathLike) -> bool:
    """TensorFlow reads BMPs with a 40+ byte header, 8/24/32 bits per pixel, uncompressed."""
    with open(path, "rb") as f:
        head = f.read(34)
    if len(head) < 34 or int.from_bytes(head[14:18], "little") < 40:
        return False
    bits, compression = int.from_bytes(head[28:30], "little"), int.from_bytes(head[30:34], "little")
    return bits in (8, 24, 32) and compression in (0, 3)


def check_image(path: str | os.PathLike) -> str | None:
    """None when the pipeline will decode the file, else the reason it will not.

    Opens it with PIL, checks the format, and decodes it fully to :func:`members.data.thumbnail.small`'s picture;
    JPEGs decode at the smallest scale still 128 px (``Image.draft``, up to 1/8), which still reads every byte, so
    big photos verify fast. A format TensorFlow cannot decode (TIFF, PPM, JPEG 2000, 16-bit scans) is decoded as the
    pipeline decodes it, by :func:`members.data.pillow_image.to_rgb8`. An image of one flat colour
    (:func:`members.data.thumbnail.is_flat` on that picture, ``predict``'s rule; a lens-cap frame, a 1-pixel file) is
    refused: it shows nothing its label could be learned from, and it would widen the range ``vote``'s input screen
    accepts. A PNG has its
    chunks checked as libpng, TensorFlow's decoder, checks them (:func:`members.data.integrity.png_damage`:
    Pillow skips the pixel data's CRC and pads a short stream). A JPEG whose data ends early (its last blocks decode
    as blank grey: :func:`members.data.thumbnail.glance`) is refused; ``predict`` does not grade it either.
    """
    from PIL import Image

    from members.data.integrity import REASON_DAMAGED_JPEG, REASON_DAMAGED_PNG, png_damage
    from members.data.pillow_image import REASON_HEIF, heif_file, tensorflow_decodes
    from members.data.thumbnail import glance, is_flat, spread

    try:
        if os.path.getsize(path) == 0:
            return REASON_EMPTY
        with open(path, "rb") as f:
            head = f.read(12)
        with Image.open(path) as im:
            if im.format == "WEBP" and int(getattr(im, "n_frames", 1)) > 1:  # predict refuses it too
                return REASON_ANIMATED
            if im.format == "PNG" and png_damage(path):  # damage Pillow reads past and libpng refuses; predict's check
                return REASON_DAMAGED_PNG
            if tensorflow_decodes(head):
                # TensorFlow ignores a BMP's palette: colour-palette BMPs would decode as grey indices.
                if im.format not in TF_FORMATS or (im.format == "BMP" and (im.mode == "P" or not _bmp_decodable(path))):
                    return REASON_FORMAT
            # decoded whole (a JPEG at a reduced scale), a format TensorFlow cannot as the pipeline decodes it (to_rgb8)
            picture, cut_short = glance(im)
    except Image.DecompressionBombError:
        return REASON_TOO_LARGE
    except Exception:  # noqa: BLE001 - UnidentifiedImageError, truncated data, broken chunks...
        return REASON_HEIF if heif_file(path) else REASON_UNDECODABLE  # a phone's HEIC: convert it, not "truncated"
    if is_flat(spread(picture[None]))[0]:  # a failed capture carries no label's evidence; predict's rule
        return REASON_FLAT
    if cut_short:  # libjpeg fills what it could not read with grey, and says so on stderr naming no file
        return REASON_DAMAGED_JPEG
    return None


def parse_label(text: str) -> int | None:
    """``"3"`` and ``"3.0"`` -> 3; anything else (``""``, ``"-1"``, ``"2.5"``, ``"abc"``) -> None."""
    text = text.strip()
    if not _INT.match(text):
        return None
    digits = text.lstrip("+").split(".")[0].lstrip("0") or "0"
    return int(digits) if len(digits) <= 4000 else 10**4000  # past int()'s digit limit: still "too large"


def label_in_range(label: int) -> bool:
    """Whether an integer label can be a class index (``0 <= label < MAX_CLASSES``)."""
    from members.infra.validate import MAX_CLASSES

    return 0 <= label < MAX_CLASSES


def find_column(header: list[str], wanted: str) -> int | None:
    """Index of ``wanted`` in the (stripped) header: exact name first, then ignoring case; spaces around
    ``wanted`` do not count (a name copied from a header cell with a trailing space still matches)."""
    wanted = wanted.strip()
    for names, key in ((header, wanted), ([h.casefold() for h in header], wanted.casefold())):
        if key in names:
            return names.index(key)
    return None


DELIMITERS = (",", ";", "\t", "|")


def header_delimiter(text: str) -> str:
    r"""The column separator of a CSV text: a comma, or the ``;``, tab or ``|`` its header uses more.

    Excel in many locales saves "CSV" with semicolons; TSV exports use tabs. The header line
    decides (its names hold no separator), so a decimal comma in a ``;`` file stays in its cell.

    Example:
        >>> header_delimiter("image;level\n1_left;0\n"), header_delimiter("image,level\n")
        (';', ',')
    """
    first = next((line for line in text.splitlines() if line.strip()), "")
    counts = {sep: first.count(sep) for sep in DELIMITERS}
    return max(DELIMITERS, key=lambda d: counts[d]) if any(counts.values()) else ","


_SEP_HINT = re.compile(r'^\s*"?sep=(.)"?[,;\t|]*\s*$', re.IGNORECASE)


def _excel_separator_hint(text: str) -> tuple[str, str | None]:
    r"""``text`` with an Excel separator hint (a first line ``sep=;``) blanked, and the separator it names.

    The line is blanked, not removed, so that the rows keep their line numbers.

        >>> _excel_separator_hint("sep=;\nimage;level\n")
        ('\nimage;level\n', ';')
    """
    first, newline, rest = text.partition("\n")
    match = _SEP_HINT.match(first)
    if match is None:
        return text, None
    return ("\r" if first.endswith("\r") else "") + newline + rest, match.group(1)


def _is_data_row(cells: list[str]) -> bool:
    """Whether a first line is a row, not a header: a name (an image file's, or a bare one such as EyePACS'
    ``10_left``), then an integer label where a header has a column name."""
    return len(cells) >= 2 and bool(cells[0].strip()) and parse_label(cells[1]) is not None


def parse_table(path: Path) -> tuple[list[str], int, list[tuple[int, list[str]]], str]:
    """A labels file's ``(header, its line number, [(line number, cells)], separator)``: a CSV with the separator its
    header (or an Excel ``sep=`` line) names, or headerless ``name grade`` lines (DDR; separator ``" "``); blank lines
    are skipped. :func:`read_labels_csv` and the group column (:mod:`members.data.grouping`) read it alike.

    Raises:
        UserError: not UTF-8 CSV text (an archive or a workbook, said so), or empty.
    """
    kind = file_kind(path)
    if kind is not None:  # a download's trainLabels.csv.zip, an Excel file: not a codec error
        raise UserError(f"Labels file {path} is {kind}, not a CSV text file: "
                        f"{how_to_open(path, kind, 'the CSV inside via --labels')}. Received: labels={path}")
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            text = f.read()
        text, hinted = _excel_separator_hint(text)
        first = next((line for line in text.splitlines() if line.strip()), "")
        if not any(sep in first for sep in DELIMITERS) and len(first.split()) >= 2:  # `name grade` lines (DDR)
            width = len(first.split())  # the last width-1 fields split off: a name may hold spaces
            lines = [(n, line.strip().rsplit(None, width - 1)) for n, line in enumerate(text.splitlines(), 1)
                     if line.strip()]
            (header_line, header), records, delimiter = lines[0], lines[1:], " "
        else:
            delimiter = hinted or header_delimiter(text)
            reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
            header = next((rec for rec in reader if any(cell.strip() for cell in rec)), None)
            header_line = reader.line_num
            records = [(reader.line_num, rec) for rec in reader if any(cell.strip() for cell in rec)]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"Labels file {path} is not a UTF-8 CSV text file ({exc}); save it as CSV (UTF-8) "
                        f"and try again. Received: labels={path}") from None
    if not header or not any(h.strip() for h in header):
        raise UserError(f"Labels file {path} is empty; expected a header such as `image,level` and one row per "
                        f"image. Received: labels={path}")
    return [h.strip() for h in header], header_line, records, delimiter


_DECIMAL_COMMA = re.compile(r"^\s*[+-]?\d+,\d+\s*$")


def _decimal_point(text: str, delimiter: str) -> str:
    """``2,0`` as ``2.0`` in a file whose separator is not the comma (Excel in many locales writes grades so)."""
    return text.replace(",", ".") if delimiter != "," and _DECIMAL_COMMA.match(text) else text


def read_labels_csv(path: str | os.PathLike, *, image_column: str, label_column: str,
                    split_column: str) -> pd.DataFrame:
    """Read the CSV into columns ``row, image, label_text`` (+ ``split_text``), all strings.

    UTF-8 with or without BOM, LF or CRLF. Blank lines are skipped; ``row`` is the line number. A first
    line ``sep=;`` (Excel's separator hint) is skipped, and its separator used.

    Raises:
        UserError: the file is missing, not UTF-8 CSV text, lacks a column, or has no rows.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Labels file {path} does not exist or is not a file; pass a CSV with one row per image "
                        f"via --labels. Received: labels={path}")
    header, header_line, records, delimiter = parse_table(path)
    header = [h.strip() for h in header]
    if _is_data_row(header) and find_column(header, image_column) is None:  # no header: image, label[, split]
        records = [(header_line, header), *records]
        third = len(header) > 2 and header[2].casefold() in _SPLIT_NAMES and split_column
        header = [image_column, label_column, *(f"column {i}" for i in range(3, len(header) + 1))]
        if third:
            header[2] = split_column
        print(f"Note: {path} has no header; its first column is read as the image names, its second as the labels"
              f"{' and its third as the split' if third else ''}.", file=sys.stderr)
    cols = {name: find_column(header, name) for name in (image_column, label_column)}
    missing = [name for name, idx in cols.items() if idx is None]
    if missing:
        hint = ""
        raise UserError(
            f"Labels file {path} has no column {' or '.join(map(repr, missing))}{hint}; its columns are "
            f"{', '.join(map(repr, header))}; name the ones to use with --image-column and --label-column. "
            f"Received: image_column={image_column!r}, label_column={label_column!r}"
        )
    for name in (image_column, label_column, split_column):
        same = [i + 1 for i, h in enumerate(header) if name and h.strip().casefold() == name.strip().casefold()]
        if len(same) > 1:  # which one is meant? the first was taken silently
            raise UserError(f"Labels file {path} has {len(same)} columns named {name!r} (columns "
                            f"{', '.join(map(str, same))}); keep one, or rename the others. Received: labels={path}")
    split_idx = find_column(header, split_column) if split_column else None
    if not records:
        raise UserError(f"Labels file {path} has a header but no rows; add one row per image. Received: labels={path}")

    def cell(rec: list[str], idx: int) -> str:
        return rec[idx].strip() if idx < len(rec) else ""

    data = {
        "row": [line for line, _ in records],
        "image": [cell(rec, cols[image_column]) for _, rec in records],
        "label_text": [_decimal_point(cell(rec, cols[label_column]), delimiter) for _, rec in records],
    }
    if split_idx is not None:
        data["split_text"] = [cell(rec, split_idx) for _, rec in records]
    return pd.DataFrame(data)


def _unlisted_note(names: Sequence[str], root: Path, found: list[str]) -> list[str]:
    """A note on the image files beside the listed ones (``names``; in the images folder and in each folder a row
    was found in) that no row names: a labels file for part of the set, or another set's, would go unnoticed."""
    bases = [_key(re.split(r"[\\/]", str(name))[-1]) for name in names]
    named = set(bases) | {os.path.splitext(base)[0] for base in bases}  # `x.png`, `x`, or a UID `1.2.840.10008`
    unlisted: list[Path] = []
    for folder in sorted({root} | {(root / rel).parent for rel in found}):
        files, _ = _list_files(str(folder))
        unlisted += [folder / name for name, _ in files if not name.startswith(".")
                     and os.path.splitext(name)[1].casefold() in EXTENSIONS
                     and _key(name) not in named and _key(os.path.splitext(name)[0]) not in named]
    if not unlisted:
        return []
    where = sorted({str(p.parent) for p in unlisted})
    return [f"Note: {len(unlisted)} image file(s) in {', '.join(where[:2])}{' …' if len(where) > 2 else ''} are in no "
            f"row of the labels file (e.g. {unlisted[0].name}), so they are not used; check that the labels file is "
            "the whole set's."]


def _first_problem(row, resolver: NameResolver, has_split: bool) -> tuple[str | None, int | None, str | None]:
    """(relative path, label, reason) for one row; reason is None when the row is fine so far."""
    if not row.image:
        return None, None, REASON_NO_NAME
    if not row.label_text:
        return None, None, REASON_NO_LABEL
    if row.label_text in MISSING_LABELS:  # left as it is by encode_labels: not a class (members.data.classes)
        return None, None, REASON_MISSING_LABEL
    label = parse_label(row.label_text)
    if label is None:
        return None, None, REASON_BAD_LABEL
    if not label_in_range(label):
        return None, None, REASON_LABEL_RANGE
    if has_split and row.split_text and row.split_text.casefold() not in _SPLIT_NAMES:  # empty: train
        return None, label, REASON_BAD_SPLIT
    rel, reason = resolver.resolve(row.image)
    if rel is not None and not is_utf8(rel):  # split.csv and every report are UTF-8 text
        return None, label, REASON_NOT_UTF8
    return rel, label, reason


def check_rows(table: pd.DataFrame, images_dir: str | os.PathLike, *, progress: bool = True,
               workers: int = 4, listed: Sequence[str] = ()) -> CheckedRows:
    """Check every row of :func:`read_labels_csv`'s table against the images folder.

    Args:
        table: the table read by :func:`read_labels_csv`.
        images_dir: the folder the image names are relative to.
        progress: show a progress bar on stderr for the decode checks of large sets.
        workers: threads for the decode checks.
        listed: image names of the labels file's other rows, left out before the check (``--exclude-label``):
            their files are no unlisted images.

    Returns:
        The kept and dropped rows.
    """
    root = Path(images_dir).resolve()
    resolver = NameResolver(root)
    has_split = "split_text" in table.columns
    dropped: list[tuple[int, str, str, str]] = []
    ok: list[tuple] = []
    for row in table.itertuples(index=False):
        rel, label, reason = _first_problem(row, resolver, has_split)
        if reason is not None:
            dropped.append((row.row, row.image, row.label_text, reason))
        else:
            split = _SPLIT_NAMES.get(row.split_text.casefold(), "train") if has_split else None
            ok.append((row.row, row.image, row.label_text, rel, label, split))

    ids = [file_identity(root / item[3]) for item in ok]  # a link and its target are one file
    labels_of: dict = {}  # same file (however spelled or linked) -> its labels
    for item, fid in zip(ok, ids):
        labels_of.setdefault(fid, set()).add(item[4])
    seen: dict = {}
    unique = []
    for item, fid in zip(ok, ids):
        reason = (REASON_CONFLICT if len(labels_of[fid]) > 1 else None if fid not in seen
                  else REASON_DUPLICATE if seen[fid] == item[3] else REASON_SAME_FILE)
        if reason is not None:
            dropped.append((*item[:3], reason))
        else:
            seen[fid] = item[3]
            unique.append(item)

    reasons = _decode_all([root / item[3] for item in unique], progress=progress, workers=workers)
    kept = [item for item, reason in zip(unique, reasons) if reason is None]
    dropped += [(*item[:3], reason) for item, reason in zip(unique, reasons) if reason is not None]
    from members.data.duplicates import identical_sets

    sets = identical_sets([root / item[3] for item in kept])  # kept, each set in one split (members.data.duplicates)
    clash = {i for group in sets if len({kept[j][4] for j in group}) > 1 for i in group}
    if clash:  # one photograph under two grades, as files of their own: dropped like one file listed twice
        dropped += [(*kept[i][:3], REASON_COPY_CONFLICT) for i in sorted(clash)]
        index = {old: new for new, old in enumerate(i for i in range(len(kept)) if i not in clash)}
        kept = [item for i, item in enumerate(kept) if i not in clash]
        sets = [[index[i] for i in group] for group in sets if not clash.intersection(group)]
    kept_df = pd.DataFrame(kept, columns=["row", "image", "label_text", "path", "label", "split"])
    kept_df = kept_df.drop(columns=["label_text"] + ([] if has_split else ["split"]))
    kept_df["label"] = kept_df["label"].astype("int64")
    dropped_df = pd.DataFrame(dropped, columns=["row", "image", "label", "reason"]).sort_values("row", kind="stable")
    notes = resolver.notes() + _unlisted_note([*table["image"], *listed], root, [item[3] for item in ok])
    empty = int((table["split_text"] == "").sum()) if has_split else 0
    if empty:
        notes.append(f"Note: {empty} rows have an empty split cell; they count as train (val and test, where the file "
                     "names none, are carved from train).")
    return CheckedRows(kept=kept_df, dropped=dropped_df.reset_index(drop=True), has_split=has_split,
                       identical=sets, notes=notes)


def file_identity(path: str | os.PathLike) -> tuple:
    """``(device, inode)`` of the file ``path`` leads to (links followed), or its real path where stat fails."""
    try:
        st = os.stat(path)
        return (st.st_dev, st.st_ino)
    except OSError:
        return (os.path.realpath(path),)


def _decode_all(paths: list[Path], *, progress: bool, workers: int, chunk: int = 32) -> list[str | None]:
    """:func:`check_image` over ``paths`` in a thread pool, in order, with an optional progress bar."""
    from rich.console import Console
    from rich.progress import Progress

    chunks = [paths[i:i + chunk] for i in range(0, len(paths), chunk)]
    out: list[str | None] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool, \
            Progress(console=Console(stderr=True), transient=True,
                     disable=not progress or len(paths) <= PROGRESS_MIN_ROWS) as bar:
        task = bar.add_task("Checking images", total=len(paths))
        for reasons in pool.map(lambda part: [check_image(p) for p in part], chunks):
            out.extend(reasons)
            bar.advance(task, len(reasons))
    return out
