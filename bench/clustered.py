"""Test intervals with eyes resampled as independent against whole patients resampled (cluster bootstrap).

    python bench/clustered.py bench/work/eyepacs512-fs8 bench/work/eyepacs512-pretrained

For each workdir split by patient (``split.csv`` has ``group``), every complete member and the
unweighted soft vote of all of them are scored on test with the report's statistics twice: once
with the test eyes resampled as independent (the report's bootstrap before 2026-12-07) and once
with whole patients drawn (what ``vote`` does now on such a split). The point values are the same;
the table gives each interval and the ratio of the widths. Nothing is chosen: the predictions are
the members' cached ``test.npz``, already scored, so this is no new look at test. It also gives the
referable-DR sensitivity of the soft vote at P(grade >= 2) >= 0.5 with both exact intervals (eyes
and effective counts).

The figures go to ``bench/results/clustered-bootstrap.json`` (committed), which records the workdirs
and the seed; a run on other workdirs than those the file holds is refused before any work unless
``--json`` names the file (another path, or that one to replace it on purpose).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import (  # noqa: E402
    add_workdir_arguments, checked_workdir_arguments, machine_info, run_script, write_result)

METRICS = ("qwk", "accuracy", "balanced_accuracy", "auc")


def one_workdir(work: Path, n_boot: int, seed: int) -> dict:
    from ensemble import stats
    from ensemble.member_set import load_members

    from members.infra.errors import UserError

    ms = load_members(work)
    if ms.test_groups is None:
        raise UserError(f"{work}/split.csv has no group column: the split is not grouped by patient; pass workdirs "
                        "prepared from <patient>_<eye> names or with --group-column.")
    y = ms.test_labels
    eyes = stats.bootstrap_indices(len(y), n_boot, seed, stratify=y)
    patients = stats.bootstrap_indices(len(y), n_boot, seed, stratify=y, groups=ms.test_groups)
    models = {name: p.astype(np.float64) for name, p in zip(ms.names, ms.test_probs)}
    models["soft vote (all)"] = ms.test_probs.astype(np.float64).mean(axis=0)
    out = {"workdir": str(work.resolve()), "test_rows": int(len(y)), "patients": int(patients.groups), "models": {}}
    for name, probs in models.items():
        a = stats.bootstrap_metrics(y, probs, indices=eyes)
        b = stats.bootstrap_metrics(y, probs, indices=patients)
        out["models"][name] = {m: {"value": a[m]["value"], "ci_eyes": a[m]["ci"], "ci_patients": b[m]["ci"],
                                   "width_ratio": float(np.diff(b[m]["ci"])[0] / np.diff(a[m]["ci"])[0])
                                   if np.diff(a[m]["ci"])[0] > 0 else None} for m in METRICS}
    soft = models["soft vote (all)"]
    positive, flagged = y >= 2, soft[:, 2:].sum(axis=1) >= 0.5
    out["referable_soft"] = {"eyes": stats.sensitivity_specificity(positive, flagged, indices=eyes),
                             "patients": stats.sensitivity_specificity(positive, flagged, indices=patients)}
    return out


DEFAULT_JSON = ROOT / "bench" / "results" / "clustered-bootstrap.json"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_workdir_arguments(parser, DEFAULT_JSON)
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args(argv)
    resolved, out_path = checked_workdir_arguments(args, DEFAULT_JSON)
    result = {"benchmark": "clustered", "machine": machine_info(), "n_boot": args.bootstrap, "seed": args.seed,
              "workdir_paths": [str(w) for w in resolved], "workdirs": {}}
    for work in args.workdirs:
        r = one_workdir(work, args.bootstrap, args.seed)
        result["workdirs"][str(work)] = r
        print(f"\n{work}: {r['test_rows']} test eyes from {r['patients']} patients")
        print("| model | metric | value | CI, eyes independent | CI, patients drawn | width ratio |")
        print("| --- | --- | --- | --- | --- | --- |")
        for name, ms in r["models"].items():
            for m, d in ms.items():
                lo, hi = d["ci_eyes"]
                plo, phi = d["ci_patients"]
                ratio = "n/a" if d["width_ratio"] is None else f"{d['width_ratio']:.2f}"
                print(f"| {name} | {m} | {d['value']:.3f} | [{lo:.3f}, {hi:.3f}] | [{plo:.3f}, {phi:.3f}] | {ratio} |")
        for how, ss in r["referable_soft"].items():
            s = ss["sensitivity"]
            print(f"soft vote, referable sensitivity ({how}): {s['value']:.3f} [{s['ci'][0]:.3f}, {s['ci'][1]:.3f}]"
                  f" n={s['n']}{'' if 'n_effective' not in s else ', effective n=' + str(s['n_effective'])}")
    write_result(out_path, result)
    print(f"\nWrote {out_path}")
    return 0


if __name__ == "__main__":
    run_script(main)
