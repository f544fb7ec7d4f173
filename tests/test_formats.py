"""Formats TensorFlow cannot decode (TIFF, PPM, JPEG 2000, 16-bit scans) go through Pillow, in every path.

Messidor and DRIVE ship TIFF and STARE ships PPM. A file in one of these formats gives a member
exactly the pixels of the same image saved as PNG, in training's pipeline and in ``predict``;
``prepare`` keeps it, and drops a broken one with its reason.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import tensorflow as tf

from ensemble.inference import check_file, image_batches  # noqa: E402
from members.data import labels as L  # noqa: E402
from members.data.pillow_image import decode_bytes, tensorflow_decodes  # noqa: E402
from members.data.pipeline import decode, make_dataset  # noqa: E402
from members.data.synthetic import render_fundus  # noqa: E402

LOSSLESS = {  # file name: Pillow save arguments
    "eye.tif": {"format": "TIFF"},
    "eye_lzw.tiff": {"format": "TIFF", "compression": "tiff_lzw"},
    "eye.ppm": {"format": "PPM"},
    "eye.jp2": {"format": "JPEG2000", "irreversible": False},  # the reversible wavelet: lossless
}


@pytest.fixture(scope="module")
def fundus() -> np.ndarray:
    frame = np.zeros((50, 62, 3), np.uint8)
    frame[2:48, 8:54] = render_fundus(2, size=46, rng=np.random.default_rng(5))
    return frame


@pytest.fixture(scope="module")
def files(tmp_path_factory, fundus):
    folder = tmp_path_factory.mktemp("formats")
    Image.fromarray(fundus).save(folder / "eye.png")
    for name, kwargs in LOSSLESS.items():
        Image.fromarray(fundus).save(folder / name, **kwargs)
    return folder


def _decoded(path) -> np.ndarray:
    return decode(tf.constant(path.read_bytes()), 32).numpy()


@pytest.mark.parametrize("name", list(LOSSLESS))
def test_a_lossless_file_decodes_to_the_pixels_of_its_png(files, fundus, name):
    data = (files / name).read_bytes()
    assert not tensorflow_decodes(data[:12])  # it really takes the Pillow branch
    assert np.array_equal(_decoded(files / name), fundus)
    assert np.array_equal(_decoded(files / "eye.png"), fundus)
    assert L.check_image(files / name) is None and check_file(str(files / name)) is None


def test_training_and_predict_feed_a_tiff_the_arrays_of_its_png(files):
    paths = [str(files / "eye.png"), str(files / "eye.tif"), str(files / "eye.jp2")]
    variants = [(24, "none", False), (40, "ben", True)]
    (indices, batches), = list(image_batches(paths, variants, batch_size=8))
    assert indices.numpy().tolist() == [0, 1, 2]
    for variant, batch in zip(variants, batches, strict=True):
        fed = batch.numpy()
        assert np.array_equal(fed[1], fed[0]) and np.array_equal(fed[2], fed[0]), variant
        ds = make_dataset(paths, np.zeros(3), size=variant[0], batch_size=8, preprocessing=variant[1],
                          fundus_crop=variant[2], cache="none")
        train = np.concatenate([x.numpy() for x, _ in ds])
        assert np.array_equal(train, fed.astype(np.float32)), variant


def test_16_bit_tiff_and_16_bit_png_give_the_same_pixels(tmp_path):
    deep = (np.arange(30 * 40, dtype=np.uint16).reshape(30, 40) * 53).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    Image.fromarray(deep).save(tmp_path / "deep.tif")
    assert Image.open(tmp_path / "deep.tif").mode.startswith("I;16")
    png, tif = _decoded(tmp_path / "deep.png"), _decoded(tmp_path / "deep.tif")
    assert tif.shape == (30, 40, 3) and np.array_equal(tif, png)  # TensorFlow keeps a 16-bit PNG's high byte
    assert np.array_equal(tif[..., 0], (deep >> 8).astype(np.uint8))


def test_other_modes_become_rgb(tmp_path, fundus):
    cmyk = Image.fromarray(fundus).convert("CMYK")
    cmyk.save(tmp_path / "cmyk.tif")
    assert np.array_equal(_decoded(tmp_path / "cmyk.tif"), np.asarray(cmyk.convert("RGB")))
    grey = Image.fromarray(fundus).convert("L")
    grey.save(tmp_path / "grey.pgm")
    assert np.array_equal(_decoded(tmp_path / "grey.pgm"), np.repeat(np.asarray(grey)[..., None], 3, axis=2))
    unit = np.linspace(0.0, 1.0, 12, dtype=np.float32).reshape(3, 4)
    Image.fromarray(unit, mode="F").save(tmp_path / "unit.tif")
    assert np.array_equal(_decoded(tmp_path / "unit.tif")[..., 1], np.round(unit * 255).astype(np.uint8))
    rgba = np.dstack([fundus, np.full(fundus.shape[:2], 7, np.uint8)])
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "alpha.tif")
    assert np.array_equal(_decoded(tmp_path / "alpha.tif"), fundus)  # the alpha channel is dropped


def test_a_multi_page_tiff_gives_its_first_page(tmp_path):
    pages = [Image.fromarray(np.full((10, 12, 3), v, np.uint8)) for v in (40, 200)]
    pages[0].save(tmp_path / "pages.tif", save_all=True, append_images=pages[1:])
    assert Image.open(tmp_path / "pages.tif").n_frames == 2
    assert np.all(_decoded(tmp_path / "pages.tif") == 40)
    assert np.all(decode_bytes((tmp_path / "pages.tif").read_bytes()) == 40)


def test_a_broken_tiff_is_dropped_with_its_reason_and_skipped_by_predict(files, tmp_path):
    data = (files / "eye.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 2])
    assert L.check_image(tmp_path / "cut.tif") == L.REASON_UNDECODABLE
    (tmp_path / "junk.tif").write_bytes(b"II*\x00" + b"\x00" * 40)  # a TIFF magic and nothing behind it
    assert L.check_image(tmp_path / "junk.tif") == L.REASON_UNDECODABLE
    paths = [str(tmp_path / "cut.tif"), str(files / "eye.tif"), str(tmp_path / "junk.tif")]
    (indices, _), = list(image_batches(paths, [(16, "none", False)], batch_size=8))
    assert indices.numpy().tolist() == [1]  # the broken files are left out, the good one is graded


def test_the_in_graph_test_matches_the_python_one():
    from members.data.pipeline import tensorflow_decodes as in_graph

    heads = {b"\xff\xd8\xff\xe0" + bytes(8): True, b"\x89PNG\r\n\x1a\n" + bytes(4): True, b"GIF89a" + bytes(6): True,
             b"BM" + bytes(10): True, b"RIFF\x00\x00\x00\x00WEBP": True, b"RIFF\x00\x00\x00\x00WAVE": False,
             b"II*\x00" + bytes(8): False, b"MM\x00*" + bytes(8): False, b"P6\n12 10\n255": False,
             b"\x00\x00\x00\x0cjP  \r\n\x87\n": False}
    for head, expected in heads.items():
        assert tensorflow_decodes(head) is expected, head
        assert bool(in_graph(tf.constant(head + b"rest")).numpy()) is expected, head


def test_a_messidor_like_set_of_tiffs_named_without_extension_is_prepared(tmp_path, fundus):
    """Class folders and a labels CSV whose names leave the .tif off: every TIFF is kept."""
    from members.data.dataset import prepare_csv, prepare_folders

    for grade in range(2):
        for i in range(6):
            path = tmp_path / "classes" / str(grade) / f"eye{grade}{i}.tif"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.roll(fundus, 6 * grade + i, axis=1)).save(path)  # each its own photo
    assert prepare_folders(tmp_path / "w1", tmp_path / "classes", progress=False).kept == 12
    flat = tmp_path / "flat"
    flat.mkdir()
    rows = []
    for path in sorted((tmp_path / "classes").rglob("*.tif")):
        (flat / path.name).write_bytes(path.read_bytes())
        rows.append(f"{path.stem},{path.parent.name}")
    (tmp_path / "labels.csv").write_text("image,level\n" + "\n".join(rows) + "\n")
    result = prepare_csv(tmp_path / "w2", tmp_path / "labels.csv", flat, progress=False)
    assert result.kept == 12 and result.skipped == {}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_an_exif_orientation_is_applied_as_photo_viewers_apply_it(tmp_path, fundus, orientation):
    """decode_jpeg ignores EXIF orientation: a phone photo stored sideways reached members sideways."""
    from PIL import ImageOps

    from members.data.pillow_image import orient

    image = Image.fromarray(fundus)
    exif = image.getexif()
    exif[0x0112] = orientation
    for fmt, name in (("JPEG", "eye.jpeg"), ("TIFF", "eye.tif")):  # TensorFlow's path and Pillow's
        kwargs = {"quality": 100, "subsampling": 0} if fmt == "JPEG" else {}
        image.save(tmp_path / name, fmt, exif=exif.tobytes(), **kwargs)
        with Image.open(tmp_path / name) as im:
            shown = np.asarray(ImageOps.exif_transpose(im).convert("RGB")).astype(int)
        decoded = _decoded(tmp_path / name)
        if fmt == "JPEG":  # TensorFlow's decode, then the turn the datasets apply from their orientation table
            from members.data.pipeline import orientation_table, upright

            path = str(tmp_path / name)
            turns = orientation_table([path])
            assert (turns is None) == (orientation == 1)
            decoded = upright(tf.constant(decoded), tf.constant(path), turns).numpy()
        decoded = decoded.astype(int)
        assert decoded.shape == shown.shape == orient(fundus, orientation).shape, (fmt, orientation)
        assert np.abs(decoded - shown).mean() < 1.5, (fmt, orientation)  # JPEG: TensorFlow's and Pillow's IDCT


def test_the_exif_block_is_found_after_a_large_icc_profile(tmp_path, fundus):
    """Cameras write an ICC profile (APP2) of several KiB before the Exif block: it was read only in the first 4 KiB."""
    import io
    import struct

    from members.data.pillow_image import jpeg_orientation

    image = Image.fromarray(fundus)
    exif = image.getexif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    image.save(buf, "JPEG", exif=exif.tobytes())
    data = buf.getvalue()
    profile = b"ICC_PROFILE\x00" + bytes(20000)
    late = data[:2] + b"\xff\xe2" + struct.pack(">H", len(profile) + 2) + profile + data[2:]
    (tmp_path / "late.jpeg").write_bytes(late)
    with open(tmp_path / "late.jpeg", "rb") as f:
        assert jpeg_orientation(f) == 6
    with Image.open(tmp_path / "late.jpeg") as im:
        assert im.getexif()[0x0112] == 6  # Pillow agrees that the file is tagged
    for broken in (b"", b"\xff\xd8", b"\xff\xd8\xff\xe1\x00", b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00garbage!"):
        assert jpeg_orientation(io.BytesIO(broken)) == 1
    # fill bytes before a marker and a standalone marker, both allowed by the JPEG standard
    padded = data[:2] + b"\xff\xff\xff\xd0" + b"\xff\xff" + data[3:]
    assert jpeg_orientation(io.BytesIO(padded)) == 6


def test_training_and_predict_turn_a_sideways_photo_upright(tmp_path, fundus):
    upright = Image.fromarray(fundus)
    upright.save(tmp_path / "upright.jpeg", quality=100, subsampling=0)
    sideways = Image.fromarray(np.ascontiguousarray(np.rot90(fundus, 1)))  # stored turned, tagged to be turned back
    exif = sideways.getexif()
    exif[0x0112] = 6
    sideways.save(tmp_path / "sideways.jpeg", quality=100, subsampling=0, exif=exif.tobytes())
    paths = [str(tmp_path / "upright.jpeg"), str(tmp_path / "sideways.jpeg")]
    (_, (batch,)), = list(image_batches(paths, [(32, "none", False)], batch_size=4))
    fed = batch.numpy().astype(np.float32)
    assert np.abs(fed[1] - fed[0]).mean() < 2.0  # turned: the same eye, up to JPEG rounding
    assert np.abs(np.rot90(fed[1], 1) - fed[0]).mean() > 10 * np.abs(fed[1] - fed[0]).mean()
    ds = make_dataset(paths, np.zeros(2), size=32, batch_size=4, preprocessing="none", fundus_crop=False, cache="none")
    assert np.array_equal(np.concatenate([x.numpy() for x, _ in ds]), fed)
