"""Ensemble inference throughput: one read per file shared by the members, against one read and decode per member.

K = 4 members with different input sizes (32, 48, 64, 96 px; the ``tiny`` preset's
network, two conv blocks) grade N synthetic 256 px JPEGs (``write_demo_data``), two ways:

* ``toolkit`` — ``ensemble.inference.ensemble_member_probs``: one ``tf.data`` pipeline reads
  every file once and decodes it once per distinct reduced JPEG scale (members whose sizes
  share a scale share the decode; here 3 decodes for 4 members), so every member gets
  exactly training's pixels; batches 64 images and runs every member on its batch;
* ``baseline`` — what a loop over members does: for each member its own ``tf.data``
  pipeline of ``members.data.pipeline.load_image`` at that member's size (the training
  pipeline's decode, reduced-scale JPEG decoding included), batched the same way, and the
  same model call (:func:`ensemble.inference.member_probs`): K reads and K decodes per image.

Both then combine with the same fitted soft vote. The input side alone (read, decode,
resize, batch; no model) is timed too, as ``input_only``: the model's time is the same for
both ways, so the whole-call ratio is the input-side ratio diluted by it. The members are built, not trained
(random weights, saved as members with a valid ``metrics.json`` and a soft-vote combiner
fitted on random probabilities): throughput does not depend on the weights, and building
takes seconds where training four members would take minutes. The networks are small on
purpose, so the figure measures the input side; with heavy members the model's time is the
same for both ways and the ratio shrinks toward 1.

Timed after one untimed warm-up run of each (graph tracing); the two ways alternate, medians
over ``--repeats``. ``os.getloadavg()`` is recorded: the figures come from a shared machine.

Usage::

    python bench/predict.py            # 300 images, 3 repeats, writes bench/results/predict.json
    python bench/predict.py --quick    # 100 images, 1 repeat
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common

SOURCE_SIZE = 256
SIZES = (32, 48, 64, 96)
NUM_CLASSES = 5
BATCH = 64
TARGET_SPEEDUP = 1.5


def _extra(parser) -> None:
    parser.add_argument("--images", type=int, default=None, help="images to grade (default 300, quick 100)")
    parser.add_argument("--source-size", type=int, default=SOURCE_SIZE, help="side of the synthetic JPEGs")


def build_workdir(root: Path, sizes=SIZES) -> Path:
    """A workdir with one built (untrained) member per input size and a fitted soft vote."""
    import numpy as np

    from ensemble.combiners import make_combiner
    from members.infra import atomic
    from ensemble.manifest import write_manifest
    from members.model.architecture import build_model
    from members.training.artifacts import save_model
    from members.model.spec import load_preset

    names = []
    for size in sizes:
        name = f"m{size}"
        folder = root / "members" / name
        folder.mkdir(parents=True, exist_ok=True)
        spec = load_preset("tiny").replace(input_size=size, seed=size)
        save_model(build_model(spec, NUM_CLASSES), folder / "model.keras")
        atomic.write_text(folder / "spec.toml", f'preset = "tiny"\n{spec.to_toml()}')
        atomic.write_json(folder / "metrics.json", {
            "name": name, "preset": "tiny", "num_classes": NUM_CLASSES, "classes": list(range(NUM_CLASSES)),
            "input_size": size, "tta": False, "model_sha256": atomic.sha256_file(folder / "model.keras")})
        names.append(name)
    rng = np.random.default_rng(0)
    P = rng.dirichlet(np.ones(NUM_CLASSES), size=(len(names), 50))
    y = np.arange(50) % NUM_CLASSES
    make_combiner("soft").fit(P, y, member_names=names).save(root / "ensemble" / "combiners" / "soft.json")
    atomic.write_json(root / "ensemble" / "report.json",
                      {"best_method": "soft", "referral": {"threshold": 0.5, "target_coverage": 0.9}})
    metrics = {name: atomic.read_json(root / "members" / name / "metrics.json") for name in names}
    write_manifest(root / "ensemble", metrics, "bench", member_root=root / "members")  # what vote writes last
    return root


def baseline_dataset(member, paths: list[str], batch_size: int = BATCH):
    """One member's own pipeline: ``load_image`` at its size (a full read and decode per member)."""
    import tensorflow as tf

    from ensemble.inference import member_variant
    from members.data.pipeline import load_image

    ds = tf.data.Dataset.from_tensor_slices(paths)
    ds = ds.map(lambda p: load_image(p, *member_variant(member)), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def baseline_member_probs(members, paths: list[str], batch_size: int = BATCH):
    """One decode per member and image: each member's own ``load_image`` pipeline at its size."""
    import numpy as np

    from ensemble.inference import member_probs

    return np.stack([np.concatenate([member_probs(m.model, batch, tta=m.tta)
                                     for batch in baseline_dataset(m, paths, batch_size)]) for m in members])


def measure(work: Path, paths: list[str], repeats: int) -> dict:
    """Median wall and CPU seconds of both ways (members loaded once), plus their largest difference."""
    from ensemble.inference import (
        check_file,
        ensemble_member_probs,
        image_batches,
        load_ensemble,
        member_variant,
    )

    ens = load_ensemble(work)

    def toolkit():
        readable = [p for p in paths if check_file(p) is None]
        P, _ = ensemble_member_probs(ens.members, readable, batch_size=BATCH)
        return P, ens.combiner.predict_proba(P), ens.combiner.predict(P)

    def baseline():
        P = baseline_member_probs(ens.members, paths)
        return P, ens.combiner.predict_proba(P), ens.combiner.predict(P)

    variants = list(dict.fromkeys(member_variant(m) for m in ens.members))

    def toolkit_input():  # the input side alone: read, decode, resize, batch
        readable = [p for p in paths if check_file(p) is None]
        return sum(int(i.shape[0]) for i, _ in image_batches(readable, variants, batch_size=BATCH))

    def baseline_input():
        return sum(int(b.shape[0]) for m in ens.members for b in baseline_dataset(m, paths))

    ways = {"toolkit": toolkit, "baseline": baseline, "toolkit_input": toolkit_input, "baseline_input": baseline_input}
    runs = {way: [] for way in ways}
    outputs = {"toolkit": toolkit(), "baseline": baseline()}  # warm-up: traces the graphs
    for r in range(repeats):
        order = list(ways) if r % 2 == 0 else list(ways)[::-1]
        for way in order:
            wall, cpu, _ = common.timed_cpu(ways[way])
            runs[way].append({"wall": wall, "cpu": cpu})
    diff = float(abs(outputs["toolkit"][0] - outputs["baseline"][0]).max())
    same_label = float((outputs["toolkit"][2] == outputs["baseline"][2]).mean())
    return {"runs": runs, "max_member_prob_diff": diff, "label_agreement": same_label,
            "members": [{"name": m.name, "input_size": m.input_size, "params": int(m.model.count_params())}
                        for m in ens.members]}


def end_to_end(work: Path, paths: list[str]) -> float:
    """Seconds of one whole ``predict_images`` call (models loaded, CSV written)."""
    import contextlib
    import io

    from ensemble.inference import predict_images

    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stderr(io.StringIO()):
        return common.timed(lambda: predict_images(work, paths, out=Path(tmp) / "p.csv"))[0]


def summarise(measured: dict, *, images: int, repeats: int, quick: bool, source_size: int,
              load_before, e2e: float) -> dict:
    n = images
    ways = {}
    for way, runs in measured["runs"].items():
        wall = common.median([r["wall"] for r in runs])
        cpu = common.median([r["cpu"] for r in runs])
        ways[way] = {"median_seconds": round(wall, 4), "images_per_second": round(n / wall, 1),
                     "median_cpu_seconds": round(cpu, 4), "cpu_ms_per_image": round(1000 * cpu / n, 3),
                     "seconds": [round(r["wall"], 4) for r in runs]}
    speedup = ways["baseline"]["median_seconds"] / ways["toolkit"]["median_seconds"]
    cpu_speedup = ways["baseline"]["median_cpu_seconds"] / ways["toolkit"]["median_cpu_seconds"]
    input_speedup = ways["baseline_input"]["median_seconds"] / ways["toolkit_input"]["median_seconds"]
    input_cpu_speedup = ways["baseline_input"]["median_cpu_seconds"] / ways["toolkit_input"]["median_cpu_seconds"]
    return {
        "benchmark": "predict", "quick": quick, "images": n, "source_size": source_size, "sizes": list(SIZES),
        "k": len(SIZES), "batch_size": BATCH, "repeats": repeats, "members": measured["members"],
        "toolkit": ways["toolkit"], "baseline": ways["baseline"],
        "speedup": round(speedup, 3), "cpu_speedup": round(cpu_speedup, 3),
        "input_only": {"toolkit": ways["toolkit_input"], "baseline": ways["baseline_input"],
                       "speedup": round(input_speedup, 3), "cpu_speedup": round(input_cpu_speedup, 3),
                       "note": "read + decode + resize + batch, no model: what decoding once saves"},
        "target": {"speedup": TARGET_SPEEDUP, "passed": speedup >= TARGET_SPEEDUP},
        "max_member_prob_diff": measured["max_member_prob_diff"], "label_agreement": measured["label_agreement"],
        "end_to_end_predict_images_seconds": round(e2e, 3),
        "machine": common.machine_info(), "load_before": load_before, "load_after": common.load_average(),
        "note": ("members built, not trained (random weights; throughput does not depend on them); both ways load "
                 "the members once and combine with the same soft vote; the baseline decodes every image once per "
                 "member with members.data.pipeline.load_image (reduced-scale JPEG decode at each member's size)."),
    }


def report(r: dict) -> None:
    rows = [[way, r[way]["images_per_second"], r[way]["median_seconds"], r[way]["cpu_ms_per_image"]]
            for way in ("toolkit", "baseline")]
    rows.append(["speed-up (wall / cpu)", r["speedup"], r["cpu_speedup"], None])
    inp = r["input_only"]
    rows += [[f"{way}, input only", inp[way]["images_per_second"], inp[way]["median_seconds"],
              inp[way]["cpu_ms_per_image"]] for way in ("toolkit", "baseline")]
    rows.append(["input-only speed-up (wall / cpu)", inp["speedup"], inp["cpu_speedup"], None])
    common.print_table(f"predict: K={r['k']} members ({', '.join(map(str, r['sizes']))} px), {r['images']} "
                       f"{r['source_size']} px JPEGs, load {r['load_before']}",
                       ["way", "images/s", "median s", "CPU ms/image"], rows)
    from rich.console import Console

    Console().print(f"target speed-up >= {TARGET_SPEEDUP}: {common.verdict(r['target']['passed'])}; "
                    f"largest member-probability difference {r['max_member_prob_diff']:.2g}, same label on "
                    f"{r['label_agreement']:.0%}; one whole predict_images call: {r['end_to_end_predict_images_seconds']} s")


def main() -> None:
    args = common.parse_args("Ensemble inference: decode once vs once per member.", name="predict", repeats=3,
                             extra=_extra)
    images = args.images or (100 if args.quick else 300)
    common.quiet_tensorflow()
    paths, _ = common.demo_images(images, args.source_size)
    load_before = common.load_average()
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        work = build_workdir(Path(tmp) / "w")
        measured = measure(work, paths, args.repeats)
        e2e = end_to_end(work, paths)
    result = summarise(measured, images=images, repeats=args.repeats, quick=args.quick,
                       source_size=args.source_size, load_before=load_before, e2e=e2e)
    report(result)
    common.write_result(args.json, result)


if __name__ == "__main__":
    common.run_script(main)
