"""What one epoch tells the user: the log line, the input-wait timing and TensorBoard's scalars.

``history.csv`` and ``curves.png`` are written from the same rows at the end
(:mod:`members.training.artifacts`); TensorBoard event files, when the spec asks for them, go to
``<member>/logs`` as Keras' callback writes them (:mod:`members.training.tensorboard`).
"""

from __future__ import annotations

from pathlib import Path


class EpochLog:
    """Records each epoch's row: the one-line log, the steady-state timing, TensorBoard.

    Attributes:
        timing: images, step and input-wait seconds after the first epoch (which fills the
            cache), and the first epoch's wait share; ``metrics.json`` reports both.
    """

    def __init__(self, name: str, total_epochs: int, log, *, tensorboard_dir: Path | None = None,
                 num_classes: int | None = None, ordinal: bool = True):
        from members.scoring import headline

        self.name, self.total_epochs, self.log = name, total_epochs, log
        # nominal classes show macro-F1 (QWK is an ordered-grade metric), two classes call QWK kappa
        key, label = headline(num_classes, ordinal=ordinal)
        self.score_key, self.score_label = f"val_{key}", f"val_{label.replace('-', '_').lower()}"
        self.tensorboard_dir = tensorboard_dir
        self._tb = None
        self.timing = {"images": 0, "step_seconds": 0.0, "wait_seconds": 0.0, "first_wait_share": None}

    def count(self, stats) -> None:
        """Count ``stats`` (a :class:`members.training.loop.EpochStats`) into :attr:`timing`."""
        t = self.timing
        if t["first_wait_share"] is None:
            t["first_wait_share"] = stats.wait_share  # first epoch: decode + cache fill
        else:
            t["images"] += stats.images
            t["step_seconds"] += stats.step_seconds
            t["wait_seconds"] += stats.wait_seconds

    def tell(self, row: dict, stats) -> None:
        """``row``'s log line, and its TensorBoard scalars when asked for."""
        if self.tensorboard_dir is not None:
            from members.training.tensorboard import TensorBoardLog

            self._tb = self._tb or TensorBoardLog(self.tensorboard_dir)
            self._tb.epoch(row)
        self.log(
            f"[{self.name}] epoch {row['epoch']}/{self.total_epochs} {row['phase']} {row['input_size']}px lr={row['lr']:.3g} "
            f"loss={stats.loss:.4f} acc={stats.accuracy:.3f} val_loss={row['val_loss']:.4f} "
            f"val_acc={row['val_accuracy']:.3f} val_bal_acc={row['val_balanced_accuracy']:.3f} "
            f"{self.score_label}={row[self.score_key]:.3f} wait={stats.wait_share:.0%} {row['seconds']:.1f}s"
        )

    def speed(self, history: list[dict]) -> dict:
        """``images_per_second`` and ``input_wait_share`` (steady state; the first epoch's when there is no other)."""
        t = self.timing
        if t["step_seconds"] > 0:
            return {"images_per_second": round(t["images"] / t["step_seconds"], 2),
                    "input_wait_share": round(t["wait_seconds"] / t["step_seconds"], 4)}
        return {"images_per_second": round(float(history[0]["images_per_second"]), 2) if history else 0.0,
                "input_wait_share": t["first_wait_share"]}
