"""Input pipeline throughput: the toolkit's tf.data pipeline against the article's ImageDataGenerator.

The same folder of synthetic 512 px JPEGs, target 256 px, batch 32, the same augmentation
family (rotation ±30°, 10 % width/height shifts, both flips; ImageDataGenerator also
rescales by 1/255, the toolkit does that inside the model), read several ways:

* ``toolkit`` — ``members.data.pipeline.make_dataset(training=True, cache="memory")``: the first
  epoch decodes and fills the cache, later epochs only shuffle and augment;
* ``toolkit_disk`` — the same with ``cache="disk"`` (the choice for sets larger than RAM);
* ``toolkit_bilinear`` — the memory-cache pipeline with bilinear instead of nearest warps;
* ``imagedatagenerator`` — ``tf_keras``' ``ImageDataGenerator(...).flow_from_dataframe``, the
  article's pipeline and the baseline (every epoch decodes again);
* ``decode_limit`` — ``tf.data`` ``map(load_image)`` → batch → prefetch: parallel decode and
  resize only, no augmentation, no cache — what reading the files costs at best.

Each variant runs in a fresh Python process so its peak RSS is its own (``--quick`` runs
them all in this process instead, to finish in under a minute; its RSS figures are then
cumulative). Each variant first runs untimed on a few images (imports, thread pools); an
epoch is timed from the first request to the last batch; medians over ``--repeats`` fresh
datasets. The files sit in the OS page cache for every variant. Beside
wall-clock images/s the table gives CPU milliseconds per image (all threads), which on a
shared machine varies much less with the load than wall time does. A last probe measures
how memory grows with the data for the memory and the disk cache (see ``memory_probe``).

Usage::

    python bench/pipeline.py            # 1000 images, 3 repeats, writes bench/results/pipeline.json
    python bench/pipeline.py --quick    # 200 images, 1 repeat
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402

SOURCE_SIZE = 512
SIZE = 256
BATCH = 32
EPOCHS = 3  # per fresh dataset: the first fills the cache, the others read it
VARIANTS = ("toolkit", "toolkit_disk", "toolkit_bilinear", "imagedatagenerator", "decode_limit")
QUICK_VARIANTS = ("toolkit", "toolkit_disk", "imagedatagenerator", "decode_limit")
TARGETS = {"first_epoch": 5.0, "cached": 10.0, "fraction_of_decode_limit": 0.5}
WARMUP_IMAGES = 64  # an untimed pass over this many images first
MALLOC_PROBE_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072"}
AUGMENTATION = {"rotation": 30.0, "width_shift": 0.1, "height_shift": 0.1, "horizontal_flip": True,
                "vertical_flip": True}


def _consume(iterable) -> int:
    """Pull every batch; returns the number of images seen."""
    n = 0
    for batch in iterable:
        n += int(batch[0].shape[0])
    return n


def _epoch(iterable) -> dict:
    wall, cpu, n = common.timed_cpu(lambda: _consume(iterable))
    return {"wall": wall, "cpu": cpu, "images": n}


def _toolkit(paths, labels, repeats: int, cache: str, interpolation: str) -> dict:
    from members.data.pipeline import Augmentation, make_dataset

    phases = {"first": [], "cached": []}
    for r in range(repeats):
        cache_dir = tempfile.mkdtemp(prefix="bench-pipeline-cache-")
        try:
            ds = make_dataset(paths, labels, size=SIZE, batch_size=BATCH, training=True, cache=cache,
                              augmentation=Augmentation(**AUGMENTATION, interpolation=interpolation),
                              cache_dir=cache_dir, seed=r)
            for epoch in range(EPOCHS):
                phases["first" if epoch == 0 else "cached"].append(_epoch(ds))
            del ds
            cache_bytes = sum(f.stat().st_size for f in Path(cache_dir).iterdir() if f.is_file())
        finally:
            shutil.rmtree(cache_dir, ignore_errors=True)
    return {**phases, "disk_cache_mb": round(cache_bytes / 2**20, 1)}


def _imagedatagenerator(paths, labels, repeats: int) -> dict:
    try:
        from tf_keras.preprocessing.image import ImageDataGenerator
    except ImportError as exc:
        return {"error": f"tf_keras is not importable ({exc}); install the dev extra: pip install -e .[dev]"}
    import pandas as pd

    frame = pd.DataFrame({"filename": paths, "label": [str(v) for v in labels]})
    generator = ImageDataGenerator(
        rotation_range=30, width_shift_range=0.1, height_shift_range=0.1,
        horizontal_flip=True, vertical_flip=True, rescale=1 / 255,
    )
    flow = generator.flow_from_dataframe(frame, x_col="filename", y_col="label", target_size=(SIZE, SIZE),
                                         batch_size=BATCH, class_mode="sparse", seed=0)
    epochs = []
    for _ in range(repeats):  # every epoch decodes again: one epoch per repeat
        epochs.append(_epoch(flow[i] for i in range(len(flow))))
        flow.on_epoch_end()
    return {"epoch": epochs}


def _decode_limit(paths, repeats: int) -> dict:
    import tensorflow as tf

    from members.data.pipeline import load_image

    ds = tf.data.Dataset.from_tensor_slices(paths)
    ds = ds.map(lambda p: (load_image(p, SIZE),), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(BATCH).prefetch(tf.data.AUTOTUNE)
    return {"epoch": [_epoch(ds) for _ in range(repeats)]}


def measure(variant: str, images: int, repeats: int) -> dict:
    """Run one variant in this process: per-epoch wall and CPU seconds, memory, load."""
    paths, labels = common.demo_images(images, SOURCE_SIZE)
    import tensorflow as tf  # noqa: F401

    if variant == "imagedatagenerator":
        try:
            import tf_keras  # noqa: F401
        except ImportError:
            pass
    rss_after_import = common.current_rss_mb()
    if variant in ("toolkit", "toolkit_disk", "toolkit_bilinear"):
        cache = "disk" if variant == "toolkit_disk" else "memory"
        interpolation = "bilinear" if variant == "toolkit_bilinear" else "nearest"
        run = lambda p, y, r: _toolkit(p, y, r, cache, interpolation)  # noqa: E731
    elif variant == "imagedatagenerator":
        run = _imagedatagenerator
    elif variant == "decode_limit":
        run = lambda p, y, r: _decode_limit(p, r)  # noqa: E731
    else:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    run(paths[:WARMUP_IMAGES], labels[:WARMUP_IMAGES], 1)  # one-off costs: imports, thread pools, first traces
    load_before = common.load_average()
    out = run(paths, labels, repeats)
    extra = {k: out.pop(k) for k in ("error", "disk_cache_mb") if k in out}
    return {"variant": variant, "phases": out, **extra,
            "rss_after_import_mb": rss_after_import, "peak_rss_mb": common.peak_rss_mb(),
            "load_before": load_before, "load_after": common.load_average()}


def _in_subprocess(variant: str, images: int, repeats: int, env: dict | None = None) -> dict:
    command = [sys.executable, __file__, "--worker", variant, "--images", str(images), "--repeats", str(repeats)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"), **(env or {})}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        sys.stderr.write(done.stderr[-4000:])
        raise RuntimeError(f"the {variant} worker failed (exit {done.returncode})")
    return json.loads(lines[-1])


def memory_probe(images: int) -> dict:
    """Peak RSS growth of the memory and disk caches with glibc's adaptive malloc cache switched off.

    At 256 px a float32 batch is 25 MB; glibc keeps such freed buffers in per-thread arenas, so
    every tf.data pipeline here retains a few hundred MB that do not depend on the dataset size
    and drown the cache's own footprint. ``MALLOC_MMAP_THRESHOLD_=131072`` returns large buffers
    to the OS at once (slower: used for this probe only), so what remains is what grows with
    the data: the memory cache holds every decoded image, the disk cache does not.
    """
    out = {}
    for cache, variant in (("memory", "toolkit"), ("disk", "toolkit_disk")):
        run = _in_subprocess(variant, images, 1, env=MALLOC_PROBE_ENV)
        out[cache] = round(run["peak_rss_mb"] - run["rss_after_import_mb"], 1)
    return {"method": f"one fresh process per cache, 1 first + {EPOCHS - 1} cached epochs, env {MALLOC_PROBE_ENV}; "
                      "peak RSS minus RSS after imports",
            "peak_rss_growth_mb": out,
            "decoded_images_mb": round(images * SIZE * SIZE * 3 / 2**20, 1)}


def _phase(run: dict | None, phase: str) -> tuple[float | None, float | None]:
    """(median images/s, median CPU ms per image) of one phase of one variant."""
    epochs = (run or {}).get("phases", {}).get(phase) or []
    if not epochs:
        return None, None
    rate = common.median([e["images"] / e["wall"] for e in epochs])
    cpu = common.median([1000 * e["cpu"] / e["images"] for e in epochs])
    return round(rate, 1), round(cpu, 3)


def _ratio(a: float | None, b: float | None, digits: int = 2) -> float | None:
    return round(a / b, digits) if a and b else None


def summarise(runs: dict[str, dict], *, images: int, repeats: int, quick: bool, load_before,
              probe: dict | None = None) -> dict:
    """The JSON document: rates, ratios, verdicts, CPU cost, memory, machine."""
    figures = {
        "toolkit_first_epoch": ("toolkit", "first"), "toolkit_cached": ("toolkit", "cached"),
        "imagedatagenerator": ("imagedatagenerator", "epoch"), "decode_limit": ("decode_limit", "epoch"),
        "toolkit_disk_first_epoch": ("toolkit_disk", "first"), "toolkit_disk_cached": ("toolkit_disk", "cached"),
        "toolkit_bilinear_first_epoch": ("toolkit_bilinear", "first"),
        "toolkit_bilinear_cached": ("toolkit_bilinear", "cached"),
    }
    rates, cpu = {}, {}
    for name, (variant, phase) in figures.items():
        rates[name], cpu[name] = _phase(runs.get(variant), phase)
    ratios = {"first_epoch": _ratio(rates["toolkit_first_epoch"], rates["imagedatagenerator"]),
              "cached": _ratio(rates["toolkit_cached"], rates["imagedatagenerator"])}
    fraction = _ratio(rates["toolkit_first_epoch"], rates["decode_limit"], 3)
    cpu_ratios = {"first_epoch": _ratio(cpu["imagedatagenerator"], cpu["toolkit_first_epoch"]),
                  "cached": _ratio(cpu["imagedatagenerator"], cpu["toolkit_cached"])}
    cpu_fraction = _ratio(cpu["decode_limit"], cpu["toolkit_first_epoch"], 3)

    def ok(value, target):
        return None if value is None else value >= target

    return {
        "benchmark": "pipeline",
        "setup": {"images": images, "source_px": SOURCE_SIZE, "target_px": SIZE, "batch_size": BATCH,
                  "epochs_per_dataset": EPOCHS, "repeats": repeats, "augmentation": AUGMENTATION,
                  "toolkit_interpolation": "nearest (toolkit_bilinear: bilinear)",
                  "quick": quick, "fresh_process_per_variant": not quick},
        "images_per_s": rates,
        "ratio_vs_imagedatagenerator": ratios,
        "fraction_of_decode_limit": fraction,
        "targets": TARGETS,
        "passed": {"first_epoch": ok(ratios["first_epoch"], TARGETS["first_epoch"]),
                   "cached": ok(ratios["cached"], TARGETS["cached"]),
                   "fraction_of_decode_limit": ok(fraction, TARGETS["fraction_of_decode_limit"])},
        "cpu_ms_per_image": cpu,
        "cpu_ratio_vs_imagedatagenerator": cpu_ratios,
        "cpu_fraction_of_decode_limit": cpu_fraction,
        "peak_rss_mb": {v: r.get("peak_rss_mb") for v, r in runs.items()},
        "rss_after_import_mb": {v: r.get("rss_after_import_mb") for v, r in runs.items()},
        "disk_cache_mb": (runs.get("toolkit_disk") or {}).get("disk_cache_mb"),
        "bounded_memory": probe,
        "load_average": {v: {"before": r.get("load_before"), "after": r.get("load_after")} for v, r in runs.items()},
        "load_average_before": load_before,
        "imagedatagenerator_error": (runs.get("imagedatagenerator") or {}).get("error"),
        "epochs": {v: r.get("phases") for v, r in runs.items()},
        "machine": common.machine_info(),
    }


def report(result: dict) -> None:
    """Print the table of rates, CPU cost, memory and verdicts."""
    r, c, rss = result["images_per_s"], result["cpu_ms_per_image"], result["peak_rss_mb"]
    ratios, passed = result["ratio_vs_imagedatagenerator"], result["passed"]
    cpu_ratios = result["cpu_ratio_vs_imagedatagenerator"]
    idg_note = "baseline" if r["imagedatagenerator"] else f"not run: {result['imagedatagenerator_error']}"
    rows = [
        ("toolkit, first epoch (decode + cache fill)", "toolkit_first_epoch", "toolkit",
         (f"{ratios['first_epoch']}× IDG (CPU: {cpu_ratios['first_epoch']}×), target ≥5× "
          f"{common.verdict(passed['first_epoch'])}")),
        ("toolkit, cached epochs", "toolkit_cached", "toolkit",
         f"{ratios['cached']}× IDG (CPU: {cpu_ratios['cached']}×), target ≥10× {common.verdict(passed['cached'])}"),
        ("toolkit cache=disk, first epoch", "toolkit_disk_first_epoch", "toolkit_disk", ""),
        ("toolkit cache=disk, cached epochs", "toolkit_disk_cached", "toolkit_disk", ""),
        ("toolkit bilinear warp, first epoch", "toolkit_bilinear_first_epoch", "toolkit_bilinear", ""),
        ("toolkit bilinear warp, cached epochs", "toolkit_bilinear_cached", "toolkit_bilinear", ""),
        ("ImageDataGenerator (article)", "imagedatagenerator", "imagedatagenerator", idg_note),
        ("decode + resize limit", "decode_limit", "decode_limit",
         (f"toolkit first epoch at {result['fraction_of_decode_limit']} of it "
          f"(CPU: {result['cpu_fraction_of_decode_limit']}), target ≥0.5 "
          f"{common.verdict(passed['fraction_of_decode_limit'])}")),
    ]
    s = result["setup"]
    common.print_table(
        f"Input pipeline: {s['images']} × {s['source_px']} px JPEG → {s['target_px']} px, batch {s['batch_size']}, "
        f"median of {s['repeats']}; load {result['load_average_before']} on {result['machine']['cpu_count']} CPUs",
        ["variant", "images/s", "CPU ms/image", "peak RSS MiB", "vs target"],
        [(label, r[key], c[key], rss.get(variant), note) for label, key, variant, note in rows if variant in rss])
    probe = result.get("bounded_memory")
    if probe:
        growth = probe["peak_rss_growth_mb"]
        print(f"Memory growth with the data (allocator cache off): memory cache +{growth['memory']} MiB, "
              f"disk cache +{growth['disk']} MiB; the decoded images are {probe['decoded_images_mb']} MiB "
              f"(disk cache files: {result['disk_cache_mb']} MiB).")


def _extra(parser) -> None:
    parser.add_argument("--images", type=int, default=None, help="number of images (default 1000, --quick 200)")
    parser.add_argument("--worker", choices=VARIANTS, default=None, help=argparse.SUPPRESS)


def main() -> None:
    args = common.parse_args("Input pipeline throughput against ImageDataGenerator.", name="pipeline",
                             repeats=3, extra=_extra)
    images = args.images or (200 if args.quick else 1000)
    if args.worker:
        print(json.dumps(measure(args.worker, images, args.repeats)), flush=True)
        return
    common.quiet_tensorflow()
    common.demo_images(images, SOURCE_SIZE)  # write the set once, before any timing
    load_before = common.load_average()
    runs = {}
    for variant in QUICK_VARIANTS if args.quick else VARIANTS:
        print(f"measuring {variant}...", file=sys.stderr, flush=True)
        runs[variant] = measure(variant, images, args.repeats) if args.quick else _in_subprocess(variant, images, args.repeats)
    probe = None
    if not args.quick:
        print("measuring memory growth of the memory and disk caches...", file=sys.stderr, flush=True)
        probe = memory_probe(images)
    result = summarise(runs, images=images, repeats=args.repeats, quick=args.quick, load_before=load_before,
                       probe=probe)
    report(result)
    common.write_result(args.json, result)


if __name__ == "__main__":
    common.run_script(main)
