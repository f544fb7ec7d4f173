"""Val-only ablation of member recipes on a real set: which defaults make members learn.

    python bench/ablate.py idrid --base fundus --variant "sgd: optimizer=sgd" --variant "no-ben: preprocessing=none"
    python bench/ablate.py eyepacs512 --base small --base fundus          # each preset at its defaults

Trains one member per variant (a base preset plus ``FIELD=VALUE`` overrides, as ``--set`` takes
them) on the set's train split, and prints a table of **validation** figures only: balanced
accuracy, QWK, AUC, log-loss, whether the member collapsed, and training time. The test split is
never read: ablations choose defaults, and test is scored once, by ``bench/accuracy.py``. Results
go to ``bench/results/ablate-<set>.json`` (merged with earlier runs of the same variant names).
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

from bench.sets import SETS, prepare_set  # noqa: E402


def _parse_variant(text: str, base: str) -> tuple[str, str, dict]:
    """``"name: a=1 b=2"`` or ``"name@preset: a=1"`` → (name, preset, overrides)."""
    from members.model.spec import parse_set

    name, sep, rest = text.partition(":")
    if not sep:
        name, rest = text, ""
    name, _, preset = name.strip().partition("@")
    overrides = parse_set(rest.split()) if rest.strip() else {}
    return name.strip(), (preset.strip() or base), overrides


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sorted(SETS))
    parser.add_argument("--base", action="append", default=None,
                        help="a preset trained at its defaults (repeatable); also the base of --variant")
    parser.add_argument("--variant", action="append", default=[],
                        help='"name[@preset]: FIELD=VALUE ..." (repeatable); the base preset is the first --base')
    parser.add_argument("--workdir", type=Path, default=None, help="default: bench/work/<dataset>")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="default: bench/results/ablate-<dataset>.json")
    args = parser.parse_args(argv)

    from members.infra import atomic
    from members.infra.errors import UserError
    from members.model.spec import load_preset
    from members.training.trainer import train_member

    bases = args.base or ["small"]
    try:  # every variant's spec first: a bad one stops the run before any member trains
        runs = [(f"{b} (defaults)", b, {}) for b in bases] if not args.variant else []
        runs += [_parse_variant(v, bases[0]) for v in args.variant]
        specs = [load_preset(preset).replace(seed=args.seed, **overrides) for _, preset, overrides in runs]
    except UserError as exc:
        print(f"[ablate] {exc}", file=sys.stderr)
        return 2
    workdir = args.workdir or ROOT / "bench" / "work" / args.dataset
    prepare_set(args.dataset, workdir)
    out_path = args.json or ROOT / "bench" / "results" / f"ablate-{args.dataset}.json"
    results = atomic.read_json(out_path) if out_path.exists() else {"dataset": args.dataset, "variants": {}}
    for (name, preset, overrides), spec in zip(runs, specs, strict=True):
        folder = "abl-" + "-".join("".join(c if c.isalnum() or c in "_" else " " for c in name).split())
        print(f"[ablate] {name}: {preset} + {overrides}", file=sys.stderr, flush=True)
        started = time.perf_counter()
        result = train_member(workdir, spec, name=folder, preset=preset)
        m = result.metrics
        val = m["val"]
        results["variants"][name] = {
            "preset": preset, "overrides": overrides, "collapsed": bool(m.get("collapsed", False)),
            "val": {k: val.get(k) for k in ("accuracy", "balanced_accuracy", "macro_f1", "qwk", "auc", "log_loss")},
            "best_epoch": m.get("best_epoch"), "epochs_run": m.get("epochs_run"),
            "train_seconds": round(time.perf_counter() - started, 1), "date": time.strftime("%Y-%m-%d"),
        }
        atomic.write_json(out_path, results)
    print(table(results))
    return 0


def table(results: dict) -> str:
    """The markdown table of every variant's val figures (test is never shown)."""
    def f(x):
        return "n/a" if x is None else f"{x:.3f}"

    lines = [f"val-only ablation on {results['dataset']}",
             "| variant | val bal-acc | val QWK | val AUC | val log-loss | collapsed | best / run epochs | time |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in results["variants"].items():
        v = r["val"]
        lines.append(f"| {name} | {f(v['balanced_accuracy'])} | {f(v['qwk'])} | {f(v['auc'])} | {f(v['log_loss'])} | "
                     f"{'yes' if r['collapsed'] else 'no'} | {r['best_epoch']} / {r['epochs_run']} | {r['train_seconds'] / 60:.1f} min |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
