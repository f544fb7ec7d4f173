"""Val-only ablation of the rule that picks a member's best epoch (split-half on its val rows).

    python bench/monitor.py eyepacs512 --preset deep --preset fundus --workdir /work/runs/mon-ep512

Trains each preset once on the set's train split with early stopping off (``patience = 0``),
keeping every epoch's val probabilities (``<workdir>/members/mon-<preset>/epochs.npz``; a member
whose file exists is not trained again). Then, ``--repeats`` times, the val rows are split in two
halves at random: each rule below picks the epoch on one half — with ``--patience`` (default 8, the
recipe presets' early stopping before they kept their last epoch) simulated stage by stage, as the
trainer does — the member's cuts are placed on that half as
:func:`members.model.regression.fit_cuts` places them, and the other half scores the pick (QWK,
accuracy, balanced accuracy at those cuts; AUC). The test split is never read. Rules:

- ``val_qwk at 0.5, 1.5, …``: QWK of the argmax grades at the training cuts (the rule before);
- ``val_qwk prior-matched``: QWK of the raw scores cut at the quantiles that give each grade its
  train-split share (what the member's cuts start from after training);
- ``val_loss``; ``val_auc`` (macro one-vs-rest); ``last epoch`` (a reference).

Ties are broken by the fitting half's log-loss, as the trainer breaks them. Results:
``bench/results/monitor-<set>.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench._common import (  # noqa: E402
    add_set_result_argument, add_set_workdir_arguments, guard_set_output, run_script, workdir_from)
from bench.sets import SETS, prepare_set  # noqa: E402

RULES = ("val_qwk at 0.5, 1.5, …", "val_qwk prior-matched", "val_loss", "val_auc", "last epoch")


def train_capturing(workdir: Path, preset: str, seed: int, patience: int | None = None, *,
                    force: bool = False) -> Path:
    """Train ``preset`` with early stopping off; write every epoch's val probabilities to ``epochs.npz``.

    A member whose ``epochs.npz`` exists and was trained on the workdir's split is not trained again;
    one trained on another split (the workdir prepared again with ``--force``) is retrained with ``force``.
    """
    import members.training.loop as loop
    from members.infra import atomic
    from members.model.spec import load_preset
    from members.training.trainer import train_member

    name = f"mon-{preset}"
    out = workdir / "members" / name / "epochs.npz"
    if out.exists() and _same_split(workdir, name):
        return out
    spec = load_preset(preset)
    patience = spec.patience if patience is None else patience
    spec = spec.replace(seed=seed, patience=0, keep="best")
    captured: list[np.ndarray] = []
    original = loop.evaluate

    def evaluate(labels, probs, num_classes):
        captured.append(np.asarray(probs, np.float64))
        return original(labels, probs, num_classes)

    loop.evaluate = evaluate
    started = time.perf_counter()
    try:
        result = train_member(workdir, spec, name=name, preset=preset, force=force)
    finally:
        loop.evaluate = original
    import pandas as pd

    history = pd.read_csv(workdir / "members" / name / "history.csv")
    val = atomic.load_npz(workdir / "members" / name / "val.npz")
    atomic.save_npz(out, probs=np.stack(captured), labels=np.asarray(val["labels"], np.int64),
                    stage=np.array([f"{p}:{s}" for p, s in zip(history["phase"], history["input_size"])]),
                    patience=np.array(patience), train_counts=np.bincount(_train_labels(workdir), minlength=result.metrics["num_classes"]),
                    seconds=np.array(time.perf_counter() - started))
    return out


def _same_split(workdir: Path, name: str) -> bool:
    """Whether member ``name`` was trained on the split ``workdir`` holds now (its metrics.json's fingerprint)."""
    from members.infra import atomic
    from members.infra.errors import UserError

    try:
        trained = atomic.read_json(workdir / "members" / name / "metrics.json").get("fingerprint")
        return trained == atomic.read_json(workdir / "dataset.json").get("fingerprint")
    except (UserError, OSError, AttributeError):
        return False


def _train_labels(workdir: Path) -> np.ndarray:
    from members.data.dataset import load_dataset

    return load_dataset(workdir).rows("train")["label"].to_numpy(np.int64)


def epoch_values(probs: np.ndarray, y: np.ndarray, train_counts: np.ndarray) -> dict[str, np.ndarray]:
    """Per epoch, every rule's value (higher is better) and the log-loss, on rows ``y``."""
    from members.model.regression import prior_matched_qwk
    from members.scoring import score

    k = probs.shape[2]
    out = {rule: np.zeros(len(probs)) for rule in RULES}
    loss = np.zeros(len(probs))
    for e, p in enumerate(probs):
        s = score(y, p, num_classes=k)
        out["val_qwk at 0.5, 1.5, …"][e] = s["qwk"]
        out["val_qwk prior-matched"][e] = prior_matched_qwk(p, y, train_counts)
        out["val_loss"][e] = -s["log_loss"]
        out["val_auc"][e] = s["auc"] if np.isfinite(s["auc"]) else 0.5
        out["last epoch"][e] = e
        loss[e] = s["log_loss"]
    return out | {"_loss": loss}


def pick(values: np.ndarray, loss: np.ndarray, stage: np.ndarray, patience: int) -> int:
    """The epoch the trainer keeps when ``values`` is its monitor: ties by loss, patience per stage."""
    best, best_v, best_l = None, -np.inf, np.inf
    stale, e = 0, 0
    while e < len(values):
        v = values[e]
        if v > best_v + 1e-12 or (abs(v - best_v) <= 1e-12 and loss[e] < best_l - 1e-6):
            best, best_v, best_l, stale = e, v, loss[e], 0
        else:
            stale += 1
        nxt = e + 1
        if patience and stale >= patience and nxt < len(values) and stage[nxt] == stage[e]:
            while nxt < len(values) and stage[nxt] == stage[e]:
                nxt += 1
            stale = 0
        if nxt < len(values) and stage[nxt] != stage[e]:
            stale = 0
        e = nxt
    return int(best)


def split_half(file: Path, repeats: int, seed: int) -> dict:
    """Mean held-out figures of each rule's pick over ``repeats`` random halves of the val rows."""
    from members.infra.atomic import load_npz
    from members.model.cuts import kappa_or_zero
    from members.model.regression import fit_cuts, recover_score
    from members.scoring import score

    d = load_npz(file)
    probs, y, stage = np.asarray(d["probs"]), np.asarray(d["labels"]), np.asarray(d["stage"]).astype(str)
    patience, counts = int(d["patience"]), np.asarray(d["train_counts"], np.int64)
    k = probs.shape[2]
    grade_cuts = np.arange(k - 1) + 0.5
    rng = np.random.default_rng(seed)
    sums = {rule: np.zeros(4) for rule in RULES}
    chosen = {rule: [] for rule in RULES}
    for _ in range(repeats):
        order = rng.permutation(len(y))
        fit, held = order[: len(y) // 2], order[len(y) // 2:]
        values = epoch_values(probs[:, fit], y[fit], counts)
        present = np.unique(y[held])
        for rule in RULES:
            e = pick(values[rule], values["_loss"], stage, patience)
            chosen[rule].append(e + 1)
            raw = recover_score(probs[e], grade_cuts, 1.0)
            cuts = np.asarray(fit_cuts(raw[fit], y[fit], k, counts + np.bincount(y[fit], minlength=k))["cuts"])
            pred = np.searchsorted(cuts, raw[held], side="right")
            recall = [np.mean(pred[y[held] == c] == c) for c in present]
            auc = score(y[held], probs[e][held], num_classes=k)["auc"]
            sums[rule] += (kappa_or_zero(y[held], pred, k), np.mean(pred == y[held]), np.mean(recall), auc)
    return {rule: dict(zip(("qwk", "accuracy", "balanced_accuracy", "auc"), (s / repeats).round(4).tolist()))
            | {"mean_epoch": round(float(np.mean(chosen[rule])), 1)} for rule, s in sums.items()} | {
        "_epochs": int(len(probs)), "_val_rows": int(len(y)), "_train_seconds": round(float(d["seconds"]), 1)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sorted(SETS))
    parser.add_argument("--preset", action="append", default=None, help="default: deep fundus hires small wide")
    add_set_workdir_arguments(parser, "bench/work/monitor-<dataset>", "its mon-<preset> members")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--patience", type=int, default=8,
                        help="the early stopping the picking rules simulate (8: the recipe presets' before keep = last)")
    add_set_result_argument(parser, "bench/results/monitor-<dataset>.json")
    return parser


workdir_of = workdir_from(build_parser, "monitor")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    from bench._common import write_result

    presets = args.preset or ["deep", "fundus", "hires", "small", "wide"]
    own = workdir_of([args.dataset])
    workdir = args.workdir or own
    result_path = guard_set_output(args.json, ROOT / "bench" / "results" / f"monitor-{args.dataset}.json",
                                   workdir, own, workdir_of)
    prepare_set(args.dataset, workdir, force=args.force)  # a workdir holding the set is kept as it is, members too
    members = {}
    for preset in presets:
        print(f"[monitor] {preset}", file=sys.stderr, flush=True)
        members[preset] = split_half(train_capturing(workdir, preset, args.seed, args.patience, force=args.force),
                                     args.repeats, args.seed)
    means = {rule: {m: round(float(np.mean([members[p][rule][m] for p in presets])), 4)
                    for m in ("qwk", "accuracy", "balanced_accuracy", "auc")} for rule in RULES}
    write_result(result_path, {
        "dataset": args.dataset, "seed": args.seed, "workdir": str(workdir.resolve()),
        "protocol": f"split-half on val rows, {args.repeats} repeats; early stopping simulated; test never read",
        "members": members, "mean": means})
    print(f"| {args.dataset} member | " + " | ".join(RULES) + " |")
    print("| --- | " + " | ".join("---" for _ in RULES) + " |")
    for name, v in [*members.items(), ("**mean**", means)]:
        print(f"| {name} | " + " | ".join(f"{v[r]['qwk']:.3f} / {v[r]['balanced_accuracy']:.3f} / {v[r]['auc']:.3f}"
                                          for r in RULES) + " |")
    print("(cells: held-out QWK / balanced accuracy / AUC of the epoch each rule picks)")
    return 0


if __name__ == "__main__":
    run_script(main)
