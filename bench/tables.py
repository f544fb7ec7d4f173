"""Markdown tables for BENCHMARKS.md from an accuracy result (``bench/results/<set>.json``).

    python bench/tables.py bench/results/idrid-defaults.json

Prints, for the test split: the majority-class baseline, every member (collapsed and † below the
majority class's accuracy marked; item 1 of issue 11 checked: balanced accuracy above the
baseline's and the QWK CI's lower bound above 0), the val-chosen best single member and ensemble,
with 95 % bootstrap CIs; the referable-DR operating point (grade >= 2, chosen on val) when the
report has one; the verdict; and the wall time of each member.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _ci(m: dict | None) -> str:
    if not m or m.get("value") is None:
        return "n/a"
    lo, hi = m.get("ci") or (None, None)
    return f"{m['value']:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if lo is not None else "")


def _v(m: dict | None) -> str:
    return "n/a" if not m or m.get("value") is None else f"{m['value']:.3f}"


def tables(out: dict) -> str:
    lines = []
    bench = out.get("benchmark", {})
    members = bench.get("members", {})
    lines.append(f"`{bench.get('command', '')}` — {bench.get('seconds_total', 0) / 60:.1f} min in all on "
                 f"{(bench.get('machine') or {}).get('cpus')} CPUs, {bench.get('date', '')}; "
                 f"test n = {out.get('test_size')}, val n = {out.get('val_size')}.")
    lines.append("")
    if "vote_error" in out:
        lines.append(f"No vote: {out['vote_error']}")
        return "\n".join(lines)
    base = out["baseline"]
    lines += ["| model | test acc | test bal-acc | test QWK [95 % CI] | test AUC | item 1 | train s |",
              "| --- | --- | --- | --- | --- | --- | --- |",
              f"| majority class ({out.get('baseline_class')}) | {_v(base['accuracy'])} | {_v(base['balanced_accuracy'])} | "
              f"{_ci(base['qwk'])} | {_v(base['auc'])} | | |"]
    below = set((out.get("below_baseline") or {}).get("members", []))
    for name, m in out["members"].items():
        info = members.get(name, {})
        ok = (m["balanced_accuracy"]["value"] > base["balanced_accuracy"]["value"]
              and (m["qwk"].get("ci") or [0])[0] > 0)
        mark = (" †" if name in below else "")
        lines.append(f"| {name}{mark} | {_v(m['accuracy'])} | {_v(m['balanced_accuracy'])} | {_ci(m['qwk'])} | "
                     f"{_v(m['auc'])} | {'met' if ok else 'not met'} | {info.get('train_seconds', 0):.0f} |")
    for name in out.get("skipped", {}) or {}:
        lines.append(f"| {name} | — | — | — | — | collapsed: left out of the vote | {members.get(name, {}).get('train_seconds', 0):.0f} |")
    for name, why in (bench.get("not_run") or {}).items():
        lines.append(f"| {name} | not run | | | | {why.split(';')[0]} | |")
    best, method = out.get("best_single"), out.get("best_method")
    lines.append(f"| **val-chosen single: {best}** | {_v(out['members'][best]['accuracy'])} | "
                 f"{_v(out['members'][best]['balanced_accuracy'])} | {_ci(out['members'][best]['qwk'])} | "
                 f"{_v(out['members'][best]['auc'])} | | |")
    if method:
        e = out["ensembles"][method]
        mark = " †" if method in set((out.get("below_baseline") or {}).get("ensembles", [])) else ""
        lines.append(f"| **val-chosen ensemble: {method}**{mark} | {_v(e['accuracy'])} | {_v(e['balanced_accuracy'])} | "
                     f"{_ci(e['qwk'])} | {_v(e['auc'])} | | |")
    lines.append("")
    ref = out.get("referable") or {}
    if ref.get("applicable"):
        lines += [f"Referable DR ({ref['positive']}; threshold chosen on val for sensitivity ≥ {ref['sensitivity_target']:.2f}; "
                  f"test {ref['test_positives']} positive / {ref['test_negatives']} negative):", "",
                  "| model | test sensitivity | test specificity | test AUC |", "| --- | --- | --- | --- |"]
        for role in ("best_single", "ensemble"):
            p = ref.get(role)
            if p:
                lines.append(f"| {role.replace('_', ' ')}: {p.get('name')} | {_ci(p.get('sensitivity'))} | "
                             f"{_ci(p.get('specificity'))} | {_ci(p.get('auc')) if isinstance(p.get('auc'), dict) else p.get('auc')} |")
        lines.append("")
    protocol = out.get("protocol") or {}
    if protocol:
        lines.append(f"Protocol: combiners fitted and models chosen on {protocol.get('name')} rows ({protocol.get('rows')}).")
        lines.append("")
    if out.get("verdict"):
        lines.append(f"Verdict: {out['verdict']}")
    if out.get("bagging"):
        from ensemble.report import bagging_md

        lines += ["", "Bagging (test): the K-fold average against its single-fold copy 0."] + bagging_md(out["bagging"])[2:]
    return "\n".join(lines)


def not_an_accuracy_result(out) -> str | None:
    """Why ``out`` is not what ``bench/accuracy.py`` writes (the tables read), or None when it is."""
    if not isinstance(out, dict):
        return f"it holds a JSON {type(out).__name__}, not an object"
    if not isinstance(out.get("benchmark"), dict):
        what = out.get("benchmark")
        return f"its benchmark is {what!r}" if what is not None else "it has no benchmark section"
    if "vote_error" in out:
        return None
    missing = [key for key in ("baseline", "members", "best_single") if key not in out]
    if missing or not isinstance(out.get("members"), dict):
        return f"it has no {', '.join(missing) or 'members table'}"
    return None


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or any(a in ("-h", "--help") for a in argv):
        print(__doc__.strip())
        return 0 if argv else 2
    for path in argv:
        try:
            result = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            print(f"{path} cannot be read as a bench/accuracy.py result ({getattr(exc, 'strerror', None) or exc}); "
                  "pass a bench/results/<set>.json file.", file=sys.stderr)
            return 1
        why = not_an_accuracy_result(result)
        if why:
            print(f"{path} is not a bench/accuracy.py result ({why}); pass a bench/results/<set>.json file that "
                  "bench/accuracy.py wrote (e.g. bench/results/idrid-defaults.json).", file=sys.stderr)
            return 1
        print(tables(result))
        print()
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import run_script

    run_script(main)
