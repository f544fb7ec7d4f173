"""Fine-tuning throughput of a pretrained base with its early stages frozen (``freeze_stride``).

Like for like, in one process: the ``lite`` preset's member (EfficientNet-Lite0, regression head,
AdamW, compiled as ``train-member`` compiles it after unfreezing), the same random batch of
``--batch`` images, ``train_on_batch`` steps timed after a warm-up. Variants: ``freeze_stride``
0 (the baseline: the whole base fine-tunes), 4 and 8, at each ``--size``. Throughput in images
per second, median over ``--repeats`` runs of ``--steps`` steps; the figure is the ratio against
stride 0 at the same size. Random weights (``weights = "none"``) time the same graph as the
ImageNet ones, so the benchmark needs no package.

Usage::

    python bench/freeze_stride.py            # 224, 288 and 320 px, 8 steps x 3 repeats
    python bench/freeze_stride.py --quick    # 96 px, 3 steps x 1 repeat
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _common as common  # noqa: E402

STRIDES = (0, 4, 8)


def throughput(size: int, stride: int, *, batch: int, steps: int, repeats: int) -> list[float]:
    """Images per second of ``repeats`` runs of ``steps`` training steps (after two warm-up steps)."""
    import numpy as np

    from members.model.architecture import ExpectedGradeLoss, build_model
    from members.model.backbones import early_layers
    from members.model.spec import load_preset
    from members.training.schedule import make_optimizer

    spec = load_preset("lite").replace(input_size=size, weights="none", freeze_epochs=0, batch_size=batch)
    model = build_model(spec, 5)
    for layer in early_layers(model.get_layer("backbone"), stride):
        layer.trainable = False
    model.compile(optimizer=make_optimizer(spec, spec.lr * spec.finetune_lr_factor),
                  loss=ExpectedGradeLoss(spec.regression_loss))
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch, size, size, 3)).astype("float32")
    y = rng.integers(0, 5, batch)
    for _ in range(2):
        model.train_on_batch(x, y)
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(steps):
            model.train_on_batch(x, y)
        runs.append(batch * steps / (time.perf_counter() - started))
    return runs


def _extra(parser) -> None:
    parser.add_argument("--size", type=int, action="append", default=None, help="input size (repeatable)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per run (default 8, --quick 3)")
    parser.add_argument("--batch", type=int, default=16, help="batch size (default 16, the lite preset's)")


def main() -> None:
    args = common.parse_args("Fine-tuning throughput with the early stages frozen.", name="freeze_stride",
                             repeats=3, extra=_extra)
    sizes = args.size or ([96] if args.quick else [224, 288, 320])
    steps = args.steps or (3 if args.quick else 8)
    common.quiet_tensorflow()
    load_before = common.load_average()
    rows, result = [], {"benchmark": "freeze_stride", "baseline": "freeze_stride = 0 (the whole base fine-tunes)",
                        "batch": args.batch, "steps": steps, "repeats": args.repeats, "quick": args.quick,
                        "machine": common.machine_info(), "load_before": load_before, "sizes": {}}
    for size in sizes:
        figures = {s: common.median(throughput(size, s, batch=args.batch, steps=steps, repeats=args.repeats))
                   for s in STRIDES}
        result["sizes"][str(size)] = {
            f"stride_{s}": {"images_per_second": round(v, 2), "ratio": round(v / figures[0], 2)}
            for s, v in figures.items()}
        rows += [(size, s, f"{v:.1f}", f"{v / figures[0]:.2f}x") for s, v in figures.items()]
    common.print_table("Fine-tuning throughput (EfficientNet-Lite0, lite preset)",
                       ["size", "freeze_stride", "images/s", "vs stride 0"], rows)
    common.write_result(args.json, result)


if __name__ == "__main__":
    common.run_script(main)
