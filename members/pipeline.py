"""The tf.data input pipeline: parallel decode and resize, cache, shuffle, augment, batch, prefetch.

Design (each step chosen for speed, see ``bench/pipeline.py``):

* JPEGs are decoded at reduced scale (``decode_jpeg(ratio=2|4|8)``) whenever the source is
  at least twice the target, which skips most of the IDCT work on large photographs;
  other formats go through ``decode_image``. Images are centre-cropped to a square and
  resized with antialiasing, optionally preprocessed (Ben Graham's local-colour
  subtraction), and stored as ``uint8`` so the cache is four times smaller.
* The cache (memory, a file on disk, or none) holds decoded, resized images; random
  augmentation runs after it, so each epoch sees new variants at no decode cost.
* Augmentation is one fused affine transform per image — rotation, width/height shift
  and both flips composed into a single matrix — applied to a whole batch by one
  ``ImageProjectiveTransformV3`` call, with stateless random numbers seeded per batch, so
  runs are reproducible.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from members.preprocess import ben_graham

AUTOTUNE = tf.data.AUTOTUNE
JPEG_MAGIC = b"\xff\xd8\xff"


@dataclass(frozen=True)
class Augmentation:
    """The random augmentation family (Keras ``ImageDataGenerator`` names and meanings)."""

    rotation: float = 0.0  # degrees, uniform in [-rotation, rotation]
    width_shift: float = 0.0  # fraction of the width
    height_shift: float = 0.0
    horizontal_flip: bool = False
    vertical_flip: bool = False

    @property
    def active(self) -> bool:
        return bool(self.rotation or self.width_shift or self.height_shift or self.horizontal_flip or self.vertical_flip)

    @classmethod
    def from_spec(cls, spec) -> "Augmentation":
        return cls(spec.rotation, spec.width_shift, spec.height_shift, spec.horizontal_flip, spec.vertical_flip)


def _decode_jpeg_scaled(data: tf.Tensor, size: int) -> tf.Tensor:
    shape = tf.image.extract_jpeg_shape(data)
    short = tf.minimum(shape[0], shape[1])
    # largest power-of-two ratio that keeps the short side at least `size`
    index = tf.cast(short >= 2 * size, tf.int32) + tf.cast(short >= 4 * size, tf.int32) + tf.cast(short >= 8 * size, tf.int32)
    branches = [lambda r=r: tf.io.decode_jpeg(data, channels=3, ratio=r, dct_method="INTEGER_FAST") for r in (1, 2, 4, 8)]
    return tf.switch_case(index, branches)


def decode(data: tf.Tensor, size: int) -> tf.Tensor:
    """Decode encoded image bytes to ``uint8`` RGB, at reduced scale for large JPEGs."""
    is_jpeg = tf.equal(tf.strings.substr(data, 0, 3), JPEG_MAGIC)
    image = tf.cond(
        is_jpeg,
        lambda: _decode_jpeg_scaled(data, size),
        lambda: tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8),
    )
    image.set_shape([None, None, 3])
    return image


def square_resize(image: tf.Tensor, size: int) -> tf.Tensor:
    """Centre-crop to a square on the short side, then resize to ``size``×``size`` (float32, 0–255)."""
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    side = tf.minimum(h, w)
    image = tf.image.crop_to_bounding_box(image, (h - side) // 2, (w - side) // 2, side, side)
    image = tf.image.resize(tf.cast(image, tf.float32), [size, size], method="bilinear", antialias=True)
    return image


def load_image(path: tf.Tensor, size: int, preprocessing: str = "none") -> tf.Tensor:
    """Read, decode, crop and resize one image file; returns ``uint8`` (size, size, 3)."""
    image = square_resize(decode(tf.io.read_file(path), size), size)
    if preprocessing == "ben":
        image = ben_graham(image)
    image = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
    image.set_shape([size, size, 3])
    return image


def affine_matrices(batch: tf.Tensor, size: int, aug: Augmentation, seed: tf.Tensor) -> tf.Tensor:
    """Random fused transforms for a batch: ``(batch, 8)`` rows for ``ImageProjectiveTransformV3``.

    Each row maps an output pixel to its input pixel: flip, then rotate about the centre,
    then shift — composed into one matrix, so an image is resampled once.
    """
    seeds = tf.random.experimental.stateless_split(seed, 5)
    uniform = lambda i, lo, hi: tf.random.stateless_uniform([batch], seeds[i], lo, hi)  # noqa: E731
    theta = uniform(0, -1.0, 1.0) * (aug.rotation * math.pi / 180.0)
    tx = uniform(1, -1.0, 1.0) * (aug.width_shift * size)
    ty = uniform(2, -1.0, 1.0) * (aug.height_shift * size)
    fx = tf.where(uniform(3, 0.0, 1.0) < 0.5, -1.0, 1.0) if aug.horizontal_flip else tf.ones([batch])
    fy = tf.where(uniform(4, 0.0, 1.0) < 0.5, -1.0, 1.0) if aug.vertical_flip else tf.ones([batch])
    c = (size - 1) / 2.0
    cos, sin = tf.cos(theta), tf.sin(theta)
    # input = F · R · (output - c - t) + c
    a0, a1 = fx * cos, fx * sin
    b0, b1 = -fy * sin, fy * cos
    ox, oy = -c - tx, -c - ty
    a2 = a0 * ox + a1 * oy + c
    b2 = b0 * ox + b1 * oy + c
    zeros = tf.zeros([batch])
    return tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


def augment_batch(images: tf.Tensor, seed: tf.Tensor, aug: Augmentation) -> tf.Tensor:
    """Apply one random fused affine transform per image of a ``uint8`` batch; returns float32."""
    images = tf.cast(images, tf.float32)
    if not aug.active:
        return images
    shape = tf.shape(images)
    transforms = affine_matrices(shape[0], images.shape[1], aug, seed)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=shape[1:3], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="CONSTANT",
    )


def cache_mode(cache: str, n_images: int, size: int, budget_bytes: int | None = None) -> str:
    """Resolve ``auto`` to ``memory`` when the decoded images fit the memory budget, else ``disk``."""
    if cache != "auto":
        return cache
    if budget_bytes is None:
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            total = 8 << 30
        budget_bytes = total // 4
    return "memory" if n_images * size * size * 3 <= budget_bytes else "disk"


def make_dataset(
    paths: list[str],
    labels: np.ndarray,
    *,
    size: int,
    batch_size: int,
    training: bool = False,
    augmentation: Augmentation | None = None,
    sample_weights: np.ndarray | None = None,
    preprocessing: str = "none",
    cache: str = "memory",
    cache_dir: str | Path | None = None,
    seed: int = 0,
) -> tf.data.Dataset:
    """Batches of ``(images float32 0–255, labels int32[, sample weights])``.

    Args:
        paths: image files.
        labels: integer labels, one per path.
        size: the square input size.
        batch_size: images per batch.
        training: shuffle each epoch and apply ``augmentation`` (never in evaluation).
        augmentation: the random transform family; ``None`` means none.
        sample_weights: optional per-image weights (class weights), yielded as a third element.
        preprocessing: ``"none"`` or ``"ben"`` (computed once, before the cache).
        cache: ``"memory"``, ``"disk"`` (a file under ``cache_dir``), ``"none"`` or ``"auto"``.
        cache_dir: folder for the disk cache.
        seed: seeds the shuffle order and the augmentation.

    Returns:
        A ``tf.data.Dataset``; evaluation datasets keep the order of ``paths``.
    """
    labels = np.asarray(labels, dtype=np.int32)
    items = (list(map(str, paths)), labels) if sample_weights is None else (
        list(map(str, paths)), labels, np.asarray(sample_weights, dtype=np.float32))
    ds = tf.data.Dataset.from_tensor_slices(items)
    ds = ds.map(lambda p, *rest: (load_image(p, size, preprocessing), *rest), num_parallel_calls=AUTOTUNE)
    mode = cache_mode(cache, len(paths), size)
    if mode == "memory":
        ds = ds.cache()
    elif mode == "disk":
        folder = Path(cache_dir or ".")
        folder.mkdir(parents=True, exist_ok=True)
        ds = ds.cache(str(folder / f"cache_{size}_{preprocessing}_{len(paths)}"))
    if training:
        ds = ds.shuffle(max(len(paths), 1), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    aug = augmentation or Augmentation()
    if training and aug.active:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda batch, s: (augment_batch(batch[0], s, aug), *batch[1:]), num_parallel_calls=AUTOTUNE)
    else:
        ds = ds.map(lambda images, *rest: (tf.cast(images, tf.float32), *rest), num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)


def load_images(paths: list[str], size: int, preprocessing: str = "none", batch_size: int = 64) -> np.ndarray:
    """Decode and resize ``paths`` into one ``uint8`` array ``(n, size, size, 3)`` (parallel, ordered)."""
    ds = tf.data.Dataset.from_tensor_slices(list(map(str, paths)))
    ds = ds.map(lambda p: load_image(p, size, preprocessing), num_parallel_calls=AUTOTUNE).batch(batch_size)
    parts = [b.numpy() for b in ds]
    return np.concatenate(parts) if parts else np.zeros((0, size, size, 3), np.uint8)
