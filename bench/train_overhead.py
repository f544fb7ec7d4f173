"""Training-loop overhead: the toolkit's epoch loop against a bare ``model.fit`` on numpy arrays.

Like for like, in one process: the same compiled model (preset ``small``, 96 px, built and
compiled as ``train-member`` does), the same images, batch size and class weights, trained

* ``toolkit`` — ``members.training.loop.train_epoch`` (the loop ``train-member`` runs, with its per-batch
  input-wait timing) over ``members.data.pipeline.make_dataset(training=True)`` with the preset's
  augmentation and the memory cache;
* ``bare`` — ``model.fit(x, y, sample_weight=w)`` on the same images decoded once into numpy
  arrays (no augmentation, no per-batch bookkeeping).

The ``train_member`` driver itself is not timed here: it adds a validation pass per epoch,
which is not training throughput. Steady state is every epoch after the first of a run
(the first traces the step and fills the cache); the two variants alternate, ``--repeats``
runs each, medians of the per-epoch wall time. Target: toolkit ≥ 0.9 × bare.

Usage::

    python bench/train_overhead.py           # 512 images, 3 epochs × 3 repeats
    python bench/train_overhead.py --quick   # 64 images, 2 epochs × 1 repeat
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402

SOURCE_SIZE = 512
PRESET = "small"
TARGET = 0.9
NUM_CLASSES = 5


def compiled_model(spec):
    """The member's model compiled exactly as ``members.training.trainer.Trainer`` compiles it."""
    import keras

    from members.model.architecture import build_model

    keras.utils.set_random_seed(spec.seed)
    model = build_model(spec, NUM_CLASSES)
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=spec.lr, momentum=spec.momentum, nesterov=spec.nesterov),
        loss="sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=spec.jit_compile,
    )
    return model


def _epoch_clock():
    """A Keras callback whose ``epochs`` lists each epoch's (wall, CPU) seconds."""
    import keras

    class EpochClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epochs: list[tuple[float, float]] = []
            self._start = (0.0, 0.0)

        def on_epoch_begin(self, epoch, logs=None):
            self._start = (time.perf_counter(), common.cpu_seconds())

        def on_epoch_end(self, epoch, logs=None):
            self.epochs.append((time.perf_counter() - self._start[0], common.cpu_seconds() - self._start[1]))

    return EpochClock()


def run_bare(model, x, y, w, *, batch: int, epochs: int) -> list[dict]:
    clock = _epoch_clock()
    model.fit(x, y, sample_weight=w, batch_size=batch, epochs=epochs, shuffle=True, verbose=0, callbacks=[clock])
    return [{"wall": wall, "cpu": cpu, "images": len(x)} for wall, cpu in clock.epochs]


def run_toolkit(model, ds, n: int, *, batch: int, epochs: int) -> list[dict]:
    from members.training.loop import train_epoch

    out = []
    for _ in range(epochs):
        wall, cpu, stats = common.timed_cpu(lambda: train_epoch(model, ds, steps=math.ceil(n / batch)))
        out.append({"wall": wall, "cpu": cpu, "images": stats.images,
                    "step_seconds": stats.step_seconds, "wait_seconds": stats.wait_seconds})
    return out


def measure(images: int, epochs: int, repeats: int, size: int) -> dict:
    import numpy as np

    from members.data.pipeline import Augmentation, load_images, make_dataset
    from members.training.sampling import class_weights
    from members.model.spec import load_preset

    spec = load_preset(PRESET).replace(input_size=size)
    paths, labels = common.demo_images(images, SOURCE_SIZE)
    weights = class_weights(labels, NUM_CLASSES, spec.class_weight)[labels].astype(np.float32)
    x = load_images(paths, size).astype(np.float32)
    y = labels.astype(np.int32)
    model = compiled_model(spec)
    ds = make_dataset(paths, labels, size=size, batch_size=spec.batch_size, training=True,
                      augmentation=Augmentation.from_spec(spec), sample_weights=weights, cache="memory", seed=0)
    runs = {"bare": [], "toolkit": []}
    for r in range(repeats):
        order = ("bare", "toolkit") if r % 2 == 0 else ("toolkit", "bare")
        for variant in order:
            if variant == "bare":
                epochs_out = run_bare(model, x, y, weights, batch=spec.batch_size, epochs=epochs)
            else:
                epochs_out = run_toolkit(model, ds, len(paths), batch=spec.batch_size, epochs=epochs)
            runs[variant].append(epochs_out)
            print(f"repeat {r + 1}/{repeats} {variant}: "
                  + ", ".join(f"{e['wall']:.2f}s ({e['cpu']:.2f}s CPU)" for e in epochs_out),
                  file=sys.stderr, flush=True)
    return {"spec": spec, "params": int(model.count_params()), "runs": runs}


def summarise(measured: dict, *, images: int, epochs: int, repeats: int, size: int, quick: bool,
              load_before) -> dict:
    runs, spec = measured["runs"], measured["spec"]
    steady = {v: [e for run in rs for e in run[1:]] for v, rs in runs.items()}
    rate = {v: common.median([e["images"] / e["wall"] for e in es]) for v, es in steady.items()}
    tk = steady["toolkit"]
    wait_share = common.median([e["wait_seconds"] / e["step_seconds"] for e in tk if e["step_seconds"] > 0])
    loop_rate = common.median([e["images"] / e["step_seconds"] for e in tk if e["step_seconds"] > 0])
    first_wait = common.median([run[0]["wait_seconds"] / run[0]["step_seconds"] for run in runs["toolkit"]])
    ratio = rate["toolkit"] / rate["bare"] if rate["toolkit"] and rate["bare"] else None
    cpu_ms = {v: common.median([1000 * e["cpu"] / e["images"] for e in es]) for v, es in steady.items()}
    cpu_ratio = cpu_ms["bare"] / cpu_ms["toolkit"] if cpu_ms["toolkit"] and cpu_ms["bare"] else None
    return {
        "benchmark": "train_overhead",
        "method": "members.training.loop.train_epoch on members.data.pipeline.make_dataset (the loop train-member runs, "
                  "without its per-epoch validation) vs model.fit on numpy arrays, same compiled model, "
                  "alternating, steady state = epochs after the first of each run, median per-epoch wall time; "
                  "cpu_ratio compares CPU seconds per image (all threads), steadier on a shared machine",
        "setup": {"preset": PRESET, "input_size": size, "images": images, "batch_size": spec.batch_size,
                  "epochs_per_run": epochs, "repeats": repeats, "params": measured["params"],
                  "augmentation": _augmentation_fields(spec), "class_weight": spec.class_weight,
                  "jit_compile": spec.jit_compile, "quick": quick},
        "images_per_s": {"toolkit": _round(rate["toolkit"]), "bare_fit": _round(rate["bare"]),
                         "toolkit_by_step_time": _round(loop_rate)},
        "ratio": _round(ratio, 3),
        "cpu_ms_per_image": {"toolkit": _round(cpu_ms["toolkit"], 2), "bare_fit": _round(cpu_ms["bare"], 2)},
        "cpu_ratio": _round(cpu_ratio, 3),
        "target": TARGET,
        "passed": None if ratio is None else ratio >= TARGET,
        "input_wait_share": _round(wait_share, 4),
        "input_wait_share_first_epoch": _round(first_wait, 4),
        "epochs": {v: [[{k: round(val, 4) if isinstance(val, float) else val for k, val in e.items()} for e in run]
                       for run in rs] for v, rs in runs.items()},
        "load_average_before": load_before,
        "machine": common.machine_info(),
    }


def _augmentation_fields(spec) -> dict:
    return {k: getattr(spec, k) for k in ("rotation", "width_shift", "height_shift", "horizontal_flip", "vertical_flip")}


def _round(value, digits: int = 1):
    return None if value is None else round(float(value), digits)


def report(result: dict) -> None:
    s, r = result["setup"], result["images_per_s"]
    c = result["cpu_ms_per_image"]
    rows = [
        ("bare model.fit on numpy arrays", r["bare_fit"], c["bare_fit"], "", "baseline"),
        ("toolkit: train_epoch on make_dataset", r["toolkit"], c["toolkit"], result["input_wait_share"],
         (f"{result['ratio']}× bare (CPU time: {result['cpu_ratio']}×), target ≥{TARGET} "
          f"{common.verdict(result['passed'])}")),
    ]
    common.print_table(
        f"Training throughput, preset {s['preset']} at {s['input_size']} px ({s['params']:,} params), "
        f"{s['images']} images, batch {s['batch_size']}, steady state over {s['repeats']}×{s['epochs_per_run'] - 1} "
        f"epochs; load {result['load_average_before']}",
        ["variant", "images/s", "CPU ms/image", "input wait share", "vs target"], rows)


def _extra(parser) -> None:
    parser.add_argument("--images", type=int, default=None, help="training images (default 512, --quick 64)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per run, at least 2 (default 3, --quick 2)")
    parser.add_argument("--size", type=int, default=96, help="input size in pixels (default 96)")


def main() -> None:
    args = common.parse_args("Training-loop overhead against a bare model.fit.", name="train_overhead",
                             repeats=3, extra=_extra)
    images = args.images or (64 if args.quick else 512)
    epochs = args.epochs or (2 if args.quick else 3)
    if epochs < 2:
        raise SystemExit(f"--epochs must be at least 2 (the first is not steady state); got {epochs}")
    common.quiet_tensorflow()
    common.demo_images(images, SOURCE_SIZE)
    load_before = common.load_average()
    measured = measure(images, epochs, args.repeats, args.size)
    result = summarise(measured, images=images, epochs=epochs, repeats=args.repeats, size=args.size,
                       quick=args.quick, load_before=load_before)
    report(result)
    common.write_result(args.json, result)


if __name__ == "__main__":
    common.run_script(main)
