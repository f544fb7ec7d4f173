"""The code's shape, checked from the source (README, "How the code is organised"):

imports go ``cli.py`` → ``ensemble`` → ``members`` and never back; TensorFlow stays out of
``ensemble/`` except the modules that run networks; ``members.scoring`` and the combiners'
validation are leaves; ``members/`` is grouped into data / model / training / infra.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TF_IN_ENSEMBLE = {"ensemble/inference.py", "ensemble/explain.py", "ensemble/importer.py"}  # they run or load networks


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of the file (function-level imports too)."""
    out = set()
    package = list(path.relative_to(ROOT).parent.parts)  # where ``from . import x`` starts
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []  # relative: made absolute
            module = ".".join(base + ([node.module] if node.module else []))
            out.add(module)
            out.update(f"{module}.{a.name}" for a in node.names)
    return out


def test_relative_imports_are_read_as_the_modules_they_name(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    src = tmp_path / "members" / "infra" / "atomic.py"
    src.parent.mkdir(parents=True)
    src.write_text("def f():\n    from ..training import trainer\n    from . import errors\n    from .quiet import x\n")
    assert {"members.training", "members.training.trainer", "members.infra.errors", "members.infra.quiet",
            "members.infra.quiet.x"} <= _imports(src)


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _top(names: set[str]) -> set[str]:
    return {n.split(".")[0] for n in names}


@pytest.mark.parametrize("package,forbidden", [("members", {"ensemble", "cli"}), ("ensemble", {"cli"})])
def test_imports_never_point_back(package, forbidden):
    offenders = {str(p.relative_to(ROOT)): sorted(_top(_imports(p)) & forbidden) for p in _sources(package)}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_tensorflow_stays_out_of_the_ensemble_package():
    uses = {str(p.relative_to(ROOT)) for p in _sources("ensemble") if _top(_imports(p)) & {"tensorflow", "keras"}}
    assert uses <= TF_IN_ENSEMBLE, uses - TF_IN_ENSEMBLE
    assert "ensemble/inference.py" in uses  # the check sees imports at all


@pytest.mark.parametrize("leaf,allowed", [
    ("members/scoring.py", {"__future__", "math", "typing", "numpy"}),
    ("ensemble/combiners/_validation.py", {"__future__", "collections", "typing", "numpy", "sklearn.exceptions",
                                            "ensemble.constants", "members.infra.errors"}),
])
def test_leaf_modules_import_nothing_of_their_own_package(leaf, allowed):
    names = _imports(ROOT / leaf)
    unexpected = {n for n in names if not any(n == a or n.startswith(a + ".") for a in allowed)}
    assert unexpected == set()


def test_members_is_grouped_into_data_model_training_infra():
    groups = {p.name for p in (ROOT / "members").iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert groups == {"data", "model", "training", "infra"}
    flat = {p.name for p in (ROOT / "members").glob("*.py")}
    assert flat == {"__init__.py", "scoring.py"}  # nothing else loose at the top


def test_infra_depends_on_no_other_group():
    """The infrastructure group is what every other group stands on: it imports none of them."""
    for p in _sources("members/infra"):
        used = {n for n in _imports(p) if n.startswith("members.")}
        assert all(n.startswith(("members.infra", "members.scoring")) for n in used), (p.name, used)


def test_every_module_is_named_in_the_readme_layout():
    """README "How the code is organised" names every module, so that the map does not drift from the tree."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = text[text.index("## How the code is organised"):text.index("## The workdir")]
    missing = [str(p.relative_to(ROOT)) for package in ("members", "ensemble") for p in _sources(package)
               if p.name != "__init__.py" and p.name not in layout]
    assert missing == []
