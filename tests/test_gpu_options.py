"""GPU readiness on CPU: the spec's ``mixed_precision`` and ``jit_compile`` options build and train.

``members.training.trainer`` sets the global policy to ``mixed_float16`` and compiles with
``jit_compile`` when the spec asks; these tests run the same calls on tiny arrays (16 px), and one
member through the trainer itself, so a GPU run cannot fail on a dtype or an XLA-incompatible layer
that CPU runs never hit.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from members.model.architecture import build_model
from members.model.spec import load_preset

SIZE = 16
K = 5
RNG = np.random.default_rng(0)
X = RNG.uniform(0, 255, (8, SIZE, SIZE, 3)).astype(np.float32)
Y = np.arange(8) % K


@pytest.fixture
def mixed_policy():
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _spec(head: str = "softmax"):
    return load_preset("tiny").replace(input_size=SIZE, head=head, mixed_precision=True)


def _compile(model, *, jit_compile=False):
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9, nesterov=True),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=jit_compile)
    return model


@pytest.mark.parametrize("head", ["softmax", "ordinal"])
def test_mixed_precision_model_outputs_float32_probabilities(mixed_policy, head):
    model = build_model(_spec(head), K)
    assert any(layer.compute_dtype == "float16" for layer in model.layers)  # the policy took effect
    probs = model(X, training=False)
    assert keras.backend.standardize_dtype(probs.dtype) == "float32"
    probs = np.asarray(probs)
    assert probs.shape == (8, K)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert (probs >= 0).all()


def test_mixed_precision_model_trains_one_step(mixed_policy):
    model = _compile(build_model(_spec(), K))
    logs = model.train_on_batch(X, Y, return_dict=True)
    assert np.isfinite(logs["loss"])


def test_jit_compiled_model_trains_one_step():
    # the ordinal head (softplus, cumsum, concatenation) is the one with ops beyond Dense + softmax;
    # one XLA compilation takes seconds on CPU, so the softmax head is not compiled separately
    spec = load_preset("tiny").replace(input_size=SIZE, head="ordinal", jit_compile=True)
    model = _compile(build_model(spec, K), jit_compile=True)
    before = [w.copy() for w in model.get_weights()]
    logs = model.train_on_batch(X, Y, return_dict=True)
    assert np.isfinite(logs["loss"]) and logs["loss"] > 0
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_the_trainer_trains_a_member_in_mixed_precision_with_xla(tmp_path, prepared, monkeypatch):
    """The trainer's own calls: the spec's options reach the model it trains and saves, and the policy is reset."""
    import shutil

    from members.training import trainer as training
    from tests.conftest import quiet

    work = tmp_path / "w"
    shutil.copytree(prepared, work)
    seen = {}
    finish = training.Trainer._finish

    def spy(self, model, seconds):
        seen["jit"], seen["policy"] = model.jit_compile, keras.mixed_precision.global_policy().name
        return finish(self, model, seconds)

    monkeypatch.setattr(training.Trainer, "_finish", spy)
    spec = load_preset("tiny").replace(input_size=SIZE, epochs=1, mixed_precision=True, jit_compile=True)
    result = training.train_member(work, spec, name="gpu", log=quiet, show_progress=False)
    assert seen == {"jit": True, "policy": "mixed_float16"}
    assert keras.mixed_precision.global_policy().name == "float32"  # reset after the member
    saved = keras.saving.load_model(result.member_dir / "model.keras", safe_mode=True, compile=False)
    assert any(layer.compute_dtype == "float16" for layer in saved.layers)
    assert keras.backend.standardize_dtype(saved.outputs[0].dtype) == "float32"
    probs = np.load(result.member_dir / "val.npz")["probs"]
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
