"""weights = "<member>/model.keras" for built-in networks: a member started from another set's member."""

from __future__ import annotations

import json

import numpy as np
import pytest

import keras

from members.infra.errors import UserError  # noqa: E402
from members.model.architecture import build_model  # noqa: E402
from members.model.spec import MemberSpec, load_preset  # noqa: E402
from members.model.transfer import transfer_weights  # noqa: E402
from members.training.trainer import train_member  # noqa: E402
from tests.conftest import quiet  # noqa: E402


def _spec(**changes) -> MemberSpec:
    return MemberSpec(**{"input_size": 16, "depth": 2, "width": 4, "dense_units": 8, **changes})


def _saved(tmp_path, spec: MemberSpec, seed: int = 1) -> tuple:
    keras.utils.set_random_seed(seed)
    model = build_model(spec, 5)
    path = tmp_path / "source" / "model.keras"
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return model, str(path)


def test_every_layer_is_copied_and_the_input_size_may_differ(tmp_path):
    source, path = _saved(tmp_path, _spec(head="regression", block="residual"))
    keras.utils.set_random_seed(2)
    target = build_model(_spec(head="regression", block="residual", input_size=24), 5)
    info = transfer_weights(target, path)
    assert info["fresh_head"] == []
    assert info["copied"] == sum(1 for layer in target.layers if layer.weights)
    for a, b in zip(source.weights, target.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    x = np.random.default_rng(0).uniform(0, 255, (3, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(source.predict(x, verbose=0), target.predict(x, verbose=0), atol=1e-6)


def test_a_head_of_another_kind_starts_fresh_and_is_said(tmp_path):
    source, path = _saved(tmp_path, _spec(head="softmax"))
    keras.utils.set_random_seed(3)
    target = build_model(_spec(head="regression"), 5)
    before = [np.asarray(w) for w in target.get_layer("regression_head").weights]
    said = []
    info = transfer_weights(target, path, log=said.append)
    assert info["fresh_head"] == ["regression_head"]
    assert len(said) == 1 and "head starts fresh" in said[0] and "source/model.keras" in said[0]
    for a, b in zip(before, target.get_layer("regression_head").weights):
        np.testing.assert_array_equal(a, np.asarray(b))  # left as built
    np.testing.assert_array_equal(np.asarray(source.get_layer("block1_conv1").kernel),
                                  np.asarray(target.get_layer("block1_conv1").kernel))


@pytest.mark.parametrize("changes, words", [
    ({"depth": 3}, "weighted layers below the head"),
    ({"width": 8}, "does not fit this member: its layer 'block1_conv1'"),
    ({"block": "residual"}, "weighted layers below the head"),
])
def test_a_different_trunk_is_refused_in_one_sentence(tmp_path, changes, words):
    _, path = _saved(tmp_path, _spec())
    target = build_model(_spec(**changes), 5)
    with pytest.raises(UserError) as info:
        transfer_weights(target, path)
    text = str(info.value)
    assert words in text and "weights = \"none\"" in text and "\n" not in text


def test_a_file_that_is_not_a_keras_archive_is_refused(tmp_path):
    bad = tmp_path / "model.keras"
    bad.write_text("not a zip")
    with pytest.raises(UserError, match="is not a Keras .keras archive"):
        transfer_weights(build_model(_spec(), 5), str(bad))


def test_a_member_trained_from_another_member_says_so_and_keeps_its_spec(workdir_copy):
    base = load_preset("tiny").replace(input_size=16, epochs=1, seed=5)
    train_member(workdir_copy, base, name="first", log=quiet, show_progress=False)
    source = workdir_copy / "members" / "first" / "model.keras"
    lines = []
    train_member(workdir_copy, base.replace(weights=str(source)), name="second", log=lines.append,
                 show_progress=False)
    assert any(f"started from {source}" in line for line in lines)
    spec = (workdir_copy / "members" / "second" / "spec.toml").read_text()
    assert str(source) in spec


def test_a_missing_member_file_fails_before_training(workdir_copy):
    spec = load_preset("tiny").replace(input_size=16, epochs=1, weights=str(workdir_copy / "nope" / "model.keras"))
    with pytest.raises(UserError, match="does not exist; pass the model.keras of a saved member"):
        train_member(workdir_copy, spec, name="x", log=quiet, show_progress=False)
    assert not (workdir_copy / "members" / "x" / "model.keras").exists()
