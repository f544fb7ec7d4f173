"""``cli.py demo --quick``: a smoke run of the pipeline whose seconds-long members may collapse.

Training and voting are replaced by stand-ins here (the real ones are tested elsewhere); what is
checked is the demo's own decision: under ``--quick`` collapsed members are said so and voted anyway,
in the full demo they are left out as everywhere else.
"""

from __future__ import annotations

import pytest

from ensemble import demo
from members.infra.atomic import write_json
from members.training import trainer
from members.training.trainer import TrainResult


@pytest.fixture
def stand_ins(monkeypatch):
    calls: dict = {"trained": [], "vote": None}

    def fake_train(workdir, spec, *, name, preset, force):
        calls["trained"].append(name)
        metrics = {"collapsed": name != "tiny-b", "train_seconds": 1.0,
                   "test": {"balanced_accuracy": 0.2, "qwk": 0.0}}
        folder = trainer.member_dir(workdir, name)
        write_json(folder / "metrics.json", metrics)  # as the trainer leaves it
        (folder / "spec.toml").write_text(spec.to_toml(preset=preset))
        return TrainResult(name, folder, metrics)

    def fake_vote(workdir, **kwargs):
        calls["vote"] = kwargs
        return {"verdict": "stand-in"}

    monkeypatch.setattr(trainer, "train_member", fake_train)
    monkeypatch.setattr("ensemble.vote.run_vote", fake_vote)
    monkeypatch.setattr(demo, "DEMO_MEMBERS", demo.QUICK_MEMBERS)  # the same names, to keep the full run short
    return calls


@pytest.mark.parametrize("quick", [True, False])
def test_quick_demo_votes_its_collapsed_members_and_says_so(tmp_path, stand_ins, capsys, quick):
    result = demo.run_demo(tmp_path / "d", images=120, quick=quick)
    assert stand_ins["trained"] == ["tiny-a", "tiny-b", "tiny-c"] and result.report == {"verdict": "stand-in"}
    assert stand_ins["vote"]["keep_collapsed"] is quick
    err = capsys.readouterr().err
    said = "[demo] --quick: tiny-a, tiny-c collapsed (see the warnings above)"
    assert (said in err) is quick and ("votes them anyway, as `vote --keep-collapsed` would" in err) is quick


def test_a_rerun_that_reuses_collapsed_members_points_to_their_metrics(tmp_path, stand_ins, capsys):
    demo.run_demo(tmp_path / "d", images=120, quick=True)
    capsys.readouterr()
    demo.run_demo(tmp_path / "d", images=120, quick=True)  # every member complete with the same spec: reused
    err = capsys.readouterr().err
    assert "already trained, reused" in err and "see the warnings above" not in err
    assert "collapsed (see their metrics.json: reused members were trained by an earlier run)" in err
    assert "`vote --calibrate temperature`" in err  # the vote the demo runs, as README says


def test_too_few_demo_images_are_refused_before_anything_is_written(tmp_path):
    from members.infra.errors import UserError

    with pytest.raises(UserError, match=r"--images 10 is too few for the demo.*pass --images 30 or more"):
        demo.run_demo(tmp_path / "d", images=10, quick=True)
    assert not (tmp_path / "d").exists()


def test_demo_never_replaces_work_it_did_not_make(tmp_path):
    """demo -w on an existing workdir re-prepared it with --force (every member went stale, the vote was
    replaced); on a demo-data folder it wrote into it. Only an empty folder or an earlier demo's is used."""
    from members.infra.errors import UserError

    from ensemble.demo import run_demo

    work = tmp_path / "w"
    (work / "members" / "mine").mkdir(parents=True)
    (work / "dataset.json").write_text("{}")
    before = sorted(p.relative_to(work) for p in work.rglob("*"))
    with pytest.raises(UserError, match=r"already holds files the demo did not make \(dataset.json, members\)"):
        run_demo(work, quick=True)
    assert sorted(p.relative_to(work) for p in work.rglob("*")) == before
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        run_demo(tmp_path / "f", quick=True)


def test_a_demo_killed_while_writing_its_images_can_run_again(tmp_path, monkeypatch):
    """Killed before its data/.demo-params stamp, a demo left data/ with demo-data.json, and every rerun was refused
    as "files the demo did not make" although the interruption said to run it again."""
    from ensemble import demo

    work = tmp_path / "w"
    (work / "data").mkdir(parents=True)
    (work / "data" / "demo-data.json").write_text("{}")
    demo._refuse_work_of_others(work)  # no refusal
    (work / "notes.txt").write_text("mine")
    with pytest.raises(Exception, match="already holds files the demo did not make"):
        demo._refuse_work_of_others(work)
