"""Grad-CAM: the heatmap finds a lesion that decides the grade; the conv block is found in every kind of net."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest

import tensorflow as tf
import keras

from ensemble.explain import combiner_weights, conv_target, gradcam  # noqa: E402
from members.data.synthetic import render_fundus  # noqa: E402

SIZE = 48
LESION = (30, 14)  # (row, col), inside the fundus disc
LESION_COLOUR = (60, 235, 225)  # bright cyan-white: no retina pixel has green + blue this high


def fundus_pair() -> tuple[np.ndarray, np.ndarray]:
    """A synthetic grade-0 fundus and its twin with one round lesion of radius 3 px."""
    healthy = render_fundus(0, size=SIZE, rng=np.random.default_rng(7))
    sick = healthy.copy()
    yy, xx = np.mgrid[:SIZE, :SIZE]
    sick[np.hypot(yy - LESION[0], xx - LESION[1]) <= 3] = LESION_COLOUR
    return healthy, sick


def lesion_net() -> keras.Model:
    """A convnet-shaped model (conv blocks, avg+max pooling head) whose grade-1 score is the lesion detector.

    block1's first filter fires where green + blue exceed 1.3 × 255 (the lesion, nothing else);
    block2 passes that channel on; the head's grade-1 logit is 4 × its global maximum − 1.
    """
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(2, 3, padding="same", name="block1_conv1")(x)
    x = keras.layers.ReLU(name="block1_relu1")(x)
    x = keras.layers.MaxPooling2D(2, name="block1_pool")(x)
    x = keras.layers.Conv2D(2, 3, padding="same", name="block2_conv1")(x)
    x = keras.layers.ReLU(name="block2_relu1")(x)
    x = keras.layers.MaxPooling2D(2, name="block2_pool")(x)
    x = keras.layers.Concatenate()([keras.layers.GlobalAveragePooling2D()(x), keras.layers.GlobalMaxPooling2D()(x)])
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    k1 = np.zeros((3, 3, 3, 2), np.float32)
    k1[1, 1, 1:, 0] = 1.0  # green + blue
    model.get_layer("block1_conv1").set_weights([k1, np.array([-1.3, 0.0], np.float32)])
    k2 = np.zeros((3, 3, 2, 2), np.float32)
    k2[1, 1, 0, 0] = 1.0
    model.get_layer("block2_conv1").set_weights([k2, np.zeros(2, np.float32)])
    dense = np.zeros((4, 2), np.float32)
    dense[2, 1] = 4.0  # the max-pooled detector channel drives grade 1
    model.layers[-1].set_weights([dense, np.array([0.0, -1.0], np.float32)])
    return model


def test_the_heatmap_peaks_on_the_lesion_and_is_lower_there_on_the_healthy_twin():
    healthy, sick = fundus_pair()
    model = lesion_net()
    probs = model.predict(np.stack([healthy, sick]).astype(np.float32), verbose=0)
    assert probs[1, 1] > 0.6 > probs[0, 1]  # the lesion matters to this model
    nested, layer = conv_target(model)
    assert nested is None and layer.name == "block2_relu1"  # the last conv block, before pooling
    maps = gradcam(model, np.stack([healthy, sick]), [1, 1])
    assert maps.shape == (2, SIZE, SIZE) and np.all(maps >= 0)
    peak = np.unravel_index(maps[1].argmax(), maps[1].shape)
    assert np.hypot(peak[0] - LESION[0], peak[1] - LESION[1]) <= 4, peak
    yy, xx = np.mgrid[:SIZE, :SIZE]
    region = np.hypot(yy - LESION[0], xx - LESION[1]) <= 4
    assert maps[1][region].mean() > 0.5 * maps[1].max()
    assert maps[0][region].max() < 0.1 * maps[1][region].mean()
    far = np.hypot(yy - LESION[0], xx - LESION[1]) > 12
    assert maps[1][far].max() < 0.1 * maps[1].max()  # nothing else lights up


def test_conv_blocks_are_found_in_builtin_nets_and_nested_application_backbones():
    from members.model.architecture import build_model
    from members.model.spec import load_preset

    images = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3)).astype(np.float32)
    convnet = build_model(load_preset("tiny").replace(input_size=32), 3)
    assert conv_target(convnet)[1].name.startswith("block")
    article = build_model(load_preset("article").replace(input_size=64), 3)
    assert isinstance(conv_target(article)[1], keras.layers.BatchNormalization)
    backbone = keras.applications.MobileNetV3Small(include_top=False, weights=None, input_shape=(64, 64, 3),
                                                   pooling="avg", include_preprocessing=False)
    inputs = keras.Input((64, 64, 3))
    x = backbone(keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inputs))
    app = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    nested, layer = conv_target(app)
    assert nested is backbone and len(layer.output.shape) == 4
    for model, size in ((convnet, 32), (article, 64), (app, 64)):
        maps = gradcam(model, images[:, :size, :size], [0, 2])
        assert maps.shape == (2, size, size) and np.isfinite(maps).all() and np.all(maps >= 0)


def test_a_dense_only_model_is_refused_in_one_sentence():
    from members.infra.errors import UserError

    inputs = keras.Input((8,))
    with pytest.raises(UserError, match="no convolutional"):
        conv_target(keras.Model(inputs, keras.layers.Dense(2)(inputs)))


def lesion_sequential() -> keras.Sequential:
    """:func:`lesion_net`'s detector as a plain Sequential (max-pooled head), the shape imported models often have."""
    model = keras.Sequential([
        keras.Input((None, None, 3)), keras.layers.Rescaling(1 / 255.0),
        keras.layers.Conv2D(2, 3, padding="same", name="block1_conv1"), keras.layers.ReLU(name="block1_relu1"),
        keras.layers.MaxPooling2D(2, name="block1_pool"),
        keras.layers.Conv2D(2, 3, padding="same", name="block2_conv1"),
        keras.layers.Activation("relu", name="block2_act"),
        keras.layers.GlobalMaxPooling2D(), keras.layers.Dense(2, activation="softmax")])
    k1 = np.zeros((3, 3, 3, 2), np.float32)
    k1[1, 1, 1:, 0] = 1.0
    model.get_layer("block1_conv1").set_weights([k1, np.array([-1.3, 0.0], np.float32)])
    k2 = np.zeros((3, 3, 2, 2), np.float32)
    k2[1, 1, 0, 0] = 1.0
    model.get_layer("block2_conv1").set_weights([k2, np.zeros(2, np.float32)])
    dense = np.zeros((2, 2), np.float32)
    dense[0, 1] = 4.0
    model.layers[-1].set_weights([dense, np.array([0.0, -1.0], np.float32)])
    return model


def test_a_sequential_model_loaded_from_a_keras_file_is_explained(tmp_path):
    """Its layers' own outputs are not connected to its inputs; the conv block is still found and differentiated."""
    healthy, sick = fundus_pair()
    lesion_sequential().save(tmp_path / "seq.keras")
    model = keras.saving.load_model(tmp_path / "seq.keras", safe_mode=True, compile=False)
    assert isinstance(model, keras.Sequential)
    nested, layer = conv_target(model)
    assert nested is None and layer.name == "block2_act"  # the last conv block, not Rescaling, before pooling
    maps = gradcam(model, np.stack([healthy, sick]), [1, 1])
    assert maps.shape == (2, SIZE, SIZE) and np.isfinite(maps).all() and np.all(maps >= 0)
    assert maps[1].max() > 0 and maps[1].std() > 0  # not a constant map
    peak = np.unravel_index(maps[1].argmax(), maps[1].shape)
    assert np.hypot(peak[0] - LESION[0], peak[1] - LESION[1]) <= 4, peak  # it looks at the lesion
    yy, xx = np.mgrid[:SIZE, :SIZE]
    assert maps[1][np.hypot(yy - LESION[0], xx - LESION[1]) > 12].max() < 0.1 * maps[1].max()


def test_a_sequential_with_a_nested_application_backbone_matches_its_functional_twin():
    from ensemble.explain import _unit

    keras.utils.set_random_seed(0)  # unseeded, some draws of weights give an all-zero map (ReLUs dead on 2 images)
    backbone = keras.applications.MobileNetV3Small(include_top=False, weights=None, input_shape=(32, 32, 3),
                                                   minimalistic=True)
    head = keras.layers.Dense(3, activation="softmax")
    seq = keras.Sequential([keras.Input((32, 32, 3)), backbone, keras.layers.GlobalAveragePooling2D(), head])
    inputs = keras.Input((32, 32, 3))
    twin = keras.Model(inputs, head(keras.layers.GlobalAveragePooling2D()(backbone(inputs))))  # same weights
    nested, layer = conv_target(seq)
    assert nested is backbone and len(layer.output.shape) == 4 and conv_target(twin)[1] is layer
    images = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3)).astype(np.float32)
    maps = gradcam(seq, images, [0, 2])
    assert maps.shape == (2, 32, 32) and np.isfinite(maps).all() and np.all(maps >= 0) and maps.std() > 0
    np.testing.assert_allclose(_unit(maps), _unit(gradcam(twin, images, [0, 2])), atol=1e-4)


@pytest.mark.parametrize("layers", [
    [keras.layers.Rescaling(1 / 255), keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")],
    [keras.layers.Rescaling(1 / 255), keras.layers.RandomFlip(), keras.layers.Normalization(mean=0.5, variance=0.1),
     keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")],
], ids=["flatten", "preprocessing-only"])
def test_a_model_without_convolution_is_refused_not_explained_at_its_rescaling(layers):
    from ensemble.explain import _forward
    from members.infra.errors import UserError

    model = keras.Sequential([keras.Input((12, 12, 3)), *layers])
    with pytest.raises(UserError, match="^Member 'mlp' has no convolutional layer") as caught:
        _forward(model, "mlp")
    assert "\n" not in str(caught.value) and "--members" in str(caught.value)


def test_a_member_whose_output_has_no_gradient_is_named_in_one_sentence():
    from members.infra.errors import UserError

    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(2, 3)(inputs)
    x = keras.layers.Activation(lambda t: tf.stop_gradient(t) + 0.0, name="frozen_relu")(x)  # cut the gradient
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(x)))
    from ensemble.explain import _forward

    with pytest.raises(UserError, match="^Member 'cut' gives no gradient .* layer 'frozen_relu'"):
        gradcam(model, np.zeros((1, 12, 12, 3), np.float32), [0], forward=_forward(model, "cut"))


def _save(model, path: Path) -> Path:
    model.save(path)
    return path


def test_cli_explains_imported_sequential_members_and_names_one_without_convolution(trained, tmp_path):
    """The QA path: import-member a Sequential .keras, vote, explain; a no-conv member gets one sentence."""
    from rich.console import Console

    from ensemble.importer import import_member
    from ensemble.vote import run_vote
    from members.data.dataset import load_dataset
    from tests.helpers import one_sentence_error, run_cli

    work = tmp_path / "w"
    shutil.copytree(trained, work)
    data = load_dataset(work)
    k = data.num_classes
    conv = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Rescaling(1 / 255),
                             keras.layers.Conv2D(6, 3, activation="relu"), keras.layers.MaxPooling2D(),
                             keras.layers.Conv2D(6, 3), keras.layers.Activation("relu"), keras.layers.Flatten(),
                             keras.layers.Dense(k, activation="softmax")])
    flat = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten(),
                             keras.layers.Dense(k, activation="softmax")])
    import_member(work, "seq", model=_save(conv, tmp_path / "seq.keras"))
    import_member(work, "flat", model=_save(flat, tmp_path / "flat.keras"))
    images = [str(data.image_root / p) for p in data.rows("test")["path"].iloc[:2]]
    quiet = Console(file=io.StringIO())
    run_vote(work, methods=("soft",), members=["t1", "seq"], n_boot=10, keep_collapsed=True, console=quiet)
    code, _, err = run_cli("explain", "--workdir", work, *images, "--out", tmp_path / "heat")
    assert code == 0 and "Traceback" not in err, err
    assert sorted(p.stem for p in (tmp_path / "heat").glob("*.png")) == sorted(Path(i).stem for i in images)
    run_vote(work, methods=("soft",), members=["t1", "seq", "flat"], n_boot=10, keep_collapsed=True, console=quiet)
    one_sentence_error(*run_cli("explain", "--workdir", work, images[0], "--out", tmp_path / "heat2")[::2],
                       "Member 'flat' has no convolutional layer", "--members")
    assert not (tmp_path / "heat2").exists()  # refused before its folder is made


def test_combiner_weights_are_read_or_equal():
    class Weighted:
        weights_ = np.array([3.0, 1.0])

    assert combiner_weights(Weighted(), 2).tolist() == [0.75, 0.25]
    assert combiner_weights(object(), 4).tolist() == [0.25] * 4  # stacking: no per-member weights


def test_a_long_panel_title_is_wrapped_not_cut_off() -> None:
    """A withheld grade's reason ran off the figure ("withheld, unlike the training ima"): titles wrap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ensemble.explain import Explanation, plot_explanation

    reason = "withheld, unlike the training images: noise, a document or another kind of picture"
    e = Explanation("eye.png", np.zeros((8, 8, 3), np.uint8), ["a: grade 0 (p=0.90)", f"ensemble (stack): {reason}"],
                    np.zeros((2, 8, 8)))
    fig = plot_explanation(e, plt)
    title = fig.axes[2].get_title()
    plt.close(fig)
    assert title.replace("\n", " ") == f"ensemble (stack): {reason}"
    assert len(title.splitlines()) > 1 and max(len(line) for line in title.splitlines()) <= 34


def test_every_title_fits_the_figure_and_the_maps_have_a_colour_key() -> None:
    """Three-line titles had their first line (the member and its grade) above the figure, and no key said what
    the colours mean; a withheld grade's panels showed solid maps of an image the members never saw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ensemble.explain import HEAT_LABEL, Explanation, plot_explanation

    titles = ["a: grade 0 (p=0.90)\n(blank map: no region of the image supports this grade)",
              "b-with-a-long-member-name: grade 2 (p=0.41)\n(diffuse: no region stands out)",
              "ensemble (soft+thr): grade 2 (p=0.26; its most probable grade 3, p=0.43)\nreferable 1: P(grade >= 2) "
              "0.238 >= 0.164; review 1"]
    many = [f"m{i}: grade 0 (p=0.51)\nweight 0.1" for i in range(9)] + ["ensemble (weighted+thr): grade 0\np=0.52"]
    for titles, withheld in ((titles, False), (titles, True), (many, False)):  # ten maps: the key grew thick
        heat = np.random.default_rng(0).random((len(titles), 16, 16))
        fig = plot_explanation(Explanation("eye.png", np.zeros((16, 16, 3), np.uint8), titles, heat,
                                           withheld=withheld), plt)
        fig.canvas.draw()
        renderer, box = fig.canvas.get_renderer(), fig.bbox
        panels = fig.axes[:len(titles) + 1]
        for ax in panels:
            extent = ax.title.get_window_extent(renderer)
            assert box.y0 <= extent.y0 and extent.y1 <= box.y1 and box.x0 <= extent.x0 and extent.x1 <= box.x1
        keys = [ax for ax in fig.axes[len(panels):] if ax.get_xlabel() == HEAT_LABEL]
        assert len(keys) == (0 if withheld else 1)
        assert [len(ax.images) for ax in panels] == [1] + [1 if withheld else 2] * len(titles)
        plt.close(fig)


def test_the_python_api_explains_one_path_and_returns_the_figures_without_printing(trained, tmp_path, capsys):
    from ensemble import api
    from members.data.dataset import load_dataset
    from tests.helpers import add_model_member

    work = tmp_path / "w"
    shutil.copytree(trained, work)
    add_model_member(work, "m2")
    api.vote(work, methods="soft", members="t1,m2", n_boot=10, keep_collapsed=True)
    data = load_dataset(work)
    image = str(data.image_root / data.rows("test")["path"].iloc[0])
    capsys.readouterr()
    written = api.explain(work, image, tmp_path / "heat")  # one path: one image, not one per character
    assert written == [tmp_path / "heat" / f"{Path(image).stem}.png"] and written[0].is_file()
    assert capsys.readouterr().out == ""


def test_an_image_whose_name_is_not_utf8_is_explained(trained, tmp_path):
    """``tf.io.read_file`` took the name as a str and failed to convert it (``Error converting unicode string``): no
    figure was written for any image; predict, which passes bytes, graded it."""
    import os

    from ensemble import api
    from members.data.dataset import load_dataset
    from tests.helpers import add_model_member

    work = tmp_path / "w"
    shutil.copytree(trained, work)
    add_model_member(work, "m2")
    api.vote(work, methods="soft", members="t1,m2", n_boot=10, keep_collapsed=True)
    data = load_dataset(work)
    latin = os.fsdecode(os.fsencode(str(tmp_path)) + b"/caf\xe9.jpg")  # a Windows zip's name: not UTF-8
    shutil.copy(data.image_root / data.rows("test")["path"].iloc[0], latin)
    written = api.explain(work, [latin], tmp_path / "heat")
    assert len(written) == 1 and written[0].is_file() and written[0].stat().st_size > 0


def test_a_uniform_map_is_scaled_to_nothing_and_flagged_not_drawn_solid():
    from ensemble.explain import _scaled

    maps = np.stack([np.full((4, 4), 0.3), np.zeros((4, 4)), np.arange(16.0).reshape(4, 4)])
    scaled, uniform = _scaled(maps)
    assert uniform.tolist() == [True, False, False]
    assert not scaled[0].any() and not scaled[1].any() and scaled[2].max() == 1.0 and scaled[2, 0, 0] == 0.0


def test_a_member_too_coarse_to_localise_gets_no_solid_map_and_says_why(trained, tmp_path, monkeypatch):
    """A last convolution of 1×1 (e.g. an EfficientNet at 32 px) gives a constant map: drawn empty, named."""
    from ensemble import api, explain
    from ensemble.importer import import_member
    from members.data.dataset import load_dataset

    work = tmp_path / "w"
    shutil.copytree(trained, work)
    data = load_dataset(work)
    keras.utils.set_random_seed(0)
    coarse = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Rescaling(1 / 255),
                               keras.layers.Conv2D(4, 16, activation="relu", bias_initializer="ones"),
                               keras.layers.Flatten(), keras.layers.Dense(data.num_classes, activation="softmax")])
    import_member(work, "coarse", model=_save(coarse, tmp_path / "coarse.keras"))
    api.vote(work, methods="soft", members="t1,coarse", n_boot=10, keep_collapsed=True)
    shown = []
    real = explain.plot_explanation
    monkeypatch.setattr(explain, "plot_explanation", lambda e, plt: shown.append(e) or real(e, plt))
    image = str(data.image_root / data.rows("test")["path"].iloc[0])
    api.explain(work, image, tmp_path / "heat")
    [e] = shown
    names = [t.split(":")[0] for t in e.titles]
    at = names.index("coarse")
    assert explain.COARSE_NOTE in e.titles[at] and not e.heatmaps[at].any()
    assert explain.COARSE_NOTE not in e.titles[names.index("t1")]


def test_the_colour_key_says_support_for_the_panels_grade_and_a_diffuse_map_is_named():
    """The key read "how much a region raised the grade above it" even on a grade-0 panel, and said nothing of each
    map being scaled to its own maximum, so a faint diffuse map painted the whole fundus red unremarked."""
    from ensemble.explain import DIFFUSE_NOTE, EMPTY_NOTE, HEAT_LABEL, _diffuse

    assert "supports the grade (class) in the panel's title" in HEAT_LABEL and "raised" not in HEAT_LABEL
    assert "scaled to its own maximum" in HEAT_LABEL
    assert "raised" not in EMPTY_NOTE and "no region of the image supports this" in EMPTY_NOTE
    yy, xx = np.mgrid[:16, :16]
    peaked = np.exp(-((yy - 8) ** 2 + (xx - 8) ** 2) / 8.0)
    assert not _diffuse(peaked) and _diffuse(0.8 + 0.2 * peaked) and not _diffuse(np.zeros((16, 16)))
    assert DIFFUSE_NOTE == "diffuse: no region stands out"


def test_the_ensemble_panel_gives_predicts_referable_call_and_review(trained, tmp_path, monkeypatch):
    """The ensemble's panel said only "grade 0 (p=0.72)" for an image predict calls referable 1 and review 1."""
    from ensemble import api, explain
    from ensemble.inference import predict_images
    from members.data.dataset import load_dataset
    from members.infra.atomic import read_json
    from tests.helpers import add_model_member

    work = tmp_path / "w"
    shutil.copytree(trained, work)
    add_model_member(work, "m2")
    api.vote(work, methods="soft", members="t1,m2", n_boot=10, keep_collapsed=True)
    report = read_json(work / "ensemble" / "report.json")
    assert report["referable"]["ensemble"]["name"] == report["best_method"]  # explain's default: a call is made
    data = load_dataset(work)
    images = [str(data.image_root / p) for p in data.rows("test")["path"].iloc[:4]]
    shown = []
    real = explain.plot_explanation
    monkeypatch.setattr(explain, "plot_explanation", lambda e, plt: shown.append(e) or real(e, plt))
    api.explain(work, images, tmp_path / "heat")
    result = predict_images(work, images, print_csv=False)
    assert len(shown) == len(images)
    for i, e in enumerate(shown):
        last = e.titles[-1].splitlines()[1]
        call = int(result.referable_of(i))
        words = last.split()
        assert words[:5] == ["referable", f"{call}:", "P(grade", ">=", "2)"] and words[6] == (">=" if call else "<")
        assert float(words[5]) == pytest.approx(result.p_referable[i], abs=1e-3)
        assert last.endswith(f"; review {int(result.review[i])}")
