"""Fundus crop on synthetic photographs with wide black borders: the box, the square, the mask, the fallbacks."""

from __future__ import annotations

import numpy as np
import pytest

import tensorflow as tf

from members.data.fundus import circle_mask, crop_fundus, fundus_box  # noqa: E402
from members.data.pipeline import fit_image  # noqa: E402
from members.data.synthetic import render_fundus  # noqa: E402

H, W = 150, 260  # a wide frame, like a camera's 3:2 sensor


def framed(cx=150.0, cy=70.0, radius=52.0, *, clip=None, noise=3.0, caption=True, seed=0) -> np.ndarray:
    """An orange disc (true box known) on a noisy black frame, with an optional white caption far from it."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:H, :W]
    inside = np.hypot(xx + 0.5 - cx, yy + 0.5 - cy) <= radius
    if clip is not None:  # field stop cutting the disc at the top and bottom
        inside &= np.abs(yy + 0.5 - cy) <= clip
    image = np.clip(rng.normal(0, noise, (H, W, 3)), 0, 255)
    shade = 0.6 + 0.4 * (1 - np.hypot(xx - cx, yy - cy) / radius)
    image[inside] = (np.array([200.0, 90.0, 40.0]) * shade[inside, None]).clip(25, 255)
    if caption:
        image[135:145, 5:40] = 255.0  # burnt-in text in the bottom-left corner (below the disc, within its columns)
    return image.astype(np.uint8)


def _box(image: np.ndarray) -> tuple[int, ...]:
    return tuple(int(v) for v in fundus_box(tf.constant(image)))


def test_the_box_is_the_disc_within_a_few_pixels_despite_noise_and_caption():
    top, left, h, w = _box(framed(cx=150.0, cy=70.0, radius=52.0))
    assert abs(top - 18) <= 2 and abs(left - 98) <= 2
    assert abs(h - 104) <= 3 and abs(w - 104) <= 3


def test_a_disc_cut_at_top_and_bottom_is_padded_back_to_a_centred_square():
    image = framed(cx=130.0, cy=75.0, radius=70.0, clip=55.0, caption=False)
    top, left, h, w = _box(image)
    assert abs(h - 110) <= 3 and abs(w - 140) <= 3
    square = crop_fundus(tf.constant(image)).numpy()
    assert square.shape[0] == square.shape[1] == w
    pad = (w - h) // 2
    assert np.all(square[: pad - 1] == 0) and np.all(square[pad + h + 1:] == 0)  # black bands, disc centred
    assert square[w // 2, w // 2].max() > 100


def test_a_rendered_fundus_in_a_wide_frame_is_found_and_fills_the_member_input():
    eye = render_fundus(2, size=96, rng=np.random.default_rng(4))
    image = np.zeros((120, 220, 3), np.uint8)
    image[12:108, 70:166] = eye  # the 96 px square holds a disc of radius 0.45–0.49 × 96
    top, left, h, w = _box(image)
    assert 12 <= top <= 12 + 8 and 70 <= left <= 70 + 8
    assert 96 - 16 <= max(h, w) <= 96
    out = fit_image(tf.constant(image), 32, "none", fundus_crop=True).numpy()
    row = out[16].max(axis=-1) > 10
    assert row.mean() > 0.85  # the disc spans the member input (a centre crop would leave black sides)
    plain = fit_image(tf.constant(image), 32, "none").numpy()
    assert (plain[16].max(axis=-1) > 10).mean() < row.mean()


def test_circle_mask_blacks_out_the_corners_only():
    out = circle_mask(tf.fill([16, 16, 3], 200.0)).numpy()
    assert np.all(out[0, 0] == 0) and np.all(out[15, 15] == 0) and np.all(out[8, 8] == 200.0)
    assert np.all(out[8, 0] == 200.0)  # the inscribed circle touches the edge midpoints


@pytest.mark.parametrize("shape", [(40, 60, 3), (1, 1, 3), (64, 64, 3)])
def test_an_all_black_image_falls_back_to_the_full_frame(shape):
    black = np.zeros(shape, np.uint8)
    assert _box(black) == (0, 0, shape[0], shape[1])
    out = fit_image(tf.constant(black), 16, "ben", fundus_crop=True).numpy()
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8


def test_the_crop_is_deterministic_and_runs_inside_a_dataset_map():
    images = np.stack([framed(seed=s) for s in range(3)])
    ds = tf.data.Dataset.from_tensor_slices(images).map(lambda x: fit_image(x, 24, "ben", fundus_crop=True),
                                                       num_parallel_calls=2)
    first = np.stack(list(ds.as_numpy_iterator()))
    again = np.stack(list(ds.as_numpy_iterator()))
    assert first.shape == (3, 24, 24, 3)
    np.testing.assert_array_equal(first, again)


def test_ben_radius_is_estimated_on_the_cropped_disc():
    from members.data.preprocess import fundus_radius

    cropped = fit_image(tf.constant(framed(radius=40.0, cx=60.0)), 48, "none", fundus_crop=True)
    assert float(fundus_radius(tf.cast(cropped, tf.float32))) == pytest.approx(24.0, abs=1.5)


def test_the_spec_field_is_a_bool_and_defaults_off():
    from members.infra.errors import UserError
    from members.model.spec import MemberSpec

    assert MemberSpec().fundus_crop is False and MemberSpec(fundus_crop=True).fundus_crop is True
    with pytest.raises(UserError, match="fundus_crop must be of type bool"):
        MemberSpec(fundus_crop="yes")
