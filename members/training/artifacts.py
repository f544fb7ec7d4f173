"""Writing a member's artifacts: history.csv, curves.png, the cached predictions, metrics.json.

Every write is atomic. ``metrics.json`` is written last by the trainer: a member without
it is incomplete and is never voted.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from members.infra import atomic

HISTORY_COLUMNS = (
    "phase", "epoch", "input_size", "lr", "loss", "accuracy", "val_loss", "val_accuracy",
    "val_balanced_accuracy", "val_qwk", "val_macro_f1", "seconds", "images_per_second", "input_wait_share", "note",
    "val_qwk_prior_matched",  # regression members only: val QWK of the scores cut at the train split's grade shares
)


def write_history(path: Path, rows: list[dict], *, ordinal: bool = True) -> None:
    """One row per epoch, the contract's columns first; ``val_qwk`` is left empty for unordered
    classes (QWK assumes ordered grades)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if k == "val_qwk" and not ordinal else f"{v:.6g}" if isinstance(v, float) else v)
                         for k, v in row.items()})
    atomic.write_text(path, buf.getvalue())


def plot_curves(path: Path, rows: list[dict], title: str, *, monitor: str | None = None, best_epoch: int | None = None,
                keep: str = "best", metric_note: str | None = None) -> None:
    """Loss, accuracy and the monitored metric per epoch (train and validation), phases marked, the
    kept epoch marked with a star and a vertical line, as a PNG.

    ``keep`` is the spec's: ``"best"`` (the epoch the monitored metric chose) or ``"last"`` (the
    last epoch, whatever the metric says: the panel then shows the metric, not a choice by it);
    ``metric_note`` is added to that panel's title (a regression member's val QWK is at its
    training cuts, before the cuts are tuned).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(1, len(rows) + 1)
    panels = [("loss", "val_loss", "loss"), ("accuracy", "val_accuracy", "accuracy")]
    if metric_note:  # a regression member's grades, and so its accuracy, are at its training cuts here too
        panels[1] = ("accuracy", "val_accuracy", "accuracy\nat the training cuts, before they are tuned")
    if monitor and monitor not in ("val_loss", "val_accuracy"):
        panels.append((None, monitor, f"{monitor} ({'monitored' if keep == 'best' else 'shown, not used to choose'})"
                       + (f"\n{metric_note}" if metric_note else "")))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8))
    for ax, (train_key, val_key, label) in zip(axes, panels):
        if train_key is not None:
            ax.plot(x, [_num(r.get(train_key)) for r in rows], "o-", label=f"train {train_key}")
        ax.plot(x, [_num(r.get(val_key)) for r in rows], "s-", label=f"val {train_key}" if train_key else val_key)
        if train_key == "accuracy":
            ax.plot(x, [r["val_balanced_accuracy"] for r in rows], "^--", label="val balanced acc.")
        if val_key == "val_qwk" and any(np.isfinite(_num(r.get("val_qwk_prior_matched"))) for r in rows):
            # a regression member's grades come from cuts tuned later: at the training cuts its QWK can sit at 0
            ax.plot(x, [_num(r.get("val_qwk_prior_matched")) for r in rows], "^--",
                    label="val QWK, cuts at the training grade shares")
        if best_epoch is not None and 1 <= best_epoch <= len(rows):
            ax.axvline(best_epoch, color="tab:red", lw=1.0, alpha=0.6)
            if val_key == (monitor or "val_loss"):
                ax.plot([best_epoch], [_num(rows[best_epoch - 1].get(val_key))], "*", color="tab:red", ms=14,
                        label=f"kept epoch {best_epoch}" + (" (the last)" if keep == "last" else " (best)"))
        previous = None
        for i, r in enumerate(rows):
            key = (r["phase"], r["input_size"])
            if previous is not None and key != previous:
                ax.axvline(i + 0.5, color="grey", lw=0.8, ls=":")
                ax.text(i + 0.6, ax.get_ylim()[1], f"{r['phase']} {r['input_size']}px", fontsize=7, va="top")
            previous = key
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)  # epochs are whole numbers
        ax.set_title(label, fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    _save_png(fig, plt, path, title)


def plot_fold_curves(path: Path, copies: list[list[dict]], title: str, *, monitor: str | None = None,
                     best_epochs: list | None = None) -> None:
    """A k-fold member's ``curves.png``: val loss and the monitored metric per epoch, one line per copy, each
    copy's kept epoch starred (each copy's own ``folds/<i>/curves.png`` has its full panels)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ["val_loss"] + ([monitor] if monitor and monitor != "val_loss" else [])
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.8), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for i, rows in enumerate(copies):
            x = np.arange(1, len(rows) + 1)
            line, = ax.plot(x, [_num(r.get(key)) for r in rows], "o-", ms=3, label=f"copy {i}")
            best = (best_epochs or [None] * len(copies))[i]
            if isinstance(best, int) and 1 <= best <= len(rows):
                ax.plot([best], [_num(rows[best - 1].get(key))], "*", color=line.get_color(), ms=13)
        ax.set_title(f"{key} (held-out fold of each copy; * kept epoch)", fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    _save_png(fig, plt, path, title)


def _save_png(fig, plt, path: Path, title: str) -> None:
    """Title, lay out and write ``fig`` as a PNG (atomically), then close it."""
    fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic.write_bytes(path, buf.getvalue())


def _num(value) -> float:
    """A float for plotting (missing or None as NaN, so a regression head's absent accuracy draws nothing)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def predictions_sha256(folder: Path) -> dict[str, str]:
    """``{"val": ..., "test": ...}``: the SHA-256 of a member's cached predictions, for ``metrics.json``
    (``vote`` refuses an npz that is not the one its member wrote)."""
    return {split: atomic.sha256_file(Path(folder) / f"{split}.npz") for split in ("val", "test")}


def save_predictions(path: Path, probs: np.ndarray, labels: np.ndarray, row_ids: np.ndarray, fingerprint: str) -> None:
    """The cached predictions that ``vote`` reads: probs float32 (rows sum to 1), labels, row ids, fingerprint."""
    probs = np.asarray(probs, dtype=np.float64)
    probs = probs / probs.sum(axis=1, keepdims=True)
    atomic.save_npz(
        path,
        probs=probs.astype(np.float32),
        labels=np.asarray(labels, dtype=np.int64),
        row_ids=np.asarray(row_ids, dtype=np.int64),
        fingerprint=np.array(fingerprint),
    )


MIN_FREE_BYTES = 16 * 2**20  # kept free beyond the estimate: the HDF5 writer must never meet a full disk


def _numel(shape) -> int:
    """Number of elements of a weight's ``shape`` (a tuple or a ``TensorShape``).

    ``math.prod(tuple(shape))``, not ``np.prod(shape)``: numpy's array coercion swallows an exception
    raised while it asks a ``TensorShape`` for its length, so a Ctrl-C landing there became a
    ``TypeError`` traceback instead of the interrupt (seen once in CI).
    """
    return math.prod(int(d) for d in tuple(shape))


def _weight_bytes(model) -> int:
    """Bytes of ``model``'s weights (float32 or what they are), plus the optimizer's variables when built."""
    total = sum(_numel(w.shape) * np.dtype(getattr(w, "dtype", "float32")).itemsize
                for w in getattr(model, "weights", []))
    optimizer = getattr(model, "optimizer", None)
    for v in getattr(optimizer, "variables", []) or []:
        try:
            total += _numel(v.shape) * 4
        except (TypeError, ValueError):
            continue
    return total


FILE_OVERHEAD = 256 * 2**10  # an HDF5 or .keras file's metadata beyond its weights (a few KiB per variable)


def ensure_free_space(folder: Path, needed: int, largest_file: int | None = None) -> None:
    """Refuse (one sentence, ENOSPC / EFBIG wording) to write ``needed`` bytes where the disk has less free,
    or a file of about ``largest_file`` bytes (default ``needed``) above the process's file-size limit
    (``ulimit -f``).

    HDF5 and zip writers may crash the process when the disk fills or the limit is reached mid-file
    (HDF5 segfaulted in its own close under ``ulimit -f``), so every model and weights file checks first.
    """
    import errno
    import os
    import shutil

    from members.infra.errors import UserError

    largest = (needed if largest_file is None else largest_file) + FILE_OVERHEAD
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        unlimited = limit == resource.RLIM_INFINITY
    except (ImportError, OSError, ValueError):  # no such limit here (Windows)
        limit, unlimited = 0, True
    if not unlimited and limit < largest:
        raise UserError(
            f"Could not write in {folder} ({os.strerror(errno.EFBIG)}: the file-size limit of this process, ulimit -f, "
            f"is {limit / 2**10:,.0f} KiB and the file needs about {largest / 2**10:,.0f} KiB); the files already "
            "written are unchanged: raise the limit (ulimit -f unlimited) and run the command again (a training run "
            "resumes after its last finished epoch).")
    folder.mkdir(parents=True, exist_ok=True)
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if free < needed + MIN_FREE_BYTES:
        raise UserError(
            f"Could not write in {folder} ({os.strerror(errno.ENOSPC)}: {free / 2**20:,.0f} MiB free, "
            f"about {(needed + MIN_FREE_BYTES) / 2**20:,.0f} MiB needed); the files already written are unchanged: "
            "free some disk space and run the command again (a training run resumes after its last finished epoch).")


def _write_model_file(path: Path, tmp: Path, save) -> None:
    """``save(tmp)``, fsync, ``os.replace(tmp, path)``; any OSError becomes a UserError and the temp file goes."""
    import os

    if tmp.name.endswith(".h5"):
        from members.infra.errors import quiet_h5py_unraisable

        quiet_h5py_unraisable()  # a failed write makes h5py print a traceback per dropped handle
    try:
        save(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if isinstance(exc, OSError) and tmp.name.endswith(".h5"):
            from members.infra.errors import hdf5_write_failed

            hdf5_write_failed()  # HDF5 keeps the broken file open: no clean interpreter shutdown after this
            exc = _plain_os_error(exc)
        atomic.discard_temp(tmp, path, exc)
        raise


def _plain_os_error(exc: OSError) -> OSError:
    """h5py's OSError carries HDF5's long multi-line text; its errno (or the one the text names) with the C library's words."""
    import os
    import re

    number = exc.errno
    if number is None and (m := re.search(r"errno = (\d+)", str(exc))):
        number = int(m.group(1))
    return exc if number is None else OSError(number, os.strerror(number))


def save_model(model, path: Path, *, stamp: dict | None = None) -> None:
    """``model.save`` to a temp ``.keras`` file beside ``path``, then ``os.replace`` (free space checked first);
    ``stamp`` (:func:`members.model.stamp.member_record`) goes into the archive, so a copy names its member."""
    def save(tmp: Path) -> None:
        model.save(tmp)
        if stamp is not None:
            from members.model.stamp import write_stamp

            write_stamp(tmp, stamp)

    ensure_free_space(path.parent, 2 * _weight_bytes(model), _weight_bytes(model))
    _write_model_file(path, path.with_name(f".{path.stem}.tmp.keras"), save)


def save_weights(model, path: Path) -> None:
    """``model.save_weights`` (HDF5) to a temp file beside ``path``, then ``os.replace`` (free space checked first)."""
    ensure_free_space(path.parent, _weight_bytes(model))
    _write_model_file(path, path.with_name(f".{path.name.removesuffix('.weights.h5')}.tmp.weights.h5"),
                      model.save_weights)
