"""``explain``: Grad-CAM heatmaps of where each member looked, and the ensemble's, one PNG per image.

A member's heatmap is Grad-CAM (Selvaraju et al., 2017) on its last convolutional block:
the block's feature maps weighted by the spatial mean of the gradient of the log
probability of the explained grade, summed over channels, ReLU. The block is found
generically — the last layer with a 4-D output that is not a pooling layer and is computed
from a convolution, descending into a nested model (a Keras application backbone, a
Sequential block) when that is the last one — so it works for the built-in ``convnet`` and
``article`` nets, application backbones and imported functional or Sequential models alike.
A Sequential is traced through a functional copy of its layer stack (same layers, same
weights), since its layers' remembered outputs need not be connected to its inputs. A member
without convolution, or without a gradient from its output to that block, is refused in one
sentence naming it.

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

import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from members.infra.atomic import read_json, read_only
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
        withheld: the grade is withheld (ungradable, or unlike the training images): the panels show the
            photograph and the reason, no map (a map of an image the members never saw reads as a finding).
    """

    path: str
    image: np.ndarray
    titles: list[str]
    heatmaps: np.ndarray
    withheld: bool = False


# ---- Grad-CAM ----------------------------------------------------------------------------
def _node_of(tensor):
    """The graph node that made a symbolic tensor."""
    operation, index, _ = tensor._keras_history
    return operation._inbound_nodes[index]


def _connected(model):
    """``model`` as a functional graph whose every layer output is connected to its inputs.

    A ``Sequential`` is rebuilt from a fresh ``keras.Input`` by calling its layers in order (same
    layers, same weights): the outputs its layers remember may belong to an earlier build that is
    not connected to ``model.inputs``, so a sub-model cut from them has no gradient or no path.
    """
    import keras

    if not isinstance(model, keras.Sequential):
        return model
    spec = model.inputs[0]
    x = inputs = keras.Input(batch_shape=tuple(spec.shape), dtype=spec.dtype)
    for layer in model.layers:
        x = layer(x)
    return keras.Model(inputs, x, name=model.name)


def _nodes(graph) -> list:
    """The nodes of a functional graph, each after the nodes that feed it (iterative: deep nets are deep)."""
    order, seen = [], set()
    stack = [(_node_of(t), False) for t in reversed(graph.outputs)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
        elif id(node) not in seen:
            seen.add(id(node))
            stack.append((node, True))
            stack.extend((_node_of(t), False) for t in reversed(node.input_tensors))
    return order


def _is_conv(layer) -> bool:
    """A convolutional-family layer (Conv*, DepthwiseConv, SeparableConv, ConvLSTM) or a block holding one."""
    flatten = getattr(layer, "_flatten_layers", None)
    subs = list(flatten(include_self=True, recursive=True)) if flatten else [layer, *getattr(layer, "layers", [])]
    return any("conv" in type(sub).__name__.lower() for sub in subs)


def _is_4d_feature(node) -> bool:
    outs = node.output_tensors
    name = type(node.operation).__name__.lower()
    return len(outs) == 1 and len(outs[0].shape) == 4 and not any(w in name for w in POOLING_WORDS) \
        and name != "inputlayer"


@dataclass
class _Target:
    """Where Grad-CAM reads feature maps: ``node`` of ``graph`` (the connected form of ``model``);
    ``inner`` when the maps are inside the nested model that ``node`` calls."""

    model: object
    graph: object
    node: object
    inner: _Target | None = None

    def innermost(self) -> _Target:
        return self.inner.innermost() if self.inner is not None else self


def _locate(model, upstream_conv: bool = False) -> _Target | None:
    """The last 4-D non-pooling output that depends on a convolution, inside a nested model when that is last."""
    import keras

    graph = _connected(model)
    from_conv: dict[int, bool] = {}
    nodes = _nodes(graph)
    for node in nodes:
        parents = [from_conv[id(_node_of(t))] for t in node.input_tensors]
        from_conv[id(node)] = _is_conv(node.operation) or any(parents) or (not parents and upstream_conv)
    for node in reversed(nodes):
        op = node.operation
        if isinstance(op, keras.Model) and len(node.input_tensors) == 1 and len(node.output_tensors) == 1:
            inner = _locate(op, any(from_conv[id(_node_of(t))] for t in node.input_tensors))
            if inner is not None:
                return _Target(model, graph, node, inner)
        if from_conv[id(node)] and _is_4d_feature(node):
            return _Target(model, graph, node)
    return None


def _no_conv(model, member: str | None) -> UserError:
    who = f"Member {member!r}" if member else f"Model {model.name!r}"
    return UserError(f"{who} has no convolutional layer (no 4-D feature map computed from a convolution), so "
                     "Grad-CAM cannot explain it; explain works on convolutional members only, so vote again "
                     "with --members leaving it out to explain the others.")


def conv_target(model, member: str | None = None) -> tuple[object | None, object]:
    """``(nested model or None, layer)``: the last 4-D non-pooling output computed from a convolution.

    Looks inside a nested model (a Keras application backbone, a Sequential block) when that is
    last, down to the innermost one. Layers before the first convolution (``Rescaling``,
    ``Normalization``, augmentation, the input) never count, so a model without convolution has
    no target.

    Raises:
        UserError: the model has no convolutional feature map (not a convolutional network).
    """
    found = _find(model, member)
    last = found.innermost()
    return (last.model if last is not found else None), last.node.operation


def _find(model, member: str | None) -> _Target:
    """:func:`_locate`, or the one-sentence refusal naming the member."""
    try:
        found = _locate(model)
    except (AttributeError, ValueError) as exc:  # e.g. a Sequential that was never built, a subclassed model
        who = member if member else model.name
        why = str(exc).splitlines()[0][:160].rstrip(".") if str(exc) else "no detail"
        raise UserError(f"Grad-CAM cannot trace member {who!r} from its input to its output "
                        f"({type(exc).__name__}: {why}), so explain cannot draw its heatmap; vote again with "
                        "--members leaving it out to explain the others.") from None
    if found is None:
        raise _no_conv(model, member)
    return found


def _features(target: _Target):
    """A function ``images -> (feature maps, output)`` through ``target``."""
    import keras

    graph, node = target.graph, target.node
    if target.inner is None:
        both = keras.Model(graph.inputs, [node.output_tensors[0], graph.outputs[0]])
        return lambda x: both(x, training=False)
    inner = _features(target.inner)
    start, end = node.input_tensors[0], node.output_tensors[0]
    pre = None if start is graph.inputs[0] else keras.Model(graph.inputs, start)
    post = None if end is graph.outputs[0] else keras.Model(end, graph.outputs[0])

    def run(x):
        feats, out = inner(x if pre is None else pre(x, training=False))
        return feats, (out if post is None else post(out, training=False))

    return run


def _forward(model, member: str | None = None):
    """A function ``images -> (feature maps, probabilities)`` through the layer :func:`conv_target` finds.

    Its ``layer`` attribute names that layer and ``member`` the member, for :func:`gradcam`'s messages.

    Raises:
        UserError: no convolutional feature map, or none that can be traced from the input to the output.
    """
    who = member if member else model.name
    found = _find(model, member)
    try:
        run = _features(found)
    except ValueError:  # the nested model is bypassed by a skip connection: explain at its output instead
        if not _is_4d_feature(found.node):
            raise UserError(f"Grad-CAM cannot trace member {who!r}'s feature maps inside "
                            f"{found.node.operation.name!r} to its output (a connection bypasses that nested "
                            "model), so explain cannot draw its heatmap; vote again with --members leaving it "
                            "out to explain the others.") from None
        found = _Target(found.model, found.graph, found.node)
        run = _features(found)

    def forward(x):
        return run(x)

    forward.layer = found.innermost().node.operation.name
    forward.member = who
    return forward


def gradcam(model, images, grades: Sequence[int], *, forward=None) -> np.ndarray:
    """Grad-CAM of ``grades`` (one per image) for a batch of images (0–255): ``(n, size, size)``, unscaled, >= 0.

    Args:
        model: a member network (float32 pixels in, probabilities out).
        images: ``(n, size, size, 3)`` batch, as the member sees it.
        grades: the class explained for each image.
        forward: a cached :func:`_forward` of ``model`` (built when omitted).

    Raises:
        UserError: the output has no gradient with respect to the feature maps (see :func:`_forward` too).

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
        tape.watch(x)  # feature maps of frozen (non-trainable) layers are traced too
        feats, probs = forward(x)
        picked = tf.gather(probs, tf.constant(list(grades), tf.int32), axis=1, batch_dims=1)
        score = tf.math.log(tf.maximum(tf.cast(picked, tf.float32), 1e-12))
    grads = tape.gradient(score, feats)
    if grads is None:
        who = getattr(forward, "member", model.name)
        layer = getattr(forward, "layer", "its last convolutional block")
        raise UserError(f"Member {who!r} gives no gradient from its output back to its layer {layer!r} (the "
                        "output does not depend on it differentiably, e.g. an argmax or stop_gradient in between), "
                        "so Grad-CAM cannot explain it; vote again with --members leaving it out to explain "
                        "the others.")
    weights = tf.reduce_mean(tf.cast(grads, tf.float32), axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * tf.cast(feats, tf.float32), axis=-1))
    cam = tf.image.resize(cam[..., None], [size, size], method="bilinear")[..., 0]
    return cam.numpy()


def _unit(maps: np.ndarray) -> np.ndarray:
    """Each map over its maximum (an all-zero map stays zero)."""
    top = maps.reshape(len(maps), -1).max(axis=1)
    return maps / np.where(top > 0, top, 1.0)[:, None, None]


def _scaled(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each map over its maximum, and which maps are uniform: ``(scaled, uniform (n,) bool)``.

    A uniform positive map (a last feature map of 1×1, e.g. an EfficientNet at 32 px, resized) says nothing
    about where the member looked; scaled to 1 it would be drawn as a solid finding, so it is drawn empty.
    """
    flat = maps.reshape(len(maps), -1)
    top, low = flat.max(axis=1), flat.min(axis=1)
    uniform = (top > 0) & (top - low <= 1e-6 * top)
    scaled = _unit(maps)
    scaled[uniform] = 0.0
    return scaled, uniform


# ---- geometry: where each member's square lies on the photograph --------------------------
def _display(path: str, variants: Sequence[tuple[int, str, bool]]):
    """The photograph at display scale and, per variant, its square window ``(top, left, side)`` on it."""
    import tensorflow as tf

    from members.data.fundus import fundus_box
    from members.data.pipeline import decode, orientation_table, upright

    name = tf.constant(os.fsencode(path))  # bytes: a file name in any encoding reaches the file system as it is
    image = decode(tf.io.read_file(name), DISPLAY_SIZE)
    image = upright(image, name, orientation_table([path]))  # as the members saw it
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


def _label(classes: Sequence, grade: int, ordinal: bool = True) -> str:
    """``grade 3`` for graded classes, ``class 3`` for unordered integer classes, the class name for named ones."""
    name = classes[grade] if grade < len(classes) else grade
    return name if isinstance(name, str) else f"{'grade' if ordinal else 'class'} {name}"


def _taken_names(folder: Path, inputs: Sequence[str]) -> set[str]:
    """Stems in ``folder`` that a heatmap must not replace: every ``.png`` this toolkit did not write (a
    photograph, another program's figure), every input image and every read-only one (write-protected to be kept;
    the heatmap goes to ``<stem>-2.png``). An earlier explain PNG is replaced."""
    from PIL import Image

    from ensemble.inference import _resolved
    from ensemble.plots import SOFTWARE

    taken = set()
    for png in folder.glob("*.png"):
        try:
            with Image.open(png) as im:
                ours = im.info.get("Software") == SOFTWARE and png.resolve() not in {_resolved(p) for p in inputs}
        except Exception:  # noqa: BLE001 - unreadable: not ours
            ours = False
        if not ours or read_only(png):
            taken.add(png.stem)
    return taken


def explain_images(workdir: str | Path, paths: str | Sequence[str], out: str | Path, *, method: str | None = None,
                   tta: bool = False, print_paths: bool = True, recursive: bool = False) -> list[Path]:
    """Write ``out/<image stem>.png`` per readable image: the photograph, each member's heatmap, the ensemble's.

    Args:
        workdir: a workdir where ``vote`` has run.
        paths: image files (one path, or a list of them); unreadable ones are listed on stderr and skipped.
        out: the folder for the PNGs (created when missing).
        method: the fitted combiner whose grade and weights are shown (default: the report's best).
        tta: score members over four flips (members trained with TTA always are).
        print_paths: print each input and its figure on stdout (the Python API turns it off).
        recursive: explain the files of a folder's sub-folders too, at any depth (as ``predict --recursive``).

    Returns:
        The PNGs written, in the order of the readable images.

    Raises:
        UserError: no fitted ensemble, ``out`` is a file, or no readable image.
    """
    from ensemble.inference import (
        _combine,
        _report_skipped,
        check_file,
        image_batches,
        load_ensemble,
        member_probs,
        member_variant,
        expand_folders,
        settle_skipped,
        warn_of,
        with_tta,
    )
    from ensemble.plots import _pyplot, _save

    from ensemble.api import image_paths
    from ensemble.inference import require_report

    require_report(Path(workdir))  # before the folders are listed
    paths = expand_folders(image_paths(paths, "explain"), recursive=recursive)  # a path is one image, not one per character
    if not paths:
        raise UserError("No image given; pass one or more image files (or folders of them). Received: paths=[]")
    ens = with_tta(load_ensemble(workdir, method), tta)  # predict's review and referable rules, --tta included
    dataset = read_json(Path(workdir) / "dataset.json") if (Path(workdir) / "dataset.json").is_file() else {}
    classes, ordinal = list(dataset.get("classes", [])), dataset.get("ordinal", True) is not False
    weights = combiner_weights(ens.combiner, len(ens.members))
    skipped = {p: why for p in paths if (why := check_file(p, recursive=recursive)) is not None}
    candidates = [p for p in paths if p not in skipped]
    if not candidates:
        settle_skipped(paths, candidates, [], skipped)  # refuses, naming each input, before a folder is made
    from ensemble.inference import (printable_path, refuse_other_workdir, refuse_replaced_folder, refuse_the_source,
                                    screen_notes)

    refuse_replaced_folder(Path(out), Path(workdir), "heatmaps")
    refuse_other_workdir(Path(out), Path(out).resolve(), Path(workdir), "explain")
    refuse_the_source(Path(out), Path(out).resolve(), Path(workdir))  # heatmaps are no training images
    forwards = [[_forward(c, m.name) for c in _copies(m.model)] for m in ens.members]  # refuses before a folder
    made = not Path(out).exists()
    folder = _out_folder(out)
    variants = list(dict.fromkeys(member_variant(m) for m in ens.members))
    slot = [variants.index(member_variant(m)) for m in ens.members]
    written: list[Path] = []
    withheld = 0
    used_names = _taken_names(folder, candidates)  # never replace a photograph or another program's PNG
    done = set()
    for indices, batches in image_batches(candidates, variants, batch_size=16) if candidates else []:
        P = np.stack([member_probs(m.model, batches[slot[j]], tta=tta or m.tta) for j, m in enumerate(ens.members)])
        ens_probs = np.asarray(ens.combiner.predict_proba(P), dtype=np.float64)
        ens_grades = np.asarray(ens.combiner.predict(P), dtype=np.int64)
        own, for_ensemble, uniform = [], [], []
        for j, m in enumerate(ens.members):
            grades = P[j].argmax(axis=1)
            mine, uniform_j = _scaled(_cam(m.model, batches[slot[j]], grades, forwards[j]))
            own.append(mine)
            uniform.append(uniform_j)
            for_ensemble.append(mine if np.array_equal(grades, ens_grades) else
                                _scaled(_cam(m.model, batches[slot[j]], ens_grades, forwards[j]))[0])
        rows = indices.numpy().tolist()
        notes = screen_notes(ens, [candidates[i] for i in rows])  # predict's screen: no grade to read off them
        calls = _combine(ens, [candidates[i] for i in rows], P, {}, notes=notes)  # predict's review and referable
        for row, i in enumerate(rows):
            done.add(i)
            image, windows = _display(candidates[i], variants)
            shape = image.shape[:2]
            maps = [_paste(own[j][row], windows[slot[j]], shape) for j in range(len(ens.members))]
            combined = sum(weights[j] * _paste(for_ensemble[j][row], windows[slot[j]], shape)
                           for j in range(len(ens.members)))
            cover = sum(_paste(np.ones_like(own[j][row]), windows[slot[j]], shape) for j in range(len(ens.members)))
            diffuse = [*(_diffuse(own[j][row]) for j in range(len(ens.members))), _diffuse(combined[cover > 0])]
            g = int(ens_grades[row])
            if notes[row]:  # ungradable or unlike the training images: the maps, but no grade
                withheld += 1
                why = notes[row].split(":")[0]
                titles = [f"{m.name}: grade withheld" for m in ens.members]
                titles.append(f"ensemble ({ens.method}): withheld, {why}")
            else:
                titles = [f"{m.name}: {_label(classes, int(P[j, row].argmax()), ordinal)} (p={P[j, row].max():.2f})"
                          for j, m in enumerate(ens.members)]
                top = int(ens_probs[row].argmax())
                likeliest = ("" if top == g else  # a combiner with thresholds grades another than its likeliest
                             f"; its most probable {_label(classes, top, ordinal)}, p={ens_probs[row, top]:.2f}")
                titles.append(f"ensemble ({ens.method}): {_label(classes, g, ordinal)} (p={ens_probs[row, g]:.2f}"
                              f"{likeliest})\n{call_line(ens, calls, row)}")
                word = "grade" if ordinal and not any(isinstance(c, str) for c in classes) else "class"
                titles = [t + (f"\n({COARSE_NOTE})" if flat else f"\n({EMPTY_NOTE.format(word=word)})"
                               if not heat.any() else f"\n({DIFFUSE_NOTE})" if spread else "")
                          for t, heat, flat, spread in zip(titles, [*maps, combined],
                                                           [*(u[row] for u in uniform), all(u[row] for u in uniform)],
                                                           diffuse)]
            explanation = Explanation(candidates[i], image, titles, np.stack([*maps, combined]),
                                      withheld=bool(notes[row]))
            name = _unique(Path(candidates[i]).stem, used_names)
            written.append(_save(plot_explanation(explanation, _pyplot()), folder / f"{name}.png"))
            if print_paths:
                print(f"{printable_path(candidates[i])}\t{printable_path(str(written[-1]))}", flush=True)  # input → figure
    if not done and made:  # nothing decoded: leave no empty folder behind
        shutil.rmtree(folder, ignore_errors=True)
    settle_skipped(paths, candidates, sorted(done), skipped, variants)
    _report_skipped(skipped)
    if withheld:
        print(f"Note: {withheld} image(s) are ungradable or unlike the training images: their figures show the "
              "photograph and the reason, no map and no grade (predict withholds their grades too and says why in its "
              "note column).", file=sys.stderr)
    warn_of(ens)  # collapsed members voted anyway, a combiner below the majority class
    print(f"Explained {len(written)} image(s) with {ens.method} over {len(ens.members)} members → {folder}; "
          f"skipped {len(skipped)}.", file=sys.stderr)
    return written


def _copies(model) -> list:
    """The networks behind a member: its K copies for a k-fold member (``members.training.folds.AveragedModel``), else itself."""
    return list(getattr(model, "models", [model]))


def _cam(model, images, grades, forwards) -> np.ndarray:
    """Grad-CAM of one member; a k-fold member's is the mean of its copies' (each copy's map scaled alike)."""
    return np.mean([_unit(gradcam(c, images, grades, forward=f)) for c, f in zip(_copies(model), forwards)], axis=0)


def _unique(stem: str, used: set[str]) -> str:
    name, k = stem, 1
    while name in used:
        k += 1
        name = f"{stem}-{k}"
    used.add(name)
    return name


COARSE_NOTE = "no map: its last feature map is too coarse at this input size to show where it looked"
EMPTY_NOTE = "blank map: no region of the image supports this {word}"
DIFFUSE_SHARE = 0.6
"""A map is diffuse when nine tenths of it reach this share of its maximum: scaled to that maximum, it colours the
whole photograph alike, and no region stands out."""
DIFFUSE_NOTE = "diffuse: no region stands out"
HEAT_LABEL = ("Grad-CAM: how much a region supports the grade (class) in the panel's title: 0 none, 1 the most in that "
              "map.\nEach member's map is scaled to its own maximum, so a faint map looks as strong as a clear one; "
              "the ensemble's is their weighted mean.")


def _diffuse(values: np.ndarray) -> bool:
    """Whether a map (its values over the square it covers) is diffuse (:data:`DIFFUSE_SHARE`)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    top = values.max(initial=0.0)
    return bool(top > 0 and np.percentile(values, 10) >= DIFFUSE_SHARE * top)


def call_line(ens, calls, row: int) -> str:
    """The ensemble's review and referable (two classes: positive) call on row ``row`` of ``calls`` (a
    :class:`ensemble.inference.PredictionResult`), as ``predict``'s columns give them."""
    from ensemble.inference import _apart

    review = f"review {int(calls.review[row])}"
    call = calls.referable_of(row)
    if call is None:  # no call for this method (or with --tta on members cached without it)
        return review
    name = calls.class_of(ens.referable_cut)
    score = f"P({name})" if ens.referable_kind == "positive_class" else f"P(grade >= {name})"
    shown, limit = _apart(float(calls.p_referable[row]), float(ens.referable_threshold))
    return f"{calls.summary_columns[1]} {int(call)}: {score} {shown} {'>=' if call else '<'} {limit}; {review}"


def plot_explanation(e: Explanation, plt):
    """The figure: the photograph, then one heatmap overlay per member and the ensemble's, with a colour key.

    Every title is shown whole (the figure grows with the longest); a withheld grade's panels show the
    photograph and the reason only (see :class:`Explanation`).
    """
    import textwrap

    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    from members.infra.csvsafe import printable  # a name that is not UTF-8: its bytes as \xNN, as stdout shows it

    def wrapped(text: str) -> str:  # a panel is ~3 inches wide: a withheld grade's reason ran off the figure
        return "\n".join(textwrap.wrap(text, 34, break_long_words=True)) or text

    titles = [wrapped(printable(Path(e.path).name)), *("\n".join(wrapped(part) for part in t.split("\n")) for t in e.titles)]
    lines = max(len(t.splitlines()) for t in titles)
    panels = len(titles)
    key = 0 if e.withheld else 0.7  # the colour key and its two-line label
    fig, axes = plt.subplots(1, panels, figsize=(3.2 * panels, 3.5 + 0.2 * lines + key), squeeze=False,
                             layout="constrained")
    fig.get_layout_engine().set(h_pad=0.08)  # the default 0.04 in let a four-line title touch the top edge
    axes = axes[0]
    for i, (ax, title) in enumerate(zip(axes, titles)):
        ax.imshow(e.image)
        if i and not e.withheld:
            ax.imshow(e.heatmaps[i - 1], cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    if not e.withheld:
        # the key's thickness is its length / aspect: kept about 0.2 in, whatever the number of panels it spans
        # (aspect 40 over ten panels made it 0.4 in thick and pushed the ensemble's title off the top)
        key = fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), cmap="jet"), ax=list(axes[1:]), location="bottom",
                           shrink=0.6, aspect=max(40, 10 * (panels - 1)), pad=0.02)
        key.set_label(HEAT_LABEL, fontsize=8)
        key.ax.tick_params(labelsize=7)
    return fig  # laid out when saved (plots._save), where a glyph the font lacks is drawn as a box, silently
