"""The demo: the whole workflow on the embedded synthetic data, with progress throughout.

synthetic fundus set (Kaggle layout) → prepare → three members that differ in depth, width
and input size → vote → the comparison table. A second run reuses finished steps.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

# (member name, preset, overrides): the demo's three members differ in depth, width and input size.
# All use Ben Graham's preprocessing: on fundus photographs it is what lets a small CNN learn from
# a few hundred images. The demo's short runs (12 epochs) keep the flips but switch off rotation
# and shifts: those pay off in longer runs (the presets keep them) but slow the first epochs so much
# that a 12-epoch member stays at the majority class (measured: val QWK 0.00 with them, 0.72 without).
DEMO_AUGMENTATION = {"rotation": 0.0, "width_shift": 0.0, "height_shift": 0.0}
DEMO_MEMBERS = (
    ("small", "small", {"epochs": 12, "batch_size": 16, "preprocessing": "ben", **DEMO_AUGMENTATION}),
    ("wide", "wide", {"epochs": 12, "batch_size": 16, "width": 32, "preprocessing": "ben", **DEMO_AUGMENTATION}),
    ("deep", "deep", {"epochs": 12, "batch_size": 16, "convs_per_block": 1, "depth": 5, "preprocessing": "ben",
                      **DEMO_AUGMENTATION}),
)
QUICK_MEMBERS = (
    ("tiny-a", "tiny", {"epochs": 2, "input_size": 32, "width": 8, "preprocessing": "ben"}),
    ("tiny-b", "tiny", {"epochs": 2, "input_size": 24, "width": 12, "depth": 2, "preprocessing": "ben"}),
    ("tiny-c", "tiny", {"epochs": 2, "input_size": 40, "width": 6, "depth": 3, "preprocessing": "ben"}),
)


@dataclass
class DemoResult:
    workdir: Path
    seconds: float
    report: dict | None


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _member_done(member_dir: Path, spec) -> bool:
    """A finished member trained with the same spec is reused."""
    from members.model.spec import load_spec_file

    if not (member_dir / "metrics.json").exists() or not (member_dir / "spec.toml").exists():
        return False
    try:
        return load_spec_file(member_dir / "spec.toml") == spec
    except Exception:
        return False


def _refuse_work_of_others(workdir: Path) -> None:
    """demo re-prepares and retrains with ``force`` in its folder: only in an empty folder or an earlier demo's
    (its ``data/.demo-params``), never over a workdir, a data set or anything else it did not make."""
    from members.infra.errors import UserError

    if workdir.exists() and not workdir.is_dir():
        raise UserError(f"--workdir {workdir} is a file; pass a new folder for the demo, e.g. --workdir demo-work.")
    if not workdir.is_dir() or (workdir / "data" / ".demo-params").exists():
        return
    found = sorted(p.name for p in workdir.iterdir())
    if found == ["data"] and (workdir / "data" / "demo-data.json").exists():  # a demo killed while writing its images
        return
    if found:
        shown = ", ".join(found[:4]) + (", ..." if len(found) > 4 else "")
        raise UserError(f"--workdir {workdir} already holds files the demo did not make ({shown}); the demo prepares, "
                        "trains and votes there with --force and would replace them: pass a new or empty folder, e.g. "
                        "--workdir demo-work.")


def run_demo(workdir: str | Path, *, images: int = 800, seed: int = 0, quick: bool = False) -> DemoResult:
    """Run the demo end to end and print the comparison table on stdout.

    Args:
        workdir: where the synthetic data (``<workdir>/data``) and the workdir artifacts go.
        images: number of synthetic images.
        seed: seed of the data, the split and the members.
        quick: tiny members and few images, for a one-minute smoke run of the pipeline; members that
            collapse (they usually do, in seconds on 200 images) are said so and voted anyway.
    """
    from rich.console import Console

    from members.data.dataset import prepare_csv
    from members.model.spec import resolve_spec
    from members.data.synthetic import write_demo_data
    from members.training.trainer import member_dir, train_member

    from members.data.synthetic import MIN_PER_GRADE, NUM_GRADES
    from members.infra.errors import UserError

    started = time.perf_counter()
    workdir = Path(workdir)
    data = workdir / "data"
    if images < NUM_GRADES * MIN_PER_GRADE:  # demo-data's own minimum: every grade in train, val and test
        raise UserError(f"--images {images} is too few for the demo: prepare needs {MIN_PER_GRADE} images of each "
                        f"of the {NUM_GRADES} grades to put one in train, val and test; pass --images "
                        f"{NUM_GRADES * MIN_PER_GRADE} or more (the default is 800).")
    _refuse_work_of_others(workdir)
    if quick:
        images = min(images, 200)
    size = 64 if quick else 128
    stamp = data / ".demo-params"
    params = f"images={images} size={size} seed={seed}\n"
    if not (stamp.exists() and stamp.read_text() == params and (data / "trainLabels.csv").exists()):
        _log(f"[demo] 1/4 writing {images} synthetic fundus images ({size}px) to {data}")
        write_demo_data(data, images=images, size=size, seed=seed)
        stamp.write_text(params)
    else:
        _log(f"[demo] 1/4 reusing the synthetic images in {data}")
    _log("[demo] 2/4 preparing the workdir (checks every image, stratified split by patient)")
    prepare_csv(workdir, data / "trainLabels.csv", data / "images", seed=seed, force=True)
    members = QUICK_MEMBERS if quick else DEMO_MEMBERS
    reused = []
    for i, (name, preset, overrides) in enumerate(members, 1):
        spec = resolve_spec(preset, {**overrides, "seed": seed + i})
        if _member_done(member_dir(workdir, name), spec):
            _log(f"[demo] 3/4 member {i}/{len(members)} {name}: already trained, reused")
            reused.append(name)
            continue
        _log(f"[demo] 3/4 training member {i}/{len(members)}: {name} (preset {preset}, "
             f"{spec.input_size}px, depth {spec.depth}, width {spec.width})")
        result = train_member(workdir, spec, name=name, preset=preset, force=True)  # the demo owns its members
        t = result.metrics["test"]
        _log(f"[demo]     {name}: test balanced accuracy {t['balanced_accuracy']:.3f}, QWK {t['qwk']:.3f}, "
             f"{result.seconds:.0f}s")
    _log("[demo] 4/4 voting (`vote --calibrate temperature`): fitting the combiners on validation, scoring on test")
    from ensemble.vote import is_collapsed, run_vote
    from members.infra.atomic import read_json

    collapsed = [name for name, _, _ in members if is_collapsed(read_json(member_dir(workdir, name) / "metrics.json"))]
    keep = quick and bool(collapsed)
    if keep:  # a smoke run of the pipeline: its members train for seconds on 200 images
        where = ("the warnings above" if not set(collapsed) & set(reused)
                 else "their metrics.json: reused members were trained by an earlier run")
        _log(f"[demo] --quick: {', '.join(collapsed)} collapsed (see {where}): members trained for seconds "
             "on 200 images learn little. This smoke run votes them anyway, as `vote --keep-collapsed` would, so "
             "that it reaches the report (report.json collapsed_kept names them); the full demo's members learn.")
    report = run_vote(workdir, methods=("all",), n_boot=1000, seed=seed, calibrate="temperature", console=Console(),
                      keep_collapsed=keep)
    seconds = time.perf_counter() - started
    print(f"demo finished in {seconds / 60:.1f} min; report: {workdir / 'ensemble' / 'report.md'}")
    return DemoResult(workdir, seconds, report)
