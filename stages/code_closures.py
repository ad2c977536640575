"""Stage code_closures: each stage's import closure with file digests, the only code dep of that stage.

Depends on the ``pipeline`` and ``stages`` directories and on the method choices, so it runs after any source
edit or method swap (about a second: it reads imports with ``ast`` and imports neither torch nor the stages).
A stage's closure holds only what it runs for the current params (the selected CAM, refine and proposal
methods; pipeline/code_closure.py), and its JSON changes only when one of those files changes: only then does
DVC rerun that stage.
"""

import sys
from pathlib import Path

import yaml
from pydantic import ValidationError

from pipeline.code_closure import ClosureFinder, params_selector, stage_modules
from pipeline.io import publish_directory, sha256_file, work_directory, write_json
from pipeline.layout import CODE
from pipeline.params import PipelineParams
from pipeline.schema import read_yaml

CHOICES = ("cam", "proposals", "refine")  # the sections whose ``method`` picks code (dvc.yaml: this stage's params)


def choice_params(path: Path) -> PipelineParams | None:
    """The params of the method choices alone (the rest of the file is check_params's to judge, after this
    stage); None when a choice itself is invalid (then every implementation counts until it is fixed)."""
    try:
        raw = read_yaml(path.read_text()) or {}
        chosen = {name: {"method": raw[name]["method"]} for name in CHOICES if "method" in (raw.get(name) or {})}
        return PipelineParams.model_validate(chosen)
    except (OSError, yaml.YAMLError, TypeError, ValidationError):
        return None


def main() -> int:
    root = Path.cwd()
    params = choice_params(root / "params.yaml")
    finder = ClosureFinder(root, params_selector(params) if params is not None else None)
    work = work_directory(CODE, "closures")
    work.mkdir(parents=True, exist_ok=True)
    for module in stage_modules(root):
        files = finder.closure(module)
        write_json(work / f"{module.removeprefix('stages.')}.json",
                   {"stage": module, "files": {name: sha256_file(root / name) for name in files}})  # fmt: skip
    publish_directory(work, CODE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
