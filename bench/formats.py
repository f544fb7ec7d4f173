"""What a format costs to read: the same photographs as JPEG, PNG, TIFF and LZW TIFF through the one image path.

TensorFlow decodes JPEG (at reduced scale for large ones) and PNG; TIFF goes through Pillow
(``members.data.pillow_image``, called by ``tf.numpy_function`` inside the tf.data map). This reads
the same real fundus photographs (IDRiD, 771×512, from ``../shared/data``; synthetic 768×512 fundi
when it is absent) saved in each format, through ``members.data.pipeline.make_dataset`` (decode,
fundus crop + Ben, resize to 224 px; no cache, no augmentation) — what the first epoch of training,
and ``predict``, pay per image. Wall images/s and CPU ms per image, medians over ``--repeats``
passes, the formats interleaved; the baseline is JPEG.

    python bench/formats.py            # 120 photographs, 3 repeats -> bench/results/formats.json
    python bench/formats.py --quick    # 24 photographs, 1 repeat
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402

IDRID = Path(__file__).resolve().parents[2] / "shared" / "data" / "idrid_grading_512" / "images"
FORMATS = {"jpeg": ("JPEG", {"quality": 95}), "png": ("PNG", {}), "tiff": ("TIFF", {}),
           "tiff_lzw": ("TIFF", {"compression": "tiff_lzw"})}
SIZE = 224


def sources(n: int) -> tuple[list[np.ndarray], str]:
    from PIL import Image

    files = sorted(IDRID.glob("*.jpg"))[:n] if IDRID.is_dir() else []
    if len(files) == n:
        return [np.asarray(Image.open(f).convert("RGB")) for f in files], f"IDRiD photographs ({IDRID})"
    from members.data.synthetic import render_fundus

    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        frame = np.zeros((512, 768, 3), np.uint8)
        frame[:, 128:640] = render_fundus(i % 5, size=512, rng=rng)
        out.append(frame)
    return out, "synthetic 768×512 fundi (IDRiD absent)"


def one_pass(paths: list[str]) -> tuple[float, float]:
    from members.data.pipeline import make_dataset

    ds = make_dataset(paths, np.zeros(len(paths)), size=SIZE, batch_size=16, preprocessing="ben", fundus_crop=True,
                      cache="none")
    cpu, start = common.cpu_seconds(), time.perf_counter()
    n = sum(int(x.shape[0]) for x, _ in ds)
    assert n == len(paths)
    return time.perf_counter() - start, common.cpu_seconds() - cpu


def main() -> int:
    from PIL import Image

    args = common.parse_args(__doc__.splitlines()[0], name="formats", repeats=3)
    n = 24 if args.quick else 120
    images, what = sources(n)
    with tempfile.TemporaryDirectory() as tmp:
        folders = {}
        sizes = {}
        for name, (fmt, kwargs) in FORMATS.items():
            folder = Path(tmp) / name
            folder.mkdir()
            ext = "jpeg" if fmt == "JPEG" else "png" if fmt == "PNG" else "tif"
            for i, array in enumerate(images):
                Image.fromarray(array).save(folder / f"{i:04d}.{ext}", fmt, **kwargs)
            folders[name] = sorted(str(p) for p in folder.iterdir())
            sizes[name] = sum(Path(p).stat().st_size for p in folders[name]) / len(images) / 1024
        for paths in folders.values():  # warm-up: imports, thread pools, the page cache
            one_pass(paths[:8])
        walls = {name: [] for name in FORMATS}
        cpus = {name: [] for name in FORMATS}
        for _ in range(args.repeats):
            for name, paths in folders.items():
                wall, cpu = one_pass(paths)
                walls[name].append(wall)
                cpus[name].append(cpu)
    rows, result = [], {"images": n, "source": what, "size": SIZE, "preparation": "fundus crop + Ben",
                        "repeats": args.repeats, "machine": common.machine_info(), "formats": {}}
    base_wall = float(np.median(walls["jpeg"]))
    for name in FORMATS:
        wall, cpu = float(np.median(walls[name])), float(np.median(cpus[name]))
        result["formats"][name] = {"kib_per_image": round(sizes[name], 1), "images_per_s": round(n / wall, 1),
                                   "cpu_ms_per_image": round(1000 * cpu / n, 1),
                                   "time_vs_jpeg": round(wall / base_wall, 2), "walls_s": walls[name]}
        rows.append((name, f"{sizes[name]:.0f}", f"{n / wall:.1f}", f"{1000 * cpu / n:.1f}", f"{wall / base_wall:.2f}"))
    common.print_table(f"reading {n} {what} at {SIZE} px", ("format", "KiB/image", "images/s", "CPU ms/image",
                                                             "time vs JPEG"), rows)
    common.write_result(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
