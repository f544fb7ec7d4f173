"""Tests for members/data/split.py: stratified, grouped and given splits."""

from __future__ import annotations

import numpy as np
import pytest

from members.infra.errors import UserError
from members.data.split import assign_splits, class_counts, patient_groups

RNG = np.random.default_rng(42)
# ~DR-like imbalance: 400 rows over 5 grades.
LABELS = RNG.choice(5, size=400, p=[0.45, 0.12, 0.22, 0.13, 0.08])


def test_class_counts():
    assert class_counts([0, 2, 2, 4], 5).tolist() == [1, 0, 2, 0, 1]
    assert class_counts(np.array([], dtype=int), 3).tolist() == [0, 0, 0]
    assert class_counts([1, 1], 2).dtype == np.int64


@pytest.mark.parametrize("paths,expected", [
    (["10_left.jpeg", "10_right.jpeg", "13_LEFT.png"], ["10", "10", "13"]),
    (["a/1_left", "b/1_left"], ["a/1", "b/1"]),
    (["p_x_left.jpg", "p_x_Right.jpg"], ["p_x", "p_x"]),
    (["10_left.jpeg", "IDRiD_001.jpg"], None),
    (["train_IDRiD_001.jpg"], None),
    ([], None),
])
def test_patient_groups(paths, expected):
    assert patient_groups(paths) == expected


def proportions(labels, split, name, k=5):
    part = labels[split == name]
    return class_counts(part, k) / len(part)


def test_ungrouped_split_is_exact_stratified_and_deterministic():
    split = assign_splits(LABELS, seed=3)
    assert set(split) == {"train", "val", "test"}
    counts = class_counts(LABELS, 5)
    for c in range(5):
        in_class = split[LABELS == c]
        expected = max(1, round(counts[c] * 0.15))
        assert (in_class == "val").sum() == expected
        assert (in_class == "test").sum() == expected
    assert np.array_equal(split, assign_splits(LABELS, seed=3))
    assert not np.array_equal(split, assign_splits(LABELS, seed=4))
    assert abs((split == "train").mean() - 0.70) < 0.02


def test_custom_fractions():
    split = assign_splits(LABELS, val_fraction=0.1, test_fraction=0.2, seed=0)
    assert abs((split == "val").mean() - 0.1) < 0.02
    assert abs((split == "test").mean() - 0.2) < 0.02


def test_grouped_split_keeps_patients_together_and_is_stratified():
    # 200 patients, two eyes each, grades of the two eyes usually equal or adjacent.
    base = RNG.choice(5, size=200, p=[0.45, 0.12, 0.22, 0.13, 0.08])
    other = np.clip(base + RNG.choice([-1, 0, 0, 0, 1], size=200), 0, 4)
    labels = np.stack([base, other], axis=1).reshape(-1)
    groups = [f"{i}" for i in range(200) for _ in range(2)]
    split = assign_splits(labels, groups=groups, seed=0)
    for g in range(200):
        assert split[2 * g] == split[2 * g + 1]
    overall = class_counts(labels, 5) / len(labels)
    for name, share in (("train", 0.70), ("val", 0.15), ("test", 0.15)):
        assert abs((split == name).mean() - share) < 0.03
        assert np.abs(proportions(labels, split, name) - overall).max() < 0.05, name
    assert np.array_equal(split, assign_splits(labels, groups=groups, seed=0))


def test_given_split_is_kept_and_val_carved_from_train():
    labels = np.array([0, 1, 2] * 30 + [0, 1, 2] * 10)
    given = ["train"] * 90 + ["test"] * 30
    split = assign_splits(labels, given=given, val_fraction=0.15, test_fraction=0.15, seed=0)
    assert (split[90:] == "test").all()
    assert set(split[:90]) == {"train", "val"}
    # val: 15 % of the whole class (40 rows) -> 6 per class, taken from train.
    for c in range(3):
        assert ((split == "val") & (labels == c)).sum() == 6
    assert not np.any((split == "val")[90:])


def test_given_split_complete_is_untouched():
    given = ["train", "val", "test"] * 4
    assert assign_splits([0, 1, 1, 1, 0, 0] * 2, given=given).tolist() == given  # every split holds both classes


def test_given_split_missing_val_and_test_carves_both():
    labels = np.array([0, 1] * 20)
    split = assign_splits(labels, given=["train"] * 40, seed=0)
    assert (split == "val").sum() == 6 and (split == "test").sum() == 6


def test_given_split_with_groups_keeps_patients_together():
    labels = np.array([0, 0, 1, 1] * 15)
    groups = [str(i // 2) for i in range(60)]
    given = ["train"] * 48 + ["test"] * 12
    split = assign_splits(labels, groups=groups, given=given, seed=1)
    assert (split[48:] == "test").all()
    assert all(split[i] == split[i + 1] for i in range(0, 60, 2))
    assert (split == "val").sum() > 0


@pytest.mark.parametrize("labels,needle", [
    ([0] * 10 + [1] * 2, "Class 1 has only 2 rows, too few to split"),
    ([0] * 10 + [2] * 5, r"Class 1 has only 0 rows.*consecutive integers starting at 0.*\{0: 10, 2: 5\}"),
])
def test_too_few_rows_in_a_class(labels, needle):
    with pytest.raises(UserError, match=needle) as info:
        assign_splits(labels)
    assert "at least 3" in str(info.value)


def test_three_rows_per_class_are_enough():
    split = assign_splits([0, 0, 0, 1, 1, 1])
    assert sorted(split[:3]) == ["test", "train", "val"]


def test_too_few_rows_in_train_to_carve_val():
    with pytest.raises(UserError, match="in the train split"):
        assign_splits([0, 0, 1, 1], given=["train", "train", "train", "test"])


def test_absurd_label_values():
    with pytest.raises(UserError, match="max_label=123456"):
        assign_splits([0, 1, 123456] * 3)


@pytest.mark.parametrize("val,test", [(0, 0.1), (0.1, 0), (0.5, 0.5), (1.2, 0.1), (-0.1, 0.1)])
def test_bad_fractions(val, test):
    with pytest.raises(UserError, match="fraction"):
        assign_splits(LABELS, val_fraction=val, test_fraction=test)


def test_a_class_held_by_two_patients_goes_to_train_first_and_the_gap_is_said(capsys):
    # 30 patients of class 0 and 15 of class 2 (two eyes each), and class 1 in two patients only (two eyes each)
    labels = [0] * 60 + [2] * 30 + [1] * 4
    groups = [f"p{i // 2}" for i in range(90)] + ["q0", "q0", "q1", "q1"]
    split = assign_splits(labels, groups=groups, seed=0)
    rare = {s for s, lab in zip(split, labels) if lab == 1}
    assert "train" in rare and len(rare) == 2  # train and one of val/test; a patient never spans two splits
    missing = ({"val", "test"} - rare).pop()
    err = " ".join(capsys.readouterr().err.split())
    assert (f"Warning: the {missing} split has no row of class 1: its 4 rows belong to 2 patient group(s), too few "
            "for every split to get one") in err and "members cannot learn it" not in err


def test_named_classes_are_named_in_split_errors_and_warnings(capsys):
    names = ["No_DR", "Mild", "Severe"]
    with pytest.raises(UserError) as info:
        assign_splits([0] * 10 + [1] * 10 + [2] * 2, classes=names)
    assert str(info.value).startswith("Class 'Severe' has only 2 rows, too few to split")
    assert "add images of class 'Severe'" in str(info.value)
    assert "class_counts={'No_DR': 10, 'Mild': 10, 'Severe': 2}" in str(info.value)
    labels = [0] * 60 + [1] * 30 + [2] * 4  # 'Severe' in two patients: one split goes without it
    groups = [f"p{i // 2}" for i in range(90)] + ["q0", "q0", "q1", "q1"]
    assign_splits(labels, groups=groups, classes=names, seed=0)
    err = " ".join(capsys.readouterr().err.split())
    assert "split has no row of class 'Severe': its 4 rows belong to 2 patient group(s)" in err


def test_a_drawn_val_of_one_class_is_refused():
    """Two classes, the rarer in two patients: train and test get one each, val none; vote could not fit on val."""
    labels = [0] * 60 + [1] * 4
    groups = [f"p{i // 2}" for i in range(60)] + ["q0", "q0", "q1", "q1"]
    with pytest.raises(UserError, match=r"^The val split prepare drew holds only rows of class 0 \(\d+ rows\): the "
                                        r"rows of class 1 belong to 2 patient group\(s\), too few to go round"):
        assign_splits(labels, groups=groups, seed=0)


@pytest.mark.parametrize("given_by", ["split column", "split folders"])
def test_a_given_val_of_one_class_is_refused(given_by):
    labels = [0, 1] * 10 + [1] * 3
    given = ["train"] * 20 + ["val"] * 3
    with pytest.raises(UserError) as info:
        assign_splits(labels, given=given, classes=["healthy", "referable"], given_by=given_by)
    assert str(info.value) == (
        f"The val split given by the {given_by} holds only rows of class 'referable' (3 rows); vote chooses and fits "
        "the ensemble on val, which needs rows of at least two classes: put rows of at least two classes in val, or "
        f"drop the {given_by} to let prepare draw a stratified split.")


def test_a_given_split_lacking_a_class_is_warned_about(capsys):
    labels = [0, 1, 2] * 10 + [0, 1] * 3 + [0, 1, 2] * 2
    given = ["train"] * 30 + ["val"] * 6 + ["test"] * 6
    split = assign_splits(labels, given=given, classes=["a", "b", "c"])
    assert split.tolist() == given  # kept as given
    err = " ".join(capsys.readouterr().err.split())
    assert ("Warning: the val split given by the split column has no row of class 'c' (12 rows in the other "
            "splits), so its figures for that class are missing; move some of its rows into val") in err
    assert "test split" not in err


def test_patient_groups_of_two_eyes_follow_the_fractions_without_a_warning(capsys):
    groups = [str(i // 2) for i in range(len(LABELS))]
    split = assign_splits(LABELS, groups=groups, seed=0)
    assert abs(float(np.mean(split == "train")) - 0.70) < 0.05
    assert "far from the shares asked" not in capsys.readouterr().err


def test_six_equal_groups_leave_no_val_and_are_refused():
    labels = [i % 3 for i in range(60)]
    with pytest.raises(UserError, match=r"^The val split prepare drew holds no row \(0 rows\): the rows of classes "
                                        r"0, 1, 2 belong to 6 patient group\(s\), too few"):
        assign_splits(labels, groups=[str(i % 6) for i in range(60)], seed=0)
