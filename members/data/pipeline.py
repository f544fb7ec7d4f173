"""The tf.data input pipeline: parallel decode and resize, cache, shuffle, augment, batch, prefetch.

Design (each step chosen for speed, measured by ``bench/pipeline.py``):

* JPEGs are decoded at reduced scale (``decode_jpeg(ratio=2|4|8)``) whenever the source is
  at least twice the target, which skips most of the IDCT work on large photographs;
  PNG, GIF, BMP and WebP go through ``decode_image``, any other format Pillow reads (TIFF, PPM,
  JPEG 2000, 16-bit scans) through Pillow. Images are squared (centre crop, or the fundus
  crop of ``members/data/fundus.py``) and resized with antialiasing (skipped when the decode
  already has the target size), optionally preprocessed (Ben Graham's local-colour
  subtraction), and stored as ``uint8`` so the cache is four times smaller. One function,
  :func:`fit_image`, does this for training, evaluation, ``predict`` and ``explain``
  (:func:`load_variants` reads a file once for several members, bit-identically).
* The cache (memory, a file on disk, or none) holds decoded, resized images; random
  augmentation runs after it, so each epoch sees new variants at no decode cost.
* Augmentation is one fused affine transform per image — rotation, width/height shift
  and both flips composed into a single matrix, drawn from TensorFlow's stateless
  generator with one seed per batch, so runs are reproducible — and the image is
  resampled once by Pillow's affine warp (GIL released, so parallel map calls use
  every core). Nearest-neighbour resampling is the default, as in torchvision's
  ``RandomAffine``: it keeps lesion contrast (no blur that test images never get) and
  its warp costs about a tenth of ``ImageProjectiveTransformV3``'s bilinear one on CPU;
  ``Augmentation(interpolation="bilinear")`` is smoother, its warp about 7× the CPU time.
* Shuffling never holds more decoded images than the cache does (see ``make_dataset``),
  so the disk cache keeps memory bounded for datasets larger than RAM.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from members.infra.errors import UserError
from members.data.preprocess import ben_graham
from members.model.spec import INTERPOLATIONS

AUTOTUNE = tf.data.AUTOTUNE
JPEG_MAGIC = b"\xff\xd8\xff"
DISK_SHARD_IMAGES = 128  # images per disk-cache shard file (training)...
MAX_DISK_SHARDS = 64  # ...but no more shard files than this
DISK_SHUFFLE_BYTES = 32 << 20  # shuffle buffer over the disk shards: about 32 MiB of decoded images



@dataclass(frozen=True)
class Augmentation:
    """The random augmentation family (Keras ``ImageDataGenerator`` names and meanings).

    Example:
        >>> Augmentation(rotation=30, horizontal_flip=True).active
        True
    """

    rotation: float = 0.0  # degrees, uniform in [-rotation, rotation]
    width_shift: float = 0.0  # fraction of the width
    height_shift: float = 0.0
    horizontal_flip: bool = False
    vertical_flip: bool = False
    interpolation: str = "nearest"  # resampling of the warp: "nearest" or "bilinear"

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise UserError(
                f"Augmentation interpolation must be one of {', '.join(INTERPOLATIONS)}; "
                f"choose one of those. Received: interpolation={self.interpolation!r}"
            )

    @property
    def active(self) -> bool:
        return bool(self.rotation or self.width_shift or self.height_shift or self.horizontal_flip or self.vertical_flip)

    @classmethod
    def from_spec(cls, spec) -> Augmentation:
        return cls(spec.rotation, spec.width_shift, spec.height_shift, spec.horizontal_flip, spec.vertical_flip,
                   getattr(spec, "interpolation", "nearest"))


JPEG_RATIOS = (1, 2, 4, 8)


def decode_scale(data: tf.Tensor, size: int) -> tf.Tensor:
    """Index into ``JPEG_RATIOS`` of the reduced-scale decode for ``size`` px (int32; 0 for non-JPEG).

    The largest power-of-two ratio that keeps a JPEG's short side at least ``size``.
    """
    def jpeg_index():
        shape = tf.image.extract_jpeg_shape(data)
        short = tf.minimum(shape[0], shape[1])
        return sum(tf.cast(short >= r * size, tf.int32) for r in JPEG_RATIOS[1:])

    return tf.cond(tf.equal(tf.strings.substr(data, 0, 3), JPEG_MAGIC), jpeg_index, lambda: tf.constant(0, tf.int32))


def decode_at(data: tf.Tensor, scale: tf.Tensor, path: tf.Tensor | None = None) -> tf.Tensor:
    """Decode encoded bytes to ``uint8`` RGB; a JPEG at ``JPEG_RATIOS[scale]`` (see :func:`decode_scale`).

    PNG, GIF, BMP and WebP go through ``decode_image`` (an animation gives its first frame); any other
    format (TIFF, PPM, JPEG 2000, 16-bit scans, ...) through Pillow (:mod:`members.data.pillow_image`).
    """
    branches = [lambda r=r: tf.io.decode_jpeg(data, channels=3, ratio=r, dct_method="INTEGER_FAST")
                for r in JPEG_RATIOS]
    image = tf.cond(
        tf.equal(tf.strings.substr(data, 0, 3), JPEG_MAGIC),
        lambda: tf.switch_case(scale, branches),
        lambda: tf.cond(tensorflow_decodes(data),
                        lambda: tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8),
                        lambda: pillow_decode(data, path)),
    )
    image.set_shape([None, None, 3])
    return image


def orientation_table(paths):
    """A lookup from path to EXIF orientation for the JPEGs among ``paths`` stored turned, or None when none is.

    ``decode_jpeg`` ignores the tag, so a phone or camera photo stored sideways (orientation 6, say)
    reached the member sideways. The tag is read once per file in Python when a dataset is built, by
    walking the JPEG's header segments to its Exif block (:func:`members.data.pillow_image.jpeg_orientation`:
    a few small reads per file, wherever the block sits); the graph then turns
    only those files (:func:`upright`), and a set without turned JPEGs — nearly every set — gets no
    extra op at all (an in-graph check per image slowed small-image epochs by a fifth). Pillow's
    formats are turned by :func:`members.data.pillow_image.decode_bytes` itself.
    """
    from members.data.pillow_image import jpeg_orientation

    keys, values = [], []
    for path in paths:
        try:
            with open(path, "rb") as f:
                value = jpeg_orientation(f)
        except OSError:
            continue
        if value != 1:
            keys.append(path if isinstance(path, bytes) else os.fsencode(str(path)))
            values.append(value)
    if not keys:
        return None
    return tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        tf.constant(keys, tf.string), tf.constant(values, tf.int32)), default_value=1)


# EXIF orientation -> (transpose, reverse columns, reverse rows): 1 upright, 2 mirrored, 3 turned 180°,
# 4 flipped, 5 transposed, 6 turned 90° clockwise to view, 7 transversed, 8 turned 90° anticlockwise to view
ORIENTATION_STEPS = ((False, False, False), (False, True, False), (False, True, True), (False, False, True),
                     (True, False, False), (True, True, False), (True, True, True), (True, False, True))


def upright(image: tf.Tensor, path: tf.Tensor, turns) -> tf.Tensor:
    """``image`` turned by its file's EXIF orientation (``turns``: :func:`orientation_table`), as viewers show it."""
    if turns is None:
        return image
    value = tf.clip_by_value(turns.lookup(path), 1, 8)
    steps = tf.gather(tf.constant(ORIENTATION_STEPS, tf.bool), value - 1)
    image = tf.transpose(image, tf.where(steps[0], tf.constant([1, 0, 2]), tf.constant([0, 1, 2])))
    image = tf.reverse(image, tf.boolean_mask(tf.constant([1, 0]), steps[1:]))
    image.set_shape([None, None, 3])
    return image


def tensorflow_decodes(data: tf.Tensor) -> tf.Tensor:
    """Whether ``decode_image`` recognises the encoded bytes (JPEG, PNG, GIF, BMP, WebP), in-graph.

    The same test as :func:`members.data.pillow_image.tensorflow_decodes`.
    """
    from members.data.pillow_image import TF_MAGIC, WEBP_MAGIC

    checks = [tf.equal(tf.strings.substr(data, 0, len(m)), m) for m in TF_MAGIC.values()]
    checks.append(tf.logical_and(tf.equal(tf.strings.substr(data, 0, 4), WEBP_MAGIC[0]),
                                 tf.equal(tf.strings.substr(data, 8, 4), WEBP_MAGIC[1])))
    return tf.reduce_any(tf.stack(checks))


def pillow_decode(data: tf.Tensor, path: tf.Tensor | None = None) -> tf.Tensor:
    """Decode the bytes of a format TensorFlow cannot (TIFF, PPM, JPEG 2000, ...) with Pillow; ``uint8`` RGB.

    A file Pillow cannot decode raises an error that names ``path`` (the file name, when given).
    """
    from members.data.pillow_image import decode_bytes

    def run(b, p):
        # a scalar string arrives as bytes in a tf.data map and as a 0-d object array when eager
        b, p = (v.item() if isinstance(v, np.ndarray) else v for v in (b, p))
        try:
            return decode_bytes(b)
        except MemoryError:  # TensorFlow turns it into ResourceExhaustedError: too large, not corrupt
            raise
        except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds; the message names the file
            from PIL import UnidentifiedImageError

            why = "not an image Pillow recognises" if isinstance(exc, UnidentifiedImageError) else \
                f"{type(exc).__name__}: {exc}"
            raise ValueError(f"{os.fsdecode(p) or 'an image'} cannot be decoded by Pillow ({why})") from None

    name = tf.constant(b"") if path is None else path
    image = tf.numpy_function(run, [data, name], tf.uint8, stateful=False)
    image.set_shape([None, None, 3])
    return image


def decode(data: tf.Tensor, size: int) -> tf.Tensor:
    """Decode encoded image bytes to ``uint8`` RGB, at reduced scale for large JPEGs."""
    return decode_at(data, decode_scale(data, size))


def crop_square(image: tf.Tensor) -> tf.Tensor:
    """Centre-crop an image to a square on its short side."""
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    side = tf.minimum(h, w)
    return tf.image.crop_to_bounding_box(image, (h - side) // 2, (w - side) // 2, side, side)


def square_resize(image: tf.Tensor, size: int) -> tf.Tensor:
    """Centre-crop to a square on the short side, then resize to ``size``×``size`` (float32, 0–255)."""
    return _resized(crop_square(image), size)


def _resized(image: tf.Tensor, size: int) -> tf.Tensor:
    """``image`` (``uint8``) resized to ``size``×``size``, antialiased bilinear, float32 0–255.

    The ``uint8`` pixels go to the resampler as they are: it reads each as a float, so the result is bit for bit
    the one of a float32 copy, without that copy — four bytes a pixel at full resolution (1.7 GB for a
    12000 × 12000 scan) before the image shrinks.
    """
    return tf.image.resize(image, [size, size], method="bilinear", antialias=True)


def _to_uint8(image: tf.Tensor) -> tf.Tensor:
    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def fit_image(image: tf.Tensor, size: int, preprocessing: str = "none", fundus_crop: bool = False) -> tf.Tensor:
    """Turn one decoded ``uint8`` image into a member's input: ``uint8`` (size, size, 3).

    The one place where an image becomes what a member sees, in training, evaluation,
    ``predict`` and ``explain``: square it (the fundus crop of :mod:`members.data.fundus`, or a
    centre crop on the short side), resize to ``size`` (antialiased; skipped when it already
    has that size), then Ben Graham's preprocessing when asked (its radius estimate then
    sees the cropped disc spanning the square).

    Args:
        image: ``uint8`` (h, w, 3), as decoded.
        size: the member's square input size.
        preprocessing: ``"none"`` or ``"ben"``.
        fundus_crop: cut the black borders to the fundus disc, pad to a square, mask a circle.
    """
    from members.data.fundus import circle_mask, crop_fundus

    image = crop_fundus(image) if fundus_crop else crop_square(image)
    same_size = tf.equal(tf.shape(image)[0], size)
    resize = lambda: _resized(image, size)  # noqa: E731
    if not fundus_crop and preprocessing != "ben":  # uint8 all the way: no copy when the decode has the size
        out = tf.cond(same_size, lambda: image, lambda: _to_uint8(resize()))
        out.set_shape([size, size, 3])
        return out
    x = tf.cond(same_size, lambda: tf.cast(image, tf.float32), resize)
    x.set_shape([size, size, 3])
    if fundus_crop:
        x = circle_mask(x)
    if preprocessing == "ben":
        x = ben_graham(x)
    return _to_uint8(x)


def load_variants(path: tf.Tensor, variants, turns=None) -> tuple[tf.Tensor, ...]:
    """Read one file once and prepare it for every ``(size, preprocessing, fundus_crop)`` variant.

    The file is decoded once per distinct JPEG scale (members whose sizes share a scale share
    the decode), so each variant gets exactly the pixels :func:`load_image` gives it alone.
    """
    variants = [(int(size), str(prep), bool(crop)) for size, prep, crop in variants]
    data = tf.io.read_file(path)
    decoded: dict[int, tuple[tf.Tensor, tf.Tensor]] = {}
    prev = None
    for size in sorted({v[0] for v in variants}, reverse=True):  # a smaller size never needs a finer scale
        scale = decode_scale(data, size)
        if prev is None:
            image = upright(decode_at(data, scale, path), path, turns)
        else:
            prev_scale, prev_image = prev
            image = tf.cond(tf.equal(scale, prev_scale), lambda p=prev_image: p,
                            lambda s=scale: upright(decode_at(data, s, path), path, turns))
            image.set_shape([None, None, 3])
        decoded[size] = prev = (scale, image)
    return tuple(fit_image(decoded[size][1], size, prep, crop) for size, prep, crop in variants)


def load_image(path: tf.Tensor, size: int, preprocessing: str = "none", fundus_crop: bool = False,
               turns=None) -> tf.Tensor:
    """Read, decode (at reduced scale for large JPEGs), turn upright (``turns``: :func:`orientation_table`)
    and :func:`fit_image` one file; ``uint8`` (size, size, 3)."""
    return load_variants(path, [(size, preprocessing, fundus_crop)], turns)[0]


def affine_matrices(batch: tf.Tensor, size: int, aug: Augmentation, seed: tf.Tensor) -> tf.Tensor:
    """Random fused transforms for a batch: ``(batch, 8)`` projective rows (``ImageProjectiveTransformV3`` layout).

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


def _warp_batch(images: np.ndarray, transforms: np.ndarray, interpolation: str) -> np.ndarray:
    """Resample each ``uint8`` image with its affine row (black outside) using Pillow."""
    from PIL import Image

    resample = Image.Resampling.NEAREST if interpolation == "nearest" else Image.Resampling.BILINEAR
    out = np.empty_like(images)
    height, width = images.shape[1:3]
    for i, (image, t) in enumerate(zip(images, transforms.astype(np.float64))):
        a0, a1, a2, b0, b1, b2 = t[:6]
        # Pillow maps pixel centres (x + 0.5); the rows map pixel indices
        coeffs = (a0, a1, a2 + 0.5 - 0.5 * (a0 + a1), b0, b1, b2 + 0.5 - 0.5 * (b0 + b1))
        warped = Image.fromarray(image).transform((width, height), Image.Transform.AFFINE, coeffs, resample=resample)
        out[i] = np.asarray(warped)
    return out


def augment_batch(images: tf.Tensor, seed: tf.Tensor, aug: Augmentation) -> tf.Tensor:
    """Apply one random fused affine transform per image of a ``uint8`` batch; returns float32.

    Args:
        images: ``uint8`` (batch, size, size, 3).
        seed: int64 pair for the stateless generator; the same seed gives the same transforms.
        aug: the transform family and the resampling.
    """
    if not aug.active:
        return tf.cast(images, tf.float32)
    transforms = affine_matrices(tf.shape(images)[0], images.shape[1], aug, seed)
    warped = tf.numpy_function(lambda x, t: _warp_batch(x, t, aug.interpolation), [images, transforms], tf.uint8,
                               stateful=False)
    warped.set_shape(images.shape)
    return tf.cast(warped, tf.float32)


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


def _cache_prefix(folder: Path, paths: list[str], size: int, preprocessing: str, tag: str) -> str:
    """A cache file prefix unique to the image list, size and preparation (``preprocessing`` names it
    all, fundus crop included): subsets never collide."""
    digest = hashlib.sha1("\n".join(paths).encode("utf-8", "surrogateescape"))
    digest.update(f"|{size}|{preprocessing}|{tag}".encode())
    prefix = folder / f"cache_{size}px_{digest.hexdigest()[:16]}"
    if not Path(f"{prefix}.index").exists():
        # a run killed while filling the cache leaves ``<prefix>_0.lockfile`` (and partial files),
        # which would stop every later run; one process per member folder (members.infra.lock), so
        # anything found here is stale
        for leftover in folder.glob(f"{prefix.name}_*"):
            leftover.unlink(missing_ok=True)
    return str(prefix)


def _disk_shards(items: tuple, n: int, load, folder: Path, size: int, preprocessing: str, seed: int):
    """Training on a disk cache: images in random order (seeded) split into shard files, read in a new
    random interleaving each epoch, so shuffling needs no buffer the size of the dataset."""
    order = np.random.default_rng(seed).permutation(n)
    shards = min(MAX_DISK_SHARDS, max(1, math.ceil(n / DISK_SHARD_IMAGES)))
    parts = []
    for k, chunk in enumerate(np.array_split(order, shards)):
        sub = tuple(np.asarray(a)[chunk] for a in items)
        names = [os.fsdecode(p) for p in sub[0]]
        prefix = _cache_prefix(folder, names, size, preprocessing, f"train{seed}_{k}of{shards}")
        parts.append(tf.data.Dataset.from_tensor_slices(sub).map(load, num_parallel_calls=AUTOTUNE).cache(prefix))
    if len(parts) == 1:
        return parts[0]
    return tf.data.Dataset.sample_from_datasets(parts, seed=seed, rerandomize_each_iteration=True)


def make_dataset(
    paths: list[str],
    labels: np.ndarray,
    *,
    size: int,
    batch_size: int,
    training: bool = False,
    augmentation: Augmentation | None = None,
    sample_weights: np.ndarray | None = None,
    acceptance: np.ndarray | None = None,
    preprocessing: str = "none",
    fundus_crop: bool = False,
    cache: str = "memory",
    cache_dir: str | Path | None = None,
    seed: int = 0,
) -> tf.data.Dataset | FirstEpochFirst:
    """Batches of ``(images float32 0–255, labels int32[, sample weights])``.

    Shuffling never holds more decoded images than the cache already does: with the memory
    cache the shuffle buffer shares the cached tensors (from the second epoch; the first reads
    the files in a seeded random order, so decoding overlaps augmentation); without a cache the file list is
    shuffled before decoding; with the disk cache (datasets larger than memory) training
    reads shard files in a new random interleaving each epoch through a bounded buffer.

    Args:
        paths: image files.
        labels: integer labels, one per path.
        size: the square input size.
        batch_size: images per batch.
        training: shuffle each epoch and apply ``augmentation`` (never in evaluation).
        augmentation: the random transform family; ``None`` means none.
        sample_weights: optional per-image weights (class weights), yielded as a third element.
        acceptance: class-rebalanced batches (training only): per-class probabilities of keeping a
            drawn image (:func:`members.training.sampling.sampling_acceptance`); an epoch is then ``len(paths)``
            images drawn from the repeated, shuffled set and kept with their class's probability.
        preprocessing: ``"none"`` or ``"ben"`` (computed once, before the cache).
        fundus_crop: crop to the fundus disc first (see :func:`fit_image`).
        cache: ``"memory"``, ``"disk"`` (files under ``cache_dir``), ``"none"`` or ``"auto"``.
        cache_dir: folder for the disk cache (default: the working directory).
        seed: seeds the shuffle order and the augmentation.

    Returns:
        A ``tf.data.Dataset`` (training on the memory cache: a :class:`FirstEpochFirst` of two, iterated
        the same way); evaluation datasets keep the order of ``paths``.

    Example:
        >>> ds = make_dataset(["a.jpeg", "b.jpeg"], [0, 1], size=64, batch_size=2)  # doctest: +SKIP
    """
    paths = list(map(str, paths))
    names = [os.fsencode(p) for p in paths]  # bytes: a file name in any encoding reaches the file system as it is
    n = len(paths)
    labels = np.asarray(labels, dtype=np.int32)
    items = (names, labels) if sample_weights is None else (names, labels, np.asarray(sample_weights, dtype=np.float32))
    turns = orientation_table(names)
    load = lambda p, *rest: (load_image(p, size, preprocessing, fundus_crop, turns), *rest)  # noqa: E731
    prepared_as = preprocessing + ("+fundus" if fundus_crop else "") + ("+exif" if turns is not None else "")
    mode = cache_mode(cache, n, size)
    folder = Path(cache_dir or ".")
    if mode == "disk":
        folder.mkdir(parents=True, exist_ok=True)
    resample = (lambda d, s: _resampled(d, acceptance, n, s)) if training and acceptance is not None else (lambda d, s: d)
    if mode == "disk" and training:
        ds = _disk_shards(items, n, load, folder, size, prepared_as, seed)
        image_bytes = size * size * 3
        buffer = max(4 * batch_size, DISK_SHUFFLE_BYTES // image_bytes)
        ds = resample(ds.shuffle(max(1, min(n, buffer)), seed=seed, reshuffle_each_iteration=True), seed)
    elif training and mode == "memory":
        # the first epoch streams the files in a random (seeded) order, so decoding overlaps
        # augmentation; later epochs reshuffle the whole cache (a buffer of the cached tensors)
        cached = tf.data.Dataset.from_tensor_slices(items).shuffle(max(n, 1), seed=seed, reshuffle_each_iteration=False)
        cached = cached.map(load, num_parallel_calls=AUTOTUNE).cache()
        later = cached.shuffle(max(n, 1), seed=seed + 1, reshuffle_each_iteration=True)
        return FirstEpochFirst(_batches(resample(cached, seed), batch_size, training, augmentation, seed),
                               _batches(resample(later, seed + 1), batch_size, training, augmentation, seed + 1))
    else:
        ds = tf.data.Dataset.from_tensor_slices(items)
        if training and mode == "none":  # resampled before decoding: dropped draws cost nothing
            ds = resample(ds.shuffle(max(n, 1), seed=seed, reshuffle_each_iteration=True), seed)
        ds = ds.map(load, num_parallel_calls=AUTOTUNE)
        if mode == "memory":
            ds = ds.cache()
        elif mode == "disk":
            ds = ds.cache(_cache_prefix(folder, paths, size, prepared_as, "ordered"))
    return _batches(ds, batch_size, training, augmentation, seed)


def _resampled(ds: tf.data.Dataset, acceptance: np.ndarray, n: int, seed: int) -> tf.data.Dataset:
    """``n`` elements drawn from ``ds`` repeated, each kept with its class's acceptance probability.

    The draws are seeded and differ every epoch (``rerandomize_each_iteration``); element
    ``[1]`` is the label.
    """
    accept = tf.constant(np.asarray(acceptance, dtype=np.float32))
    draws = tf.data.Dataset.random(seed=seed + 7919, rerandomize_each_iteration=True)
    pairs = tf.data.Dataset.zip((ds.repeat(), draws))

    def keep(element, r):
        u = tf.cast(r % 1_000_003, tf.float32) / 1_000_003.0
        return u < tf.gather(accept, tf.cast(element[1], tf.int32))

    return pairs.filter(keep).map(lambda element, r: element).take(max(n, 1))


def _batches(ds: tf.data.Dataset, batch_size: int, training: bool, augmentation: Augmentation | None,
             seed: int) -> tf.data.Dataset:
    """Batch, augment (training) or cast to float32, prefetch."""
    ds = ds.batch(batch_size)
    aug = augmentation or Augmentation()
    if training and aug.active:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda batch, s: (augment_batch(batch[0], s, aug), *batch[1:]), num_parallel_calls=AUTOTUNE)
    else:
        ds = ds.map(lambda images, *rest: (tf.cast(images, tf.float32), *rest), num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)


class FirstEpochFirst:
    """A training dataset over a memory cache whose first pass differs from the later ones.

    Iterating it (one ``iter`` per epoch, as the trainer does) gives ``first`` once — the files
    in a random order, decoded as they stream, filling the cache — then ``later`` every time
    after — the whole cache reshuffled. Both read the same cache (``tf.data`` shares a
    dataset's memory cache with every dataset built on it). A full shuffle buffer in the first
    epoch would wait for every image to be decoded before the first batch, so decoding and
    augmentation would run one after the other instead of together.
    """

    def __init__(self, first: tf.data.Dataset, later: tf.data.Dataset) -> None:
        self.first, self.later, self.passes = first, later, 0

    def __iter__(self):
        ds = self.first if self.passes == 0 else self.later
        self.passes += 1
        return iter(ds)

    @property
    def element_spec(self):
        return self.later.element_spec


def load_images(paths: list[str], size: int, preprocessing: str = "none", batch_size: int = 64, *,
                fundus_crop: bool = False) -> np.ndarray:
    """Decode and resize ``paths`` into one ``uint8`` array ``(n, size, size, 3)`` (parallel, ordered)."""
    names = [os.fsencode(str(p)) for p in paths]  # bytes, as make_dataset reads them
    turns = orientation_table(names)
    ds = tf.data.Dataset.from_tensor_slices(names)
    ds = ds.map(lambda p: load_image(p, size, preprocessing, fundus_crop, turns),
                num_parallel_calls=AUTOTUNE).batch(batch_size)
    parts = [b.numpy() for b in ds]
    return np.concatenate(parts) if parts else np.zeros((0, size, size, 3), np.uint8)
