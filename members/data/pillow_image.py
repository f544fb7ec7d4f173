"""Decode, with Pillow, the image formats TensorFlow cannot: TIFF, PPM/PGM, JPEG 2000, TGA, ...

Fundus sets come in more than JPEG and PNG: Messidor and DRIVE ship TIFF, STARE ships PPM,
and many scanners write 16-bit greyscale or RGB. TensorFlow's ``decode_image`` reads JPEG, PNG,
GIF, BMP and WebP only, so :func:`members.data.pipeline.decode_at` sends every other file here
(through ``tf.numpy_function``); ``prepare`` checks a file with the same :func:`to_rgb8`, so a
file it keeps is one the pipeline decodes, to the same pixels.

Only the first frame of a multi-page file is read. 16-bit samples keep their high byte, as
TensorFlow reads a 16-bit PNG, so one scan saved as PNG or as TIFF gives a member the same pixels
(a 12-bit scan stored in 16-bit words therefore looks dark: stretch it to 16 bits first).
"""

from __future__ import annotations

import io
import os

import numpy as np

HEIF_EXTENSIONS = (".heic", ".heif", ".hif", ".avif")
HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif", b"avis"})
"""The ``ftyp`` brands of HEIF files: HEIC (an iPhone's photos, many Android phones') and AVIF."""
REASON_HEIF = ("image is HEIC/AVIF (a phone camera's format), which is not supported here (Pillow cannot decode it): "
               "convert it to JPEG or PNG (e.g. `magick IMG_0001.HEIC IMG_0001.jpg`, or on a Mac "
               "`sips -s format jpeg IMG_0001.HEIC --out IMG_0001.jpg`)")

# The leading bytes by which TensorFlow's decode_image recognises its formats (WebP also needs
# "WEBP" at offset 8): any other file is Pillow's.
TF_MAGIC = {"JPEG": b"\xff\xd8\xff", "PNG": b"\x89PNG\r\n\x1a\n", "GIF": b"GIF", "BMP": b"BM"}
WEBP_MAGIC = (b"RIFF", b"WEBP")


def _scale_deep(array: np.ndarray) -> np.ndarray:
    """Deep samples to ``uint8``: integers by their high byte of 16 bits (``v >> 8``, as TensorFlow reads a
    16-bit PNG), floats in [0, 1] times 255 (other floats clipped to 0–255)."""
    if np.issubdtype(array.dtype, np.floating):
        values = np.nan_to_num(array.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        if values.size and values.max() <= 1.0:
            values = values * 255.0
        return np.clip(np.round(values), 0, 255).astype(np.uint8)
    return np.clip(array.astype(np.int64) >> 8, 0, 255).astype(np.uint8)


def to_rgb8(im) -> np.ndarray:
    """An open Pillow image (its first frame) as ``uint8`` RGB, shape (h, w, 3).

    Raises whatever Pillow raises for a file it cannot decode (truncated data, an unknown codec).
    """
    im.seek(0)
    mode = im.mode
    if mode in ("I", "F") or mode.startswith("I;16"):  # one deep channel: scale, then grey to RGB
        grey = _scale_deep(np.asarray(im))
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode.startswith("RGB"):
        array = np.asarray(im)
        if array.dtype != np.uint8:  # deep RGB samples
            return _scale_deep(array[:, :, :3])
        return np.ascontiguousarray(array[:, :, :3])  # an alpha channel is dropped, as decode_image drops it
    return np.asarray(im.convert("RGB"))


def decode_bytes(data: bytes) -> np.ndarray:
    """Encoded bytes of a file TensorFlow cannot decode to ``uint8`` RGB (h, w, 3), upright by its EXIF orientation."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return orient(to_rgb8(im), _orientation_of(im))


ORIENTATION_TAG = 0x0112  # EXIF Orientation: 1 upright; 2-8 mirrored and/or rotated, as cameras and phones write it


def _orientation_of(im) -> int:
    try:
        value = int(im.getexif().get(ORIENTATION_TAG, 1))
    except Exception:  # noqa: BLE001 - a broken EXIF block: take the pixels as stored
        return 1
    return value if 1 <= value <= 8 else 1


def jpeg_orientation(f) -> int:
    r"""The EXIF orientation (1-8; 1 when absent or unreadable) of the JPEG open in binary file ``f``.

    Walks the header's segments (a few reads and seeks, no pixels) to the ``Exif`` APP1 segment wherever
    it sits before the image data — after an ICC profile or other APPn segments too — and parses only it.

    Example:
        >>> jpeg_orientation(io.BytesIO(b"\xff\xd8\xff\xe0\x00\x04ab\xff\xda"))  # JFIF, then the image data
        1
    """
    from PIL import Image

    if f.read(2) != b"\xff\xd8":
        return 1
    while True:
        first = f.read(1)
        if first != b"\xff":
            return 1
        code = f.read(1)
        while code == b"\xff":  # fill bytes before a marker
            code = f.read(1)
        if not code or code[0] in (0xD9, 0xDA):  # end, or the pixels start
            return 1
        if code[0] == 0x01 or 0xD0 <= code[0] <= 0xD7:  # standalone markers: no length follows
            continue
        size = f.read(2)
        if len(size) < 2:
            return 1
        length = int.from_bytes(size, "big")
        if length < 2:
            return 1
        if code[0] == 0xE1:
            payload = f.read(length - 2)
            if payload.startswith(b"Exif\x00\x00"):
                try:
                    exif = Image.Exif()
                    exif.load(payload)
                    value = int(exif.get(ORIENTATION_TAG, 1))
                except Exception:  # noqa: BLE001 - a broken EXIF block: take the pixels as stored
                    return 1
                return value if 1 <= value <= 8 else 1
        else:
            f.seek(length - 2, os.SEEK_CUR)


def orient(pixels: np.ndarray, value: int) -> np.ndarray:
    """``pixels`` (h, w, c) turned upright for EXIF orientation ``value`` (what Pillow's ``exif_transpose`` does)."""
    turns = {1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
             5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, 3), 7: lambda a: np.rot90(a, 2).transpose(1, 0, 2),
             8: lambda a: np.rot90(a, 1)}
    return np.ascontiguousarray(turns.get(int(value), turns[1])(pixels))


def heif_file(path: str | os.PathLike) -> bool:
    r"""Whether ``path`` is a HEIC/HEIF or AVIF file: by its extension, or by the brands of its ``ftyp`` box (the
    major brand or a compatible one: ``heic``, ``heix``, ``mif1``, ``avif``, ...), whatever it is called.

    Example:
        >>> heif_head(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"), heif_head(b"\x00\x00\x00\x14ftypisom")
        (True, False)
    """
    if os.path.splitext(os.fspath(path))[1].casefold() in HEIF_EXTENSIONS:
        return True
    try:
        with open(path, "rb") as f:
            return heif_head(f.read(64))
    except OSError:
        return False


def heif_head(head: bytes) -> bool:
    """Whether a file's first bytes are a HEIF ``ftyp`` box (see :func:`heif_file`)."""
    if head[4:8] != b"ftyp":
        return False
    box = head[8:max(16, int.from_bytes(head[:4], "big"))]  # major brand, minor version, compatible brands
    return any(box[i:i + 4] in HEIF_BRANDS for i in [0, *range(8, len(box) - 3, 4)])


def tensorflow_decodes(head: bytes) -> bool:
    """Whether ``decode_image`` recognises a file by its first 12 bytes (the test the pipeline makes in-graph)."""
    return any(head.startswith(m) for m in TF_MAGIC.values()) or (head[:4] == WEBP_MAGIC[0] and head[8:12] == WEBP_MAGIC[1])
