"""Training several members at once: sequential against 2 loky processes against a 2-worker Dask cluster.

Workload: four ``tiny`` members (different seeds) on a balanced synthetic fundus set of
400 images at 64 px (input 64 px, 6 epochs each), trained three ways with
``members.training.parallel.train_members``:

* ``sequential`` — one after the other in this process (TensorFlow uses every core);
* ``loky`` — ``--jobs 2``: two worker processes, each limited to its share of the cores;
* ``dask`` — a ``LocalCluster`` of two single-threaded worker processes, started and closed by the run.

Figures per mode: the wall time of the whole run (worker start-up and TensorFlow import
included: what a user waits for), the speed-up over ``sequential``, and per member its
wall time in the worker and its ``train_seconds`` (the training loop alone, from
``metrics.json``). The machine's load average is recorded: on a shared machine the other
processes take cores too, and the speed-up shrinks.

Usage::

    python bench/train_members.py            # 400 images at 64 px, 6 epochs; writes bench/results/train_members.json
    python bench/train_members.py --quick    # 80 images at 32 px, 1 epoch
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402

MEMBERS = 4
JOBS = 2
MODES = ("sequential", "loky", "dask")
FULL = {"images": 400, "size": 64, "epochs": 6}
QUICK = {"images": 80, "size": 32, "epochs": 1}


def demo_workdir(images: int, size: int, base: Path) -> Path:
    """A prepared workdir on a balanced demo set, written once under ``$BENCH_DATA``."""
    from members.data.dataset import prepare_csv
    from members.data.synthetic import LABELS_NAME, write_demo_data

    data = common.DATA_ROOT / f"members_{size}_{images}_balanced"
    if not (data / LABELS_NAME).exists():
        print(f"writing {images} balanced synthetic {size} px images to {data} (once)...", file=sys.stderr, flush=True)
        write_demo_data(data, images=images, size=size, seed=0, balanced=True, progress=False)
    workdir = base / "work"
    prepare_csv(workdir, data / LABELS_NAME, data / "images", seed=0, progress=False)
    return workdir


def run_mode(mode: str, workdir: Path, config: dict) -> dict:
    """Train the four members with one backend; figures of the run."""
    from members.training.parallel import train_members

    names = [f"{mode}-{i + 1}" for i in range(MEMBERS)]
    outcome = train_members(workdir, ["tiny"] * MEMBERS, names=names, jobs=1 if mode == "sequential" else JOBS,
                            backend=mode, overrides={"epochs": config["epochs"], "input_size": config["size"]}, seed=0)
    done = [r for r in outcome.results if r.ok]
    return {
        "backend": mode,
        "jobs": outcome.jobs,
        "wall_seconds": round(outcome.seconds, 2),
        "failed": [f"{n}: {e}" for n, e in outcome.failed],
        "members": {r.name: {"wall_seconds": round(r.seconds, 2),
                             "train_seconds": r.metrics["train_seconds"] if r.ok else None,
                             "cpu_seconds": round(r.cpu_seconds, 2) if r.cpu_seconds is not None else None,
                             "tf_threads": r.threads, "val_qwk": r.score("val"), "test_qwk": r.score("test")}
                    for r in outcome.results},
        "mean_member_wall_seconds": round(statistics.mean(r.seconds for r in done), 2) if done else None,
        "mean_member_train_seconds": round(statistics.mean(r.metrics["train_seconds"] for r in done), 2) if done else None,
        "mean_member_cpu_seconds": round(statistics.mean(r.cpu_seconds for r in done), 2) if done else None,
    }


def main() -> None:
    args = common.parse_args("Train four tiny members sequentially, on 2 loky processes and on a 2-worker Dask cluster.",
                             name="train_members", repeats=1)
    common.quiet_tensorflow()
    config = QUICK if args.quick else FULL
    base = Path(tempfile.mkdtemp(prefix="bench-train-members-"))
    try:
        workdir = demo_workdir(config["images"], config["size"], base)
        load_before = common.load_average()
        modes = {mode: run_mode(mode, workdir, config) for mode in MODES}
    finally:
        shutil.rmtree(base, ignore_errors=True)
    sequential = modes["sequential"]["wall_seconds"]
    for figures in modes.values():
        figures["speedup_vs_sequential"] = round(sequential / figures["wall_seconds"], 2)
    result = {
        "benchmark": "train_members",
        "quick": args.quick,
        "workload": {"members": MEMBERS, "preset": "tiny", "jobs": JOBS, **config, "balanced": True},
        "machine": {**common.machine_info(), "load_average_before": load_before},
        "modes": modes,
    }
    common.write_result(args.json, result)
    rows = [(m, f["jobs"], f["wall_seconds"], f"{f['speedup_vs_sequential']:.2f}x", f["mean_member_wall_seconds"],
             f["mean_member_train_seconds"], f["mean_member_cpu_seconds"], len(f["failed"])) for m, f in modes.items()]
    common.print_table(f"{MEMBERS} tiny members, {config['images']} images at {config['size']} px, "
                       f"{config['epochs']} epoch{'s' if config['epochs'] > 1 else ''} ({result['machine']['cpu_count']} cores, load {load_before})",
                       ("backend", "jobs", "wall s", "speed-up", "member wall s", "member train s", "member CPU s", "failed"), rows)


if __name__ == "__main__":
    common.run_script(main)
