"""Members for free, measured: snapshot ensembles and SWA against a plain member of the same budget.

    python bench/free_members.py idrid                         # `small` at its defaults, 20 epochs
    python bench/free_members.py idrid --preset deep --epochs 24 --snapshots 4 --swa 6

Issue 12, item 3. Three training runs of one preset, each the same number of epochs (early
stopping off, so every run pays the whole budget):

* ``plain`` — the preset as it is (its own schedule; the best val epoch is the member);
* ``swa`` — the same run with ``swa = N``: the weights of the last N epochs averaged, batch
  norm recomputed;
* ``snap`` — ``snapshots = M``: M cosine cycles with warm restarts; the M cycle-end weights are
  M members (``snap-snap1`` … ``snap-snapM``), combined by averaging their probabilities (the
  rule of Huang et al. 2017). The run's own best-epoch member is reported too.

Nothing is chosen here (the configurations are fixed beforehand), so val and test are both
printed; the paired bootstrap difference against ``plain`` is on test. Results go to
``bench/results/free-members-<set>.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench._common import (  # noqa: E402
    add_set_result_argument, add_set_workdir_arguments, guard_set_output, run_script, workdir_from)
from bench.sets import SETS, prepare_set  # noqa: E402

METRICS = ("accuracy", "balanced_accuracy", "qwk", "auc")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sorted(SETS))
    parser.add_argument("--preset", default="small")
    parser.add_argument("--epochs", type=int, default=None, help="default: the preset's")
    parser.add_argument("--snapshots", type=int, default=4)
    parser.add_argument("--swa", type=int, default=None, help="default: a quarter of the epochs")
    add_set_workdir_arguments(parser, "bench/work/free-<dataset>",
                              "its plain/swa/snap members when complete with another spec")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bootstrap", type=int, default=1000)
    add_set_result_argument(parser, "bench/results/free-members-<dataset>.json")
    return parser


workdir_of = workdir_from(build_parser, "free")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    import numpy as np

    from ensemble.stats import bootstrap_difference, bootstrap_indices, bootstrap_metrics
    from members.infra.atomic import load_npz, write_json
    from members.model.spec import load_preset
    from members.training.snapshots import snapshot_name
    from members.training.trainer import train_member

    own = workdir_of([args.dataset])
    workdir = args.workdir or own
    result_path = guard_set_output(args.json, ROOT / "bench" / "results" / f"free-members-{args.dataset}.json",
                                   workdir, own, workdir_of)
    started = time.perf_counter()
    prepare_set(args.dataset, workdir, force=args.force)
    base = load_preset(args.preset)
    epochs = args.epochs or base.epochs
    swa = args.swa or max(2, epochs // 4)
    common = {"epochs": epochs, "patience": 0, "seed": args.seed}
    runs = {"plain": {}, "swa": {"swa": swa}, "snap": {"snapshots": args.snapshots}}
    seconds = {}
    for name, extra in runs.items():
        spec = base.replace(**common, **extra)
        print(f"[free] training {name}: {args.preset}, {epochs} epochs {extra or ''}", file=sys.stderr, flush=True)
        seconds[name] = train_member(workdir, spec, name=name, preset=args.preset,
                                     force=args.force).metrics["train_seconds"]

    def probs(member: str, split: str):
        data = load_npz(workdir / "members" / member / f"{split}.npz")
        return data["probs"], data["labels"]

    snaps = [snapshot_name("snap", j) for j in range(1, args.snapshots + 1)]
    out = {"dataset": args.dataset, "workdir": str(workdir.resolve()), "seed": args.seed, "preset": args.preset,
           "epochs": epochs, "swa": swa, "snapshots": args.snapshots,
           "train_seconds": seconds, "val": {}, "test": {}, "test_difference_vs_plain": {}}
    for split in ("val", "test"):
        plain, labels = probs("plain", split)
        k = plain.shape[1]
        idx = bootstrap_indices(len(labels), args.bootstrap, args.seed)
        sets = {"plain": plain, "swa": probs("swa", split)[0],
                "snap (best epoch of the run)": probs("snap", split)[0],
                f"snapshot ensemble (mean of {len(snaps)})": np.mean([probs(s, split)[0] for s in snaps], axis=0)}
        for j, s in enumerate(snaps, 1):
            sets[f"snapshot {j}"] = probs(s, split)[0]
        for label, p in sets.items():
            m = bootstrap_metrics(labels, p, indices=idx, num_classes=k)
            out[split][label] = {key: m[key] for key in METRICS}
            if split == "test" and label != "plain":
                d = bootstrap_difference(labels, (p, None), (sets["plain"], None), indices=idx, num_classes=k)
                out["test_difference_vs_plain"][label] = {key: d[key] for key in METRICS}
    out["benchmark"] = {"seconds_total": round(time.perf_counter() - started, 1), "date": time.strftime("%Y-%m-%d"),
                        "cpus": os.cpu_count(),
                        "command": "python bench/free_members.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    write_json(result_path, out)
    print(table(out))
    return 0


def table(out: dict) -> str:
    """The Markdown table of BENCHMARKS.md: val and test figures, the test difference against plain."""
    def ci(m):
        return "n/a" if m["value"] is None else f"{m['value']:.3f} [{m['ci'][0]:.3f}, {m['ci'][1]:.3f}]"

    def diff(m):
        return "" if m is None or m["value"] is None else f"{m['value']:+.3f} [{m['ci'][0]:+.3f}, {m['ci'][1]:+.3f}]"

    lines = ["| model | val QWK | test acc | test bal-acc | test QWK [95 % CI] | test AUC | test QWK − plain [95 % CI] |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for label, t in out["test"].items():
        v = out["val"][label]
        lines.append(f"| {label} | {v['qwk']['value']:.3f} | {t['accuracy']['value']:.3f} | "
                     f"{t['balanced_accuracy']['value']:.3f} | {ci(t['qwk'])} | {t['auc']['value']:.3f} | "
                     f"{diff(out['test_difference_vs_plain'].get(label, {}).get('qwk'))} |")
    s = out["train_seconds"]
    lines.append(f"\nTraining seconds: plain {s['plain']:.0f}, swa {s['swa']:.0f}, snapshots {s['snap']:.0f} "
                 f"({out['epochs']} epochs each; swa = {out['swa']}, snapshots = {out['snapshots']}).")
    return "\n".join(lines)


if __name__ == "__main__":
    run_script(main)
