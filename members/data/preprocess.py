"""Ben Graham's fundus preprocessing (Kaggle DR 2015 winner), as TensorFlow ops.

``image·4 − blur(image)·4 + 128`` subtracts the local average colour, which removes
illumination and pigmentation differences between cameras and patients and makes
lesions stand out; the Gaussian scale follows the eye's radius. The result is then
cropped to a circle slightly inside the fundus (``crop`` × radius), where the border
artefacts of the subtraction live, and the outside is set to 128 (mid grey).
Computed once per image, before the cache.
"""

from __future__ import annotations

import math

import tensorflow as tf

BLUR_FRACTION = 1 / 30  # Gaussian sigma as a fraction of the fundus radius (Graham used radius/30 at radius 300)
CROP = 0.9


def _gaussian_kernel(sigma: float) -> tf.Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    x = tf.range(-radius, radius + 1, dtype=tf.float32)
    k = tf.exp(-(x**2) / (2 * sigma**2))
    return k / tf.reduce_sum(k)


def gaussian_blur(image: tf.Tensor, sigma: float) -> tf.Tensor:
    """Separable Gaussian blur of one float (h, w, c) image with reflect padding."""
    k = _gaussian_kernel(sigma)
    r = (int(k.shape[0]) - 1) // 2
    channels = image.shape[-1] or 3
    x = tf.pad(image[None], [[0, 0], [r, r], [r, r], [0, 0]], mode="SYMMETRIC")
    kx = tf.tile(tf.reshape(k, [1, -1, 1, 1]), [1, 1, channels, 1])
    ky = tf.tile(tf.reshape(k, [-1, 1, 1, 1]), [1, 1, channels, 1])
    x = tf.nn.depthwise_conv2d(x, kx, [1, 1, 1, 1], "VALID")
    x = tf.nn.depthwise_conv2d(x, ky, [1, 1, 1, 1], "VALID")
    return x[0]


def fundus_radius(image: tf.Tensor, threshold: float = 10.0) -> tf.Tensor:
    """Half the count of non-black pixels on the middle row (Graham's estimate); at least 1."""
    h = tf.shape(image)[0]
    row = tf.reduce_mean(image[h // 2], axis=-1)
    count = tf.reduce_sum(tf.cast(row > threshold, tf.float32))
    return tf.maximum(count / 2.0, 1.0)


def ben_graham(image: tf.Tensor, crop: float = CROP) -> tf.Tensor:
    """Local-average-colour subtraction and circular crop of a square float image (0–255).

    Args:
        image: float32 (size, size, 3), the fundus roughly filling the square.
        crop: radius of the kept circle relative to the fundus radius.

    Returns:
        float32 (size, size, 3), mean near 128, constant 128 outside the circle.
    """
    size = int(image.shape[0])
    sigma = max(size / 2 * BLUR_FRACTION, 0.5)  # images are resized so the fundus spans the square
    out = image * 4.0 - gaussian_blur(image, sigma) * 4.0 + 128.0
    radius = fundus_radius(image)
    c = (size - 1) / 2.0
    yy, xx = tf.meshgrid(tf.range(size, dtype=tf.float32), tf.range(size, dtype=tf.float32), indexing="ij")
    inside = tf.sqrt((xx - c) ** 2 + (yy - c) ** 2) <= radius * crop
    out = tf.where(inside[..., None], out, 128.0)
    return tf.clip_by_value(out, 0.0, 255.0)
