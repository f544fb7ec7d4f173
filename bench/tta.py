"""Out-of-fold ablation of flip TTA (``tta = true``) for the k-fold members of a workdir; test is never read.

    python bench/tta.py bench/work/eyepacs512-fs8-f3 --json bench/results/tta-eyepacs512-fs8-f3.json

For every k-fold member (``train-members --folds K``), each copy's held-out rows are predicted
again through ``predict``'s image path, once plain (which must reproduce the copy's ``val.npz``) and
once averaged over the four flips (what ``tta = true`` gives), in a copy of the workdir. The copy's
held-out probabilities are replaced by the TTA ones and the member is assembled again
(:func:`members.training.folds.assemble`: a regression member's cuts are refitted on the pooled
out-of-fold scores), so the comparison is the member's out-of-fold figures with and without TTA on
every train+val row, with a paired-bootstrap CI of the difference. ``test.npz`` is left as it was.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

METRICS = ("qwk", "accuracy", "balanced_accuracy", "auc", "log_loss")


def held_out_probs(model, paths: list[str], variant: tuple[int, str, bool]) -> tuple[np.ndarray, np.ndarray]:
    """``(plain, tta)`` probabilities of one copy on its held-out files, through predict's image path."""
    from ensemble.inference import image_batches, member_probs

    plain, flipped = [], []
    for indices, (images,) in image_batches(paths, [variant], batch_size=32):
        assert len(indices) == len(images)
        plain.append(member_probs(model, images, tta=False))
        flipped.append(member_probs(model, images, tta=True))
    return np.concatenate(plain), np.concatenate(flipped)


def ablate_member(work: Path, name: str, root: Path, log) -> dict:
    import keras

    import members.model.architecture  # noqa: F401 - registers the custom layers for loading
    from ensemble.stats import bootstrap_difference, bootstrap_indices
    from members.data.dataset import load_dataset
    from members.infra import atomic
    from members.model.spec import load_spec_file
    from members.scoring import score
    from members.training.folds import assemble, fold_dir, pool_rows

    folder = work / "members" / name
    spec = load_spec_file(folder / "spec.toml")
    k = int(json.loads((folder / "folds.json").read_text())["folds"])
    metrics = json.loads((folder / "metrics.json").read_text())
    pool = pool_rows(load_dataset(work)).set_index("row_id")
    before = np.load(folder / "oof.npz")
    rows = before["row_ids"]
    labels = pool.loc[rows, "label"].to_numpy(np.int64)
    plain_oof = np.asarray(before["probs"], np.float64)
    reproduced = 0.0
    seconds = time.perf_counter()
    for i in range(k):
        d = fold_dir(work, name, i)
        held = dict(np.load(d / "val.npz"))
        paths = [str(root / p) for p in pool.loc[held["row_ids"], "path"]]
        model = keras.saving.load_model(d / "model.keras", safe_mode=True)
        plain, flipped = held_out_probs(model, paths, (spec.input_size, spec.preprocessing, spec.fundus_crop))
        reproduced = max(reproduced, float(np.abs(plain - held["probs"]).max()))
        held["probs"] = flipped.astype(np.float32)
        atomic.save_npz(d / "val.npz", **held)
        log(f"{name} copy {i}: {len(paths)} held-out rows, plain reproduces val.npz to {reproduced:.1e}")
    assemble(work, name, spec, preset=str(metrics.get("preset", "custom")), k=k)
    after = np.load(folder / "oof.npz")
    assert np.array_equal(after["row_ids"], rows)
    tta_oof = np.asarray(after["probs"], np.float64)
    c = tta_oof.shape[1]
    diff = bootstrap_difference(labels, (tta_oof, None), (plain_oof, None),
                                indices=bootstrap_indices(len(labels), 1000, seed=0), num_classes=c)
    return {"rows": int(len(labels)), "folds": k, "input_size": spec.input_size, "head": spec.head,
            "plain_reproduces_val_npz_to": reproduced, "seconds": round(time.perf_counter() - seconds, 1),
            "plain": {m: score(labels, plain_oof, num_classes=c)[m] for m in METRICS},
            "tta": {m: score(labels, tta_oof, num_classes=c)[m] for m in METRICS},
            "tta_minus_plain": {m: diff[m] for m in METRICS if m in diff}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdir", type=Path, help="a workdir with k-fold members (train-members --folds K)")
    parser.add_argument("--only", default="", help="comma-separated member names (default: every k-fold member)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    from bench._common import check_workdirs

    src = check_workdirs([args.workdir])[0]
    if not (src / "dataset.json").is_file():
        print(f"{args.workdir} is not a prepared workdir (no dataset.json); pass a workdir with k-fold members "
              "(python cli.py prepare, then train-members --folds K).", file=sys.stderr)
        return 1
    folder = src / "members"
    names = [n for n in (args.only.split(",") if args.only else
                         sorted(p.name for p in folder.iterdir()) if folder.is_dir() else [])
             if (folder / n / "folds.json").is_file()]
    if not names:
        print(f"{src} has no k-fold member; train some with train-members --folds K.", file=sys.stderr)
        return 1
    root = Path(json.loads((src / "dataset.json").read_text())["image_root"])
    out = {"workdir": str(src), "members": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "w"
        shutil.copytree(src, work, ignore=shutil.ignore_patterns("ensemble"))
        for name in names:
            out["members"][name] = result = ablate_member(work, name, root, lambda s: print(s, file=sys.stderr))
            d = result["tta_minus_plain"]
            print(f"{name}: OOF QWK {result['plain']['qwk']:.3f} -> {result['tta']['qwk']:.3f} "
                  f"({d['qwk']['value']:+.3f} [{d['qwk']['ci'][0]:+.3f}, {d['qwk']['ci'][1]:+.3f}]), "
                  f"AUC {result['plain']['auc']:.3f} -> {result['tta']['auc']:.3f} "
                  f"({d['auc']['value']:+.3f} [{d['auc']['ci'][0]:+.3f}, {d['auc']['ci'][1]:+.3f}])", flush=True)
    if args.json:
        from bench._common import machine_info

        out["machine"] = machine_info()
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    from bench._common import run_script

    run_script(main)
