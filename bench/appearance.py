"""The input screen of ``predict`` (``ensemble/appearance.py``): false alarms and catches.

    python bench/appearance.py bench/work/eyepacs512 bench/work/eyepacs64-lite bench/work/idrid \
        bench/work/retinamnist-lite

Each argument is a prepared workdir (``python cli.py prepare ...``; no member is needed). Every image
is read once by ``ensemble.appearance.look``. Two protocols:

- **choice (val only)**: the reference is the training images plus one half of val (seeded), as
  ``vote`` would build it from that workdir; for each candidate margin (:data:`PADS`, a share of the
  seen range's width) the false alarms are counted on the other half of val, pooled over the sets,
  and the catches on drawn images that are no fundus photographs (below). The rule: the smallest
  margin whose pooled false-alarm rate has a 95 % upper bound under 1 % (fewer false alarms than
  that are worth fewer missed non-fundus images).
- **scored**: the reference is what ``vote`` writes (training and validation images, up to 400);
  the false alarms are counted on the test split, on the other sets' test images (a shift of
  camera and site: reported, not a target), and the catches on images that are no fundus
  photographs of the set: random noise, text documents, smooth gradients (drawn here, seeded),
  and the set's own first test photographs turned grey, with their red and blue swapped, shrunk to
  an eighth of their side (a thumbnail) or cut to their middle 6:1 strip.

The figures go to ``bench/results/appearance.json`` (committed), which records the workdirs and the
seed; a run on other workdirs than those the file holds is refused before any image is read unless
``--out`` names the file (another path, or that one to replace it on purpose).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import (  # noqa: E402
    add_workdir_arguments, checked_workdir_arguments, machine_info, print_table, run_script, write_result)

PADS = (0.25, 0.5, 1.0)
MAX_FALSE_ALARMS = 0.01


def _flags(values: np.ndarray, ref: np.ndarray, pad_share: float) -> np.ndarray:
    from ensemble import appearance

    low, high = appearance.bounds(ref, pad_share)
    below, above = appearance.outside(values, low, high, appearance.FEATURES)  # one side for the geometry and colour
    return ((below > 0) | (above > 0)).any(axis=1)


def _sample(paths: list[str], n: int, seed: int) -> list[str]:
    if len(paths) <= n:
        return paths
    pick = np.sort(np.random.default_rng(seed).choice(len(paths), n, replace=False))
    return [paths[i] for i in pick]


def _others(folder: Path, firsts: list[str], seed: int) -> dict[str, list[str]]:
    """Images that are no fundus photographs of the set, written to ``folder``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    kinds: dict[str, list[str]] = {"noise": [], "document": [], "gradient": [], "grey fundus": [], "red-blue swapped": [],
                                   "thumbnail": [], "strip": []}
    for i in range(5):
        side = int(rng.integers(128, 640))
        path = folder / f"noise{i}.png"
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(path)
        kinds["noise"].append(str(path))
        doc = np.full((side, side, 3), int(rng.integers(200, 256)), np.uint8)
        for top in range(side // 10, side - side // 10, max(6, side // 25)):
            doc[top:top + max(2, side // 80), side // 10:side - side // 10 - int(rng.integers(0, side // 3))] = 20
        path = folder / f"document{i}.png"
        Image.fromarray(doc).save(path)
        kinds["document"].append(str(path))
        grad = np.zeros((side, side, 3), np.uint8)
        grad[..., 0] = np.linspace(0, 255, side)[None, :]
        grad[..., 1] = np.linspace(255, 0, side)[:, None]
        grad[..., 2] = int(rng.integers(0, 256))
        path = folder / f"gradient{i}.png"
        Image.fromarray(grad).save(path)
        kinds["gradient"].append(str(path))
    for i, src in enumerate(firsts):
        with Image.open(src) as im:
            rgb = np.asarray(im.convert("RGB"))
        Image.fromarray(rgb.mean(axis=2).astype(np.uint8)).convert("RGB").save(folder / f"grey{i}.png")
        Image.fromarray(np.ascontiguousarray(rgb[:, :, ::-1])).save(folder / f"swapped{i}.png")
        kinds["grey fundus"].append(str(folder / f"grey{i}.png"))
        kinds["red-blue swapped"].append(str(folder / f"swapped{i}.png"))
        h, w = rgb.shape[:2]  # an eighth of the photograph's side; its middle as a 6:1 strip
        Image.fromarray(rgb).resize((max(3, w // 8), max(3, h // 8))).save(folder / f"thumb{i}.png")
        Image.fromarray(np.ascontiguousarray(rgb[h // 2 - max(1, w // 12): h // 2 + max(1, w // 12)])).save(
            folder / f"strip{i}.png")
        kinds["thumbnail"].append(str(folder / f"thumb{i}.png"))
        kinds["strip"].append(str(folder / f"strip{i}.png"))
    return kinds


DEFAULT_OUT = ROOT / "bench" / "results" / "appearance.json"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_workdir_arguments(parser, DEFAULT_OUT, "--out")
    args = parser.parse_args(argv)

    from ensemble import appearance
    from members.data.dataset import load_dataset
    from members.infra.errors import UserError

    resolved, out_path = checked_workdir_arguments(args, DEFAULT_OUT, "--out")
    twice = sorted({w.name for w in resolved if sum(v.name == w.name for v in resolved) > 1})
    if twice:  # the sets are keyed by folder name
        raise UserError(f"Two workdirs are named {', '.join(twice)}; pass workdirs with distinct folder names.")
    sets: dict[str, dict] = {}
    for work in args.workdirs:
        data = load_dataset(work)
        train, val, test = (data.absolute_paths(s) for s in ("train", "val", "test"))
        half = np.random.default_rng(args.seed).permutation(len(val))
        held, kept = [val[i] for i in half[: len(val) // 2]], [val[i] for i in half[len(val) // 2:]]
        print(f"{work.name}: reading {min(len(train) + len(val), 400)} + {len(held)} + {len(test)} images",
              file=sys.stderr)
        sets[work.name] = {
            "choice_ref": appearance.looks(_sample(train + kept, appearance.MAX_IMAGES, args.seed)),
            "held": appearance.looks(held),
            "ref": appearance.looks(_sample(train + val, appearance.MAX_IMAGES, args.seed)),
            "test": appearance.looks(test), "firsts": test[:3], "workdir": str(work.resolve())}
    with tempfile.TemporaryDirectory() as tmp:
        for name, s in sets.items():
            s["others"] = {k: appearance.looks(v) for k, v in _others(Path(tmp), s["firsts"], args.seed).items()}
    kinds = list(next(iter(sets.values()))["others"])
    choice = {}
    for p in PADS:  # val halves and drawn images only: no test image takes part in the choice
        alarms = sum(int(_flags(s["held"], s["choice_ref"], p).sum()) for s in sets.values())
        held = sum(len(s["held"]) for s in sets.values())
        choice[str(p)] = {"held_out_flagged": alarms, "held_out": held,
                          "upper_95": _upper(alarms, held),
                          "caught": {k: [sum(int(_flags(s["others"][k], s["choice_ref"], p).sum()) for s in sets.values()),
                                         sum(len(s["others"][k]) for s in sets.values())] for k in kinds}}
    chosen = next((p for p in PADS if choice[str(p)]["upper_95"] < MAX_FALSE_ALARMS), PADS[-1])
    scored = {}
    for name, s in sets.items():
        ref = s["ref"]
        scored[name] = {
            "workdir": s["workdir"], "reference_images": len(ref),
            "test_flagged": int(_flags(s["test"], ref, appearance.PAD).sum()), "test_images": len(s["test"]),
            "other_sets_test_flagged": {o: [int(_flags(t["test"], ref, appearance.PAD).sum()), len(t["test"])]
                                        for o, t in sets.items() if o != name},
            "caught": {k: [int(_flags(v, ref, appearance.PAD).sum()), len(v)] for k, v in s["others"].items()}}
    result = {"machine": machine_info(), "workdir_paths": [str(w) for w in resolved], "seed": args.seed,
              "pads": list(PADS), "pad_used": appearance.PAD,
              "rule": f"the smallest margin whose pooled held-out false-alarm rate has a 95 % upper bound "
                      f"(Clopper-Pearson) under {MAX_FALSE_ALARMS:.0%}",
              "pad_chosen_on_val_halves": chosen, "choice": choice, "scored": scored,
              "per_set_held_out_flagged": {n: {str(p): int(_flags(s["held"], s["choice_ref"], p).sum()) for p in PADS}
                                           for n, s in sets.items()},
              "protocol": __doc__.split("\n\n", 2)[2].strip()}
    print_table("choice of the margin: val halves held out, drawn non-fundus images", [
        "margin", "held-out flagged", "upper 95 %", *kinds],
        [[p, f"{c['held_out_flagged']}/{c['held_out']}", f"{c['upper_95']:.2%}",
          *(f"{a}/{b}" for a, b in c["caught"].values())] for p, c in choice.items()])
    print_table(f"margin {appearance.PAD} (chosen: {chosen}): test false alarms and catches", ["set", "test", *kinds],
                [[n, f"{s['test_flagged']}/{s['test_images']}", *(f"{a}/{b}" for a, b in s["caught"].values())]
                 for n, s in scored.items()])
    write_result(out_path, result)
    return 0


def _upper(k: int, n: int) -> float:
    """The upper end of the two-sided 95 % Clopper-Pearson interval of k of n."""
    from scipy.stats import beta

    return 1.0 if k >= n else float(beta.ppf(0.975, k + 1, n - k))


if __name__ == "__main__":
    run_script(main)
