"""The DAG follows the code: each stage depends on its import closure, and an edit reruns only what imports it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.code_closure import import_closure, stage_modules
from tests.conftest import REPO

STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def stage_module(stage: str) -> str:
    return re.fullmatch(r"python -m ([\w.]+)", STAGES[stage]["cmd"]).group(1)


def test_every_stage_module_is_a_dvc_stage() -> None:
    assert sorted(stage_module(stage) for stage in STAGES) == stage_modules(REPO)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_depends_on_its_closure_and_no_source_directly(stage: str) -> None:
    deps = STAGES[stage].get("deps", [])
    if stage == "code_closures":
        assert {"pipeline", "stages"} <= set(deps)
        return
    assert f"artifacts/code/{stage_module(stage).removeprefix('stages.')}.json" in deps
    sources = [d for d in deps if d.startswith(("pipeline", "stages")) and not d.endswith(".txt")]
    assert not sources, f"stage {stage} lists source files; its closure JSON covers them: {sources}"


def test_closure_follows_lazy_imports() -> None:
    closure = import_closure(REPO, "stages.predict")
    assert {"pipeline/segmentation/predict.py", "pipeline/refine/crf.py", "pipeline/seeds/sams.py"} <= set(closure)
    assert "pipeline/cams/train.py" not in import_closure(REPO, "stages.sam_masks")


def write_closures(root: Path) -> dict[str, bytes]:
    subprocess.run([sys.executable, "-m", "stages.code_closures"], cwd=root, check=True, capture_output=True)
    return {p.name: p.read_bytes() for p in sorted((root / "artifacts/code").glob("*.json"))}


def test_an_edit_changes_exactly_the_closures_that_reach_it(tmp_path: Path) -> None:
    for name in ("pipeline", "stages"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    before = write_closures(tmp_path)
    assert write_closures(tmp_path) == before  # byte-identical for identical sources
    closure = json.loads(before["refine.json"])
    assert "pipeline/refine/crf.py" in closure["files"]
    with (tmp_path / "pipeline/refine/crf.py").open("a") as handle:
        handle.write("# an edit\n")
    after = write_closures(tmp_path)
    changed = {name.removesuffix(".json") for name in before if before[name] != after[name]}
    reaching = {m.removeprefix("stages.") for m in stage_modules(tmp_path)
                if "pipeline/refine/crf.py" in import_closure(tmp_path, m)}  # fmt: skip
    assert changed == reaching
    assert {"refine", "predict"} <= changed and not {"train_classifier", "sam_masks", "vocab"} & changed


def test_every_uncached_metric_and_plot_is_kept_by_git() -> None:
    """``dvc exp show`` reads an experiment's metrics from its commit: a metrics or plots table that git ignores
    is lost with the experiment's temporary workspace."""
    kept = [path for stage in STAGES.values() for kind in ("metrics", "plots") for entry in stage.get(kind, [])
            if isinstance(entry, dict) for path, options in entry.items() if options.get("cache") is False]  # fmt: skip
    assert "artifacts/coarse/prompt_stats.json" in kept and "artifacts/irn/loss.csv" in kept
    ignored = subprocess.run(["git", "check-ignore", *kept], cwd=REPO, capture_output=True, text=True).stdout
    assert ignored == ""
