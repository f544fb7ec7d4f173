"""Architectures: the article's network exactly, depth/width change capacity, heads give probabilities."""

from __future__ import annotations

import numpy as np
import pytest

import keras

from members.model.architecture import OrdinalHead, build_model  # noqa: E402
from members.model.spec import load_preset  # noqa: E402


def test_article_network_has_exactly_the_published_parameter_count():
    model = build_model(load_preset("article"), 5)
    assert model.count_params() == 10_853_045
    non_trainable = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    assert non_trainable == 1_120
    assert model.input_shape == (None, 256, 256, 3)
    assert model.output_shape == (None, 5)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 16
    assert model.get_layer("flatten").output.shape[-1] == 320_000


def test_depth_and_width_increase_capacity():
    base = load_preset("small").replace(input_size=32, depth=3)
    params = build_model(base, 5).count_params()
    assert build_model(base.replace(width=32), 5).count_params() > params
    assert build_model(base.replace(convs_per_block=2), 5).count_params() > params


@pytest.mark.parametrize("pooling", ["avgmax", "avg"])
def test_global_pooling_model_accepts_any_input_size(pooling):
    model = build_model(load_preset("tiny").replace(pooling=pooling), 3)
    for size in (16, 32, 48):
        probs = model(np.full((2, size, size, 3), 128.0, np.float32)).numpy()
        assert probs.shape == (2, 3)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_ordinal_head_probabilities_are_ordered_and_sum_to_one():
    head = OrdinalHead(5)
    x = np.linspace(-3, 3, 7, dtype=np.float32)[:, None]
    probs = head(x).numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert (probs >= 0).all()
    # the expected grade grows with the score when the score weight is positive
    head.score.kernel.assign(np.ones((1, 1), np.float32))
    expected = head(x).numpy() @ np.arange(5)
    assert np.all(np.diff(expected) > 0)


def test_no_lambda_layers_and_safe_mode_round_trip(tmp_path):
    spec = load_preset("tiny").replace(head="ordinal")
    model = build_model(spec, 5)
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in model.layers)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    x = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), atol=1e-6)
