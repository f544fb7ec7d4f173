"""import-member: a Keras model or val/test probability CSVs become members that vote, report and predict use."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from ensemble.importer import import_member
from members.infra.atomic import load_npz
from members.data.dataset import load_dataset
from members.infra.errors import UserError
from tests.helpers import add_member, one_sentence_error, run_cli


def write_probs(work: Path, folder: Path, *, seed: int = 0, columns=None) -> dict[str, Path]:
    """val/test CSVs keyed by file name without extension, rows in reverse order, summing to 1."""
    data = load_dataset(work)
    rng = np.random.default_rng(seed)
    out = {}
    for split in ("val", "test"):
        rows = data.rows(split).iloc[::-1]
        probs = rng.dirichlet(np.ones(data.num_classes), size=len(rows)) + 3 * np.eye(data.num_classes)[rows["label"]]
        probs /= probs.sum(axis=1, keepdims=True)
        names = columns or [f"prob_{j}" for j in range(data.num_classes)]
        table = pd.DataFrame(probs, columns=names)
        table.insert(0, "image", [Path(p).stem for p in rows["path"]])
        out[split] = folder / f"{split}.csv"
        table.to_csv(out[split], index=False)
    return out


def test_probability_csvs_become_a_member(workdir_copy, tmp_path):
    csvs = write_probs(workdir_copy, tmp_path)
    folder = import_member(workdir_copy, "outside", val_csv=csvs["val"], test_csv=csvs["test"])
    data = load_dataset(workdir_copy)
    val = load_npz(folder / "val.npz")
    assert val["probs"].shape == (len(data.rows("val")), data.num_classes)
    assert np.allclose(val["probs"].sum(axis=1), 1.0, atol=1e-6)
    assert val["row_ids"].tolist() == data.rows("val")["row_id"].tolist() and str(val["fingerprint"]) == data.fingerprint
    expected = pd.read_csv(csvs["val"]).set_index("image").loc[[Path(p).stem for p in data.rows("val")["path"]]]
    np.testing.assert_allclose(val["probs"], expected.to_numpy(), atol=1e-6)  # reordered to split.csv's rows
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["imported"]["kind"] == "probabilities" and metrics["test"]["accuracy"] > 0.9
    add_member(workdir_copy, "other", seed=4)
    from ensemble.vote import run_vote

    report = run_vote(workdir_copy, methods=("soft",), n_boot=10, keep_collapsed=True, console=Console(file=io.StringIO()))
    assert "outside" in report["members"]
    from ensemble.inference import predict_images

    image = str(data.image_root / data.rows("test")["path"].iloc[0])
    with pytest.raises(UserError, match="imported as val/test probabilities and has no model, so predict cannot"):
        predict_images(workdir_copy, [image], method="soft")


@pytest.mark.parametrize("case,needle", [
    ("sum", "sums to"),
    ("missing", "lacks 1 of the"),
    ("unknown", "which is not one of this workdir's"),
    ("twice", "twice"),
    ("columns", "must have an `image` column and one column per class"),
    ("fingerprint", "belong to another split"),
])
def test_bad_probability_csvs(workdir_copy, tmp_path, case, needle):
    csvs = write_probs(workdir_copy, tmp_path)
    table = pd.read_csv(csvs["val"])
    if case == "sum":
        table.loc[2, "prob_0"] += 0.3
    elif case == "missing":
        table = table.iloc[1:]
    elif case == "unknown":
        table.loc[0, "image"] = "nobody"
    elif case == "twice":
        table = pd.concat([table, table.iloc[:1]])
    elif case == "columns":
        table = table.drop(columns=["prob_1"])
    elif case == "fingerprint":
        table["fingerprint"] = "0" * 64
    table.to_csv(csvs["val"], index=False)
    code, _out, err = run_cli("import-member", "--workdir", workdir_copy, "--name", "x", "--val-csv", csvs["val"],
                              "--test-csv", csvs["test"])
    one_sentence_error(code, err, needle)
    assert not (workdir_copy / "members" / "x" / "metrics.json").exists()


def test_class_name_columns_on_a_named_workdir(tmp_path):
    from members.data.dataset import prepare_folders
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        for i in range(10):
            (tmp_path / "d" / c).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "d" / c / f"{c}{i}.png")
    prepare_folders(tmp_path / "w", tmp_path / "d", progress=False)
    csvs = write_probs(tmp_path / "w", tmp_path, columns=["cat", "dog"])
    folder = import_member(tmp_path / "w", "named", val_csv=csvs["val"], test_csv=csvs["test"])
    assert json.loads((folder / "metrics.json").read_text())["classes"] == ["cat", "dog"]


def _keras_model(path: Path, *, size=(16, 16), outputs: int = 5, softmax: bool = True) -> Path:
    import keras

    inputs = keras.Input((*size, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(outputs, activation="softmax" if softmax else None)(x)
    keras.Model(inputs, x).save(path)
    return path


def test_keras_model_becomes_a_member_that_predict_uses(trained, tmp_path):
    work = tmp_path / "w"
    shutil.copytree(trained, work)
    k = load_dataset(work).num_classes
    folder = import_member(work, "keras-in", model=_keras_model(tmp_path / "m.keras", outputs=k))
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["imported"]["kind"] == "keras" and metrics["input_size"] == 16
    assert (folder / "model.keras").is_file() and load_npz(folder / "test.npz")["probs"].shape[1] == k
    from ensemble.inference import predict_images
    from ensemble.vote import run_vote

    run_vote(work, methods=("soft",), n_boot=10, keep_collapsed=True, console=Console(file=io.StringIO()))
    data = load_dataset(work)
    images = [str(data.image_root / p) for p in data.rows("test")["path"].iloc[:2]]
    result = predict_images(work, images, method="soft", print_csv=False)
    assert result.members == ["keras-in", "t1"] and result.probs.shape == (2, k)


@pytest.mark.parametrize("kwargs,needle", [
    ({"outputs": 3}, "has 3 outputs but this workdir has 5 classes"),
    ({"softmax": False}, "end the model with a softmax"),
    ({"size": (16, 24)}, "takes 16x24 images"),
])
def test_bad_keras_models(workdir_copy, tmp_path, kwargs, needle):
    model = _keras_model(tmp_path / "m.keras", **kwargs)
    code, _out, err = run_cli("import-member", "--workdir", workdir_copy, "--name", "k", "--model", model)
    one_sentence_error(code, err, needle)


def test_models_that_are_not_safe_keras_archives_get_their_own_sentence(workdir_copy, tmp_path):
    import keras

    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(b"not a zip archive at all")
    code, _out, err = run_cli("import-member", "--workdir", workdir_copy, "--name", "k", "--model", garbage)
    one_sentence_error(code, err, "is not a Keras 3 .keras archive", "save the model again")
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Lambda(lambda t: t / 255.0)(inputs)  # noqa: unsafe on purpose: the import must refuse it
    x = keras.layers.Dense(5, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    keras.Model(inputs, x).save(tmp_path / "lambda.keras")
    code, _out, err = run_cli("import-member", "--workdir", workdir_copy, "--name", "k", "--model", tmp_path / "lambda.keras")
    one_sentence_error(code, err, "holds a Lambda layer, which safe_mode does not load", "Rescaling instead of a Lambda")
    csvs = write_probs(workdir_copy, tmp_path)
    code, _out, err = run_cli("import-member", "--workdir", workdir_copy, "--name", "k", "--val-csv", csvs["val"])
    one_sentence_error(code, err, "--val-csv needs --test-csv too")
    code, _out, err = run_cli("import-member", "--workdir", workdir_copy, "--name", "k", "--val-csv", csvs["val"],
                              "--test-csv", csvs["test"], "--model", garbage)
    one_sentence_error(code, err, "not both kinds")


def test_import_needs_one_source_and_a_free_name(workdir_copy, tmp_path):
    code, _out, err = run_cli("import-member", "--workdir", workdir_copy, "--name", "k")
    one_sentence_error(code, err, "Give the member to import: --model FILE.keras, or both --val-csv and --test-csv")
    add_member(workdir_copy, "taken")
    csvs = write_probs(workdir_copy, tmp_path)
    code, _out, err = run_cli("import-member", "--workdir", workdir_copy, "--name", "taken", "--val-csv", csvs["val"],
                              "--test-csv", csvs["test"])
    one_sentence_error(code, err, "already exists", "--force")
    not_keras = tmp_path / "m.h5"
    not_keras.write_bytes(b"x")
    code, _out, err = run_cli("import-member", "--workdir", workdir_copy, "--name", "k", "--model", not_keras)
    one_sentence_error(code, err, "is not a .keras file")


def _one_class_csvs(work: Path, folder: Path, cls: int) -> dict[str, Path]:
    """val/test CSVs whose every row puts 0.9 on class ``cls``: a model that learned nothing."""
    data = load_dataset(work)
    out = {}
    for split in ("val", "test"):
        rows = data.rows(split)
        probs = np.full((len(rows), data.num_classes), 0.1 / (data.num_classes - 1))
        probs[:, cls] = 0.9
        table = pd.DataFrame(probs, columns=[f"prob_{j}" for j in range(data.num_classes)])
        table.insert(0, "image", [Path(p).stem for p in rows["path"]])
        out[split] = folder / f"{split}_one_class.csv"
        table.to_csv(out[split], index=False)
    return out


def test_an_imported_member_gets_the_collapse_check_and_vote_leaves_it_out(workdir_copy, tmp_path, capsys):
    from ensemble.vote import run_vote

    csvs = _one_class_csvs(workdir_copy, tmp_path, cls=3)
    folder = import_member(workdir_copy, "flat", val_csv=csvs["val"], test_csv=csvs["test"])
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["collapsed"] is True and metrics["collapse"]["reason"] == "its val predictions fall into one class (3)"
    assert "trained outside this toolkit" in metrics["collapse"]["advice"]
    assert set(metrics["majority"]) == {"val", "test"} and set(metrics["below_majority"]) == {"val", "test"}
    assert "[flat] WARNING: collapsed" in capsys.readouterr().err
    good = write_probs(workdir_copy, tmp_path, seed=1)
    fine = json.loads((import_member(workdir_copy, "fine", val_csv=good["val"], test_csv=good["test"])
                       / "metrics.json").read_text())
    assert fine["collapsed"] is False and fine["below_majority"] == {"val": False, "test": False}
    add_member(workdir_copy, "other", seed=4)
    report = run_vote(workdir_copy, methods=("soft",), n_boot=10, console=Console(file=io.StringIO()))
    assert "flat" not in report["members"] and {"fine", "other"} <= set(report["members"])


def test_a_forced_import_that_fails_leaves_the_previous_member_whole(workdir_copy, tmp_path, monkeypatch):
    import members.training.artifacts as artifacts

    csvs = write_probs(workdir_copy, tmp_path)
    folder = import_member(workdir_copy, "outside", val_csv=csvs["val"], test_csv=csvs["test"])
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    (tmp_path / "second").mkdir()
    other = write_probs(workdir_copy, tmp_path / "second", seed=7)
    calls = []

    def dies(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:  # the test split: the val file of the replacement is written already
            raise OSError(28, "No space left on device", str(path))
        return original(path, *args, **kwargs)

    original = artifacts.save_predictions
    monkeypatch.setattr(artifacts, "save_predictions", dies)
    with pytest.raises((UserError, OSError)):
        import_member(workdir_copy, "outside", val_csv=other["val"], test_csv=other["test"], force=True)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # the old member, byte for byte
    monkeypatch.setattr(artifacts, "save_predictions", original)
    import_member(workdir_copy, "outside", val_csv=other["val"], test_csv=other["test"], force=True)
    assert {p.name: p.read_bytes() for p in folder.iterdir()}["val.npz"] != before["val.npz"]
    assert not any(p.name.startswith(".outside") for p in folder.parent.iterdir())
