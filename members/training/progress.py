"""Progress display for training: a Rich bar on a terminal, nothing extra otherwise (the per-epoch log line stays)."""

from __future__ import annotations

import contextlib


class EpochProgress:
    """One Rich progress bar per epoch with the running loss; a no-op when disabled."""

    def __init__(self, name: str, *, enabled: bool):
        self.name = name
        self.enabled = enabled
        self._progress = None

    def __enter__(self) -> "EpochProgress":
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn(),
                console=Console(stderr=True), transient=True,
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
            self._progress = None

    @contextlib.contextmanager
    def epoch(self, epoch: int, total: int, phase: str, size: int, steps: int):
        """Yield an ``update(done, steps, loss)`` callable for one epoch."""
        if self._progress is None:
            yield None
            return
        task = self._progress.add_task(f"[{self.name}] epoch {epoch}/{total} {phase} {size}px", total=steps, loss=float("nan"))
        try:
            yield lambda done, _steps, loss: self._progress.update(task, completed=done, loss=loss)
        finally:
            self._progress.remove_task(task)
