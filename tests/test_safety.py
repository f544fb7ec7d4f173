"""Safety: nothing in a load path can run code from a file.

* The package sources (``members/``, ``ensemble/``, ``cli.py``) are scanned, by syntax tree and
  by text, for pickle and its relatives, ``joblib.load``, ``np.load`` without
  ``allow_pickle=False``, Keras ``Lambda`` layers, and ``load_model`` without ``safe_mode=True``.
* Every trained ``model.keras`` has its SHA-256 in ``metrics.json``; a changed file is refused.
* Image paths stay inside the image root, at prepare time and whenever a workdir is read.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from members.infra.atomic import read_json, sha256_file
from members.data.dataset import load_dataset
from members.infra.errors import UserError

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted([*REPO.glob("members/**/*.py"), *REPO.glob("ensemble/**/*.py"), REPO / "cli.py"])

UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "cloudpickle", "dill", "shelve", "marshal", "jsonpickle"}
UNSAFE_CALLS = {"joblib.load", "read_pickle", "torch.load", "enable_unsafe_deserialization", "Lambda", "eval", "exec"}
TEXT_PATTERNS = [r"allow_pickle\s*=\s*True", r"joblib\.load\b", r"\bLambda\(", r"safe_mode\s*=\s*False",
                 r"^\s*(import|from)\s+(c?pickle|cloudpickle|dill|shelve)\b"]


def _dotted(node: ast.AST) -> str:
    """``np.load`` for ``np.load(...)``'s func, ``load_model`` for a bare name, else ''."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else node.attr
    return ""


def _is_const(node: ast.AST | None, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def unsafe_uses(source: str, name: str = "<source>") -> list[str]:
    """Every unsafe construct in ``source``, as ``name:line: what``."""
    found = []
    tree = ast.parse(source, name)
    for node in ast.walk(tree):
        where = f"{name}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            found += [f"{where}: import {a.name}" for a in node.names if a.name.split(".")[0] in UNSAFE_MODULES]
        elif isinstance(node, ast.ImportFrom):
            module = (node.module or "").split(".")[0]
            if module in UNSAFE_MODULES:
                found.append(f"{where}: from {node.module} import")
            if module == "joblib" and any(a.name == "load" for a in node.names):
                found.append(f"{where}: from joblib import load")
            found += [f"{where}: import Lambda" for a in node.names if a.name == "Lambda"]
        elif isinstance(node, ast.Call):
            func = _dotted(node.func)
            last = func.rsplit(".", 1)[-1]
            keywords = {k.arg: k.value for k in node.keywords}
            if func in UNSAFE_CALLS or last in UNSAFE_CALLS - {"eval", "exec"}:
                found.append(f"{where}: {func}(...)")
            if "allow_pickle" in keywords and not _is_const(keywords["allow_pickle"], False):
                found.append(f"{where}: {func}(allow_pickle=...) not False")
            if func in ("np.load", "numpy.load") and not _is_const(keywords.get("allow_pickle"), False):
                found.append(f"{where}: {func} without allow_pickle=False")
            if last == "load_model" and not _is_const(keywords.get("safe_mode"), True):
                found.append(f"{where}: {func} without safe_mode=True")
            if "safe_mode" in keywords and not _is_const(keywords["safe_mode"], True):
                found.append(f"{where}: {func}(safe_mode=...) not True")
    for i, line in enumerate(source.splitlines(), 1):
        found += [f"{name}:{i}: matches {p!r}" for p in TEXT_PATTERNS if re.search(p, line)]
    return found


def test_the_scan_covers_the_package():
    names = {p.relative_to(REPO).as_posix() for p in SOURCES}
    assert {"cli.py", "members/infra/atomic.py", "members/training/trainer.py", "ensemble/member_set.py"} <= names


@pytest.mark.parametrize("snippet", [
    "import pickle", "import cloudpickle as cp", "from pickle import loads", "import dill",
    "from joblib import load", "import joblib\njoblib.load('m.pkl')", "pd.read_pickle('x')",
    "np.load('a.npz', allow_pickle=True)", "np.load('a.npz')", "numpy.load(path, allow_pickle=flag)",
    "keras.saving.load_model('m.keras')", "keras.models.load_model(p, safe_mode=False)",
    "load_model(p, safe_mode=flag)", "layers.Lambda(lambda x: x / 255)", "from keras.layers import Lambda",
    "keras.config.enable_unsafe_deserialization()", "eval(text)", "torch.load('w.pt')",
])
def test_the_scan_finds_unsafe_code(snippet):
    assert unsafe_uses(snippet), snippet


@pytest.mark.parametrize("snippet", [
    "np.load(path, allow_pickle=False)", "keras.saving.load_model(p, safe_mode=True)",
    '"""Never pickle: JSON only."""', "x = 'holds pickled objects'", "from joblib import Parallel, delayed",
])
def test_the_scan_accepts_safe_code(snippet):
    assert unsafe_uses(snippet) == []


def test_no_unsafe_load_anywhere_in_the_package():
    found = [hit for path in SOURCES for hit in unsafe_uses(path.read_text(encoding="utf-8"),
                                                            path.relative_to(REPO).as_posix())]
    assert found == []


def test_every_model_load_in_the_package_uses_safe_mode():
    calls = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and _dotted(node.func).endswith("load_model"):
                calls.append((path.name, {k.arg: k.value for k in node.keywords}))
    assert calls, "no load_model call found: the scan is looking in the wrong place"
    assert all(_is_const(kw.get("safe_mode"), True) for _, kw in calls), calls


def test_a_lambda_model_is_refused_by_safe_mode(tmp_path):
    """The guard is real: safe_mode=True refuses a saved Lambda layer (arbitrary code) instead of running it."""
    import keras
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    model.save(tmp_path / "lambda.keras")
    with pytest.raises(ValueError, match="(?i)lambda|unsafe|safe_mode"):
        keras.saving.load_model(tmp_path / "lambda.keras", safe_mode=True)


# ----- SHA-256 of the model ------------------------------------------------------------------

def test_model_sha256_is_recorded_in_metrics(trained):
    member = trained / "members" / "t1"
    metrics = read_json(member / "metrics.json")
    assert re.fullmatch(r"[0-9a-f]{64}", metrics["model_sha256"])
    assert metrics["model_sha256"] == hashlib.sha256((member / "model.keras").read_bytes()).hexdigest()
    assert metrics["fingerprint"] == load_dataset(trained).fingerprint


def test_trained_model_loads_with_safe_mode(trained):
    import keras
    import members.model.architecture  # noqa: F401  (registers the custom layers)

    model = keras.saving.load_model(trained / "members" / "t1" / "model.keras", safe_mode=True)
    assert model.output_shape[-1] == read_json(trained / "members" / "t1" / "metrics.json")["num_classes"]


@pytest.fixture()
def member_copy(tmp_path, trained) -> Path:
    folder = tmp_path / "t1"
    shutil.copytree(trained / "members" / "t1", folder)
    return folder


def test_predict_refuses_a_model_changed_after_training(member_copy):
    from ensemble.inference import load_member

    load_member(member_copy)  # the untouched member loads
    path = member_copy / "model.keras"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match=re.escape(str(path)) + ".*SHA-256"):
        load_member(member_copy)


def test_predict_names_a_truncated_model(member_copy):
    from ensemble.inference import load_member

    path = member_copy / "model.keras"
    path.write_bytes(path.read_bytes()[:300])
    metrics = json.loads((member_copy / "metrics.json").read_text())
    metrics["model_sha256"] = sha256_file(path)  # as if training had written a torn file
    (member_copy / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(UserError, match=re.escape(str(path))):
        load_member(member_copy)


# ----- image paths stay inside the image root ------------------------------------------------

def test_prepared_paths_are_relative_and_resolve_inside_the_image_root(prepared):
    data = load_dataset(prepared)
    root = os.path.realpath(data.image_root)
    for path in data.table["path"]:
        assert not path.startswith("/") and ".." not in path.split("/")
        assert os.path.realpath(data.image_root / path).startswith(root + os.sep)
    assert all(p.startswith(root + os.sep) for p in data.absolute_paths("train"))


@pytest.mark.parametrize("bad", ["../secret.png", "/etc/passwd", "sub/../../secret.png"])
def test_a_split_naming_images_outside_the_root_is_refused(workdir_copy, bad):
    """Even a split.csv edited with a matching fingerprint cannot point training outside the image root."""
    split = workdir_copy / "split.csv"
    lines = split.read_text().splitlines(True)
    first = lines[1].split(",", 1)
    lines[1] = f"{bad},{first[1]}"
    split.write_text("".join(lines))
    info = json.loads((workdir_copy / "dataset.json").read_text())
    info["fingerprint"] = sha256_file(split)
    (workdir_copy / "dataset.json").write_text(json.dumps(info))
    with pytest.raises(UserError, match=re.escape(f"outside the image root, e.g. {bad!r}")):
        load_dataset(workdir_copy)


def test_npz_loads_never_unpickle(tmp_path):
    from members.infra.atomic import load_npz

    path = tmp_path / "evil.npz"
    np.savez(path, probs=np.array([object()], dtype=object))
    with pytest.raises(UserError, match="pickled objects"):
        load_npz(path)
