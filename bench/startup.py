"""Start-up of the commands that answer without training: ``--help`` and ``presets``.

``presets`` used to build every preset's network with TensorFlow to count its parameters; it now
reads the counts from ``members/presets/params.json`` (keyed by each preset's spec digest, checked
against the built models by ``tests/test_spec.py``). Measured in fresh processes, alternating, medians
over ``--repeats``:

* ``help`` — ``python cli.py --help`` (the target: no TensorFlow, well under a second);
* ``presets`` — ``python cli.py presets --json`` (the counts read from params.json);
* ``presets, built`` — the baseline: every preset built with TensorFlow and counted, as ``presets`` did
  before the counts were kept (``members.model.spec.write_preset_params`` without the write).

Target: ``presets`` at least 5 × faster than building the presets.

Usage::

    python bench/startup.py            # 3 repeats
    python bench/startup.py --quick    # 1 repeat
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402

TARGET = 5.0
BUILD_ALL = ("from members.model.architecture import build_model; from members.model.spec import list_presets, "
             "load_preset; [build_model(load_preset(n).replace(weights='none', freeze_epochs=0), 5).count_params() "
             "for n in list_presets()]")
COMMANDS = {
    "help": [sys.executable, "cli.py", "--help"],
    "presets": [sys.executable, "cli.py", "presets", "--json"],
    "presets, built": [sys.executable, "-c", BUILD_ALL],
}


def run(command: list[str]) -> float:
    """Wall seconds of one fresh process (its output discarded; a failure stops the benchmark)."""
    start = time.perf_counter()
    subprocess.run(command, cwd=common.ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return time.perf_counter() - start


def main() -> None:
    args = common.parse_args(__doc__.splitlines()[0], name="startup")
    load_before = common.load_average()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):  # alternating, so a noisy minute hits every command alike
        for name, command in COMMANDS.items():
            times[name].append(run(command))
    medians = {name: common.median(values) for name, values in times.items()}
    speedup = medians["presets, built"] / medians["presets"]
    common.print_table(f"Start-up, fresh processes ({args.repeats} repeats, medians)", ["command", "seconds"],
                       [(name, medians[name]) for name in COMMANDS])
    print(f"presets vs building every preset: {speedup:.1f}x (target >= {TARGET:g}x)")
    common.write_result(args.json, {
        "benchmark": "startup", "machine": common.machine_info(), "load_before": load_before,
        "load_after": common.load_average(), "repeats": args.repeats, "seconds": times, "median_seconds": medians,
        "baseline": "presets, built", "speedup": round(speedup, 2), "target": TARGET, "passed": speedup >= TARGET,
    })


if __name__ == "__main__":
    common.run_script(main)
