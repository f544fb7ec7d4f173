"""import-member: a Keras model or val/test probability CSVs become members that vote, report and predict use."""

from __future__ import annotations

import io
import json
import os
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
    with pytest.raises(UserError, match="imported as val/test probabilities and has no model, so it cannot grade"):
        predict_images(workdir_copy, [image], method="soft")


@pytest.mark.parametrize("case,needles", [
    ("sum", ["sums to 1.5, not 1 (rows up to 0.01 off are renormalised)", "not scores or logits"]),
    ("rounded badly", ["sums to 0.97, not 1", "more decimals"]),
    ("negative", ["holds -0.5, not a probability between 0 and 1", "not scores or logits"]),
    ("above one", ["holds 1.2, not a probability between 0 and 1", "not scores or logits"]),
    ("missing", ["lacks 1 of the"]),
    ("unknown", ["which is not one of this workdir's"]),
    ("outside root", ["which is not under the image root", "a copy elsewhere?", "write the bare file name"]),
    ("twice", ["twice"]),
    ("columns", ["must have an image column (image, path, id_code", "and one column per class", "prob_2, prob_3"]),
    ("fingerprint", ["belong to another split"]),
])
def test_bad_probability_csvs(workdir_copy, tmp_path, case, needles):
    csvs = write_probs(workdir_copy, tmp_path)
    table = pd.read_csv(csvs["val"])
    probs = [f"prob_{j}" for j in range(5)]
    if case == "sum":
        table.loc[2, probs] = 0.3
    elif case == "rounded badly":
        table.loc[2, probs] = 0.194
    elif case == "negative":
        table.loc[2, probs] = [-0.5, 0.5, 0.5, 0.25, 0.25]
    elif case == "above one":
        table.loc[2, probs] = [1.2, -0.2, 0, 0, 0]
    elif case == "outside root":
        table.loc[0, "image"] = str(tmp_path / "elsewhere" / f"{table.loc[0, 'image']}.jpeg")
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
    one_sentence_error(code, err, *needles)
    assert not (workdir_copy / "members" / "x" / "metrics.json").exists()


def _two_class_workdir(tmp_path: Path, *, stem: str = "{c}{i}") -> Path:
    """A prepared workdir of 20 tiny images in class folders cat/dog, files named ``stem``."""
    from members.data.dataset import prepare_folders
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        for i in range(10):
            (tmp_path / "d" / c).mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "d" / c / f"{stem.format(c=c, i=i)}.png")
    prepare_folders(tmp_path / "w", tmp_path / "d", progress=False)
    return tmp_path / "w"


def test_class_name_columns_on_a_named_workdir(tmp_path):
    csvs = write_probs(_two_class_workdir(tmp_path), tmp_path, columns=["cat", "dog"])
    folder = import_member(tmp_path / "w", "named", val_csv=csvs["val"], test_csv=csvs["test"])
    assert json.loads((folder / "metrics.json").read_text())["classes"] == ["cat", "dog"]


def test_probability_columns_of_more_classes_are_refused(workdir_copy, tmp_path):
    csvs = write_probs(workdir_copy, tmp_path)
    table = pd.read_csv(csvs["val"])
    table[[f"prob_{j}" for j in range(5)]] *= 0.995
    table["prob_5"] = 0.005  # a 6-class task's file: dropping prob_5 would renormalise the rest silently
    table.to_csv(csvs["val"], index=False)
    with pytest.raises(UserError, match=r"has probability columns for more classes than the workdir's 5 \(prob_5 "
                                        r"beyond prob_4\)"):
        import_member(workdir_copy, "six", val_csv=csvs["val"], test_csv=csvs["test"])
    with pytest.raises(UserError, match=r"val probabilities file .* is a folder, not a file; pass a CSV"):
        import_member(workdir_copy, "six", val_csv=tmp_path, test_csv=csvs["test"])
    assert not (workdir_copy / "members" / "six").exists()


def test_probabilities_rounded_to_three_decimals_are_renormalised(workdir_copy, tmp_path, capsys):
    csvs = write_probs(workdir_copy, tmp_path)
    for split in ("val", "test"):
        table = pd.read_csv(csvs[split])
        cols = [f"prob_{j}" for j in range(5)]
        table[cols] = table[cols].round(3)
        if split == "val":
            table.loc[4, cols] = [0.597, 0.1, 0.1, 0.1, 0.1]  # sums to 0.997: rounding, not scores
        else:
            table.loc[2, cols] = [0.61, 0.1, 0.1, 0.1, 0.1]  # sums to 1.01 (1.0100000000000000089): at the limit, kept
        table.to_csv(csvs[split], index=False)
    folder = import_member(workdir_copy, "rounded", val_csv=csvs["val"], test_csv=csvs["test"])
    data = load_dataset(workdir_copy)
    given = pd.read_csv(csvs["val"]).set_index("image").loc[[Path(p).stem for p in data.rows("val")["path"]]].to_numpy()
    sums = given.sum(axis=1)
    assert np.abs(sums - 1).max() == pytest.approx(0.003) and (np.abs(sums - 1) > 1e-6).sum() >= 1
    np.testing.assert_allclose(load_npz(folder / "val.npz")["probs"], given / sums[:, None], atol=1e-6)
    err = capsys.readouterr().err
    assert f"renormalised {(np.abs(sums - 1) > 1e-6).sum()} of the {len(sums)} val rows to sum to 1" in err
    assert "largest deviation 0.003" in err


def test_a_binary_workdir_takes_prob_1_alone(tmp_path, capsys):
    work = _two_class_workdir(tmp_path)
    data = load_dataset(work)
    csvs = {}
    for split in ("val", "test"):
        rows = data.rows(split)
        p1 = np.linspace(0.1, 0.9, len(rows))
        csvs[split] = tmp_path / f"{split}.csv"
        pd.DataFrame({"image": rows["path"], "prob_1": p1}).to_csv(csvs[split], index=False)
    folder = import_member(work, "sigmoid-csv", val_csv=csvs["val"], test_csv=csvs["test"])
    p1 = np.linspace(0.1, 0.9, len(data.rows("val")))
    np.testing.assert_allclose(load_npz(folder / "val.npz")["probs"], np.stack([1 - p1, p1], axis=1), atol=1e-6)
    err = capsys.readouterr().err
    assert "has one probability column (prob_1): read as p of class dog, and 1 - p as class cat's" in err
    pd.DataFrame({"image": data.rows("val")["path"], "prob_1": 1.5}).to_csv(csvs["val"], index=False)
    code, _out, err = run_cli("import-member", "--workdir", work, "--name", "x", "--val-csv", csvs["val"],
                              "--test-csv", csvs["test"])
    one_sentence_error(code, err, "gives 1.5 for class dog, not a probability between 0 and 1")


@pytest.mark.parametrize("header", ["review", "refer"])
def test_predict_out_csv_with_absolute_paths_imports(workdir_copy, tmp_path, header):
    """The CSV ``predict --out`` writes (absolute ``path`` column, then label, class, ..., prob_k) is a valid import,
    with its ``review`` column or, written before 2026-12-08, ``refer``."""
    from ensemble.inference import PredictionResult

    data = load_dataset(workdir_copy)
    rng = np.random.default_rng(5)
    csvs, expected = {}, {}
    for split in ("val", "test"):
        rows = data.rows(split).iloc[::-1]
        probs = rng.dirichlet(np.ones(5), size=len(rows))
        n = len(rows)
        result = PredictionResult(paths=[str(data.image_root / p) for p in rows["path"]], probs=probs,
                                  labels=probs.argmax(axis=1), agreement=np.ones(n), confidence=probs.max(axis=1),
                                  review=np.zeros(n, bool), skipped={"/elsewhere/unreadable.jpeg": "is empty (0 bytes)"},
                                  method="soft", members=["a", "b"], referral_note="", classes=data.classes)
        csvs[split] = tmp_path / f"{split}_predict.csv"
        text = result.to_csv()
        assert ",agreement,review,prob_0," in text.splitlines()[0]
        csvs[split].write_text(text.replace(",agreement,review,", f",agreement,{header},", 1))
        expected[split] = probs[::-1]  # back in split.csv order
    assert pd.read_csv(csvs["val"]).columns[0] == "path" and pd.read_csv(csvs["val"])["path"].iloc[0].startswith("/")
    assert pd.read_csv(csvs["val"])["note"].iloc[-1] == "not graded: is empty (0 bytes)"  # such a row is passed over
    folder = import_member(workdir_copy, "from-predict", val_csv=csvs["val"], test_csv=csvs["test"])
    for split in ("val", "test"):
        np.testing.assert_allclose(load_npz(folder / f"{split}.npz")["probs"], expected[split], atol=1e-6)


def test_names_match_across_unicode_normalisation(tmp_path):
    import unicodedata

    work = _two_class_workdir(tmp_path, stem=unicodedata.normalize("NFD", "café_{c}{i}"))
    data = load_dataset(work)
    assert all(unicodedata.is_normalized("NFD", p) and not unicodedata.is_normalized("NFC", p)
               for p in data.rows("val")["path"])  # split.csv keeps the decomposed names of the disk
    csvs = write_probs(work, tmp_path)
    for split in ("val", "test"):
        table = pd.read_csv(csvs[split])
        table["image"] = [unicodedata.normalize("NFC", name) for name in table["image"]]
        table.to_csv(csvs[split], index=False)
    folder = import_member(work, "nfc", val_csv=csvs["val"], test_csv=csvs["test"])
    expected = pd.read_csv(csvs["val"]).set_index("image").loc[
        [unicodedata.normalize("NFC", Path(p).stem) for p in data.rows("val")["path"]]]
    np.testing.assert_allclose(load_npz(folder / "val.npz")["probs"], expected.to_numpy(), atol=1e-6)


@pytest.mark.parametrize("variant", ["semicolon, decimal comma", "tab", "capitalised columns", "id_code column"])
def test_probability_csvs_read_like_labels_csvs(workdir_copy, tmp_path, variant):
    csvs = write_probs(workdir_copy, tmp_path)
    data = load_dataset(workdir_copy)
    expected = pd.read_csv(csvs["val"]).set_index("image").loc[[Path(p).stem for p in data.rows("val")["path"]]]
    for split in ("val", "test"):
        table = pd.read_csv(csvs[split])
        if variant == "semicolon, decimal comma":
            table.to_csv(csvs[split], index=False, sep=";", decimal=",")
        elif variant == "tab":
            table.to_csv(csvs[split], index=False, sep="\t")
        elif variant == "capitalised columns":
            table.rename(columns={c: c.capitalize() for c in table.columns}).to_csv(csvs[split], index=False)
        else:
            table.rename(columns={"image": "id_code"}).to_csv(csvs[split], index=False)
    if variant == "semicolon, decimal comma":
        assert ";" in csvs["val"].read_text().splitlines()[1] and "0," in csvs["val"].read_text()
    folder = import_member(workdir_copy, "v", val_csv=csvs["val"], test_csv=csvs["test"])
    np.testing.assert_allclose(load_npz(folder / "val.npz")["probs"], expected.to_numpy(), atol=1e-6)


def test_an_image_column_can_be_named(workdir_copy, tmp_path):
    csvs = write_probs(workdir_copy, tmp_path)
    for split in ("val", "test"):
        pd.read_csv(csvs[split]).rename(columns={"image": "Bild"}).to_csv(csvs[split], index=False)
    folder = import_member(workdir_copy, "named-column", val_csv=csvs["val"], test_csv=csvs["test"], image_column="bild")
    assert load_npz(folder / "val.npz")["probs"].shape == (len(load_dataset(workdir_copy).rows("val")), 5)
    with pytest.raises(UserError, match="has no column 'Datei' \\(the image column asked for\\); its columns are Bild, "):
        import_member(workdir_copy, "x", val_csv=csvs["val"], test_csv=csvs["test"], image_column="Datei")


def test_a_members_own_npz_imports_and_another_npz_is_named(workdir_copy, tmp_path):
    source = add_member(workdir_copy, "elsewhere", seed=3)
    folder = import_member(workdir_copy, "copied", val_csv=source / "val.npz", test_csv=source / "test.npz")
    for split in ("val", "test"):
        np.testing.assert_allclose(load_npz(folder / f"{split}.npz")["probs"], load_npz(source / f"{split}.npz")["probs"],
                                   atol=1e-6)
    code, _out, err = run_cli("import-member", "--workdir", workdir_copy, "--name", "x", "--val-csv",
                              source / "test.npz", "--test-csv", source / "test.npz")
    one_sentence_error(code, err, "for rows other than this workdir's", "pass the member's val.npz to --val-csv")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    code, _out, err = run_cli("import-member", "--workdir", workdir_copy, "--name", "x", "--val-csv",
                              tmp_path / "other.npz", "--test-csv", source / "test.npz")
    one_sentence_error(code, err, "is an .npz file but not a member's val.npz",
                       "--val-csv takes a CSV with image,prob_0,... or a member's val.npz")


def _keras_model(path: Path, *, size=(16, 16), outputs: int = 5, softmax: bool = True, head: str = "dense") -> Path:
    """A tiny model: ``dense`` (pool, Dense), ``map`` (a (1, 1, k) output), ``spatial`` ((14, 14, k)), ``two`` (two
    heads grade and dme), ``dict`` ({"grade": ...}), ``sigmoid`` (conv, pool, one sigmoid unit)."""
    import keras

    inputs = keras.Input(size if len(size) == 3 else (*size, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    if head == "map":
        x = keras.layers.Softmax()(keras.layers.GlobalAveragePooling2D(keepdims=True)(keras.layers.Conv2D(outputs, 3)(x)))
    elif head == "spatial":
        x = keras.layers.Softmax()(keras.layers.Conv2D(outputs, 3)(x))
    elif head == "two":
        x = keras.layers.GlobalAveragePooling2D()(x)
        x = [keras.layers.Dense(outputs, activation="softmax", name="grade")(x),
             keras.layers.Dense(3, activation="softmax", name="dme")(x)]
    elif head == "dict":
        x = {"grade": keras.layers.Dense(outputs, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))}
    elif head == "sigmoid":
        x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, activation="relu")(x))
        x = keras.layers.Dense(1, activation="sigmoid" if softmax else None)(x)
    else:
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


def test_a_keras_members_cached_probabilities_are_the_ones_predict_computes(trained, tmp_path, monkeypatch):
    """The import kept the model's raw outputs (2.6e-18) where predict floors them at 1e-7 and renormalises: with
    --calibrate temperature (log p / T) the combiner met other numbers in predict, and its referable calls on the
    very test images differed from vote's."""
    from members.training import loop

    work = tmp_path / "w"
    shutil.copytree(trained, work)
    k = load_dataset(work).num_classes
    real = loop.model_outputs

    def extreme(model, images):
        raw = real(model, images)
        raw[:, 1:] = 1e-18  # a confident softmax: the other classes far below the floor
        raw[:, 0] = 1.0 - (k - 1) * 1e-18
        return raw

    monkeypatch.setattr(loop, "model_outputs", extreme)
    folder = import_member(work, "sharp", model=_keras_model(tmp_path / "m.keras", outputs=k))
    probs = load_npz(folder / "test.npz")["probs"]
    np.testing.assert_allclose(probs, loop.floored(np.tile([1.0] + [1e-18] * (k - 1), (len(probs), 1))))
    assert probs.min() > 0.9e-7 and np.allclose(probs.sum(axis=1), 1.0)


@pytest.mark.parametrize("kwargs,needle", [
    ({"outputs": 3}, "has 3 outputs but this workdir has 5 classes"),
    ({"head": "sigmoid", "softmax": False}, "has one output unit, a grade score (a regression head), not one "
                                            "probability per class"),
    ({"head": "sigmoid"}, "has one sigmoid output unit, the probability of one class, which fits a two-class task "
                          "only; this workdir has 5 classes"),
    ({"head": "map"}, "outputs shape (None, 1, 1, 5), not (batch, classes); add a Flatten layer (or "
                      "keras.layers.Reshape((5,))) after its last layer"),
    ({"head": "spatial"}, "outputs shape (None, 14, 14, 5), not one probability per class"),
    ({"head": "two"}, "has 2 outputs (grade, dme); save a model with the grade head alone"),
    ({"head": "dict"}, "returns its output in a dict (grade), not as one tensor"),
    ({"softmax": False}, "end the model with a softmax"),
    ({"size": (16, 16, 1)}, "takes one-channel (grey) images"),
    ({"size": (16, 24)}, "takes 16x24 images"),
])
def test_bad_keras_models(workdir_copy, tmp_path, kwargs, needle):
    model = _keras_model(tmp_path / "m.keras", **kwargs)
    code, _out, err = run_cli("import-member", "--workdir", workdir_copy, "--name", "k", "--model", model)
    one_sentence_error(code, err, needle)


def test_a_model_import_with_val_or_test_images_gone_names_them_and_writes_nothing(workdir_copy, tmp_path):
    """A val/test image moved since prepare ended in TensorFlow's NotFoundError mid-predict (a traceback; the API
    raised it). A missing train image is no obstacle: the model runs on val and test only."""
    data = load_dataset(workdir_copy)
    images = tmp_path / "images"
    shutil.copytree(data.image_root, images)  # the session's demo images stay whole
    meta = json.loads((workdir_copy / "dataset.json").read_text())
    meta["image_root"] = str(images)
    (workdir_copy / "dataset.json").write_text(json.dumps(meta))
    gone, unused = data.rows("test")["path"].iloc[0], data.rows("train")["path"].iloc[0]
    (images / gone).rename(tmp_path / "elsewhere.jpeg")
    (images / unused).unlink()
    model = _keras_model(tmp_path / "m.keras")
    n = len(data.rows("val")) + len(data.rows("test"))
    code, _out, err = run_cli("import-member", "--workdir", workdir_copy, "--name", "k", "--model", model)
    one_sentence_error(code, err, f"1 of the {n} val and test images listed in", "split.csv are no longer in",
                       repr(gone), "Restore them, or run `python cli.py prepare")
    with pytest.raises(UserError, match=f"^1 of the {n} val and test images"):
        import_member(workdir_copy, "k", model=model)
    assert not (workdir_copy / "members" / "k").exists()
    (tmp_path / "elsewhere.jpeg").rename(images / gone)  # restored: the import goes through
    folder = import_member(workdir_copy, "k", model=model)
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    (images / gone).unlink()
    with pytest.raises(UserError, match="are no longer in"):  # --force over the member: it stays as it was
        import_member(workdir_copy, "k", model=_keras_model(tmp_path / "m2.keras"), force=True)
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before
    assert [p.name for p in folder.parent.iterdir()] == ["k"]


def test_a_model_import_with_a_test_image_truncated_since_prepare_names_it(workdir_copy, tmp_path):
    """A val/test image that no longer decodes stopped the import with TensorFlow's traceback (``jpeg::Uncompress
    failed ... [Op:IteratorGetNext]``); now with train-member's sentence, naming the file."""
    data = load_dataset(workdir_copy)
    images = tmp_path / "images"
    shutil.copytree(data.image_root, images)
    meta = json.loads((workdir_copy / "dataset.json").read_text())
    meta["image_root"] = str(images)
    (workdir_copy / "dataset.json").write_text(json.dumps(meta))
    broken = images / data.rows("test")["path"].iloc[1]
    broken.write_bytes(broken.read_bytes()[:300])
    model = _keras_model(tmp_path / "m.keras")
    code, _out, err = run_cli("import-member", "--workdir", workdir_copy, "--name", "k", "--model", model)
    one_sentence_error(code, err, "are other pictures now than the ones prepare recorded",
                       repr(broken.relative_to(images).as_posix()))  # prepare's stamps, before any decoding
    (workdir_copy / "image_stamps.csv").unlink(missing_ok=True)  # a workdir prepared before them: the decoder
    code, _out, err = run_cli("import-member", "--workdir", workdir_copy, "--name", "k", "--model", model)
    one_sentence_error(code, err, f"{broken} could not be read: image file does not decode", "Invalid JPEG data",
                       "prepare ... --force", "then import the model again")
    assert not (workdir_copy / "members" / "k").exists()


def test_a_sigmoid_model_on_a_binary_workdir_predicts_as_it_imported(tmp_path, capsys):
    """One sigmoid unit p becomes [1 - p, p] in val.npz and in the saved model.keras that predict and explain load."""
    import keras

    from ensemble.explain import conv_target
    from ensemble.inference import predict_images
    from ensemble.vote import run_vote

    work = _two_class_workdir(tmp_path)
    source = _keras_model(tmp_path / "sigmoid.keras", head="sigmoid")
    other = _keras_model(tmp_path / "sigmoid-2.keras", head="sigmoid")  # two members: vote counts copies once
    for name, model in (("s1", other), ("s2", source)):
        folder = import_member(work, name, model=model)
    assert "has one sigmoid output: it is read as p of class dog" in capsys.readouterr().err
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["num_classes"] == 2 and "[1 - p, p]" in metrics["imported"]["output"]
    saved = keras.saving.load_model(folder / "model.keras", safe_mode=True)
    original = keras.saving.load_model(source, safe_mode=True)
    x = np.random.default_rng(0).uniform(0, 255, (3, 16, 16, 3)).astype(np.float32)
    p = np.asarray(original(x)).ravel()
    np.testing.assert_allclose(np.asarray(saved(x)), np.stack([1 - p, p], axis=1), atol=1e-6)
    assert isinstance(conv_target(saved)[1], keras.layers.Conv2D)  # explain finds the member's conv layer
    val = load_npz(folder / "val.npz")["probs"]
    assert val.shape == (len(load_dataset(work).rows("val")), 2) and 0 < val[:, 1].min() < 1
    run_vote(work, methods=("soft",), n_boot=10, keep_collapsed=True, console=Console(file=io.StringIO()))
    data = load_dataset(work)
    images = [str(data.image_root / path) for path in data.rows("val")["path"].iloc[:2]]
    result = predict_images(work, images, method="soft", print_csv=False)
    both = (load_npz(work / "members" / "s1" / "val.npz")["probs"] + val) / 2  # the soft vote of the two
    np.testing.assert_allclose(result.probs, both[:2], atol=1e-4)  # predict sees what the imports saw


def test_a_one_unit_model_without_sigmoid_is_refused_on_a_binary_workdir(tmp_path):
    work = _two_class_workdir(tmp_path)
    model = _keras_model(tmp_path / "logit.keras", head="sigmoid", softmax=False)
    code, _out, err = run_cli("import-member", "--workdir", work, "--name", "k", "--model", model)
    one_sentence_error(code, err, "has one output unit with a 'linear' activation, so it is not p of class dog",
                       "Dense(1, activation='sigmoid')")


def test_a_sigmoid_applied_as_an_op_is_a_sigmoid(tmp_path):
    """keras.ops.sigmoid / keras.activations.sigmoid on a Dense(1) are no layer: the import judged model.layers[-1]
    (the Dense, 'linear') and refused a model that ends in a sigmoid; it reads the graph's last operation now."""
    import keras

    work = _two_class_workdir(tmp_path)

    def save(name: str, head) -> Path:
        inputs = keras.Input((16, 16, 3))
        x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(keras.layers.Rescaling(1 / 255)(inputs)))
        keras.Model(inputs, head(keras.layers.Dense(1)(x))).save(tmp_path / f"{name}.keras")
        return tmp_path / f"{name}.keras"

    x = np.random.default_rng(1).uniform(0, 255, (3, 16, 16, 3)).astype(np.float32)
    for name, head in (("ops", keras.ops.sigmoid), ("activations", keras.activations.sigmoid),
                       ("reshaped", lambda t: keras.layers.Reshape((1,))(keras.ops.sigmoid(t)))):
        source = save(name, head)
        folder = import_member(work, name, model=source)
        p = np.asarray(keras.saving.load_model(source, safe_mode=True)(x)).ravel()
        saved = keras.saving.load_model(folder / "model.keras", safe_mode=True)
        np.testing.assert_allclose(np.asarray(saved(x)), np.stack([1 - p, p], axis=1), atol=1e-6)
        assert "[1 - p, p]" in json.loads((folder / "metrics.json").read_text())["imported"]["output"]
    for name, head, activation in (("relu", keras.ops.relu, "'relu'"), ("one", keras.layers.Softmax(), "'softmax'")):
        code, _out, err = run_cli("import-member", "--workdir", work, "--name", name, "--model", save(name, head))
        one_sentence_error(code, err, f"has one output unit with a {activation} activation, so it is not p of class dog")


def test_a_squeezed_output_gets_a_fix_keras_builds(workdir_copy, tmp_path):
    """keras.ops.squeeze(Dense(1, 'sigmoid')(x), -1) was told 'outputs shape (None)' and to add
    keras.layers.Reshape((None,)), which Keras cannot build; the fix given now imports."""
    import keras

    def save(name: str, units: int, *after) -> Path:
        inputs = keras.Input((16, 16, 3))
        x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(keras.layers.Rescaling(1 / 255)(inputs)))
        x = keras.ops.squeeze(keras.layers.Dense(units, activation="sigmoid" if units == 1 else "softmax")(x), -1)
        for layer in after:
            x = layer(x)
        keras.Model(inputs, x).save(tmp_path / f"{name}.keras")
        return tmp_path / f"{name}.keras"

    binary = _two_class_workdir(tmp_path / "binary")
    code, _out, err = run_cli("import-member", "--workdir", binary, "--name", "k", "--model", save("squeezed", 1))
    line = one_sentence_error(code, err, "outputs shape (None,), one value per image, not (batch, classes)",
                              "Dense(1, activation='sigmoid') without squeezing", "keras.layers.Reshape((1,))")
    assert "(None)" not in line and "Reshape((None,))" not in line
    folder = import_member(binary, "k", model=save("reshaped", 1, keras.layers.Reshape((1,))))  # the fix given
    assert "[1 - p, p]" in json.loads((folder / "metrics.json").read_text())["imported"]["output"]
    code, _out, err = run_cli("import-member", "--workdir", workdir_copy, "--name", "k", "--model", save("five", 1))
    one_sentence_error(code, err, "outputs shape (None,), one value per image",
                       "end the model with Dense(5, activation='softmax'), one probability per class")


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


@pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file")  # the conversion the sentence gives
@pytest.mark.filterwarnings("ignore:The structure of `inputs` doesn't match")  # the HDF5 model's list of one input
def test_a_keras_2_file_is_named_with_the_way_to_keras_3(workdir_copy, tmp_path):
    """A .keras file saved by Keras 2 (tf_keras, or tf.keras of TensorFlow <= 2.15) was refused as custom code
    ('Functional') or with Rescaling's 'batch_input_shape'; its metadata.json says which Keras saved it."""
    import zipfile

    import keras

    hand = tmp_path / "tf215.keras"  # as TensorFlow 2.15's tf.keras writes one (no TF 2.15 here: built by hand)
    with zipfile.ZipFile(hand, "w") as z:
        z.writestr("metadata.json", json.dumps({"keras_version": "2.15.0", "date_saved": "2024-01-05@10:00:00"}))
        z.writestr("config.json", json.dumps({"module": "keras.src.engine.functional", "class_name": "Functional",
                                              "config": {"name": "model", "layers": []}, "registered_name": "Functional"}))
        z.writestr("model.weights.h5", b"")
    files = {hand: "2.15.0"}
    try:
        import tf_keras
    except ImportError:  # the benchmarks' dependency; the hand-made file stands for it
        tf_keras = None
    if tf_keras is not None:  # real ones: a functional model and a Sequential one
        inputs = tf_keras.Input((16, 16, 3))
        x = tf_keras.layers.GlobalAveragePooling2D()(tf_keras.layers.Conv2D(4, 3)(tf_keras.layers.Rescaling(1 / 255)(
            inputs)))
        functional = tf_keras.Model(inputs, tf_keras.layers.Dense(5, activation="softmax")(x))
        functional.save(tmp_path / "functional.keras")
        tf_keras.Sequential([tf_keras.layers.Rescaling(1 / 255, input_shape=(16, 16, 3)), tf_keras.layers.Flatten(),
                             tf_keras.layers.Dense(5, activation="softmax")]).save(tmp_path / "sequential.keras")
        files.update({tmp_path / "functional.keras": tf_keras.__version__, tmp_path / "sequential.keras":
                      tf_keras.__version__})
    for path, version in files.items():
        code, _out, err = run_cli("import-member", "--workdir", workdir_copy, "--name", "k", "--model", path)
        one_sentence_error(code, err, f"was saved by Keras {version} (tf_keras, or tf.keras of TensorFlow 2.15 or older)",
                           "tf_keras.models.load_model(PATH).save('name.h5')",
                           "keras.models.load_model('name.h5').save('name.keras') with Keras 3")
    assert not (workdir_copy / "members" / "k").exists()
    if tf_keras is not None:  # the way the sentence gives works, and keeps the model's outputs
        tf_keras.models.load_model(tmp_path / "functional.keras").save(tmp_path / "functional.h5")
        keras.models.load_model(tmp_path / "functional.h5", compile=False).save(tmp_path / "converted.keras")
        folder = import_member(workdir_copy, "converted", model=tmp_path / "converted.keras")
        x = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3)).astype(np.float32)
        np.testing.assert_allclose(np.asarray(keras.saving.load_model(folder / "model.keras", safe_mode=True)(x)),
                                   functional(x).numpy(), atol=1e-5)


def test_import_needs_one_source_and_a_free_name(workdir_copy, tmp_path):
    code, _out, err = run_cli("import-member", "--workdir", workdir_copy, "--name", "k")
    one_sentence_error(code, err, "Give the member to import: --model FILE.keras, or both --val-csv and --test-csv")
    add_member(workdir_copy, "taken")
    csvs = write_probs(workdir_copy, tmp_path)
    code, _out, err = run_cli("import-member", "--workdir", workdir_copy, "--name", "taken", "--val-csv", csvs["val"],
                              "--test-csv", csvs["test"])
    one_sentence_error(code, err, "already exists", "--force")
    not_keras = tmp_path / "m.onnx"
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
    assert "It was imported: check the class balance" in metrics["collapse"]["advice"]
    assert set(metrics["majority"]) == {"val", "test"} and set(metrics["below_majority"]) == {"val", "test"}
    assert "[flat] WARNING: collapsed" in capsys.readouterr().err
    good = write_probs(workdir_copy, tmp_path, seed=1)
    fine = json.loads((import_member(workdir_copy, "fine", val_csv=good["val"], test_csv=good["test"])
                       / "metrics.json").read_text())
    assert fine["collapsed"] is False and fine["below_majority"] == {"val": False, "test": False}
    add_member(workdir_copy, "other", seed=4)
    capsys.readouterr()
    report = run_vote(workdir_copy, methods=("soft",), n_boot=10, console=Console(file=io.StringIO()))
    assert "flat" not in report["members"] and {"fine", "other"} <= set(report["members"])
    err = " ".join(capsys.readouterr().err.split())
    assert ("Note: fine was imported as probabilities only (no model): this vote scores them, but `predict` and "
            "`explain` cannot use a combiner that includes them") in err and "flat was imported" not in err


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


def test_import_takes_the_member_lock_and_a_refused_one_leaves_no_folder(workdir_copy, tmp_path):
    """import-member ignored members/<name>/.lock: it replaced a member being trained under it, or was replaced."""
    import json
    import socket

    from members.infra.lock import MemberLock

    csvs = write_probs(workdir_copy, tmp_path)
    folder = workdir_copy / "members" / "busy"
    with MemberLock(folder):  # a train-member (this process stands in for it) is writing the member
        (folder / "spec.toml").write_text("being trained")
        code, _out, err = run_cli("import-member", "--workdir", workdir_copy, "--name", "busy", "--val-csv", csvs["val"],
                                  "--test-csv", csvs["test"], "--force")
        one_sentence_error(code, err, "Member 'busy' is being trained by another process", f"pid {os.getpid()}")
        assert (folder / "spec.toml").read_text() == "being trained" and not (folder / "metrics.json").exists()
        assert json.loads((folder / ".lock").read_text()) == {"pid": os.getpid(), "host": socket.gethostname()}
    bad = tmp_path / "bad.csv"
    bad.write_text("image,prob_0\nx,1\n")
    code, _out, err = run_cli("import-member", "--workdir", workdir_copy, "--name", "fresh", "--val-csv", bad,
                              "--test-csv", bad)
    assert code == 1 and not (workdir_copy / "members" / "fresh").exists()  # vote would list an empty folder
    folder = import_member(workdir_copy, "fresh", val_csv=csvs["val"], test_csv=csvs["test"])
    again = import_member(workdir_copy, "fresh", val_csv=csvs["val"], test_csv=csvs["test"], force=True)
    assert again == folder and (folder / "metrics.json").is_file()
    assert not (folder / ".lock").exists() and not any(p.name.startswith(".fresh") for p in folder.parent.iterdir())


def test_what_people_bring_is_named(workdir_copy, tmp_path, capsys):
    """Other formats, custom code, logits and multi-label heads, models without input scaling, a model object."""
    import keras

    class _Doubler(keras.layers.Layer):  # custom code, not registered: safe loading cannot rebuild it
        def build(self, input_shape):  # no weights; built, so that saving does not warn
            self.built = True

        def call(self, x):
            return x * 2.0

    def save(path: Path, head=None, scale=True, custom=False) -> Path:
        inputs = keras.Input((16, 16, 3))
        x = keras.layers.Rescaling(1 / 255)(inputs) if scale else inputs
        if custom:
            x = _Doubler()(x)
        x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(x))
        model = keras.Model(inputs, keras.layers.Dense(5, activation=head)(x))
        model.save(path) if path.suffix == ".keras" else model.save_weights(path)
        return path

    cases = [
        (tmp_path / "nowhere.keras", "does not exist"),
        (save(tmp_path / "w.weights.h5"), "holds weights only, no model"),
        (save(tmp_path / "logits.keras"), "look like logits, not probabilities"),
        (save(tmp_path / "multi.keras", head="sigmoid"), "independent sigmoids of a multi-label head"),
        (save(tmp_path / "custom.keras", head="softmax", custom=True), "uses '_Doubler', custom code"),
    ]
    (tmp_path / "legacy.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    cases.append((tmp_path / "legacy.h5", "is a legacy HDF5 model"))
    (tmp_path / "exported").mkdir()
    (tmp_path / "exported" / "saved_model.pb").write_bytes(b"")
    cases.append((tmp_path / "exported", "is a TensorFlow SavedModel"))
    for path, needle in cases:
        code, _out, err = run_cli("import-member", "--workdir", workdir_copy, "--name", "k", "--model", path)
        one_sentence_error(code, err, needle)
    code, _out, err = run_cli("import-member", "--workdir", workdir_copy, "--name", "k", "--model",
                              save(tmp_path / "any.keras", head="softmax"), "--input-size", "0")
    one_sentence_error(code, err, "--input-size must be a number of pixels from 8 to 2048; got 0")
    upper = save(tmp_path / "raw.keras", head="softmax", scale=False).rename(tmp_path / "RAW.KERAS")
    capsys.readouterr()
    import_member(workdir_copy, "raw", model=upper)  # an upper-case suffix is a .keras file too
    assert "has no Rescaling or Normalization layer and no arithmetic op on its input, so it gets pixels 0-255" in (
        capsys.readouterr().err)
    folder = import_member(workdir_copy, "object", model=keras.saving.load_model(tmp_path / "any.keras"))
    assert (folder / "model.keras").is_file() and not (workdir_copy / "members" / "k").exists()
    grey = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Conv2D(2, 3), keras.layers.GlobalAveragePooling2D(),
                             keras.layers.Dense(5, activation="softmax")])
    with pytest.raises(UserError) as info:  # the object is named, not the temporary file behind it
        import_member(workdir_copy, "grey", model=grey)
    assert str(info.value).startswith("The keras.Model passed takes one-channel (grey) images (None, 16, 16, 1)")
    @keras.saving.register_keras_serializable(package="qa")
    class MyScale(keras.layers.Layer):  # loads in this process only: predict and vote could never rebuild it
        def call(self, x):
            return x / 255.0

    inputs = keras.Input((16, 16, 3))
    custom = keras.Model(inputs, keras.layers.Dense(5, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3)(MyScale()(inputs)))))
    with pytest.raises(UserError, match=r"^The keras.Model passed uses 'qa>MyScale', custom code .* only built-in "
                                        r"Keras layers load in predict and vote"):
        import_member(workdir_copy, "custom", model=custom)
    assert not (workdir_copy / "members" / "custom").exists()
    with pytest.raises(UserError, match=r"^The keras.Model passed has no input shape \(the model was never built\); "):
        import_member(workdir_copy, "unbuilt", model=keras.Sequential([keras.layers.Dense(5)]))
    assert not (workdir_copy / "members" / "grey").exists() and not (workdir_copy / "members" / "unbuilt").exists()


def test_a_members_own_model_imports_with_its_preprocessing_and_a_custom_loss_is_no_obstacle(trained, tmp_path, capsys):
    import keras

    from ensemble.inference import predict_images
    from ensemble.vote import run_vote
    from members.model.spec import load_preset
    from members.training.trainer import train_member

    work = tmp_path / "w"
    shutil.copytree(trained, work)
    train_member(work, load_preset("tiny").replace(input_size=16, epochs=1, preprocessing="ben", fundus_crop=True),
                 name="ben", preset="tiny", log=lambda line: None, show_progress=False)
    folder = import_member(work, "ben-copy", model=work / "members" / "ben" / "model.keras")
    assert "trained with preprocessing = 'ben' and fundus_crop = true" in capsys.readouterr().err
    np.testing.assert_allclose(load_npz(folder / "val.npz")["probs"], load_npz(work / "members" / "ben" / "val.npz")["probs"],
                               atol=1e-5)  # the same pixels as in training: Ben's filter and the crop ran
    assert (folder / "spec.toml").read_bytes() == (work / "members" / "ben" / "spec.toml").read_bytes()

    def focal(y, p):  # a custom loss the model was compiled with: no part of predicting
        return keras.losses.sparse_categorical_crossentropy(y, p)

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(keras.layers.Rescaling(1 / 255)(inputs)))
    model = keras.Model(inputs, keras.layers.Dense(5, activation="softmax")(x))
    model.compile("adam", focal)
    model.save(tmp_path / "focal.keras")
    import_member(work, "focal", model=tmp_path / "focal.keras")
    run_vote(work, members=["ben-copy", "focal"], methods=("soft",), n_boot=10, keep_collapsed=True,
             console=Console(file=io.StringIO()))
    data = load_dataset(work)
    images = [str(data.image_root / p) for p in data.rows("val")["path"].iloc[:2]]
    result = predict_images(work, images, method="soft", print_csv=False)
    assert result.probs.shape == (2, 5)


def test_rows_of_another_split_or_not_graded_are_named(workdir_copy, tmp_path):
    csvs = write_probs(workdir_copy, tmp_path)
    code, _out, err = run_cli("import-member", "--workdir", workdir_copy, "--name", "k", "--val-csv", csvs["test"],
                              "--test-csv", csvs["val"])
    one_sentence_error(code, err, "rows instead: --val-csv and --test-csv swapped?")
    both = tmp_path / "both.csv"  # one predictions CSV over every image serves both options
    pd.concat([pd.read_csv(csvs["val"]), pd.read_csv(csvs["test"])]).to_csv(both, index=False)
    code, _out, err = run_cli("import-member", "--workdir", workdir_copy, "--name", "both", "--val-csv", both,
                              "--test-csv", both)
    assert code == 0 and "passed over its" in err and "rows (images of this workdir's other splits)" in err, err
    np.testing.assert_allclose(load_npz(workdir_copy / "members" / "both" / "val.npz")["probs"].sum(axis=1), 1.0,
                               atol=1e-6)
    table = pd.read_csv(csvs["val"])
    table["note"] = ""
    table.loc[0, "note"] = "not graded: is empty (0 bytes)"
    table.loc[0, [c for c in table.columns if c.startswith("prob_")]] = np.nan
    table.to_csv(csvs["val"], index=False)
    code, _out, err = run_cli("import-member", "--workdir", workdir_copy, "--name", "k", "--val-csv", csvs["val"],
                              "--test-csv", csvs["test"])
    one_sentence_error(code, err, "its row says 'not graded: is empty (0 bytes)'")


def test_percentages_and_a_model_blind_to_its_input_are_named(workdir_copy, tmp_path, capsys):
    import keras

    csvs = write_probs(workdir_copy, tmp_path)
    for split in ("val", "test"):
        table = pd.read_csv(csvs[split])
        table[[c for c in table.columns if c.startswith("prob_")]] *= 100
        table.to_csv(csvs[split], index=False)
    code, _out, err = run_cli("import-member", "--workdir", workdir_copy, "--name", "pct", "--val-csv", csvs["val"],
                              "--test-csv", csvs["test"])
    one_sentence_error(code, err, "its rows sum to 100: percentages; divide them by 100")
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(0.0)(inputs))  # sees nothing of the image
    keras.Model(inputs, keras.layers.Dense(5, activation="softmax")(x)).save(tmp_path / "blind.keras")
    capsys.readouterr()
    import_member(workdir_copy, "blind", model=tmp_path / "blind.keras")
    assert "gives every val image the same probabilities" in capsys.readouterr().err


def test_a_model_that_scales_its_input_with_ops_gets_no_note_and_the_note_advises_no_second_scaling(
        workdir_copy, tmp_path, capsys):
    """preprocess_input(inputs) and inputs / 127.5 - 1 are ops, not layers: the note said the model got 0-255 unscaled
    and told to put Rescaling(1/255) in front, which scaled the input twice."""
    import keras

    def save(name: str, scale) -> Path:
        inputs = keras.Input((16, 16, 3))
        x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(scale(inputs)))
        keras.Model(inputs, keras.layers.Dense(5, activation="softmax")(x)).save(tmp_path / f"{name}.keras")
        return tmp_path / f"{name}.keras"

    for name, scale in (("mobilenet", keras.applications.mobilenet_v2.preprocess_input),
                        ("caffe", keras.applications.resnet50.preprocess_input),  # channels flipped, means off
                        ("arithmetic", lambda t: t / 127.5 - 1.0)):
        capsys.readouterr()
        import_member(workdir_copy, name, model=save(name, scale))
        assert "Note:" not in capsys.readouterr().err, name
    capsys.readouterr()
    import_member(workdir_copy, "cast", model=save("cast", lambda t: keras.ops.cast(t, "float32")))  # no scaling
    note = next(line for line in capsys.readouterr().err.splitlines() if line.startswith("Note:"))
    assert "gets pixels 0-255 as they are; check its training code: if the model was fed 0-255 pixels, all is well" in (
        note) and "only if the images were scaled before the model" in note
    for name, op in (("resized", lambda t: keras.ops.image.resize(t, (16, 16))),  # ops that scale no pixel value
                     ("flipped", lambda t: keras.ops.flip(t, axis=2))):
        capsys.readouterr()
        import_member(workdir_copy, name, model=save(name, op))
        assert "gets pixels 0-255 as they are" in capsys.readouterr().err, name


def test_classes_registered_in_a_script_are_custom_code_and_notes_name_the_object(workdir_copy, tmp_path, capsys):
    """A class registered in a notebook or script is saved with no module, only "package>Name": still custom code."""
    import json
    import zipfile

    import keras

    from ensemble.importer import foreign_classes

    def archive(nodes) -> Path:
        path = tmp_path / f"m{len(list(tmp_path.glob('m*.keras')))}.keras"
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("config.json", json.dumps({"class_name": "Functional", "module": "keras.src.models.functional",
                                                  "registered_name": "Functional", "config": {"layers": nodes}}))
        return path

    assert foreign_classes(archive([{"class_name": "Scale", "module": None, "registered_name": "mine>Scale"}])) == [
        "mine>Scale"]
    assert foreign_classes(archive([{"class_name": "Scale", "module": "mypkg.layers", "registered_name": None}])) == [
        "mypkg.layers.Scale"]
    function = {"class_name": "function", "module": "builtins", "config": "mine>regact", "registered_name": "function"}
    assert foreign_classes(archive([{"class_name": "Conv2D", "module": "keras.layers", "config": {
        "activation": function}}])) == ["mine>regact"]  # a registered activation function
    relu = {"class_name": "function", "module": "keras.activations", "config": "relu", "registered_name": "relu"}
    assert foreign_classes(archive([{"class_name": "Dense", "module": "keras.layers", "config": {"activation": relu}}])
                            ) == []
    ours = [{"class_name": "OrdinalHead", "module": "members.model.architecture", "registered_name": "members>OrdinalHead"},
            {"class_name": "__keras_tensor__", "module": None, "registered_name": None},
            {"class_name": "Dense", "module": "keras.layers", "registered_name": None}]
    assert foreign_classes(archive(ours)) == []
    inputs = keras.Input((16, 16, 3))  # no Rescaling: the note names the object, not its temporary file
    plain = keras.Model(inputs, keras.layers.Dense(5, activation="softmax")(keras.layers.GlobalAveragePooling2D()(
        keras.layers.Conv2D(2, 3)(inputs))))
    capsys.readouterr()
    import_member(workdir_copy, "plain", model=plain)
    err = capsys.readouterr().err
    assert "Note: the keras.Model passed has no Rescaling or Normalization layer" in err and "/tmp" not in err.split(
        "Imported member")[0]


def test_the_import_line_shows_the_baseline_and_a_forced_import_says_the_vote_is_stale(workdir_copy, tmp_path, capsys):
    """The summary said accuracy alone (even for a one-class member), and --force over a voted member said nothing
    until predict refused the ensemble; --input-size with probability CSVs was accepted and ignored."""
    from ensemble.vote import run_vote

    good = write_probs(workdir_copy, tmp_path, seed=1)
    import_member(workdir_copy, "fine", val_csv=good["val"], test_csv=good["test"])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "test accuracy" in line and "(majority class 0." in line and "balanced accuracy" in line and "QWK" in line
    add_member(workdir_copy, "other", seed=4)
    run_vote(workdir_copy, methods=("soft",), n_boot=10, keep_collapsed=True, console=Console(file=io.StringIO()))
    capsys.readouterr()
    (tmp_path / "o").mkdir()
    other = write_probs(workdir_copy, tmp_path / "o", seed=2)
    import_member(workdir_copy, "fine", val_csv=other["val"], test_csv=other["test"], force=True)
    assert "[fine] the ensemble in" in capsys.readouterr().err
    with pytest.raises(UserError, match="a member imported as probabilities .* has no input: leave --input-size out"):
        import_member(workdir_copy, "more", val_csv=good["val"], test_csv=good["test"], input_size=64)


def test_a_forced_import_on_a_full_disk_keeps_the_member_and_names_its_folder(workdir_copy, tmp_path, monkeypatch):
    """The error named the hidden members/.x.replacement/ and left it behind until the next import."""
    from members.infra import atomic

    csvs = write_probs(workdir_copy, tmp_path)
    folder = import_member(workdir_copy, "x", val_csv=csvs["val"], test_csv=csvs["test"])
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")}

    def full(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fdopen", full)
    with pytest.raises(UserError) as err:
        import_member(workdir_copy, "x", val_csv=csvs["val"], test_csv=csvs["test"], force=True)
    assert str(folder) in str(err.value) and ".x.replacement" not in str(err.value)
    assert not (folder.parent / ".x.replacement").exists()
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")} == before


def _two_class_csvs(work: Path, folder: Path, *, swapped: bool) -> dict[str, Path]:
    """val/test CSVs of a perfect predictor on a two-class workdir, its columns swapped when ``swapped``."""
    data = load_dataset(work)
    out = {}
    for split in ("val", "test"):
        rows = data.rows(split)
        probs = np.where(np.eye(2)[rows["label"]] == 1, 0.9, 0.1)
        probs = probs[:, ::-1] if swapped else probs
        table = pd.DataFrame(probs, columns=["prob_0", "prob_1"])
        table.insert(0, "image", [Path(p).stem for p in rows["path"]])
        out[split] = folder / f"{split}.csv"
        table.to_csv(out[split], index=False)
    return out


def test_the_import_says_which_output_is_which_class_and_a_sigmoid_unit_can_name_its_class(tmp_path, capsys):
    """A sigmoid unit was read as p of the second class (alphabetical: dog) with no way to say it is cat's, and a
    softmax model got no line saying which output is taken as which class."""
    import keras

    work = _two_class_workdir(tmp_path)
    source = _keras_model(tmp_path / "sigmoid.keras", head="sigmoid")
    folder = import_member(work, "cat-unit", model=source, positive_class="cat")
    err = capsys.readouterr().err
    assert "it is read as p of class cat (as --positive-class says)" in err and "giving [p, 1 - p]" in err
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["imported"]["positive_class"] == "cat"
    x = np.random.default_rng(0).uniform(0, 255, (3, 16, 16, 3)).astype(np.float32)
    p = np.asarray(keras.saving.load_model(source, safe_mode=True)(x)).ravel()
    saved = keras.saving.load_model(folder / "model.keras", safe_mode=True)
    np.testing.assert_allclose(np.asarray(saved(x)), np.stack([p, 1 - p], axis=1), atol=1e-6)  # column 0 is cat
    import_member(work, "dog-unit", model=source)
    assert "read as p of class dog (this workdir's second class; if the unit gives cat's, pass --positive-class cat)" in (
        capsys.readouterr().err)
    np.testing.assert_allclose(load_npz(work / "members" / "dog-unit" / "val.npz")["probs"],
                               load_npz(folder / "val.npz")["probs"][:, ::-1], atol=1e-6)
    softmax = _keras_model(tmp_path / "softmax.keras", outputs=2)
    code, _out, err = run_cli("import-member", "--workdir", work, "--name", "two", "--model", softmax)
    assert code == 0 and "its 2 outputs are read as this workdir's classes in its order (0 = cat, 1 = dog); if the " \
                         "model orders its classes otherwise, prepare the workdir with --classes" in err, err
    code, _out, err = run_cli("import-member", "--workdir", work, "--name", "k", "--model", softmax,
                              "--positive-class", "cat")
    one_sentence_error(code, err, "--positive-class names the class whose probability a model's one sigmoid unit "
                                  "gives", "has 2 outputs, one per class", "leave --positive-class out")
    code, _out, err = run_cli("import-member", "--workdir", work, "--name", "k", "--model", source,
                              "--positive-class", "bird")
    one_sentence_error(code, err, "--positive-class 'bird' is not one of this task's classes (cat, dog)")
    csvs = _two_class_csvs(work, tmp_path, swapped=False)
    code, _out, err = run_cli("import-member", "--workdir", work, "--name", "k", "--val-csv", csvs["val"],
                              "--test-csv", csvs["test"], "--positive-class", "cat")
    one_sentence_error(code, err, "probability CSVs name their classes by column", "leave --positive-class out")


def test_outputs_in_another_class_order_are_named_before_the_class_balance_advice(tmp_path, workdir_copy, capsys):
    """A perfect predictor with its columns swapped was reported as collapsed (val AUC 0.000) with advice on class
    balance and preprocessing; a five-grade one in reverse order was not said to be reversed at all."""
    two = tmp_path / "two"  # workdir_copy is tmp_path / "w"
    two.mkdir()
    work = _two_class_workdir(two)
    csvs = _two_class_csvs(work, two, swapped=True)
    folder = import_member(work, "swapped", val_csv=csvs["val"], test_csv=csvs["test"])
    err = " ".join(capsys.readouterr().err.split())
    metrics = json.loads((folder / "metrics.json").read_text())
    advice = metrics["collapse"]["advice"]
    assert metrics["collapsed"] and advice.startswith("Its val AUC 0.000 and kappa -1.000 are far below chance: its "
                                                      "outputs are likely in another class order than this workdir's "
                                                      "(cat, dog); read in the reverse order (dog, cat) its val AUC "
                                                      "would be 1.000; if the CSVs' columns hold the classes in "
                                                      "another order, name each column by its class (cat, dog)"), advice
    assert advice.index("another class order") < advice.index("check the class balance")
    assert err.index("another class order") < err.index("check the class balance")
    (two / "r").mkdir()
    right = _two_class_csvs(work, two / "r", swapped=False)
    good = import_member(work, "right", val_csv=right["val"], test_csv=right["test"])
    assert "class_order_suspect" not in json.loads((good / "metrics.json").read_text())
    assert "another class order" not in capsys.readouterr().err
    data = load_dataset(workdir_copy)  # five ordered grades, predicted in reverse
    for split in ("val", "test"):
        rows = data.rows(split)
        probs = 0.02 + 0.9 * np.eye(5)[4 - rows["label"].to_numpy()]
        table = pd.DataFrame(probs, columns=[f"prob_{j}" for j in range(5)])
        table.insert(0, "image", [Path(p).stem for p in rows["path"]])
        table.to_csv(two / f"rev_{split}.csv", index=False)
    folder = import_member(workdir_copy, "reversed", val_csv=two / "rev_val.csv", test_csv=two / "rev_test.csv")
    err = " ".join(capsys.readouterr().err.split())
    assert "Its val QWK -0.983 is far below chance: its outputs are likely in another class order than this " \
           "workdir's (0, 1, 2, 3, 4); read in the reverse order (4, 3, 2, 1, 0) its val AUC would be 1.000" in err, err
    assert json.loads((folder / "metrics.json").read_text())["class_order_suspect"].startswith("its val QWK")


def test_a_models_probe_shows_no_library_warning_before_the_refusal(tmp_path):
    """Keras's "You are using a softmax over axis -1 of a tensor of shape (1, 1)" UserWarning and its
    ``warnings.warn(`` line came on stderr before the refusal of a one-unit softmax."""
    import warnings

    import keras

    work = _two_class_workdir(tmp_path)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(keras.layers.Rescaling(1 / 255)(inputs)))
    keras.Model(inputs, keras.layers.Softmax()(keras.layers.Dense(1)(x))).save(tmp_path / "softmax1.keras")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(UserError, match="has one output unit with a 'softmax' activation"):
            import_member(work, "s1", model=tmp_path / "softmax1.keras")
    assert not [w for w in seen if "softmax over axis" in str(w.message)], [str(w.message) for w in seen]


def test_refusals_name_non_finite_outputs_percentages_and_one_sigmoid_unit(workdir_copy, tmp_path):
    """NaN outputs were called logits, a softmax x 100 independent sigmoids or a ReLU head."""
    import keras

    def save(name: str, end, nan: bool = False) -> Path:
        inputs = keras.Input((16, 16, 3))
        x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(keras.layers.Rescaling(1 / 255)(inputs)))
        dense = keras.layers.Dense(5)
        model = keras.Model(inputs, end(dense(x)))
        if nan:
            dense.set_weights([w * np.nan for w in dense.get_weights()])
        model.save(tmp_path / f"{name}.keras")
        return tmp_path / f"{name}.keras"

    cases = [(save("nan", keras.layers.Softmax(), nan=True), "gives non-finite outputs (NaN or infinite) on"),
             (save("pct", lambda t: keras.layers.Rescaling(100.0)(keras.layers.Softmax()(t))),
              "sum to 100 (e.g. 100 on")]
    for path, needle in cases:
        code, _out, err = run_cli("import-member", "--workdir", workdir_copy, "--name", "k", "--model", path)
        line = one_sentence_error(code, err, needle)
        assert "logits" not in line and "sigmoid" not in line and "ReLU" not in line, line
    assert "percentages, not probabilities; divide them by 100 in the model" in line


def test_a_collapsed_import_closes_as_train_member_does_and_report_marks_imports(workdir_copy, tmp_path):
    """import-member's closing lines said neither COLLAPSED nor †, which train-member's print; report.md's kind
    column said "member" for a member brought in from outside."""
    from ensemble.vote import run_vote

    csvs = _one_class_csvs(workdir_copy, tmp_path, cls=3)
    code, out, err = run_cli("import-member", "--workdir", workdir_copy, "--name", "flat", "--val-csv", csvs["val"],
                             "--test-csv", csvs["test"])
    assert code == 0, err
    summary = err.strip().splitlines()[-1]
    assert summary.startswith("Imported member 'flat'") and "; COLLAPSED (its val predictions fall into one class (3); " \
        "vote leaves it out); † test accuracy below the majority class's" in summary, summary
    assert out.splitlines()[-1].startswith("flat: COLLAPSED (its val predictions fall into one class (3); vote leaves "
                                           "it out); † test accuracy below"), out
    good = write_probs(workdir_copy, tmp_path, seed=1)
    import_member(workdir_copy, "fine", val_csv=good["val"], test_csv=good["test"])
    add_member(workdir_copy, "other", seed=4)
    run_vote(workdir_copy, methods=("soft",), n_boot=10, console=Console(file=io.StringIO()))
    report = (workdir_copy / "ensemble" / "report.md").read_text()
    import re

    assert re.search(r"\| fine[^|]* \| member \(imported\) \|", report), report
    assert re.search(r"\| other[^|]* \| member \|", report)


def test_hard_labels_are_noted_as_no_probabilities(workdir_copy, tmp_path, capsys):
    """A model ending in one_hot(argmax(...)) was imported without a word: its AUC, log-loss and soft vote mean little."""
    import keras

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(keras.layers.Rescaling(1 / 255)(inputs)))
    x = keras.layers.Dense(5)(x)
    keras.Model(inputs, keras.ops.one_hot(keras.ops.argmax(x, axis=-1), 5)).save(tmp_path / "hard.keras")
    folder = import_member(workdir_copy, "onehot", model=tmp_path / "hard.keras")
    err = " ".join(capsys.readouterr().err.split())
    assert "outputs hard 0/1 labels, not probabilities" in err and "explain cannot draw it" in err
    assert json.loads((folder / "metrics.json").read_text())["imported"]["output"] == "hard 0/1 labels, not probabilities"
    csvs = _one_class_csvs(workdir_copy, tmp_path, cls=2)
    for split in ("val", "test"):
        table = pd.read_csv(csvs[split])
        probs = [c for c in table.columns if c.startswith("prob_")]
        table[probs] = np.eye(5)[np.arange(len(table)) % 5]
        table.to_csv(csvs[split], index=False)
    import_member(workdir_copy, "hard-csv", val_csv=csvs["val"], test_csv=csvs["test"])
    assert "hold hard 0/1 labels, not probabilities" in " ".join(capsys.readouterr().err.split())
    fine = write_probs(workdir_copy, tmp_path, seed=1)
    import_member(workdir_copy, "probs", val_csv=fine["val"], test_csv=fine["test"])
    assert "hard 0/1" not in capsys.readouterr().err


def test_a_members_model_copied_away_still_prepares_its_images(trained, tmp_path, capsys):
    """A member's model.keras copied away from its spec.toml was imported without its Ben filter and fundus crop
    (val probabilities off by up to 0.08), silently; now the model file records its spec, and a copy of an older
    member without that record is warned about."""
    import zipfile

    import keras

    from members.model.spec import load_preset
    from members.model.stamp import ENTRY, read_stamp
    from members.training.trainer import train_member

    work = tmp_path / "w"
    shutil.copytree(trained, work)
    train_member(work, load_preset("tiny").replace(input_size=16, epochs=1, preprocessing="ben", fundus_crop=True),
                 name="ben", preset="tiny", log=lambda line: None, show_progress=False)
    original = work / "members" / "ben"
    assert read_stamp(original / "model.keras")["input_size"] == 16
    keras.saving.load_model(original / "model.keras", safe_mode=True)  # the stamp changes nothing in loading
    copy = tmp_path / "away" / "ben.keras"
    copy.parent.mkdir()
    shutil.copyfile(original / "model.keras", copy)
    capsys.readouterr()
    folder = import_member(work, "copied", model=copy)
    assert "trained with preprocessing = 'ben' and fundus_crop = true (as the model file itself says)" in (
        capsys.readouterr().err)
    np.testing.assert_allclose(load_npz(folder / "val.npz")["probs"], load_npz(original / "val.npz")["probs"], atol=1e-5)
    assert (folder / "spec.toml").read_bytes() == (original / "spec.toml").read_bytes()
    older = tmp_path / "older.keras"  # a member saved before models recorded their spec
    with zipfile.ZipFile(copy) as src, zipfile.ZipFile(older, "w") as dst:
        for item in src.infolist():
            if item.filename != ENTRY:
                dst.writestr(item, src.read(item.filename))
    import_member(work, "older", model=older, input_size=16)  # a member's graph takes any size
    err = " ".join(capsys.readouterr().err.split())
    assert "looks like the model.keras of a member of this toolkit saved before models recorded their spec" in err
    import_member(work, "outside", model=_keras_model(tmp_path / "m.keras"))
    assert "looks like the model.keras" not in capsys.readouterr().err  # a model from elsewhere: no such warning


def test_a_member_trained_on_its_classes_in_another_order_is_refused(tmp_path):
    from ensemble.importer import _Source

    work = _two_class_workdir(tmp_path)
    source = _Source(spec=None, spec_bytes=b"", size=16, classes=["dog", "cat"], where="x", told_by="its spec.toml")
    with pytest.raises(UserError, match=r"trained with its classes in the order dog, cat, and this workdir orders them "
                                        r"cat, dog.*prepared with --classes dog,cat"):
        source.check_classes(Path("m.keras"), load_dataset(work))
    _Source(spec=None, spec_bytes=b"", size=16, classes=["cat", "dog"], where="x",
            told_by="x").check_classes(Path("m.keras"), load_dataset(work))


def test_a_stamp_whose_spec_this_version_cannot_read_gives_a_warning_and_no_source(tmp_path, capsys) -> None:
    """A model file stamped by another version (a spec field unknown here) is imported without its steps, said so."""
    from ensemble.importer import _stamped_source
    from members.model.stamp import member_record

    stamp = member_record('preprocessing = "ben"\nfundus_crop = true\nfuture_field = 3\n', 32, [0, 1])
    assert _stamped_source(tmp_path / "model.keras", stamp) is None
    err = capsys.readouterr().err
    assert "(preprocessing = 'ben', fundus_crop = True) whose recorded spec this version cannot read" in err
    assert "future_field" in err
