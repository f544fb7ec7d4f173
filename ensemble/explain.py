"""``explain``: Grad-CAM heatmaps of where each member looked, and the ensemble's, one PNG per image.

A member's heatmap is Grad-CAM (Selvaraju et al., 2017) on its last convolutional block:
the block's feature maps weighted by the spatial mean of the gradient of the log
probability of the explained grade, summed over channels, ReLU. The block is found
generically — the last layer with a 4-D output that is not a pooling layer, descending into
a nested model (a Keras application backbone) when that is the last one — so it works for
the built-in ``convnet`` and ``article`` nets and for application backbones alike.

Each image goes through :func:`ensemble.inference.image_batches`, the image path of
``predict`` and training, and each member is scored as ``predict`` scores it (TTA as
trained). A member's panel explains its own grade; the ensemble's panel is the members'
heatmaps for the *ensemble's* grade, each scaled to a maximum of 1 and averaged with the
combiner's per-member weights (``weights_`` of ``ensemble/combiners/<method>.json``;
equal weights for a combiner without them, e.g. stacking). Heatmaps are drawn over the
whole photograph: each member's square (centre crop or fundus crop) is placed where it was
cut from.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from members.infra.atomic import read_json
from members.infra.errors import UserError

DISPLAY_SIZE = 320  # the photograph's longer side in the figure (reduced-scale decode)
POOLING_WORDS = ("pooling", "flatten")


@dataclass
class Explanation:
    """The heatmaps of one image.

    Attributes:
        path: the image file.
        image: ``uint8`` (h, w, 3), the photograph as displayed.
        titles: one per panel after the photograph: each member, then the ensemble.
        heatmaps: ``(members + 1, h, w)`` float in [0, 1] over ``image``; the last is the ensemble's.
    """

    path: str
    image: np.ndarray
    titles: list[str]
    heatmaps: np.ndarray


# ---- Grad-CAM ----------------------------------------------------------------------------
def _is_4d_feature(layer) -> bool:
    shape = getattr(layer, "output", None)
    shape = getattr(shape, "shape", None)
    name = type(layer).__name__.lower()
    return shape is not None and len(shape) == 4 and not any(w in name for w in POOLING_WORDS) \
        and name != "inputlayer"


def conv_target(model) -> tuple[object | None, object]:
    """``(nested model or None, layer)``: the last 4-D non-pooling output, inside a nested model when it is last.

    Raises:
        UserError: the model has no 4-D feature layer (not a convolutional network).
    """
    import keras

    for layer in reversed(model.layers):
        if isinstance(layer, keras.Model):
            inner = [sub for sub in layer.layers if _is_4d_feature(sub)]
            if inner:
                return layer, inner[-1]
        elif _is_4d_feature(layer):
            return None, layer
    raise UserError(f"Model {model.name!r} has no convolutional (4-D) layer, so Grad-CAM cannot explain it; "
                    "explain works on convolutional members only.")


def _forward(model):
    """A function ``images -> (feature maps, probabilities)`` through the layer :func:`conv_target` finds."""
    import keras

    nested, target = conv_target(model)
    if nested is None:
        both = keras.Model(model.inputs, [target.output, model.outputs[0]])
        return lambda x: both(x, training=False)
    node = nested._inbound_nodes[0]
    pre = keras.Model(model.inputs, node.input_tensors[0])
    inner = keras.Model(nested.inputs, [target.output, nested.outputs[0]])
    post = keras.Model(node.output_tensors[0], model.outputs[0])

    def run(x):
        feats, out = inner(pre(x, training=False), training=False)
        return feats, post(out, training=False)

    return run


def gradcam(model, images, grades: Sequence[int], *, forward=None) -> np.ndarray:
    """Grad-CAM of ``grades`` (one per image) for a batch of images (0–255): ``(n, size, size)``, unscaled, >= 0.

    Args:
        model: a member network (float32 pixels in, probabilities out).
        images: ``(n, size, size, 3)`` batch, as the member sees it.
        grades: the class explained for each image.
        forward: a cached :func:`_forward` of ``model`` (built when omitted).

    Example:
        >>> maps = gradcam(model, batch, [2, 0])  # doctest: +SKIP
        >>> maps.shape  # doctest: +SKIP
        (2, 64, 64)
    """
    import tensorflow as tf

    forward = forward or _forward(model)
    x = tf.cast(images, tf.float32)
    size = int(x.shape[1])
    with tf.GradientTape() as tape:
        feats, probs = forward(x)
        picked = tf.gather(probs, tf.constant(list(grades), tf.int32), axis=1, batch_dims=1)
        score = tf.math.log(tf.maximum(tf.cast(picked, tf.float32), 1e-12))
    grads = tape.gradient(score, feats)
    weights = tf.reduce_mean(tf.cast(grads, tf.float32), axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * tf.cast(feats, tf.float32), axis=-1))
    cam = tf.image.resize(cam[..., None], [size, size], method="bilinear")[..., 0]
    return cam.numpy()


def _scaled(maps: np.ndarray) -> np.ndarray:
    top = maps.reshape(len(maps), -1).max(axis=1)
    return maps / np.where(top > 0, top, 1.0)[:, None, None]


# ---- geometry: where each member's square lies on the photograph --------------------------
def _display(path: str, variants: Sequence[tuple[int, str, bool]]):
    """The photograph at display scale and, per variant, its square window ``(top, left, side)`` on it."""
    import tensorflow as tf

    from members.data.fundus import fundus_box
    from members.data.pipeline import decode

    image = decode(tf.io.read_file(path), DISPLAY_SIZE)
    h, w = int(image.shape[0]), int(image.shape[1])
    if max(h, w) > DISPLAY_SIZE:
        scale = DISPLAY_SIZE / max(h, w)
        image = tf.cast(tf.round(tf.image.resize(image, [round(h * scale), round(w * scale)], antialias=True)),
                        tf.uint8)
        h, w = int(image.shape[0]), int(image.shape[1])
    windows = []
    for _, _, crop in variants:
        if crop:
            top, left, bh, bw = (int(v) for v in fundus_box(image))
            side = max(bh, bw)
            windows.append((top - (side - bh) // 2, left - (side - bw) // 2, side))
        else:
            side = min(h, w)
            windows.append(((h - side) // 2, (w - side) // 2, side))
    return image.numpy(), windows


def _paste(heat: np.ndarray, window: tuple[int, int, int], shape: tuple[int, int]) -> np.ndarray:
    """A member's square heatmap placed on the photograph's frame (zero outside its square)."""
    import tensorflow as tf

    top, left, side = window
    big = tf.image.resize(heat[..., None], [side, side], method="bilinear")[..., 0].numpy()
    canvas = np.zeros(shape, np.float32)
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + side, shape[0]), min(left + side, shape[1])
    if y1 > y0 and x1 > x0:
        canvas[y0:y1, x0:x1] = big[y0 - top:y1 - top, x0 - left:x1 - left]
    return canvas


# ---- the verb ------------------------------------------------------------------------------
def combiner_weights(combiner, n_members: int) -> np.ndarray:
    """The combiner's per-member weights (``weights_``), normalised; equal weights when it has none."""
    w = getattr(combiner, "weights_", None)
    w = np.asarray(w, dtype=np.float64).ravel() if w is not None else np.ones(n_members)
    if w.shape != (n_members,) or not np.isfinite(w).all() or w.sum() <= 0:
        w = np.ones(n_members)
    return w / w.sum()


def _out_folder(out: str | Path) -> Path:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; explain writes one PNG per image into a folder. "
                        f"Pass a folder path (it is created when missing). Received: out={out}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"Cannot create the output folder {out} ({exc.strerror}); pass a writable folder. "
                        f"Received: out={out}") from None
    return out


def _label(classes: Sequence, grade: int) -> str:
    """``grade 3`` for graded classes, the class name for named ones."""
    name = classes[grade] if grade < len(classes) else grade
    return name if isinstance(name, str) else f"grade {name}"


def explain_images(workdir: str | Path, paths: Sequence[str], out: str | Path, *, method: str | None = None,
                   tta: bool = False) -> list[Path]:
    """Write ``out/<image stem>.png`` per readable image: the photograph, each member's heatmap, the ensemble's.

    Args:
        workdir: a workdir where ``vote`` has run.
        paths: image files; unreadable ones are listed on stderr and skipped.
        out: the folder for the PNGs (created when missing).
        method: the fitted combiner whose grade and weights are shown (default: the report's best).
        tta: score members over four flips (members trained with TTA always are).

    Returns:
        The PNGs written, in the order of the readable images.

    Raises:
        UserError: no fitted ensemble, ``out`` is a file, or no readable image.
    """
    from ensemble.inference import (
        _report_skipped,
        check_file,
        image_batches,
        load_ensemble,
        member_probs,
        member_variant,
        expand_folders,
        settle_skipped,
    )
    from ensemble.plots import _pyplot, _save

    paths = expand_folders([str(p) for p in paths])
    if not paths:
        raise UserError("No image given; pass one or more image files (or folders of them). Received: paths=[]")
    ens = load_ensemble(workdir, method)
    classes = list((read_json(Path(workdir) / "dataset.json") if (Path(workdir) / "dataset.json").is_file()
                    else {}).get("classes", []))
    weights = combiner_weights(ens.combiner, len(ens.members))
    skipped = {p: why for p in paths if (why := check_file(p)) is not None}
    candidates = [p for p in paths if p not in skipped]
    if not candidates:
        settle_skipped(paths, candidates, [], skipped)  # refuses, naming each input, before a folder is made
    made = not Path(out).exists()
    folder = _out_folder(out)
    variants = list(dict.fromkeys(member_variant(m) for m in ens.members))
    slot = [variants.index(member_variant(m)) for m in ens.members]
    forwards = [[_forward(c) for c in _copies(m.model)] for m in ens.members]
    written: list[Path] = []
    used_names: set[str] = set()
    done = set()
    for indices, batches in image_batches(candidates, variants, batch_size=16) if candidates else []:
        P = np.stack([member_probs(m.model, batches[slot[j]], tta=tta or m.tta) for j, m in enumerate(ens.members)])
        ens_probs = np.asarray(ens.combiner.predict_proba(P), dtype=np.float64)
        ens_grades = np.asarray(ens.combiner.predict(P), dtype=np.int64)
        own, for_ensemble = [], []
        for j, m in enumerate(ens.members):
            grades = P[j].argmax(axis=1)
            own.append(_scaled(_cam(m.model, batches[slot[j]], grades, forwards[j])))
            for_ensemble.append(own[-1] if np.array_equal(grades, ens_grades) else
                                _scaled(_cam(m.model, batches[slot[j]], ens_grades, forwards[j])))
        for row, i in enumerate(indices.numpy().tolist()):
            done.add(i)
            image, windows = _display(candidates[i], variants)
            shape = image.shape[:2]
            maps = [_paste(own[j][row], windows[slot[j]], shape) for j in range(len(ens.members))]
            combined = sum(weights[j] * _paste(for_ensemble[j][row], windows[slot[j]], shape)
                           for j in range(len(ens.members)))
            titles = [f"{m.name}: {_label(classes, int(P[j, row].argmax()))} (p={P[j, row].max():.2f})"
                      for j, m in enumerate(ens.members)]
            g = int(ens_grades[row])
            titles.append(f"ensemble ({ens.method}): {_label(classes, g)} (p={ens_probs[row, g]:.2f})")
            explanation = Explanation(candidates[i], image, titles, np.stack([*maps, combined]))
            name = _unique(Path(candidates[i]).stem, used_names)
            written.append(_save(plot_explanation(explanation, _pyplot()), folder / f"{name}.png"))
    if not done and made:  # nothing decoded: leave no empty folder behind
        shutil.rmtree(folder, ignore_errors=True)
    settle_skipped(paths, candidates, sorted(done), skipped)
    _report_skipped(skipped)
    print(f"Explained {len(written)} image(s) with {ens.method} over {len(ens.members)} members → {folder}; "
          f"skipped {len(skipped)}.", file=sys.stderr)
    return written


def _copies(model) -> list:
    """The networks behind a member: its K copies for a k-fold member (``members.training.folds.AveragedModel``), else itself."""
    return list(getattr(model, "models", [model]))


def _cam(model, images, grades, forwards) -> np.ndarray:
    """Grad-CAM of one member; a k-fold member's is the mean of its copies' (each copy's map scaled alike)."""
    return np.mean([_scaled(gradcam(c, images, grades, forward=f)) for c, f in zip(_copies(model), forwards)], axis=0)


def _unique(stem: str, used: set[str]) -> str:
    name, k = stem, 1
    while name in used:
        k += 1
        name = f"{stem}-{k}"
    used.add(name)
    return name


def plot_explanation(e: Explanation, plt):
    """The figure: the photograph, then one heatmap overlay per member and the ensemble's."""
    panels = 1 + len(e.titles)
    fig, axes = plt.subplots(1, panels, figsize=(3.2 * panels, 3.6), squeeze=False)
    axes = axes[0]
    axes[0].imshow(e.image)
    axes[0].set_title(Path(e.path).name, fontsize=9)
    for ax, title, heat in zip(axes[1:], e.titles, e.heatmaps):
        ax.imshow(e.image)
        ax.imshow(heat, cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0)
        ax.set_title(title, fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    return fig
