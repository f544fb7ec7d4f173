"""One image path: training's pipeline and ``predict`` feed every member identical arrays, and one TTA.

For members of two sizes (whose JPEG decode scales differ), with and without Ben preprocessing
and fundus crop, on a JPEG larger than the member size and on a PNG: the arrays of
``make_dataset`` (training's evaluation pipeline) and of ``image_batches`` (``predict``, one
read per file for every member) are equal bit for bit, and so are the probabilities.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import tensorflow as tf

from ensemble.inference import LoadedMember, ensemble_member_probs, image_batches  # noqa: E402
from members.training.loop import predict_probs  # noqa: E402
from members.data.pipeline import make_dataset  # noqa: E402
from members.data.synthetic import render_fundus  # noqa: E402

SIZES = (24, 40)  # a 200 px JPEG decodes at 1/4 scale for 24 px and at 1/2 for 40 px
# both sizes, each with and without Ben preprocessing, each with and without fundus crop
VARIANTS = [(24, "none", False), (24, "ben", True), (40, "ben", False), (40, "none", True)]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A 260×200 JPEG and a 70×90 PNG of synthetic fundi in black frames."""
    folder = tmp_path_factory.mktemp("one_path")
    paths = []
    for name, (h, w), fmt in (("big.jpeg", (200, 260), "JPEG"), ("small.png", (70, 90), "PNG")):
        frame = np.zeros((h, w, 3), np.uint8)
        side = min(h, w) - 6
        frame[3:3 + side, (w - side) // 2:(w - side) // 2 + side] = render_fundus(
            3, size=side, rng=np.random.default_rng(len(paths)))
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format=fmt, **({"quality": 92} if fmt == "JPEG" else {}))
        path = folder / name
        path.write_bytes(buffer.getvalue())
        paths.append(str(path))
    return paths


def _training_arrays(paths, size, prep, crop) -> np.ndarray:
    ds = make_dataset(paths, np.zeros(len(paths)), size=size, batch_size=8, preprocessing=prep, fundus_crop=crop,
                      cache="none")
    return np.concatenate([x.numpy() for x, _ in ds])


def test_training_and_predict_feed_identical_arrays(files):
    (indices, batches), = list(image_batches(files, VARIANTS, batch_size=8))
    assert indices.numpy().tolist() == [0, 1]
    for variant, batch in zip(VARIANTS, batches):
        fed = tf.cast(batch, tf.float32).numpy()  # what member_probs hands the model
        train = _training_arrays(files, *variant)
        assert fed.shape == train.shape == (2, variant[0], variant[0], 3)
        assert np.array_equal(fed, train), (variant, float(np.abs(fed - train).max()))
    # a variant alone (no shared decode) gets the same pixels
    (_, alone), = list(image_batches(files, VARIANTS[1:2], batch_size=8))
    assert np.array_equal(alone[0].numpy(), batches[1].numpy())
    # the preparations really differ, so the test would catch a member fed another's pixels
    plain = tf.image.resize(tf.cast(batches[3], tf.float32), [24, 24], antialias=True).numpy()
    assert np.abs(plain - batches[0].numpy()).mean() > 5  # centre crop vs fundus crop


def test_predict_and_training_give_identical_probabilities_with_tta(files):
    from members.model.architecture import build_model
    from members.model.spec import load_preset

    model = build_model(load_preset("tiny").replace(input_size=24), 3)
    members = [LoadedMember(name="m24", model=model, input_size=24, preprocessing="ben", fundus_crop=True, tta=True,
                            num_classes=3)]
    P, kept = ensemble_member_probs(members, files)
    assert kept.tolist() == [0, 1]
    for j, m in enumerate(members):
        ds = make_dataset(files, np.zeros(2), size=m.input_size, batch_size=64, preprocessing=m.preprocessing,
                          fundus_crop=m.fundus_crop, cache="none")
        train = predict_probs(m.model, ds, tta=True)
        assert np.array_equal(P[j], train)
        np.testing.assert_allclose(P[j].sum(axis=1), 1.0, atol=1e-12)
        assert not np.array_equal(train, predict_probs(m.model, ds, tta=False))  # the flips count


def _save(path, frames, fmt, **kwargs) -> str:
    images = [Image.fromarray(np.full((20, 30, 3), v, np.uint8)) for v in frames]
    images[0].save(path, format=fmt, save_all=len(images) > 1, append_images=images[1:], **kwargs)
    return str(path)


def test_predict_names_a_zip_passed_as_an_image(tmp_path):
    import zipfile

    from ensemble.inference import check_file

    with zipfile.ZipFile(tmp_path / "test.zip", "w") as z:
        z.writestr("test/a.png", b"not really")
    assert check_file(str(tmp_path / "test.zip")).startswith("is a zip archive, not an image: extract it first")


def test_predict_refuses_bombs_and_animated_webp_but_reads_a_gif_and_a_tiff(tmp_path, monkeypatch):
    from ensemble.inference import check_file

    gif = _save(tmp_path / "anim.gif", (50, 150, 250), "GIF", duration=100, loop=0)
    webp = _save(tmp_path / "anim.webp", (50, 150, 250), "WEBP", duration=100, loop=0)
    tiff = _save(tmp_path / "eye.tiff", (90,), "TIFF")
    assert check_file(gif) is None
    assert "animated WebP (3 frames)" in check_file(webp)
    assert check_file(tiff) is None  # decoded with Pillow
    (_, (batch,)), = list(image_batches([gif, tiff], [(16, "none", False)]))
    assert np.all(batch.numpy()[0] == 50)  # the first frame
    assert np.all(batch.numpy()[1] == 90)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200)  # 600 pixels > 2 × 200: Pillow's bomb error
    assert "too large to decode safely" in check_file(gif)
