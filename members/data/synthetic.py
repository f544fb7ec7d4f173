"""Synthetic fundus photographs in the Kaggle EyePACS layout, for demos and tests.

``write_demo_data`` writes ``OUT/images/<patient>_<left|right>.jpeg`` and
``OUT/trainLabels.csv`` (``image,level``, names without extension) exactly like the
Kaggle "Diabetic Retinopathy Detection" set, so every command that reads the real
data reads this too. ``render_fundus`` draws one photograph: a circular orange-red
retina on black, optic disc placed nasally (left in left eyes, right in right eyes),
dark macula 2.5 disc diameters temporal of it, vessel arcades branching from the
disc, and lesions that grow with the grade (microaneurysms, haemorrhages, hard
exudates, cotton-wool spots, neovascularisation), plus confounders (dust, reflexes,
drusen, pigment) at every grade. All geometry is in units of the fundus radius, so a
512 px image holds the same content as a 128 px one, only finer: small lesions make
input resolution matter.

Every difficulty knob is a module constant in the block below.

Example:
    >>> summary = write_demo_data("/tmp/demo", images=20, size=64, progress=False)
    >>> summary.images, sorted(summary.counts)
    (20, [0, 1, 2, 3, 4])
"""

from __future__ import annotations

import functools
import io
import math
import operator
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from members.infra.atomic import write_bytes, write_json, write_text
from members.infra.errors import UserError

GRADE_MIX: tuple[float, ...] = (0.73, 0.07, 0.15, 0.025, 0.025)
NUM_GRADES = 5
MIN_PER_GRADE = 6  # three patients (both eyes): one each for train, val and test, as prepare needs
EYES = ("left", "right")
JPEG_QUALITY = 90
LABELS_NAME = "trainLabels.csv"
MARKER_NAME = "demo-data.json"
MAX_IMAGES = 1_000_000  # a synthetic set larger than this is a typo


def made_by_demo_data(images: str | Path) -> bool:
    """Whether the images folder ``images`` is the one ``demo-data`` wrote (its ``demo-data.json`` beside it)."""
    return bool(str(images)) and (Path(images).parent / MARKER_NAME).is_file()


# ---------------------------------------------------------------- difficulty knobs
# Mean lesion counts per grade (index = grade). An image draws Poisson(mean * severity)
# with severity ~ LogNormal(0, SEVERITY_SIGMA), so neighbouring grades overlap.
MICROANEURYSMS = (0.0, 6.0, 10.0, 15.0, 15.0)
HAEMORRHAGES = (0.0, 0.0, 6.0, 18.0, 18.0)
EXUDATE_CLUSTERS = (0.0, 0.0, 2.0, 2.5, 2.5)
COTTON_WOOL = (0.0, 0.0, 0.5, 3.0, 3.0)
NEOVASCULAR = (0.0, 0.0, 0.0, 0.0, 1.5)  # grade 4 always gets at least one tangle
PRERETINAL_RATE = 0.5  # grade 4: share with a large boat-shaped preretinal haemorrhage
SEVERITY_SIGMA = 0.4
# Lesion sizes, in units of the fundus radius (0.01 is ~0.6 px at 128 px, 2.4 px at 512 px).
MA_RADIUS = (0.011, 0.018)
HAEM_RADIUS = (0.025, 0.06)
EXUDATE_RADIUS = (0.008, 0.016)
COTTON_RADIUS = (0.04, 0.07)
NV_RADIUS = (0.02, 0.045)  # one loop of a new-vessel tangle
NV_WIDTH = 0.006  # new vessels' calibre
PRERETINAL_RADIUS = (0.07, 0.13)
# Lesion opacity (0..1): how strongly a lesion replaces the retina under it.
RED_OPACITY = 0.85
EXUDATE_OPACITY = 0.9
COTTON_OPACITY = 0.6
# Confounders, at every grade: (probability per image, (min, max) count).
DUST = (0.3, (1, 4))
PIGMENT = (0.15, (1, 5))
DRUSEN = (0.12, (2, 10))
REFLEX = (0.35, (1, 3))
# Eye pair concordance: Gaussian jitter on the grade before pairing neighbours.
PAIR_JITTER = 0.5
# Acquisition: rotation (degrees), share clipped top/bottom, underexposed, out of focus.
ROTATION_DEG = 25.0
CLIPPED_RATE = 0.3
DARK_RATE = 0.1
BLURRY_RATE = 0.15
# ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoImage:
    """One planned photograph: Kaggle name (no extension), patient id, eye and grade."""

    name: str
    patient: int
    eye: str
    grade: int


@dataclass(frozen=True)
class DemoDataSummary:
    """What ``write_demo_data`` wrote: folder, image count and size, images per grade, time."""

    out: Path
    images: int
    size: int
    counts: dict[int, int]
    seconds: float


def grade_counts(images: int, *, balanced: bool = False) -> np.ndarray:
    """Images per grade: ``GRADE_MIX`` by largest remainder, or as equal as possible.

    With at least ``5 * MIN_PER_GRADE`` images, no grade of the mix gets fewer than
    :data:`MIN_PER_GRADE` (taken from grade 0), so that ``prepare`` can split the set.

    Args:
        images: total number of images (>= 1).
        balanced: equal counts (the extra ones go to the lowest grades) instead of ``GRADE_MIX``.

    Returns:
        int array of length 5 summing to ``images``.

    Example:
        >>> grade_counts(800).tolist(), grade_counts(7, balanced=True).tolist()
        ([584, 56, 120, 20, 20], [2, 2, 1, 1, 1])
        >>> grade_counts(100).tolist()  # the mix gives grades 3 and 4 only 2 or 3 images: raised to 6
        [66, 7, 15, 6, 6]
    """
    images, _ = _check_args(images, 0)
    if balanced:
        return np.array([images // NUM_GRADES + (g < images % NUM_GRADES) for g in range(NUM_GRADES)])
    exact = images * np.asarray(GRADE_MIX) / sum(GRADE_MIX)
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: images - counts.sum()]] += 1
    if images >= NUM_GRADES * MIN_PER_GRADE:  # enough for prepare's split: the rare grades get their floor
        short = np.maximum(MIN_PER_GRADE - counts, 0)
        counts += short
        counts[int(np.argmax(counts))] -= int(short.sum())
    return counts


def too_few(counts) -> list[int]:
    """The grades with fewer than :data:`MIN_PER_GRADE` images: too few patients for prepare to put
    one in each of train, val and test.

    Example:
        >>> too_few([10, 6, 5, 6, 0])
        [2, 4]
    """
    return [g for g, n in enumerate(counts) if n < MIN_PER_GRADE]


def plan_images(images: int, *, seed: int = 0, balanced: bool = False) -> list[DemoImage]:
    """Patients, eyes and grades in Kaggle row order, without rendering anything.

    Both eyes of a patient get neighbouring grades (usually equal, sometimes +-1, as in
    EyePACS); the overall counts are exactly ``grade_counts``. Patient ids start at 10 and
    grow by 1-3. With an odd ``images`` the last patient has only a left eye.

    Args:
        images: number of images (>= 1).
        seed: random seed (>= 0); the plan depends on nothing else.
        balanced: equal counts per grade instead of ``GRADE_MIX``.

    Returns:
        One :class:`DemoImage` per image, left eye before right, patients in order.

    Example:
        >>> [item.name for item in plan_images(3)]
        ['10_left', '10_right', '11_left']
    """
    images, seed = _check_args(images, seed)
    rng = np.random.default_rng([seed, 0])
    pool = np.repeat(np.arange(NUM_GRADES), grade_counts(images, balanced=balanced))
    pool = pool[np.argsort(pool + rng.normal(0.0, PAIR_JITTER, images), kind="stable")]
    single = None
    if images % 2:
        j = int(rng.integers(images))
        single, pool = int(pool[j]), np.delete(pool, j)
    pairs = pool.reshape(-1, 2)[rng.permutation(images // 2)]
    swap = rng.random(len(pairs)) < 0.5
    pairs[swap] = pairs[swap, ::-1]
    grades = [tuple(p) for p in pairs.tolist()] + ([(single,)] if single is not None else [])
    ids = 10 + np.concatenate([[0], np.cumsum(rng.integers(1, 4, len(grades) - 1))]).astype(int)
    return [
        DemoImage(f"{pid}_{eye}", int(pid), eye, int(g))
        for pid, eyes in zip(ids.tolist(), grades)
        for eye, g in zip(EYES, eyes)
    ]


# ------------------------------------------------------------------------ drawing
def _xy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Stack coordinates into ``(..., 2)`` points (faster than ``np.stack`` on small arrays)."""
    out = np.empty((*np.broadcast_shapes(np.shape(x), np.shape(y)), 2))
    out[..., 0], out[..., 1] = x, y
    return out


@functools.lru_cache(maxsize=64)
def _ramp(n: int, stop: float = 1.0, endpoint: bool = True) -> np.ndarray:
    """``np.linspace(0, stop, n)``, cached."""
    return np.linspace(0, stop, n, endpoint=endpoint)


def _signs(rng, n: int) -> np.ndarray:
    """``n`` random signs, -1.0 or 1.0."""
    return np.where(rng.random(n) < 0.5, -1.0, 1.0)


@dataclass(frozen=True)
class _Frame:
    """Maps anatomical coordinates (left-eye layout, unit = fundus radius) to canvas pixels."""

    cx: float
    cy: float
    radius: float
    cos: float
    sin: float
    mirror: float
    scale: int

    def canvas(self, pts: np.ndarray) -> np.ndarray:
        """``(..., 2)`` anatomical points to ``(..., 2)`` supersampled-canvas pixels."""
        x, y = pts[..., 0] * self.mirror, pts[..., 1]
        r, s = self.radius, self.scale
        return _xy((self.cx + r * (self.cos * x - self.sin * y)) * s, (self.cy + r * (self.sin * x + self.cos * y)) * s)

    def window(self, centre, extent: float, size: int) -> tuple[slice, slice]:
        """Rows and columns of the output image within ``extent`` of anatomical ``centre``."""
        (x, y), half = self.canvas(np.asarray(centre, float)) / self.scale, extent * self.radius
        clip = lambda a: int(min(max(a, 0), size))
        return slice(clip(y - half), clip(y + half + 1)), slice(clip(x - half), clip(x + half + 1))


class _Layers:
    """Supersampled greyscale masks, created on first use and averaged down at the end."""

    def __init__(self, size: int, scale: int):
        self.shape, self.scale, self.images, self.draws = (size * scale,) * 2, scale, {}, {}

    def __getitem__(self, name: str) -> ImageDraw.ImageDraw:
        if name not in self.draws:
            self.images[name] = Image.new("L", self.shape)
            self.draws[name] = ImageDraw.Draw(self.images[name])
        return self.draws[name]

    def region(self, name: str, margin: int = 0) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
        """Where mask ``name`` was drawn (plus ``margin`` pixels), at output size, or None if nowhere.

        Returns:
            The ``img[win]`` window of a planar image and the ``(h, w)`` float32 mask in 0..1 over it.
        """
        image = self.images.get(name)
        box = image.getbbox() if image is not None else None
        if box is None:
            return None
        s, n = self.scale, self.shape[0] // self.scale
        x0, y0 = max(0, box[0] // s - margin), max(0, box[1] // s - margin)
        x1, y1 = min(n, -(-box[2] // s) + margin), min(n, -(-box[3] // s) + margin)
        crop = image.crop((x0 * s, y0 * s, x1 * s, y1 * s))
        mask = np.asarray(crop.reduce(s) if s > 1 else crop, dtype=np.float32) / 255.0
        return (slice(None), slice(y0, y1), slice(x0, x1)), mask


def _walks(rng, starts, angles, lengths, wiggle, bend, *, n: int) -> np.ndarray:
    """Smooth random-walk polylines of ``n`` steps, as an ``(m, n + 1, 2)`` array.

    ``wiggle`` and ``bend`` are the standard deviations (radians) of the final heading's
    jitter and smooth drift, whatever ``n``.
    """
    m = len(starts)
    noise = rng.standard_normal((2, m, n))
    turn = np.reshape(wiggle, (-1, 1)) / math.sqrt(n) * np.cumsum(noise[0], 1)
    turn += np.reshape(bend, (-1, 1)) * math.sqrt(3) / n**1.5 * np.cumsum(np.cumsum(noise[1], 1), 1)
    ang, step = np.asarray(angles)[:, None] + turn, (np.asarray(lengths) / n)[:, None]
    moves = np.cumsum(_xy(np.cos(ang) * step, np.sin(ang) * step), 1)
    return np.concatenate([starts[:, None], starts[:, None] + moves], 1)


def _blobs(rng, centres, radii, *, elong=1.0, rough: float = 0.25, n: int = 14) -> np.ndarray:
    """Irregular closed outlines with smooth edges around ``centres``, as a ``(k, n, 2)`` array."""
    k = len(centres)
    t = _ramp(n, 2 * np.pi, False)
    phase = rng.uniform(0, 2 * np.pi, (3, k, 1))
    wobble = (np.sin(2 * t + phase[0]) + np.sin(3 * t + phase[1]) + 0.5 * np.sin(5 * t + phase[2])) / 1.8
    r = np.asarray(radii)[:, None] * (1 + rough * wobble)
    x, y = r * np.cos(t) * np.reshape(elong, (-1, 1)), r * np.sin(t)
    a = rng.uniform(0, np.pi, (k, 1))
    ca, sa = np.cos(a), np.sin(a)
    return np.asarray(centres)[:, None] + _xy(x * ca - y * sa, x * sa + y * ca)


def _clip_fovea(paths: np.ndarray, macula, r: float = 0.1) -> np.ndarray:
    """Stop each path where it first enters the avascular zone around the fovea."""
    n = paths.shape[1]
    bad = np.hypot(paths[..., 0] - macula[0], paths[..., 1] - macula[1]) < r
    first = np.where(bad.any(1), bad.argmax(1), n)
    idx = np.minimum(np.arange(n)[None], np.maximum(first - 1, 0)[:, None])
    return np.take_along_axis(paths, idx[..., None], 1)


def _ribbons(frame: _Frame, paths: np.ndarray, w0, w1) -> list[list[float]]:
    """Canvas polygons of ribbons along ``paths`` tapering from width ``w0`` to ``w1`` (fundus radii)."""
    m, n = paths.shape[:2]
    pix = frame.canvas(paths)
    d = np.concatenate([pix[:, 1:2] - pix[:, :1], pix[:, 2:] - pix[:, :-2], pix[:, -1:] - pix[:, -2:-1]], 1)
    normal = _xy(-d[..., 1], d[..., 0]) / np.maximum(np.hypot(d[..., 0], d[..., 1]), 1e-9)[..., None]
    w0, w1 = np.broadcast_to(w0, m)[:, None], np.broadcast_to(w1, m)[:, None]
    half = (w0 + (w1 - w0) * _ramp(n)) * (frame.radius * frame.scale / 2)
    offset = normal * np.maximum(half, 0.5)[..., None]  # at least one canvas pixel wide
    return np.concatenate([pix + offset, (pix - offset)[:, ::-1]], 1).reshape(m, 4 * n).tolist()


def _polygons(draw, frame: _Frame, polys: np.ndarray, fill) -> None:
    fills = np.broadcast_to(fill, len(polys)).tolist()
    for poly, f in zip(frame.canvas(polys).reshape(len(polys), -1).tolist(), fills):
        draw.polygon(poly, fill=f)


def _dots(draw, frame: _Frame, centres: np.ndarray, radii, fill) -> None:
    fills = np.broadcast_to(fill, len(centres)).tolist()
    rads = (np.asarray(radii) * frame.radius * frame.scale).tolist()
    for (x, y), r, f in zip(frame.canvas(centres).tolist(), rads, fills):
        draw.ellipse((x - r, y - r, x + r, y + r), fill=f)


def _positions(rng, n: int, centre, spread: float, disc, disc_r: float) -> np.ndarray:
    """``n`` points scattered around ``centre``, inside the fundus and off the disc."""
    cand = np.asarray(centre) + rng.normal(0.0, spread, (4 * n + 8, 2))
    ok = (np.hypot(cand[:, 0], cand[:, 1]) < 0.9) & (
        np.hypot(cand[:, 0] - disc[0], cand[:, 1] - disc[1]) > disc_r * 1.15
    )
    cand = cand[ok][:n]
    return np.vstack([cand, np.zeros((n - len(cand), 2))])


def _draw_vessels(draw, frame: _Frame, paths: np.ndarray, w0, w1, is_art) -> None:
    """Draw vessels as tapering polygons, or plain lines when thin; the fill is their darkness.

    Arteries are lighter than veins, and thin vessels fainter than wide ones, as in photographs.
    """
    fills = (np.minimum(255, 255 * (0.45 + 25 * (w0 + w1))) * np.where(is_art, 0.55, 1.0)).astype(int)
    wide = np.maximum(w0, w1) * frame.radius * frame.scale >= 2.5
    for poly, fill in zip(_ribbons(frame, paths[wide], w0[wide], w1[wide]), fills[wide].tolist()):
        draw.polygon(poly, fill=fill)
    thin = ~wide
    widths = np.maximum(1, np.round((w0 + w1)[thin] / 2 * frame.radius * frame.scale)).astype(int).tolist()
    lines = frame.canvas(paths[thin]).reshape(int(thin.sum()), 2 * paths.shape[1]).tolist()
    for line, fill, width in zip(lines, fills[thin].tolist(), widths):
        draw.line(line, fill=fill, width=width)


def _vessels(rng, layers: _Layers, frame: _Frame, disc, macula) -> np.ndarray:
    """Draw arcades, nasal vessels, branches and twigs; return the 8 main paths ``(8, 24, 2)``."""
    sup = np.array([1.0, 1.0, -1.0, -1.0])  # superior (up is -y) or inferior
    art = np.array([0.0, 1.0, 0.0, 1.0])  # vein or artery
    rel = disc + rng.normal(0, 0.025, (4, 2)) - macula
    rho0, phi0 = np.hypot(rel[:, 0], rel[:, 1])[:, None], np.arctan2(rel[:, 1], rel[:, 0])[:, None]
    t = _ramp(24)[None]
    top, end = (rng.uniform(0.36, 0.48, 4) + 0.07 * art)[:, None], rng.uniform(0.75, 0.95, (4, 1))
    rho = np.where(t < 0.35, top + (rho0 - top) * (1 - t / 0.35) ** 2, top + (end - top) * ((t - 0.35) / 0.65) ** 2)
    rho = rho * (1 + 0.03 * np.sin(t * rng.uniform(6, 12, (4, 1)) + rng.uniform(0, 6, (4, 1))))
    phi = phi0 + (sup * (rng.uniform(2.0, 2.5, 4) + 0.25 * art))[:, None] * t
    arcs = macula + _xy(rho * np.cos(phi), rho * np.sin(phi))
    # Nasal vessels and small ones straight out of the disc, in one batch.
    k = int(rng.integers(2, 5))
    ang = np.concatenate(
        [np.pi - sup * rng.uniform(0.6, 1.1, 4), rng.uniform(-0.5, 0.5, k) + np.pi * (rng.random(k) < 0.5)]
    )
    lengths = np.concatenate([rng.uniform(0.55, 0.8, 4), rng.uniform(0.2, 0.45, k)])
    starts = disc + rng.normal(0, 0.025, (4 + k, 2))
    first = _walks(rng, starts, ang, lengths, 0.2, np.repeat([0.6, 0.4], [4, k]), n=23)
    mains, is_art = np.concatenate([arcs, first[:4]]), np.concatenate([art, art, rng.random(k) < 0.5]) > 0
    w0 = np.concatenate([np.where(is_art[:8], 0.017, 0.024) * np.repeat([1.0, 0.72], 4), np.full(k, 0.008)])
    w1 = w0 * np.repeat([0.3, 0.5], [8, k])
    draw = layers["vessel"]
    _draw_vessels(draw, frame, np.concatenate([mains, first[4:]]), w0, w1, is_art)
    # Branches off the main vessels, and twigs off the branches.
    parent = np.repeat(np.arange(8), rng.integers(3, 7, 8))
    b, idx = len(parent), rng.integers(2, 21, len(parent))
    start, tangent = mains[parent, idx], mains[parent, idx + 1] - mains[parent, idx]
    ang = np.arctan2(tangent[:, 1], tangent[:, 0]) + _signs(rng, b) * rng.uniform(0.35, 0.9, b)
    branch_w = w0[parent] * (1 - 0.55 * idx / 24) * rng.uniform(0.45, 0.7, b)
    branches = _clip_fovea(_walks(rng, start, ang, rng.uniform(0.12, 0.4, b), 0.15, 0.45, n=11), macula)
    _draw_vessels(draw, frame, branches, branch_w, branch_w * 0.3, is_art[parent])
    tp = np.flatnonzero(rng.random(b) < 0.6)
    t_ang = ang[tp] + _signs(rng, len(tp)) * rng.uniform(0.4, 0.9, len(tp))
    t_start = branches[tp, rng.integers(3, 10, len(tp))]
    twigs = _clip_fovea(_walks(rng, t_start, t_ang, rng.uniform(0.08, 0.2, len(tp)), 0.12, 0.2, n=7), macula)
    _draw_vessels(draw, frame, twigs, branch_w[tp] * 0.6, branch_w[tp] * 0.3, is_art[parent][tp])
    return mains


def _lesions(rng, grade: int, layers: _Layers, frame: _Frame, disc, disc_r: float, macula, mains) -> None:
    """Grade-dependent lesions on the ``red``, ``exudate`` and ``pale`` masks."""
    sev = float(rng.lognormal(0.0, SEVERITY_SIGMA))
    count = lambda means: int(rng.poisson(means[grade] * sev))
    posterior = macula * 0.6
    n = count(MICROANEURYSMS) + (grade == 1)
    if n:
        _dots(layers["red"], frame, _positions(rng, n, posterior, 0.4, disc, disc_r), rng.uniform(*MA_RADIUS, n), 255)
    n = count(HAEMORRHAGES)
    if n:
        elong = np.where(rng.random(n) < 0.7, rng.uniform(1.0, 1.5, n), rng.uniform(2.0, 3.0, n))  # blot or flame
        centres = _positions(rng, n, posterior, 0.45, disc, disc_r)
        _polygons(
            layers["red"], frame, _blobs(rng, centres, rng.uniform(*HAEM_RADIUS, n) / np.sqrt(elong), elong=elong), 255
        )
    n = count(EXUDATE_CLUSTERS)
    if n:
        ang, dist = rng.uniform(0, 2 * np.pi, n), rng.uniform(0.1, 0.4, n)
        centres = macula + dist[:, None] * _xy(np.cos(ang), np.sin(ang))
        flecks = np.concatenate(
            [_positions(rng, 3 + int(rng.poisson(5 * sev)), c, rng.uniform(0.02, 0.07), disc, disc_r) for c in centres]
        )
        _polygons(layers["exudate"], frame, _blobs(rng, flecks, rng.uniform(*EXUDATE_RADIUS, len(flecks)), n=6), 255)
    n = count(COTTON_WOOL)
    if n:
        centres = _positions(rng, n, (disc + macula) / 2, 0.35, disc, disc_r)
        spots = _blobs(rng, centres, rng.uniform(*COTTON_RADIUS, n), elong=rng.uniform(1, 1.8, n), rough=0.35)
        _polygons(layers["pale"], frame, spots, 255)
    n = count(NEOVASCULAR) + (grade == 4)
    if n:  # tangles at the disc (NVD) or along an arcade (NVE)
        a = rng.uniform(0, 2 * np.pi, n)
        nvd = disc + (disc_r * rng.uniform(0.3, 1.1, n))[:, None] * _xy(np.cos(a), np.sin(a))
        nve = mains[rng.integers(0, 4, n), rng.integers(8, 22, n)] + rng.normal(0, 0.03, (n, 2))
        centres = np.where((rng.random(n) < 0.6)[:, None], nvd, nve)
        loops_per = rng.integers(4, 9, n)
        k = int(loops_per.sum())
        loop_centres = np.repeat(centres, loops_per, 0) + rng.normal(0, NV_RADIUS[1] * 0.5, (k, 2))
        loops = _blobs(rng, loop_centres, rng.uniform(*NV_RADIUS, k) * 0.5, elong=rng.uniform(1, 2, k), rough=0.5)
        loops = np.concatenate([loops, loops[:, :1]], 1)  # closed wiggly loops
        for poly in _ribbons(frame, loops, NV_WIDTH, NV_WIDTH):
            layers["red"].polygon(poly, fill=210)
    if grade == 4 and rng.random() < PRERETINAL_RATE:  # blood under the hyaloid: flat top (fluid level)
        a, r = rng.uniform(0, 2 * np.pi), rng.uniform(*PRERETINAL_RADIUS)
        centre = macula + rng.uniform(0.2, 0.45) * np.array([math.cos(a), math.sin(a)])
        blob = _blobs(rng, centre[None], np.array([r]), elong=rng.uniform(1.2, 1.8), rough=0.1, n=16)
        blob[..., 1] = np.maximum(blob[..., 1], centre[1] - rng.uniform(0.0, 0.5) * r)
        _polygons(layers["red"], frame, blob, 255)


def _confounders(rng, layers: _Layers, frame: _Frame, disc, disc_r: float, macula) -> None:
    """Dust, pigment, drusen and bright reflexes, independent of the grade."""
    draws = rng.random(4)
    if draws[0] < DUST[0]:
        n = int(rng.integers(DUST[1][0], DUST[1][1] + 1))
        _dots(
            layers["dust"], frame, rng.uniform(-0.7, 0.7, (n, 2)), rng.uniform(0.01, 0.03, n), rng.integers(90, 200, n)
        )
    if draws[1] < PIGMENT[0]:
        n = int(rng.integers(PIGMENT[1][0], PIGMENT[1][1] + 1))
        centres = _positions(rng, n, (0, 0), 0.5, disc, disc_r)
        _polygons(layers["pigment"], frame, _blobs(rng, centres, rng.uniform(0.006, 0.015, n), n=6), 255)
    if draws[2] < DRUSEN[0]:
        n = int(rng.integers(DRUSEN[1][0], DRUSEN[1][1] + 1))
        centres = _positions(rng, n, macula, 0.15, disc, disc_r)
        _dots(layers["exudate"], frame, centres, rng.uniform(0.005, 0.012, n), rng.integers(70, 140, n))
    if draws[3] < REFLEX[0]:  # sheen: faint arcs around the macula
        n = int(rng.integers(REFLEX[1][0], REFLEX[1][1] + 1))
        arc = rng.uniform(0, 2 * np.pi, (n, 1)) + _ramp(12) * rng.uniform(0.4, 1.2, (n, 1))
        paths = macula + rng.uniform(0.15, 0.5, (n, 1, 1)) * _xy(np.cos(arc), np.sin(arc))
        widths = rng.uniform(0.04, 0.08, n)
        for poly, fill in zip(_ribbons(frame, paths, widths, widths), rng.integers(30, 70, n).tolist()):
            layers["shine"].polygon(poly, fill=fill)


def _noise_field(rng, size: int, cells: int) -> np.ndarray:
    """Smooth noise (about unit variance) with ``cells`` features across the image."""
    small = Image.fromarray(rng.standard_normal((cells, cells), dtype=np.float32))
    return np.asarray(small.resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)


def _blur(mask: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-blur an ``(h, w)`` float mask in 0..1."""
    img = Image.fromarray(np.uint8(mask * 255 + 0.5)).filter(ImageFilter.GaussianBlur(sigma))
    return np.asarray(img, np.float32) / 255.0


def _rgb(*values: float) -> np.ndarray:
    """A colour as a ``(3, 1, 1)`` float32 array, to broadcast over planar ``(3, h, w)`` images."""
    return np.array(values, np.float32)[:, None, None]


def _retina(rng, frame: _Frame, size: int, disc, disc_r: float, macula) -> np.ndarray:
    """The lesion-free retina without vessels: colour, texture, macula and optic disc, ``(3, h, w)``."""
    pig = rng.beta(2, 2)
    colour = (_rgb(0.93, 0.56, 0.22) * (1 - pig) + _rgb(0.8, 0.27, 0.08) * pig) * np.exp(
        rng.normal(0, [0.03, 0.08, 0.15])
    )[:, None, None]
    texture = 1 + rng.uniform(0.005, 0.03) * _noise_field(rng, size, 40) + 0.03 * _noise_field(rng, size, 6)
    img = texture * colour.astype(np.float32)

    def local(centre, extent):  # window of the image and anatomical offsets from centre inside it
        rows, cols = frame.window(centre, extent, size)
        u = (np.arange(cols.start, cols.stop, dtype=np.float32)[None] + 0.5 - frame.cx) / frame.radius
        v = (np.arange(rows.start, rows.stop, dtype=np.float32)[:, None] + 0.5 - frame.cy) / frame.radius
        xa, ya = (frame.cos * u + frame.sin * v) * frame.mirror, -frame.sin * u + frame.cos * v
        return (slice(None), rows, cols), xa - float(centre[0]), ya - float(centre[1])

    sigma = rng.uniform(0.09, 0.13)
    win, x, y = local(macula, 3.5 * sigma)
    d2 = x * x + y * y
    img[win] *= 1 - rng.uniform(0.2, 0.4) * np.exp(-d2 / (2 * sigma**2)) * _rgb(0.8, 1.0, 1.0)
    if rng.random() < 0.5:  # foveal reflex
        img[win] += 0.25 * np.exp(-d2 / (2 * 0.008**2))
    cup_r = disc_r * rng.uniform(0.3, 0.55)
    win, x, y = local(disc, 1.5 * disc_r)
    a_disc = np.clip((1 - np.sqrt((x / disc_r) ** 2 + (y / (1.1 * disc_r)) ** 2)) / 0.2 + 0.5, 0, 1) * rng.uniform(
        0.75, 0.9
    )
    a_cup = np.clip((1 - np.sqrt(((x - 0.2 * disc_r) / cup_r) ** 2 + (y / (1.1 * cup_r)) ** 2)) / 0.5 + 0.5, 0, 1)
    a_cup *= rng.uniform(0.5, 0.85)
    img[win] += a_disc * (_rgb(1.0, 0.84, 0.55) * rng.uniform(0.95, 1.1) - img[win])
    img[win] += a_cup * (_rgb(1.0, 0.93, 0.76) - img[win])
    return img


@functools.lru_cache(maxsize=4)
def _noise_bank(size: int) -> np.ndarray:
    """A fixed ``(2 size, 2 size)`` field of sensor noise; each image takes a random crop of it."""
    return np.random.default_rng(20150217).standard_normal((2 * size, 2 * size), dtype=np.float32)


def _paint(img: np.ndarray, layers: _Layers, rng, radius: float) -> None:
    """Darken vessels and paint lesions and confounders into ``img`` (planar, in place)."""
    darkness = rng.uniform(0.8, 1.1)
    if r := layers.region("vessel"):
        img[r[0]] *= 1 - r[1] * (_rgb(0.4, 0.7, 0.6) * darkness)
    if r := layers.region("red"):
        img[r[0]] *= 1 - r[1] * (_rgb(0.45, 0.85, 0.8) * RED_OPACITY)
    if r := layers.region("exudate"):
        img[r[0]] += EXUDATE_OPACITY * r[1] * (_rgb(1.0, 0.88, 0.42) - img[r[0]])
    if r := layers.region("pigment"):
        img[r[0]] *= 1 - r[1] * (_rgb(0.5, 0.7, 0.7) * 0.6)
    for name, sigma in (("pale", 0.012), ("dust", 0.004), ("shine", 0.025)):  # fuzzy ones
        if r := layers.region(name, margin=math.ceil(3 * sigma * radius) + 1):
            win, m = r[0], _blur(r[1], sigma * radius)
            if name == "pale":
                img[win] += COTTON_OPACITY * m * (_rgb(0.95, 0.85, 0.7) - img[win])
            elif name == "dust":
                img[win] *= 1 - 0.5 * m
            else:
                img[win] += 0.4 * m


def _camera(img: np.ndarray, rng, frame: _Frame, size: int, band: float) -> np.ndarray:
    """Illumination, vignetting, exposure, noise, the round (and clipped) field stop and focus."""
    g = np.arange(size, dtype=np.float32) + 0.5
    u, v = (g[None] - frame.cx) / frame.radius, (g[:, None] - frame.cy) / frame.radius
    r2 = u * u + v * v
    psi, q = rng.uniform(0, 2 * np.pi), rng.uniform(0, 1)
    light = (1 + rng.uniform(0, 0.25) * (u * math.cos(psi) + v * math.sin(psi))) * (
        1 - rng.uniform(0.2, 0.5) * r2 * (1 - q + q * r2)
    )
    light *= 255 * rng.lognormal(0, 0.12) * (rng.uniform(0.45, 0.7) if rng.random() < DARK_RATE else 1.0)
    light *= np.clip(frame.radius * (1 - np.sqrt(r2)) + 0.5, 0, 1)
    light *= np.clip(band - np.abs(g - frame.cy) + 0.5, 0, 1)[:, None]
    oy, ox = rng.integers(0, size, 2)
    img += rng.uniform(0.004, 0.015) * _noise_bank(size)[oy : oy + size, ox : ox + size]
    img *= light
    img += 0.5
    planes = np.clip(img, 0, 255, out=img).astype(np.uint8)
    out = Image.merge("RGB", [Image.fromarray(p) for p in planes])
    if rng.random() < BLURRY_RATE:  # out of focus
        out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0.006, 0.015) * frame.radius))
    elif (sigma := rng.uniform(0.0, 0.005) * frame.radius) > 0.3:  # slightly soft: one box pass is enough
        out = out.filter(ImageFilter.BoxBlur(sigma * math.sqrt(3)))
    return np.asarray(out)


def render_fundus(grade: int, *, size: int, rng: np.random.Generator, eye: str = "left") -> np.ndarray:
    """Draw one synthetic fundus photograph.

    The same ``rng`` state gives the same eye, camera and confounders at every grade
    (only the lesions differ): anatomy, lesions and confounders draw from three
    independent streams spawned from ``rng``.

    Args:
        grade: diabetic-retinopathy grade 0..4.
        size: width and height in pixels (at least 16).
        rng: the random generator for this image.
        eye: ``"left"`` (optic disc on the left) or ``"right"`` (mirrored).

    Returns:
        A ``(size, size, 3)`` uint8 RGB array, black outside the fundus circle.

    Raises:
        UserError: a bad grade, size or eye.

    Example:
        >>> render_fundus(2, size=64, rng=np.random.default_rng(0)).shape
        (64, 64, 3)
    """
    if grade not in range(NUM_GRADES):
        raise UserError(f"Grade must be an integer 0..{NUM_GRADES - 1}; pass one of those. Received: grade={grade!r}")
    if eye not in EYES:
        raise UserError(f"Eye must be 'left' or 'right'; pass one of those. Received: eye={eye!r}")
    size = _check_size(size)
    base, lesion_rng, extra_rng = rng.spawn(3)
    radius = size * base.uniform(0.45, 0.49)
    band = radius * (base.uniform(0.82, 0.95) if base.random() < CLIPPED_RATE else 1.0)  # flat top/bottom
    theta = math.radians(base.uniform(-ROTATION_DEG, ROTATION_DEG))
    frame = _Frame(
        cx=size / 2 + base.normal(0, 0.01 * size),
        cy=size / 2 + base.normal(0, 0.01 * size),
        radius=radius,
        cos=math.cos(theta),
        sin=math.sin(theta),
        mirror=1.0 if eye == "left" else -1.0,
        scale=int(min(8, max(2, round(384 / size)))),
    )
    disc_r = base.uniform(0.13, 0.16)
    disc = np.array([base.uniform(-0.6, -0.5), base.normal(-0.03, 0.03)])
    macula = disc + np.array([5.0 * disc_r * base.uniform(0.9, 1.1), base.uniform(0.03, 0.1)])

    img = _retina(base, frame, size, disc, disc_r, macula)
    layers = _Layers(size, frame.scale)
    mains = _vessels(base, layers, frame, disc, macula)
    _lesions(lesion_rng, grade, layers, frame, disc, disc_r, macula, mains)
    _confounders(extra_rng, layers, frame, disc, disc_r, macula)
    _paint(img, layers, base, radius)
    return _camera(img, base, frame, size, band)


# ------------------------------------------------------------------------ writing
def _check_size(size) -> int:
    try:
        size = operator.index(size)
    except TypeError:
        raise UserError(
            f"Image size must be a whole number of pixels; pass e.g. --size 128. Received: size={size!r}"
        ) from None
    if not 16 <= size <= 4096:
        raise UserError(f"Image size must be between 16 and 4096 pixels; pass e.g. --size 128. Received: size={size}")
    return size


def _check_args(images, seed) -> tuple[int, int]:
    try:
        images, seed = operator.index(images), operator.index(seed)
    except TypeError:
        raise UserError(f"Images and seed must be whole numbers. Received: images={images!r}, seed={seed!r}") from None
    if images < 1:
        raise UserError(f"The number of images must be at least 1; pass e.g. --images 800. Received: images={images}")
    if images > MAX_IMAGES:
        raise UserError(f"The number of images must be at most {MAX_IMAGES:,}; pass e.g. --images 800. "
                        f"Received: images={images}")
    if seed < 0 or seed > 2**32 - 1:
        raise UserError(f"The seed must be an integer from 0 to 4294967295; pass e.g. --seed 0. Received: seed={seed}")
    return images, seed


def _encode(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def _claim(out: Path) -> None:
    """Make sure ``out`` is new, empty or an earlier demo-data output, and mark it as ours."""
    if out.exists() and not out.is_dir():
        raise UserError(
            f"The output must be a folder, but {out} is a file; pass a new folder path. Received: out={str(out)!r}"
        )
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER_NAME).is_file():
        raise UserError(
            f"{out} is not empty and was not written by demo-data, so it is left alone; "
            f"pass a new or empty folder. Received: out={str(out)!r}"
        )
    (out / LABELS_NAME).unlink(missing_ok=True)  # no labels file until the set is complete again
    write_json(out / MARKER_NAME, {"generator": "members.data.synthetic.write_demo_data", "complete": False})


def write_demo_data(
    out: str | Path,
    *,
    images: int = 800,
    size: int = 128,
    seed: int = 0,
    balanced: bool = False,
    progress: bool = True,
) -> DemoDataSummary:
    """Write a synthetic fundus set in the Kaggle EyePACS layout.

    Writes ``out/images/<patient>_<left|right>.jpeg``, then ``out/trainLabels.csv``
    (``image,level``, names without extension, patients in order), then
    ``out/demo-data.json`` (the arguments and counts). A labels file means a complete
    set; the same arguments give byte-identical files. An earlier demo-data output in
    ``out`` is replaced (its surplus images removed); any other non-empty folder is refused.

    Args:
        out: the folder to write (created if missing).
        images: number of photographs (>= 1); patients get both eyes, an odd count
            leaves the last patient with one eye.
        size: width and height in pixels (>= 16).
        seed: random seed (>= 0).
        balanced: equal counts per grade instead of ``GRADE_MIX``.
        progress: show a progress bar on stderr.

    Returns:
        A :class:`DemoDataSummary`.

    Raises:
        UserError: a bad argument, or ``out`` is a file or a foreign non-empty folder.

    Example:
        >>> write_demo_data("/tmp/demo", images=5, size=32, progress=False).counts
        {0: 4, 1: 0, 2: 1, 3: 0, 4: 0}
    """
    images, seed = _check_args(images, seed)
    size = _check_size(size)
    out = Path(out)
    plan = plan_images(images, seed=seed, balanced=balanced)
    start = time.perf_counter()
    _claim(out)
    columns = (TextColumn("demo-data"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), disable=not progress) as bar:
        task = bar.add_task("images", total=len(plan))
        for index, item in enumerate(plan):
            pixels = render_fundus(item.grade, size=size, rng=np.random.default_rng([seed, 1, index]), eye=item.eye)
            write_bytes(out / "images" / f"{item.name}.jpeg", _encode(pixels))
            bar.advance(task)
    names = {f"{item.name}.jpeg" for item in plan}
    for stale in (out / "images").glob("*.jpeg"):
        if stale.name not in names:
            stale.unlink()
    write_text(out / LABELS_NAME, "image,level\n" + "".join(f"{i.name},{i.grade}\n" for i in plan))
    counts = {g: sum(i.grade == g for i in plan) for g in range(NUM_GRADES)}
    meta = {"images": images, "size": size, "seed": seed, "balanced": balanced, "counts": counts}
    write_json(out / MARKER_NAME, {"generator": "members.data.synthetic.write_demo_data", "complete": True, **meta})
    return DemoDataSummary(out, len(plan), size, counts, time.perf_counter() - start)
