"""MedMNIST-style ``.npz`` files: download with checksum, validate, write as PNGs.

An NPZ holds ``{train,val,test}_images`` (``(n, h, w)`` gray or ``(n, h, w, 3)`` RGB,
uint8) and ``{train,val,test}_labels`` (``(n,)`` or ``(n, 1)`` ints). Its split is the
official one and is kept exactly.

Example:
    >>> path = fetch_medmnist("retinamnist", size=28)          # doctest: +SKIP
    >>> prepare_npz("work", path)                               # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from members.infra.atomic import atomic_write
from members.infra.errors import UserError
from members.data.split import SPLITS

MEDMNIST_URL = "https://zenodo.org/records/10519652/files/{name}{suffix}.npz?download=1"
SIZES = (28, 64, 128, 224)
# Published MD5s of the MedMNIST v3 files (record 10519652), from medmnist/info.py 3.0.2;
# the single-label 2-D sets only (chestmnist is multi-label, *mnist3d are volumes).
_MD5_TABLE = {  # 28, 64, 128, 224
    "pathmnist": ("a8b06965200029087d5bd730944a56c1", "55aa9c1e0525abe5a6b9d8343a507616",
                  "ac42d08fb904d92c244187169d1fd1d9", "2c51a510bcdc9cf8ddb2af93af1eadec"),
    "dermamnist": ("0744692d530f8e62ec473284d019b0c7", "b70a2f5635c6199aeaa28c31d7202e1f",
                   "2defd784463fa5243564e855ed717de1", "8974907d8e169bef5f5b96bc506ae45d"),
    "octmnist": ("c68d92d5b585d8d81f7112f81e2d0842", "e229e9440236b774d9f0dfef9d07bdaf",
                 "0a97e76651ace45c5d943ee3f65b63ae", "abc493b6d529d5de7569faaef2773ba3"),
    "pneumoniamnist": ("28209eda62fecd6e6a2d98b1501bb15f", "8f4eceb4ccffa70c672198ea285246c6",
                       "05b46931834c231683c68f40c47b2971", "d6a3c71de1b945ea11211b03746c1fe1"),
    "retinamnist": ("bd4c0672f1bba3e3a89f0e4e876791e4", "afda852cc34dcda56f86ad2b2457dbcc",
                    "e48e916a24454daf90583d4e6efb1a18", "eae7e3b6f3fcbda4ae613ebdcbe35348"),
    "breastmnist": ("750601b1f35ba3300ea97c75c52ff8f6", "742edef2a1fd1524b2efff4bd7ba9364",
                    "363e4b3f8d712e9b5de15470a2aaadf1", "b56378a6eefa9fed602bb16d192d4c8b"),
    "bloodmnist": ("7053d0359d879ad8a5505303e11de1dc", "2b94928a2ae4916078ca51e05b6b800b",
                   "adace1e0ed228fccda1f39692059dd4c", "b718ff6835fcbdb22ba9eacccd7b2601"),
    "tissuemnist": ("ebe78ee8b05294063de985d821c1c34b", "123ece2eba09d0aa5d698fda57103344",
                    "61b955355d7425a89687b06cca3ce0c2", "b077128c4a949f0a4eb01517f9037b9c"),
    "organamnist": ("68e3f8846a6bd62f0c9bf841c0d9eacc", "2dcccc29b88e6da5a01161ef20cda288",
                    "eeae80d0a227a8d099027e1b3cfd3b60", "50747347e05c87dd3aaf92c49f9f3170"),
    "organcmnist": ("b9ceb9546e10131b32923c5bbeaea2b1", "3ce34a8724ea6f548e6db4744d03b6a9",
                    "773c1f009daa3fe5d9a2a201b2a7ed94", "050f5e875dc056f6768abf94ec9995d1"),
    "organsmnist": ("9ab87b696fb54e2a387ebe992d6ed5f1", "53a6d115339d874c25e309a994ff46d3",
                    "ded0c5fa01a95dc4978b956f613e9b8e", "b354719e553fbbb2513d5533f52a4cb1"),
}
MEDMNIST_MD5: dict[tuple[str, int], str] = {
    (name, size): md5 for name, row in _MD5_TABLE.items() for size, md5 in zip(SIZES, row)
}
_NOT_SINGLE_LABEL = re.compile(r"^chestmnist$|3d$")


@dataclass(frozen=True)
class NpzSource:
    """A validated NPZ: its path, sha256, int64 labels per split and image shapes per split."""

    path: Path
    sha256: str
    labels: dict[str, np.ndarray]
    shapes: dict[str, tuple[int, ...]]


def _headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every array in an npz, read from the headers only."""
    out = {}
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if info.filename.endswith(".npy"):
                with zf.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    fmt = np.lib.format
                    read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
                    shape, _, dtype = read(f)
                out[info.filename[:-4]] = (tuple(shape), dtype)
    return out


def _corrupt(path: Path, exc: BaseException) -> UserError:
    return UserError(f"{path} is not a readable .npz archive ({exc}); pass a MedMNIST-style .npz "
                     f"(download it again if it was cut short). Received: npz={path}")


def _check_shapes(path: Path, split: str, headers: dict) -> tuple[int, ...]:
    (ishape, idtype), (lshape, ldtype) = headers[f"{split}_images"], headers[f"{split}_labels"]
    if idtype != np.uint8 or len(ishape) not in (3, 4) or (len(ishape) == 4 and ishape[3] not in (1, 3)):
        raise UserError(f"{split}_images in {path} must be uint8 with shape (n, h, w) or (n, h, w, 3); "
                        f"convert it with numpy first. Received: dtype={idtype}, shape={ishape}")
    if len(lshape) == 2 and lshape[1] > 1 and ldtype.kind in "biuf":
        raise UserError(f"{split}_labels in {path} have shape {lshape}: one column per class (one-hot), or several "
                        "labels per image; save one integer class per image instead (for one-hot labels: "
                        f"labels.argmax(axis=1)); multi-label sets are not supported. Received: dtype={ldtype}")
    if len(lshape) not in (1, 2) or (len(lshape) == 2 and lshape[1] != 1) or ldtype.kind not in "biuf":
        raise UserError(f"{split}_labels in {path} must hold one integer class per image, shape (n,) or (n, 1) "
                        f"(multi-label sets are not supported). Received: dtype={ldtype}, shape={lshape}")
    if any(side < 1 for side in ishape[1:3]):
        raise UserError(f"{split}_images in {path} are {ishape[1]}×{ishape[2]} pixels; an image needs at least one "
                        f"pixel a side: re-create the file. Received: {split}_images={ishape}")
    if ishape[0] != lshape[0] or ishape[0] == 0:
        raise UserError(f"{path} has {ishape[0]} {split} images and {lshape[0]} {split} labels; they must be "
                        f"equal and above zero. Received: {split}_images={ishape}, {split}_labels={lshape}")
    return ishape


def _label_values(path: Path, split: str, raw: np.ndarray) -> np.ndarray:
    """The labels as int64, refusing non-finite, negative, fractional or too large values (before any cast)."""
    from members.infra.validate import MAX_CLASSES

    values = raw.astype(np.float64) if raw.dtype.kind == "f" else raw
    bad = None
    if raw.dtype.kind == "f" and not np.all(np.isfinite(values)):
        bad = "finite"
    elif np.any(values < 0) or (raw.dtype.kind == "f" and np.any(values != np.round(values))):
        bad = "non-negative integers"
    elif len(values) and np.max(values) >= MAX_CLASSES:
        bad = f"class indices below {MAX_CLASSES}"
    if bad is not None:
        shown = np.unique(raw)[:10].tolist()
        raise UserError(f"{split}_labels in {path} must be {bad} (one class index 0..k-1 per image); re-create the "
                        f"file. Received: values={shown}")
    return values.astype(np.int64)


def read_npz(path: str | os.PathLike) -> NpzSource:
    """Validate an NPZ without loading its images.

    Raises:
        UserError: missing, not an npz, corrupt, missing keys, bad dtype/shape, length mismatch.
    """
    from members.infra.atomic import sha256_file

    path = Path(path)
    if not path.is_file():
        raise UserError(f"NPZ file {path} does not exist; pass an existing MedMNIST-style .npz. Received: npz={path}")
    try:
        headers = _headers(path)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise _corrupt(path, exc) from None
    missing = [f"{s}_{kind}" for s in SPLITS for kind in ("images", "labels") if f"{s}_{kind}" not in headers]
    if missing:
        raise UserError(f"{path} lacks the keys {', '.join(missing)}; an NPZ needs train/val/test _images and "
                        f"_labels. Received: keys={sorted(headers)}")
    shapes = {split: _check_shapes(path, split, headers) for split in SPLITS}
    labels = {}
    try:
        with np.load(path, allow_pickle=False) as data:
            for split in SPLITS:
                raw = data[f"{split}_labels"].reshape(-1)
                labels[split] = _label_values(path, split, raw)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise _corrupt(path, exc) from None
    return NpzSource(path=path.resolve(), sha256=sha256_file(path), labels=labels, shapes=shapes)


def _save_png(args: tuple[np.ndarray, Path]) -> None:
    from PIL import Image

    image, dest = args
    Image.fromarray(image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image).save(dest)


def write_pngs(source: NpzSource, dest: Path, *, progress: bool = True, workers: int = 4) -> None:
    """Write every image as ``dest/{split}_{i:05d}.png``; ``dest`` appears complete or not at all.

    The PNGs go to a temporary folder beside ``dest``, which then replaces ``dest``.
    """
    from rich.console import Console
    from rich.progress import Progress

    dest = Path(dest)
    tmp, old = dest.parent / f".{dest.name}.tmp-{os.getpid()}", dest.parent / f".{dest.name}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    total = sum(shape[0] for shape in source.shapes.values())
    try:
        with np.load(source.path, allow_pickle=False) as data, ThreadPoolExecutor(max(1, workers)) as pool, \
                Progress(console=Console(stderr=True), transient=True, disable=not progress or total <= 200) as bar:
            task = bar.add_task("Writing PNGs", total=total)
            for split in SPLITS:
                try:
                    images = data[f"{split}_images"]
                except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
                    raise _corrupt(source.path, exc) from None
                jobs = ((img, tmp / f"{split}_{i:05d}.png") for i, img in enumerate(images))
                for _ in pool.map(_save_png, jobs):
                    bar.advance(task)
        if dest.exists():
            os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(url: str, target: Path, expected: str | None) -> None:
    """Stream ``url`` into ``target`` atomically, refusing it when its MD5 is not ``expected``."""
    import urllib.error
    import urllib.request

    from rich.console import Console
    from rich.progress import DownloadColumn, Progress

    def write(f) -> None:
        digest = hashlib.md5()
        try:
            with urllib.request.urlopen(url, timeout=60) as resp, \
                    Progress(*Progress.get_default_columns(), DownloadColumn(), console=Console(stderr=True),
                             transient=True) as bar:
                size = int(resp.headers.get("Content-Length") or 0) or None
                task = bar.add_task(f"Downloading {target.name}", total=size)
                for chunk in iter(lambda: resp.read(1 << 20), b""):
                    f.write(chunk)
                    digest.update(chunk)
                    bar.advance(task, len(chunk))
        except urllib.error.HTTPError as exc:
            raise UserError(f"Could not download {url}: the server answered {exc.code} {exc.reason}; check the "
                            f"name and size, or download it by hand and pass --npz FILE.") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise UserError(f"Could not download {url} ({reason}); you are offline? download it by hand and "
                            f"pass --npz FILE.") from None
        if expected is not None and digest.hexdigest() != expected:
            raise UserError(f"The download of {target.name} from {url} has MD5 {digest.hexdigest()}, expected "
                            f"{expected}; it was not kept; try again, or download it by hand and pass --npz FILE.")

    atomic_write(target, write)


def fetch_medmnist(name: str, *, size: int = 28, cache_dir: Path | None = None, url: str | None = None) -> Path:
    """The path of a MedMNIST ``.npz``, downloaded once into a cache and checked against its MD5.

    Args:
        name: the data set, e.g. ``"retinamnist"`` (any case).
        size: image side, one of 28, 64, 128, 224.
        cache_dir: where files are kept; default ``~/.cache/cnn-ensemble/medmnist``.
        url: download from here instead of the official Zenodo record.

    Returns:
        The cached file; a cached file with the published MD5 is used without network.

    Raises:
        UserError: unknown size, unsupported set, wrong MD5 (naming the file), or no network.
    """
    key = name.strip().lower()
    if not re.fullmatch(r"[a-z0-9]+", key) or _NOT_SINGLE_LABEL.search(key):
        raise UserError(f"MedMNIST set {name!r} is not supported; pass a single-label 2-D set such as "
                        f"{', '.join(sorted(_MD5_TABLE))}. Received: name={name!r}")
    if size not in SIZES:
        raise UserError(f"MedMNIST image size must be one of {', '.join(map(str, SIZES))}. Received: size={size}")
    suffix = "" if size == 28 else f"_{size}"
    default = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "cnn-ensemble" / "medmnist"
    base = Path(cache_dir) if cache_dir is not None else default
    target = base.expanduser() / f"{key}{suffix}.npz"
    expected = MEDMNIST_MD5.get((key, size))
    if target.is_file():
        if expected is not None and (got := _md5(target)) != expected:
            raise UserError(f"Cached file {target} has MD5 {got}, expected {expected}; it is corrupt or not the "
                            f"official file: delete it and run again, or pass your own copy with --npz FILE.")
    else:
        _download(url or MEDMNIST_URL.format(name=key, suffix=suffix), target, expected)
    if expected is None:
        warnings.warn(f"No published MD5 is known for {target.name}; its integrity was not verified.", stacklevel=2)
    return target
