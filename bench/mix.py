"""Val-only ablation of the regression head's uniform mix (split-half on held-out rows).

    python bench/mix.py /work/runs/idrid-f3 /work/runs/ep512 --json bench/results/mix.json

For every finished regression member of the given workdirs, its scores are recovered from its
held-out probabilities: the out-of-fold rows of a k-fold member (``oof.npz``, every train+val row),
the val rows of a plain one (``val.npz``). Then, ``--repeats`` times, the rows are split in two
halves by a seeded shuffle; :func:`members.model.regression.fit_cuts` places the cuts and fits the
scale on one half, once with the uniform mix (the default now) and once without (the rule before),
and the other half is scored: log-loss, expected calibration error (10 bins of the top
probability), QWK of the argmax and the share of rows whose argmax is the cut grade. A uniform guess
(log-loss ln k) and the fitting half's label shares (the best constant guess) are the references.
The test split is never read.

The figures go to ``bench/results/mix.json`` (figures of real runs, once written), which records the workdirs and the seed; a
run on other workdirs than those the file holds is refused before any work unless ``--json`` names
the file (another path, or that one to replace it on purpose).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RULES = ("no mix", "uniform mix")
REFERENCES = ("uniform guess", "label shares")


def held_out_scores(folder: Path) -> tuple[np.ndarray, np.ndarray, int, str] | None:
    """(scores, labels, k, which rows) of a finished regression member folder; None for any other."""
    import pandas as pd

    from members.infra.atomic import load_npz, read_json
    from members.model.regression import recover_score

    if not (folder / "metrics.json").exists():
        return None
    metrics = read_json(folder / "metrics.json")
    head = metrics.get("regression")
    if metrics.get("head") != "regression" or not head:
        return None
    split = folder.parent.parent / "split.csv"
    if (folder / "oof.npz").exists() and split.exists():
        held = load_npz(folder / "oof.npz")
        labels = pd.read_csv(split)["label"].to_numpy(np.int64)[np.asarray(held["row_ids"], np.int64)]
        rows = "out-of-fold"
    elif (folder / "val.npz").exists():
        held = load_npz(folder / "val.npz")
        labels, rows = np.asarray(held["labels"], np.int64), "val"
    else:
        return None
    probs = np.asarray(held["probs"], np.float64)
    score = recover_score(probs, np.asarray(head["cuts"]), float(head["scale"]), float(head.get("mix", 0.0)))
    return score, labels, int(probs.shape[1]), rows


def _ece(probs: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    top, pred = probs.max(axis=1), probs.argmax(axis=1)
    edges = np.minimum((top * bins).astype(int), bins - 1)
    return float(sum(abs(np.mean(pred[edges == b] == y[edges == b]) - np.mean(top[edges == b])) * np.mean(edges == b)
                     for b in range(bins) if np.any(edges == b)))


def split_half(score: np.ndarray, y: np.ndarray, k: int, repeats: int, seed: int) -> dict:
    """Mean held-out figures of each rule and reference over ``repeats`` random halves."""
    from members.model.cuts import kappa_or_zero
    from members.model.regression import fit_cuts, head_probs

    rng = np.random.default_rng(seed)
    keys = ("log_loss", "ece", "qwk", "argmax_on_cut_grade", "mix")
    sums = {name: np.zeros(len(keys)) for name in (*RULES, *REFERENCES)}
    for _ in range(repeats):
        order = rng.permutation(len(y))
        fit, held = order[: len(y) // 2], order[len(y) // 2:]
        shares = (np.bincount(y[fit], minlength=k) + 0.5) / (len(fit) + 0.5 * k)
        for name in (*RULES, *REFERENCES):
            if name in RULES:
                fitted = fit_cuts(score[fit], y[fit], k, mix=name == "uniform mix")
                cuts = np.asarray(fitted["cuts"])
                probs = head_probs(score[held], cuts, fitted["scale"], fitted["mix"])
                on_cut = float(np.mean(probs.argmax(axis=1) == np.searchsorted(cuts, score[held], side="right")))
                mix = fitted["mix"]
            else:
                probs = np.full((len(held), k), 1.0 / k) if name == "uniform guess" else np.tile(shares, (len(held), 1))
                on_cut, mix = float("nan"), float("nan")
            loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(held)), y[held]], 1e-12, None))))
            qwk = kappa_or_zero(y[held], probs.argmax(axis=1), k)
            sums[name] += (loss, _ece(probs, y[held]), qwk, on_cut, mix)
    return {name: {key: None if np.isnan(v) else round(float(v), 4) for key, v in zip(keys, s / repeats)}
            for name, s in sums.items()}


def main(argv=None) -> int:
    from bench._common import add_workdir_arguments, checked_workdir_arguments, write_result

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = ROOT / "bench" / "results" / "mix.json"
    add_workdir_arguments(parser, default)
    parser.add_argument("--repeats", type=int, default=40)
    args = parser.parse_args(argv)
    resolved, out_path = checked_workdir_arguments(args, default)
    members = {}
    for workdir in args.workdirs:
        for folder in sorted((workdir / "members").iterdir()) if (workdir / "members").is_dir() else []:
            found = held_out_scores(folder)
            if found is None:
                continue
            score, y, k, rows = found
            members[f"{workdir.name}/{folder.name}"] = {
                "workdir": str(workdir.resolve()), "rows": rows, "n": int(len(y)), "figures": split_half(score, y, k, args.repeats, args.seed)}
    if not members:
        print("No finished regression member with oof.npz or val.npz was found under the given workdirs; pass "
              "workdirs written by bench/accuracy.py or train-member.", file=sys.stderr)
        return 2
    names = (*RULES, *REFERENCES)
    def average(name: str, key: str) -> float | None:
        values = [m["figures"][name][key] for m in members.values() if m["figures"][name][key] is not None]
        return round(float(np.mean(values)), 4) if values else None

    mean = {name: {key: average(name, key) for key in ("log_loss", "ece", "qwk", "argmax_on_cut_grade", "mix")}
            for name in names}
    write_result(out_path, {"workdir_paths": [str(w) for w in resolved], "seed": args.seed,
                            "protocol": f"split-half on held-out (out-of-fold or val) rows, {args.repeats} repeats; "
                                        "test never read", "members": members, "mean": mean})
    print("| member | rows | " + " | ".join(names) + " | mix fitted | argmax on the cut grade (no mix / mix) |")
    print("| --- | --- | " + " | ".join("---" for _ in names) + " | --- | --- |")
    for name, m in [*members.items(), ("**mean**", {"rows": "", "n": "", "figures": mean})]:
        f = m["figures"]
        cells = [f"{f[r]['log_loss']:.3f} / {f[r]['ece']:.3f}" for r in names]
        print(f"| {name} | {m['n']} {m['rows']} | " + " | ".join(cells) + f" | {f['uniform mix']['mix']:.2f} | "
              f"{f['no mix']['argmax_on_cut_grade']:.3f} / {f['uniform mix']['argmax_on_cut_grade']:.3f} |")
    print("(cells: held-out log-loss / ECE)")
    return 0


if __name__ == "__main__":
    from bench._common import run_script

    run_script(main)
