"""Resume points: after every epoch, enough to go on after a kill from the next epoch.

The model, its optimizer state, the learning-rate schedule, the best weights and the history go on
where they stopped; the shuffle order and augmentation draws of the remaining epochs start afresh
(the pipeline's random state is not saved), so a resumed member is as good as, not bit-identical to,
one never interrupted.

A resume point is the model with its optimizer state (``last-<n>.keras``), the best weights so far
(:class:`members.training.checkpoint.BestWeights`, ``best-<n>.weights.h5`` when that epoch was the
best) and ``state.json``, written last and atomically, which names both files and holds the history,
the timing and the stage. A kill at any moment leaves the previous resume point whole; files that no
state names any more are deleted after each save. A resume point of another spec or data set, or an
unreadable one, is dropped with a log line, and training starts over (a field the saved spec lacks, written by an
older version, counts as its default); one whose spec differs only in
:data:`members.model.spec.RUNTIME_FIELDS` (the cache, TensorBoard logs, XLA) is used, and the
log names the changed settings. Retraining rounds resume from their round's start.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from members.infra import atomic
from members.scoring import nan_to_none
from members.training.artifacts import save_model
from members.training.checkpoint import BestWeights

RESUME_DIR = ".resume"
SCRATCH_WEIGHTS = (".before_retrain.weights.h5", ".round_best.weights.h5")  # within one retraining round


class ResumePoints:
    """The resume points of one member folder.

    Args:
        folder: ``<member>/.resume``.
        spec: the member's spec as a dict (a resume point of another spec is not used).
        fingerprint: the data set's fingerprint (nor one of other data).
        log: a callable taking one line of text.
        name: the member's name, for the log lines.
    """

    def __init__(self, folder: Path, spec: dict, fingerprint: str, *, log, name: str):
        self.folder, self.spec, self.fingerprint, self.log, self.name = folder, spec, fingerprint, log, name

    def save(self, model, stage: str, *, history: list[dict], timing: dict, best: BestWeights, extra: dict | None = None) -> None:
        """Save a resume point: the model, then ``state.json`` naming it and ``best``'s file."""
        self.folder.mkdir(parents=True, exist_ok=True)
        number = best.save_no + 1
        model_file = f"last-{number}.keras"
        save_model(model, self.folder / model_file)
        state = {"spec": self.spec, "fingerprint": self.fingerprint, "stage": stage,
                 "history": history, "best_score": best.score, "timing": timing,
                 "save_no": number, "model_file": model_file, "best_file": best.file, **(extra or {})}
        atomic.write_json(self.folder / "state.json", nan_to_none(state))
        best.save_no = number
        keep = {"state.json", model_file, best.file, *SCRATCH_WEIGHTS}
        for path in self.folder.iterdir():
            if path.name not in keep and path.is_file():
                path.unlink(missing_ok=True)

    def drop(self, why: str) -> tuple[None, None]:
        """Delete the resume folder, saying why; returns ``(None, None)`` (nothing to resume)."""
        self.log(f"[{self.name}] {why}; starting over")
        self.clear()
        return None, None

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def load(self, strategy, best: BestWeights):
        """``(model, state)`` of the last resume point, with ``best`` restored; ``(None, None)`` when there is none to use.

        The history and timing are in ``state["history"]`` and ``state["timing"]``.
        """
        import keras

        state_path = self.folder / "state.json"
        if not state_path.exists():
            return None, None
        try:
            state = json.loads(state_path.read_text(encoding="utf-8"))
            model_path, best_file = self.folder / state["model_file"], state["best_file"]
            state["history"], state["timing"], state["stage"] = list(state["history"]), dict(state["timing"]), str(state["stage"])
        except (OSError, ValueError, KeyError, TypeError) as exc:  # torn, edited or from an older version
            return self.drop(f"the resume point {state_path} is unreadable ({exc.__class__.__name__})")
        from members.model.spec import RUNTIME_FIELDS, learned_fields

        saved = state.get("spec") if isinstance(state.get("spec"), dict) else {}
        if learned_fields(saved) != learned_fields(self.spec) or state.get("fingerprint") != self.fingerprint:
            return self.drop("the resume point belongs to another spec or dataset")
        changed = [f"{k} {saved.get(k)!r} → {self.spec.get(k)!r}" for k in RUNTIME_FIELDS
                   if k != "description" and saved.get(k) != self.spec.get(k)]
        if changed:
            self.log(f"[{self.name}] resuming with other run settings ({'; '.join(changed)}); what is learned is "
                     "the same")
        if best_file is not None and not (self.folder / best_file).is_file():
            return self.drop(f"the resume point lacks its best weights {self.folder / best_file}")
        try:
            from members.model.architecture import OrdinalHead  # noqa: F401  (registers the custom layer)

            with strategy.scope():
                model = keras.saving.load_model(model_path, safe_mode=True)
        except Exception as exc:  # a torn resume file: start over rather than trust it
            return self.drop(f"the resume point {model_path} is unreadable ({exc.__class__.__name__})")
        best.score, best.file, best.save_no = state.get("best_score"), best_file, int(state.get("save_no", 0))
        self.log(f"[{self.name}] resuming after epoch {len(state['history'])} ({state['stage']})")
        return model, state
