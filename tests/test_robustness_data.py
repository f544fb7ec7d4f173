"""Robustness of ``prepare``: odd images, messy labels CSVs and malformed npz files, through the CLI.

Every case runs ``python cli.py prepare`` in-process and checks the exit code, the message and
what was written: a bad row is kept (it decodes) or dropped with its reason in
``data_report.csv``; a fatal problem exits 1 with one plain sentence, creates no workdir and
leaves an existing one (even with ``--force``) byte for byte as it was.
"""

from __future__ import annotations

import csv
import hashlib
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from members.data import labels as L
from members.data.integrity import REASON_DAMAGED_JPEG, REASON_DAMAGED_PNG
from tests.helpers import cut_short_jpeg, damaged_png, one_sentence_error, run_cli  # noqa: E402

RNG = np.random.default_rng(7)
PIXELS = RNG.integers(0, 255, (16, 16, 3), dtype=np.uint8)
GOOD = 30  # good images, labels i % 3: ten of each class


# ----- helpers -------------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root``: kind, mtime and content hash, to prove nothing changed."""
    if not root.exists():
        return {}
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        if p.is_symlink():
            out[p.relative_to(root).as_posix()] = ("link", str(p.readlink()))
        elif p.is_dir():
            out[p.relative_to(root).as_posix()] = ("dir",)
        else:
            out[p.relative_to(root).as_posix()] = ("file", st.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
    return out



def distinct_pixels(path: Path) -> np.ndarray:
    """PIXELS with the file name's CRC in the first row: every file its own photo (no byte-identical copies)."""
    pixels = PIXELS.copy()
    pixels[0, :4, :] = np.frombuffer(zlib.crc32(path.name.encode()).to_bytes(4, "little"), np.uint8)[:, None]
    return pixels


def save(path: Path, mode: str = "RGB", fmt: str = "PNG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(distinct_pixels(path)).convert(mode).save(path, fmt)
    return path


def good_set(root: Path) -> tuple[Path, list[str]]:
    """``root/images`` with GOOD decodable PNGs; returns the folder and CSV lines ``name,label``."""
    images = root / "images"
    for i in range(GOOD):
        save(images / f"g{i}.png")
    return images, [f"g{i},{i % 3}" for i in range(GOOD)]


def write_csv(path: Path, lines: list[str], header: str = "image,level", *, bom: bool = False, eol: str = "\n") -> Path:
    body = eol.join([header, *lines]) + eol
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + body.encode("utf-8"))
    return path


def report(work: Path) -> list[dict]:
    with open(work / "data_report.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def split_paths(work: Path) -> list[str]:
    with open(work / "split.csv", newline="", encoding="utf-8") as f:
        return [row["path"] for row in csv.DictReader(f)]


def prepare(work: Path, labels: Path, images: Path, *extra) -> tuple[int, str, str]:
    return run_cli("prepare", "--workdir", work, "--labels", labels, "--images", images, *extra)


# ----- images: each one kept (it decodes) or dropped with its reason -------------------------

def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG that claims ``width``×``height`` (gray) with one row of data: tiny on disk, huge when decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * (width + 1)))
                     + chunk(b"IEND", b""))


def _truncated(path: Path, fmt: str) -> None:
    save(path, fmt=fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _png16(path: Path) -> None:
    Image.fromarray(np.arange(256, dtype=np.uint16).reshape(16, 16) * 257).save(path, "PNG")
    assert Image.open(path).mode == "I;16"


IMAGE_CASES = {
    # case: (file name, how to make it, reason or None when kept)
    "zero_bytes": ("empty.jpeg", lambda p: p.write_bytes(b""), L.REASON_EMPTY),
    "truncated_jpeg": ("cut.jpeg", lambda p: _truncated(p, "JPEG"), L.REASON_UNDECODABLE),
    "truncated_png": ("cut.png", lambda p: _truncated(p, "PNG"), REASON_DAMAGED_PNG),  # predict's reason too
    "not_an_image": ("notes.jpeg", lambda p: p.write_text("this is not an image\n"), L.REASON_UNDECODABLE),
    "palette_bmp": ("scan.bmp", lambda p: save(p, "P", fmt="BMP"), L.REASON_FORMAT),
    "truncated_tiff": ("cut.tif", lambda p: _truncated(p, "TIFF"), L.REASON_UNDECODABLE),
    "tiff": ("scan.tif", lambda p: save(p, fmt="TIFF"), None),
    "ppm": ("scan.ppm", lambda p: save(p, fmt="PPM"), None),
    "huge_dimensions": ("huge.png", lambda p: _png_header_only(p, 20000, 20000), L.REASON_TOO_LARGE),
    "png_behind_jpeg_name": ("really_png.jpeg", lambda p: save(p, fmt="PNG"), None),
    "grayscale": ("gray.jpeg", lambda p: save(p, "L", "JPEG"), None),
    "cmyk": ("cmyk.jpeg", lambda p: save(p, "CMYK", "JPEG"), None),
    "rgba": ("alpha.png", lambda p: save(p, "RGBA"), None),
    "palette": ("palette.png", lambda p: save(p, "P"), None),
    "png_16_bit": ("deep.png", _png16, None),
    "name_with_spaces": ("fundus left eye 1.png", lambda p: save(p), None),
    "name_non_ascii": ("ñandú 眼底 é.jpeg", lambda p: save(p, fmt="JPEG"), None),
    "png_idat_crc_broken": ("crc.png", lambda p: p.write_bytes(damaged_png(PIXELS, "crc")), REASON_DAMAGED_PNG),
    "png_rows_missing": ("short.png", lambda p: p.write_bytes(damaged_png(PIXELS, "short")), REASON_DAMAGED_PNG),
    "jpeg_data_ends_early": ("zeroed.jpeg", lambda p: p.write_bytes(cut_short_jpeg()), REASON_DAMAGED_JPEG),
}


@pytest.mark.parametrize("case", list(IMAGE_CASES))
def test_image_is_kept_or_dropped_with_its_reason(tmp_path, case):
    name, make, reason = IMAGE_CASES[case]
    images, lines = good_set(tmp_path)
    make(images / name)
    labels = write_csv(tmp_path / "labels.csv", lines + [f'"{name}",1'])
    before = snapshot(images)
    code, out, err = prepare(tmp_path / "w", labels, images)
    assert code == 0, err
    assert "Traceback" not in err
    assert snapshot(images) == before  # the images folder is only read
    dropped = report(tmp_path / "w")
    if reason is None:
        assert f"kept {GOOD + 1} " in out and "dropped 0" in out
        assert dropped == []
        assert name in split_paths(tmp_path / "w")
    else:
        assert f"kept {GOOD} " in out and "dropped 1" in out
        assert dropped == [{"row": str(GOOD + 2), "image": name, "label": "1", "reason": reason}]
        assert f"{reason} (e.g. {name})" in " ".join(err.split())  # the summary names the reason and the file
        assert name not in split_paths(tmp_path / "w")


def test_decompression_bomb_limit_is_honoured(tmp_path, monkeypatch):
    """An image over PIL's pixel limit (lowered here to keep the file small) is dropped, not decoded."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1500)  # > 2 × 1500 pixels raises DecompressionBombError
    images, lines = good_set(tmp_path)  # 16×16 = 256 pixels: fine
    Image.fromarray(RNG.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(images / "big.png")
    labels = write_csv(tmp_path / "labels.csv", lines + ["big,2"])
    code, _out, err = prepare(tmp_path / "w", labels, images)
    assert code == 0, err
    assert report(tmp_path / "w") == [{"row": str(GOOD + 2), "image": "big", "label": "2", "reason": L.REASON_TOO_LARGE}]


def test_every_kept_odd_image_decodes_in_the_training_pipeline(tmp_path):
    """What prepare keeps, TensorFlow decodes: same pixels as PIL (up to JPEG rounding), 3 channels."""
    import tensorflow as tf
    from members.data.pipeline import load_image

    kept = {case: spec for case, spec in IMAGE_CASES.items() if spec[2] is None}
    images = tmp_path / "images"
    for name, make, _ in kept.values():
        images.mkdir(exist_ok=True)
        make(images / name)
    for case, (name, _, _) in kept.items():
        got = load_image(tf.constant(str(images / name)), 16).numpy().astype(int)
        with Image.open(images / name) as im:
            ref = np.asarray(im.convert("RGB") if im.mode != "I;16" else
                             Image.fromarray((np.asarray(im) / 257).round().astype(np.uint8)).convert("RGB")).astype(int)
        assert got.shape == (16, 16, 3), case
        assert np.abs(got - ref).mean() < 2.0, case  # a CMYK or 16-bit image must not come out inverted or black


# ----- labels CSV ----------------------------------------------------------------------------

@pytest.fixture()
def existing(tmp_path):
    """A workdir already prepared from a good set (the target of ``--force`` runs) and its snapshot."""
    images, lines = good_set(tmp_path / "old")
    work = tmp_path / "existing"
    code, _, err = prepare(work, write_csv(tmp_path / "old" / "labels.csv", lines), images)
    assert code == 0, err
    return work, snapshot(work)


def assert_fatal(tmp_path, existing, args: list, *needles: str) -> None:
    """A fatal prepare: no new workdir is created, and an existing one is unchanged even with --force."""
    fresh = tmp_path / "fresh"
    code, out, err = run_cli("prepare", "--workdir", fresh, *args)
    one_sentence_error(code, err, *needles)
    assert out == "" and not fresh.exists()
    work, before = existing
    code, out, err = run_cli("prepare", "--workdir", work, *args, "--force")
    one_sentence_error(code, err, *needles)
    assert snapshot(work) == before


def test_missing_columns_names_the_columns_and_the_options(tmp_path, existing):
    images, lines = good_set(tmp_path)
    labels = write_csv(tmp_path / "labels.csv", lines, header="file,grade")
    assert_fatal(tmp_path, existing, ["--labels", labels, "--images", images],
                 "has no column 'image' or 'level'", "its columns are 'file', 'grade'",
                 "--image-column", "--label-column")


def test_other_column_names_work_with_the_options(tmp_path):
    images, lines = good_set(tmp_path)
    labels = write_csv(tmp_path / "labels.csv", lines, header="file,grade")
    code, out, err = prepare(tmp_path / "w", labels, images, "--image-column", "file", "--label-column", "grade")
    assert code == 0, err
    assert f"kept {GOOD} " in out


def test_header_only(tmp_path, existing):
    images, _ = good_set(tmp_path)
    labels = write_csv(tmp_path / "labels.csv", [])
    assert_fatal(tmp_path, existing, ["--labels", labels, "--images", images], "has a header but no rows")


def test_empty_file(tmp_path, existing):
    images, _ = good_set(tmp_path)
    (tmp_path / "labels.csv").write_bytes(b"")
    assert_fatal(tmp_path, existing, ["--labels", tmp_path / "labels.csv", "--images", images], "is empty")


def test_not_a_text_file(tmp_path, existing):
    images, _ = good_set(tmp_path)
    (tmp_path / "labels.csv").write_bytes(b"\xff\xfe\x00\x01binary\x00\x9c")
    assert_fatal(tmp_path, existing, ["--labels", tmp_path / "labels.csv", "--images", images], "is not a UTF-8 CSV")


@pytest.mark.parametrize("name,needle", [
    ("train.zip", "is a zip archive, not a folder: extract it first (e.g. `unzip "),
    ("train.zip.001", "is one part of a split archive, not a folder: put all its parts in one folder and extract"),
])
@pytest.mark.parametrize("with_labels", [True, False], ids=["csv", "folders"])
def test_an_archive_passed_as_the_images_folder_says_to_extract_it(tmp_path, existing, name, needle, with_labels):
    """Kaggle's train.zip passed as --images got "does not exist or is not a folder"."""
    import zipfile

    images, lines = good_set(tmp_path)
    with zipfile.ZipFile(tmp_path / name, "w") as z:
        z.write(images / "g0.png", "train/g0.png")
    labels = ["--labels", write_csv(tmp_path / "labels.csv", lines)] if with_labels else []
    assert_fatal(tmp_path, existing, [*labels, "--images", tmp_path / name], needle, "via --images")
    code, _, err = run_cli("prepare", "--workdir", tmp_path / "w", *labels, "--images", tmp_path / "train")
    one_sentence_error(code, err, f"train does not exist, but {tmp_path / name} does: extract it first")


@pytest.mark.parametrize("bom,eol", [(True, "\n"), (False, "\r\n"), (True, "\r\n")], ids=["bom", "crlf", "bom_crlf"])
def test_bom_and_crlf_are_read_transparently(tmp_path, bom, eol):
    images, lines = good_set(tmp_path)
    labels = write_csv(tmp_path / "labels.csv", lines, bom=bom, eol=eol)
    code, out, err = prepare(tmp_path / "w", labels, images)
    assert code == 0, err
    assert f"kept {GOOD} " in out and "dropped 0" in out
    paths = split_paths(tmp_path / "w")
    assert sorted(paths) == sorted(f"g{i}.png" for i in range(GOOD))  # no "\ufeff" or "\r" left in a name


def test_duplicate_rows_keep_the_first(tmp_path):
    images, lines = good_set(tmp_path)
    labels = write_csv(tmp_path / "labels.csv", lines + ["g0,0", "g0.png,0", "G0.PNG,0"])
    code, _out, err = prepare(tmp_path / "w", labels, images)
    assert code == 0, err
    assert [(r["row"], r["image"], r["reason"]) for r in report(tmp_path / "w")] == [
        (str(GOOD + 2), "g0", L.REASON_DUPLICATE), (str(GOOD + 3), "g0.png", L.REASON_DUPLICATE),
        (str(GOOD + 4), "G0.PNG", L.REASON_DUPLICATE)]
    assert split_paths(tmp_path / "w").count("g0.png") == 1


def test_conflicting_duplicates_drop_every_row_of_that_image(tmp_path):
    images, lines = good_set(tmp_path)
    labels = write_csv(tmp_path / "labels.csv", lines + ["g0,2"])
    code, _out, err = prepare(tmp_path / "w", labels, images)
    assert code == 0, err
    assert {(r["row"], r["reason"]) for r in report(tmp_path / "w")} == {("2", L.REASON_CONFLICT),
                                                                         (str(GOOD + 2), L.REASON_CONFLICT)}
    assert "g0.png" not in split_paths(tmp_path / "w")


@pytest.mark.parametrize("label,reason", [
    ("", L.REASON_NO_LABEL), ("-1", L.REASON_BAD_LABEL), ("2.5", L.REASON_BAD_LABEL),
    ("moderate", L.REASON_BAD_LABEL), ("1e3", L.REASON_BAD_LABEL),
], ids=["empty", "negative", "non_integer", "text", "exponent"])
def test_bad_label_drops_the_row(tmp_path, label, reason):
    images, lines = good_set(tmp_path)
    save(images / "extra.png")
    labels = write_csv(tmp_path / "labels.csv", lines + [f"extra,{label}"])
    code, out, err = prepare(tmp_path / "w", labels, images)
    assert code == 0, err
    assert report(tmp_path / "w") == [{"row": str(GOOD + 2), "image": "extra", "label": label, "reason": reason}]
    assert "dropped 1" in out


def test_float_spelling_of_an_integer_label_is_kept(tmp_path):
    images, lines = good_set(tmp_path)
    save(images / "extra.png")
    labels = write_csv(tmp_path / "labels.csv", lines + ["extra,2.0"])
    code, _out, err = prepare(tmp_path / "w", labels, images)
    assert code == 0, err
    assert report(tmp_path / "w") == [] and "extra.png" in split_paths(tmp_path / "w")


def test_empty_name_and_missing_file_are_reported(tmp_path):
    images, lines = good_set(tmp_path)
    labels = write_csv(tmp_path / "labels.csv", lines + [",1", "nowhere,1"])
    code, _out, err = prepare(tmp_path / "w", labels, images)
    assert code == 0, err
    assert [r["reason"] for r in report(tmp_path / "w")] == [L.REASON_NO_NAME, L.REASON_MISSING]


def test_class_too_small_to_split(tmp_path, existing):
    images, lines = good_set(tmp_path)
    lines = [f"g{i},{i % 2}" for i in range(GOOD - 2)] + [f"g{GOOD - 2},2", f"g{GOOD - 1},2"]
    labels = write_csv(tmp_path / "labels.csv", lines)
    assert_fatal(tmp_path, existing, ["--labels", labels, "--images", images],
                 "Class 2 has only 2 rows, too few to split", "add images of class 2")


def test_a_class_too_small_after_drops_says_the_counts_are_of_the_rows_kept(tmp_path, existing):
    """A flat frame dropped, then "Class 3 has only 2 rows ... class_counts={0: 10, ...}" while the CSV has 3 rows of
    class 3: nothing said the counts were of the rows kept, nor why one was dropped."""
    images, lines = good_set(tmp_path)
    for i in range(2):
        save(images / f"r{i}.png")
    Image.new("RGB", (16, 16), (0, 0, 0)).save(images / "black.png")
    labels = write_csv(tmp_path / "labels.csv", lines + ["r0,3", "r1,3", "black,3", "gone,0"])
    assert_fatal(tmp_path, existing, ["--labels", labels, "--images", images],
                 "Class 3 has only 2 rows, too few to split",
                 f"(counted on the 32 rows kept: 2 of the 34 rows were dropped first — 1 {L.REASON_MISSING}; 1 "
                 f"{L.REASON_FLAT}). Received: class_counts=")


def test_every_row_dropped(tmp_path, existing):
    images, _ = good_set(tmp_path)
    labels = write_csv(tmp_path / "labels.csv", [f"missing{i},{i % 3}" for i in range(6)])
    assert_fatal(tmp_path, existing, ["--labels", labels, "--images", images],
                 "No usable row", L.REASON_MISSING)


def _outside(tmp_path: Path, images: Path, how: str) -> str:
    secret = save(tmp_path / "secret" / "private.png")
    if how == "dotdot":
        return "../secret/private.png"
    if how == "absolute":
        return str(secret)
    if how == "symlink":
        (images / "innocent.png").symlink_to(secret)
        return "innocent.png"
    (images / "sub").symlink_to(secret.parent, target_is_directory=True)  # a linked folder
    return "sub/private.png"


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink", "symlinked_folder"])
def test_names_that_escape_the_image_folder_are_dropped(tmp_path, how):
    images, lines = good_set(tmp_path)
    name = _outside(tmp_path, images, how)
    labels = write_csv(tmp_path / "labels.csv", lines + [f'"{name}",1'])
    code, _out, err = prepare(tmp_path / "w", labels, images)
    assert code == 0, err
    assert report(tmp_path / "w") == [{"row": str(GOOD + 2), "image": name, "label": "1", "reason": L.REASON_OUTSIDE}]
    assert all(".." not in p.split("/") and not p.startswith("/") for p in split_paths(tmp_path / "w"))
    assert not any("private" in p or "innocent" in p or p.startswith("sub/") for p in split_paths(tmp_path / "w"))


def test_symlink_inside_the_folder_is_kept(tmp_path):
    images, lines = good_set(tmp_path)
    (images / "alias.png").symlink_to(images / "g0.png")
    labels = write_csv(tmp_path / "labels.csv", [line for line in lines if not line.startswith("g0,")] + ["alias,0"])
    code, _out, err = prepare(tmp_path / "w", labels, images)
    assert code == 0, err
    assert "alias.png" in split_paths(tmp_path / "w")


# ----- npz -----------------------------------------------------------------------------------

def _npz(path: Path, **override) -> Path:
    arrays = {}
    for split, n in (("train", 9), ("val", 6), ("test", 6)):
        arrays[f"{split}_images"] = RNG.integers(0, 255, (n, 8, 8), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 3).reshape(-1, 1)
    arrays.update(override)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_npz_that_is_not_an_npz(tmp_path, existing):
    path = tmp_path / "data.npz"
    path.write_text("image,level\na,1\n")
    assert_fatal(tmp_path, existing, ["--npz", path], f"{path} is not a readable .npz archive")


def test_npz_truncated(tmp_path, existing):
    path = _npz(tmp_path / "data.npz")
    path.write_bytes(path.read_bytes()[:700])
    assert_fatal(tmp_path, existing, ["--npz", path], f"{path} is not a readable .npz archive")


def test_npz_missing(tmp_path, existing):
    assert_fatal(tmp_path, existing, ["--npz", tmp_path / "nope.npz"], "does not exist")


def test_npz_missing_keys(tmp_path, existing):
    path = _npz(tmp_path / "data.npz", val_labels=None, test_images=None)
    assert_fatal(tmp_path, existing, ["--npz", path], "lacks the keys val_labels, test_images",
                 "Received: keys=")


def test_npz_images_and_labels_of_different_lengths(tmp_path, existing):
    path = _npz(tmp_path / "data.npz", train_labels=np.zeros((8, 1), dtype=np.int64))
    assert_fatal(tmp_path, existing, ["--npz", path], "has 9 train images and 8 train labels")


def test_npz_with_object_arrays_is_refused_without_unpickling(tmp_path, existing):
    path = _npz(tmp_path / "data.npz", train_labels=np.array([{"x": 1}] * 9, dtype=object))
    assert_fatal(tmp_path, existing, ["--npz", path], "train_labels", "must hold one integer class per image")


def test_when_every_row_is_dropped_the_sentence_names_the_likely_cause(tmp_path):
    images, lines = good_set(tmp_path)
    # a ';'-separated body under a ',' header: every label empty
    semi = write_csv(tmp_path / "semi.csv", [line.replace(",", ";") for line in lines])
    code, _, err = prepare(tmp_path / "w1", semi, images)
    one_sentence_error(code, err, "label is empty", "use the header's separator")
    # names written with the images folder in front, --images pointing at that folder
    prefixed = write_csv(tmp_path / "prefixed.csv", [f"images/{line}" for line in lines])
    code, _, err = prepare(tmp_path / "w2", prefixed, images)
    one_sentence_error(code, err, "the names start with 'images/'", f"--images {tmp_path}")
    # a folder of symbolic links to files elsewhere (DVC, git-annex)
    links = tmp_path / "links"
    links.mkdir()
    for path in images.iterdir():
        (links / path.name).symlink_to(path)
    code, _, err = prepare(tmp_path / "w3", write_csv(tmp_path / "l.csv", lines), links)
    one_sentence_error(code, err, "are symbolic links to files outside it", "cp -rL")


@pytest.mark.parametrize("missing", [31, 5])
def test_most_rows_without_their_image_warn_that_the_folder_looks_incomplete(tmp_path, missing):
    """A partial download (one part of a multi-part archive extracted) passed quietly: "kept 54, dropped 248"."""
    images, lines = good_set(tmp_path)
    absent = [f"lost{i},{i % 3}" for i in range(missing)]
    code, out, err = prepare(tmp_path / "w", write_csv(tmp_path / "l.csv", lines + absent), images)
    assert code == 0, err
    warning = " ".join(err.split())
    if missing == 31:  # over half of 61 rows, and at least 20
        assert f"Warning: 31 of the 61 rows name an image file that is not in {images} (e.g. 'lost0')" in warning
        assert "looks incomplete" in warning and "multi-part archive" in warning
    else:
        assert "looks incomplete" not in warning


def test_one_based_grades_are_refused_with_the_renumbering_to_do(tmp_path):
    images, lines = good_set(tmp_path)
    shifted = [f"{line.split(',')[0]},{int(line.split(',')[1]) + 1}" for line in lines]  # grades 1-3
    code, _, err = prepare(tmp_path / "w", write_csv(tmp_path / "one.csv", shifted), images)
    one_sentence_error(code, err, "The integer labels start at 1, not 0 (1, 2, 3)", "subtract 1 from every label",
                       # a DR subset without grade 0 would have every grade shifted: the other reading, and its way
                       "grade 0 is simply absent", "--classes 1,2,3 --ordinal")
    assert not (tmp_path / "w" / "split.csv").exists()
    code, _, err = prepare(tmp_path / "w", tmp_path / "one.csv", images,  # the way it advises works: the numbers as
                           "--classes", "1,2,3", "--ordinal")            # names, on the file as it is
    assert code == 0, err
    assert json.loads((tmp_path / "w" / "dataset.json").read_text())["classes"] == ["1", "2", "3"]


def test_class_folders_from_1_are_advised_on_folders_not_the_csv(tmp_path):
    for i in range(GOOD):
        save(tmp_path / "cls" / str(i % 3 + 2) / f"g{i}.png")  # folders 2/ 3/ 4/: grades 0 and 1 absent
    code, _, err = run_cli("prepare", "--workdir", tmp_path / "w", "--images", tmp_path / "cls")
    line = one_sentence_error(code, err, "The integer labels start at 2, not 0 (2, 3, 4)",
                              "rename the class folders 2/ … 4/ to 0/ … 2/", "grades 0–1 are simply absent",
                              "--classes 2,3,4 --ordinal")
    assert "CSV" not in line
    code, _, err = run_cli("prepare", "--workdir", tmp_path / "w", "--images", tmp_path / "cls", "--nominal")
    assert code == 0, err  # the other advice works on the folders as they are


def test_a_header_naming_the_label_column_twice_is_refused(tmp_path):
    images, lines = good_set(tmp_path)
    twice = write_csv(tmp_path / "twice.csv", [f"{line},{line.split(',')[1]}" for line in lines], header="image,level,Level")
    code, _, err = prepare(tmp_path / "w", twice, images)
    one_sentence_error(code, err, "has 2 columns named 'level' (columns 2, 3)", "keep one")
