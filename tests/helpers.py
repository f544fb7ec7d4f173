"""Assertions shared by the robustness and fault tests: run the CLI in-process, check a one-sentence error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from cli import app
from members.infra.atomic import save_npz


def run_cli(*args) -> tuple[int, str, str]:
    """Run the CLI in-process; fail on any escaped exception (a traceback for the user)."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    return result.exit_code, result.stdout, result.stderr


def one_sentence_error(code: int, err: str, *needles: str) -> str:
    """Exit 1, one ``Error: ...`` line last on stderr holding every needle, no traceback; returns that line.

    Only "Skipping member ..." notes (vote naming incomplete members) may come before it.
    """
    assert code == 1, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("Error: "), err
    assert all(line.startswith("Skipping member ") for line in lines[:-1]), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[-1], (needle, lines[-1])
    return lines[-1]


def add_member(work: Path, name: str, *, seed: int = 0, complete: bool = True) -> Path:
    """A member with the contract's val/test predictions for ``work``'s split (no training needed)."""
    from members.data.dataset import load_dataset

    data = load_dataset(work)
    folder = work / "members" / name
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for split in ("val", "test"):
        rows = data.rows(split)
        probs = rng.dirichlet(np.ones(data.num_classes), size=len(rows)) + 2 * np.eye(data.num_classes)[rows["label"]]
        save_npz(folder / f"{split}.npz", probs=(probs / probs.sum(axis=1, keepdims=True)).astype(np.float32),
                 labels=rows["label"].to_numpy(np.int64), row_ids=rows["row_id"].to_numpy(np.int64),
                 fingerprint=np.array(data.fingerprint))
    if complete:
        (folder / "metrics.json").write_text(json.dumps({
            "name": name, "num_classes": data.num_classes, "classes": data.classes, "fingerprint": data.fingerprint}))
    return folder


def add_model_member(work: Path, name: str, *, seed: int = 0) -> Path:
    """A second member that can grade images: a tiny random Keras net (16 px), imported into ``work`` (seconds);
    a copied member folder would be counted once by vote (the same predictions)."""
    import keras

    from ensemble.importer import import_member
    from members.data.dataset import load_dataset

    init = keras.initializers.GlorotUniform(seed=seed)  # this model's seed only, not the worker's global one
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", kernel_initializer=init)(keras.layers.Rescaling(1 / 255)(inputs))
    outputs = keras.layers.Dense(load_dataset(work).num_classes, activation="softmax", kernel_initializer=init)(
        keras.layers.GlobalAveragePooling2D()(x))
    path = work.parent / f"{name}-source.keras"
    keras.Model(inputs, outputs).save(path)
    return import_member(work, name, model=path)


def killed_once(job):
    """A loky worker's task that kills its own process the first time it runs member ``a`` (a worker lost to the
    out-of-memory killer) and otherwise reports the member done at once."""
    import os
    import time

    from members.training.parallel import MemberRun

    marker = Path(job.workdir) / f".killed-{job.name}"
    if job.name == "a" and not marker.exists():
        marker.write_text("once")
        os._exit(9)
    time.sleep(0.5)  # long enough for the pool to be running both members when the other one dies
    return MemberRun(job.name, job.preset, job.spec.seed, 0.5, metrics={"name": job.name})


def locked_sleeper(job):
    """A loky worker's task that takes member ``job.name``'s lock, notes its pid in ``<name>.pid`` and sleeps a
    minute (a member training when the run is killed)."""
    import os
    import time

    from members.infra.lock import MemberLock

    folder = Path(job.workdir) / "members" / job.name
    with MemberLock(folder):
        (Path(job.workdir) / f"{job.name}.pid").write_text(str(os.getpid()))
        time.sleep(60)


def unprivileged() -> list[str]:
    """A command prefix under which file permissions hold (root's override dropped with ``setpriv``); the test is
    skipped where that cannot be done."""
    import os
    import shutil

    import pytest

    if not hasattr(os, "geteuid"):
        pytest.skip("POSIX permissions only")
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: permissions are not enforced")
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--inh-caps", "-all", "--"]


def run_cli_unprivileged(*args, timeout: float = 300) -> tuple[int, str, str]:
    """Run ``python cli.py ARGS`` in a subprocess under :func:`unprivileged`."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([*unprivileged(), sys.executable, str(root / "cli.py"), *map(str, args)], cwd=root,
                          capture_output=True, text=True, timeout=timeout, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def damaged_png(pixels: np.ndarray, damage: str) -> bytes:
    """A PNG of ``pixels`` (uint8 RGB) that Pillow decodes and libpng (TensorFlow) refuses: ``"crc"`` flips a byte of
    its IDAT chunk's CRC; ``"short"`` holds a complete zlib stream of only the first half of its rows."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc ^ (kind == b"IDAT" and damage == "crc"))

    h, w = pixels.shape[:2]
    rows = h // 2 if damage == "short" else h
    raw = b"".join(b"\x00" + pixels[y].tobytes() for y in range(rows))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def cut_short_jpeg() -> bytes:
    """A 128 px JPEG (a smooth gradient) with a tenth of its scan data zeroed in the middle: Pillow and TensorFlow
    decode it without an error, libjpeg prints "Corrupt JPEG data: premature end of data segment" and leaves the
    blocks after the break blank grey."""
    import io

    from PIL import Image

    yy, xx = np.mgrid[:128, :128]
    buffer = io.BytesIO()
    Image.fromarray(np.stack([xx * 2, yy * 2, xx + yy], -1).astype(np.uint8)).save(buffer, "JPEG", quality=90)
    data = bytearray(buffer.getvalue())
    sos = data.find(b"\xff\xda")
    start = sos + 2 + int.from_bytes(data[sos + 2:sos + 4], "big")  # the scan data after the SOS header
    n = (len(data) - start) // 10
    middle = start + (len(data) - start) // 2
    data[middle:middle + n] = bytes(n)
    return bytes(data)
