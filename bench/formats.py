"""What a format costs to read: the same photographs as JPEG, PNG, TIFF and LZW TIFF through the one image path.

``jpeg_exif6`` is the JPEG stored sideways with EXIF orientation 6 (as a phone writes it), which the
path turns upright (``members.data.pipeline.orientation_table`` and ``upright``): what reading the tag and turning costs;
``jpeg_no_orientation_step`` is the plain JPEG through the path without that step (as before it).

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
FORMATS = {"jpeg": ("JPEG", {"quality": 95}), "jpeg_no_orientation_step": ("JPEG", {"quality": 95}),
           "jpeg_exif6": ("JPEG", {"quality": 95, "orientation": 6}),
           "png": ("PNG", {}), "tiff": ("TIFF", {}), "tiff_lzw": ("TIFF", {"compression": "tiff_lzw"})}
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


def one_pass(paths: list[str], *, orientation_step: bool = True) -> tuple[float, float]:
    from members.data import pipeline
    from members.data.pipeline import make_dataset

    real = pipeline.orientation_table
    if not orientation_step:  # the path as it was before EXIF orientation was read: the step's own cost
        pipeline.orientation_table = lambda paths: None
    try:
        ds = make_dataset(paths, np.zeros(len(paths)), size=SIZE, batch_size=16, preprocessing="ben",
                          fundus_crop=True, cache="none")
    finally:
        pipeline.orientation_table = real
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
                options = dict(kwargs)
                if options.pop("orientation", None):  # stored sideways, as a phone writes it, tagged to be turned
                    image = Image.fromarray(np.ascontiguousarray(np.rot90(array, 1)))
                    exif = image.getexif()
                    exif[0x0112] = 6
                    options["exif"] = exif.tobytes()
                else:
                    image = Image.fromarray(array)
                image.save(folder / f"{i:04d}.{ext}", fmt, **options)
            folders[name] = sorted(str(p) for p in folder.iterdir())
            sizes[name] = sum(Path(p).stat().st_size for p in folders[name]) / len(images) / 1024
        for name, paths in folders.items():  # warm-up: imports, thread pools, the page cache
            one_pass(paths[:8], orientation_step=name != "jpeg_no_orientation_step")
        walls = {name: [] for name in FORMATS}
        cpus = {name: [] for name in FORMATS}
        for _ in range(args.repeats):
            for name, paths in folders.items():
                wall, cpu = one_pass(paths, orientation_step=name != "jpeg_no_orientation_step")
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
    common.run_script(main)
