"""Shared fixtures: a tiny synthetic Kaggle-layout set, a prepared workdir, a trained tiny member.

Everything is small (32 px images, a few dozen rows, one epoch) so the suite stays fast on 2 cores.
Session-scoped fixtures are built once; tests that change a workdir copy it first.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# the real sets of ../shared/data (tests that need one skip, naming the path, when it is absent); a clone elsewhere
# points at them with CNN_ENSEMBLE_SHARED_DATA
SHARED_DATA = Path(os.environ.get("CNN_ENSEMBLE_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


@pytest.fixture(scope="session")
def demo_images(tmp_path_factory) -> Path:
    """48 synthetic fundus images (32 px, balanced grades) in the Kaggle layout."""
    from members.data.synthetic import write_demo_data

    out = tmp_path_factory.mktemp("demo") / "data"
    write_demo_data(out, images=48, size=32, seed=3, balanced=True, progress=False)
    return out


@pytest.fixture(scope="session")
def prepared(tmp_path_factory, demo_images) -> Path:
    """A workdir prepared from ``demo_images``."""
    from members.data.dataset import prepare_csv

    work = tmp_path_factory.mktemp("work") / "w"
    prepare_csv(work, demo_images / "trainLabels.csv", demo_images / "images", seed=0, progress=False)
    return work


@pytest.fixture(scope="session")
def trained(tmp_path_factory, prepared) -> Path:
    """``prepared`` plus one trained ``tiny`` member named ``t1`` (one epoch, 16 px)."""
    from members.model.spec import load_preset
    from members.training.trainer import train_member

    work = tmp_path_factory.mktemp("trained") / "w"
    shutil.copytree(prepared, work)
    train_member(work, load_preset("tiny").replace(input_size=16, epochs=1), name="t1", preset="tiny",
                 log=lambda line: None, show_progress=False)
    return work


@pytest.fixture
def workdir_copy(tmp_path, prepared) -> Path:
    """A private copy of the prepared workdir, for tests that write into it."""
    work = tmp_path / "w"
    shutil.copytree(prepared, work)
    return work


def quiet(line: str) -> None:
    """A log sink for trainers in tests."""
