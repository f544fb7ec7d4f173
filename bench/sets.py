"""The real sets of ``../shared/data`` that the accuracy benchmarks run on, and how each is prepared.

Each set is prepared with the same public functions a user calls (``prepare_csv``,
``prepare_npz``); a missing folder exits with one sentence naming it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


@dataclass(frozen=True)
class RealSet:
    """One benchmark set: where it lives and how its labels are laid out."""

    name: str
    folder: str
    labels: str | None = None  # CSV inside folder (Kaggle layout: image,level), None for an npz
    npz: str | None = None
    note: str = ""

    @property
    def path(self) -> Path:
        return SHARED / self.folder


SETS = {
    "retinamnist": RealSet("retinamnist", ".", npz="retinamnist.npz",
                           note="RetinaMNIST 28 px, official 1080/120/400 split"),
    "idrid": RealSet("idrid", "idrid_grading_512", labels="labels.csv",
                     note="IDRiD grading, 413 train (77 carved for val) + its 103 test photographs"),
    "eyepacs512": RealSet("eyepacs512", "eyepacs_dev_512", labels="trainLabels.csv",
                          note="757 EyePACS photographs at real resolution, Kaggle layout, split by patient"),
    "eyepacs64": RealSet("eyepacs64", "eyepacs_dev_64", labels="trainLabels.csv",
                         note="4,064 EyePACS 64 px thumbnails, Kaggle layout, split by patient"),
}


def prepare_set(name: str, workdir: Path) -> None:
    """Prepare ``workdir`` from set ``name`` (idempotent: an unchanged split is kept, with its members)."""
    from members.data.dataset import prepare_csv, prepare_npz

    s = SETS[name]
    if s.npz:
        source = s.path / s.npz
        if not source.exists():
            sys.exit(f"{source} is missing; this benchmark needs ../shared/data (see its README).")
        prepare_npz(workdir, source, force=True)
        return
    if not (s.path / s.labels).exists():
        sys.exit(f"{s.path / s.labels} is missing; this benchmark needs ../shared/data (see its README).")
    prepare_csv(workdir, s.path / s.labels, s.path / "images", force=True)
