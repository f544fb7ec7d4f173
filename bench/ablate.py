"""Val-only ablation of member recipes on a real set: which defaults make members learn.

    python bench/ablate.py idrid --base fundus --variant "sgd: optimizer=sgd" --variant "no-ben: preprocessing=none"
    python bench/ablate.py eyepacs512 --base small --base fundus          # each preset at its defaults

Trains one member per variant (a base preset plus ``FIELD=VALUE`` overrides, as ``--set`` takes
them) on the set's train split, and prints a table of **validation** figures only: balanced
accuracy, QWK, AUC, log-loss, whether the member collapsed, and training time. The test split is
never read: ablations choose defaults, and test is scored once, by ``bench/accuracy.py``. Results
go to ``bench/results/ablate-<set>.json``, merged with the rows already there (a row of the same
variant name is replaced). Each row records its workdir, seed and split fingerprint; rows are only
merged into the default file when they share its rows' seed and split (rows written before these
were recorded count as seed 0, as BENCHMARKS.md gives them): a run with another seed or split is
refused before it trains, unless ``--json`` names the file on purpose. A ``--variant`` must hold
its colon (``"name: FIELD=VALUE ..."``, or ``"name:"`` for the base preset at its defaults): a
label whose overrides were not applied is never recorded.
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

from bench._common import add_set_workdir_arguments, run_script  # noqa: E402
from bench.sets import SETS, prepare_set  # noqa: E402


def _parse_variant(text: str, base: str) -> tuple[str, str, dict]:
    """``"name: a=1 b=2"``, ``"name@preset: a=1"`` or ``"name:"`` (no override) → (name, preset, overrides).

    Raises:
        UserError: no colon (``"small-128 input_size=128"`` would train the base preset under a label that
            promises an override), an empty name, or an override that is not ``FIELD=VALUE``.
    """
    from members.infra.errors import UserError
    from members.model.spec import parse_set

    name, sep, rest = text.partition(":")
    if not sep:
        label, *given = text.split() or ["NAME"]
        raise UserError(f"--variant {text!r} has no colon, so no override would apply to it; pass it as "
                        f"\"NAME[@PRESET]: FIELD=VALUE ...\" (e.g. --variant \"{label}: "
                        f"{' '.join(given) or 'input_size=128'}\"), or as --variant \"{label}:\" to train the base "
                        "preset at its defaults under that name.")
    if not name.strip() or not name.partition("@")[0].strip():
        raise UserError(f"--variant {text!r} has no name before its colon; pass it as \"NAME[@PRESET]: FIELD=VALUE "
                        f"...\" (e.g. --variant \"small-128:{rest or ' input_size=128'}\").")
    name, _, preset = name.strip().partition("@")
    try:
        overrides = parse_set(rest.split()) if rest.strip() else {}
    except UserError as exc:
        text_ = str(exc).replace("--set takes", "each override takes").replace("--set ", "")
        raise UserError(f"--variant {text!r}: {text_}") from None
    return name.strip(), (preset.strip() or base), overrides


def check_merge(results: dict, out_path: Path, seed: int, fingerprint: str) -> None:
    """Refuse to merge this run's rows into ``out_path`` when its rows are of another seed or split (default file only).

    Rows written before the seed was recorded count as seed 0 (BENCHMARKS.md gives every such run as seed 0);
    rows without a fingerprint are not compared on the split.
    """
    from members.infra.errors import UserError

    from bench._common import shown_path

    for name, row in results.get("variants", {}).items():
        then_seed, then_split = row.get("seed", 0), row.get("fingerprint")
        if then_seed != seed or (then_split is not None and then_split != fingerprint):
            what = (f"seed {then_seed}, this run's is {seed}" if then_seed != seed else
                    f"split {then_split[:12]}, this run's workdir holds {fingerprint[:12]}")
            raise UserError(f"{shown_path(out_path)} holds rows of another run (row {name!r}: {what}), and rows of "
                            f"another seed or split are never merged into it: pass --json PATH to write this run's "
                            f"rows to a file of their own, or --json {shown_path(out_path)} to merge them on purpose.")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sorted(SETS))
    parser.add_argument("--base", action="append", default=None,
                        help="a preset trained at its defaults (repeatable); also the base of --variant")
    parser.add_argument("--variant", action="append", default=[],
                        help='"name[@preset]: FIELD=VALUE ..." (repeatable; "name:" for no override); the base '
                             'preset is the first --base')
    add_set_workdir_arguments(parser, "bench/work/<dataset>", "variants complete there with another spec")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None,
                        help="default: bench/results/ablate-<dataset>.json, merged only with rows of the same seed "
                             "and split; given, this file takes the rows whatever it holds")
    args = parser.parse_args(argv)

    from members.infra import atomic
    from members.infra.errors import UserError
    from members.infra.validate import check_seed
    from members.model.spec import load_preset
    from members.training.trainer import train_member

    check_seed(args.seed, "--seed")
    bases = args.base or ["small"]
    # every variant's spec first: a bad one stops the run before any member trains (one sentence, exit 1)
    runs = [(f"{b} (defaults)", b, {}) for b in bases] if not args.variant else []
    runs += [_parse_variant(v, bases[0]) for v in args.variant]
    specs = [load_preset(preset).replace(seed=args.seed, **overrides) for _, preset, overrides in runs]
    workdir = args.workdir or ROOT / "bench" / "work" / args.dataset
    prepare_set(args.dataset, workdir, force=args.force)
    fingerprint = str(atomic.read_json(workdir / "dataset.json")["fingerprint"])
    out_path = args.json or ROOT / "bench" / "results" / f"ablate-{args.dataset}.json"
    results = atomic.read_json(out_path) if out_path.exists() else {"dataset": args.dataset, "variants": {}}
    if args.json is None:
        check_merge(results, out_path, args.seed, fingerprint)
    for (name, preset, overrides), spec in zip(runs, specs, strict=True):
        folder = "abl-" + "-".join("".join(c if c.isalnum() or c in "_" else " " for c in name).split())
        print(f"[ablate] {name}: {preset} + {overrides}", file=sys.stderr, flush=True)
        started = time.perf_counter()
        try:
            result = train_member(workdir, spec, name=folder, preset=preset, force=args.force)
        except UserError as exc:  # the member's name is the variant's: that is what to choose anew
            raise UserError(str(exc).replace("choose another --name", "choose another variant name")) from None
        m = result.metrics
        val = m["val"]
        results["variants"][name] = {
            "preset": preset, "overrides": overrides, "workdir": str(workdir.resolve()), "seed": args.seed,
            "fingerprint": fingerprint, "collapsed": bool(m.get("collapsed", False)),
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
    run_script(main)
