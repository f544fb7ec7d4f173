"""Train one member with the article's whole technique set and write its artifacts.

Phases, each recorded in ``history.csv``:

1. ``train`` — one stage per input size of the resize schedule (progressive resizing keeps
   the same weights), SGD with Nesterov momentum, the learning rate decayed every epoch,
   class weights, on-the-fly augmentation; the best weights on validation are kept.
2. ``undersample`` — optional fine-tuning on a subset where over-represented classes are cut.
3. ``retrain<r>`` — optional rounds on the training images the model got wrong (plus a
   replay share of correct ones) at a lower rate; a round is kept only if validation
   improves, otherwise the previous weights are restored and the history says so.

After every epoch the trainer saves a resume point (model with optimizer state, best
weights, history): a killed run started again resumes after the last finished epoch.
``metrics.json`` is written last, atomically.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from members import atomic
from members.artifacts import plot_curves, save_model, save_predictions, save_weights, write_history
from members.errors import UserError
from members.lock import MemberLock
from members.progress import EpochProgress
from members.sampling import class_weights, retrain_subset, sampled_shares, sampling_acceptance, undersample
from members.scoring import nan_to_none as _jsonable, score  # the one strict-JSON cleaner
from members.snapshots import FreeMembers
from members.spec import MemberSpec

RESUME_DIR = ".resume"
COLLAPSE_EPOCHS = 3  # consecutive epochs at one class (or chance) before the collapse warning


def collapse_advice(spec) -> str:
    """The likely causes of a collapse and what to try, leaving out what ``spec`` already does."""
    tries = [text for text, done in (
        ("--set sampling=balanced", spec.sampling == "balanced"),
        ("--set head=regression", spec.head == "regression"),
        ("--set block=residual", spec.block == "residual" or spec.architecture != "convnet"),
        ("--set preprocessing=ben --set fundus_crop=true", spec.preprocessing == "ben" and spec.fundus_crop),
        ("--batch-size 8", spec.batch_size <= 8),
    ) if not done]
    tries += [f"a larger input_size (now {spec.input_size})", f"a lower or higher lr (now {spec.lr:g})", "more epochs"]
    return ("Likely causes: one class dominates the training rows, the learning rate is too high or too low, the "
            "images are too small to show lesions, or too few epochs. Try " + ", ".join(tries) + ".")
SCRATCH_WEIGHTS = (".before_retrain.weights.h5", ".round_best.weights.h5")  # within one retraining round


@dataclass
class TrainResult:
    """What ``train_member`` returns: where the member is and its metrics (the content of metrics.json)."""

    name: str
    member_dir: Path
    metrics: dict = field(repr=False)

    @property
    def seconds(self) -> float:
        return self.metrics["train_seconds"]


def _better(monitor: str, new: float, old: float | None) -> bool:
    if old is None or not math.isfinite(old):
        return math.isfinite(new)
    return new < old if monitor == "val_loss" else new > old


def _better_row(monitor: str, row: dict, best: dict | None) -> bool:
    """Whether epoch ``row`` beats the best so far: a better monitor value, or an equal one
    (e.g. val QWK 0.000 at every epoch of a collapsed run) with a lower val loss."""
    new = row[monitor]
    old = None if best is None else best.get(monitor)
    if _better(monitor, new, old):
        return True
    if old is None or not (math.isfinite(new) and math.isfinite(old)) or abs(new - old) > 1e-12 or monitor == "val_loss":
        return False
    return math.isfinite(row["val_loss"]) and row["val_loss"] < best.get("val_loss", math.inf) - 1e-6


def _is_chance(row: dict, k: int) -> bool:
    """Val predictions in one class, or val balanced accuracy at chance (1/k)."""
    return row.get("val_classes_predicted", k) <= 1 or row["val_balanced_accuracy"] <= 1.0 / k + 1e-9


class Trainer:
    """Runs the phases of one member; ``train_member`` is the public entry point."""

    def __init__(self, dataset, spec: MemberSpec, name: str, member_dir: Path, *, preset: str, log, show_progress: bool):
        import tensorflow as tf  # noqa: F401  (import here: keep module import light)

        self.data = dataset
        self.spec = spec
        self.name = name
        self.dir = member_dir
        self.preset = preset
        self.log = log
        self.k = dataset.num_classes
        self.resume_dir = member_dir / RESUME_DIR
        self.progress = EpochProgress(name, enabled=show_progress)
        self.rows = {s: dataset.rows(s) for s in ("train", "val", "test")}
        for split, rows in self.rows.items():
            if split != "test" and len(rows) == 0:
                raise UserError(f"The {split} split of {dataset.workdir} is empty; prepare the workdir with more images.")
        self.paths = {s: [str(dataset.image_root / p) for p in r["path"]] for s, r in self.rows.items()}
        self.labels = {s: r["label"].to_numpy(np.int64) for s, r in self.rows.items()}
        self.history: list[dict] = []
        self.best_score: float | None = None
        self._best_file: str | None = None  # in resume_dir; named by state.json
        self._save_no = 0  # resume points saved so far
        self.timing = {"images": 0, "step_seconds": 0.0, "wait_seconds": 0.0, "first_wait_share": None}
        self._datasets: dict = {}

    # ----- setup -------------------------------------------------------------------------
    def _configure(self) -> None:
        import keras
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")  # retracing notices on new input sizes are expected, not news
        keras.utils.set_random_seed(self.spec.seed)
        keras.mixed_precision.set_global_policy("mixed_float16" if self.spec.mixed_precision else "float32")
        self.strategy = tf.distribute.MirroredStrategy() if self.spec.strategy == "mirrored" else tf.distribute.get_strategy()
        replicas = self.strategy.num_replicas_in_sync
        self.batch_size = self.spec.batch_size * replicas  # batch_size is per replica
        if replicas > 1:
            self.log(f"[{self.name}] mirrored strategy over {replicas} devices: global batch {self.batch_size}")

    def _build(self):
        import keras

        from members.architecture import build_model

        with self.strategy.scope():
            model = build_model(self.spec, self.k)
            self._compile(model)
        return model

    def _compile(self, model, lr: float | None = None) -> None:
        """Compile with the spec's optimizer and the head's loss (again after a base is unfrozen)."""
        import keras

        from members.architecture import ExpectedGradeLoss

        s = self.spec
        lr = s.lr if lr is None else lr
        clip = s.clipnorm or None
        if s.optimizer == "adamw":
            optimizer = keras.optimizers.AdamW(learning_rate=lr, weight_decay=s.weight_decay, global_clipnorm=clip)
        elif s.optimizer == "adam":
            optimizer = keras.optimizers.Adam(learning_rate=lr, global_clipnorm=clip)
        else:
            optimizer = keras.optimizers.SGD(learning_rate=lr, momentum=s.momentum, nesterov=s.nesterov, global_clipnorm=clip)
        loss = ExpectedGradeLoss(s.regression_loss) if s.head == "regression" else "sparse_categorical_crossentropy"
        with self.strategy.scope():
            model.compile(optimizer=optimizer, loss=loss, metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                          jit_compile=s.jit_compile)

    def _set_frozen(self, model, frozen: bool, lr: float) -> None:
        """Freeze or unfreeze a Keras application's base (``backbone`` layer); recompile on a change."""
        if not self.spec.is_backbone or self.spec.freeze_epochs == 0 or self.spec.weights == "none":
            return  # a randomly initialised base is never frozen (weights = "none" ignores freeze_epochs)
        base = model.get_layer("backbone")
        if base.trainable == (not frozen):
            return
        base.trainable = not frozen
        self._compile(model, lr)
        self.log(f"[{self.name}] {'froze' if frozen else 'unfroze'} the {self.spec.architecture} base"
                 + ("" if frozen else f" (lr x {self.spec.finetune_lr_factor:g} from now on)"))

    def _dataset(self, split: str, size: int, *, training: bool, subset: np.ndarray | None = None, seed_offset: int = 0):
        from members.pipeline import Augmentation, make_dataset

        key = (split, size, training, None if subset is None else subset.tobytes(), seed_offset)
        if key in self._datasets:
            return self._datasets[key]
        paths, labels = self.paths[split], self.labels[split]
        if subset is not None:
            paths, labels = [paths[i] for i in subset], labels[subset]
        weights = acceptance = None
        if training and self.spec.effective_class_weight != "none":
            weights = class_weights(labels, self.k, self.spec.effective_class_weight)[labels]
        if training and self.spec.sampling != "natural":
            acceptance = sampling_acceptance(labels, self.k, self.spec.sampling)
            if not getattr(self, "_told_sampling", False):
                shares = ", ".join(f"{x:.0%}" for x in sampled_shares(labels, acceptance))
                self.log(f"[{self.name}] {self.spec.sampling} sampling: batches drawn with class shares {shares}")
                self._told_sampling = True
        ds = make_dataset(
            paths, labels, size=size, batch_size=self.batch_size, training=training,
            augmentation=Augmentation.from_spec(self.spec) if training else None, sample_weights=weights,
            acceptance=acceptance,
            preprocessing=self.spec.preprocessing, fundus_crop=self.spec.fundus_crop,
            cache=self.spec.cache, cache_dir=self.dir / ".cache",
            seed=self.spec.seed + 1000 * seed_offset,
        )
        if subset is None:  # subsets change every round; don't keep them
            self._datasets[key] = (ds, len(paths))
        return ds, len(paths)

    # ----- epochs ------------------------------------------------------------------------
    def _run_epoch(self, model, phase: str, size: int, lr: float, ds_n, *, note: str = "") -> dict:
        from members.loop import evaluate, predict_probs, train_epoch

        ds, n = ds_n
        steps = max(1, math.ceil(n / self.batch_size))
        model.optimizer.learning_rate.assign(lr)
        start = time.perf_counter()
        epoch_no = len(self.history) + 1
        where = f"in epoch {epoch_no} (phase {phase}, {size} px, lr {lr:.3g})"
        with self.progress.epoch(epoch_no, self.spec.total_epochs, phase, size, steps) as update:
            stats = train_epoch(model, ds, steps=steps, progress=update, where=where)
        val_ds, _ = self._dataset("val", size, training=False)
        val_probs = predict_probs(model, val_ds)
        val = evaluate(self.labels["val"], val_probs, self.k)
        val["val_classes_predicted"] = int(np.unique(val_probs.argmax(axis=1)).size)
        row = {
            "phase": phase, "epoch": epoch_no, "input_size": size, "lr": lr, "loss": stats.loss,
            "accuracy": stats.accuracy, **val, "seconds": time.perf_counter() - start,
            "images_per_second": stats.images_per_second, "input_wait_share": stats.wait_share, "note": note,
        }
        if self.timing["first_wait_share"] is None:
            self.timing["first_wait_share"] = stats.wait_share  # first epoch: decode + cache fill
        else:
            self.timing["images"] += stats.images
            self.timing["step_seconds"] += stats.step_seconds
            self.timing["wait_seconds"] += stats.wait_seconds
        self.history.append(row)
        if self.spec.tensorboard:  # Keras-layout event files in <member>/logs (members/tensorboard.py)
            from members.tensorboard import TensorBoardLog

            self._tb = getattr(self, "_tb", None) or TensorBoardLog(self.dir)
            self._tb.epoch(row)
        self.log(
            f"[{self.name}] epoch {epoch_no}/{self.spec.total_epochs} {phase} {size}px lr={lr:.3g} "
            f"loss={stats.loss:.4f} acc={stats.accuracy:.3f} val_loss={val['val_loss']:.4f} "
            f"val_acc={val['val_accuracy']:.3f} val_bal_acc={val['val_balanced_accuracy']:.3f} "
            f"val_qwk={val['val_qwk']:.3f} wait={stats.wait_share:.0%} {row['seconds']:.1f}s"
        )
        self._watch_collapse(row, val_probs)
        return row

    def _watch_collapse(self, row: dict, val_probs: np.ndarray) -> None:
        """Warn once when the val predictions stay in one class (or at chance) for a few epochs."""
        run = 0
        for r in reversed(self.history):
            if not _is_chance(r, self.k):
                break
            run += 1
        needed = min(COLLAPSE_EPOCHS, self.spec.total_epochs)
        if run >= needed and not getattr(self, "_warned_collapse", False):
            pred = np.bincount(val_probs.argmax(axis=1), minlength=self.k)
            top = int(pred.argmax())
            what = (f"every val image was predicted as class {self.data.classes[top]}" if row["val_classes_predicted"] <= 1
                    else f"val balanced accuracy stayed at chance ({row['val_balanced_accuracy']:.3f} <= 1/{self.k})")
            self.log(f"[{self.name}] WARNING: the member is collapsing: for {run} epochs {what}; it is learning the "
                     f"class mix, not the images. {collapse_advice(self.spec)}")
            self._warned_collapse = True

    def _lr_at(self, g: int, total: int) -> float:
        """The planned learning rate of epoch ``g`` (0-based) of ``total``: warm-up, then the schedule;
        after a frozen base's warm-up epochs, times ``finetune_lr_factor``."""
        s = self.spec
        w = s.warmup_epochs
        if g < w:
            lr = s.lr * (g + 1) / (w + 1)
        elif s.lr_schedule == "cosine":
            lr = s.lr * 0.5 * (1 + math.cos(math.pi * (g - w) / max(total - w, 1)))
        else:
            lr = s.lr * s.lr_decay ** (g - w)
        if s.is_backbone and s.freeze_epochs and s.weights != "none" and g >= s.freeze_epochs:
            lr *= s.finetune_lr_factor
        return lr

    def _plan(self) -> list[tuple[str, int, float]]:
        """(phase, input size, learning rate) of every epoch before the retraining rounds."""
        s, plan, g = self.spec, [], 0
        total = s.epochs * len(s.stage_sizes) + s.undersample_epochs
        for size in s.stage_sizes:
            for _ in range(s.epochs):
                plan.append(("train", size, self._lr_at(g, total)))
                g += 1
        for _ in range(s.undersample_epochs):
            plan.append(("undersample", s.input_size, s.undersample_lr_factor * self._lr_at(g, total)))
            g += 1
        return plan

    # ----- resume ------------------------------------------------------------------------
    def _state_matches(self, state: dict) -> bool:
        return state.get("spec") == self.spec.to_dict() and state.get("fingerprint") == self.data.fingerprint

    def _save_resume(self, model, stage: str, extra: dict | None = None) -> None:
        """Save a resume point: the model (with its optimizer state) and ``state.json``, which names it.

        Each resume point has files of its own (``last-<n>.keras``, and ``best-<n>.weights.h5``
        when the epoch was the best), and ``state.json``, written last and atomically, names
        them: a kill at any moment leaves the previous resume point whole. Files no state names
        any more are deleted afterwards.
        """
        self.resume_dir.mkdir(parents=True, exist_ok=True)
        number = self._save_no + 1
        model_file = f"last-{number}.keras"
        save_model(model, self.resume_dir / model_file)
        state = {"spec": self.spec.to_dict(), "fingerprint": self.data.fingerprint, "stage": stage,
                 "history": self.history, "best_score": self.best_score, "timing": self.timing,
                 "save_no": number, "model_file": model_file, "best_file": self._best_file, **(extra or {})}
        atomic.write_json(self.resume_dir / "state.json", _jsonable(state))
        self._save_no = number
        keep = {"state.json", model_file, self._best_file, *SCRATCH_WEIGHTS}
        for path in self.resume_dir.iterdir():
            if path.name not in keep and path.is_file():
                path.unlink(missing_ok=True)

    def _drop_resume(self, why: str) -> tuple[None, None]:
        self.log(f"[{self.name}] {why}; starting over")
        shutil.rmtree(self.resume_dir, ignore_errors=True)
        return None, None

    def _load_resume(self):
        import keras

        state_path = self.resume_dir / "state.json"
        if not state_path.exists():
            return None, None
        try:
            state = json.loads(state_path.read_text(encoding="utf-8"))
            model_path, best = self.resume_dir / state["model_file"], state["best_file"]
            history, timing, stage = list(state["history"]), dict(state["timing"]), str(state["stage"])
        except (OSError, ValueError, KeyError, TypeError) as exc:  # torn, edited or from an older version
            return self._drop_resume(f"the resume point {state_path} is unreadable ({exc.__class__.__name__})")
        if not self._state_matches(state):
            return self._drop_resume("the resume point belongs to another spec or dataset")
        if best is not None and not (self.resume_dir / best).is_file():
            return self._drop_resume(f"the resume point lacks its best weights {self.resume_dir / best}")
        try:
            from members.architecture import OrdinalHead  # noqa: F401  (registers the custom layer)

            with self.strategy.scope():
                model = keras.saving.load_model(model_path, safe_mode=True)
        except Exception as exc:  # a torn resume file: start over rather than trust it
            return self._drop_resume(f"the resume point {model_path} is unreadable ({exc.__class__.__name__})")
        self.history, self.timing, self.best_score = history, timing, state.get("best_score")
        self._best_file, self._save_no = best, int(state.get("save_no", 0))
        self.log(f"[{self.name}] resuming after epoch {len(self.history)} ({stage})")
        return model, state

    def _best_path(self) -> Path | None:
        """The best weights so far (None before the first epoch)."""
        return None if self._best_file is None else self.resume_dir / self._best_file

    def _new_best(self, model) -> None:
        """Save ``model``'s weights as the best ones, under the name of the next resume point."""
        self.resume_dir.mkdir(parents=True, exist_ok=True)
        name = f"best-{self._save_no + 1}.weights.h5"
        save_weights(model, self.resume_dir / name)
        self._best_file = name

    def _keep_if_best(self, model, row: dict) -> None:
        best = self._best_row()
        if _better_row(self.spec.monitor, row, best):
            tie = best is not None and row[self.spec.monitor] == best[self.spec.monitor]
            self.best_score = row[self.spec.monitor]
            row["note"] = (row["note"] + "; " if row["note"] else "") + f"best {self.spec.monitor}" + (" (tie broken by val_loss)" if tie else "")
            self._new_best(model)

    def _best_row(self) -> dict | None:
        """The history row of the best epoch so far (None before any)."""
        epoch = _best_epoch(self.history[:-1]) if self.history else None
        return next((r for r in self.history if r["epoch"] == epoch), None) if epoch is not None else None

    def _stale_epochs(self) -> int:
        """Epochs of the current stage since its best one (early stopping)."""
        if not self.history:
            return 0
        stage = (self.history[-1]["phase"], self.history[-1]["input_size"])
        n = 0
        for r in reversed(self.history):
            if (r["phase"], r["input_size"]) != stage or "best" in str(r.get("note", "")):
                break
            n += 1
        return n

    # ----- phases ------------------------------------------------------------------------
    def _undersample_subset(self) -> np.ndarray:
        return undersample(self.labels["train"], self.spec.undersample_ratio, seed=self.spec.seed)

    def _retrain_round(self, model, r: int) -> None:
        from members.loop import predict_probs

        s = self.spec
        size = s.input_size
        train_eval, _ = self._dataset("train", size, training=False)
        pred = predict_probs(model, train_eval).argmax(axis=1)
        wrong = pred != self.labels["train"]
        phase = f"retrain{r + 1}"
        if not wrong.any():
            self.log(f"[{self.name}] {phase}: no mispredicted training image; round skipped")
            return
        subset = retrain_subset(wrong, replay=s.retrain_replay, seed=s.seed + r)
        plan = self._plan()
        lr = (plan[-1][2] if s.lr_schedule == "cosine" else s.lr * s.lr_decay ** len(plan)) * s.retrain_lr_factor
        before = self.best_score
        save_weights(model, self.resume_dir / ".before_retrain.weights.h5")
        self.log(f"[{self.name}] {phase}: {int(wrong.sum())} mispredicted training images + {len(subset) - int(wrong.sum())} replayed, lr {lr:.3g}")
        round_best = None
        for e in range(s.retrain_epochs):
            ds_n = self._dataset("train", size, training=True, subset=subset, seed_offset=r + 1)
            row = self._run_epoch(model, phase, size, lr, ds_n, note=f"{int(wrong.sum())} wrong + {len(subset) - int(wrong.sum())} replayed")
            if _better(s.monitor, row[s.monitor], round_best):
                round_best = row[s.monitor]
                save_weights(model, self.resume_dir / ".round_best.weights.h5")
        if round_best is not None and _better(s.monitor, round_best, before):
            model.load_weights(self.resume_dir / ".round_best.weights.h5")
            self.best_score = round_best
            self._new_best(model)
            self.history[-1]["note"] += f"; kept: {s.monitor} {round_best:.4f} > {before:.4f}" if s.monitor != "val_loss" else f"; kept: val_loss {round_best:.4f} < {before:.4f}"
        else:
            model.load_weights(self.resume_dir / ".before_retrain.weights.h5")
            self.history[-1]["note"] += f"; rolled back: {s.monitor} {round_best:.4f} did not improve on {before:.4f}, previous weights restored"
            self.log(f"[{self.name}] {phase} did not improve {s.monitor}; previous weights restored")

    def run(self) -> TrainResult:
        started = time.perf_counter()
        self._configure()
        model, state = self._load_resume()
        if model is None:
            shutil.rmtree(self.resume_dir, ignore_errors=True)
            model = self._build()
            state = {"stage": "start"}
        plan = self._plan()
        free = FreeMembers(self)  # snapshots and SWA (members/snapshots.py); a no-op unless the spec asks
        free.start(None if state["stage"] == "start" else len(self.history))
        elapsed_before = float(state.get("elapsed", 0.0))
        with self.progress:
            first = {"plan": int(state.get("next_plan", len(self.history))), "retrain": len(plan)}.get(state["stage"], 0)
            stopped: tuple | None = None  # (phase, size) of a stage stopped early
            for i in range(first, len(plan)):
                phase, size, lr = plan[i]
                if stopped == (phase, size):
                    continue
                lr = free.lr(i, lr)
                self._set_frozen(model, i < self.spec.freeze_epochs, lr)
                if phase == "undersample":
                    ds_n = self._dataset("train", size, training=True, subset=self._undersample_subset())
                else:
                    ds_n = self._dataset("train", size, training=True)
                row = self._run_epoch(model, phase, size, lr, ds_n, note="base frozen" if self.spec.is_backbone and self.spec.weights != "none" and i < self.spec.freeze_epochs else "")
                self._keep_if_best(model, row)
                free.after_epoch(model, i, row)
                if self.spec.patience and self._stale_epochs() >= self.spec.patience and i + 1 < len(plan) and plan[i + 1][:2] == (phase, size):
                    stopped = (phase, size)
                    row["note"] = (row["note"] + "; " if row["note"] else "") + f"early stop: no better {self.spec.monitor} for {self.spec.patience} epochs"
                    self.log(f"[{self.name}] early stop of {phase} {size}px after epoch {row['epoch']}: "
                             f"no better {self.spec.monitor} for {self.spec.patience} epochs")
                    i = max(j for j in range(len(plan)) if plan[j][:2] == (phase, size))
                self._save_resume(model, "plan", {"elapsed": elapsed_before + time.perf_counter() - started, "next_plan": i + 1})
            if self._best_path() is not None:
                model.load_weights(self._best_path())
            free.after_plan(model)
            rounds_done = int(state.get("rounds_done", 0))
            for r in range(rounds_done, self.spec.retrain_rounds):
                self._retrain_round(model, r)
                self._save_resume(model, "retrain", {"rounds_done": r + 1, "elapsed": elapsed_before + time.perf_counter() - started})
        seconds = elapsed_before + time.perf_counter() - started
        result = self._finish(model, seconds)
        free.done()
        return result

    # ----- artifacts ---------------------------------------------------------------------
    def _health(self, predictions: dict, results: dict) -> dict:
        """``collapsed`` / ``collapse`` (the kept weights on val) and the majority baseline (``majority``,
        ``below_majority``) for metrics.json."""
        k = self.k
        val_pred = predictions["val"].argmax(axis=1)
        counts = np.bincount(val_pred, minlength=k)
        bal = results["val"].get("balanced_accuracy", float("nan"))
        one_class = int((counts > 0).sum()) <= 1
        auc = results["val"].get("auc", float("nan"))
        # at chance: balanced accuracy 1/k and no ranking either (a grade member whose cuts squeeze the
        # rare grades can sit at 1/k balanced accuracy with a real val AUC and QWK: that one learned)
        at_chance = bal <= 1.0 / k + 1e-9 and not (auc > 0.55)
        collapsed = bool(one_class or at_chance) and len(np.unique(self.labels["val"])) > 1
        collapse = {"judged_on": "argmax of the kept weights' val probabilities", "val_predicted_counts": counts.tolist(),
                    "val_balanced_accuracy": bal, "val_auc": auc, "chance": 1.0 / k,
                    "epochs_at_chance": sum(1 for r in self.history if _is_chance(r, k))}
        if collapsed:
            top = self.data.classes[int(counts.argmax())]
            collapse["reason"] = (f"its val predictions fall into one class ({top})" if one_class
                                  else f"its val balanced accuracy {bal:.3f} is at chance (1/{k}) and its val AUC {auc:.3f} near 0.5")
            collapse["advice"] = collapse_advice(self.spec)
            self.log(f"[{self.name}] WARNING: collapsed: {collapse['reason']}. vote will leave it out. {collapse['advice']}")
        majority, below = {}, {}
        for split in ("val", "test"):
            base = majority_baseline(self.labels["train"], self.labels[split], k)
            majority[split] = base
            acc = results[split].get("accuracy") if results[split] else None
            below[split] = None if acc is None or base["accuracy"] is None else bool(acc < base["accuracy"])
        return {"collapsed": collapsed, "collapse": collapse, "majority": majority, "below_majority": below}

    def _finish(self, model, seconds: float) -> TrainResult:
        from members.loop import predict_probs

        size = self.spec.input_size
        results = {}
        regression = None
        if self.spec.head == "regression" and len(self.labels["val"]):
            from members.regression import calibrate_head

            val_probs = predict_probs(model, self._dataset("val", size, training=False)[0], tta=self.spec.tta)
            regression = calibrate_head(model, val_probs, self.labels["val"])
            self.log(f"[{self.name}] regression cuts {', '.join(f'{c:.2f}' for c in regression['cuts'])} "
                     f"(val QWK {regression['val_qwk_default_cuts']:.3f} at 0.5, 1.5, ... -> {regression['val_qwk_tuned_cuts']:.3f}"
                     f"{'' if regression['tuned'] else ', defaults kept'}), scale {regression['scale']:.3g}")
        predictions = {}
        for split in ("val", "test"):
            if len(self.labels[split]) == 0:
                probs = np.zeros((0, self.k))
            else:
                probs = predict_probs(model, self._dataset(split, size, training=False)[0], tta=self.spec.tta)
            predictions[split] = probs
            save_predictions(self.dir / f"{split}.npz", probs, self.labels[split], self.rows[split]["row_id"].to_numpy(), self.data.fingerprint)
            results[split] = score(self.labels[split], probs, num_classes=self.k) if len(probs) else {}
        save_model(model, self.dir / "model.keras")
        write_history(self.dir / "history.csv", self.history)
        best_epoch = _best_epoch(self.history)
        plot_curves(self.dir / "curves.png", self.history, f"{self.name} ({self.preset})",
                    monitor=self.spec.monitor, best_epoch=best_epoch)
        t = self.timing
        steady = t["step_seconds"] > 0
        metrics = {
            "name": self.name, "preset": self.preset, "num_classes": self.k, "classes": list(self.data.classes),
            "fingerprint": self.data.fingerprint, "model_sha256": atomic.sha256_file(self.dir / "model.keras"),
            "input_size": size, "stage_sizes": list(self.spec.stage_sizes), "head": self.spec.head,
            "params": int(model.count_params()), "epochs_run": len(self.history),
            "best_epoch": best_epoch, "monitor": self.spec.monitor,
            "train_seconds": round(seconds, 3),
            "images_per_second": round(t["images"] / t["step_seconds"], 2) if steady else _first_ips(self.history),
            "input_wait_share": round(t["wait_seconds"] / t["step_seconds"], 4) if steady else t["first_wait_share"],
            "input_wait_share_first_epoch": t["first_wait_share"],
            "tta": self.spec.tta, "train_size": len(self.labels["train"]),
            "val": results["val"], "test": results["test"],
            **self._health(predictions, results),
        }
        if regression is not None:
            metrics["regression"] = regression
        shutil.rmtree(self.dir / ".cache", ignore_errors=True)
        atomic.write_json(self.dir / "metrics.json", _jsonable(metrics))
        shutil.rmtree(self.resume_dir, ignore_errors=True)
        return TrainResult(self.name, self.dir, metrics)


def majority_baseline(train_labels: np.ndarray, labels: np.ndarray, k: int) -> dict:
    """The majority-class baseline: the most frequent training class predicted for every row."""
    c = int(np.bincount(train_labels, minlength=k).argmax())
    return {"class": c, "accuracy": float(np.mean(labels == c)) if len(labels) else None,
            "balanced_accuracy": (1.0 / len(np.unique(labels))) if len(labels) else None}


def _best_epoch(history: list[dict]) -> int | None:
    for row in reversed(history):
        if "best" in str(row.get("note", "")) or "kept" in str(row.get("note", "")):
            return int(row["epoch"])
    return None


def _first_ips(history: list[dict]) -> float:
    return round(float(history[0]["images_per_second"]), 2) if history else 0.0


def _remove_temp_files(directory: Path) -> None:
    """Delete the temp files of writes a killed run left unfinished (safe: the caller holds the lock).

    Lock temp files (``.lock.<pid>...``) are left alone: another process may be about to link one.
    """
    for path in directory.glob(".*.tmp*"):
        if path.is_file() and not path.name.startswith(".lock."):
            path.unlink(missing_ok=True)


def member_dir(workdir: str | Path, name: str) -> Path:
    """``<workdir>/members/<name>``, refusing names that are not plain folder names."""
    if not name or name in (".", "..") or any(c in name for c in "/\\\0") or name.startswith("."):
        raise UserError(f"Member name {name!r} is not a plain folder name; use letters, digits, '-' and '_'.")
    return Path(workdir) / "members" / name


def train_member(workdir: str | Path, spec: MemberSpec, *, name: str, preset: str = "custom",
                 log=None, show_progress: bool | None = None, force: bool = False) -> TrainResult:
    """Train one member on a prepared workdir and write every artifact of the contract.

    A complete member (``metrics.json`` present) is never modified by a run with another
    spec: that run is refused, naming the differing fields, unless ``force``, which trains
    the new member beside the old one and swaps it in only once it is complete. The same
    spec on the same data returns the complete member without training.

    Args:
        workdir: a folder prepared by ``python cli.py prepare``.
        spec: the fully resolved member spec.
        name: the member's folder name under ``<workdir>/members``.
        preset: the preset the spec came from (recorded in metrics.json).
        log: a callable taking one line of text (default: print to stderr).
        show_progress: Rich progress bar; default when stderr is a terminal.
        force: replace a complete member trained with another spec or on other data.

    Returns:
        A :class:`TrainResult` with the member's metrics.

    Raises:
        UserError: the workdir is not prepared, the member is locked by another run, complete
            with another spec (without ``force``), or the loss diverged.

    Example:
        >>> train_member("work", load_preset("tiny"), name="tiny")  # doctest: +SKIP
    """
    from members.classes import check_task
    from members.dataset import load_dataset
    from members.guard import existing_member, refusal
    from members.transaction import recover_dir
    from members.validate import check_memory

    if log is None:
        import sys

        def log(line: str) -> None:
            print(line, file=sys.stderr, flush=True)

    data = load_dataset(workdir)
    spec = check_task(spec, data.ordinal, log)  # nominal classes: no grade heads, no QWK monitoring
    directory = member_dir(workdir, name)
    check_memory(spec, data.num_classes)
    with MemberLock(directory) as lock:
        recover_dir(directory, complete="metrics.json")
        if not lock.path.exists():  # the recovered folder came without our lock
            lock.acquire()
        existing = existing_member(directory, spec, data.fingerprint)
        if existing.complete and not existing.differences:
            log(f"[{name}] already complete with the same spec and data: nothing to train "
                f"(delete {directory / 'metrics.json'} to train it again)")
            return TrainResult(name, directory, existing.metrics)
        if existing.complete and not force:
            raise refusal(name, directory, existing.differences)
        # imports TensorFlow: only once the workdir and the lock are fine, so refusals come at once
        from members.loop import is_terminal

        target = directory.with_name(f".{name}.replacement") if existing.complete else directory
        target.mkdir(parents=True, exist_ok=True)
        _remove_temp_files(target)
        atomic.write_text(target / "spec.toml", spec.to_toml(preset=preset))
        trainer = Trainer(data, spec, name, target, preset=preset, log=log,
                          show_progress=is_terminal() if show_progress is None else show_progress)
        result = trainer.run()
        if target != directory:
            _swap_in(target, directory, log)
            result = TrainResult(name, directory, result.metrics)
        return result


def _swap_in(new: Path, directory: Path, log) -> None:
    """Replace the complete member ``directory`` by the complete member ``new`` in one step."""
    from members.transaction import replace_dir

    if (directory / "train.log").exists() and not (new / "train.log").exists():
        shutil.copy2(directory / "train.log", new / "train.log")
    MemberLock(new).acquire()  # the swapped-in folder carries our lock (the caller releases it)
    try:
        replace_dir(new, directory)
    except OSError as exc:
        raise atomic._write_error(directory, exc) from exc
    log(f"[{directory.name}] the new member replaced the previous one")
