"""Damage that Pillow reads past but TensorFlow's decoders do not: a PNG's broken chunks, a JPEG's cut scan.

Pillow skips the checksum of a PNG's pixel data (IDAT) and pads a short pixel stream with
black rows; libpng, inside ``tf.io.decode_image``, refuses both ("Invalid PNG data"). So a
file ``prepare`` verified with Pillow alone could stop every training run. :func:`png_damage`
walks a PNG's chunks as libpng does — each critical chunk's CRC, one unbroken run of IDAT
chunks holding a complete zlib stream (its Adler-32 checked) with at least the bytes the
header's size needs, and an IEND chunk — without keeping the pixels (a few MiB at a time).

A JPEG whose scan data is damaged (a run of bytes zeroed or lost) decodes without error in
both libraries; libjpeg prints ``Corrupt JPEG data: premature end of data segment`` and fills
the blocks it could not read with zero coefficients, which decode to exactly mid-grey
(128, 128, 128). :func:`ends_early` finds that grey from a point inside a row of blocks to the end of the scan;
a picture padded with that grey (rows at the bottom, a strip at the right) is told apart and kept. (The data
ending exactly at a row's start reads as a grey band and is not found.)
"""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np

REASON_DAMAGED_PNG = ("image file is a damaged PNG (a chunk's checksum fails, its pixel data is cut short, or its end "
                      "is missing), which TensorFlow cannot decode; export or copy it again")
REASON_DAMAGED_JPEG = ("image file is a damaged JPEG: its data ends early, so its last blocks decode as blank grey "
                       "(libjpeg warns 'Corrupt JPEG data: premature end of data segment'); export or copy it again")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CRITICAL = {b"IHDR", b"PLTE", b"IDAT", b"IEND"}
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_PIECE = 1 << 22  # decompressed bytes produced (and dropped) at a time


def png_data_size(width: int, height: int, depth: int, colour: int, interlace: int) -> int:
    """The bytes a PNG's decompressed pixel data holds: per row one filter byte and its packed samples
    (per Adam7 pass for an interlaced file).

        >>> png_data_size(64, 64, 8, 2, 0)  # 64 rows of 1 + 64 * 3 bytes
        12352
    """
    bits = _CHANNELS.get(colour, 1) * depth
    passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
    total = 0
    for x0, y0, dx, dy in passes:
        w, h = max(0, (width - x0 + dx - 1) // dx), max(0, (height - y0 + dy - 1) // dy)
        if w and h:
            total += h * (1 + (w * bits + 7) // 8)
    return total


def png_damage(path: str | os.PathLike) -> bool:
    """Whether the PNG at ``path`` is damaged where libpng (TensorFlow's decoder) refuses it and Pillow does not.

    Checked: every critical chunk is whole and its CRC matches; the IDAT chunks come in one unbroken run whose
    zlib stream ends there (with its Adler-32 checksum) after at least :func:`png_data_size` bytes; an IEND
    chunk follows. Ancillary chunks (text, colour profile) are not checked: libpng skips a broken one too.
    """
    with open(path, "rb") as f:
        if f.read(8) != PNG_SIGNATURE:
            return False  # not a PNG: not ours to judge
        expected = produced = 0
        inflate = zlib.decompressobj()
        state = "before"  # before the IDAT run, inside it, after it
        while True:
            head = f.read(8)
            if len(head) < 8:
                return True  # the file ends before IEND
            length, kind = struct.unpack(">I4s", head)
            if state == "inside" and kind != b"IDAT":  # the IDAT run ended: the image must be whole by now
                if not inflate.eof or produced < expected:
                    return True
                state = "after"
            if kind not in CRITICAL and kind[0] & 0x20:  # ancillary (lower-case first letter): libpng skips it
                f.seek(length + 4, os.SEEK_CUR)
                continue
            data, crc = f.read(length), f.read(4)
            if len(data) < length or len(crc) < 4 or zlib.crc32(kind + data) & 0xFFFFFFFF != int.from_bytes(crc, "big"):
                return True
            if kind not in CRITICAL:  # an unknown critical chunk stops libpng as well
                return True
            if kind == b"IHDR" and length == 13:
                width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", data)
                expected = png_data_size(width, height, depth, colour, interlace)
            elif kind == b"IDAT" and state != "after":  # (IDAT chunks after a complete image: libpng ignores them)
                state = "inside"
                try:
                    produced += _inflated(inflate, data)
                except zlib.error:
                    return True
            elif kind == b"IEND":
                return state != "after"


def _inflated(inflate, data: bytes) -> int:
    """How many bytes ``data`` decompresses to (fed to ``inflate``), in pieces of at most :data:`_PIECE`."""
    total = 0
    while data and not inflate.eof:
        total += len(inflate.decompress(data, _PIECE))
        data = inflate.unconsumed_tail
    return total


def ends_early(pixels: np.ndarray) -> bool:
    """Whether a decoded JPEG ends in the blank mid-grey (128, 128, 128) that libjpeg leaves for every block after its
    data ended early: grey from a point inside a row of blocks to the end of the scan, with picture above that
    point. A picture padded with that grey is not it: rows at the bottom (the grey starts at a row's start) or a strip
    at the right (grey above the point too, up to the top).

        >>> picture = np.full((32, 32, 3), 60, np.uint8); cut = picture.copy(); cut[24:, 16:] = 128; cut[28:] = 128
        >>> band = picture.copy(); band[24:] = 128; strip = picture.copy(); strip[:, 16:] = 128
        >>> ends_early(cut), ends_early(band), ends_early(strip), ends_early(np.full((8, 8, 3), 128, np.uint8))
        (True, False, False, False)
    """
    values = np.asarray(pixels)
    grey = (values == 128).all(axis=-1) if values.ndim == 3 else values == 128
    rows = grey.all(axis=1)
    r = len(grey) - 1
    while r >= 0 and rows[r]:  # whole grey rows at the end
        r -= 1
    if r < 0:
        return False  # all grey: a flat frame, judged as such
    c = grey.shape[1]
    while c > 0 and grey[r, c - 1]:  # the grey at the end of the last row with picture
        c -= 1
    if c in (0, grey.shape[1]):
        return False  # none, or the grey starts at a row's start (a band at the bottom)
    top = r
    while top > 0 and grey[top - 1, c:].all():  # the row of blocks the point is in (a strip goes to the top)
        top -= 1
    return top > 0
