"""Train one member with the article's whole technique set and write its artifacts.

Phases, each recorded in ``history.csv``:

1. ``train`` — one stage per input size of the resize schedule (progressive resizing keeps
   the same weights), the optimizer and learning rate of the spec (warm-up, then decayed every
   epoch), class weights or balanced batches, on-the-fly augmentation; the best weights on
   validation are kept.
2. ``undersample`` — optional fine-tuning on a subset where over-represented classes are cut.
3. ``retrain<r>`` — optional rounds on the training images the model got wrong (plus a
   replay share of correct ones) at a lower rate; a round is kept only if validation
   improves, otherwise the previous weights are restored and the history says so.

:class:`Trainer` runs the phases; each other concept is a unit of its own, as Keras splits
them into callbacks:

- the learning rate of every epoch and the optimizer — :mod:`members.training.schedule`;
- the best weights, ties and early stopping — :mod:`members.training.checkpoint`;
- resume points after every epoch (a killed run goes on after its last finished epoch) —
  :mod:`members.training.resume`;
- the epoch log line, timing and TensorBoard — :mod:`members.training.epoch_log`;
- collapse warnings and the majority baseline — :mod:`members.training.collapse`;
- snapshots and SWA — :mod:`members.training.snapshots`.

The custom epoch loop (:mod:`members.training.loop`) measures the input wait of every step.
``metrics.json`` is written last, atomically.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from members.infra import atomic
from members.infra.errors import UserError
from members.infra.lock import MemberLock
from members.model.spec import MemberSpec
from members.scoring import nan_to_none as _jsonable, qwk_for_task, score  # the one strict-JSON cleaner
from members.training.artifacts import (plot_curves, predictions_sha256, save_model, save_predictions, save_weights,
                                        write_history)
from members.training.checkpoint import BestWeights, better, best_epoch, stale_epochs
from members.training.collapse import CollapseWatch, health
from members.training.epoch_log import EpochLog
from members.training.progress import EpochProgress
from members.training.resume import RESUME_DIR, ResumePoints
from members.training.sampling import class_weights, retrain_subset, sampled_shares, sampling_acceptance, undersample
from members.training.schedule import epoch_plan, make_optimizer, retrain_lr
from members.training.snapshots import FreeMembers


@dataclass
class TrainResult:
    """What ``train_member`` returns: where the member is (an absolute path, as for a k-fold member) and its metrics
    (the content of metrics.json)."""

    name: str
    member_dir: Path
    metrics: dict = field(repr=False)

    def __post_init__(self) -> None:
        self.member_dir = Path(self.member_dir).resolve()

    @property
    def seconds(self) -> float:
        return self.metrics["train_seconds"]


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
        self.force = False  # train_member's --force: a snapshot run then replaces its earlier snapshots too
        self.k = dataset.num_classes
        self.progress = EpochProgress(name, enabled=show_progress)
        self.rows = {s: dataset.rows(s) for s in ("train", "val", "test")}
        for split, rows in self.rows.items():
            if split != "test" and len(rows) == 0:
                raise UserError(f"The {split} split of {dataset.workdir} is empty; prepare the workdir with more images.")
        self.paths = {s: [str(dataset.image_root / p) for p in r["path"]] for s, r in self.rows.items()}
        self.labels = {s: r["label"].to_numpy(np.int64) for s, r in self.rows.items()}
        self.history: list[dict] = []
        self.resume_dir = member_dir / RESUME_DIR  # a snapshot member (members/training/snapshots.py) points it at its own
        self.resume = ResumePoints(self.resume_dir, spec.to_dict(), dataset.fingerprint, log=log, name=name)
        self.best = BestWeights(self.resume_dir, spec.monitor)
        self.epoch_log = EpochLog(name, spec.total_epochs, log, tensorboard_dir=member_dir if spec.tensorboard else None,
                                  num_classes=len(dataset.classes), ordinal=dataset.ordinal)
        self.collapse = CollapseWatch(name, spec, dataset.classes, log, ordinal=dataset.ordinal)
        self._datasets: dict = {}
        self._early: tuple | None = None  # (base, its layers kept frozen by freeze_stride)

    @property
    def timing(self) -> dict:
        return self.epoch_log.timing

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
        from members.model.architecture import build_model

        with self.strategy.scope():
            model = build_model(self.spec, self.k)
            if not self.spec.is_backbone and self.spec.weights.strip() != "none":
                self._start_from_member(model)
            self._compile(model)
        return model

    def _start_from_member(self, model) -> None:
        """A built-in network starting from a saved member's weights (``weights = "<member>/model.keras"``)."""
        from pathlib import Path

        from members.infra.errors import UserError
        from members.model.transfer import transfer_weights

        path = Path(self.spec.weights.strip()).expanduser().absolute()
        if not path.is_file():
            what = "is a folder, not a file" if path.is_dir() else "does not exist"
            raise UserError(f"Weights file {path} {what}; pass the model.keras of a saved member of the same "
                            "architecture (members/<name>/model.keras), or weights = \"none\".")
        info = transfer_weights(model, str(path), log=lambda m: self.log(f"[{self.name}] {m}"))
        self.log(f"[{self.name}] started from {path} ({info['copied']} layers copied)")

    def _compile(self, model, lr: float | None = None) -> None:
        """Compile with the spec's optimizer and the head's loss (again after a base is unfrozen)."""
        import keras

        from members.model.architecture import ExpectedGradeLoss

        s = self.spec
        loss = ExpectedGradeLoss(s.regression_loss) if s.head == "regression" else "sparse_categorical_crossentropy"
        with self.strategy.scope():
            model.compile(optimizer=make_optimizer(s, s.lr if lr is None else lr), loss=loss,
                          metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")], jit_compile=s.jit_compile)

    def _set_frozen(self, model, frozen: bool, lr: float) -> None:
        """Freeze or unfreeze a pretrained base (``backbone`` layer); recompile on a change.

        Unfrozen, the base still keeps its layers up to ``freeze_stride`` frozen (their batch
        normalisation then runs in inference mode, on the ImageNet statistics).
        """
        s = self.spec
        if not s.is_backbone or s.weights == "none" or (s.freeze_epochs == 0 and s.freeze_stride == 0):
            return  # a randomly initialised base is never frozen (weights = "none" ignores freeze_epochs)
        from members.model.backbones import early_layers

        base = model.get_layer("backbone")
        if s.freeze_stride and (self._early is None or self._early[0] is not base):  # once per built model
            self._early = (base, early_layers(base, s.freeze_stride))
        kept = [] if frozen or self._early is None else self._early[1]
        if base.trainable == (not frozen) and not any(layer.trainable for layer in kept):
            return
        base.trainable = not frozen
        for layer in kept:
            layer.trainable = False
        self._compile(model, lr)
        if frozen:
            self.log(f"[{self.name}] froze the {s.architecture} base")
        else:
            kept_note = (f", its first {len(kept)} layers (output stride <= {s.freeze_stride}) kept frozen"
                         if kept else "")
            lr_note = f" (lr x {s.finetune_lr_factor:g} from now on)" if s.freeze_epochs else ""
            self.log(f"[{self.name}] unfroze the {s.architecture} base{kept_note}{lr_note}")

    def _dataset(self, split: str, size: int, *, training: bool, subset: np.ndarray | None = None, seed_offset: int = 0):
        from members.data.pipeline import Augmentation, make_dataset

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
    def _run_epoch(self, model, phase: str, size: int, lr: float, ds_n, *, note: str = "", tell: bool = True) -> dict:
        """Train one epoch, score val and append the row to ``history``.

        With ``tell=False`` the epoch's log line and collapse check wait for :meth:`_tell`, which
        the plan loop calls once the epoch's resume point is saved: a run killed right after an
        epoch line then always resumes after that epoch.
        """
        from members.training.loop import evaluate, predict_probs, train_epoch

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
        if self.spec.head == "regression" and len(self.labels["val"]):
            val["val_qwk_prior_matched"] = self._prior_matched_qwk(model, val_probs)
            val["val_auc"] = score(self.labels["val"], val_probs, num_classes=self.k)["auc"]  # the collapse watch's
        val["val_classes_predicted"] = int(np.unique(val_probs.argmax(axis=1)).size)
        row = {
            "phase": phase, "epoch": epoch_no, "input_size": size, "lr": lr, "loss": stats.loss,
            "accuracy": stats.accuracy, **val, "seconds": time.perf_counter() - start,
            "images_per_second": stats.images_per_second, "input_wait_share": stats.wait_share, "note": note,
        }
        self.history.append(row)
        self.epoch_log.count(stats)
        self._untold = (row, stats, val_probs)
        if tell:
            self._tell()
        return row

    def _tell(self) -> None:
        """The last epoch's log line, then the collapse check (which may warn)."""
        row, stats, val_probs = self._untold
        self.epoch_log.tell(row, stats)
        self.collapse.after_epoch(self.history, val_probs)

    def _prior_matched_qwk(self, model, val_probs: np.ndarray) -> float:
        """A regression member's val QWK with its scores cut at the train split's grade shares
        (:func:`members.model.regression.prior_matched_qwk`), recorded beside ``val_qwk``; not
        the monitor: as one, it did no better than ``val_qwk`` in the split-half ablation of
        BENCHMARKS.md "Which epoch a recipe member keeps"."""
        from members.model.regression import head_mix, prior_matched_qwk

        head = model.get_layer("regression_head")
        return prior_matched_qwk(val_probs, self.labels["val"], np.bincount(self.labels["train"], minlength=self.k),
                                 cuts=np.asarray(head.cuts.numpy(), np.float64), scale=float(head.scale.numpy()),
                                 mix=head_mix(head))

    def _plan(self) -> list[tuple[str, int, float]]:
        """(phase, input size, learning rate) of every epoch before the retraining rounds."""
        return epoch_plan(self.spec)

    def _save_resume(self, model, stage: str, extra: dict | None = None) -> None:
        self.resume.save(model, stage, history=self.history, timing=self.timing, best=self.best, extra=extra)

    def _load_resume(self):
        model, state = self.resume.load(self.strategy, self.best)
        if model is not None:
            self.history, self.epoch_log.timing = state["history"], state["timing"]
        return model, state

    # ----- phases ------------------------------------------------------------------------
    def _undersample_subset(self) -> np.ndarray:
        return undersample(self.labels["train"], self.spec.undersample_ratio, seed=self.spec.seed)

    def _retrain_round(self, model, r: int) -> None:
        from members.training.loop import predict_probs

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
        lr = retrain_lr(s, self._plan())
        before = self.best.score
        save_weights(model, self.resume_dir / ".before_retrain.weights.h5")
        self.log(f"[{self.name}] {phase}: {int(wrong.sum())} mispredicted training images + {len(subset) - int(wrong.sum())} replayed, lr {lr:.3g}")
        round_best = None
        for e in range(s.retrain_epochs):
            ds_n = self._dataset("train", size, training=True, subset=subset, seed_offset=r + 1)
            row = self._run_epoch(model, phase, size, lr, ds_n, note=f"{int(wrong.sum())} wrong + {len(subset) - int(wrong.sum())} replayed")
            if better(s.monitor, row[s.monitor], round_best):
                round_best = row[s.monitor]
                save_weights(model, self.resume_dir / ".round_best.weights.h5")
        if round_best is not None and better(s.monitor, round_best, before):
            model.load_weights(self.resume_dir / ".round_best.weights.h5")
            self.best.score = round_best
            self.best.save(model)
            self.history[-1]["note"] += f"; kept: {s.monitor} {round_best:.4f} > {before:.4f}" if s.monitor != "val_loss" else f"; kept: val_loss {round_best:.4f} < {before:.4f}"
        else:
            model.load_weights(self.resume_dir / ".before_retrain.weights.h5")
            self.history[-1]["note"] += f"; rolled back: {s.monitor} {round_best:.4f} did not improve on {before:.4f}, previous weights restored"
            self.log(f"[{self.name}] {phase} did not improve {s.monitor}; previous weights restored")

    def run(self) -> TrainResult:
        """Train, evaluate and write the member; an image that no longer reads is named in one sentence."""
        from members.training.loop import ImageReadError

        try:
            return self._run()
        except ImageReadError as exc:
            raise self._name_unreadable(exc) from None
        finally:
            if self.spec.mixed_precision:  # the next model built in this process (a member, predict) is float32
                import keras

                keras.mixed_precision.set_global_policy("float32")

    def _name_unreadable(self, exc: Exception) -> Exception:
        """The pipeline's read error with the first listed file that no longer reads (prepare's check) named."""
        from members.training.loop import name_unreadable

        self.log(f"[{self.name}] an image could not be read; checking the listed images to name it ...")
        return name_unreadable(exc, (path for split in ("train", "val", "test")
                                     for path in self.data.absolute_paths(split)))

    def _run(self) -> TrainResult:
        started = time.perf_counter()
        self._configure()
        model, state = self._load_resume()
        if model is None:
            self.resume.clear()
            model = self._build()
            state = {"stage": "start"}
        plan = self._plan()
        free = FreeMembers(self)  # snapshots and SWA (members/training/snapshots.py); a no-op unless the spec asks
        free.start(None if state["stage"] == "start" else len(self.history))
        elapsed_before = float(state.get("elapsed", 0.0))
        s = self.spec
        with self.progress:
            first = {"plan": int(state.get("next_plan", len(self.history))), "retrain": len(plan)}.get(state["stage"], 0)
            stopped: tuple | None = None  # (phase, size) of a stage stopped early
            for i in range(first, len(plan)):
                phase, size, lr = plan[i]
                if stopped == (phase, size):
                    continue
                lr = free.lr(i, lr)
                frozen = s.is_backbone and s.weights != "none" and i < s.freeze_epochs
                self._set_frozen(model, i < s.freeze_epochs, lr)
                subset = self._undersample_subset() if phase == "undersample" else None
                ds_n = self._dataset("train", size, training=True, subset=subset)
                row = self._run_epoch(model, phase, size, lr, ds_n, note="base frozen" if frozen else "", tell=False)
                if s.keep == "best":
                    self.best.offer(model, row, self.history)
                free.after_epoch(model, i, row)
                early_stop = None
                if s.patience and stale_epochs(self.history) >= s.patience and i + 1 < len(plan) and plan[i + 1][:2] == (phase, size):
                    stopped = (phase, size)
                    row["note"] = (row["note"] + "; " if row["note"] else "") + f"early stop: no better {s.monitor} for {s.patience} epochs"
                    early_stop = (f"[{self.name}] early stop of {phase} {size}px after epoch {row['epoch']}: "
                                  f"no better {s.monitor} for {s.patience} epochs")
                    i = max(j for j in range(len(plan)) if plan[j][:2] == (phase, size))
                self._save_resume(model, "plan", {"elapsed": elapsed_before + time.perf_counter() - started, "next_plan": i + 1})
                self._tell()  # the epoch line comes once its resume point is on disk
                if early_stop:
                    self.log(early_stop)
            if s.keep == "last" and state["stage"] in ("start", "plan") and self.history:
                self.best.keep_last(model, self.history)
            elif self.best.path is not None:
                model.load_weights(self.best.path)
            free.after_plan(model)
            rounds_done = int(state.get("rounds_done", 0))
            for r in range(rounds_done, s.retrain_rounds):
                self._retrain_round(model, r)
                self._save_resume(model, "retrain", {"rounds_done": r + 1, "elapsed": elapsed_before + time.perf_counter() - started})
        seconds = elapsed_before + time.perf_counter() - started
        result = self._finish(model, seconds)
        free.done()
        return result

    # ----- artifacts ---------------------------------------------------------------------
    def _finish(self, model, seconds: float) -> TrainResult:
        from members.training.loop import predict_probs

        size = self.spec.input_size
        results = {}
        regression = None
        if self.spec.head == "regression" and len(self.labels["val"]):
            from members.model.regression import calibrate_head, describe_cuts

            val_probs = predict_probs(model, self._dataset("val", size, training=False)[0], tta=self.spec.tta)
            prior = np.bincount(np.concatenate([self.labels["train"], self.labels["val"]]).astype(np.int64),
                                minlength=self.k)
            regression = calibrate_head(model, val_probs, self.labels["val"], prior)
            self.log(f"[{self.name}] {describe_cuts(regression)}")
        predictions = {}
        for split in ("val", "test"):
            if len(self.labels[split]) == 0:
                probs = np.zeros((0, self.k))
            else:
                probs = predict_probs(model, self._dataset(split, size, training=False)[0], tta=self.spec.tta)
            predictions[split] = probs
            save_predictions(self.dir / f"{split}.npz", probs, self.labels[split], self.rows[split]["row_id"].to_numpy(), self.data.fingerprint)
            results[split] = score(self.labels[split], probs, num_classes=self.k) if len(probs) else {}
        from members.model.stamp import member_record

        save_model(model, self.dir / "model.keras",  # a copy taken elsewhere still says how its images are prepared
                   stamp=member_record(self.spec.to_toml(preset=self.preset), size, self.data.classes))
        write_history(self.dir / "history.csv", self.history, ordinal=self.data.ordinal)
        chosen = best_epoch(self.history)
        title = self.name if self.name == self.preset else f"{self.name} (preset {self.preset})"
        plot_curves(self.dir / "curves.png", self.history, title, monitor=self.spec.monitor, best_epoch=chosen,
                    keep=self.spec.keep, metric_note=("at the training cuts; metrics.json holds the tuned cuts' scores"
                                                      if self.spec.head == "regression" else None))
        metrics = {
            "name": self.name, "preset": self.preset, "num_classes": self.k, "classes": list(self.data.classes),
            "ordinal": bool(self.data.ordinal),
            "fingerprint": self.data.fingerprint, "model_sha256": atomic.sha256_file(self.dir / "model.keras"),
            "predictions_sha256": predictions_sha256(self.dir),
            "input_size": size, "stage_sizes": list(self.spec.stage_sizes), "head": self.spec.head,
            "params": int(model.count_params()), "epochs_run": len(self.history),
            "best_epoch": chosen, "monitor": self.spec.monitor,
            "train_seconds": round(seconds, 3),
            **self.epoch_log.speed(self.history),
            "input_wait_share_first_epoch": self.timing["first_wait_share"],
            "tta": self.spec.tta, "train_size": len(self.labels["train"]),
            "val": results["val"], "test": results["test"],
            **health(name=self.name, spec=self.spec, classes=self.data.classes, labels=self.labels,
                     predictions=predictions, results=results, history=self.history, log=self.log,
                     ordinal=self.data.ordinal),
        }
        if regression is not None:
            metrics["regression"] = regression
        metrics = qwk_for_task(metrics, ordinal=bool(self.data.ordinal), num_classes=self.k)  # no order: no QWK
        shutil.rmtree(self.dir / ".cache", ignore_errors=True)
        atomic.write_json(self.dir / "metrics.json", _jsonable(metrics))
        shutil.rmtree(self.resume_dir, ignore_errors=True)
        return TrainResult(self.name, self.dir, metrics)


def _remove_temp_files(directory: Path) -> None:
    """Delete the temp files of writes a killed run left unfinished (safe: the caller holds the lock).

    Lock temp files (``.lock.<pid>...``) are left alone: another process may be about to link one.
    """
    for path in directory.glob(".*.tmp*"):
        if path.is_file() and not path.name.startswith(".lock."):
            path.unlink(missing_ok=True)


def tidy_complete(directory: Path) -> None:
    """Clear a complete member's folder (and its fold copies) of what a killed run left in it: resume points
    (a run that ends deletes its own) and the temp files of unfinished writes. Called before it is swapped in,
    so that the finished member carries no scratch a later run could mistake for work to resume."""
    for resume in [directory / RESUME_DIR, *directory.glob(f"*/*/{RESUME_DIR}")]:
        shutil.rmtree(resume, ignore_errors=True)
    for folder in [directory, *(p.parent for p in directory.glob("*/*/metrics.json"))]:
        _remove_temp_files(folder)


RESERVED_NAMES = ("hard", "soft", "weighted", "caruana", "stack")
MAX_NAME = 100  # a member's name is part of file names (snapshots add -snapN, staging folders a suffix)  # vote's combiners (ensemble.constants.METHODS)


def member_dir(workdir: str | Path, name: str, *, new: bool = False) -> Path:
    """``<workdir>/members/<name>``, refusing names that are not plain folder names.

    ``new``: the name of a member about to be made (its folder does not exist yet) must also keep to letters,
    digits, '-', '_' and '.', and not be a combiner's name: a member called ``soft``, ``soft+thr`` or
    ``majority class`` was shown in vote's tables as that combiner or baseline. Existing folders keep their names.
    """
    staging = name.startswith(".") and name.endswith(".replacement-folds") and not new  # folds.staging_name
    if not name or name in (".", "..") or any(c in name for c in "/\\\0") or (name.startswith(".") and not staging):
        raise UserError(f"Member name {name!r} is not a plain folder name; use letters, digits, '-' and '_'.")
    path = Path(workdir) / "members" / name
    try:
        exists = new and path.exists()
    except OSError:  # a name longer than the file system allows
        exists = False
    if new and not exists:
        if len(name) > MAX_NAME:
            raise UserError(f"Member name {name[:20]!r}... is {len(name)} characters long; names of at most "
                            f"{MAX_NAME} keep every file name under the file system's limit: pass a shorter --name.")
        if not all(c.isalnum() or c in "-_." for c in name):
            raise UserError(f"Member name {name!r} has characters other than letters, digits, '-', '_' and '.'; "
                            "vote's tables and predict's columns name members by it: pass e.g. --name "
                            f"{''.join(c if c.isalnum() or c in '-_.' else '-' for c in name).strip('-') or 'member'}.")
        if name.lower() in RESERVED_NAMES:
            raise UserError(f"Member name {name!r} is the name of one of vote's combiners ({', '.join(RESERVED_NAMES)}), "
                            f"and the report would show the two under one name; pass another --name, e.g. {name}-member.")
    return path


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
    from members.data.classes import check_task
    from members.data.dataset import load_dataset
    from members.training.guard import refusal
    from members.infra.transaction import recover_dir
    from members.infra.validate import check_memory

    if log is None:
        import sys

        def log(line: str) -> None:
            print(line, file=sys.stderr, flush=True)

    data = load_dataset(workdir)
    spec = check_task(spec, data.ordinal, log, preset)  # nominal classes: no grade heads, no QWK monitoring
    directory = member_dir(workdir, name, new=True)
    check_memory(spec, data.num_classes)
    data.check_images()  # before the member's folder is made or TensorFlow imported
    from members.training.snapshots import check_early_stop

    check_early_stop(spec)
    from members.model.spec import check_trainable

    check_trainable(spec)
    done = _existing(directory, spec, data.fingerprint)
    if done.complete and not done.differences:  # read only, no lock: a rerun that trains nothing writes nothing
        return _kept(directory, done, log)  # (a read-only workdir is no obstacle); else decided again under the lock
    if spec.is_backbone and not (done.complete and not done.differences):  # a rerun of a complete one trains nothing
        from members.model.backbones import resolve_weights

        resolve_weights(spec)  # a weights file that is not there, ImageNet weights offline: one sentence, no folder
    if spec.snapshots:  # its snapshot members' folders too (checked again as each is written)
        from members.training.snapshots import check_snapshot_folders

        check_snapshot_folders(data, name, spec, force=force)
    with MemberLock(directory) as lock:
        recover_dir(directory, complete="metrics.json")
        if not lock.path.exists():  # the recovered folder came without our lock
            lock.acquire()
        existing = _existing(directory, spec, data.fingerprint)  # again, under the lock
        if existing.complete and not existing.differences:
            return _kept(directory, existing, log)
        if existing.complete and not force:
            raise refusal(name, directory, existing.differences)
        _say_unfinished(directory, name, log)
        # imports TensorFlow: only once the workdir and the lock are fine, so refusals come at once
        from members.training.loop import is_terminal

        target = directory.with_name(f".{name}.replacement") if existing.complete else directory
        if target != directory and (target / "metrics.json").exists():
            staged = _existing(target, spec, data.fingerprint)
            if staged.complete and not staged.differences:  # finished by a run killed before its swap: swap now
                _swap_in(target, directory, log)
                _say_if_voted(Path(workdir), name, log)
                from members.training.snapshots import retire_snapshots

                retire_snapshots(workdir, name, spec, log)
                return TrainResult(name, directory, staged.metrics)
            shutil.rmtree(target, ignore_errors=True)  # another complete member (one a killed swap set aside)
        target.mkdir(parents=True, exist_ok=True)
        _remove_temp_files(target)
        atomic.write_text(target / "spec.toml", spec.to_toml(preset=preset))
        trainer = Trainer(data, spec, name, target, preset=preset, log=log,
                          show_progress=is_terminal() if show_progress is None else show_progress)
        trainer.force = force
        result = trainer.run()
        if target != directory:
            _swap_in(target, directory, log)
            result = TrainResult(name, directory, result.metrics)
            _say_if_voted(Path(workdir), name, log)
        if force:  # the replaced run's snapshots this run did not write (the member complete or not before)
            from members.training.snapshots import retire_snapshots

            retire_snapshots(workdir, name, spec, log)
        return result


def _kept(directory: Path, existing, log) -> TrainResult:
    """The complete member ``directory``, kept: it has this spec and data, so nothing is trained."""
    name = directory.name
    log(f"[{name}] already complete with the same spec and data: nothing to train "
        "(another copy trains under another --name with another --seed)")
    begun = directory.with_name(f".{name}.replacement")
    if begun.is_dir() and not (begun / "metrics.json").exists():  # a killed --force run's epochs, kept
        log(f"[{name}] note: {begun} holds the unfinished replacement an interrupted --force run began; run "
            "that command again to resume it, or delete the folder to free its space")
    return TrainResult(name, directory, existing.metrics)


def _existing(directory: Path, spec: MemberSpec, fingerprint: str):
    """What ``directory`` holds against this plain member (:func:`members.training.guard.existing_member`); a
    complete k-fold member differs by its folds."""
    from members.training.guard import existing_member

    existing = existing_member(directory, spec, fingerprint)
    if existing.complete and existing.metrics.get("folds"):  # a bagged member is not this plain one
        existing = replace(existing, differences=[*existing.differences, f"folds {existing.metrics['folds']} → none"])
    return existing


def _say_unfinished(directory: Path, name: str, log) -> None:
    """Before a run trains into a member folder holding a ``model.keras`` but no ``metrics.json`` (a run killed before
    its last write, or a metrics.json deleted since): say that its files are replaced, unless a resume point goes on
    from it (the trainer says so)."""
    if (directory / "model.keras").is_file() and not (directory / "metrics.json").exists() \
            and not (directory / RESUME_DIR / "state.json").is_file():
        log(f"[{name}] {directory} holds a model.keras but no metrics.json (a run that did not finish, or its "
            "metrics.json deleted since): that unfinished member is not used, this run trains it anew and replaces "
            "its files")


def _say_if_voted(workdir: Path, name: str, log) -> None:
    """After ``--force`` replaced member ``name``: say so when the workdir's voted ensemble used the old one."""
    import json

    try:
        voted = (json.loads((workdir / "ensemble" / "manifest.json").read_text(encoding="utf-8")).get("members")
                 or {})
    except (OSError, ValueError, AttributeError):
        return
    if name in voted:
        log(f"[{name}] the ensemble in {workdir / 'ensemble'} was voted with the member this run replaced: run vote "
            "again before predict or explain, which refuse that ensemble until then")


def _swap_in(new: Path, directory: Path, log) -> None:
    """Replace the complete member ``directory`` by the complete member ``new`` in one step."""
    from members.infra.transaction import replace_dir

    if (directory / "train.log").exists() and not (new / "train.log").exists():
        shutil.copy2(directory / "train.log", new / "train.log")
    tidy_complete(new)
    MemberLock(new).acquire()  # the swapped-in folder carries our lock (the caller releases it)
    try:
        replace_dir(new, directory, note=f"The new member was committed: {directory} holds it now.")
    except OSError as exc:
        raise atomic._write_error(directory, exc) from exc
    log(f"[{directory.name}] the new member replaced the previous one")
