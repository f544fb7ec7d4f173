"""predict's input screen: vote records how the training images look, predict refers inputs unlike them."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from ensemble import appearance
from tests.helpers import one_sentence_error, run_cli


def _noise(path: Path, side: int = 64, seed: int = 0) -> str:
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)).save(path)
    return str(path)


def _document(path: Path, side: int = 96) -> str:
    page = np.full((side, side, 3), 240, np.uint8)
    page[8:side - 8:8, 10:side - 10] = 20
    Image.fromarray(page).save(path)
    return str(path)


def test_features_tell_noise_from_a_smooth_photograph(demo_images, tmp_path):
    photo = appearance.look(sorted((demo_images / "images").glob("*.jpeg"))[0])
    noise = appearance.look(_noise(tmp_path / "n.png"))
    assert photo.shape == noise.shape == (len(appearance.FEATURES),)
    detail = appearance.FEATURES.index("detail")
    assert noise[detail] > 0.5 > 0.2 > photo[detail]
    assert photo[appearance.FEATURES.index("red_minus_green")] > 10  # a fundus is red
    with Image.open(sorted((demo_images / "images").glob("*.jpeg"))[0]) as im:
        im.convert("L").save(tmp_path / "grey.png")
    colour = appearance.FEATURES.index("colour")
    assert photo[colour] > 2 * appearance.COLOUR_SET and appearance.look(tmp_path / "grey.png")[colour] == 0.0
    # turned or mirrored, an image has the same features (EXIF orientation does not matter)
    turned = tmp_path / "t.png"
    with Image.open(sorted((demo_images / "images").glob("*.jpeg"))[0]) as im:
        im.convert("RGB").transpose(Image.Transpose.ROTATE_90).save(turned)
    np.testing.assert_allclose(appearance.look(turned), photo, atol=1.5)
    assert appearance.look(tmp_path / "missing.png") is None


def test_reference_margin_and_notes():
    seen = np.array([[100.0, 80, 40, 30, 20, 10, 20, 40, 0.05, 9.0, 1.3, 24.0],
                     [140.0, 100, 60, 40, 30, 20, 40, 40, 0.09, 11.0, 1.5, 90.0]])
    ref = appearance.reference(seen, source="training")
    assert ref["images"] == 2 and ref["features"] == list(appearance.FEATURES)
    np.testing.assert_allclose(ref["low"][0], 100 - 40 * appearance.PAD)  # the range's width beyond each end
    np.testing.assert_allclose(ref["high"][7], 40 + appearance.FLOOR[7])  # no spread: the floor
    inside = seen.mean(axis=0)
    just_out = inside.copy()
    just_out[7] = 40 + appearance.FLOOR[7] + 1  # green-blue balance beyond its floor
    unreadable = np.full(len(appearance.FEATURES), np.nan)
    notes = appearance.screen(ref, np.array([inside, just_out, unreadable]))
    assert notes[0] == "" and notes[2] == ""
    assert notes[1].startswith("unlike the training images: its green-blue balance 46 lies far above the 40 of each of the 2 read")
    assert notes[1].endswith("referred")
    assert appearance.screen(None, np.array([just_out])) == [""]
    # geometry: a 8-px thumbnail among 512-2048 px photographs, a 80:1 strip; shown in pixels and as a ratio
    thumb, strip = inside.copy(), inside.copy()
    thumb[9], strip[10] = 3.0, 80.0
    small, long = appearance.screen(ref, np.array([thumb, strip]))
    assert small.startswith("unlike the training images: its shorter side 8 px lies far below the 512 px-2048 px of the 2 read")
    assert long.startswith("unlike the training images: its longer-to-shorter side ratio 80 lies far above the 1.3-1.5 of the 2 read")
    # one-sided: a larger photograph (shrunk like the training images were) or a squarer one is not flagged
    big, square = inside.copy(), inside.copy()
    big[9], square[10] = 14.0, 1.0
    assert appearance.screen(ref, np.array([big, square])) == ["", ""]
    # colour: a greyscale copy (or a red-free photograph) of a colour set is referred, though the margin of the wide
    # range of colour (24-90, so 66 each side) would reach below 0; a quarter of the least colour seen passes
    colour = appearance.FEATURES.index("colour")
    grey, faint = inside.copy(), inside.copy()
    grey[colour], faint[colour] = 0.0, 24.0 / 4 + 0.5
    grey_note, faint_note = appearance.screen(ref, np.array([grey, faint]))
    assert grey_note.startswith("unlike the training images: its colour (mean spread between its red, green and blue; "
                                "0 is greyscale) 0 lies far below the 24-90 of the 2 read") and faint_note == ""
    greyish = seen.copy()
    greyish[0, colour] = appearance.COLOUR_SET - 1  # a set that holds greyish images is not screened on colour
    assert appearance.screen(appearance.reference(greyish, source="training"), np.array([grey])) == [""]
    # a screen voted before the colour rule (eleven features) screens by those, and ignores the colour
    before = appearance.reference(seen[:, :appearance.LOOKS + 2], source="training")
    assert appearance.screen(before, np.array([grey, just_out])) == ["", notes[1]]
    # a screen voted before the geometry (nine looks) still screens by them, and ignores the geometry
    old = appearance.reference(seen[:, :appearance.LOOKS], source="training")
    assert old["features"] == list(appearance.FEATURES[:appearance.LOOKS])
    assert appearance.screen(old, np.array([inside, just_out, thumb])) == ["", notes[1], ""]


def test_an_older_nine_feature_screen_loads_and_an_unknown_one_does_not(tmp_path, capsys):
    seen = np.array([[100.0, 80, 40, 30, 20, 10, 20, 40, 0.05], [140.0, 100, 60, 40, 30, 20, 40, 40, 0.09]])
    (tmp_path / appearance.FILE).write_text(json.dumps(appearance.reference(seen, source="training")))
    loaded = appearance.load(tmp_path)
    assert loaded is not None and len(loaded["features"]) == appearance.LOOKS
    eleven = np.column_stack([seen, [[9.0, 1.3], [11.0, 1.5]]])  # voted before the colour rule
    (tmp_path / appearance.FILE).write_text(json.dumps(appearance.reference(eleven, source="training")))
    assert appearance.load(tmp_path)["features"] == list(appearance.FEATURES[:appearance.LOOKS + 2])
    other = {**loaded, "features": ["mean_red", "something_else"]}
    (tmp_path / appearance.FILE).write_text(json.dumps(other))
    assert appearance.load(tmp_path) is None and "not this version's screen" in capsys.readouterr().err


def test_look_measures_the_file_size_and_shape(demo_images, tmp_path):
    with Image.open(sorted((demo_images / "images").glob("*.jpeg"))[0]) as im:
        photo = im.convert("RGB")
    photo.resize((8, 8)).save(tmp_path / "thumb.png")
    photo.resize((400, 50)).save(tmp_path / "strip.jpeg")
    short, aspect = appearance.FEATURES.index("short_side"), appearance.FEATURES.index("aspect")
    thumb, strip = appearance.look(tmp_path / "thumb.png"), appearance.look(tmp_path / "strip.jpeg")
    assert thumb[short] == 3.0 and thumb[aspect] == 1.0
    # a thumbnail is not a flat frame (a Ben-preprocessed member input of it nearly is: it was called one)
    from ensemble.inference import flat_images

    Image.new("RGB", (64, 64), (100, 50, 20)).save(tmp_path / "brown.png")
    looks = np.array([thumb, appearance.look(tmp_path / "brown.png"), np.full(len(appearance.FEATURES), np.nan)])
    assert flat_images(looks).tolist() == [False, True, False]
    assert strip[short] == pytest.approx(np.log2(50)) and strip[aspect] == 8.0  # before the reduced-scale decode


def test_prepare_and_predict_call_the_same_images_flat(tmp_path):
    """prepare judged flatness on the raw pixels (step-sampled, a JPEG at 1/8 scale), predict on the 128 px picture:
    a noisy black 1024 px PNG was kept by one and withheld by the other, a 256 px JPEG of noise σ 6 the other way."""
    from ensemble.inference import check_file, flat_images
    from members.data.labels import REASON_FLAT, check_image

    rng = np.random.default_rng(0)

    def noisy(side: int, sigma: float) -> Image.Image:
        return Image.fromarray(np.clip(12 + rng.normal(0, sigma, (side, side, 3)), 0, 255).astype(np.uint8))

    files = {"noisy_dark.png": noisy(512, 3.0), "noisy_small.jpeg": noisy(256, 6.0),
             "plain.png": Image.new("RGB", (48, 40), (90, 30, 10)), "noise.png": noisy(40, 30.0)}
    for name, im in files.items():
        im.save(tmp_path / name, **({"quality": 95} if name.endswith("jpeg") else {}))
    paths = [str(tmp_path / name) for name in files]
    by_prepare = [check_image(p) == REASON_FLAT for p in paths]
    by_predict = flat_images(appearance.looks(paths)).tolist()
    assert by_prepare == by_predict  # one rule, one picture
    assert by_predict[2:] == [True, False]  # a plain frame is flat, strong noise is not
    assert by_predict[0]  # sensor noise on a black frame averages out at 128 px: nothing to grade
    assert all(check_file(p) is None for p in paths)  # predict reads them all (and withholds the flat ones' grades)


def test_a_large_png_is_read_for_its_look_without_copies_of_its_pixels(tmp_path):
    """look copied a decoded image twice (to_rgb8's array, then Image.fromarray): 1.3 GB more for a 12000 px PNG."""
    import tracemalloc

    from members.data.thumbnail import small

    side = 1500
    pixels = np.zeros((side, side, 3), np.uint8)
    pixels[:, : side // 2] = (200, 90, 40)
    Image.fromarray(pixels).save(tmp_path / "big.png", compress_level=1)
    del pixels
    tracemalloc.start()
    try:
        with Image.open(tmp_path / "big.png") as im:
            picture = small(im)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < side * side  # NumPy never held a full-size copy (3 bytes a pixel)
    assert picture.shape == (appearance.SIZE, appearance.SIZE, 3) and picture[:, 0].tolist()[0] == [200, 90, 40]


def test_too_few_images_are_no_reference(demo_images):
    paths = sorted(str(p) for p in (demo_images / "images").glob("*.jpeg"))
    ref, why = appearance.fit_reference([*paths[:10], "/nonexistent.jpeg"], source="training")
    assert ref is None and why == f"only 10 training images are readable; the screen needs at least {appearance.MIN_IMAGES}"


@pytest.fixture(scope="module")
def screened(tmp_path_factory, trained) -> Path:
    """``trained`` plus a second member, voted with the image floor lowered to the demo set's 41 images."""
    from ensemble.vote import run_vote
    from members.model.spec import load_preset
    from members.training.trainer import train_member

    work = tmp_path_factory.mktemp("screened") / "w"
    shutil.copytree(trained, work)
    train_member(work, load_preset("tiny").replace(input_size=16, epochs=1, seed=2), name="t2", preset="tiny",
                 log=lambda line: None, show_progress=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(appearance, "MIN_IMAGES", 20)
        run_vote(work, methods=("soft",), n_boot=20, keep_collapsed=True, console=Console(file=io.StringIO()))
    return work


def test_vote_records_the_training_images_and_predict_refers_what_is_unlike_them(screened, demo_images, tmp_path):
    report = json.loads((screened / "ensemble" / "report.json").read_text())
    assert report["appearance"]["screen"] is True and report["appearance"]["file"] == "appearance.json"
    md = (screened / "ensemble" / "report.md").read_text()
    assert f"looks unlike all of the {report['appearance']['images']} training and validation images" in md
    ref = json.loads((screened / "ensemble" / "appearance.json").read_text())
    split = (screened / "split.csv").read_text().splitlines()[1:]
    assert ref["images"] == sum(1 for line in split if line.split(",")[2] in ("train", "val"))
    good = sorted(str(p) for p in (demo_images / "images").glob("*.jpeg"))[:4]
    odd = [_noise(tmp_path / "noise.png"), _document(tmp_path / "page.png")]
    out = tmp_path / "p.csv"
    code, _out, err = run_cli("predict", "--workdir", screened, *good, *odd, "--out", out)
    assert code == 0, err
    import pandas as pd

    rows = pd.read_csv(out, keep_default_na=False).set_index("path")
    for path in odd:
        assert rows.loc[path, "note"].startswith("unlike the training images: its pixel-to-pixel change")
        assert rows.loc[path, "review"] == 1 and rows.loc[path, "class"] == ""  # referred, its grade withheld
        assert rows.loc[path, "referable"] == "" and rows.loc[path, "p_referable"] == ""  # no finding on it
    assert all(rows.loc[p, "note"] == "" or rows.loc[p, "note"].startswith("review: ") for p in good)
    assert all(str(rows.loc[p, "referable"]) in ("0", "1") for p in good)
    assert "Unlike the training images: 2 image(s)" in err
    assert "of the 4 assessed images called referable" in err
    assert "2 not assessed (ungradable, or unlike the training images" in err


def test_a_changed_reference_is_refused_and_a_small_set_is_not_screened(screened, trained, tmp_path):
    work = tmp_path / "w"
    shutil.copytree(screened, work)
    ref = work / "ensemble" / "appearance.json"
    ref.write_text(ref.read_text().replace('"images"', '"images" ', 1))
    code, _out, err = run_cli("predict", "--workdir", work, _noise(tmp_path / "n.png"))
    one_sentence_error(code, err, "appearance.json")
    ref.unlink()  # deleted: refused too, not a silently unscreened ensemble
    code, _out, err = run_cli("predict", "--workdir", work, _noise(tmp_path / "n.png"))
    one_sentence_error(code, err, "appearance.json")
    small = tmp_path / "small"
    shutil.copytree(screened, small)
    shutil.rmtree(small / "ensemble")
    code, _out, err = run_cli("vote", "--workdir", small, "--method", "soft", "--bootstrap", "20", "--keep-collapsed")
    assert code == 0, err
    report = json.loads((small / "ensemble" / "report.json").read_text())
    assert report["appearance"]["screen"] is False and "at least 50" in report["appearance"]["reason"]
    assert not (small / "ensemble" / "appearance.json").exists()
    assert "`predict` does not screen inputs" in (small / "ensemble" / "report.md").read_text()


def test_a_vote_whose_images_have_moved_says_the_screen_is_off(screened, tmp_path, monkeypatch, capsys):
    from ensemble.vote import run_vote

    work = tmp_path / "w"
    shutil.copytree(screened, work)
    meta = json.loads((work / "dataset.json").read_text())
    meta["image_root"] = str(tmp_path / "moved")  # the images folder moved or unmounted since prepare
    (work / "dataset.json").write_text(json.dumps(meta))
    monkeypatch.setattr(appearance, "MIN_IMAGES", 20)
    report = run_vote(work, methods=("soft",), n_boot=10, keep_collapsed=True, console=Console(file=io.StringIO()))
    assert report["appearance"] == {"screen": False,
                                    "reason": f"the image folder {tmp_path / 'moved'} is not there (moved or unmounted?)"}
    assert "Note: predict will not screen inputs" in capsys.readouterr().err
    assert not (work / "ensemble" / "appearance.json").exists()


def test_many_looks_are_read_in_threads_in_order(demo_images, tmp_path):
    """predict's input screen read thousands of images one after another (35 s after the grading of 4,000); read in
    threads, each row is still its own path's, an unreadable file's row still nan."""
    import numpy as np

    from ensemble import appearance

    files = sorted(str(p) for p in (demo_images / "images").iterdir())[:40]
    (tmp_path / "bad.jpeg").write_bytes(b"not an image")
    paths = files[:20] + [str(tmp_path / "bad.jpeg")] + files[20:]
    rows = appearance.looks(paths)
    assert rows.shape == (41, len(appearance.FEATURES)) and np.isnan(rows[20]).all()
    one_by_one = [appearance.look(p) for p in paths]
    assert all(np.array_equal(r, o) for r, o in zip(np.delete(rows, 20, 0), one_by_one[:20] + one_by_one[21:]))
