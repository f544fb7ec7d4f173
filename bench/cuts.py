"""Val-only ablation of how a regression member's cuts are placed (split-half on its val rows).

    python bench/cuts.py /work/runs/ep512 /work/runs/idrid --json bench/results/cuts.json

For every regression member of the given workdirs (members trained by ``bench/accuracy.py`` or
``train-member``), the member's raw val scores are recovered from its ``val.npz`` and, ``--repeats``
times, the val rows are split in two halves stratified by nothing but a seeded shuffle: cuts are
placed on one half by each rule below and scored on the other half (QWK, accuracy, balanced
accuracy). The test split is never read. Rules:

- ``grade scale``: ``0.5, 1.5, …`` untouched;
- ``grade scale + QWK`` (the rule before this ablation): tuned for QWK from ``0.5, 1.5, …``, each
  cut within half a grade of its start and half a grade from its neighbours, kept when it raised
  the fitting half's QWK;
- ``prior-matched``: the quantiles that give each grade its share of the fitting half's labels;
- ``prior-matched + QWK`` (:func:`members.model.regression.fit_cuts`, the rule now): tuned for QWK
  from the prior-matched start, within half a grade of it;
- ``free QWK``: tuned for QWK from ``0.5, 1.5, …`` with no limits.

A second table does the same for the ensemble's grade-thresholds combiner (``soft+thr``) on each
workdir's soft vote (the mean of its non-collapsed members' val probabilities), whose expected
grade is cut by: ``grade scale + free QWK`` (the rule before), ``prior-matched``, and
``prior-matched + QWK`` (:class:`ensemble.combiners.GradeThresholds` now: within
:func:`members.model.cuts.reach_for` of the prior-matched start).

The figures go to ``bench/results/cuts.json`` (committed), which records the workdirs and the seed; a
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

RULES = ("grade scale", "grade scale + QWK", "prior-matched", "prior-matched + QWK", "free QWK")


def place(rule: str, score: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """The cuts ``rule`` places on ``score`` / ``y`` (the fitting half)."""
    from members.model.cuts import tune_cuts
    from members.model.regression import fit_cuts, prior_cuts

    scale = np.arange(k - 1) + 0.5
    if rule == "grade scale":
        return scale
    if rule == "grade scale + QWK":
        cuts, kappa, kappa0 = tune_cuts(score, y, k, scale.copy(), reach=0.5, min_gap=0.5)
        return cuts if kappa > kappa0 + 1e-9 else scale
    if rule == "prior-matched":
        matched = prior_cuts(score, np.bincount(y, minlength=k))
        return scale if matched is None else matched
    if rule == "prior-matched + QWK":
        return np.asarray(fit_cuts(score, y, k)["cuts"])
    if rule == "free QWK":
        return tune_cuts(score, y, k, scale.copy())[0]
    raise ValueError(rule)


def member_scores(folder: Path) -> tuple[np.ndarray, np.ndarray, int] | None:
    """(val scores, val labels, k) of a finished regression member folder; None for any other."""
    from members.infra.atomic import load_npz, read_json
    from members.model.regression import recover_score

    if not (folder / "metrics.json").exists():
        return None
    metrics = read_json(folder / "metrics.json")
    head = metrics.get("regression")
    if metrics.get("head") != "regression" or not head or not (folder / "val.npz").exists():
        return None
    val = load_npz(folder / "val.npz")
    score = recover_score(np.asarray(val["probs"], np.float64), np.asarray(head["cuts"]), float(head["scale"]),
                          float(head.get("mix", 0.0)))
    return score, np.asarray(val["labels"], np.int64), int(metrics["num_classes"])


def split_half(score: np.ndarray, y: np.ndarray, k: int, repeats: int, seed: int, *,
               rules: tuple[str, ...] = RULES, placer=None) -> dict:
    """Mean held-out QWK, accuracy and balanced accuracy of every rule over ``repeats`` random halves.

    ``placer(rule, score, y, k)`` places the cuts on the fitting half (default :func:`place`).
    """
    from members.model.cuts import kappa_or_zero

    placer = placer or place
    rng = np.random.default_rng(seed)
    sums = {rule: np.zeros(3) for rule in rules}
    for _ in range(repeats):
        order = rng.permutation(len(y))
        fit, held = order[: len(y) // 2], order[len(y) // 2:]
        present = np.unique(y[held])
        for rule in rules:
            pred = np.searchsorted(placer(rule, score[fit], y[fit], k), score[held], side="right")
            recall = [np.mean(pred[y[held] == c] == c) for c in present]
            sums[rule] += (kappa_or_zero(y[held], pred, k), np.mean(pred == y[held]), np.mean(recall))
    return {rule: dict(zip(("qwk", "accuracy", "balanced_accuracy"), (s / repeats).round(4).tolist()))
            for rule, s in sums.items()}


THRESHOLD_RULES = ("grade scale + free QWK", "prior-matched", "prior-matched + QWK")


def place_thresholds(rule: str, E: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """The thresholds ``rule`` places on the expected grade ``E`` of the fitting half."""
    from members.model.cuts import prior_cuts, reach_for, tune_cuts

    scale = np.arange(k - 1) + 0.5
    if rule == "grade scale + free QWK":
        return tune_cuts(E, y, k, scale.copy())[0]
    matched = prior_cuts(E, np.bincount(y, minlength=k))
    if matched is None:
        return scale
    if rule == "prior-matched":
        return matched
    return tune_cuts(E, y, k, matched.copy(), reach=reach_for(E, y))[0]


def soft_vote(workdir: Path) -> tuple[np.ndarray, np.ndarray, int] | None:
    """(expected grade of the soft vote, labels, k) on the val rows of a workdir's non-collapsed members."""
    from members.infra.atomic import load_npz, read_json

    probs, labels = [], None
    for folder in sorted((workdir / "members").iterdir()) if (workdir / "members").is_dir() else []:
        if not (folder / "metrics.json").exists() or not (folder / "val.npz").exists():
            continue
        if read_json(folder / "metrics.json").get("collapsed"):
            continue
        val = load_npz(folder / "val.npz")
        probs.append(np.asarray(val["probs"], np.float64))
        labels = np.asarray(val["labels"], np.int64)
    if not probs:
        return None
    k = probs[0].shape[1]
    return np.mean(probs, axis=0) @ np.arange(k), labels, k


def main(argv=None) -> int:
    from bench._common import add_workdir_arguments, checked_workdir_arguments, write_result

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = ROOT / "bench" / "results" / "cuts.json"
    add_workdir_arguments(parser, default)
    parser.add_argument("--repeats", type=int, default=60)
    args = parser.parse_args(argv)
    resolved, out_path = checked_workdir_arguments(args, default)
    members = {}
    for workdir in args.workdirs:
        for folder in sorted((workdir / "members").iterdir()) if (workdir / "members").is_dir() else []:
            found = member_scores(folder)
            if found is None:
                continue
            score, y, k = found
            members[f"{workdir.name}/{folder.name}"] = {
                "workdir": str(workdir.resolve()), "val_rows": int(len(y)), "majority_accuracy": round(float(np.mean(y == np.bincount(y).argmax())), 4),
                "rules": split_half(score, y, k, args.repeats, args.seed)}
    if not members:
        print("No finished regression member with val.npz was found under the given workdirs; pass workdirs "
              "written by bench/accuracy.py or train-member.", file=sys.stderr)
        return 2
    def mean_of(names: list[str]) -> dict:
        return {rule: {m: round(float(np.mean([members[n]["rules"][rule][m] for n in names])), 4)
                       for m in ("qwk", "accuracy", "balanced_accuracy")} for rule in RULES}

    sets = {w.name: [n for n in members if n.startswith(f"{w.name}/")] for w in args.workdirs}
    means = {f"mean of {w}": mean_of(names) for w, names in sets.items() if names}
    ensembles = {}
    for workdir in args.workdirs:
        found = soft_vote(workdir)
        if found is not None:
            ensembles[workdir.name] = split_half(*found, args.repeats, args.seed, rules=THRESHOLD_RULES,
                                                 placer=place_thresholds)
    write_result(out_path, {"workdir_paths": [str(w) for w in resolved], "seed": args.seed,
                            "protocol": f"split-half on val rows, {args.repeats} repeats; test never read",
                            "members": members, "means": means, "ensemble_thresholds": ensembles})
    print("| member | val rows | majority acc | " + " | ".join(RULES) + " |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in RULES) + " |")
    rows = [*members.items(), *((f"**{n}**", {"val_rows": "", "majority_accuracy": "", "rules": m}) for n, m in means.items())]
    for name, v in rows:
        cells = [f"{v['rules'][r]['qwk']:.3f} / {v['rules'][r]['accuracy']:.3f} / {v['rules'][r]['balanced_accuracy']:.3f}"
                 for r in RULES]
        print(f"| {name} | {v['val_rows']} | {v['majority_accuracy']} | " + " | ".join(cells) + " |")
    print("(cells: held-out QWK / accuracy / balanced accuracy)")
    print()
    print("| soft vote of | " + " | ".join(THRESHOLD_RULES) + " |")
    print("| --- | " + " | ".join("---" for _ in THRESHOLD_RULES) + " |")
    for name, rules in ensembles.items():
        print(f"| {name} | " + " | ".join(f"{rules[r]['qwk']:.3f} / {rules[r]['accuracy']:.3f}" for r in THRESHOLD_RULES) + " |")
    print("(cells: held-out QWK / accuracy of the grade thresholds on the soft vote's expected grade)")
    return 0


if __name__ == "__main__":
    from bench._common import run_script

    run_script(main)
