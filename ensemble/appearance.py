"""Is a new image like the ones the ensemble learned from? A coarse screen for ``predict``.

A member grades whatever it is given: random noise, a scanned letter or a photograph of
another kind get a grade and often a confident one. ``vote`` therefore records how the
workdir's own training and validation images look — the range of nine simple features of
their pixels and two of their geometry, shorter side and longer-to-shorter side ratio (:data:`FEATURES`) over up to :data:`MAX_IMAGES` of them, each read by :func:`look` — in
``ensemble/appearance.json``. ``predict`` reads each input by the same :func:`look` and
refers one that lies outside that range by more than its width (at least
:data:`FLOOR`), naming the feature, in the ``note`` column.

The margin was chosen on validation halves (``bench/appearance.py``, BENCHMARKS.md
"Screening inputs"): it flags no held-out image of the same set on four real sets, and every
noise image and document. It is a screen for gross mistakes, not an image-quality grader: a
blurred or badly exposed fundus photograph of the kind the set holds passes it.

numpy and Pillow only (no TensorFlow: ``vote`` stays on numpy). The features do not change
when an image is turned or mirrored, so EXIF orientation does not matter; each image is read as
:func:`members.data.thumbnail.small` (a JPEG at a reduced scale), the picture
:func:`members.data.labels.check_image` judges flatness on.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from members.data.thumbnail import SIZE, small, spread  # SIZE: each image is resized to SIZE x SIZE px first

FEATURES = ("mean_red", "mean_green", "mean_blue", "std_red", "std_green", "std_blue",
            "red_minus_green", "green_minus_blue", "detail", "short_side", "aspect", "colour")
"""The nine looks of :func:`features`, then the file's geometry (:func:`look`): ``short_side`` the log2 of its
shorter side in pixels (a thumbnail among photographs), ``aspect`` its longer side over its shorter one (a strip);
then ``colour``, the mean spread between a pixel's channels (0 for a greyscale or red-free image)."""
ONE_SIDED = {"short_side": "below", "aspect": "above", "colour": "below"}
"""Features flagged on one side only: a larger photograph is shrunk to the member's input like the training
images were (only a smaller one lacks their detail), and a squarer one is a fundus cut closer to its disc."""
LOOKS = 9
"""How many of :data:`FEATURES` :func:`features` takes from the pixels (screens written before 2026-12-07 hold only
these)."""
WORDS = {"mean_red": "mean red level", "mean_green": "mean green level", "mean_blue": "mean blue level",
         "std_red": "red contrast", "std_green": "green contrast", "std_blue": "blue contrast",
         "red_minus_green": "red-green balance", "green_minus_blue": "green-blue balance",
         "detail": "pixel-to-pixel change", "short_side": "shorter side", "aspect": "longer-to-shorter side ratio",
         "colour": "colour (mean spread between its red, green and blue; 0 is greyscale)"}
FLOOR = (5.0, 5.0, 5.0, 3.0, 3.0, 3.0, 5.0, 5.0, 0.02, 1.0, 1.0, 0.0)
"""The least margin per feature (grey levels; ``detail`` is a ratio; ``short_side`` a factor of 2; ``aspect`` 1, so
that a set of square crops still takes a 2:1 photograph), for sets whose images vary little (every image of a
MedMNIST set is 28 px square)."""
PAD = 1.0
"""The margin beyond the seen range, as a share of its width."""
COLOUR_SET = 8.0
"""Training images whose least ``colour`` is at least this many grey levels are a colour set: an input with under a
quarter of that least colour (a greyscale copy, a red-free photograph) is referred, whatever the margin above gives
(the range of colour in a set of photographs is wide, and its margin would reach below 0). A set with greyer images
(BreastMNIST, a red-free archive) is not screened on colour."""
MIN_IMAGES = 50
"""Fewer reference images give too narrow a range to screen with: no screen then."""
MAX_IMAGES = 400
FILE = "appearance.json"


def features(images: np.ndarray) -> np.ndarray:
    """``(n, 9)`` the first :data:`LOOKS` :data:`FEATURES` of ``(n, h, w, 3)`` images on the 0–255 scale.

    ``detail`` is the mean absolute difference between neighbouring pixels over the image's
    standard deviation (+1): near 0 for smooth photographs, near 1 for noise.

        >>> flat = np.full((1, 4, 4, 3), 10.0); flat[0, :, :, 0] = 30
        >>> features(flat).round(2).tolist()
        [[30.0, 10.0, 10.0, 0.0, 0.0, 0.0, 20.0, 0.0, 0.0]]
    """
    x = np.asarray(images, dtype=np.float32)
    mean, std = x.mean(axis=(1, 2)), spread(x)  # the spread prepare's and predict's flatness rule reads
    step = (np.abs(np.diff(x, axis=1)).mean(axis=(1, 2, 3)) + np.abs(np.diff(x, axis=2)).mean(axis=(1, 2, 3))) / 2
    detail = step / (x.reshape(len(x), -1).std(axis=1) + 1.0)
    return np.column_stack([mean, std, mean[:, 0] - mean[:, 1], mean[:, 1] - mean[:, 2], detail]).astype(np.float64)


def bounds(values: np.ndarray, pad_share: float = PAD) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)``: the range of ``values`` (rows of the reference images) widened by ``pad_share`` of its
    width on each side (at least :data:`FLOOR`), and the colour rule (:data:`COLOUR_SET`) for ``colour``."""
    lo, hi = values.min(axis=0), values.max(axis=0)
    pad = np.maximum(pad_share * (hi - lo), FLOOR[:values.shape[1]])  # all of FEATURES; fewer in older screens
    low, high = lo - pad, hi + pad
    if len(lo) > FEATURES.index("colour"):
        j = FEATURES.index("colour")
        low[j] = lo[j] / 4 if lo[j] >= COLOUR_SET else -1.0  # -1: never below (a spread is >= 0)
    return low, high


def reference(values: np.ndarray, *, source: str) -> dict:
    """The screen's ``appearance.json`` from the :func:`features` of the reference images."""
    lo, hi = values.min(axis=0), values.max(axis=0)
    floor = FLOOR[:values.shape[1]]
    low, high = bounds(values)
    return {"features": list(FEATURES[:values.shape[1]]), "size": SIZE, "images": int(len(values)), "source": source,
            "seen_min": lo.round(6).tolist(), "seen_max": hi.round(6).tolist(),
            "low": low.round(6).tolist(), "high": high.round(6).tolist(),
            "rule": f"outside the seen range by more than {PAD:g} of its width (at least the floor)",
            "floor": list(floor)}


def screen(ref: dict | None, values: np.ndarray) -> list[str]:
    """Per row of ``values`` (:func:`features`): ``""``, or why the image is unlike the reference.

        >>> ref = reference(np.array([[100.0] * 8 + [0.05], [120.0] * 8 + [0.07]]), source="train")
        >>> screen(ref, np.array([[110.0] * 8 + [0.06], [110.0] * 8 + [0.9]]))[1].split(";")[0]
        'unlike the training images: its pixel-to-pixel change 0.9 lies far above the 0.05-0.07 of the 2 read'
    """
    if not ref or not len(values):
        return [""] * len(values)
    values = np.asarray(values)[:, :len(ref["features"])]  # a screen voted before the geometry: its nine looks
    low, high = np.asarray(ref["low"]), np.asarray(ref["high"])
    seen_lo, seen_hi = np.asarray(ref["seen_min"]), np.asarray(ref["seen_max"])
    below, above = outside(values, low, high, ref["features"])
    excess = np.nan_to_num(np.maximum(below, above) / np.maximum(high - low, 1e-9), nan=-1.0)
    notes = []
    for row, ex in zip(values, excess):
        if not (ex > 0).any():
            notes.append("")
            continue
        j = int(np.argmax(ex))
        name = ref["features"][j]
        side = "above" if row[j] > seen_hi[j] else "below"
        shown = _shown(name)
        span = (f"the {shown(seen_lo[j])} of each of the {ref['images']} read" if shown(seen_lo[j]) == shown(seen_hi[j])
                else f"the {shown(seen_lo[j])}-{shown(seen_hi[j])} of the {ref['images']} read")
        notes.append(f"unlike the training images: its {WORDS.get(name, name)} {shown(row[j])} lies far {side} "
                     f"{span}; check it is an image of the kind the ensemble was trained on; referred")
    return notes


def outside(values: np.ndarray, low: np.ndarray, high: np.ndarray, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(below, above)``: how far each value lies under ``low`` and over ``high`` (positive: outside), with the
    side :data:`ONE_SIDED` leaves unflagged set to ``-inf``.

        >>> below, above = outside(np.array([[2.0, 9.0]]), np.array([3.0, 3.0]), np.array([5.0, 5.0]),
        ...                        ["detail", "short_side"])
        >>> below.tolist(), above.tolist()
        ([[1.0, -6.0]], [[-3.0, -inf]])
    """
    below, above = low - values, values - high
    for j, name in enumerate(names):
        side = ONE_SIDED.get(name)
        if side == "below":
            above[:, j] = -np.inf
        elif side == "above":
            below[:, j] = -np.inf
    return below, above


def _shown(name: str):
    """How a value of feature ``name`` is written in a note."""
    if name == "short_side":
        return lambda v: f"{2 ** v:.0f} px"
    return lambda v: f"{v:.3g}"


def look(path: str | os.PathLike) -> np.ndarray | None:
    """The :data:`FEATURES` of one image file (``(12,)``), or ``None`` when Pillow cannot read it."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            short, long = sorted(im.size)  # before the reduced-scale decode; a turn changes neither
            if short < 1:
                return None
            rgb = small(im)  # the picture prepare judges flatness on (a JPEG at the smallest scale still >= SIZE)
    except Exception:  # noqa: BLE001 - unreadable: predict names it as not graded already
        return None
    x = np.asarray(rgb, dtype=np.float32)
    return np.concatenate([features(x[None])[0], [np.log2(short), long / short], [float(np.ptp(x, axis=2).mean())]])


def looks(paths: Sequence[str]) -> np.ndarray:
    """``(n, 12)`` :func:`look` of each path (a row of ``nan`` for one that cannot be read: never flagged).

    Read in threads, one per core (Pillow's decode and NumPy's reductions release the GIL): predict's input screen
    took longer than the grading itself on thousands of small images, one after another.
    """
    paths = list(paths)
    if len(paths) > 32 and (os.cpu_count() or 1) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
            rows = list(pool.map(look, paths, chunksize=16))
    else:
        rows = [look(p) for p in paths]
    return np.array([np.full(len(FEATURES), np.nan) if r is None else r for r in rows]).reshape(len(rows), len(FEATURES))


def fit_reference(paths: Sequence[str], *, source: str, seed: int = 0) -> tuple[dict | None, str]:
    """``(appearance.json dict, "")``, or ``(None, why not)`` when fewer than :data:`MIN_IMAGES` images read.

    Up to :data:`MAX_IMAGES` of ``paths`` (a seeded sample) are read by :func:`look`.
    """
    paths = list(paths)
    if len(paths) > MAX_IMAGES:
        pick = np.sort(np.random.default_rng(seed).choice(len(paths), MAX_IMAGES, replace=False))
        paths = [paths[i] for i in pick]
    values = looks(paths)
    values = values[~np.isnan(values).any(axis=1)]
    if len(values) < MIN_IMAGES:
        return None, f"only {len(values)} {source} images are readable; the screen needs at least {MIN_IMAGES}"
    return reference(values, source=source), ""


def load(folder: Path) -> dict | None:
    """``folder/appearance.json`` when a vote wrote one (older ensembles have none: no screen)."""
    from members.infra.atomic import read_json

    path = Path(folder) / FILE
    if not path.is_file():
        return None
    try:
        ref = read_json(path)
    except (OSError, ValueError):
        print(f"Warning: {path} is unreadable; inputs are not screened (run vote again).", file=sys.stderr)
        return None
    keys = ("features", "low", "high", "seen_min", "seen_max", "images")
    # this version's, one voted before the colour rule (2026-12-07), or one voted before the geometry
    known = (list(FEATURES), list(FEATURES[:LOOKS + 2]), list(FEATURES[:LOOKS]))
    if not isinstance(ref, dict) or any(k not in ref for k in keys) or list(ref["features"]) not in known:
        print(f"Warning: {path} is not this version's screen; inputs are not screened (run vote again).",
              file=sys.stderr)
        return None
    return ref
