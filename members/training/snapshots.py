"""Members for free: snapshot ensembles (cosine restarts) and stochastic weight averaging (SWA).

Two spec fields, both off by default, add to one training run what usually costs several:

- ``snapshots = M`` (Huang et al., "Snapshot Ensembles: Train 1, get M for free", 2017): the
  ``train`` phase's epochs are cut into M cycles; within a cycle of L epochs the learning rate
  of epoch ``t`` is ``lr / 2 · (1 + cos(π t / L))``, restarting at ``lr`` with each cycle. The
  weights at each cycle's end are kept and, once the run is done, each becomes a member folder
  of its own, ``members/<name>-snap<j>`` (``j`` = 1..M), with every artifact of the contract
  (``spec.toml``, ``model.keras``, ``history.csv`` up to that epoch, ``curves.png``, ``val.npz``,
  ``test.npz`` and, last, ``metrics.json`` with ``snapshot``: j, ``snapshots``: M and
  ``snapshot_of``: the run's name). The run's own member is written as usual (its best epoch).
- ``swa = N`` (Izmailov et al., "Averaging Weights Leads to Wider Optima", 2018): the weights
  after each of the plan's last N epochs are averaged; the average replaces the best epoch's
  weights as the member, after its batch-norm statistics are recomputed with one pass over
  the training images (each batch weighted equally: an exact mean, not a moving one).

Both keep their state beside the resume point (``.snapshots/`` and ``.swa/``, named by epoch),
so a killed run resumes without losing a snapshot or a share of the average. The trainer calls
:class:`FreeMembers` at five points: :meth:`~FreeMembers.start`, :meth:`~FreeMembers.lr`,
:meth:`~FreeMembers.after_epoch`, :meth:`~FreeMembers.after_plan` and :meth:`~FreeMembers.done`.
"""

from __future__ import annotations

import copy
import math
import shutil

import numpy as np

from members.infra import atomic
from members.infra.errors import UserError

SNAP_DIR = ".snapshots"
SWA_DIR = ".swa"


def snapshot_name(name: str, j: int) -> str:
    """The member name of snapshot ``j`` (1-based) of run ``name``: ``<name>-snap<j>``."""
    return f"{name}-snap{j}"


def cycle_ends(train_epochs: int, cycles: int) -> list[int]:
    """The 0-based epoch at which each of ``cycles`` near-equal cycles of ``train_epochs`` ends.

    Example:
        >>> cycle_ends(10, 3)
        [3, 6, 9]
    """
    return [int(part[-1]) for part in np.array_split(np.arange(train_epochs), cycles)]


def cosine_lr(base: float, epoch: int, ends: list[int]) -> float:
    """The learning rate of ``epoch`` (0-based) under cosine annealing with restarts at ``ends``.

    Example:
        >>> [round(cosine_lr(0.1, e, [3, 7]), 4) for e in range(8)]
        [0.1, 0.0854, 0.05, 0.0146, 0.1, 0.0854, 0.05, 0.0146]
    """
    start = 0
    for end in ends:
        if epoch <= end:
            length = end - start + 1
            return base / 2 * (1 + math.cos(math.pi * (epoch - start) / length))
        start = end + 1
    return base


class FreeMembers:
    """Snapshots and SWA for one :class:`members.training.trainer.Trainer` (a no-op when the spec asks for neither)."""

    def __init__(self, trainer):
        self.t = trainer
        spec = trainer.spec
        self.train_epochs = spec.epochs * len(spec.stage_sizes)
        self.plan_epochs = self.train_epochs + spec.undersample_epochs
        self.ends = cycle_ends(self.train_epochs, spec.snapshots) if spec.snapshots else []
        self.swa_from = self.plan_epochs - spec.swa if spec.swa else None  # first averaged epoch (0-based)
        self.snap_dir, self.swa_dir = trainer.dir / SNAP_DIR, trainer.dir / SWA_DIR
        self._avg: list[np.ndarray] | None = None

    @property
    def active(self) -> bool:
        return bool(self.ends) or self.swa_from is not None

    # ----- the hooks -----------------------------------------------------------------------
    def start(self, resumed_epochs: int | None) -> None:
        """Before the first epoch: a fresh run (``None``) drops old state; a resumed one reloads the average.

        Raises:
            UserError: a snapshot member's folder is complete with another spec, without ``force``, or holds
                another member (finished members are never overwritten; see :mod:`members.training.guard`).
        """
        if self.ends:
            check_snapshot_folders(self.t.data, self.t.name, self.t.spec, force=self.t.force)
        if resumed_epochs is None:
            shutil.rmtree(self.snap_dir, ignore_errors=True)
            shutil.rmtree(self.swa_dir, ignore_errors=True)
            return
        if self.swa_from is not None and resumed_epochs > self.swa_from:
            path = self.swa_dir / f"avg-{resumed_epochs}.npz"
            if path.is_file():
                data = atomic.load_npz(path)
                self._avg = [data[f"w{i}"] for i in range(len(data))]
            else:
                self.t.log(f"[{self.t.name}] the weight average of epoch {resumed_epochs} is missing; averaging "
                           "the remaining epochs only")

    def lr(self, epoch: int, lr: float) -> float:
        """The learning rate of plan epoch ``epoch``: cosine restarts in the train phase with snapshots."""
        return cosine_lr(self.t.spec.lr, epoch, self.ends) if self.ends and epoch < self.train_epochs else lr

    def after_epoch(self, model, epoch: int, row: dict) -> None:
        """Keep a snapshot at a cycle's end; add the weights to the average in the SWA window."""
        if epoch in self.ends:
            j = self.ends.index(epoch) + 1
            self.snap_dir.mkdir(parents=True, exist_ok=True)
            model.save_weights(self.snap_dir / f"snap{j}.weights.h5")
            row["note"] = (row["note"] + "; " if row["note"] else "") + f"snapshot {j}"
        if self.swa_from is not None and epoch >= self.swa_from:
            weights = [np.asarray(w, dtype=np.float64) for w in model.get_weights()]
            n = epoch - self.swa_from + 1
            self._avg = weights if self._avg is None or n == 1 else [a + (w - a) / n for a, w in zip(self._avg, weights)]
            atomic.save_npz(self.swa_dir / f"avg-{epoch + 1}.npz", **{f"w{i}": a for i, a in enumerate(self._avg)})
            for old in self.swa_dir.glob("avg-*.npz"):
                if old.name != f"avg-{epoch + 1}.npz":
                    old.unlink(missing_ok=True)
            row["note"] = (row["note"] + "; " if row["note"] else "") + f"averaged ({n}/{self.t.spec.swa})"

    def after_plan(self, model) -> None:
        """After the plan: write every snapshot member; with SWA, put the averaged weights in ``model``."""
        if self.ends:
            self._write_snapshots(model)
        if self.swa_from is not None and self._avg is not None:
            model.set_weights([a.astype(w.dtype) for a, w in zip(self._avg, model.get_weights())])
            batches = recompute_batch_norm(model, self.t._dataset("train", self.t.spec.input_size, training=False)[0])
            self.t.log(f"[{self.t.name}] weights averaged over the last {self.t.spec.swa} epochs; batch-norm "
                       f"statistics recomputed over {batches} training batches")
            self.t.history[-1]["note"] += f"; member = SWA average of the last {self.t.spec.swa} epochs"

    def done(self) -> None:
        """After the member is written: drop the kept snapshot weights and the running average."""
        shutil.rmtree(self.snap_dir, ignore_errors=True)
        shutil.rmtree(self.swa_dir, ignore_errors=True)

    # ----- snapshots -----------------------------------------------------------------------
    def _taken_since(self, folder: Path) -> str | None:
        """Why ``folder`` now holds a finished member this run may not replace (imported, another member's, or
        this member's snapshot with another spec without ``force``), else None."""
        from members.training.guard import existing_member

        state = existing_member(folder, self.t.spec, self.t.data.fingerprint)
        if not state.complete:
            return None
        other = _other_member(state, self.t.name)
        if other:
            return f"became {other}"
        if state.differences and not self.t.force:
            return f"became a member with another spec ({'; '.join(state.differences)})"
        return None

    def _write_snapshots(self, model) -> None:
        from members.infra.lock import MemberLock
        from members.training.trainer import _swap_in, member_dir

        keep = self.t.dir / SNAP_DIR / ".current.weights.h5"
        model.save_weights(keep)
        workdir = self.t.data.workdir
        for j, end in enumerate(self.ends, start=1):
            name = snapshot_name(self.t.name, j)
            folder = member_dir(workdir, name)
            if j == len(self.ends) and last_snapshot_is_member(self.t.spec):
                self.t.log(f"[{self.t.name}] snapshot {j}/{len(self.ends)} (epoch {end + 1}) is the member itself "
                           "(keep = \"last\"): not written twice, so that vote does not count it twice")
                continue
            lock = MemberLock(folder)
            try:
                lock.acquire()
            except UserError as exc:  # another run is training a member of that name right now: never wait on it
                self.t.log(f"[{self.t.name}] WARNING: snapshot {j} was not written: {exc}")
                continue
            try:
                taken = self._taken_since(folder)
                if taken:  # checked at the start, filled while this run trained: never replaced
                    self.t.log(f"[{self.t.name}] WARNING: snapshot {j} was not written: {folder} {taken} while this "
                               "run trained, and a finished member is never replaced; train again with another "
                               "--name to get the snapshots.")
                    continue
                # a finished snapshot (an earlier run's) stays whole until its successor is complete
                target = folder.with_name(f".{name}.replacement") if (folder / "metrics.json").is_file() else folder
                if target != folder:
                    shutil.rmtree(target, ignore_errors=True)  # a replacement an earlier crash left half-written
                target.mkdir(parents=True, exist_ok=True)
                model.load_weights(self.snap_dir / f"snap{j}.weights.h5")
                atomic.write_text(target / "spec.toml", self.t.spec.to_toml(preset=self.t.preset))
                snap = copy.copy(self.t)  # the same data and datasets, another folder, the history to this epoch
                snap.dir, snap.name, snap.resume_dir, snap._datasets = target, name, target / ".resume", {}
                snap.history = [dict(row) for row in self.t.history[: end + 1]]
                result = snap._finish(model, float(sum(r.get("seconds", 0.0) for r in snap.history)))
                metrics = {**result.metrics, "snapshot": j, "snapshots": len(self.ends), "snapshot_of": self.t.name,
                           "best_epoch": end + 1}
                atomic.write_json(target / "metrics.json", metrics)
                if target != folder:
                    _swap_in(target, folder, self.t.log)
            finally:
                lock.release()
            self.t.log(f"[{self.t.name}] snapshot {j}/{len(self.ends)} (epoch {end + 1}) → {folder}")
        model.load_weights(keep)
        keep.unlink(missing_ok=True)


def recompute_batch_norm(model, dataset) -> int:
    """Reset every BatchNormalization layer's moving statistics and set them to their exact mean over ``dataset``.

    Batch ``t`` enters with momentum ``(t-1)/t``, so after the pass the moving mean and
    variance are the plain averages of the batch statistics. The model is called eagerly in
    training mode (nothing but the statistics changes: no gradient is applied).

    Returns:
        The number of batches seen (0 when the model has no batch norm).
    """
    import keras

    layers = [layer for layer in _all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]
    if not layers:
        return 0
    saved = [layer.momentum for layer in layers]
    for layer in layers:
        layer.moving_mean.assign(np.zeros(layer.moving_mean.shape))
        layer.moving_variance.assign(np.ones(layer.moving_variance.shape))
    t = 0
    try:
        for batch in dataset:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            t += 1
            for layer in layers:
                layer.momentum = (t - 1) / t
            model(keras.ops.cast(x, "float32"), training=True)
    finally:
        for layer, momentum in zip(layers, saved):
            layer.momentum = momentum
    return t


def _all_layers(model) -> list:
    out = []
    for layer in model.layers:
        out.append(layer)
        if hasattr(layer, "layers"):
            out += _all_layers(layer)
    return out


def check_early_stop(spec) -> None:
    """Before training (not when a member's spec.toml is read back: members trained before this check still load):
    refuse ``patience`` with ``snapshots`` or ``swa``, whose cycles and averaging window an early stop would cut.

    Raises:
        UserError: naming both settings and the fix.
    """
    for field, what in (("snapshots", "its cycles end, leaving snapshots never taken"),
                        ("swa", "the averaging window, so fewer epochs than swa would be averaged")):
        if getattr(spec, field) and spec.patience:
            raise UserError(f"{field} and patience cannot be combined: early stopping would end the train phase "
                            f"before {what}; set patience = 0 (the schedule is the plan). Received: "
                            f"{field}={getattr(spec, field)}, patience={spec.patience}")


def check_spec(spec) -> None:
    """Raise :class:`members.infra.errors.UserError` when ``snapshots`` or ``swa`` do not fit the spec's epochs."""
    from members.infra.errors import UserError

    train_epochs = spec.epochs * len(spec.stage_sizes)
    if spec.snapshots and not 2 <= spec.snapshots <= train_epochs:
        raise UserError(f"snapshots must be 0 (off) or from 2 to the train phase's {train_epochs} epochs (one cycle "
                        f"each at least); raise epochs or lower snapshots. Received: snapshots={spec.snapshots}")
    if spec.snapshots < 0 or spec.swa < 0:
        raise UserError(f"snapshots and swa must be non-negative (0 = off). Received: snapshots={spec.snapshots}, "
                        f"swa={spec.swa}")
    if spec.swa:
        plan = train_epochs + spec.undersample_epochs
        if spec.swa > plan:
            raise UserError(f"swa averages the last N epochs and must be at most the plan's {plan} epochs; lower "
                            f"swa or raise epochs. Received: swa={spec.swa}")
        if spec.snapshots:
            raise UserError("swa and snapshots cannot be combined: SWA makes one member of the last epochs, snapshots "
                            "make a member of each cycle; choose one. Received: "
                            f"snapshots={spec.snapshots}, swa={spec.swa}")
        if spec.retrain_rounds:
            raise UserError("swa cannot be combined with retrain_rounds: a retraining round is kept only if it beats "
                            "the best epoch, which the average replaces; set one of them to 0. Received: "
                            f"swa={spec.swa}, retrain_rounds={spec.retrain_rounds}")


def last_snapshot_is_member(spec) -> bool:
    """Whether the last snapshot has the very weights the member keeps: ``keep = "last"`` and nothing after the train
    phase (no undersampled fine-tuning, no retraining rounds; SWA excludes snapshots)."""
    return spec.keep == "last" and not spec.undersample_epochs and not spec.retrain_rounds


def snapshot_names(name: str, spec) -> list[str]:
    """The snapshot members a run of ``spec`` writes: ``<name>-snap1..M``, less the last when it is the member."""
    count = spec.snapshots - (1 if spec.snapshots and last_snapshot_is_member(spec) else 0)
    return [snapshot_name(name, j) for j in range(1, count + 1)]


def retire_snapshots(workdir, name: str, spec, log) -> None:
    """After ``--force`` replaced member ``name``: delete the complete snapshot members of the replaced run that
    this run did not write (more snapshots then, or the last one now being the member), so vote never counts a
    snapshot of another run as one of this member's."""
    import json
    import re

    from members.infra.lock import MemberLock
    from members.training.trainer import member_dir

    kept = set(snapshot_names(name, spec))
    for folder in sorted(member_dir(workdir, name).parent.glob(f"{name}-snap*")):
        if not re.fullmatch(rf"{re.escape(name)}-snap\d+", folder.name) or folder.name in kept:
            continue
        try:
            of = json.loads((folder / "metrics.json").read_text(encoding="utf-8")).get("snapshot_of")
        except (OSError, ValueError, AttributeError):
            continue
        if of == name:
            try:
                with MemberLock(folder):
                    (folder / "metrics.json").unlink()  # first: a crash in between leaves an incomplete member
                    shutil.rmtree(folder)
            except UserError as exc:  # another run holds it: leave it, the member itself is done
                log(f"[{name}] WARNING: {folder.name}, a snapshot of the run --force replaced, was not removed: {exc}")
                continue
            log(f"[{name}] removed {folder.name}, a snapshot of the run --force replaced, which this run does not "
                "write")


def check_snapshot_folders(data, name: str, spec, *, force: bool = False) -> None:
    """Before a snapshot run touches any folder: refuse when a snapshot's folder holds a finished member this run
    may not replace — another member's (a name taken), or this member's snapshot of another spec without ``force``.

    Raises:
        UserError: naming the folder and what to do.
    """
    from members.training.guard import existing_member, refusal
    from members.training.trainer import member_dir

    for j, snap in enumerate(snapshot_names(name, spec), start=1):
        folder = member_dir(data.workdir, snap)
        state = existing_member(folder, spec, data.fingerprint)
        if not state.complete:
            continue
        other = _other_member(state, name)
        if other:
            raise UserError(f"Member {name!r} would write its snapshot {j} to {folder}, which holds {other}; a "
                            "finished member is never overwritten: choose another --name for this run.")
        if state.differences and not force:
            raise refusal(folder.name, folder, state.differences, option="--name for this run")


def _other_member(state, name: str) -> str | None:
    """What a complete snapshot folder holds when it is not a snapshot of member ``name``, in words; else None."""
    if state.metrics.get("snapshot_of") == name:
        return None
    return "an imported member" if state.metrics.get("imported") else "another member, not a snapshot of it"
