"""Ben Graham's preprocessing on a synthetic fundus disc: constant background, mean near 128, lesions kept."""

from __future__ import annotations

import numpy as np
import pytest

import tensorflow as tf

from members.data.preprocess import ben_graham, fundus_radius, gaussian_blur  # noqa: E402

SIZE = 64


def disc(colour=(180.0, 90.0, 40.0), radius=28.0, gradient=60.0) -> np.ndarray:
    """An orange disc with an illumination gradient on black, like a fundus photograph."""
    yy, xx = np.mgrid[:SIZE, :SIZE].astype(np.float32)
    c = (SIZE - 1) / 2
    inside = np.hypot(xx - c, yy - c) <= radius
    shade = 1.0 + gradient / 255.0 * (xx - c) / radius
    image = np.zeros((SIZE, SIZE, 3), np.float32)
    image[inside] = np.array(colour, np.float32) * shade[inside][:, None]
    return image


def test_fundus_radius_is_estimated_from_the_middle_row():
    assert float(fundus_radius(tf.constant(disc(radius=28.0)))) == pytest.approx(28.0, abs=1.0)


def test_background_outside_the_circle_is_constant_128():
    out = ben_graham(tf.constant(disc()), crop=0.9).numpy()
    yy, xx = np.mgrid[:SIZE, :SIZE]
    c = (SIZE - 1) / 2
    outside = np.hypot(xx - c, yy - c) > 28.0 * 0.9 + 1
    assert np.all(out[outside] == 128.0)


def test_local_colour_is_subtracted_so_the_retina_centres_on_128():
    for colour in ((180.0, 90.0, 40.0), (90.0, 40.0, 20.0)):  # bright and dark eyes end alike
        out = ben_graham(tf.constant(disc(colour=colour)), crop=0.9).numpy()
        yy, xx = np.mgrid[:SIZE, :SIZE]
        inner = np.hypot(xx - (SIZE - 1) / 2, yy - (SIZE - 1) / 2) < 18
        assert abs(float(out[inner].mean()) - 128.0) < 6.0
        assert out.min() >= 0 and out.max() <= 255


def test_a_small_dark_lesion_stands_out_after_preprocessing():
    image = disc()
    image[30:33, 40:43] *= 0.4  # a dark blot
    out = ben_graham(tf.constant(image), crop=0.9).numpy()
    assert out[31, 41].mean() < 128.0 - 40.0


def test_gaussian_blur_preserves_a_constant_image():
    flat = tf.fill([16, 16, 3], 77.0)
    np.testing.assert_allclose(gaussian_blur(flat, 2.0).numpy(), 77.0, atol=1e-3)
