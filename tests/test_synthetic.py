"""Tests for the synthetic fundus generator (members/data/synthetic.py)."""

from __future__ import annotations

import csv
import re

import numpy as np
import pytest
from PIL import Image, ImageFilter

from members.infra.errors import UserError
from members.data.synthetic import (
    GRADE_MIX,
    LABELS_NAME,
    MARKER_NAME,
    DemoDataSummary,
    grade_counts,
    plan_images,
    render_fundus,
    write_demo_data,
)


def read_labels(out):
    with open(out / LABELS_NAME, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def folder_bytes(out):
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path):
    a = folder_bytes(write_demo_data(tmp_path / "a", images=6, size=32, seed=3, progress=False).out)
    b = folder_bytes(write_demo_data(tmp_path / "b", images=6, size=32, seed=3, progress=False).out)
    c = folder_bytes(write_demo_data(tmp_path / "c", images=6, size=32, seed=4, progress=False).out)
    assert a == b
    assert len(a) == 6 + 2  # images, labels, marker
    jpegs = [k for k in a if k.endswith(".jpeg")]
    assert any(a[k] != c.get(k) for k in jpegs)


def test_kaggle_layout(tmp_path):
    summary = write_demo_data(tmp_path / "out", images=8, size=32, seed=0, progress=False)
    assert isinstance(summary, DemoDataSummary)
    assert (summary.images, summary.size, sum(summary.counts.values())) == (8, 32, 8)
    rows = read_labels(tmp_path / "out")
    assert rows[0] == ["image", "level"]
    names = [r[0] for r in rows[1:]]
    assert all(re.fullmatch(r"\d+_(left|right)", n) for n in names)
    assert all(0 <= int(r[1]) <= 4 for r in rows[1:])
    for name in names:
        with Image.open(tmp_path / "out" / "images" / f"{name}.jpeg") as im:
            assert (im.format, im.size, im.mode) == ("JPEG", (32, 32), "RGB")
    patients = [int(n.split("_")[0]) for n in names]
    assert patients == sorted(patients)  # rows in patient order
    assert names[0::2] == [f"{p}_left" for p in patients[0::2]]
    assert names[1::2] == [f"{p}_right" for p in patients[0::2]]  # both eyes, left first
    assert sorted(p.name for p in (tmp_path / "out" / "images").iterdir()) == sorted(f"{n}.jpeg" for n in names)


def test_odd_count_gives_one_patient_with_one_eye():
    plan = plan_images(7, seed=1)
    per_patient = {}
    for item in plan:
        per_patient.setdefault(item.patient, []).append(item.eye)
    assert sorted(len(eyes) for eyes in per_patient.values()) == [1, 2, 2, 2]
    assert per_patient[plan[-1].patient] == ["left"]


def test_grade_mix_matches_and_eyes_are_correlated():
    plan = plan_images(400, seed=5)
    counts = np.bincount([item.grade for item in plan], minlength=5)
    assert np.all(np.abs(counts - 400 * np.asarray(GRADE_MIX)) <= 1)
    assert grade_counts(800).tolist() == [584, 56, 120, 20, 20]
    by_patient = {}
    for item in plan:
        by_patient.setdefault(item.patient, []).append(item.grade)
    diff = np.array([abs(a - b) for a, b in by_patient.values()])
    assert np.mean(diff == 0) > 0.7 and np.mean(diff <= 1) > 0.95 and np.any(diff == 1)


def test_every_grade_of_the_mix_gets_three_patients_from_30_images(tmp_path):
    """demo-data --images 100 used to give grade 4 two images, a set prepare refused."""
    from members.data.dataset import prepare_csv

    for n in range(30, 400):
        counts = grade_counts(n)
        assert counts.sum() == n and counts.min() >= 6, n
        assert counts[0] == counts.max()  # still the EyePACS shape: grade 0 the majority
    assert grade_counts(29).tolist() == [21, 2, 4, 1, 1]  # below 30 the plain mix (demo-data says prepare cannot split it)
    data = write_demo_data(tmp_path / "d", images=100, size=16, seed=5, progress=False).out
    prepared = prepare_csv(tmp_path / "w", data / "trainLabels.csv", data / "images", progress=False)
    assert prepared.kept == 100 and prepared.grouped
    for split in ("train", "val", "test"):
        assert all(prepared.counts[split].get(g, 0) >= 1 for g in range(5)), prepared.counts


@pytest.mark.parametrize("n", [1, 5, 7, 23, 100])
def test_balanced_counts_are_as_equal_as_possible(n):
    counts = grade_counts(n, balanced=True)
    assert counts.sum() == n and counts.max() - counts.min() <= 1
    plan = plan_images(n, seed=0, balanced=True)
    assert np.bincount([item.grade for item in plan], minlength=5).tolist() == counts.tolist()


def test_background_outside_the_circle_is_black(tmp_path):
    for seed in range(4):
        for grade in range(5):
            img = render_fundus(grade, size=40, rng=np.random.default_rng(seed))
            assert img.shape == (40, 40, 3) and img.dtype == np.uint8
            assert img[:3, :3].max() == 0 and img[-3:, -3:].max() == 0 and img[:3, -3:].max() == 0
            assert img[18:22, 18:22].mean() > 20  # the fundus itself is not black
    write_demo_data(tmp_path, images=4, size=64, progress=False)
    for path in (tmp_path / "images").iterdir():
        with Image.open(path) as im:
            pixels = np.asarray(im)
        for block in (pixels[:8, :8], pixels[:8, -8:], pixels[-8:, :8], pixels[-8:, -8:]):
            assert block.mean() < 4 and block.max() <= 20  # black but for faint JPEG ringing


@pytest.mark.parametrize("seed", range(6))
def test_optic_disc_is_left_in_left_eyes_and_right_in_right_eyes(seed):
    def disc_column(img):  # the palest region: the optic disc is far bluer than the retina
        blue = np.asarray(Image.fromarray(img[..., 2]).filter(ImageFilter.BoxBlur(2)), float)
        return np.unravel_index(np.argmax(blue), blue.shape)[1]

    left = render_fundus(0, size=64, rng=np.random.default_rng(seed), eye="left")
    right = render_fundus(0, size=64, rng=np.random.default_rng(seed), eye="right")
    assert disc_column(left) < 32 < disc_column(right)


def test_lesion_pixels_grow_with_grade():
    # The same rng gives the same eye at every grade, so the difference to grade 0 is the lesions.
    changed = np.zeros(5)
    for seed in range(8):
        base = render_fundus(0, size=64, rng=np.random.default_rng(seed)).astype(int)
        for grade in range(5):
            img = render_fundus(grade, size=64, rng=np.random.default_rng(seed)).astype(int)
            changed[grade] += np.sum(np.abs(img - base).sum(-1) > 30)
    assert changed[0] == 0
    assert changed[1] < changed[2] < changed[3] and changed[1] < changed[4]


def test_same_content_at_every_resolution():
    small = render_fundus(2, size=32, rng=np.random.default_rng(0)).astype(float)
    large = render_fundus(2, size=128, rng=np.random.default_rng(0))
    down = np.asarray(Image.fromarray(large).resize((32, 32), Image.BOX), float)
    other = render_fundus(2, size=32, rng=np.random.default_rng(1)).astype(float)
    assert np.abs(small - down).mean() < 4 < np.abs(small - other).mean()


def test_rerun_replaces_its_own_output(tmp_path):
    write_demo_data(tmp_path, images=6, size=32, progress=False)
    write_demo_data(tmp_path, images=3, size=32, seed=1, progress=False)
    names = [r[0] for r in read_labels(tmp_path)[1:]]
    assert len(names) == 3
    assert sorted(p.stem for p in (tmp_path / "images").iterdir()) == sorted(names)
    assert (tmp_path / MARKER_NAME).is_file()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"images": 0}, "number of images must be at least 1"),
        ({"size": 8}, "between 16 and 4096 pixels"),
        ({"seed": -1}, "seed must be an integer from 0"),
        ({"images": 2.5}, "whole numbers"),
    ],
)
def test_bad_arguments_raise_user_error(tmp_path, kwargs, message):
    with pytest.raises(UserError, match=message):
        write_demo_data(tmp_path / "out", progress=False, **kwargs)
    assert not (tmp_path / "out").exists()


def test_refuses_a_file_or_a_foreign_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        write_demo_data(tmp_path / "file", images=1, size=16, progress=False)
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / LABELS_NAME).write_text("image,level\n")
    with pytest.raises(UserError, match="not written by demo-data"):
        write_demo_data(tmp_path / "real", images=1, size=16, progress=False)
    assert (tmp_path / "real" / LABELS_NAME).read_text() == "image,level\n"


def test_render_rejects_bad_grade_and_eye():
    rng = np.random.default_rng(0)
    with pytest.raises(UserError, match="Grade must be an integer 0..4"):
        render_fundus(5, size=32, rng=rng)
    with pytest.raises(UserError, match="Eye must be 'left' or 'right'"):
        render_fundus(0, size=32, rng=rng, eye="middle")


def test_demo_data_says_when_prepare_could_not_split_the_set(tmp_path):
    from tests.helpers import run_cli

    code, out, err = run_cli("demo-data", tmp_path / "few", "--images", "20", "--size", "16")
    assert code == 0 and "grade 4: 0" in out
    assert ("Note: grades 1, 2, 3, 4 have fewer than 6 images (three patients), too few for prepare to put one in "
            "each of train, val and test; pass --images 30 or more") in " ".join(err.split())
    code, _, err = run_cli("demo-data", tmp_path / "enough", "--images", "30", "--size", "16")
    assert code == 0 and "Note:" not in err
