"""``vote --calibrate``: temperature-scale every member on val, and what calibration changed.

With ``calibrate="temperature"`` each member gets one temperature fitted on its val
probabilities (held out from its training); the combiners are then fitted on the scaled
members, and each combiner's output gets its own temperature, fitted on its out-of-fold
val output (see :func:`ensemble.vote._fit_methods`). Nothing is fitted on test. The
report's ``calibration`` section gives log-loss and ECE before and after, on val and test
for the members and on test for the chosen ensemble (its "before" is the same method
fitted on the unscaled members).
"""

from __future__ import annotations

import math
import sys
from dataclasses import replace

import numpy as np

from ensemble.combiners.temperature import TemperatureScaling
from ensemble.constants import CALIBRATIONS
from ensemble.member_set import MemberSet
from members.infra.errors import UserError
from members.scoring import score


def check_calibration(calibrate: str | None) -> str:
    """``"none"`` or ``"temperature"``; a one-sentence error otherwise."""
    value = "none" if calibrate is None else str(calibrate)
    if value not in CALIBRATIONS:
        raise UserError(f"calibrate must be one of {', '.join(CALIBRATIONS)}; got {calibrate!r}. "
                        "Pass --calibrate temperature or leave it out.")
    return value


def calibrate_members(ms: MemberSet) -> tuple[MemberSet, list[TemperatureScaling]]:
    """A temperature per member fitted on its val rows; ``ms`` with every member's val and test scaled."""
    temps = [TemperatureScaling().fit(p, ms.val_labels) for p in ms.val_probs]
    warn_at_bound([(name, t) for name, t in zip(ms.names, temps)], len(ms.val_labels))
    scaled = replace(ms, val_probs=np.stack([t.predict_proba(p) for t, p in zip(temps, ms.val_probs)]),
                     test_probs=np.stack([t.predict_proba(p) for t, p in zip(temps, ms.test_probs)]))
    return scaled, temps


def at_bound(t: TemperatureScaling) -> bool:
    """Whether a fitted temperature sits at an end of its search interval (the fit ran out of room)."""
    return any(abs(math.log(t.temperature_) - b) < 1e-3 for b in t.bounds)


def warn_at_bound(fitted: list[tuple[str, TemperatureScaling]], rows: int) -> list[str]:
    """Say on stderr which temperatures hit their bound; returns their names."""
    hit = [name for name, t in fitted if at_bound(t)]
    if hit:
        shown = ", ".join(f"{name} (T {t.temperature_:.3g})" for name, t in fitted if name in hit)
        print(f"Warning: the calibration temperature of {shown} sits at the end of its search range (0.05–20): the "
              f"{rows} rows it was fitted on are too few or too easily separated to fit it, and calibrated "
              "probabilities may be worse on new images; compare the calibration table's before and after, or vote "
              "without --calibrate.", file=sys.stderr)
    return hit


def _pair(labels: np.ndarray, before: np.ndarray, after: np.ndarray, preds: tuple = (None, None)) -> dict:
    """Log-loss and ECE before and after; ``preds``: the labels each reports (``None``: the argmax), which ECE judges."""
    b, a = score(labels, before, pred=preds[0]), score(labels, after, pred=preds[1])
    return {m: {"before": b[m], "after": a[m]} for m in ("log_loss", "ece")}


def calibration_section(
    raw: MemberSet,
    scaled: MemberSet | None,
    temps: list[TemperatureScaling] | None,
    ensemble: tuple | None,
    *,
    rows: str = "val",
) -> dict:
    """``report.json``'s ``calibration`` section.

    Args:
        raw: the members as trained.
        scaled: the temperature-scaled members (``None`` without calibration).
        temps: their temperatures.
        ensemble: ``(method, output temperature, test probabilities before, after[, labels before, after])``
            for the chosen ensemble; ``before`` is the method fitted on the unscaled members. ECE judges the
            labels it reports (a hard vote's tie-break, a ``+thr`` grade) where they are given, else the argmax.
        rows: what the fitted rows are (``"val"``, or the out-of-fold train+val rows).
    """
    if scaled is None or temps is None:
        return {"method": "none", "note": ("not calibrated; `vote --calibrate temperature` fits a temperature per "
                                           "member and for the combined output on val and shows the change here.")}
    members = {}
    for j, name in enumerate(raw.names):
        members[name] = {"temperature": temps[j].temperature_,
                         "val": _pair(raw.val_labels, raw.val_probs[j], scaled.val_probs[j]),
                         "test": _pair(raw.test_labels, raw.test_probs[j], scaled.test_probs[j])}
    out = {"method": "temperature", "fitted_on": f"{rows} ({len(raw.val_labels)} rows); never test",
           "note": ("p_T = softmax(log p / T): T > 1 softens over-confident probabilities, T < 1 sharpens "
                    "under-confident ones; a member's labels, accuracy and QWK do not change (the combiners are "
                    "refitted on the scaled members, so the ensemble's can). The member and ensemble rows of the "
                    "tables above are the calibrated ones. Member 'val' figures are on the rows T was fitted on."),
           "members": members}
    if ensemble is not None:
        method, t_out, before, after, *preds = ensemble
        out["ensemble"] = {"method": method, "output_temperature": t_out,
                           "test": _pair(raw.test_labels, before, after, tuple(preds) or (None, None))}
    return out
