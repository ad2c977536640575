"""Which repository files each stage runs: the import closure that its DVC deps follow.

Imports are read statically (every ``import`` / ``from … import`` anywhere in a module, including those inside
functions), so a lazily imported module counts too; importing nothing keeps this cheap (no torch). The
``code_closures`` stage writes one JSON per stage module (``artifacts/code/<stage>.json``: each file of the
closure with its SHA-256), and each stage depends on its own JSON instead of a hand-kept list of source files.
A change to a file therefore reruns exactly the stages whose closure holds it, and ``dvc.yaml`` stays short (a
no-op ``dvc repro`` checks one file per stage instead of every module).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGES = ("pipeline", "stages")


def module_files(root: Path, name: str) -> list[Path]:
    """The files that importing the dotted module ``name`` executes: each package's __init__ and the module."""
    parts = name.split(".")
    files = []
    for depth in range(1, len(parts) + 1):
        base = root.joinpath(*parts[:depth])
        if (base / "__init__.py").is_file():
            files.append(base / "__init__.py")
        elif base.with_suffix(".py").is_file():
            files.append(base.with_suffix(".py"))
    return files


def imported_modules(root: Path, path: Path) -> set[str]:
    """Dotted names of the repository's modules that ``path`` imports (``from a import b`` may name a module b)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.split(".")[0] in PACKAGES and module_files(root, name)}


def import_closure(root: Path, module: str) -> list[str]:
    """Every repository file (relative, sorted) executed by importing ``module`` and, recursively, its imports."""
    todo, seen = list(module_files(root, module)), set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_modules(root, path):
            todo.extend(module_files(root, name))
    return sorted(path.relative_to(root).as_posix() for path in seen)


def stage_modules(root: Path) -> list[str]:
    """The stage modules (``stages.<name>``, one per DVC stage)."""
    return sorted(f"stages.{path.stem}" for path in (root / "stages").glob("*.py") if path.stem != "__init__")
