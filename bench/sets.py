"""The real sets of ``../shared/data`` that the accuracy benchmarks run on, and how each is prepared.

Each set is prepared with the same public functions a user calls (``prepare_csv``,
``prepare_npz``); a missing folder exits with one sentence naming it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CNN_ENSEMBLE_SHARED_DATA") or ROOT.parent / "shared" / "data")  # as the tests find it


@dataclass(frozen=True)
class RealSet:
    """One benchmark set: where it lives and how its labels are laid out."""

    name: str
    folder: str
    labels: str | None = None  # CSV inside folder (Kaggle layout: image,level), None for an npz
    npz: str | None = None
    note: str = ""
    # Another set's folder whose patients are left out of this one (Kaggle ``<patient>_<eye>`` names):
    # a set used to pretrain members for that one must not hold its val or test patients.
    without_patients_of: str | None = None

    @property
    def path(self) -> Path:
        return SHARED / self.folder


SETS = {
    "retinamnist": RealSet("retinamnist", ".", npz="retinamnist.npz",
                           note="RetinaMNIST 28 px, official 1080/120/400 split"),
    "idrid": RealSet("idrid", "idrid_grading_512", labels="labels.csv",
                     note="IDRiD grading, 413 train (77 carved for val) + its 103 test photographs; 6 byte-identical copies under two grades are dropped (510 kept)"),
    "eyepacs512": RealSet("eyepacs512", "eyepacs_dev_512", labels="trainLabels.csv",
                          note="757 EyePACS photographs at real resolution, Kaggle layout, split by patient"),
    "eyepacs64": RealSet("eyepacs64", "eyepacs_dev_64", labels="trainLabels.csv",
                         note="4,064 EyePACS 64 px thumbnails, Kaggle layout, split by patient"),
    "eyepacs64-disjoint": RealSet("eyepacs64-disjoint", "eyepacs_dev_64", labels="trainLabels.csv",
                                  without_patients_of="eyepacs_dev_512",
                                  note="the EyePACS thumbnails less every patient of eyepacs_dev_512 (3,956 images): "
                                       "a source to pretrain EyePACS-512 members on without leaking its val/test"),
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
    labels = s.path / s.labels
    if s.without_patients_of:
        labels = _without_patients(labels, SHARED / s.without_patients_of / "trainLabels.csv",
                                   workdir.parent / f"{workdir.name}.labels.csv")
    prepare_csv(workdir, labels, s.path / "images", force=True)


def _without_patients(labels: Path, other: Path, out: Path) -> Path:
    """Write ``labels`` less the rows of every patient named in ``other`` to ``out`` (atomically)."""
    import pandas as pd

    from members.data.split import patient_groups
    from members.infra.atomic import write_text

    if not other.exists():
        sys.exit(f"{other} is missing; the disjoint set needs it to leave that set's patients out.")
    table, theirs = pd.read_csv(labels, dtype={"image": str}), pd.read_csv(other, dtype={"image": str})
    ours_ids, their_ids = patient_groups(table["image"].tolist()), patient_groups(theirs["image"].tolist())
    if ours_ids is None or their_ids is None:
        sys.exit(f"{labels} or {other} has names that are not <patient>_<left|right>; cannot match patients.")
    shared = set(ours_ids) & set(their_ids)
    keep = [pid not in shared for pid in ours_ids]
    dropped = len(keep) - sum(keep)
    print(f"[sets] {labels.parent.name}: left out {dropped} images of {len(shared)} patients "
          f"who are also in {other.parent.name}; {sum(keep)} remain", file=sys.stderr, flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, table[keep].to_csv(index=False))
    return out
