"""Member spec: presets load, every bad value is refused with a plain message, TOML round trip."""

from __future__ import annotations

import re

import pytest

from members.infra.errors import UserError
from members.model.spec import MemberSpec, list_presets, load_preset, load_spec_file, resolve_overrides, resolve_spec

REQUIRED_PRESETS = {"tiny", "small", "wide", "deep", "hires", "article"}


def test_required_presets_exist_and_validate():
    assert REQUIRED_PRESETS <= set(list_presets())
    for name in list_presets():
        spec = load_preset(name)
        assert spec.input_size == spec.stage_sizes[-1]


def test_hires_preset_resizes_progressively():
    spec = load_preset("hires")
    assert len(spec.stage_sizes) >= 2 and list(spec.stage_sizes) == sorted(spec.stage_sizes)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"epochs": 0}, "epochs must be at least 1; got 0"),
        ({"batch_size": 0}, "batch_size must be at least 1; got 0"),
        ({"input_size": 4}, "input_size must be at least 8 pixels; got 4"),
        ({"dropout": 1.0}, "dropout must be in [0, 1); got 1.0"),
        ({"lr": 0.0}, "lr must be positive"),
        ({"lr_decay": 1.5}, "lr_decay is the per-epoch multiplier"),
        ({"momentum": 1.0}, "momentum must be in [0, 1)"),
        ({"rotation": 200.0}, "rotation is in degrees"),
        ({"width_shift": 1.0}, "width_shift is a fraction"),
        ({"head": "sigmoid"}, "head must be one of softmax, ordinal, regression; got 'sigmoid'"),
        ({"class_weight": "inverse"}, "class_weight must be one of auto, none, balanced, sqrt"),
        ({"monitor": "loss"}, "monitor must be one of"),
        ({"cache": "ram"}, "cache must be one of auto, memory, disk, none"),
        ({"resize_schedule": (128, 64), "input_size": 64}, "resize_schedule must increase strictly"),
        ({"resize_schedule": (32, 64), "input_size": 96}, "resize_schedule must end at input_size"),
        ({"depth": 8, "input_size": 32}, "depth 8 halves the image 8 times, too often for input size 32"),
        ({"epochs": "3"}, "epochs must be of type int; got '3'"),
        ({"nesterov": 1}, "nesterov must be of type bool"),
    ],
)
def test_bad_values_are_refused_with_the_reason(changes, message):
    with pytest.raises(UserError) as info:
        load_preset("small").replace(**changes)
    assert message in str(info.value)


def test_progressive_resizing_on_flatten_head_is_explained():
    with pytest.raises(UserError, match="Progressive resizing needs a resolution-agnostic head.*Flatten"):
        load_preset("article").replace(resize_schedule=(128, 256))
    with pytest.raises(UserError, match="pooling 'flatten'"):
        load_preset("small").replace(pooling="flatten", resize_schedule=(64, 96))
    # a schedule that does not end at input_size is refused for the Flatten head first: the advice to end it at
    # 256 or set input_size 128 led to a second refusal; and pooling cannot free the article's network
    with pytest.raises(UserError, match=r"Flatten by design\)\. Remove resize_schedule, or take a network with global"):
        load_preset("article").replace(resize_schedule=(64, 128))


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(UserError) as info:
        load_preset("huge")
    assert "Unknown preset 'huge'" in str(info.value)
    for name in REQUIRED_PRESETS:
        assert name in str(info.value)


def test_unknown_field_is_refused_with_a_suggestion(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text('input_size = 64\nlearning_rate = 0.1\n')
    with pytest.raises(UserError, match="Unknown spec field.*'learning_rate'.*Known fields"):
        load_spec_file(path)
    with pytest.raises(UserError, match="did you mean 'epochs'"):
        MemberSpec().replace(epoch=3)


def test_invalid_toml_names_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("input_size = = 3\n")
    with pytest.raises(UserError, match="bad.toml is not valid TOML"):
        load_spec_file(path)


def test_toml_round_trip_keeps_every_field(tmp_path):
    spec = load_preset("hires").replace(seed=7, head="ordinal", rotation=12.5)
    path = tmp_path / "spec.toml"
    path.write_text('preset = "hires"\n' + spec.to_toml())
    assert load_spec_file(path) == spec


def test_replace_ignores_none_and_total_epochs():
    spec = load_preset("hires").replace(epochs=2, undersample_epochs=1, retrain_rounds=2, retrain_epochs=1, lr=None)
    assert spec.lr == load_preset("hires").lr
    assert spec.total_epochs == 2 * 2 + 1 + 2


def test_resolve_spec_applies_options_and_sets_once():
    spec = resolve_spec("tiny", {"epochs": 2, "lr": None, "input_size": 32, "resize_schedule": "16, 32"},
                        ["head=ordinal", " l2 = 0.001 "])
    assert (spec.epochs, spec.resize_schedule, spec.head, spec.l2) == (2, (16, 32), "ordinal", 0.001)
    assert spec.lr == load_preset("tiny").lr
    assert resolve_spec("tiny") == load_preset("tiny")
    assert resolve_overrides({"resize_schedule": "64→128"}) == {"resize_schedule": (64, 128)}


@pytest.mark.parametrize("options,sets,message", [
    ({"epochs": 2}, ["epochs=3"], "epochs is given both as an option and with --set; pass each field once"),
    ({"epochs": 2, "lr": 0.1}, ["lr=1", "epochs=3"], "epochs, lr are given both"),
    ({}, ["=3"], "--set takes FIELD=VALUE"),
    ({}, ["dropout"], "--set takes FIELD=VALUE"),
    ({"resize_schedule": "sixteen"}, [], "--resize-schedule takes sizes separated by commas"),
])
def test_resolve_spec_refuses_malformed_changes(options, sets, message):
    with pytest.raises(UserError, match=re.escape(message)):
        resolve_spec("tiny", options, sets)


def test_preset_param_counts_on_file_match_the_built_models(monkeypatch):
    import json

    from members.model import spec as spec_mod
    from members.model.architecture import build_model

    counts = json.loads(spec_mod.PARAMS_FILE.read_text(encoding="utf-8"))
    fix = 'run `python -c "from members.model.spec import write_preset_params; write_preset_params()"`'
    assert sorted(counts) == list_presets(), fix
    for name in list_presets():
        spec = load_preset(name)
        assert counts[name]["spec_sha256"] == spec_mod.spec_digest(spec), f"{name}: {fix}"
        built = build_model(spec.replace(weights="none", freeze_epochs=0), 5).count_params()
        assert counts[name]["params"] == built, f"{name}: {fix}"
        assert spec_mod.preset_params(name, spec) == built
    # a spec other than the one counted is built, not read from the file; so is every preset when the file is gone
    wider = load_preset("tiny").replace(width=16)
    assert spec_mod.preset_params("tiny", wider) == build_model(wider, 5).count_params() != counts["tiny"]["params"]
    monkeypatch.setattr(spec_mod, "PARAMS_FILE", spec_mod.PRESET_DIR / "missing.json")
    assert spec_mod.preset_params("small", load_preset("small")) == counts["small"]["params"]


def test_a_spec_file_may_start_from_a_built_in_preset(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('preset = "tiny"\nepochs = 1\n')
    assert load_spec_file(path) == load_preset("tiny").replace(epochs=1)  # not the field defaults
    path.write_text('preset = "nosuch"\nepochs = 1\n')
    with pytest.raises(UserError, match=r"starts from preset = 'nosuch', which is not a built-in preset \(known: "):
        load_spec_file(path)
    full = tmp_path / "spec.toml"  # a member's fully resolved spec.toml: every field set, its preset line a label
    full.write_text(load_preset("small").replace(epochs=3).to_toml(preset="my-own"))
    assert load_spec_file(full) == load_preset("small").replace(epochs=3)
    # one written before a field existed lacks it: the field's default, as when it trained, not the preset's value
    text = load_preset("tiny").to_toml(preset="small")
    full.write_text("\n".join(line for line in text.splitlines() if not line.startswith("freeze_stride")) + "\n")
    assert load_spec_file(full) == load_preset("tiny").replace(freeze_stride=MemberSpec().freeze_stride)
    full.write_text(text.replace('preset = "small"', 'preset = "my-own"').replace("freeze_stride = 0\n", ""))
    assert load_spec_file(full).input_size == load_preset("tiny").input_size  # a label that names no preset: fine


def test_run_settings_are_not_another_spec():
    from members.model.spec import RUNTIME_FIELDS
    from members.training.guard import spec_differences

    old = load_preset("tiny").to_dict()
    runtime = load_preset("tiny").replace(cache="disk", tensorboard=True, jit_compile=True, description="mine")
    assert set(RUNTIME_FIELDS) >= {"cache", "tensorboard"} and spec_differences(old, runtime) == []
    assert spec_differences(old, runtime.replace(epochs=7)) == [f"epochs {old['epochs']} → 7"]
    assert [d.split()[0] for d in spec_differences(old, load_preset("tiny").replace(strategy="mirrored"))] == [
        "strategy"]  # replicas multiply the batch: what is learned changes


def test_presets_survive_odd_param_entries_and_preset_cycles(tmp_path, monkeypatch):
    from members.model import spec as spec_mod

    counts = tmp_path / "params.json"
    monkeypatch.setattr(spec_mod, "PARAMS_FILE", counts)
    tiny = load_preset("tiny")
    for text in ('{"tiny": "x"}', '{"tiny": 5}', '{"tiny": {"spec_sha256": 1}}', "[", "null"):
        counts.write_text(text)
        assert spec_mod.preset_params("tiny", tiny) == 2077  # built again, never a traceback
    looped = tmp_path / "loop.toml"  # a file naming a preset that names itself is read one level deep only
    monkeypatch.setattr(spec_mod, "PRESET_DIR", tmp_path)
    looped.write_text('preset = "loop"\nepochs = 3\n')
    assert load_spec_file(looped).epochs == 3


def test_a_resize_schedule_with_a_size_left_out_is_refused():
    """--resize-schedule 16,,32 was read as 16,32 and ' , ' as no schedule at all."""
    from members.infra.errors import UserError
    from members.model.spec import parse_schedule

    assert parse_schedule("64, 128") == (64, 128) and parse_schedule("64→128") == (64, 128)
    for text in ("16,,32", " , ", "64,"):
        with pytest.raises(UserError, match="takes sizes separated by commas"):
            parse_schedule(text)


def test_a_preset_changed_in_what_its_description_names_says_so():
    """`--preset lite --set architecture=efficientnet_lite2` kept 'EfficientNet-Lite0 ... 224 px' in its spec.toml."""
    from members.model.spec import load_preset, resolve_spec

    changed = resolve_spec("lite", {}, ["architecture=efficientnet_lite2", "input_size=260"])
    assert changed.description == (f"{load_preset('lite').description} [changed: architecture=efficientnet_lite2, "
                                   "input_size=260]")
    assert resolve_spec("lite", {"epochs": 3}).description == load_preset("lite").description  # the schedule: as is
    assert resolve_spec("lite", {"input_size": 260, "description": "mine"}).description == "mine"
