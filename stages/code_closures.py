"""Stage code_closures: each stage's import closure with file digests, the only code dep of that stage.

Depends on the ``pipeline`` and ``stages`` directories, so it runs after any source edit (about a second: it
reads imports with ``ast`` and imports neither torch nor the stages). A stage's JSON changes only when a file
its imports reach changes, and only then does DVC rerun that stage (pipeline/code_closure.py).
"""

import sys
from pathlib import Path

from pipeline.code_closure import import_closure, stage_modules
from pipeline.io import publish_directory, sha256_file, work_directory, write_json
from pipeline.layout import CODE


def main() -> int:
    root = Path.cwd()
    work = work_directory(CODE, "closures")
    work.mkdir(parents=True, exist_ok=True)
    for module in stage_modules(root):
        files = import_closure(root, module)
        write_json(work / f"{module.removeprefix('stages.')}.json",
                   {"stage": module, "files": {name: sha256_file(root / name) for name in files}})  # fmt: skip
    publish_directory(work, CODE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
