"""Tests for members/data/labels.py: CSV reading, name resolution, decode checks, row checks."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from members.data import labels as L
from members.infra.errors import UserError

RNG = np.random.default_rng(0)
PIXELS = RNG.integers(0, 255, (16, 16, 3), dtype=np.uint8)


def distinct_pixels(path: Path) -> np.ndarray:
    """PIXELS with the file name's CRC in the first row: every file its own photo (no byte-identical copies)."""
    pixels = PIXELS.copy()
    pixels[0, :4, :] = np.frombuffer(zlib.crc32(path.name.encode()).to_bytes(4, "little"), np.uint8)[:, None]
    return pixels


def save(path, mode="RGB", fmt="JPEG", **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(distinct_pixels(path)).convert(mode).save(path, fmt, **kw)
    return path


def png16(path):
    Image.fromarray((np.arange(256, dtype=np.uint16).reshape(16, 16) * 257)).save(path, "PNG")
    assert Image.open(path).mode == "I;16"
    return path


@pytest.mark.parametrize("text,expected", [
    ("3", 3), ("3.0", 3), (" 4 ", 4), ("+2", 2), ("0", 0), ("12", 12),
    ("", None), ("-1", None), ("2.5", None), ("abc", None), ("1e0", None), ("3.", 3),
    ("12345678901234567890", 12345678901234567890),
])
def test_parse_label(text, expected):
    assert L.parse_label(text) == expected


# ---- name resolution -------------------------------------------------------------------

@pytest.fixture()
def root(tmp_path):
    images = tmp_path / "images"
    save(images / "10_left.JPEG")
    save(images / "a b ñandú.png", fmt="PNG")
    save(images / "sub" / "x.jpg")
    save(tmp_path / "outside.jpeg")
    (images / "link.jpeg").symlink_to(tmp_path / "outside.jpeg")
    (images / "inner_link.jpeg").symlink_to(images / "10_left.JPEG")
    return images


@pytest.mark.parametrize("name,expected", [
    ("10_left", "10_left.JPEG"),
    ("10_left.jpeg", "10_left.JPEG"),
    ("10_LEFT.JPEG", "10_left.JPEG"),
    ("10_left.JPEG", "10_left.JPEG"),
    ("a b ñandú", "a b ñandú.png"),
    ("a b ñandú.png", "a b ñandú.png"),
    ("a b n\u0303andu\u0301.png", "a b ñandú.png"),  # decomposed (NFD) spelling of the same name
    ("sub/x", "sub/x.jpg"),
    ("sub/../10_left", "10_left.JPEG"),
    ("inner_link", "inner_link.jpeg"),
])
def test_resolve_finds_files(root, name, expected):
    assert L.NameResolver(root).resolve(name) == (expected, None)


def test_resolve_absolute_path_inside_is_accepted(root):
    assert L.NameResolver(root).resolve(str(root / "10_left.JPEG")) == ("10_left.JPEG", None)


@pytest.mark.parametrize("name", ["../outside.jpeg", "../outside", "link", "link.jpeg", "sub/../../outside"])
def test_resolve_refuses_names_outside(root, name):
    assert L.NameResolver(root).resolve(name) == (None, L.REASON_OUTSIDE)


def test_resolve_refuses_absolute_path_outside(root, tmp_path):
    assert L.NameResolver(root).resolve(str(tmp_path / "outside.jpeg")) == (None, L.REASON_OUTSIDE)


@pytest.mark.parametrize("name", ["nope", "10_right", "sub", "nosuchdir/x"])
def test_resolve_missing(root, name):
    assert L.NameResolver(root).resolve(name) == (None, L.REASON_MISSING)


# ---- decode checks (what tf.io.decode_image(channels=3) reads) ----------------------------

@pytest.mark.parametrize("mode,fmt", [
    ("RGB", "JPEG"), ("L", "JPEG"), ("CMYK", "JPEG"), ("RGB", "PNG"), ("L", "PNG"), ("RGBA", "PNG"),
    ("P", "PNG"), ("LA", "PNG"), ("1", "PNG"), ("RGB", "BMP"), ("L", "BMP"), ("RGBA", "BMP"), ("P", "GIF"),
])
def test_check_image_accepts_decodable(tmp_path, mode, fmt):
    assert L.check_image(save(tmp_path / f"img.{fmt.lower()}", mode, fmt)) is None


def test_check_image_accepts_16_bit_png_and_png_behind_jpeg_name(tmp_path):
    assert L.check_image(png16(tmp_path / "deep.png")) is None
    assert L.check_image(save(tmp_path / "really_png.jpeg", fmt="PNG")) is None


def test_check_image_big_jpeg_uses_draft(tmp_path):
    big = tmp_path / "big.jpeg"
    pixels = np.zeros((1200, 1600, 3), np.uint8)
    pixels[:, :800] = (90, 40, 20)  # two halves: not a flat frame
    Image.fromarray(pixels).save(big, quality=90)
    assert L.check_image(big) is None


def test_check_image_refuses_flat_frames_of_any_colour_and_animated_webp(tmp_path):
    flat = {name: tmp_path / f"{name}.{ext}" for name, ext in
            (("black", "jpeg"), ("brown", "png"), ("white", "jpeg"), ("dot", "png"))}
    Image.new("RGB", (640, 480), (0, 0, 0)).save(flat["black"], quality=90)
    Image.new("RGB", (64, 48), (100, 50, 20)).save(flat["brown"])  # spread across channels, flat in each
    Image.new("RGB", (640, 480), (255, 255, 255)).save(flat["white"], quality=75)
    Image.new("RGB", (1, 1), (100, 50, 20)).save(flat["dot"])
    for path in flat.values():
        assert L.check_image(path) == L.REASON_FLAT, path
    frame = Image.fromarray(np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8))
    frame.save(tmp_path / "still.webp")
    frame.save(tmp_path / "anim.webp", save_all=True, append_images=[frame.rotate(90)])
    assert L.check_image(tmp_path / "still.webp") is None
    assert L.check_image(tmp_path / "anim.webp") == L.REASON_ANIMATED


def test_check_image_rejects(tmp_path):
    from members.data.integrity import REASON_DAMAGED_PNG

    empty = tmp_path / "empty.jpeg"
    empty.write_bytes(b"")
    text = tmp_path / "text.jpeg"
    text.write_text("not an image at all")
    good = save(tmp_path / "good.jpeg")
    cut = tmp_path / "cut.jpeg"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    cut_png = tmp_path / "cut.png"
    cut_png.write_bytes(save(tmp_path / "full.png", fmt="PNG").read_bytes()[:200])
    assert L.check_image(empty) == L.REASON_EMPTY
    assert L.check_image(text) == L.REASON_UNDECODABLE
    assert L.check_image(cut) == L.REASON_UNDECODABLE
    assert L.check_image(cut_png) == REASON_DAMAGED_PNG  # its end missing: predict's reason for it too
    assert L.check_image(save(tmp_path / "t.tiff", fmt="TIFF")) is None  # decoded by Pillow
    assert L.check_image(save(tmp_path / "mono.bmp", "1", "BMP")) == L.REASON_FORMAT
    assert L.check_image(save(tmp_path / "palette.bmp", "P", "BMP")) == L.REASON_FORMAT  # TF ignores palettes
    assert "convert it to PNG or JPEG" in L.REASON_FORMAT


@pytest.mark.parametrize("damage", ["crc", "short"])
def test_check_image_drops_a_png_pillow_reads_and_tensorflow_refuses(tmp_path, damage):
    import tensorflow as tf

    from ensemble.inference import check_file
    from members.data.integrity import REASON_DAMAGED_PNG
    from tests.helpers import damaged_png

    path = tmp_path / "eye.png"
    path.write_bytes(damaged_png(PIXELS, damage))
    Image.open(path).load()  # Pillow reads it: its check alone kept the file
    with pytest.raises(tf.errors.InvalidArgumentError, match="Invalid PNG data"):
        tf.io.decode_image(path.read_bytes(), channels=3)
    assert L.check_image(path) == REASON_DAMAGED_PNG
    assert check_file(str(path)) == "is a damaged PNG" + REASON_DAMAGED_PNG.split("a damaged PNG")[1]  # predict alike
    path.write_bytes(damaged_png(PIXELS, "none"))
    assert L.check_image(path) is None and check_file(str(path)) is None
    table = pd.DataFrame({"row": [2, 3], "image": ["eye.png", "ok.png"], "label_text": ["1", "0"]})
    path.write_bytes(damaged_png(PIXELS, damage))
    save(tmp_path / "ok.png", fmt="PNG")
    checked = L.check_rows(table, tmp_path, progress=False)
    assert checked.kept["image"].tolist() == ["ok.png"]
    assert checked.dropped[["image", "reason"]].values.tolist() == [["eye.png", REASON_DAMAGED_PNG]]


def test_a_jpeg_whose_data_ends_early_is_dropped_by_prepare_and_not_graded_by_predict(tmp_path, capfd):
    """libjpeg said "Corrupt JPEG data: premature end of data segment" on every pass, naming no file, and filled the
    rest of the picture with grey; prepare kept the file, predict graded it."""
    import tensorflow as tf

    from ensemble.inference import check_file
    from members.data.integrity import REASON_DAMAGED_JPEG
    from tests.helpers import cut_short_jpeg

    path = tmp_path / "eye.jpeg"
    path.write_bytes(cut_short_jpeg())
    capfd.readouterr()
    pixels = tf.io.decode_jpeg(path.read_bytes(), channels=3).numpy()  # decodes: no error to catch
    assert "premature end of data segment" in capfd.readouterr().err
    assert (pixels[-8:, -8:] == 128).all()
    assert L.check_image(path) == REASON_DAMAGED_JPEG
    assert check_file(str(path)) == REASON_DAMAGED_JPEG.replace("image file is", "is")
    table = pd.DataFrame({"row": [2], "image": ["eye.jpeg"], "label_text": ["1"]})
    assert L.check_rows(table, tmp_path, progress=False).dropped["reason"].tolist() == [REASON_DAMAGED_JPEG]
    whole = tmp_path / "whole.jpeg"  # the same picture undamaged, and one of flat grey (flat, not damaged)
    yy, xx = np.mgrid[:128, :128]
    Image.fromarray(np.stack([xx * 2, yy * 2, xx + yy], -1).astype(np.uint8)).save(whole, quality=90)
    Image.new("RGB", (64, 64), (128, 128, 128)).save(tmp_path / "grey.jpeg")
    assert L.check_image(whole) is None and check_file(str(whole)) is None
    assert L.check_image(tmp_path / "grey.jpeg") == L.REASON_FLAT and check_file(str(tmp_path / "grey.jpeg")) is None
    noise = np.clip(np.random.default_rng(0).normal(100, 40, (256, 256, 3)), 0, 255).astype(np.uint8)
    for name, pad in (("band", (slice(200, None), slice(None))), ("strip", (slice(None), slice(192, None)))):
        padded = noise.copy()
        padded[pad] = 128  # letterboxed or pillarboxed with mid-grey: whole, not damaged
        Image.fromarray(padded).save(tmp_path / f"{name}.jpeg", quality=90)
        assert L.check_image(tmp_path / f"{name}.jpeg") is None and check_file(str(tmp_path / f"{name}.jpeg")) is None


def test_check_image_decompression_bomb(tmp_path, monkeypatch):
    path = save(tmp_path / "img.png", fmt="PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)  # 16*16 = 256 > 2 * 50
    assert L.check_image(path) == L.REASON_TOO_LARGE


# ---- reading the CSV ----------------------------------------------------------------------

def test_read_csv_with_bom_crlf_and_blank_lines(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_bytes("\ufeffimage,level\r\n10_left,1\r\n\r\nñandú ojo,2\r\n".encode("utf-8"))
    table = L.read_labels_csv(path, image_column="image", label_column="level", split_column="split")
    assert table["image"].tolist() == ["10_left", "ñandú ojo"]
    assert table["label_text"].tolist() == ["1", "2"]
    assert table["row"].tolist() == [2, 4]
    assert "split_text" not in table


def test_read_csv_split_column_and_case_insensitive_header(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("Image,Level,SPLIT\na,1,Train\n")
    table = L.read_labels_csv(path, image_column="image", label_column="level", split_column="split")
    assert table["split_text"].tolist() == ["Train"]


def test_a_column_name_copied_with_its_trailing_space_matches(tmp_path):
    path = tmp_path / "IDRiD_Disease Grading_Training Labels.csv"  # the original header ends in a space
    path.write_text("Image name,Retinopathy grade,Risk of macular edema \nIDRiD_001,3,2\n")
    table = L.read_labels_csv(path, image_column="Image name ", label_column="Risk of macular edema ",
                              split_column="")
    assert table["image"].tolist() == ["IDRiD_001"] and table["label_text"].tolist() == ["2"]


@pytest.mark.parametrize("content,needle", [
    (None, "does not exist"),
    (b"", "is empty"),
    (b"image,level\n", "has a header but no rows"),
    (b"image,level\n\n\n", "has a header but no rows"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe binary", "not a UTF-8 CSV"),
    (b"name,grade\na,1\n",
     "its columns are 'name', 'grade'; name the ones to use with --image-column and --label-column"),
])
def test_read_csv_fatal_errors(tmp_path, content, needle):
    path = tmp_path / "labels.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UserError, match="labels.csv") as info:
        L.read_labels_csv(path, image_column="image", label_column="level", split_column="split")
    assert needle in str(info.value)


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


@pytest.mark.parametrize("name,make,needle", [
    ("trainLabels.csv.zip", lambda p: _zip(p, {"trainLabels.csv": b"image,level\na,1\n"}),
     "is a zip archive, not a CSV text file: extract it first (e.g. `unzip "),
    ("trainLabels.csv.gz", lambda p: p.write_bytes(__import__("gzip").compress(b"image,level\na,1\n")),
     "is a gzip archive, not a CSV text file: extract it first (e.g. `gunzip -k "),
    ("labels.xlsx", lambda p: _zip(p, {"[Content_Types].xml": b"<x/>", "xl/workbook.xml": b"<x/>"}),
     "is an Excel workbook (.xlsx), not a CSV text file: open it in Excel or LibreOffice and save it as CSV (UTF-8)"),
    ("labels.xls", lambda p: p.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)),
     "is an Excel workbook (.xls), not a CSV text file: open it in Excel"),
])
def test_an_archive_or_a_workbook_passed_as_labels_is_named_not_a_codec_error(tmp_path, name, make, needle):
    """A zipped trainLabels.csv or an Excel file got 'is not a UTF-8 CSV text file (codec can't decode…)'."""
    path = tmp_path / name
    make(path)
    with pytest.raises(UserError) as info:
        L.read_labels_csv(path, image_column="image", label_column="level", split_column="split")
    assert needle in str(info.value) and "codec" not in str(info.value)


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_semicolon_tab_and_bar_separated_labels_are_read(tmp_path, sep):
    """Excel in many locales saves CSV with ';' (and TSV exports use tabs): prepare used to refuse them."""
    path = tmp_path / "labels.csv"
    path.write_text(sep.join(["image", "level", "note"]) + "\n" + sep.join(["a_left", "2", "0,5 mm"]) + "\n")
    table = L.read_labels_csv(path, image_column="image", label_column="level", split_column="split")
    assert table["image"].tolist() == ["a_left"] and table["label_text"].tolist() == ["2"]


# ---- checking the rows --------------------------------------------------------------------

def test_check_rows_reasons_duplicates_and_conflicts(tmp_path):
    images = tmp_path / "images"
    for name in ["a", "b", "c", "d", "e"]:
        save(images / f"{name}.jpeg")
    (images / "empty.jpeg").write_bytes(b"")
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text(
        "image,level\n"
        "a,0\n"        # 2 kept
        "a.jpeg,0\n"   # 3 duplicate of a (same file), same label
        "b,1\n"        # 4 conflict
        "b,2\n"        # 5 conflict
        "c,\n"         # 6 empty label
        "d,-1\n"       # 7
        "e,2.5\n"      # 8
        "e,3.0\n"      # 9 kept (label 3)
        ",1\n"         # 10 no name
        "missing,1\n"  # 11
        "empty,1\n"    # 12
        "../x,1\n"     # 13
    )
    table = L.read_labels_csv(csv_path, image_column="image", label_column="level", split_column="split")
    result = L.check_rows(table, images, progress=False)
    assert result.kept[["row", "path", "label"]].values.tolist() == [[2, "a.jpeg", 0], [9, "e.jpeg", 3]]
    reasons = dict(zip(result.dropped["row"], result.dropped["reason"]))
    assert reasons == {3: L.REASON_DUPLICATE, 4: L.REASON_CONFLICT, 5: L.REASON_CONFLICT, 6: L.REASON_NO_LABEL,
                       7: L.REASON_BAD_LABEL, 8: L.REASON_BAD_LABEL, 10: L.REASON_NO_NAME, 11: L.REASON_MISSING,
                       12: L.REASON_EMPTY, 13: L.REASON_OUTSIDE}
    assert result.dropped.columns.tolist() == ["row", "image", "label", "reason"]
    assert not result.has_split


def test_check_rows_split_values(tmp_path):
    images = tmp_path / "images"
    for name in "abcd":
        save(images / f"{name}.jpeg")
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("image,level,split\na,0,TRAIN\nb,0,Test\nc,0,validation\nd,0,holdout\n")
    table = L.read_labels_csv(csv_path, image_column="image", label_column="level", split_column="split")
    result = L.check_rows(table, images, progress=False)
    assert result.kept["split"].tolist() == ["train", "test", "val"]
    assert result.dropped["reason"].tolist() == [L.REASON_BAD_SPLIT]


def test_check_rows_with_progress_bar_on_many_rows(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    lines = ["image,level"]
    for i in range(L.PROGRESS_MIN_ROWS + 40):  # each its own photo: byte-identical copies under two labels are dropped
        data, pixels = io.BytesIO(), PIXELS[:8, :8].copy()
        pixels.reshape(-1)[:2] = (i % 256, i // 256)
        Image.fromarray(pixels).save(data, "PNG")
        (images / f"{i}.png").write_bytes(data.getvalue())
        lines.append(f"{i},{i % 3}")
    (tmp_path / "l.csv").write_text("\n".join(lines) + "\n")
    table = L.read_labels_csv(tmp_path / "l.csv", image_column="image", label_column="level", split_column="split")
    result = L.check_rows(table, images, progress=True)
    assert len(result.kept) == L.PROGRESS_MIN_ROWS + 40
    assert result.kept["path"].tolist()[:2] == ["0.png", "1.png"]
    assert capsys.readouterr().out == ""  # progress goes to stderr only


def test_bare_names_are_found_in_sub_folders_and_windows_paths_read(tmp_path):
    """EyePACS delivered in parts (images/part1, images/part2) and CSVs written on Windows dropped every row."""
    images = tmp_path / "images"
    save(images / "part1" / "10_left.jpeg")
    save(images / "part2" / "10_right.jpeg")
    save(images / "part1" / "twice.jpeg")
    save(images / "part2" / "twice.jpeg", quality=50)  # another file under the same name
    save(images / "siteB" / "x.png")
    save(images / "work" / "ghost.png")
    (images / "work" / "dataset.json").write_text("{}")  # a workdir inside the images folder is not searched
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("image,level\n10_left,0\n10_right,1\ntwice,2\nsiteB\\x.png,3\nghost,1\nnowhere,0\n")
    table = L.read_labels_csv(csv_path, image_column="image", label_column="level", split_column="split")
    checked = L.check_rows(table, images, progress=False)
    assert dict(zip(checked.kept["image"], checked.kept["path"])) == {
        "10_left": "part1/10_left.jpeg", "10_right": "part2/10_right.jpeg", "siteB\\x.png": "siteB/x.png"}
    assert dict(zip(checked.dropped["image"], checked.dropped["reason"])) == {
        "twice": L.ambiguous_folders(["part1", "part2"]), "ghost": L.REASON_MISSING, "nowhere": L.REASON_MISSING}
    assert L.ambiguous_folders(["part1", "part2"]).startswith(
        "image name is in several sub-folders (part1, part2) as different files; name it with its sub-folder")
    notes = " ".join(checked.notes)
    assert "Note: 1 image names were Windows paths" in notes
    assert "Note: 2 image names were not in" in notes and "'10_left' → part1/10_left.jpeg" in notes


def test_names_in_many_sub_folders_are_looked_up_not_scanned(tmp_path, monkeypatch):
    """One folder per patient: each bare name was matched against every sub-folder (8,000 rows in 4,000 folders took
    256 s of CPU, 15 times 2,000 rows'); each name is now matched in the folders that hold one of its spellings."""
    images = tmp_path / "images"
    for pid in range(60):
        for eye in ("left", "right"):
            save(images / str(pid) / f"{pid}_{eye}.jpeg")
    save(images / "7" / "x.png")  # another extension than listed: found by the last resort, in its one folder
    calls = []
    real = L._match
    monkeypatch.setattr(L, "_match", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    resolver = L.NameResolver(images)
    names = [f"{pid}_{eye}" for pid in range(60) for eye in ("left", "right")]
    assert [resolver.resolve(n)[0] for n in names] == [f"{n.split('_')[0]}/{n}.jpeg" for n in names]
    assert resolver.resolve("x.jpg")[0] == "7/x.png" and resolver.resolve("none")[0] is None
    assert len(calls) < 6 * (len(names) + 2)  # a few per name (its place, then its one folder), not 61 per name


@pytest.mark.parametrize("hint,sep,eol", [("sep=;", ";", "\n"), ("sep=,", ",", "\r\n"), ('"sep=;";', ";", "\n"),
                                          ("SEP=\t", "\t", "\n")])
def test_an_excel_separator_hint_line_is_skipped(tmp_path, hint, sep, eol):
    """Excel writes `sep=;` above the header; it was read as the header ('has no column image; its columns are
    'sep=', '''). Skipped, its separator used, and the rows keep their line numbers."""
    csv = tmp_path / "labels.csv"
    csv.write_bytes(eol.join([hint, f"image{sep}level", f"a{sep}1", f"b{sep}0", ""]).encode())
    table = L.read_labels_csv(csv, image_column="image", label_column="level", split_column="split")
    assert table["image"].tolist() == ["a", "b"] and table["label_text"].tolist() == ["1", "0"]
    assert table["row"].tolist() == [3, 4]  # line numbers of the file, as data_report.csv shows them
