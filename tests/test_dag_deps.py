"""The DAG follows the code: each stage depends on what it runs for the selected methods, and an edit reruns
only the stages that run the edited file."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.code_closure import INFRASTRUCTURE, ClosureFinder, import_closure, params_selector, stage_modules
from pipeline.params import load_params
from tests.conftest import REPO, tiny_params, write_params

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


METHODS = REPO / "pipeline/cams/methods"
RUNS_MODEL = {"train_classifier", "extract_cams", "train_irn"}  # run cam.method's network
READS_PARAMS = {"check_params", "clip_request", "coarse_request", "cam_inputs", "select_prompts", "input_files"}
FIRST_PHASE = {"train_coarse", "coarse_cams"}  # run a two-phase method's first phase


def stages_running(method: str) -> dict[str, set[str]]:
    """Each repository file → the stages whose closure holds it, with ``cam.method: method``."""
    params = load_params(REPO / "params.yaml", methods=False)
    params = params.model_copy(update={"cam": params.cam.model_copy(update={"method": method})})
    finder = ClosureFinder(REPO, params_selector(params))
    running: dict[str, set[str]] = {}
    for module in stage_modules(REPO):
        for file in finder.closure(module):
            running.setdefault(file, set()).add(module.removeprefix("stages."))
    return running


def method_files(package: str) -> list[str]:
    return sorted(path.relative_to(REPO).as_posix() for path in (METHODS / package).glob("*.py"))


@pytest.mark.parametrize("package", ["apc", "clims", "clip_es", "fma", "pcc", "pole", "usage"])
def test_with_plain_cam_selected_another_methods_edit_reruns_only_the_params_check(package: str) -> None:
    running = stages_running("cam")
    for file in method_files(package):
        validated = file.endswith(("/params.py", "/__init__.py"))  # what importing the params module runs
        assert running.get(file, set()) == ({"check_params"} if validated else set()), file


def test_with_plain_cam_selected_its_own_files_rerun_the_stages_that_run_it() -> None:
    running = stages_running("cam")
    assert running["pipeline/cams/methods/plain_cam/model.py"] == RUNS_MODEL
    assert running["pipeline/cams/methods/plain_cam/params.py"] == RUNS_MODEL | READS_PARAMS


@pytest.mark.parametrize(
    ("method", "file", "stages"),
    [
        ("pole", "pole/adaptors.py", RUNS_MODEL),  # never retrains the first phase (plain CAM)
        ("pole", "pole/selection.py", RUNS_MODEL | {"select_prompts"}),
        ("pole", "plain_cam/model.py", FIRST_PHASE),
        ("pole", "clims/losses.py", RUNS_MODEL),  # POLE extends CLIMS
        ("clims", "plain_cam/model.py", FIRST_PHASE),
        ("clims", "clims/losses.py", RUNS_MODEL),
        ("fma", "fma/losses.py", RUNS_MODEL | FIRST_PHASE),  # fma_cls, the first phase, lives in the same package
        ("fma", "clip_es/caa.py", RUNS_MODEL | FIRST_PHASE),
        ("clip_es", "clip_es/gradcam.py", RUNS_MODEL),
        ("usage", "usage/model.py", RUNS_MODEL),
        ("apc", "apc/contrast.py", RUNS_MODEL),
        ("pcc", "pcc/clusters.py", RUNS_MODEL),
    ],
)
def test_a_selected_methods_edit_reruns_exactly_the_stages_that_run_it(method: str, file: str, stages: set) -> None:
    assert stages_running(method)[f"pipeline/cams/methods/{file}"] == stages


@pytest.mark.parametrize("method", ["cam", "pole", "fma"])
def test_method_code_never_reaches_the_stages_that_run_no_cam_method(method: str) -> None:
    running = stages_running(method)
    for package in ("apc", "clims", "clip_es", "fma", "pcc", "plain_cam", "pole", "usage"):
        for file in method_files(package):
            assert running.get(file, set()) <= RUNS_MODEL | READS_PARAMS | FIRST_PHASE, file


@pytest.mark.parametrize("method", ["cam", "pole"])
def test_infrastructure_is_in_no_closure(method: str) -> None:
    running = stages_running(method)
    assert not {file: running[file] for file in INFRASTRUCTURE if file in running}


def test_the_registries_import_no_method_module() -> None:
    """CAM_METHODS and CAM_PARAMS name their modules as strings: no import cycle with the methods."""
    for registry in ("pipeline.cams.registry", "pipeline.cams.params"):
        closure = import_closure(REPO, registry, lambda key, roles: set())
        assert not [file for file in closure if file.startswith("pipeline/cams/methods/")], registry
    assert "pipeline/cams/registry.py" not in import_closure(REPO, "pipeline.cams.methods.apc.params")


def test_no_import_cycle_runs_through_the_cam_package() -> None:
    """Every import, lazy ones included, between the CAM package's modules forms no cycle."""
    import networkx as nx

    from pipeline.code_closure import imported_modules, module_files, parse

    graph = nx.DiGraph()
    for path in (REPO / "pipeline").rglob("*.py"):
        for name in imported_modules(REPO, parse(path)):
            target = module_files(REPO, name)[-1]
            if target != path:
                graph.add_edge(path.relative_to(REPO).as_posix(), target.relative_to(REPO).as_posix())
    cycles = [cycle for cycle in nx.simple_cycles(graph) if any(f.startswith("pipeline/cams/") for f in cycle)]
    assert not cycles


def test_infrastructure_writes_nothing_into_the_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """prepare_data and sam_masks publish the same bytes with every infrastructure function silenced."""
    import contextlib
    import sys as system

    from pipeline import tracking
    from stages import prepare_data, sam_masks

    class SilentBar:
        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def advance(self, count: int = 1) -> None:
            pass

        def close(self) -> None:
            pass

        def __enter__(self) -> SilentBar:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    silent = {"report": lambda *a, **k: "", "info": lambda *a, **k: None, "debug": lambda *a, **k: None,
              "image_artifact": lambda *a, **k: None, "progress": lambda items, *a, **k: iter(items),
              "ProgressBar": SilentBar, "forward_warnings": contextlib.nullcontext}  # fmt: skip

    def run_stages(directory: Path) -> dict[str, bytes]:
        directory.mkdir()
        monkeypatch.chdir(directory)
        write_params(directory, tiny_params(data={"synthetic": {"num_train": 6, "num_val": 2}}))
        params = load_params(directory / "params.yaml")
        prepare_data.body(params)
        sam_masks.body(params)
        files = sorted(path for path in directory.rglob("*") if path.is_file())
        return {path.relative_to(directory).as_posix(): path.read_bytes() for path in files}

    normal = run_stages(tmp_path / "normal")
    for module in [m for m in list(system.modules.values()) if m.__name__.startswith(("pipeline.", "stages"))
                   and m.__name__ != "pipeline.tracking"]:
        for name, double in silent.items():
            if getattr(module, name, None) is getattr(tracking, name):
                monkeypatch.setattr(module, name, double)
    assert run_stages(tmp_path / "silent") == normal


def write_closures(root: Path) -> dict[str, bytes]:
    subprocess.run([sys.executable, "-m", "stages.code_closures"], cwd=root, check=True, capture_output=True)
    return {p.name: p.read_bytes() for p in sorted((root / "artifacts/code").glob("*.json"))}


def test_an_edit_changes_exactly_the_closures_that_reach_it(tmp_path: Path) -> None:
    for name in ("pipeline", "stages"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "params.yaml", tmp_path / "params.yaml")
    before = write_closures(tmp_path)
    assert write_closures(tmp_path) == before  # byte-identical for identical sources
    closure = json.loads(before["refine.json"])
    assert "pipeline/refine/crf.py" in closure["files"]
    with (tmp_path / "pipeline/refine/crf.py").open("a") as handle:
        handle.write("# an edit\n")
    after = write_closures(tmp_path)
    changed = {name.removesuffix(".json") for name in before if before[name] != after[name]}
    finder = ClosureFinder(tmp_path, params_selector(load_params(tmp_path / "params.yaml", methods=False)))
    reaching = {m.removeprefix("stages.") for m in stage_modules(tmp_path)
                if "pipeline/refine/crf.py" in finder.closure(m)}  # fmt: skip
    assert changed == reaching
    assert {"refine", "predict"} <= changed and not {"train_classifier", "sam_masks", "vocab"} & changed
    with (tmp_path / "pipeline/tracking.py").open("a") as handle:  # infrastructure: nothing changes
        handle.write("# an edit\n")
    assert write_closures(tmp_path) == after


def test_every_uncached_metric_and_plot_is_kept_by_git() -> None:
    """``dvc exp show`` reads an experiment's metrics from its commit: a metrics or plots table that git ignores
    is lost with the experiment's temporary workspace."""
    kept = [path for stage in STAGES.values() for kind in ("metrics", "plots", "outs") for entry in stage.get(kind, [])
            if isinstance(entry, dict) for path, options in entry.items() if options.get("cache") is False
            and (kind != "outs" or path.endswith(".csv"))]  # fmt: skip  # outs: the tables top-level plots draw
    assert "artifacts/coarse/prompt_stats.json" in kept and "artifacts/irn/loss.csv" in kept
    ignored = subprocess.run(["git", "check-ignore", *kept], cwd=REPO, capture_output=True, text=True).stdout
    assert ignored == ""
