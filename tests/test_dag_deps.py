"""The DAG follows the code: every module a stage imports from this repository is one of the stage's DVC deps.

Imports are read statically (every ``import`` / ``from … import`` anywhere in a module, including those inside
functions), so a lazily imported module counts too. A dep that is a directory covers the files below it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

PACKAGES = ("pipeline", "stages")


def module_files(name: str) -> list[Path]:
    """The files that importing the dotted module ``name`` executes: each package's __init__ and the module."""
    parts = name.split(".")
    files = []
    for depth in range(1, len(parts) + 1):
        base = REPO.joinpath(*parts[:depth])
        if (base / "__init__.py").is_file():
            files.append(base / "__init__.py")
        elif base.with_suffix(".py").is_file():
            files.append(base.with_suffix(".py"))
    return files


def imported_modules(path: Path) -> set[str]:
    """Dotted names of this repository's modules that ``path`` imports (``from a import b`` may name a module b)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.split(".")[0] in PACKAGES and module_files(name)}


def import_closure(module: str) -> set[Path]:
    """Every repository file executed by importing ``module`` and, recursively, what those files import."""
    todo, seen = list(module_files(module)), set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_modules(path):
            todo.extend(module_files(name))
    return seen


def covered(path: Path, deps: list[str]) -> bool:
    relative = path.relative_to(REPO).as_posix()
    return any(relative == dep or relative.startswith(dep.rstrip("/") + "/") for dep in deps)


STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_cover_its_imports(stage: str) -> None:
    spec = STAGES[stage]
    module = re.fullmatch(r"python -m ([\w.]+)", spec["cmd"]).group(1)
    missing = sorted(
        p.relative_to(REPO).as_posix() for p in import_closure(module) if not covered(p, spec.get("deps", []))
    )
    assert not missing, f"stage {stage} imports files that are not among its deps: {missing}"


def test_closure_follows_lazy_imports() -> None:
    closure = {p.relative_to(REPO).as_posix() for p in import_closure("stages.predict")}
    assert {"pipeline/segmentation/predict.py", "pipeline/refine/crf.py", "pipeline/seeds/sams.py"} <= closure
