"""The small picture of an image file that ``prepare`` and ``predict`` both judge it by: is it one flat colour?

``prepare`` (:func:`members.data.labels.check_image`) drops a flat frame — a lens cap, an
over-exposed white, a 1-pixel file — and ``predict`` and ``explain`` withhold its grade
(:mod:`ensemble.appearance` reads each input by the same :func:`small`). Both decide on the same
pixels, by the same :func:`is_flat`: the image at :data:`SIZE` × :data:`SIZE` px, a JPEG decoded at
the smallest scale still at least that (``Image.draft``: every byte is still read, the inverse DCT
mostly skipped), resized bilinearly. Judged on the full-resolution pixels instead, sensor noise on
a black frame reads as contrast in a large file and not in a small one, and the two commands
disagreed on the same file.

:func:`glance` also finds a JPEG whose data ended early in that same decode (``prepare`` drops it, ``predict`` does
not grade it). numpy and Pillow only: ``vote`` and ``prepare`` import no TensorFlow.
"""

from __future__ import annotations

import numpy as np

SIZE = 128
"""Each image is resized to SIZE x SIZE px before it is judged (and :mod:`ensemble.appearance`'s features taken)."""
EIGHT_BIT = frozenset({"1", "L", "LA", "P", "PA", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"})
"""Pillow modes of 8-bit samples whose ``convert("RGB")`` gives :func:`members.data.pillow_image.to_rgb8`'s pixels."""


def small(im) -> np.ndarray:
    """An open Pillow image (its first frame) as ``uint8`` RGB, ``(SIZE, SIZE, 3)``.

    A JPEG is decoded at the smallest scale whose sides are still at least :data:`SIZE` (call this before
    ``im.load()``; after it, the loaded pixels are used). Deep samples keep their high byte
    (:func:`members.data.pillow_image.to_rgb8`, as the pipeline reads them).
    """
    from PIL import Image

    from members.data.pillow_image import to_rgb8

    if im.format in ("JPEG", "MPO"):
        im.draft("RGB", (SIZE, SIZE))
    im.seek(0)
    if im.mode == "RGB":  # resized as decoded: no copy of a large image (a 12000 px PNG is 432 MB a copy)
        rgb = im
    elif im.mode in EIGHT_BIT:  # the pixels to_rgb8 gives (an alpha channel dropped), in one copy, not two
        rgb = im.convert("RGB")
    else:  # deep samples: their high byte, as the pipeline reads them
        rgb = Image.fromarray(to_rgb8(im))
    return np.asarray(rgb.resize((SIZE, SIZE), Image.Resampling.BILINEAR))


def glance(im) -> tuple[np.ndarray, bool]:
    """``(small(im), cut short)``: the picture, and whether ``im`` is a JPEG whose data ended early — its last blocks
    decoded as blank mid-grey (:func:`members.data.integrity.ends_early`), libjpeg's "Corrupt JPEG data: premature
    end of data segment" (a frame of one flat grey is flat, not cut short). Call it on an image not loaded yet, as
    :func:`small`."""
    picture = small(im)
    if im.format not in ("JPEG", "MPO") or im.mode not in ("RGB", "L"):
        return picture, False
    from members.data.integrity import ends_early

    return picture, ends_early(np.asarray(im)) and not is_flat(spread(picture[None]))[0]  # a grey frame is flat


def spread(images: np.ndarray) -> np.ndarray:
    """``(n, 3)``: the standard deviation of each colour of each of ``(n, h, w, 3)`` images (float32 arithmetic)."""
    return np.asarray(images, dtype=np.float32).std(axis=(1, 2))


def is_flat(spreads: np.ndarray) -> np.ndarray:
    """Whether each row of :func:`spread` values is one flat colour: every colour varies less than
    :data:`members.data.labels.FLAT_STD` grey levels. A row of ``nan`` (an unreadable image) is not flat.

        >>> is_flat(np.array([[0.5, 1.9, 0.0], [0.5, 2.5, 0.0], [np.nan] * 3])).tolist()
        [True, False, False]
    """
    from members.data.labels import FLAT_STD

    values = np.nan_to_num(np.asarray(spreads, dtype=np.float64), nan=np.inf)
    return values.max(axis=-1) < FLAT_STD
