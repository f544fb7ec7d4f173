"""Keras application backbones: each builds at 32 px with its own input scaling, freezes, saves, loads weights files."""

from __future__ import annotations

import socket

import numpy as np
import pytest

import keras

from members.model import backbones  # noqa: E402
from members.model.backbones import APPLICATIONS, build_backbone, resolve_weights  # noqa: E402
from members.infra.errors import UserError  # noqa: E402
from members.model.spec import BACKBONES, MemberSpec  # noqa: E402

X = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)


def spec(architecture: str, **changes) -> MemberSpec:
    return MemberSpec(architecture=architecture, input_size=32, dense_units=8, **changes)


@pytest.fixture(scope="module")
def models() -> dict:
    """The five members with random weights (softmax head, 5 classes), built once."""
    return {arch: build_backbone(spec(arch), 5, keras.regularizers.L2(1e-4)) for arch in BACKBONES}


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


@pytest.mark.parametrize("arch", BACKBONES)
def test_backbone_member_gives_probabilities_and_freezes(models, arch):
    model = models[arch]
    probs = model(X).numpy()
    assert probs.shape == (2, 5)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert model.input_shape == (None, None, None, 3) and model.get_layer("image") is not None
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in _all_layers(model))
    base = model.get_layer("backbone")
    assert isinstance(base, keras.Model)
    trainable = len(model.trainable_weights)
    base.trainable = False
    try:
        assert len(model.trainable_weights) < trainable
        assert {id(w) for w in model.trainable_weights}.isdisjoint(id(w) for w in base.weights)
    finally:
        base.trainable = True
    assert len(model.trainable_weights) == trainable
    assert not base.losses and model.losses  # L2 on the new dense layers and head only


def _before_backbone(model):
    layers = model.layers
    return layers[layers.index(model.get_layer("backbone")) - 1]


def test_input_scaling_is_inside_the_model(models):
    resnet = _before_backbone(models["resnet50v2"])
    assert isinstance(resnet, keras.layers.Rescaling)
    np.testing.assert_allclose(resnet(np.array([[0.0, 127.5, 255.0]], np.float32)).numpy(), [[-1, 0, 1]], atol=1e-6)
    dense = models["densenet121"]
    norm = _before_backbone(dense)
    assert isinstance(norm, keras.layers.Normalization)
    mean, std = np.array(backbones.IMAGENET_MEAN), np.array(backbones.IMAGENET_STD)
    x = np.stack([255 * mean, 255 * (mean + std)])[:, None, None, :].astype(np.float32)  # (2, 1, 1, 3)
    scaled = keras.Model(dense.input, norm.output)(x).numpy().reshape(2, 3)
    np.testing.assert_allclose(scaled, [[0, 0, 0], [1, 1, 1]], atol=1e-5)
    for arch in ("efficientnetb0", "mobilenetv3small", "convnext_tiny"):  # scaled inside the base itself
        model = models[arch]
        assert isinstance(_before_backbone(model), keras.layers.InputLayer)
        first = model.get_layer("backbone").layers[1]
        assert isinstance(first, (keras.layers.Rescaling, keras.layers.Normalization)), (arch, first)


def test_ordinal_head_any_size_and_safe_mode_round_trip(tmp_path, models):
    model = build_backbone(spec("mobilenetv3small", head="ordinal", pooling="avg"), 5, None)
    for size in (32, 48):
        probs = model(np.full((2, size, size, 3), 128.0, np.float32)).numpy()
        assert probs.shape == (2, 5)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    for name, m in (("ordinal", model), ("densenet", models["densenet121"])):  # densenet: its Normalization layer
        path = tmp_path / f"{name}.keras"
        m.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
        np.testing.assert_allclose(loaded(X).numpy(), m(X).numpy(), atol=1e-6)


def test_flatten_pooling_fixes_the_input_size():
    model = build_backbone(spec("mobilenetv3small", pooling="flatten"), 3, None)
    assert model.input_shape == (None, 32, 32, 3)
    assert model(X).shape == (2, 3)


def test_resolve_weights_none_and_bad_paths(tmp_path):
    assert resolve_weights(spec("resnet50v2")) is None
    missing = tmp_path / "nowhere" / "base.weights.h5"
    with pytest.raises(UserError, match="does not exist") as err:
        resolve_weights(spec("resnet50v2", weights=str(missing)))
    assert str(missing) in str(err.value)
    other = tmp_path / "base.txt"
    other.write_text("x")
    with pytest.raises(UserError, match=r"\.weights\.h5"):
        resolve_weights(spec("resnet50v2", weights=str(other)))


def _offline(monkeypatch, tmp_path) -> list:
    tries = []

    def refuse(*args, **kwargs):
        tries.append(args)
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    for name in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    return tries


def test_imagenet_offline_fails_at_once_with_the_url(monkeypatch, tmp_path):
    tries = _offline(monkeypatch, tmp_path)
    with pytest.raises(UserError) as err:
        build_backbone(spec("resnet50v2", weights="imagenet"), 5, None)
    assert len(tries) == 1  # one look at the host, no retries, no download attempt
    message = str(err.value)
    assert APPLICATIONS["resnet50v2"].url in message and "weights=" in message and str(tmp_path) in message
    assert "\n" not in message


def test_imagenet_file_in_the_keras_cache_needs_no_network(monkeypatch, tmp_path):
    _offline(monkeypatch, tmp_path)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / APPLICATIONS["densenet121"].file_name).write_bytes(b"")
    assert resolve_weights(spec("densenet121", weights="imagenet")) == "imagenet"


def test_application_file_names_are_the_ones_keras_downloads():
    import inspect

    from keras.src.applications import resnet

    # ResNet50V2's file names and hashes live in resnet.py, next to ResNet50's

    for arch, app in APPLICATIONS.items():
        module = inspect.getmodule(getattr(keras.applications, app.constructor))
        source = inspect.getsource(module) + inspect.getsource(resnet)
        assert app.file_hash in source, arch
        assert app.url.startswith("https://storage.googleapis.com/") and app.base_url in source, arch
    assert "_no_top_v2.h5" in inspect.getsource(inspect.getmodule(keras.applications.MobileNetV3Small))


def test_weights_file_round_trip_and_mismatch(tmp_path, models):
    first = models["mobilenetv3small"]
    path = tmp_path / "b.weights.h5"
    first.get_layer("backbone").save_weights(path)
    second = build_backbone(spec("mobilenetv3small", weights=str(path)), 5, None)
    for a, b in zip(first.get_layer("backbone").get_weights(), second.get_layer("backbone").get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    member = tmp_path / "member.keras"  # a whole saved member: its base is taken
    first.save(member)
    third = build_backbone(spec("mobilenetv3small", weights=str(member), head="regression"), 5, None)
    for a, b in zip(first.get_layer("backbone").get_weights(), third.get_layer("backbone").get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(UserError) as err:
        build_backbone(spec("efficientnetb0", weights=str(path)), 5, None)
    message = str(err.value)
    assert str(path) in message and "efficientnetb0" in message and "\n" not in message
    junk = tmp_path / "junk.h5"
    junk.write_text("not hdf5")
    with pytest.raises(UserError, match="cannot be loaded into the efficientnetb0 base"):
        build_backbone(spec("efficientnetb0", weights=str(junk)), 5, None)


def test_efficientnet_imagenet_h5_gets_the_keras_input_scaling(tmp_path):
    """A Keras-format .h5 (what "imagenet" downloads) gets Keras's extra 1/sqrt(std) folded into the variance."""
    mean, std = np.array(backbones.IMAGENET_MEAN, np.float32), np.array(backbones.IMAGENET_STD, np.float32)
    plain = keras.applications.EfficientNetB0(include_top=False, weights=None, input_shape=(None, None, 3))
    norm = next(layer for layer in plain.layers if isinstance(layer, keras.layers.Normalization))
    norm.adapt_mean.assign(mean)
    norm.adapt_variance.assign(std**2)  # as in efficientnetb0_notop.h5
    norm.finalize_state()
    path = tmp_path / "efficientnetb0_notop.h5"
    plain.save_weights(path.with_suffix(".weights.h5"))  # the same weights in the member format: no fold
    plain.save(path)  # the legacy HDF5 format of the Keras application files
    base = build_backbone(spec("efficientnetb0", weights=str(path)), 5, None).get_layer("backbone")
    folded = next(layer for layer in base.layers if isinstance(layer, keras.layers.Normalization))
    x = np.full((1, 1, 1, 3), 255 * (mean + std), np.float32)
    out = keras.Model(base.input, folded.output)(x).numpy().ravel()
    np.testing.assert_allclose(out, 1 / np.sqrt(std), rtol=1e-4)  # Keras: (x/255 - mean)/std * 1/sqrt(std)
    member = build_backbone(spec("efficientnetb0", weights=str(path.with_suffix(".weights.h5"))), 5, None)
    kept = next(layer for layer in member.get_layer("backbone").layers if isinstance(layer, keras.layers.Normalization))
    np.testing.assert_allclose(np.asarray(kept.adapt_variance), std**2, rtol=1e-6)


@pytest.mark.parametrize("name, arch", [("mobilenet", "mobilenetv3small"), ("efficientnet", "efficientnetb0")])
def test_pretrained_presets_load_and_build_offline_without_freezing(name, arch):
    from members.model.spec import load_preset

    preset = load_preset(name)
    assert preset.architecture == arch and preset.weights == "imagenet" and preset.freeze_epochs > 0
    offline = preset.replace(weights="none", freeze_epochs=0)  # a random base is never frozen
    assert offline.is_backbone and offline.input_size >= 128


@pytest.mark.parametrize("arch", BACKBONES)
def test_early_layers_grow_with_the_stride_and_are_a_prefix_of_the_base(models, arch):
    base = models[arch].get_layer("backbone")
    layers = [layer for layer in base.layers if not isinstance(layer, keras.layers.InputLayer)]
    found = {stride: backbones.early_layers(base, stride) for stride in (4, 8, 16)}
    assert 0 < len(found[4]) < len(found[8]) < len(found[16]) < len(layers)
    for chosen in found.values():
        assert chosen == layers[: len(chosen)]
    # the first layer left to fine-tune has an output stride above the one asked for
    probe = keras.Model(base.inputs, [layers[len(found[4])].output, layers[len(found[8])].output])
    after4, after8 = probe([np.zeros((1, 64, 64, 3), "float32")])
    assert 64 / after4.shape[1] > 4 and 64 / after8.shape[1] > 8


def test_a_backbone_run_with_weights_it_cannot_have_is_refused_before_its_folder(prepared, tmp_path, monkeypatch):
    import shutil

    from members.training.trainer import train_member

    work = tmp_path / "w"
    shutil.copytree(prepared, work)
    _offline(monkeypatch, tmp_path)
    for weights, words in ((str(tmp_path / "nope.h5"), "does not exist"), ("imagenet", "cannot be reached")):
        with pytest.raises(UserError, match=words):
            train_member(work, spec("resnet50v2", weights=weights).replace(epochs=1), name="b",
                         log=lambda line: None, show_progress=False)
        assert not (work / "members" / "b").exists()


def test_a_complete_backbone_member_reruns_without_its_weights_file(prepared, tmp_path, monkeypatch):
    """A rerun of a finished member says it is complete; the weights it started from may be gone by then."""
    import json
    import shutil

    from members.data.dataset import load_dataset
    from members.training.trainer import train_member

    work = tmp_path / "w"
    shutil.copytree(prepared, work)
    member = spec("resnet50v2", weights=str(tmp_path / "moved-away.weights.h5")).replace(epochs=1)
    folder = work / "members" / "b"
    folder.mkdir(parents=True)
    (folder / "spec.toml").write_text(member.to_toml(preset="custom"))
    (folder / "metrics.json").write_text(json.dumps({"name": "b", "fingerprint": load_dataset(work).fingerprint}))
    for cached in ("val.npz", "test.npz"):  # a complete member holds its predictions
        (folder / cached).write_bytes(b"")
    lines = []
    result = train_member(work, member, name="b", log=lines.append, show_progress=False)
    assert result.member_dir == folder and any("already complete with the same spec and data" in x for x in lines)
