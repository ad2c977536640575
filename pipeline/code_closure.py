"""Which repository files each stage runs: the import closure that its DVC deps follow.

Imports are read statically (every ``import`` / ``from … import`` anywhere in a module, including those inside
functions), so a lazily imported module counts too; importing nothing keeps this cheap (no torch). The
``code_closures`` stage writes one JSON per stage module (``artifacts/code/<stage>.json``: each file of the
closure with its SHA-256), and each stage depends on its own JSON instead of a hand-kept list of source files.
A change to a file therefore reruns exactly the stages whose closure holds it.

The closure is what a stage runs *for the current params*, by three rules:

- **Registries.** A :class:`~pipeline.registry.Registry` names its implementations' modules as strings
  (``Registry("refine method", selected_by="refine.method", loaders={"crf": "pipeline.refine.crf", …})``), read
  here from the call's source: a stage reaching the registry depends on the selected names' modules only.
- **CAM method packages.** Each sub-package of ``pipeline/cams/methods`` is one method's code (params, model,
  losses). An import into one from outside it, and a CAM registry's loader, is followed only for the methods
  the stage runs: the names its module declares in ``CAM_ROLES`` (``"selected"``: ``cam.method``;
  ``"first_phase"``: that method's first phase, e.g. plain CAM for POLE; ``"all"``), none without it. Imports
  between method packages (POLE's params extend CLIMS's) are always followed.
- **Infrastructure.** :data:`INFRASTRUCTURE` lists the modules that cannot change an output (progress bars,
  logs, Prefect reporting): they are never recorded, so editing them reruns nothing; their imports are followed.

``stages.run`` checks at the end of every stage that each repository module it imported is in its closure,
so a stage that runs more than its closure says fails instead of leaving a cache that lies.
"""

from __future__ import annotations

import ast
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.params import PipelineParams

PACKAGES = ("pipeline", "stages")
METHOD_PACKAGES = "pipeline/cams/methods"
INFRASTRUCTURE = (  # tested to write nothing into any output (tests/test_dag_deps.py)
    "pipeline/tracking.py",  # progress bars, logs, Prefect artifacts
    "pipeline/code_closure.py",  # these rules, and the check that a stage ran only its closure
)
CAM_ROLES = ("selected", "first_phase", "all")


@dataclass(frozen=True)
class RegistryLoaders:
    """A ``Registry(...)`` call's lazy loaders (name → module) and the key that selects its names."""

    selected_by: str
    loaders: dict[str, str]


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


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


def _repository_module(root: Path, name: str) -> bool:
    return name.split(".")[0] in PACKAGES and bool(module_files(root, name))


def imported_modules(root: Path, tree: ast.Module) -> set[str]:
    """Dotted names of the repository's modules that a parsed module imports (``from a import b`` may name a
    module b)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if _repository_module(root, name)}


def registry_loaders(tree: ast.Module) -> list[RegistryLoaders]:
    """The lazy loaders of each ``Registry(..., selected_by=..., loaders={...})`` call in a parsed module."""
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Registry"):
            continue
        keywords = {keyword.arg: keyword.value for keyword in node.keywords}
        if "loaders" not in keywords:
            continue
        loaders = ast.literal_eval(keywords["loaders"])
        found.append(RegistryLoaders(ast.literal_eval(keywords["selected_by"]), loaders))
    return found


def declared_cam_roles(path: Path, tree: ast.Module) -> tuple[str, ...]:
    """A stage module's ``CAM_ROLES = (...)``: which CAM methods it runs (none when absent)."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "CAM_ROLES" for t in node.targets):
            roles = tuple(ast.literal_eval(node.value))
            unknown = sorted(set(roles) - set(CAM_ROLES))
            if unknown:
                raise ValueError(f"{path}: unknown CAM_ROLES {unknown}; known: {', '.join(CAM_ROLES)}")
            return roles
    return ()


def method_package(relative: str) -> str | None:
    """The CAM method package (``pipeline/cams/methods/pole``) a repository file belongs to, if any."""
    prefix = METHOD_PACKAGES + "/"
    if not relative.startswith(prefix) or "/" not in relative[len(prefix) :]:
        return None
    return prefix + relative[len(prefix) :].split("/")[0]


Selector = Callable[[str, tuple[str, ...]], set[str]]


class ClosureFinder:
    """Import closures of one source tree; each file is parsed once.

    ``selector(selected_by, cam_roles)`` gives the names a registry's loaders are followed for (``cam``: the
    CAM methods for a stage declaring ``cam_roles``); without a selector every implementation and method
    package counts (the most a stage could run).
    """

    def __init__(self, root: Path, selector: Selector | None = None) -> None:
        self.root, self.selector = root, selector
        self._parsed: dict[Path, tuple[set[str], list[RegistryLoaders], tuple[str, ...]]] = {}

    def parsed(self, path: Path) -> tuple[set[str], list[RegistryLoaders], tuple[str, ...]]:
        """A file's repository imports, registry loaders and declared CAM roles (the file is parsed once)."""
        if path not in self._parsed:
            tree = parse(path)
            self._parsed[path] = (imported_modules(self.root, tree), registry_loaders(tree),
                                  declared_cam_roles(path, tree))  # fmt: skip
        return self._parsed[path]

    @cached_property
    def cam_loaders(self) -> list[tuple[str, str]]:
        """(name, module) of every CAM registry's loaders in the tree."""
        return [item for path in sorted((self.root / "pipeline").rglob("*.py")) for registry in self.parsed(path)[1]
                if registry.selected_by == "cam" for item in registry.loaders.items()]  # fmt: skip

    def cam_packages(self, names: set[str]) -> set[str]:
        """The method packages of the CAM methods ``names``."""
        return {method_package(module.replace(".", "/") + ".py") for name, module in self.cam_loaders if name in names}

    def closure(self, module: str) -> list[str]:
        """Every repository file (relative, sorted) that importing ``module`` runs for the selection; the
        infrastructure modules are left out."""
        root = self.root
        roles = self.parsed(module_files(root, module)[-1])[2] if module.startswith("stages.") else ()
        wanted = (lambda key: None) if self.selector is None else (lambda key: self.selector(key, roles))
        cam_names = wanted("cam")
        packages = None if cam_names is None else self.cam_packages(cam_names)

        def allowed(source: Path, target: Path) -> bool:
            package = method_package(target.relative_to(root).as_posix())
            return (packages is None or package is None or package in packages
                    or method_package(source.relative_to(root).as_posix()) is not None)  # fmt: skip

        todo, seen = list(module_files(root, module)), set()
        while todo:
            path = todo.pop()
            if path in seen:
                continue
            seen.add(path)
            modules, registries, _ = self.parsed(path)
            targets = [file for name in modules for file in module_files(root, name)]
            for registry in registries:
                names = wanted(registry.selected_by)
                targets += [file for name, target in registry.loaders.items() if names is None or name in names
                            for file in module_files(root, target)]  # fmt: skip
            todo.extend(target for target in targets if allowed(path, target))
        files = (path.relative_to(root).as_posix() for path in seen)
        return sorted(file for file in files if file not in INFRASTRUCTURE)


def import_closure(root: Path, module: str, selector: Selector | None = None) -> list[str]:
    """The closure of one module (see :class:`ClosureFinder`)."""
    return ClosureFinder(root, selector).closure(module)


def stage_modules(root: Path) -> list[str]:
    """The stage modules (``stages.<name>``, one per DVC stage)."""
    return sorted(f"stages.{path.stem}" for path in (root / "stages").glob("*.py") if path.stem != "__init__")


def params_selector(params: PipelineParams) -> Selector:
    """The selector of a validated params file: a registry's ``selected_by`` key's value (``refine.method``),
    and for ``cam`` the CAM methods of the stage's roles (the selected method's params module is imported to
    read its first phase)."""

    def select(key: str, roles: tuple[str, ...]) -> set[str]:
        if key != "cam":
            value: object = params
            for part in key.split("."):
                value = getattr(value, part)
            return {str(value)}
        names = set(params.cam.method_names()) if "all" in roles else set()
        if "selected" in roles:
            names.add(params.cam.method)
        first = type(params.cam.selected()).coarse_method if "first_phase" in roles else None
        return names | ({first} if first else set())

    return select


def modules_outside_closure(root: Path, closure_file: Path) -> list[str]:
    """Repository files this process has imported that the stage's closure JSON does not list (besides the
    infrastructure): a stage that ran them has outputs its cache does not account for. Empty when the JSON is
    absent (a stage run by hand before ``code_closures``)."""
    if not closure_file.is_file():
        return []
    listed = set(json.loads(closure_file.read_text())["files"]) | set(INFRASTRUCTURE)
    root = root.resolve()
    imported = set()
    for module in list(sys.modules.values()):
        path = Path(getattr(module, "__file__", None) or "/").resolve()
        if path.is_relative_to(root) and path.relative_to(root).parts[0] in PACKAGES:
            imported.add(path.relative_to(root).as_posix())
    return sorted(imported - listed)
