"""The vote report's figures: metric comparison with 95 % intervals, confusion matrices, diversity,
ROC of referable DR, reliability diagrams.

Matplotlib is imported lazily with the Agg backend (no display needed), and every
PNG is written atomically.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from members.infra.atomic import write_bytes

HEADLINE = (("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy"), ("macro_f1", "macro-F1"), ("qwk", "QWK"), ("auc", "AUC"))
MEMBER_COLOR, METHOD_COLOR, BASELINE_COLOR = "tab:blue", "tab:orange", "grey"
CHOSEN_LABEL = "chosen (black ring)"
DIVERSITY_KEY = "one scale for all panels\n(Yule's Q runs -1 to 1, the others 0 to 1)"
OTHER_MEMBERS = "other members (grey)"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


SOFTWARE = "cnn-ensemble"  # the PNG's Software tag: marks the figures this toolkit wrote


def _save(fig, path: Path, *, software: str = SOFTWARE) -> Path:
    plt = _pyplot()
    buf = io.BytesIO()
    import warnings

    with warnings.catch_warnings():  # a name in a script the font lacks (CJK, say) is drawn as boxes, silently
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        fig.savefig(buf, format="png", dpi=100, metadata={"Software": software})
    plt.close(fig)
    return write_bytes(path, buf.getvalue())


def plot_comparison(path: str | Path, report: dict) -> Path:
    """One panel per headline metric: each member and method on test, point with 95 % CI whiskers.

    Args:
        path: the PNG to write.
        report: the ``report.json`` dict (``members``, ``ensembles``, ``baseline``,
            ``best_single``, ``best_method``).
    """
    plt = _pyplot()
    rows = [(name, "member", m) for name, m in report["members"].items()]
    rows += [(name, "method", m) for name, m in report["ensembles"].items()]
    best = {report.get("best_single"), report.get("best_method")}
    one = set(report.get("one_class") or ())  # one class for every test row: the majority class in effect
    y = np.arange(len(rows))[::-1]
    from ensemble.report import ONE_CLASS, columns

    shown = dict(columns(report))  # kappa on two classes, no QWK on nominal ones: as the tables name them
    panels = [(key, {"qwk": shown.get("qwk", title)}.get(key, title)) for key, title in HEADLINE
              if key != "qwk" or key in shown]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 0.9 + 0.32 * len(rows)), sharey=True)
    ringed = False
    for ax, (key, title) in zip(axes, panels):
        spans = []
        for kind, color, marker in (("member", MEMBER_COLOR, "o"), ("method", METHOD_COLOR, "s")):
            pts = [(yi, m[key]["value"], *m[key]["ci"]) for yi, (name, k, m) in zip(y, rows)
                   if k == kind and m[key]["value"] is not None and m[key]["ci"][0] is not None]
            if pts:
                yy, value, lo, hi = np.array(pts, dtype=float).T
                ax.errorbar(value, yy, xerr=[value - lo, hi - value], fmt=marker, ms=5, color=color, capsize=3, lw=1.2,
                            label=f"{kind}s" if kind == "member" else "ensembles")
                spans += [float(np.nanmin(lo)), float(np.nanmax(hi))]
        chosen = [(yi, m[key]["value"]) for yi, (name, _, m) in zip(y, rows)
                  if name in best and m[key]["value"] is not None]
        if chosen:  # a ring around the chosen ones' points: a filled mark on top hid whether it is a member or not
            ax.plot([v for _, v in chosen], [yi for yi, _ in chosen], "o", ms=13, mfc="none", mec="black", mew=1.2,
                    zorder=3, label=None if ringed else CHOSEN_LABEL)
            ringed = True
        # the axis fits the models' intervals: a baseline far off them (QWK 0) would squeeze every whisker into a
        # sliver; it is then drawn at the axis edge with its value
        low, high = (min(spans), max(spans)) if spans else (0.0, 1.0)
        pad = max(0.02, 0.08 * (high - low))
        low, high = max(-1.0, low - pad), min(1.0, high + pad) if high <= 1.0 else high + pad
        base = report["baseline"][key]["value"]
        if base is not None and low <= base <= high:
            ax.axvline(base, color=BASELINE_COLOR, ls="--", lw=1)
        elif base is not None:
            left = base < low
            ax.annotate(f"{'← ' if left else ''}majority {base:.2f}{'' if left else ' →'}",
                        xy=(0.01 if left else 0.99, 0.01), xycoords="axes fraction", ha="left" if left else "right",
                        va="bottom", fontsize=7, color="0.35")
        ax.set_xlim(low, high)
        ax.set_title(title)
        ax.set_xlabel("test value (higher is better)", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, [f"{name}{' *' if name in best else ''}{f' {ONE_CLASS}' if name in one else ''}"
                           for name, _, _ in rows])  # the marks report.md gives
    from ensemble.report import chosen_on

    keys = {label: handle for ax in axes for handle, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(list(keys.values()), list(keys), fontsize=7, loc="lower right", ncol=3, frameon=False)
    fig.suptitle(f"Test set (n={report['test_size']}): members (blue circles), ensembles (orange squares); * and a "
                 f"black ring = chosen on {chosen_on(report)}"
                 + (f"; {ONE_CLASS} = gives every test row one class (the majority class in effect)" if one else "")
                 + "\nwhiskers = 95 % bootstrap CI; dashed = majority class (always the most common val class), or its "
                 "value at the edge when it lies off the axis", fontsize=9)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return _save(fig, Path(path))


def plot_confusions(path: str | Path, panels: Sequence[tuple[str, np.ndarray]], classes: Sequence,
                    *, cut: int | None = None, word: str = "class", eyes: bool = True) -> Path:
    """Row-normalised confusion matrices side by side, each cell annotated with its count.

    Args:
        path: the PNG to write.
        panels: ``(title, k x k count matrix)`` pairs, rows = true class.
        classes: class names for the axes.
        cut: the lowest referable grade: red lines part the grades below it from the others on both axes, so
            that the referable eyes graded below it and the others graded at or above it stand out. These count
            by grade; the referable call (a threshold on P(grade >= cut)) misses other eyes, and the caption says
            it is reported separately (report.md's referable-DR section, roc.png).
        word: ``"grade"`` or ``"class"``, for the axis labels.
        eyes: the DR grades, whose caption speaks of referable eyes; other ordered grades get images, positive.
    """
    plt = _pyplot()
    width = 4.4 * len(panels) + 0.8
    lines = cut is not None and 0 < cut < len(classes)  # the red lines, and their two-line caption under the axes
    caption = 0.35 if lines else 0.0  # inches
    height = 4.0 + caption
    fig, axes = plt.subplots(1, len(panels), figsize=(width, height), squeeze=False)
    label = max((len(str(c)) for c in classes), default=1)  # class names on the y axis: room for the longest
    left = min(0.35, (0.45 + 0.075 * label) / width)
    crowded = len(classes) * label > 24  # more characters than a 4.4-inch panel holds side by side: slanted names
    bottom = min(0.4, 0.14 + (0.055 * label if crowded else 0)) * 4.0 + caption
    fig.subplots_adjust(left=left, right=0.88, bottom=bottom / height, top=1 - 0.4 / height,
                        wspace=0.3 + 0.03 * label)
    for ax, (title, cm) in zip(axes[0], panels):
        cm = np.asarray(cm)
        support = cm.sum(axis=1, keepdims=True)
        share = np.divide(cm, support, out=np.zeros(cm.shape), where=support > 0)
        image = ax.imshow(share, vmin=0, vmax=1, cmap="Blues")
        for (i, j), count in np.ndenumerate(cm):
            ax.text(j, i, f"{count}\n{share[i, j]:.0%}", ha="center", va="center", fontsize=7,
                    color="white" if share[i, j] > 0.55 else "black")
        ticks = np.arange(len(classes))
        ax.set_xticks(ticks, [str(c) for c in classes], **({"rotation": 45, "ha": "right"} if crowded else {}))
        ax.set_yticks(ticks, [str(c) for c in classes])
        ax.set_xlabel(f"predicted {word}")
        ax.set_ylabel(f"true {word}")
        if lines:
            ax.axhline(cut - 0.5, color="tab:red", lw=1.2)
            ax.axvline(cut - 0.5, color="tab:red", lw=1.2)
        ax.set_title(title, fontsize=9)
    fig.colorbar(image, cax=fig.add_axes((0.9, bottom / height + 0.06, 0.015, 0.6 * 4.0 / height)),
                 label=f"share of the true {word}")
    if lines:
        fig.text(0.01, 0.01, confusion_caption(cut, eyes=eyes), fontsize=7, color="tab:red", va="bottom")
    return _save(fig, Path(path))


def confusion_caption(cut, *, eyes: bool = True) -> str:
    """The red lines' key: the blocks count by grade, and the referable call is counted elsewhere (``eyes``: DR
    grades; else positive images at the cut)."""
    if not eyes:
        return (f"red lines: grade >= {cut} (positive) or not, counted by grade: the bottom-left block = positive "
                f"images graded below {cut}.\nThe call at the cut (a threshold on P(grade >= {cut}), chosen on "
                "validation) flags other images than the grades do: its misses are reported separately (report.md, "
                "roc.png).")
    return (f"red lines: referable (grade >= {cut}) or not, counted by grade: the bottom-left block = referable eyes graded "
            f"below {cut}.\nThe referable call (a threshold on P(grade >= {cut}), chosen on validation) flags other "
            "eyes than the grades do: its misses are reported separately (report.md Referable DR, roc.png).")


def plot_diversity(path: str | Path, diversity: dict, n: int | None = None) -> Path:
    """Heatmaps of pairwise disagreement, Yule's Q and double fault between members (test predictions).

    Every panel is drawn on one fixed scale (-1 to 1 with Yule's Q, else 0 to 1), keyed by one colour bar: a
    panel scaled to its own values made Q 0.70 green and 0.94 yellow with nothing to read them by.
    ``n`` (the test rows) goes in the figure's title.
    """
    plt = _pyplot()
    names = diversity["members"]
    panels = [("disagreement", "disagreement\n(share exactly one gets right)"),
              ("q_statistic", "Yule's Q\n(1 = err on the same rows)"),
              ("double_fault", "double fault\n(share both get wrong)")]
    panels = [p for p in panels if p[0] in diversity]
    vmin = -1.0 if any(key == "q_statistic" for key, _ in panels) else 0.0
    # a cell is 0.6 in up to a dozen members, then each panel stays 7 in wide (20 members made a 43 in figure, its
    # size and drawing time growing with the square of the members); past a dozen the cells are too small for text
    cell = min(0.6, 7.0 / max(len(names), 1))
    fig, axes = plt.subplots(1, len(panels), figsize=(1.8 + 1.9 * len(panels) + cell * len(names) * len(panels),
                                                       1.9 + cell * len(names)), squeeze=False, layout="constrained")
    for ax, (key, title) in zip(axes[0], panels):
        values = np.array([[np.nan if v is None else v for v in row] for row in diversity[key]], dtype=float)
        image = ax.imshow(values, vmin=vmin, vmax=1.0, cmap="viridis")
        for (i, j), v in (np.ndenumerate(values) if len(names) <= 12 else ()):
            light = np.isnan(v) or (v - vmin) / (1.0 - vmin) > 0.6
            ax.text(j, i, "n/a" if np.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="black" if light else "white")
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
        ax.set_yticks(range(len(names)), names)
        ax.set_title(title, fontsize=9)
    fig.suptitle("Diversity of the members on test" + (f" (n={n})" if n is not None else "")
                 + ": right/wrong per row, pair by pair", fontsize=10)
    key = fig.colorbar(image, ax=list(axes[0]), shrink=0.8, aspect=25, pad=0.02)
    key.set_label(DIVERSITY_KEY if vmin < 0 else DIVERSITY_KEY.split("\n")[0], fontsize=8)
    return _save(fig, Path(path))


def plot_roc(path: str | Path, curves: Sequence[tuple[str, str, np.ndarray, np.ndarray]],
             points: Sequence[tuple[str, str, float, float]], title: str, *, dr: bool = True) -> Path:
    """ROC curves of referable DR: members grey, the ensemble coloured, operating points marked.

    Args:
        path: the PNG to write.
        curves: ``(label, kind, positive (n,) bool, score (n,))`` with kind ``member``,
            ``single`` (the best single member) or ``ensemble``.
        points: ``(label, kind, 1 - specificity, sensitivity)`` operating points on test.
        title: the figure title.
    """
    from sklearn.metrics import roc_curve

    plt = _pyplot()
    style = {"member": ("0.7", 1.0), "single": (MEMBER_COLOR, 2.6), "ensemble": (METHOD_COLOR, 1.6)}
    fig, ax = plt.subplots(figsize=(5.2, 5.0))
    ax.plot([0, 1], [0, 1], ls=":", color="0.6", lw=1)
    order = {"member": 0, "single": 1, "ensemble": 2}
    for label, kind, positive, score in sorted(curves, key=lambda c: order.get(c[1], 0)):
        if positive.all() or not positive.any():
            continue
        fpr, tpr, _ = roc_curve(positive.astype(int), score)
        color, lw = style[kind]
        # the best single wide and solid under the ensemble, which is dashed: where they coincide both show
        ax.plot(fpr, tpr, color=color, lw=lw, ls="--" if kind == "ensemble" else "-",
                label=label if kind != "member" else None)
    if any(kind == "member" for _, kind, _, _ in curves):
        others = [label for label, kind, _, _ in curves if kind == "member"]
        ax.plot([], [], color="0.7", lw=1, label=f"{OTHER_MEMBERS}: {', '.join(others[:6])}"
                + (f" and {len(others) - 6} more" if len(others) > 6 else ""))
    for label, kind, fpr, tpr in points:
        ax.plot(fpr, tpr, "*" if kind == "ensemble" else "o", ms=13 if kind == "ensemble" else 8,
                color=style[kind][0], markeredgecolor="black", zorder=4, label=label)
    _unit_axes(ax, title, f"1 - specificity (false {'referral' if dr else 'positive'} rate)", "sensitivity",
               "lower right")
    fig.tight_layout()
    return _save(fig, Path(path))


def _unit_axes(ax, title: str, xlabel: str, ylabel: str, legend: str) -> None:
    """Both axes 0..1, a small title, a light grid and a small legend."""
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel=xlabel, ylabel=ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc=legend)


FEW_BIN_ROWS = 5  # a reliability bin of fewer rows is drawn hollow: its accuracy is mostly chance


def plot_calibration(path: str | Path, panels: Sequence[tuple[str, Sequence[tuple[str, dict]]]]) -> Path:
    """Reliability diagrams: accuracy against confidence per bin, one panel per model.

    Args:
        path: the PNG to write.
        panels: ``(title, [(curve label, bins from ensemble.stats.reliability), ...])``; the first
            curve of a panel is drawn solid, the others (e.g. before calibration) dashed.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 4.4), squeeze=False)
    for ax, (title, series) in zip(axes[0], panels):
        ax.plot([0, 1], [0, 1], ls=":", color="0.5", lw=1, label="perfect calibration")
        for i, (label, bins) in enumerate(series):
            conf, acc = np.array(bins["confidence"], float), np.array(bins["accuracy"], float)
            count = np.array(bins["count"])
            keep = count > 0
            color = METHOD_COLOR if i == 0 else "0.5"
            ax.plot(conf[keep], acc[keep], "-" if i == 0 else "--", lw=1.5 if i == 0 else 1, color=color, label=label)
            # a bin of a few rows reads 0 or 1 by chance: its marker is hollow and small, a full bin's large
            few = keep & (count < FEW_BIN_ROWS)
            size = 8 + 60 * np.sqrt(count / max(count.max(), 1))
            ax.scatter(conf[keep & ~few], acc[keep & ~few], s=size[keep & ~few], color=color, zorder=3,
                       marker="o" if i == 0 else "s")
            ax.scatter(conf[few], acc[few], s=size[few], facecolors="none", edgecolors=color, zorder=3,
                       marker="o" if i == 0 else "s",
                       label=f"hollow: under {FEW_BIN_ROWS} rows" if i == 0 and few.any() else None)
        edges, counts = np.array(series[0][1]["edges"]), np.array(series[0][1]["count"], float)
        share = ax.twinx()  # the rows per bin on their own axis: on the accuracy axis a tall bar read as accuracy
        share.bar(edges[:-1], counts / max(counts.sum(), 1.0), width=np.diff(edges), align="edge", color=MEMBER_COLOR,
                  alpha=0.15)
        share.set_ylim(0, 1)
        share.set_ylabel(f"share of the {int(counts.sum())} rows (bars)", fontsize=8, color="0.4")
        ax.set_zorder(share.get_zorder() + 1)
        ax.patch.set_visible(False)
        _unit_axes(ax, title, "confidence (top-class probability)", "accuracy (lines)", "upper left")
    fig.tight_layout()
    return _save(fig, Path(path))
