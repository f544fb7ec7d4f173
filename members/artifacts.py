"""Writing a member's artifacts: history.csv, curves.png, the cached predictions, metrics.json.

Every write is atomic. ``metrics.json`` is written last by the trainer: a member without
it is incomplete and is never voted.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from members import atomic

HISTORY_COLUMNS = (
    "phase", "epoch", "input_size", "lr", "loss", "accuracy", "val_loss", "val_accuracy",
    "val_balanced_accuracy", "val_qwk", "val_macro_f1", "seconds", "images_per_second", "input_wait_share", "note",
)


def write_history(path: Path, rows: list[dict]) -> None:
    """One row per epoch, the contract's columns first."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic.write_text(path, buf.getvalue())


def plot_curves(path: Path, rows: list[dict], title: str) -> None:
    """Loss and accuracy per epoch (train and validation), phases shaded, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(1, len(rows) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, (train_key, val_key, label) in zip(axes, (("loss", "val_loss", "loss"),
                                                      ("accuracy", "val_accuracy", "accuracy"))):
        ax.plot(x, [r[train_key] for r in rows], "o-", label=f"train {label}")
        ax.plot(x, [r[val_key] for r in rows], "s-", label=f"val {label}")
        if label == "accuracy":
            ax.plot(x, [r["val_balanced_accuracy"] for r in rows], "^--", label="val balanced acc.")
        previous = None
        for i, r in enumerate(rows):
            key = (r["phase"], r["input_size"])
            if previous is not None and key != previous:
                ax.axvline(i + 0.5, color="grey", lw=0.8, ls=":")
                ax.text(i + 0.6, ax.get_ylim()[1], f"{r['phase']} {r['input_size']}px", fontsize=7, va="top")
            previous = key
        ax.set_xlabel("epoch")
        ax.set_title(label)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic.write_bytes(path, buf.getvalue())


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


def save_model(model, path: Path) -> None:
    """``model.save`` to a temp ``.keras`` file beside ``path``, then ``os.replace``."""
    import os

    tmp = path.with_name(f".{path.stem}.tmp.keras")
    model.save(tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
