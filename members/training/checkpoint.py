"""The best weights so far: which epoch beats which, where its weights are, early stopping.

The monitored val metric (``spec.monitor``) picks the epoch; a tie on it (e.g. val QWK 0.000 at
every epoch of a collapsed run) goes to the lower val loss. The history row of a new best epoch gets
the note ``best <monitor>``; :func:`best_epoch` reads the choice back from the notes, so a resumed run
and ``history.csv`` agree on it. The weights are saved in the resume folder under the number of the
resume point being written (``best-<n>.weights.h5``): :mod:`members.training.resume` names the file
in its state, so a kill between the two writes leaves the previous pair whole.
"""

from __future__ import annotations

import math
from pathlib import Path

from members.training.artifacts import save_weights


def better(monitor: str, new: float, old: float | None) -> bool:
    """Whether ``new`` beats ``old`` on ``monitor`` (lower val loss, higher anything else)."""
    if old is None or not math.isfinite(old):
        return math.isfinite(new)
    return new < old if monitor == "val_loss" else new > old


def better_row(monitor: str, row: dict, best: dict | None) -> bool:
    """Whether epoch ``row`` beats the best so far: a better monitor value, or an equal one
    (e.g. val QWK 0.000 at every epoch of a collapsed run) with a lower val loss."""
    new = row[monitor]
    old = None if best is None else best.get(monitor)
    if better(monitor, new, old):
        return True
    if old is None or not (math.isfinite(new) and math.isfinite(old)) or abs(new - old) > 1e-12 or monitor == "val_loss":
        return False
    return math.isfinite(row["val_loss"]) and row["val_loss"] < best.get("val_loss", math.inf) - 1e-6


def best_epoch(history: list[dict]) -> int | None:
    """The epoch whose weights the member keeps: the last one noted best (or kept, after a retraining round)."""
    for row in reversed(history):
        if "best" in str(row.get("note", "")) or "kept" in str(row.get("note", "")):
            return int(row["epoch"])
    return None


def stale_epochs(history: list[dict]) -> int:
    """Epochs of the current stage since its best one (early stopping)."""
    if not history:
        return 0
    stage = (history[-1]["phase"], history[-1]["input_size"])
    n = 0
    for r in reversed(history):
        if (r["phase"], r["input_size"]) != stage or "best" in str(r.get("note", "")):
            break
        n += 1
    return n


class BestWeights:
    """The best epoch's weights of one run: its score, its file in the resume folder, the save counter.

    Attributes:
        folder: the resume folder the weights live in.
        monitor: the val metric that picks the epoch.
        score: the best monitor value so far (None before the first epoch).
        file: the best weights' file name in ``folder`` (None before the first epoch).
        save_no: resume points saved so far (the next best file is named after the next one).
    """

    def __init__(self, folder: Path, monitor: str):
        self.folder, self.monitor = folder, monitor
        self.score: float | None = None
        self.file: str | None = None
        self.save_no = 0

    @property
    def path(self) -> Path | None:
        """The best weights so far (None before the first epoch)."""
        return None if self.file is None else self.folder / self.file

    def save(self, model) -> None:
        """Save ``model``'s weights as the best ones, under the name of the next resume point."""
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"best-{self.save_no + 1}.weights.h5"
        save_weights(model, self.folder / name)
        self.file = name

    def offer(self, model, row: dict, history: list[dict]) -> bool:
        """Keep ``model``'s weights when epoch ``row`` (the last of ``history``) beats the best so far; notes it in the row."""
        epoch = best_epoch(history[:-1]) if history else None
        best = next((r for r in history if r["epoch"] == epoch), None) if epoch is not None else None
        if not better_row(self.monitor, row, best):
            return False
        tie = best is not None and row[self.monitor] == best[self.monitor]
        self.score = row[self.monitor]
        row["note"] = (row["note"] + "; " if row["note"] else "") + f"best {self.monitor}" + (" (tie broken by val_loss)" if tie else "")
        self.save(model)
        return True

    def keep_last(self, model, history: list[dict]) -> None:
        """``keep = "last"``: the weights at the end of the schedule are the member's; noted in its last row.

        Its monitor value becomes the score a retraining round must beat.
        """
        row = history[-1]
        self.score = row[self.monitor]
        row["note"] = (row["note"] + "; " if row["note"] else "") + "kept: last epoch (keep = last)"
        self.save(model)
