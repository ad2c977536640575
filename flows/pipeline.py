"""Run the DVC DAG stage by stage as one Prefect flow; DVC decides what is stale.

    PREFECT_API_URL=http://127.0.0.1:4200/api python -m flows.pipeline [stage ...]

Named stages run with every stage they depend on, as ``dvc repro <stage>`` would (default: all). Each stage
is a task that calls ``dvc repro --single-item <stage>`` in topological order, so DVC's
caching (and run-cache restores) decide what runs; the stage processes report to the same Prefect server as
flows of their own, nested under that task (their parent) and tagged with this run's id and the stage's DVC
run-cache key. A markdown artifact lists what ran, what was skipped and how long each took.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import networkx as nx
from prefect import flow, task

from pipeline.tracking import DVC_HASH_ENV, PARENT_TASK_RUN_ENV, PIPELINE_RUN_ENV, report


def stage_order(targets: list[str] | None = None, repo_dir: Path = Path(".")) -> list[str]:
    """Stage names of dvc.yaml, dependencies first: all, or ``targets`` with every stage they depend on."""
    from dvc.repo import Repo

    with Repo(str(repo_dir)) as repo:
        graph = repo.index.graph  # edges point from a stage to the stages it depends on
        names = {stage: stage.addressing for stage in graph}
        unknown = sorted(set(targets or []) - set(names.values()))
        if unknown:
            raise ValueError(f"unknown stages {unknown}; dvc.yaml has: {', '.join(sorted(names.values()))}")
        wanted = set(graph) if not targets else {
            node for stage in graph if names[stage] in targets for node in (stage, *nx.descendants(graph, stage))
        }  # fmt: skip
        return [names[stage] for stage in reversed(list(nx.topological_sort(graph))) if stage in wanted]


def outcome(output: str) -> str:
    if re.search(r"Running stage '", output):
        return "ran"
    if re.search(r"is cached - skipping run", output):
        return "restored from run-cache"
    return "up to date"


def run_cache_key(stage: str, repo_dir: Path = Path(".")) -> str | None:
    """The key DVC's run-cache files the stage under (its command, dependencies' hashes and params), or None
    when a dependency is missing (``dvc repro`` then reports it)."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo
    from dvc.stage.cache import _can_hash, _get_stage_hash

    with Repo(str(repo_dir)) as repo:
        (found,) = repo.stage.collect(stage)
        try:
            found.save_deps()
        except DvcException:
            return None
        return _get_stage_hash(found) if _can_hash(found) else None


@task(name="dvc-repro-stage")
def reproduce_stage(stage: str) -> dict[str, str | float]:
    """``dvc repro --single-item`` one stage; raise with DVC's output if it fails. The stage's own flow run is
    nested under this task run and tagged with the pipeline run and its run-cache key."""
    from prefect.context import TaskRunContext

    start = time.monotonic()
    task_run = TaskRunContext.get().task_run
    env = {**os.environ, PARENT_TASK_RUN_ENV: str(task_run.id), PIPELINE_RUN_ENV: str(task_run.flow_run_id)}
    key = run_cache_key(stage)
    if key:
        env[DVC_HASH_ENV] = key
    dvc = str(Path(sys.executable).parent / "dvc")
    result = subprocess.run([dvc, "repro", "--single-item", stage], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"stage {stage} failed:\n{result.stdout}\n{result.stderr}")
    return {"stage": stage, "outcome": outcome(result.stdout), "seconds": round(time.monotonic() - start, 1)}


@flow(name="wsss-pipeline", log_prints=True)
def pipeline_flow(stages: list[str] | None = None) -> list[dict[str, str | float]]:
    """Reproduce the selected stages (default: all) and what they depend on, in DAG order, as ``dvc repro``."""
    rows = [reproduce_stage.with_options(name=f"dvc repro {stage}")(stage) for stage in stage_order(stages)]
    report("Pipeline run", rows)  # a markdown artifact inside this flow run
    return rows


if __name__ == "__main__":
    pipeline_flow(sys.argv[1:] or None)
