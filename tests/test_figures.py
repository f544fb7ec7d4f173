"""The vote figures read right: the confusion caption, the ensemble on the same side in every figure, a colour key
on diversity.png, the grey curves of roc.png named, comparison.png's chosen and one-class models marked."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from ensemble import plots
from ensemble.vote import run_vote
from members.infra.atomic import read_json
from tests.test_vote import make_workdir


@pytest.fixture()
def figures(monkeypatch):
    """Every figure saved, by file name (the PNG is still written)."""
    shown = {}
    real = plots._save

    def keep(fig, path, **kw):
        shown[Path(path).name] = fig
        return real(fig, path, **kw)

    monkeypatch.setattr(plots, "_save", keep)
    return shown


@pytest.fixture()
def voted(tmp_path, figures):
    work = make_workdir(tmp_path, {"a": (0.8, 0.5), "b": (0.4, 0.7), "c": (0.3, 0.6)})
    run_vote(work, methods=["soft"], thresholds="off", n_boot=20, console=Console(file=io.StringIO()))
    return work


def _texts(fig) -> list[str]:
    return [t.get_text() for t in fig.texts]


def _titles(fig) -> list[str]:
    return [ax.get_title() for ax in fig.axes if ax.get_title()]


def test_the_confusion_caption_counts_by_grade_and_names_the_referable_call_apart(tmp_path, figures):
    """The caption called the bottom-left block "referable eyes graded below it (missed)" (16 of 22 on a real set)
    while the report's "missed" (5 of 22) counts the misses of the referable call, a threshold on P(grade >= 2)."""
    cm = np.diag([5, 3, 4, 2, 1]) + 1
    plots.plot_confusions(tmp_path / "confusion.png", [("a", cm), ("b", cm)], [0, 1, 2, 3, 4], cut=2, word="grade")
    fig = figures["confusion.png"]
    [caption] = _texts(fig)
    assert "(missed)" not in caption
    assert "by grade: the bottom-left block = referable eyes graded below 2" in caption
    assert "The referable call (a threshold on P(grade >= 2), chosen on validation)" in caption
    assert "reported separately" in caption
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)  # (saved and closed: drawn again)
    canvas.draw()
    renderer = canvas.get_renderer()
    box = fig.texts[0].get_window_extent(renderer)
    assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1 and box.y0 >= fig.bbox.y0  # inside the figure
    labels = [ax.xaxis.label.get_window_extent(renderer) for ax in fig.axes[:2]]
    assert all(label.y0 > box.y1 for label in labels)  # under the axis labels, not over them


def test_the_ensemble_is_on_the_left_in_confusion_and_calibration(voted, figures):
    """confusion.png had the ensemble left, calibration.png right."""
    for name in ("confusion.png", "calibration.png"):
        titles = _titles(figures[name])
        assert titles[0].startswith("best ensemble:") and titles[1].startswith("best single:"), (name, titles)


def test_diversity_has_one_fixed_scale_and_a_colour_bar(voted, figures):
    """Each panel had its own scale and no key: Yule's Q 0.70 read green, 0.94 yellow, with nothing to say so."""
    fig = figures["diversity.png"]
    panels = [ax for ax in fig.axes if ax.images and ax.get_title()]
    assert len(panels) == 3
    assert {ax.images[0].get_clim() for ax in panels} == {(-1.0, 1.0)}  # one scale for all
    keys = [ax for ax in fig.axes if ax.get_ylabel() == plots.DIVERSITY_KEY]
    assert len(keys) == 1


def test_diversity_of_many_members_stays_a_readable_size(tmp_path, figures):
    """20 members made a 4270 x 1390 px figure (40: 20 MP, 9 s to draw) and crowded its titles: past a dozen
    members each panel keeps its width and the cells drop their numbers."""
    names = [f"m{i}" for i in range(20)]
    square = [[0.5] * 20 for _ in range(20)]
    plots.plot_diversity(tmp_path / "d.png", {"members": names, "disagreement": square, "q_statistic": square,
                                              "double_fault": square}, n=100)
    fig = figures["d.png"]
    width, height = fig.get_size_inches()
    assert width < 30 and height < 10
    panels = [ax for ax in fig.axes if ax.images and ax.get_title()]
    assert all(not ax.texts for ax in panels)  # colour alone, the key beside it


def test_roc_names_the_grey_curves(voted, figures):
    report = read_json(voted / "ensemble" / "report.json")
    others = [n for n in ("a", "b", "c") if n != report["best_single"]]
    [legend] = [ax.get_legend() for ax in figures["roc.png"].axes if ax.get_legend()]
    labels = [t.get_text() for t in legend.get_texts()]
    assert f"{plots.OTHER_MEMBERS}: {', '.join(others)}" in labels
    assert plots.OTHER_MEMBERS == "other members (grey)"


def test_comparison_rings_the_chosen_models_and_marks_one_class_ones(voted, tmp_path, figures):
    """A black star hid whether the chosen model's point was a member's circle or an ensemble's square, and a model
    that gives every test row one class (report.md's double dagger) was not marked."""
    report = read_json(voted / "ensemble" / "report.json")
    one = next(n for n in ("a", "b", "c") if n != report["best_single"])
    report["one_class"] = [one]
    plots.plot_comparison(tmp_path / "comparison.png", report)
    fig = figures["comparison.png"]
    for ax in fig.axes:
        stars = [line for line in ax.get_lines() if line.get_marker() == "*"]
        assert stars == []
        rings = [line for line in ax.get_lines() if line.get_markerfacecolor() == "none"]
        assert len(rings) <= 1 and all(line.get_markersize() > 5 for line in rings)
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert f"{one} ‡" in ticks and f"{report['best_single']} *" in ticks
    assert "‡ = gives every test row one class" in fig._suptitle.get_text()
    legend = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert plots.CHOSEN_LABEL in legend


def test_the_report_names_predicts_review_column(voted):
    """predict's column is `review` (called `refer` before 2026-12-08): report.md names it so."""
    md = (voted / "ensemble" / "report.md").read_text()
    assert "the `review` column of `predict`" in md and "`refer`" not in md
