"""The workflow from Python: ``prepare``, ``train_member``, ``vote``, ``predict``, and ``compare`` for arrays.

Each verb is the CLI command of the same name, with the same checks and the same files
in the workdir; errors are :class:`members.infra.errors.UserError` with the CLI's sentence (its advice
names options: ``--keep-collapsed`` is the keyword ``keep_collapsed=True``, ``--epochs 1`` is ``epochs=1``).

Example:
    >>> from ensemble.api import prepare, train_member, vote, predict      # doctest: +SKIP
    >>> prepare("work", images="fundus/")                                 # doctest: +SKIP
    >>> train_member("work", "small", name="a", epochs=2)                 # doctest: +SKIP
    >>> train_member("work", "wide", name="b")                            # doctest: +SKIP
    >>> report = vote("work", methods=["soft", "stack"])                  # doctest: +SKIP
    >>> predict("work", ["eye.jpeg"]).classes                             # doctest: +SKIP
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ensemble.importer import import_member
from members.infra.errors import UserError

__all__ = ["prepare", "train_member", "vote", "predict", "import_member", "compare", "score"]

PathLike = str | os.PathLike


def prepare(workdir: PathLike, *, labels: PathLike | None = None, images: PathLike | None = None,
            npz: PathLike | None = None, **options: Any):
    """Prepare a workdir from a labels CSV + images folder, a folder per class, or an npz.

    Args:
        workdir: the folder to prepare.
        labels: a labels CSV (with ``images``); omit it for a folder-per-class ``images``.
        images: the image folder.
        npz: a MedMNIST-style ``.npz`` instead.
        **options: keyword options of :func:`members.data.dataset.prepare_csv` (``ordinal``,
            ``classes``, ``group_column``, ``group_pattern``, ``seed``, ``force``, ...).

    Returns:
        A :class:`members.data.dataset.PrepareResult`.
    """
    from members.data import dataset

    if npz is not None:
        if labels is not None or images is not None:
            raise UserError("Give either npz or labels/images, not both.")
        return dataset.prepare_npz(workdir, npz, **options)
    if images is None:
        raise UserError("prepare needs images (a folder), with labels (a CSV) unless it holds a folder per class.")
    if labels is None:
        return dataset.prepare_folders(workdir, images, **options)
    return dataset.prepare_csv(workdir, labels, images, **options)


def train_member(workdir: PathLike, preset: str | os.PathLike = "small", *, name: str | None = None, log=None,
                 force: bool = False, folds: int | None = None, jobs: int | None = None, **overrides: Any):
    """Train one member from a preset (or a TOML spec file) with spec fields overridden: ``train-member``.

    Args:
        workdir: a prepared workdir.
        preset: a built-in preset name or a TOML spec file.
        name: the member's folder name (default: the preset's).
        log: a callable for progress lines (default: stderr).
        force: replace a complete member of another spec (``--force``), once the new one is complete.
        folds: train a k-fold (bagged) member of ``folds`` copies with out-of-fold predictions (``--folds``).
        jobs: with ``folds``, copies trained at once (``--jobs``; default 1).
        **overrides: any :class:`members.model.spec.MemberSpec` field, e.g. ``epochs=2, input_size=64``.

    Returns:
        A :class:`members.training.trainer.TrainResult`.
    """
    from members.model.spec import resolve_spec
    from members.training.trainer import train_member as _train

    if folds is None and jobs is not None:
        raise UserError("jobs sets how many fold copies of a k-fold member train at once and needs folds=K.")
    spec = resolve_spec(preset, overrides)
    stem = Path(preset).stem
    if folds is not None:
        from members.training.folds import train_folded

        return train_folded(workdir, spec, name=name or stem, k=folds, preset=stem, jobs=1 if jobs is None else jobs,
                            log=log, force=force)
    return _train(workdir, spec, name=name or stem, preset=stem, log=log, force=force)


def vote(workdir: PathLike, *, methods: Sequence[str] = ("all",), quiet: bool = True, **options: Any) -> dict:
    """Fit the combiners on val, score everything on test, write the report; returns ``report.json``'s dict.

    Args:
        workdir: a workdir with at least two complete members.
        methods: combiner methods (a list, or one name or ``"a,b"`` as on the command line) or ``"all"``.
        quiet: do not print the table (it is still in ``ensemble/report.md``).
        **options: keyword options of :func:`ensemble.vote.run_vote` (``members``, ``select_by``, ...).
    """
    from rich.console import Console

    from ensemble.vote import run_vote

    console = Console(file=io.StringIO()) if quiet else None
    if isinstance(options.get("members"), str):  # "a,b" as on the command line, or one name
        options["members"] = [m.strip() for m in options["members"].split(",")]
    return run_vote(workdir, methods=_names(methods), console=console, **options)


def _names(values: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"soft"`` or ``"soft,stack"`` as one or several names (a string is not a sequence of one-letter names)."""
    if values is None:
        return ("all",)
    if isinstance(values, str):
        return tuple(v.strip() for v in values.split(","))
    return tuple(values)


def _paths(images: Any) -> list[str]:
    """``images`` as a list of path strings: one path, or a sequence of them; arrays are refused in one sentence."""
    if isinstance(images, (str, bytes, os.PathLike)):
        return [os.fsdecode(images)]
    if isinstance(images, np.ndarray):  # a column of paths (df.path.values, df[["path"]].values) is paths; pixels not
        texts = images.dtype.kind in "US" or (images.dtype.kind == "O" and all(
            isinstance(v, (str, bytes, os.PathLike)) for v in images.ravel().tolist()))
        items = images.ravel().tolist() if texts and images.size and (images.ndim <= 1 or images.shape[-1] == 1) \
            else [images]
    else:
        try:
            items = list(images)
        except TypeError:
            items = [images]
    for item in items:
        if not isinstance(item, (str, bytes, os.PathLike)):
            shape = f" of shape {item.shape}" if isinstance(item, np.ndarray) else ""
            raise UserError(f"predict takes image files or folders (paths); got a {type(item).__name__}{shape}. Save "
                            "pixel arrays as PNG files first (PIL.Image.fromarray(a).save('eye.png')) and pass their "
                            "paths, so that they go through the same image path as training.")
    return [os.fsdecode(p) for p in items]


def predict(workdir: PathLike, images: PathLike | Sequence[PathLike], *, method: str | None = None, tta: bool = False,
            out: PathLike | None = None, force: bool = False):
    """Grade images (files, or folders of them) with the fitted ensemble; returns a
    :class:`ensemble.inference.PredictionResult`.

    Nothing goes to stdout (the CSV is written only to ``out`` when given; an existing file there
    that is not an earlier predictions CSV is refused unless ``force``).
    """
    from ensemble.inference import predict_images

    return predict_images(workdir, _paths(images), out=out, method=method, tta=tta,
                          print_csv=False, force=force)


def score(labels: Any, probs: Any, *, pred: Any = None, num_classes: int | None = None) -> dict[str, float]:
    """Every metric of the report for one model's predictions: :func:`members.scoring.score`, after checking that
    ``probs`` are probabilities (finite, >= 0, rows summing to 1) and ``labels`` whole class numbers.

    Example:
        >>> s = score([0, 1], [[0.8, 0.2], [0.3, 0.7]])
        >>> s["accuracy"], s["auc"]
        (1.0, 1.0)
    """
    from members import scoring

    try:
        if np.ndim(labels) != 1:
            raise ValueError(f"labels must be 1-D, one class number per row; got shape {np.shape(labels)}.")
        if probs is not None:
            scoring.check_probabilities(probs)
        return scoring.score(labels, probs, pred=pred, num_classes=num_classes)
    except (ValueError, TypeError) as exc:  # text cells, ragged rows, a scalar
        raise UserError(f"score: {exc}") from None


def compare(labels: Any, probs_a: Any, probs_b: Any, *, n_boot: int = 1000, seed: int = 0,
            groups: Any = None, pred_a: Any = None, pred_b: Any = None) -> dict:
    """Score two models' probabilities on the same rows with the report's statistics.

    Args:
        labels: true classes ``(n,)``.
        probs_a: ``(n, k)`` probabilities of model A (e.g. an ensemble's ``predict_proba``).
        probs_b: ``(n, k)`` probabilities of model B (e.g. the best single member).
        n_boot: stratified bootstrap resamples (the same for both: a paired comparison).
        seed: seed of the resamples.
        groups: optional patient id per row; rows of one patient are then resampled together
            (a cluster bootstrap, as ``vote`` does on a split grouped by patient).
        pred_a, pred_b: the models' predicted classes when they are not the argmax of their probabilities (a
            ``+thr`` combiner's ``predict(P)``, whose grades come from cuts of the expected grade, as the report
            scores it); default the argmax.

    Returns:
        ``{"a": metrics, "b": metrics, "difference": metrics of A minus B, "mcnemar_p": float}``
        where each metrics maps ``accuracy``, ``balanced_accuracy``, ``macro_f1``, ``qwk``,
        ``auc``, ``log_loss``, ``ece`` to ``{"value", "ci"}`` — as in ``report.json``.

    Example:
        >>> y = np.array([0, 1, 1, 0]); a = np.eye(2)[y] * 0.8 + 0.1; b = np.full((4, 2), 0.5)
        >>> round(compare(y, a, b, n_boot=20)["a"]["accuracy"]["value"], 2)
        1.0
    """
    from ensemble import stats
    from members.scoring import check_labels, check_probabilities

    try:
        pa, pb = np.asarray(probs_a, dtype=np.float64), np.asarray(probs_b, dtype=np.float64)
        for name, p in (("probs_a", pa), ("probs_b", pb)):
            check_probabilities(p, name)
        labels = check_labels(labels, pa.shape[1])
    except (ValueError, TypeError) as exc:  # text cells, ragged rows, a scalar
        raise UserError(f"compare: {exc}") from None
    if labels.size == 0 or isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise UserError(f"compare needs at least one row and a whole n_boot >= 1; got {labels.size} rows, "
                        f"n_boot={n_boot!r}.")
    if pa.shape != pb.shape or pa.shape[0] != labels.shape[0]:
        raise UserError(f"compare needs two (n, k) probability arrays for the same n labels; got {pa.shape} and "
                        f"{pb.shape} for {labels.shape[0]} labels.")
    if groups is not None and len(groups) != len(labels):
        raise UserError(f"compare got {len(groups)} groups for {len(labels)} labels; pass one patient id per row.")
    indices = stats.bootstrap_indices(len(labels), n_boot, seed, stratify=labels, groups=groups)
    try:
        pred_a, pred_b = (pa.argmax(axis=1) if given is None else check_labels(given, pa.shape[1], name=name)
                          for given, name in ((pred_a, "pred_a"), (pred_b, "pred_b")))
    except (ValueError, TypeError) as exc:
        raise UserError(f"compare: {exc}") from None
    if len(pred_a) != len(labels) or len(pred_b) != len(labels):
        raise UserError(f"compare: pred_a and pred_b need one class per label ({len(labels)}); got {len(pred_a)} "
                        f"and {len(pred_b)}.")
    return {
        "a": stats.bootstrap_metrics(labels, pa, pred_a, indices=indices),
        "b": stats.bootstrap_metrics(labels, pb, pred_b, indices=indices),
        "difference": stats.bootstrap_difference(labels, (pa, pred_a), (pb, pred_b), indices=indices),
        "mcnemar_p": stats.mcnemar_exact(labels, pred_a, pred_b),
    }
