"""The real sets of ``../shared/data`` that the accuracy benchmarks run on, and how each is prepared.

Each set is prepared with the same public functions a user calls (``prepare_csv``,
``prepare_npz``); a missing folder exits with one sentence naming it. A workdir is never
prepared again from the set when it holds another dataset (a user's workdir passed as
``--workdir``: its members and ensemble would stop counting) unless the script's ``--force`` asks;
preparing a workdir that already holds the set changes nothing and keeps its members.

    python bench/sets.py          # the sets, where they live, whether they are there
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import contextmanager
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


def prepare_set(name: str, workdir: Path, *, force: bool = False) -> None:
    """Prepare ``workdir`` from set ``name``.

    Idempotent: a workdir that already holds the set's split is kept as it is, with its members.
    A workdir prepared from other data (or other options) is refused, in one sentence naming it and
    ``--force``, unless ``force``: then it is prepared again and what was trained or voted there
    stops counting.

    Raises:
        UserError: ``workdir`` is a file, or holds another dataset and ``force`` is not set.
    """
    from members.data.dataset import prepare_csv, prepare_npz

    check_workdir(workdir)
    s = SETS[name]
    if s.npz:
        source = s.path / s.npz
        if not source.exists():
            sys.exit(f"{source} is missing; this benchmark needs ../shared/data (see its README).")
        with bench_refusal(name, workdir):
            prepare_npz(workdir, source, force=force)
        return
    if not (s.path / s.labels).exists():
        sys.exit(f"{s.path / s.labels} is missing; this benchmark needs ../shared/data (see its README).")
    labels = s.path / s.labels
    if s.without_patients_of:
        labels = _without_patients(labels, SHARED / s.without_patients_of / "trainLabels.csv",
                                   workdir.parent / f"{workdir.name}.labels.csv")
    with bench_refusal(name, workdir):
        prepare_csv(workdir, labels, s.path / "images", force=force)


def check_workdir(workdir: Path) -> None:
    """Refuse a ``--workdir`` that is a file, before anything is written."""
    from members.infra.errors import UserError

    if workdir.exists() and not workdir.is_dir():
        raise UserError(f"--workdir {workdir} is a file; pass a folder (it is created if missing).")


@contextmanager
def bench_refusal(name: str, workdir: Path):
    """Say a refused prepare as the benchmark's own one sentence: the workdir, what it holds, ``--force``."""
    from members.infra.errors import UserError

    try:
        yield
    except UserError as exc:
        text = str(exc)
        if not text.startswith(f"{workdir} was prepared ") and "no dataset.json, yet holds" not in text:
            raise
        what = text[len(f"{workdir} was prepared "):].split("; pass ")[0] if text.startswith(f"{workdir} was ") else \
            "without a dataset.json, yet holds members fitted on another split"
        raise other_dataset(name, workdir, what) from None


def other_dataset(name: str, workdir: Path, what: str):
    """The one sentence that refuses to prepare a workdir holding another dataset (``what``: how it was prepared)."""
    from members.infra.errors import UserError

    return UserError(f"--workdir {workdir} holds another dataset than the benchmark's {name} set: it was prepared "
                     f"{what}; a benchmark never prepares such a workdir again on its own, so pass --force to prepare "
                     f"it from {name} (its members and ensemble stop counting), or choose another --workdir.")


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


def main(argv=None) -> int:
    """List the sets: name, folder, whether it is there, what it is."""
    parser = argparse.ArgumentParser(
        description="The real sets the accuracy benchmarks (accuracy.py, ablate.py, monitor.py, free_members.py) "
                    f"run on, read from {SHARED} (set CNN_ENSEMBLE_SHARED_DATA to read them elsewhere).")
    parser.parse_args(argv)
    for s in SETS.values():
        source = s.path / (s.npz or s.labels or "")
        print(f"{s.name:20s} {'present' if source.exists() else 'MISSING'}  {source}\n{'':20s} {s.note}")
    return 0


if __name__ == "__main__":
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
