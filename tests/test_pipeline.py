"""Tests for members/data/pipeline.py: decode, resize, cache, augmentation, dataset order and shapes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from members.infra.errors import UserError
from members.data.pipeline import (
    Augmentation,
    _warp_batch,
    affine_matrices,
    augment_batch,
    cache_mode,
    decode,
    load_image,
    load_images,
    make_dataset,
)

SIZE = 16
RNG = np.random.default_rng(0)
FULL = Augmentation(rotation=30, width_shift=0.1, height_shift=0.1, horizontal_flip=True, vertical_flip=True)
IDENTITY_ROW = [1, 0, 0, 0, 1, 0, 0, 0]


def _write(path, pixels: np.ndarray, fmt: str) -> str:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    path.write_bytes(buffer.getvalue())
    return str(path)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Eight 16 px PNGs (lossless, so decoded pixels are known) named .png, labels 0..7."""
    folder = tmp_path_factory.mktemp("images")
    pixels = RNG.integers(0, 256, (8, SIZE, SIZE, 3), dtype=np.uint8)
    paths = [_write(folder / f"{i}.png", p, "PNG") for i, p in enumerate(pixels)]
    return paths, pixels, np.arange(8)


def _epoch(ds) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*[(b[0].numpy(), b[1].numpy()) for b in ds])
    return np.concatenate(xs), np.concatenate(ys)


def test_shapes_and_dtypes(images):
    paths, _, labels = images
    ds = make_dataset(paths, labels, size=SIZE, batch_size=3, sample_weights=np.linspace(0.5, 2, 8))
    batches = list(ds)
    assert [int(b[0].shape[0]) for b in batches] == [3, 3, 2]
    x, y, w = batches[0]
    assert x.shape == (3, SIZE, SIZE, 3) and x.dtype == tf.float32
    assert y.dtype == tf.int32 and w.dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= 255.0


def test_evaluation_keeps_order_and_is_not_augmented(images):
    paths, pixels, labels = images
    ds = make_dataset(paths, labels, size=SIZE, batch_size=3, training=False, augmentation=FULL, cache="none")
    x, y = _epoch(ds)
    assert y.tolist() == labels.tolist()
    np.testing.assert_array_equal(x, pixels.astype(np.float32))
    np.testing.assert_array_equal(load_images(paths, SIZE), pixels)


def test_training_augmentation_changes_images_and_is_reproducible(images):
    paths, pixels, labels = images
    make = lambda seed: make_dataset(paths, labels, size=SIZE, batch_size=4, training=True,  # noqa: E731
                                     augmentation=FULL, seed=seed)
    x1, y1 = _epoch(make(3))
    x2, y2 = _epoch(make(3))
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert sorted(y1.tolist()) == labels.tolist()  # a shuffled permutation of every image
    changed = [not np.array_equal(x, pixels[label]) for x, label in zip(x1, y1)]
    assert all(changed)
    x3, _ = _epoch(make(4))
    assert not np.array_equal(x1, x3)


def test_training_reshuffles_and_reaugments_each_epoch(images):
    paths, _, labels = images
    ds = make_dataset(paths, labels, size=SIZE, batch_size=8, training=True, augmentation=FULL, seed=1)
    epochs = [_epoch(ds) for _ in range(4)]
    orders = [tuple(y.tolist()) for _, y in epochs]
    by_image = [x[np.argsort(y)] for x, y in epochs]  # labels 0..7 name the images
    for e in range(3):  # every pair of consecutive epochs, the later ones from the cache included
        assert orders[e] != orders[e + 1], e
        for i in range(len(labels)):  # each image gets a new transform
            assert not np.array_equal(by_image[e][i], by_image[e + 1][i]), (e, i)


def test_memory_cache_first_epoch_streams_and_later_epochs_reshuffle_the_cache(images, tmp_path):
    """Epoch 1 reads the files in a seeded random order; later epochs reshuffle the cached images, no file read."""
    import shutil

    _, pixels, labels = images
    copies = [shutil.copy(p, tmp_path / f"{i}.png") for i, p in enumerate(images[0])]
    ds = make_dataset(copies, labels, size=SIZE, batch_size=3, training=True, cache="memory", seed=5)
    x1, y1 = _epoch(ds)
    for path in copies:  # later epochs must come from the cache
        Path(path).unlink()
    x2, y2 = _epoch(ds)
    x3, y3 = _epoch(ds)
    for x, y in ((x1, y1), (x2, y2), (x3, y3)):
        assert sorted(y.tolist()) == labels.tolist()
        np.testing.assert_array_equal(x, pixels[y].astype(np.float32))  # no augmentation: the images themselves
    assert y1.tolist() != labels.tolist()  # the first epoch is shuffled too
    assert len({tuple(y1), tuple(y2), tuple(y3)}) == 3
    again = make_dataset(images[0], labels, size=SIZE, batch_size=3, training=True, cache="memory", seed=5)
    assert _epoch(again)[1].tolist() == y1.tolist()  # seeded


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_identity_transform_leaves_image_unchanged(images, interpolation):
    _, pixels, _ = images
    still = Augmentation(interpolation=interpolation)
    rows = affine_matrices(4, SIZE, still, tf.constant([1, 2], tf.int64)).numpy()
    np.testing.assert_allclose(rows, np.tile(IDENTITY_ROW, (4, 1)), atol=1e-5)
    np.testing.assert_array_equal(_warp_batch(pixels[:4], rows, interpolation), pixels[:4])
    out = augment_batch(tf.constant(pixels[:4]), tf.constant([1, 2], tf.int64), still)
    np.testing.assert_array_equal(out.numpy(), pixels[:4].astype(np.float32))


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_flip_only_augmentation_equals_tf_reverse(images, interpolation):
    _, pixels, _ = images
    batch = tf.constant(pixels)
    for aug, axis in [(Augmentation(horizontal_flip=True, interpolation=interpolation), 2),
                      (Augmentation(vertical_flip=True, interpolation=interpolation), 1)]:
        out = augment_batch(batch, tf.constant([5, 6], tf.int64), aug).numpy()
        flipped = tf.reverse(batch, axis=[axis]).numpy().astype(np.float32)
        same = [np.array_equal(o, p) for o, p in zip(out, pixels.astype(np.float32))]
        reversed_ = [np.array_equal(o, f) for o, f in zip(out, flipped)]
        assert all(s or r for s, r in zip(same, reversed_))
        assert any(reversed_) and any(same)  # with 8 images and this seed, both happen


def test_bad_interpolation_is_a_user_error():
    with pytest.raises(UserError, match="interpolation"):
        Augmentation(rotation=10, interpolation="cubic")


def test_reduced_scale_decode_gives_the_requested_size(tmp_path):
    y, x = np.mgrid[0:128, 0:96]
    pixels = np.stack([x * 2, y * 2, (x + y)], axis=-1).astype(np.uint8)
    path = _write(tmp_path / "big.jpeg", pixels, "JPEG")
    data = tf.io.read_file(path)
    # the largest power-of-two ratio that keeps the short side (96) at least the target
    assert tuple(decode(data, 40).shape) == (64, 48, 3)  # ratio 2
    assert tuple(decode(data, 24).shape) == (32, 24, 3)  # ratio 4: exactly the target
    assert tuple(decode(data, 12).shape) == (16, 12, 3)  # ratio 8
    assert tuple(decode(data, 60).shape) == (128, 96, 3)  # no reduction below the target
    for size in (12, 24, 40, 60):
        image = load_image(tf.constant(path), size)
        assert tuple(image.shape) == (size, size, 3) and image.dtype == tf.uint8
    full = tf.image.resize(tf.cast(tf.io.decode_jpeg(data)[16:112], tf.float32), [12, 12], antialias=True)
    reduced = tf.cast(load_image(tf.constant(path), 12), tf.float32)
    assert float(tf.reduce_mean(tf.abs(full - reduced))) < 4.0


def test_skipped_resize_matches_the_resize_it_replaces(images):
    """load_image skips resizing a decode that already has the target size; ensemble inference
    resizes with square_resize: both must give the same pixels."""
    from members.data.pipeline import square_resize

    _, pixels, _ = images
    resized = tf.cast(tf.clip_by_value(tf.round(square_resize(tf.constant(pixels[0]), SIZE)), 0, 255), tf.uint8)
    np.testing.assert_array_equal(resized.numpy(), pixels[0])


def test_png_content_behind_a_jpeg_name_decodes(tmp_path):
    pixels = RNG.integers(0, 256, (20, 20, 3), dtype=np.uint8)
    path = _write(tmp_path / "actually_png.jpeg", pixels, "PNG")
    image = load_image(tf.constant(path), 20).numpy()
    np.testing.assert_array_equal(image, pixels)


@pytest.mark.parametrize("mode,shape", [("L", (12, 12)), ("RGBA", (12, 12, 4))])
def test_grayscale_and_rgba_png_decode_to_three_channels(tmp_path, mode, shape):
    pixels = RNG.integers(0, 256, shape, dtype=np.uint8)
    path = tmp_path / f"{mode}.png"
    Image.fromarray(pixels, mode=mode).save(path)
    image = load_image(tf.constant(str(path)), 12).numpy()
    assert image.shape == (12, 12, 3)
    expected = np.repeat(pixels[..., None], 3, axis=-1) if mode == "L" else pixels[..., :3]
    np.testing.assert_array_equal(image, expected)


def test_non_square_images_are_centre_cropped(tmp_path):
    pixels = np.zeros((16, 32, 3), np.uint8)
    pixels[:, 8:24] = 200  # the centre square is bright, the sides black
    path = _write(tmp_path / "wide.png", pixels, "PNG")
    image = load_image(tf.constant(path), 16).numpy()
    assert image.shape == (16, 16, 3) and image.min() == 200


def test_disk_cache_writes_a_file_under_cache_dir(images, tmp_path):
    paths, _, labels = images
    ds = make_dataset(paths, labels, size=SIZE, batch_size=4, cache="disk", cache_dir=tmp_path / "cache")
    x, _ = _epoch(ds)
    files = list((tmp_path / "cache").glob("cache_*"))
    assert files and any(f.stat().st_size > 0 for f in files)
    np.testing.assert_array_equal(_epoch(ds)[0], x)


@pytest.mark.parametrize("cache", ["disk", "none"])
def test_training_without_memory_cache_sees_every_image_each_epoch(images, tmp_path, monkeypatch, cache):
    from members.data import pipeline

    monkeypatch.setattr(pipeline, "DISK_SHARD_IMAGES", 3)  # 8 images -> 3 shard files
    paths, _, labels = images
    make = lambda: make_dataset(paths, labels, size=SIZE, batch_size=3, training=True,  # noqa: E731
                                augmentation=FULL, cache=cache, cache_dir=tmp_path, seed=2)
    ds = make()
    (x1, y1), (x2, y2) = _epoch(ds), _epoch(ds)
    assert sorted(y1.tolist()) == sorted(y2.tolist()) == labels.tolist()
    assert not np.array_equal(x1, x2)
    x3, y3 = _epoch(make())  # a fresh dataset with the same seed repeats the first epoch
    np.testing.assert_array_equal(y3, y1)
    np.testing.assert_array_equal(x3, x1)
    if cache == "disk":
        assert len({f.name.split(".")[0] for f in tmp_path.glob("cache_*")}) == 3


def test_stale_cache_lockfile_from_a_killed_run_is_cleared(images, tmp_path):
    from members.data.pipeline import _cache_prefix

    paths, pixels, labels = images
    prefix = _cache_prefix(tmp_path, paths, SIZE, "none", "ordered")
    stale = tmp_path / f"{prefix.rsplit('/', 1)[-1]}_0.lockfile"
    stale.write_text("Created at: 0")
    ds = make_dataset(paths, labels, size=SIZE, batch_size=4, cache="disk", cache_dir=tmp_path)
    np.testing.assert_array_equal(_epoch(ds)[0], pixels.astype(np.float32))
    assert not stale.exists()


def test_cache_mode():
    assert cache_mode("auto", 10, 32, budget_bytes=10 * 32 * 32 * 3) == "memory"
    assert cache_mode("auto", 11, 32, budget_bytes=10 * 32 * 32 * 3) == "disk"
    assert cache_mode("none", 10**9, 512) == "none"
    assert cache_mode("memory", 10**9, 512) == "memory"
    assert cache_mode("auto", 10, 32) == "memory"  # the default budget is a quarter of RAM


@pytest.mark.parametrize("cache", ["memory", "disk", "none"])
def test_a_file_name_that_is_not_utf8_is_read(tmp_path, cache):
    """A str name with undecodable bytes (``os.fsdecode(b'caf\\xe9.png')``) could not become a string tensor; the
    datasets take bytes, as predict's did."""
    import os

    pixels = RNG.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    latin = _write(Path(os.fsdecode(os.fsencode(str(tmp_path)) + b"/caf\xe9.png")), pixels, "PNG")
    np.testing.assert_array_equal(load_images([latin], SIZE)[0], pixels)
    ds = make_dataset([latin], [1], size=SIZE, batch_size=1, training=True, cache=cache, cache_dir=tmp_path / "c")
    x, y = _epoch(ds)
    assert x.shape == (1, SIZE, SIZE, 3) and y.tolist() == [1]


def test_a_large_decode_is_resized_from_uint8_without_a_float_copy_and_to_the_same_pixels():
    """fit_image cast the full-resolution decode to float32 before resizing: 1.7 GB more for a 12000 px scan. The
    resampler reads uint8 itself, bit for bit as it reads the float copy."""
    from members.data.pipeline import fit_image

    graph = tf.function(lambda x: fit_image(x, SIZE)).get_concrete_function(
        tf.TensorSpec([None, None, 3], tf.uint8)).graph.as_graph_def()
    nodes = [*graph.node, *(n for f in graph.library.function for n in f.node_def)]  # tf.cond's branches too
    resizes = [n for n in nodes if n.op == "ScaleAndTranslate"]
    assert resizes and all(n.attr["T"].type == tf.uint8.as_datatype_enum for n in resizes)
    for h, w in ((300, 200), (37, 53), (SIZE, 3 * SIZE)):
        pixels = tf.constant(RNG.integers(0, 256, (h, w, 3), dtype=np.uint8))
        side = min(h, w)
        square = pixels[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
        via_float = tf.image.resize(tf.cast(square, tf.float32), [SIZE, SIZE], method="bilinear", antialias=True)
        expected = tf.cast(tf.clip_by_value(tf.round(via_float), 0, 255), tf.uint8)
        np.testing.assert_array_equal(fit_image(pixels, SIZE).numpy(), expected.numpy())
