"""Benchmark the ensemble combiners on synthetic member probabilities.

Workload: 20 members x 100,000 rows x 5 classes of seeded synthetic
probabilities (float32, like the members' cached ``val.npz``/``test.npz``).
The rows are split in two halves, as ``vote`` does with real data: every
method (hard, soft, weighted, caruana, stack) is fitted on the 50,000 'val'
rows and then runs ``predict_proba`` and ``predict`` on the 50,000 'test'
rows. ``seconds_all_methods`` is the median over repeats of the summed time of
all methods (target: <= 2.0 s on a 2-core machine). A second figure,
``seconds_all_methods_fit100k_predict100k``, fits on 100,000 rows and
predicts 100,000 more. A scaling table times the same over 5/10/20 members
and 25k/50k/100k rows.

Synthetic members: logits = strength_j * onehot(y) + shared noise (the same
for every member, so their errors correlate) + the member's own noise, with
strengths spread evenly from 0.5 to 3.0; classes are imbalanced like DR grades
(45/20/15/12/8 %). Single members reach 30-80 % accuracy.

Usage (from the repo root):
    python bench/vote.py [--quick] [--json PATH] [--repeats R]

The figures go to ``bench/results/vote.json``, and ``vote-quick.json`` with ``--quick``: a smoke
run never replaces the full run's figures.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import datetime  # noqa: E402
import gc  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from ensemble.combiners import METHODS, make_combiner  # noqa: E402
from members.infra.atomic import write_json  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TARGET_SECONDS = 2.0
CLASS_SHARES = (0.45, 0.20, 0.15, 0.12, 0.08)
MEMBERS, ROWS, CLASSES = 20, 100_000, 5
SCALE_MEMBERS, SCALE_ROWS = (5, 10, 20), (25_000, 50_000, 100_000)


def synthetic(members: int, rows: int, classes: int = CLASSES, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded member probabilities (members, rows, classes) float32 and labels (rows,)."""
    rng = np.random.default_rng(seed)
    shares = np.resize(np.asarray(CLASS_SHARES), classes)
    y = rng.choice(classes, size=rows, p=shares / shares.sum())
    strength = np.linspace(0.5, 3.0, members).astype(np.float32)
    L = rng.standard_normal((members, rows, classes), dtype=np.float32)
    L += rng.standard_normal((rows, classes), dtype=np.float32)  # shared: errors correlate
    L[:, np.arange(rows), y] += strength[:, None]
    L -= L.max(axis=2, keepdims=True)
    np.exp(L, out=L)
    L /= L.sum(axis=2, keepdims=True)
    return L, y


def time_methods(P_fit: np.ndarray, y_fit: np.ndarray, P_test: np.ndarray, y_test: np.ndarray) -> dict[str, dict[str, float]]:
    """One timed pass: per method, wall and CPU seconds of fit + predict_proba + predict, and test accuracy."""
    out = {}
    for method in METHODS:
        gc.collect()
        start, cpu = time.perf_counter(), time.process_time()
        combiner = make_combiner(method).fit(P_fit, y_fit)
        combiner.predict_proba(P_test)
        labels = combiner.predict(P_test)
        out[method] = {
            "seconds": time.perf_counter() - start,
            "cpu_seconds": time.process_time() - cpu,
            "accuracy": float(np.mean(labels == y_test)),
        }
    return out


def measure(members: int, fit_rows: int, test_rows: int, repeats: int, seed: int = 0) -> dict:
    """Median seconds per method and for all methods over ``repeats`` passes."""
    P, y = synthetic(members, fit_rows + test_rows, seed=seed)
    runs = [time_methods(P[:, :fit_rows], y[:fit_rows], P[:, fit_rows:], y[fit_rows:]) for _ in range(repeats)]
    del P
    return {
        "members": members,
        "fit_rows": fit_rows,
        "test_rows": test_rows,
        "seconds_all_methods": statistics.median(sum(r[m]["seconds"] for m in METHODS) for r in runs),
        "cpu_seconds_all_methods": statistics.median(sum(r[m]["cpu_seconds"] for m in METHODS) for r in runs),
        "cpu_per_method": {m: statistics.median(r[m]["cpu_seconds"] for r in runs) for m in METHODS},
        "per_method": {m: statistics.median(r[m]["seconds"] for r in runs) for m in METHODS},
        "accuracy": {m: runs[0][m]["accuracy"] for m in METHODS},
        "all_runs": [sum(r[m]["seconds"] for m in METHODS) for r in runs],
    }


def _scaling_cell(cell: dict, rows: int) -> dict:
    per_row = 1e6 / (cell["members"] * rows)
    return {
        "members": cell["members"],
        "rows": rows,
        "seconds_all_methods": cell["seconds_all_methods"],
        "cpu_seconds_all_methods": cell["cpu_seconds_all_methods"],
        "microseconds_per_member_row": per_row * cell["seconds_all_methods"],
        "cpu_microseconds_per_member_row": per_row * cell["cpu_seconds_all_methods"],
        "per_method": cell["per_method"],
        "cpu_per_method": cell["cpu_per_method"],
    }


def machine() -> dict:
    """What the figures were measured on."""
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the tables, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repeat and a smaller scaling table (under a minute)")
    parser.add_argument("--json", type=Path, default=None,
                        help="where to write the results (default bench/results/vote.json, vote-quick.json with --quick)")
    parser.add_argument("--repeats", type=int, default=None, help="timed passes per setting (default 3, quick 1)")
    args = parser.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        parser.error(f"--repeats must be at least 1; got {args.repeats}.")
    if args.json is None:
        args.json = RESULTS / f"vote{'-quick' if args.quick else ''}.json"
    repeats = args.repeats or (1 if args.quick else 3)
    out, err = Console(width=None if sys.stdout.isatty() else 132), Console(stderr=True)

    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    warm_P, warm_y = synthetic(3, 400, seed=99)  # imports and first-call costs, not timed
    time_methods(warm_P[:, :200], warm_y[:200], warm_P[:, 200:], warm_y[200:])

    err.print(f"[bold]vote benchmark[/]: {MEMBERS} members x {ROWS:,} rows x {CLASSES} classes, {repeats} repeat(s)")
    main_run = measure(MEMBERS, ROWS // 2, ROWS // 2, repeats)
    full = None if args.quick else measure(MEMBERS, ROWS, ROWS, repeats, seed=1)
    if args.quick:
        cells = [(m, ROWS) for m in SCALE_MEMBERS[:-1]] + [(MEMBERS, r) for r in SCALE_ROWS[:-1]]
    else:
        cells = [(m, r) for r in SCALE_ROWS for m in SCALE_MEMBERS]
    scaling = []
    for members, rows in cells:
        if (members, rows) == (MEMBERS, ROWS):
            cell = main_run
        else:
            err.print(f"  scaling: {members} members x {rows:,} rows")
            cell = measure(members, rows // 2, rows // 2, repeats)
        scaling.append(_scaling_cell(cell, rows))
    if args.quick:
        scaling.append(_scaling_cell(main_run, ROWS))

    result = {
        "benchmark": "vote",
        "workload": f"{MEMBERS} members x {ROWS} rows x {CLASSES} classes (synthetic, float32); fit on {ROWS // 2} val rows, "
        f"predict_proba + predict on {ROWS // 2} test rows",
        "seconds_all_methods": main_run["seconds_all_methods"],
        "target_seconds": TARGET_SECONDS,
        "meets_target": main_run["seconds_all_methods"] <= TARGET_SECONDS,
        "per_method": main_run["per_method"],
        "cpu_seconds_all_methods": main_run["cpu_seconds_all_methods"],
        "cpu_per_method": main_run["cpu_per_method"],
        "load_average_1min": {"start": load_start, "end": None},
        "note": "the combiners run single-threaded (BLAS limited to one thread), so CPU seconds are what the wall "
        "time is on an otherwise idle machine; wall seconds above CPU seconds measure contention from other processes",
        "test_accuracy": main_run["accuracy"],
        "all_runs_seconds": main_run["all_runs"],
        "seconds_all_methods_fit100k_predict100k": None if full is None else full["seconds_all_methods"],
        "per_method_fit100k_predict100k": None if full is None else full["per_method"],
        "cpu_seconds_all_methods_fit100k_predict100k": None if full is None else full["cpu_seconds_all_methods"],
        "scaling": scaling,
        "machine": machine(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "repeats": repeats,
        "statistic": "median",
        "median": True,
        "quick": args.quick,
    }
    result["load_average_1min"]["end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    write_json(args.json, result)
    _print(out, result)
    err.print(f"wrote {args.json}")
    return 0


def _print(console: Console, result: dict) -> None:
    table = Table(title=f"combiners: {result['workload']} (median of {result['repeats']})")
    table.add_column("method")
    table.add_column("seconds", justify="right")
    table.add_column("CPU seconds", justify="right")
    table.add_column("test accuracy", justify="right")
    if result["per_method_fit100k_predict100k"]:
        table.add_column("seconds, fit 100k + predict 100k", justify="right")
    for method, seconds in result["per_method"].items():
        row = [method, f"{seconds:.3f}", f"{result['cpu_per_method'][method]:.3f}", f"{result['test_accuracy'][method]:.4f}"]
        if result["per_method_fit100k_predict100k"]:
            row.append(f"{result['per_method_fit100k_predict100k'][method]:.3f}")
        table.add_row(*row)
    verdict = "meets" if result["meets_target"] else "MISSES"
    total = [f"[bold]all methods[/] ({verdict} the {result['target_seconds']:.1f} s target)",
             f"[bold]{result['seconds_all_methods']:.3f}[/]", f"{result['cpu_seconds_all_methods']:.3f}", ""]
    if result["per_method_fit100k_predict100k"]:
        total.append(f"{result['seconds_all_methods_fit100k_predict100k']:.3f}")
    table.add_row(*total)
    load = result["load_average_1min"]
    if load["start"] is not None:
        table.caption = (f"1-min load average {load['start']:.1f} at start, {load['end']:.1f} at end on "
                         f"{result['machine']['cpu_count']} CPUs; single-threaded code: CPU seconds = wall seconds when idle")
    console.print(table)

    scale = Table(title="scaling: all methods (half the rows fit, half predicted); per-method columns in CPU seconds")
    for name in ("members", "rows", "wall s", "CPU s", "CPU µs/member-row", *METHODS):
        scale.add_column(name, justify="right")
    for cell in sorted(result["scaling"], key=lambda c: (c["rows"], c["members"])):
        scale.add_row(str(cell["members"]), f"{cell['rows']:,}", f"{cell['seconds_all_methods']:.3f}",
                      f"{cell['cpu_seconds_all_methods']:.3f}", f"{cell['cpu_microseconds_per_member_row']:.3f}",
                      *(f"{cell['cpu_per_method'][m]:.3f}" for m in METHODS))
    console.print(scale)


if __name__ == "__main__":
    from bench._common import run_script

    run_script(main)
