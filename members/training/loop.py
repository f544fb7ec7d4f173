"""One training epoch and one evaluation pass, measured.

The epoch loop pulls each batch from the tf.data iterator itself and times the pull, so
the share of step time spent waiting for input is measured, not guessed; the step is
Keras' compiled ``train_on_batch``. Evaluation predicts probabilities (optionally
averaged over flips: test-time augmentation) and scores them with ``members.scoring``.
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from members.infra.errors import UserError
from members.scoring import score


class TrainingDiverged(UserError):
    """The loss became NaN or exploded."""


@dataclass
class EpochStats:
    loss: float
    accuracy: float
    images: int
    step_seconds: float
    wait_seconds: float

    @property
    def wait_share(self) -> float:
        return self.wait_seconds / self.step_seconds if self.step_seconds > 0 else 0.0

    @property
    def images_per_second(self) -> float:
        return self.images / self.step_seconds if self.step_seconds > 0 else 0.0


def train_epoch(model, dataset: tf.data.Dataset, *, steps: int, progress=None, where: str = "") -> EpochStats:
    """Run one pass over ``dataset`` with ``train_on_batch``; stop with a clear message on NaN.

    Args:
        model: a compiled Keras model.
        dataset: batches of ``(x, y)`` or ``(x, y, sample_weight)``.
        steps: number of batches (for the progress display).
        progress: optional callable ``(done_steps, steps, loss)`` for a progress bar.
        where: words naming the epoch for the NaN message.
    """
    iterator = iter(dataset)
    wait = total = 0.0
    images = 0
    loss_sum = acc_sum = 0.0
    done = 0
    while True:
        t0 = time.perf_counter()
        try:
            batch = next(iterator)
        except StopIteration:
            break
        except tf.errors.OpError as exc:  # reading or decoding an image failed
            raise image_read_error(exc) from None
        t1 = time.perf_counter()
        x, y = batch[0], batch[1]
        w = batch[2] if len(batch) > 2 else None
        model.reset_metrics()  # per-batch figures; the epoch means are weighted by batch size below
        logs = model.train_on_batch(x, y, sample_weight=w, return_dict=True)
        t2 = time.perf_counter()
        n = int(x.shape[0])
        wait += t1 - t0
        total += t2 - t0
        images += n
        done += 1
        loss = float(logs["loss"])
        loss_sum += loss * n
        acc_sum += float(logs.get("accuracy", logs.get("sparse_categorical_accuracy", float("nan")))) * n
        if not math.isfinite(loss) or loss > 1e6:
            raise TrainingDiverged(
                f"The training loss became {loss:g} {where}; the learning rate is too high for this model. "
                f"Lower it (e.g. --lr {_lower_lr(model):.2g}) and train again."
            )
        if progress is not None:
            progress(done, steps, loss)
    return EpochStats(
        loss=loss_sum / images if images else float("nan"),
        accuracy=acc_sum / images if images else float("nan"),
        images=images, step_seconds=total, wait_seconds=wait,
    )


class ImageReadError(UserError):
    """An image listed in ``split.csv`` could not be read or decoded while training or evaluating."""


def image_read_error(exc: Exception, *, path: str | None = None, reason: str | None = None,
                     then: str = "train again") -> ImageReadError:
    """One sentence for a failed read in the input pipeline: the file changed after ``prepare``.

    Args:
        exc: TensorFlow's error (its message is cleaned of graph node names and Python tracebacks),
            or an earlier :class:`ImageReadError`, whose ``detail`` is reused.
        path, reason: the file found unreadable and why (``prepare``'s reason), when known.
        then: what to do after prepare (the command that failed, again).
    """
    detail = getattr(exc, "detail", None)
    if detail is None:
        text = str(getattr(exc, "message", exc)).split("Traceback (most recent call last)")[0]
        text = re.sub(r"\{\{function_node [^}]*\}\}", "", text).split("[[{{node")[0].split("[Op:")[0]
        detail = f"{type(exc).__name__}: {' '.join(text.split())[:300]}"
    if isinstance(exc, (tf.errors.ResourceExhaustedError, MemoryError)) or detail.startswith("ResourceExhausted"):
        error = ImageReadError(
            f"An image was too large to decode in the memory available ({detail}); downscale the largest images "
            "(to 4096 px on their longer side, say), or free memory (a smaller --batch-size, fewer members at once), "
            f"then {then}.")
        error.detail = detail
        return error
    what = (f"{path} could not be read: {reason} ({detail}); it changed after prepare checked it (or an older "
            "version of prepare let it through)" if path else
            f"An image could not be read ({detail}); the images prepare checked have changed since (a file removed, "
            "moved or corrupted)")
    error = ImageReadError(
        f"{what}. Restore it, or run `python cli.py prepare ... --force` again to re-check the images (it drops "
        f"such a file), then {then}.")
    error.detail = detail
    return error


def name_unreadable(exc: Exception, paths: Iterable[str], *, then: str = "train again") -> Exception:
    """:func:`image_read_error` naming the first of ``paths`` that prepare's own check
    (:func:`members.data.labels.check_image`) finds undecodable or missing; ``exc`` as it is when none is.

    The pipeline's error does not say which file failed (``ignore_errors`` aside, tf.data gives no name).
    """
    from members.data.integrity import REASON_DAMAGED_JPEG
    from members.data.labels import REASON_FLAT, REASON_MISSING, check_image

    if str(getattr(exc, "detail", "")).startswith("ResourceExhausted"):  # out of memory: no file is to blame
        return exc
    for path in paths:
        reason = check_image(path) if os.path.exists(path) else REASON_MISSING
        if reason and reason not in (REASON_FLAT, REASON_DAMAGED_JPEG):  # those decode: not what failed
            return image_read_error(exc, path=path, reason=reason, then=then)
    return exc


def _lower_lr(model) -> float:
    try:
        return float(model.optimizer.learning_rate.numpy()) / 10
    except Exception:  # noqa: BLE001 - only for the message
        return 0.001


FLIP_AXES = ((), (2,), (1,), (1, 2))  # test-time augmentation: identity, horizontal, vertical, both (NHWC)


def predict_probs(model, dataset: tf.data.Dataset, *, tta: bool = False) -> np.ndarray:
    """Class probabilities for every image of an (unshuffled) dataset, float64 rows summing to 1.

    The one test-time augmentation of the toolkit (training's val/test caches, ``predict``
    and ``explain`` all come here): with ``tta`` the model also sees the horizontally,
    vertically and doubly flipped images and the four probability vectors are averaged.

    Args:
        model: a Keras model taking float32 pixels 0–255.
        dataset: batches of images, or of ``(images, ...)`` tuples (only the images are used).
        tta: average over the four flips.
    """
    images_only = dataset.map(lambda x, *rest: tf.cast(x, tf.float32))
    total = None
    for axes in FLIP_AXES if tta else FLIP_AXES[:1]:
        ds = images_only.map(lambda x, a=list(axes): tf.reverse(x, axis=a)) if axes else images_only
        probs = model_outputs(model, ds)
        total = probs if total is None else total + probs
    return floored(total / (len(FLIP_AXES) if tta else 1))


PROB_FLOOR = 1e-7


def floored(probs: np.ndarray) -> np.ndarray:
    """Model outputs as the toolkit keeps them: each probability at least :data:`PROB_FLOOR`, rows renormalised to 1
    (training's caches, ``predict``, and ``import-member``'s val/test, so that a combiner meets the same numbers)."""
    probs = np.clip(probs, PROB_FLOOR, None)
    return probs / probs.sum(axis=1, keepdims=True)


def model_outputs(model, images: tf.data.Dataset) -> np.ndarray:
    """``model.predict`` over batches of images, float64; a file the input pipeline cannot read or decode raises
    :class:`ImageReadError` (name it with :func:`name_unreadable`), not TensorFlow's traceback."""
    try:
        return np.asarray(model.predict(images, verbose=0), dtype=np.float64)
    except tf.errors.OpError as exc:
        if "IteratorGetNext" not in str(exc):  # not the input pipeline
            raise
        raise image_read_error(exc) from None


def evaluate(labels: np.ndarray, probs: np.ndarray, num_classes: int) -> dict[str, float]:
    """Validation figures for the history: loss (cross-entropy), accuracy, balanced accuracy, QWK, macro-F1."""
    s = score(labels, probs, num_classes=num_classes)
    return {
        "val_loss": s["log_loss"], "val_accuracy": s["accuracy"], "val_balanced_accuracy": s["balanced_accuracy"],
        "val_qwk": s["qwk"], "val_macro_f1": s["macro_f1"],
    }


def is_terminal() -> bool:
    return sys.stderr.isatty()
