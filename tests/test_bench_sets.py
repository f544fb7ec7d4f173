"""bench/sets.py: a pretraining source set leaves out every patient of the set it pretrains for."""

from __future__ import annotations

import pandas as pd

from bench.sets import SETS, _without_patients


def test_every_image_of_a_shared_patient_is_left_out_and_the_rest_kept_in_order(tmp_path, capsys):
    source = tmp_path / "big" / "trainLabels.csv"
    target = tmp_path / "small" / "trainLabels.csv"
    source.parent.mkdir()
    target.parent.mkdir()
    source.write_text("image,level\n10_left,0\n10_right,2\n11_left,1\n12_left,4\n12_right,3\n13_right,0\n")
    target.write_text("image,level\n12_left,4\n10_right,2\n99_left,0\n")  # patient 10 shares only its right eye
    out = _without_patients(source, target, tmp_path / "work" / "disjoint.labels.csv")
    kept = pd.read_csv(out, dtype={"image": str})
    assert kept["image"].tolist() == ["11_left", "13_right"]
    assert kept["level"].tolist() == [1, 0]
    assert "left out 4 images of 2 patients" in capsys.readouterr().err


def test_the_disjoint_eyepacs_source_names_the_set_it_is_disjoint_from():
    s = SETS["eyepacs64-disjoint"]
    assert s.folder == SETS["eyepacs64"].folder and s.without_patients_of == SETS["eyepacs512"].folder
