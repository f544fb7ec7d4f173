"""Tests for members/data/medmnist.py and prepare_npz: validation, PNG export, cached download."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from members.data.dataset import load_dataset, prepare_npz
from members.infra.errors import UserError
from members.data.medmnist import MEDMNIST_MD5, MEDMNIST_URL, fetch_medmnist, read_npz
from tests.conftest import SHARED_DATA

DATA = SHARED_DATA
RETINA, BREAST = DATA / "retinamnist.npz", DATA / "breastmnist.npz"
RNG = np.random.default_rng(0)


def tiny_npz(path, *, rgb=False, column=False, sizes=(12, 4, 6), k=3, **override):
    arrays = {}
    for split, n in zip(("train", "val", "test"), sizes):
        shape = (n, 8, 8, 3) if rgb else (n, 8, 8)
        arrays[f"{split}_images"] = RNG.integers(0, 255, shape, dtype=np.uint8)
        labels = (np.arange(n) % k).astype(np.uint8)
        arrays[f"{split}_labels"] = labels[:, None] if column else labels
    arrays.update(override)
    arrays = {key: value for key, value in arrays.items() if value is not None}
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("rgb,column", [(False, False), (True, True), (False, True), (True, False)])
def test_prepare_npz_writes_pngs_and_keeps_official_split(tmp_path, rgb, column):
    npz = tiny_npz(tmp_path / "tiny.npz", rgb=rgb, column=column)
    result = prepare_npz(tmp_path / "work", npz, progress=False)
    assert result.counts == {"train": {0: 4, 1: 4, 2: 4}, "val": {0: 2, 1: 1, 2: 1}, "test": {0: 2, 1: 2, 2: 2}}
    assert result.kept == 22 and result.skipped == {} and not result.grouped
    data = load_dataset(tmp_path / "work")
    assert data.image_root == (tmp_path / "work" / "images").resolve()
    assert data.info["source"] == f"npz:{npz.resolve()}" and data.info["split_source"] == "official"
    test = data.rows("test")
    assert test["path"].tolist()[:2] == ["test_00000.png", "test_00001.png"]
    assert test["row_id"].tolist() == list(range(16, 22))
    with np.load(npz) as original:
        for split in ("train", "test"):
            for i in (0, 3):
                png = np.asarray(Image.open(data.image_root / f"{split}_{i:05d}.png"))
                assert np.array_equal(png, original[f"{split}_images"][i])
    assert (tmp_path / "work" / "data_report.csv").read_text() == "row,image,label,reason\n"


def test_prepare_npz_takes_class_names_in_index_order(tmp_path):
    """BreastMNIST's 0 is malignant: --classes names the indices, so reports and predict say so."""
    from tests.helpers import one_sentence_error, run_cli

    npz = tiny_npz(tmp_path / "tiny.npz", k=2)
    code, _, err = run_cli("prepare", "--workdir", tmp_path / "w", "--npz", npz, "--classes", "malignant,benign")
    assert code == 0, err
    data = load_dataset(tmp_path / "w")
    assert data.classes == ["malignant", "benign"] and data.ordinal is False  # names: unordered unless --ordinal
    assert data.rows("train")["label"].tolist()[:2] == [0, 1]  # the indices stay as the npz has them
    one_sentence_error(*run_cli("prepare", "--workdir", tmp_path / "w2", "--npz", npz, "--classes", "a,b,c")[::2],
                       "--classes names 3 classes but the npz labels run from 0 to 1")
    one_sentence_error(*run_cli("prepare", "--workdir", tmp_path / "w3", "--npz", npz, "--classes", "a,a")[::2],
                       "--classes names 'a' twice")
    one_sentence_error(*run_cli("prepare", "--workdir", tmp_path / "w4", "--npz", npz, "--classes", "1,0")[::2],
                       "--classes has the integer name '1'")


def test_prepare_npz_again_is_a_noop_and_other_npz_needs_force(tmp_path):
    npz = tiny_npz(tmp_path / "a.npz")
    prepare_npz(tmp_path / "w", npz, progress=False)
    stamp = (tmp_path / "w" / "images" / "train_00000.png").stat().st_mtime_ns
    prepare_npz(tmp_path / "w", npz, progress=False)
    assert (tmp_path / "w" / "images" / "train_00000.png").stat().st_mtime_ns == stamp
    other = tiny_npz(tmp_path / "b.npz")  # same labels, other pixels: still other data
    with pytest.raises(UserError, match=r"was prepared from other data \(source npz:.*a\.npz then, npz:.*b\.npz now\); pass --force"):
        prepare_npz(tmp_path / "w", other, progress=False)
    prepare_npz(tmp_path / "w", other, force=True, progress=False)
    assert load_dataset(tmp_path / "w").info["source"] == f"npz:{other.resolve()}"
    assert not list((tmp_path / "w").glob(".images.*"))
    # a member made on b's images would pass as trained on c's (same rows, labels, so the same fingerprint): refused
    (tmp_path / "w" / "members" / "m").mkdir(parents=True)
    (tmp_path / "w" / "members" / "m" / "metrics.json").write_text(
        json.dumps({"fingerprint": load_dataset(tmp_path / "w").fingerprint}))
    third = tiny_npz(tmp_path / "c.npz")
    before = (tmp_path / "w" / "images" / "train_00000.png").read_bytes()
    with pytest.raises(UserError, match=r"holds other images under the rows and labels that the members made there "
                                        r"\(m\) were trained on, so they would pass as trained on the new images"):
        prepare_npz(tmp_path / "w", third, force=True, progress=False)
    assert (tmp_path / "w" / "images" / "train_00000.png").read_bytes() == before
    assert load_dataset(tmp_path / "w").info["source"] == f"npz:{other.resolve()}"
    # but other class names for the same file, or the same pictures saved again (compressed), are no other images
    prepare_npz(tmp_path / "w", other, classes=["a", "b", "c"], force=True, progress=False)
    with np.load(other) as arrays:
        np.savez_compressed(tmp_path / "b-again.npz", **arrays)
    prepare_npz(tmp_path / "w", tmp_path / "b-again.npz", classes=["a", "b", "c"], force=True, progress=False)
    assert load_dataset(tmp_path / "w").info["source"] == f"npz:{(tmp_path / 'b-again.npz').resolve()}"
    # a re-saved copy is the same data even without --force: no refusal, no word of members invalidated
    with np.load(other) as arrays:
        np.savez_compressed(tmp_path / "b-third.npz", **arrays)
    prepare_npz(tmp_path / "w", tmp_path / "b-third.npz", classes=["a", "b", "c"], progress=False)
    # another set in between, then c (the rows of m, other pixels): m would pass as trained on c — refused
    prepare_npz(tmp_path / "w", tiny_npz(tmp_path / "d.npz", sizes=(15, 4, 6)), force=True, progress=False)
    with pytest.raises(UserError, match=r"were trained on, so they would pass as trained on the new images"):
        prepare_npz(tmp_path / "w", third, force=True, progress=False)


def test_prepare_npz_rewrites_deleted_images(tmp_path):
    npz = tiny_npz(tmp_path / "a.npz")
    prepare_npz(tmp_path / "w", npz, progress=False)
    png = tmp_path / "w" / "images" / "val_00002.png"
    png.unlink()
    prepare_npz(tmp_path / "w", npz, progress=False)
    with Image.open(png) as im:  # the same pixels again, not just a file of that name
        np.testing.assert_array_equal(np.asarray(im), np.load(npz)["val_images"][2])


@pytest.mark.parametrize("override,needle", [
    ({"val_labels": None}, "lacks the keys val_labels; an NPZ needs"),
    ({"test_labels": np.zeros(5, np.uint8)}, "has 6 test images and 5 test labels"),
    ({"train_images": np.zeros((12, 8, 8), np.float32)}, "must be uint8"),
    ({"train_images": np.zeros((12, 8, 8, 4), np.uint8)}, "must be uint8 with shape"),
    ({"train_labels": np.zeros((12, 14), np.uint8)}, "one integer class per image"),
    ({"train_labels": np.eye(3, dtype=np.uint8)[np.arange(12) % 3]}, "one column per class (one-hot), or several labels "
                                                                     "per image; save one integer class per image "
                                                                     "instead (for one-hot labels: labels.argmax(axis=1))"),
    ({"val_labels": np.array([0, 1, -1, 2])}, "non-negative integers"),
    ({"val_labels": np.array([0, 1, 1.5, 2])}, "non-negative integers"),
])
def test_bad_npz_contents(tmp_path, override, needle):
    npz = tiny_npz(tmp_path / "bad.npz", **override)
    with pytest.raises(UserError, match="bad.npz") as info:
        prepare_npz(tmp_path / "w", npz, progress=False)
    assert needle in str(info.value)
    assert not (tmp_path / "w").exists()


def test_missing_keys_lists_present_ones(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, images=np.zeros((2, 8, 8), np.uint8), labels=np.zeros(2))
    with pytest.raises(UserError, match=r"Received: keys=\['images', 'labels'\]"):
        read_npz(path)


@pytest.mark.parametrize("content", [b"not a zip at all", None])
def test_not_an_npz_or_truncated(tmp_path, content):
    path = tmp_path / "x.npz"
    if content is None:
        good = tiny_npz(tmp_path / "good.npz").read_bytes()
        content = good[: len(good) // 2]
    path.write_bytes(content)
    with pytest.raises(UserError, match="is not a readable .npz archive"):
        prepare_npz(tmp_path / "w", path, progress=False)
    with pytest.raises(UserError, match="does not exist"):
        read_npz(tmp_path / "absent.npz")


@pytest.mark.skipif(not RETINA.exists(), reason=f"shared RetinaMNIST file absent ({RETINA})")
def test_real_retinamnist(tmp_path):
    result = prepare_npz(tmp_path / "w", RETINA, progress=False)
    assert {s: sum(c.values()) for s, c in result.counts.items()} == {"train": 1080, "val": 120, "test": 400}
    assert result.counts["train"] == {0: 486, 1: 128, 2: 206, 3: 194, 4: 66}
    assert result.counts["test"] == {0: 174, 1: 46, 2: 92, 3: 68, 4: 20}
    assert load_dataset(tmp_path / "w").num_classes == 5


@pytest.mark.skipif(not BREAST.exists(), reason=f"shared BreastMNIST file absent ({BREAST})")
def test_real_breastmnist_two_classes_flat_labels(tmp_path):
    result = prepare_npz(tmp_path / "w", BREAST, progress=False)
    assert {s: sum(c.values()) for s, c in result.counts.items()} == {"train": 546, "val": 78, "test": 156}
    data = load_dataset(tmp_path / "w")
    assert data.classes == [0, 1]
    assert Image.open(data.absolute_paths("val")[0]).mode == "L"


# ---- fetch_medmnist (never touches the network) -------------------------------------------

def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/retinamnist.npz"


def test_md5_table_and_url():
    assert MEDMNIST_MD5[("retinamnist", 28)] == "bd4c0672f1bba3e3a89f0e4e876791e4"
    assert len({v for v in MEDMNIST_MD5.values()}) == len(MEDMNIST_MD5) == 44
    assert MEDMNIST_URL.format(name="retinamnist", suffix="_64") == \
        "https://zenodo.org/records/10519652/files/retinamnist_64.npz?download=1"


@pytest.mark.skipif(not RETINA.exists(), reason=f"shared RetinaMNIST file absent ({RETINA})")
def test_cached_file_with_right_md5_needs_no_network(tmp_path):
    shutil.copy(RETINA, tmp_path / "retinamnist.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = fetch_medmnist("RetinaMNIST", cache_dir=tmp_path, url=closed_port_url())
    assert path == tmp_path / "retinamnist.npz"


@pytest.mark.skipif(not RETINA.exists(), reason=f"shared RetinaMNIST file absent ({RETINA})")
def test_cached_file_with_wrong_md5_is_refused(tmp_path):
    data = bytearray(RETINA.read_bytes())
    data[-100] ^= 0xFF
    (tmp_path / "retinamnist.npz").write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"retinamnist\.npz has MD5 .* expected bd4c0672f1bba3e3a89f0e4e876791e4"):
        fetch_medmnist("retinamnist", cache_dir=tmp_path)


@pytest.mark.skipif(not RETINA.exists(), reason=f"shared RetinaMNIST file absent ({RETINA})")
def test_download_from_file_url_is_verified_and_cached(tmp_path):
    cache = tmp_path / "cache"
    path = fetch_medmnist("retinamnist", cache_dir=cache, url=RETINA.as_uri())
    assert hashlib.md5(path.read_bytes()).hexdigest() == MEDMNIST_MD5[("retinamnist", 28)]
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(RETINA.read_bytes()[:-10])
    with pytest.raises(UserError, match="retinamnist_64.npz .* has MD5 .* it was not kept"):
        fetch_medmnist("retinamnist", size=64, cache_dir=cache, url=corrupt.as_uri())
    assert not (cache / "retinamnist_64.npz").exists()
    assert [p.name for p in cache.iterdir()] == ["retinamnist.npz"]


@pytest.mark.parametrize("url", [closed_port_url(), "file:///nonexistent/dir/retinamnist.npz"], ids=["closed-port", "missing-file"])
def test_offline_message(tmp_path, url):
    with pytest.raises(UserError, match="you are offline\\? download it by hand and pass --npz FILE"):
        fetch_medmnist("retinamnist", cache_dir=tmp_path, url=url)
    assert list(tmp_path.iterdir()) == []


def test_unknown_md5_warns(tmp_path):
    source = tiny_npz(tmp_path / "src.npz")
    with pytest.warns(UserWarning, match="No published MD5"):
        path = fetch_medmnist("mynewmnist", size=128, cache_dir=tmp_path / "c", url=source.as_uri())
    assert path.name == "mynewmnist_128.npz"


@pytest.mark.parametrize("name,size,needle", [
    ("retinamnist", 32, "must be one of 28, 64, 128, 224"),
    ("chestmnist", 28, "is not supported"),
    ("organmnist3d", 28, "is not supported"),
    ("../etc", 28, "is not supported"),
])
def test_fetch_bad_arguments(tmp_path, name, size, needle):
    with pytest.raises(UserError, match=needle):
        fetch_medmnist(name, size=size, cache_dir=tmp_path)
