"""Fundus crop: cut a photograph's black borders to the fundus disc, pad to a square, mask a circle.

The DR literature's standard first step (Graham 2015 and most Kaggle DR solutions):
cameras leave the round fundus in a wide black frame, often cut at the top and bottom,
and a centre crop keeps a different share of black per camera. Here:

* a pixel is *bright* when its largest channel exceeds ``max(THRESHOLD, RELATIVE × the
  image's mean)`` — a fixed floor above JPEG noise in black, raised for bright photographs;
* a row (column) belongs to the disc when at least ``MIN_FRACTION`` of its pixels are
  bright, so scattered noise and thin text do not count, and the disc is the longest run
  of such rows (columns), so a caption separated from the disc by black is left out; the
  columns are counted within the rows found, then the rows again within those columns, so
  a caption beside the disc's rows (or columns) does not stretch the box either;
* the box is padded with black to a square centred on it (a disc cut at the top and
  bottom comes back round), and after resizing, everything outside the inscribed circle
  is set to black (stray light and text in the corners go).

An image with no bright rows or columns (all black) keeps its full frame, padded to a
square. Everything is TensorFlow ops on one image (runs inside ``tf.data`` map), a few
passes over the decoded pixels; deterministic.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

THRESHOLD = 10.0  # grey levels: above the black border's noise (Graham used 1/10 of the row mean)
RELATIVE = 0.1  # ...or a tenth of the image's mean brightness, when that is higher
MIN_FRACTION = 0.02  # share of bright pixels that makes a row or column part of the disc


def _longest_run(active: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """``(start, stop)`` of the longest run of True in a 1-D bool tensor; ``(0, n)`` when none is True."""
    n = tf.shape(active)[0]
    a = tf.cast(active, tf.int32)
    starts = a * (1 - tf.concat([[0], a[:-1]], axis=0))
    run = tf.cumsum(starts) * a  # 1, 2, … inside the runs, 0 outside
    lengths = tf.math.unsorted_segment_sum(a, run, n + 1)
    best = tf.argmax(lengths[1:], output_type=tf.int32) + 1
    where = tf.cast(tf.where(tf.equal(run, best))[:, 0], tf.int32)
    found = tf.reduce_any(active)
    start = tf.where(found, tf.reduce_min(tf.concat([where, [n]], 0)), 0)  # the sentinels keep empty reductions defined
    stop = tf.where(found, tf.reduce_max(tf.concat([where, [-1]], 0)) + 1, n)
    return start, stop


def fundus_box(image: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """``(top, left, height, width)`` of the fundus disc in a decoded ``uint8`` (h, w, 3) image.

    Example:
        >>> top, left, h, w = fundus_box(tf.pad(tf.fill([20, 30, 3], tf.uint8.max), [[5, 5], [40, 10], [0, 0]]))
        >>> [int(v) for v in (top, left, h, w)]
        [5, 40, 20, 30]
    """
    grey = tf.cast(tf.reduce_max(image, axis=-1), tf.float32)
    level = tf.maximum(THRESHOLD, RELATIVE * tf.reduce_mean(grey))
    bright = tf.cast(grey > level, tf.float32)
    # rows, then columns within those rows, then rows within those columns: a caption that shares
    # the disc's columns but not its rows (or the reverse) drops out
    top, bottom = _longest_run(tf.reduce_mean(bright, axis=1) >= MIN_FRACTION)
    left, right = _longest_run(tf.reduce_mean(bright[top:bottom], axis=0) >= MIN_FRACTION)
    top, bottom = _longest_run(tf.reduce_mean(bright[:, left:right], axis=1) >= MIN_FRACTION)
    return top, left, bottom - top, right - left


def crop_fundus(image: tf.Tensor) -> tf.Tensor:
    """Crop a decoded ``uint8`` image to its fundus box and pad it with black to a centred square."""
    top, left, h, w = fundus_box(image)
    box = tf.image.crop_to_bounding_box(image, top, left, h, w)
    side = tf.maximum(h, w)
    return tf.image.pad_to_bounding_box(box, (side - h) // 2, (side - w) // 2, side, side)


def circle_mask(image: tf.Tensor) -> tf.Tensor:
    """Black outside the circle inscribed in a square (size, size, c) image of static size."""
    size = int(image.shape[0])
    c = (size - 1) / 2.0
    yy, xx = np.mgrid[:size, :size]
    inside = ((xx - c) ** 2 + (yy - c) ** 2 <= (size / 2.0) ** 2).astype(image.dtype.as_numpy_dtype)
    return image * tf.constant(inside[..., None])
