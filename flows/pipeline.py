"""Run the DVC DAG stage by stage as one Prefect flow; DVC decides what is stale.

    PREFECT_API_URL=http://127.0.0.1:4200/api python -m flows.pipeline [stage ...]

Named stages run with every stage they depend on, as ``dvc repro <stage>`` would (default: all). Each stage
is a task that calls ``dvc repro --single-item <stage>`` in topological order, its output streamed to the
terminal, so DVC's caching (and run-cache restores) decide what runs; the stage processes report to the same
Prefect server as flows of their own, nested under that task (their parent) and tagged with this run's id and
the stage's DVC run-cache key. A markdown artifact lists what ran, what was skipped and how long each took.
The first stage that fails ends the run: its error line is printed once (by the stage), then one line here.
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
from prefect.states import State

from pipeline.tracking import DVC_HASH_ENV, PARENT_TASK_RUN_ENV, PIPELINE_RUN_ENV, experiment_name, git_commit, report


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
def reproduce_stage(stage: str) -> dict[str, str | float] | State:
    """``dvc repro --single-item`` one stage, its output streamed to this terminal as it comes (progress bars
    included); a failure is the task's state, with a one-line message (the stage's own error line is in the
    output above it, printed once). The stage's own flow run is nested under this task run and tagged with the
    pipeline run and its run-cache key."""
    from prefect.context import TaskRunContext
    from prefect.states import Failed

    start = time.monotonic()
    task_run = TaskRunContext.get().task_run
    env = {**os.environ, PARENT_TASK_RUN_ENV: str(task_run.id), PIPELINE_RUN_ENV: str(task_run.flow_run_id)}
    key = run_cache_key(stage)
    if key:
        env[DVC_HASH_ENV] = key
    dvc = str(Path(sys.executable).parent / "dvc")
    output, code = streamed([dvc, "repro", "--single-item", stage], env)
    if code != 0:
        return Failed(message=f"stage {stage} failed (dvc repro exited with {code}); its error is above")
    return {"stage": stage, "outcome": outcome(output), "seconds": round(time.monotonic() - start, 1)}


def streamed(command: list[str], env: dict[str, str]) -> tuple[str, int]:
    """Run ``command``, copying its stdout and stderr to this process's as they come; return the output (both,
    interleaved) and the exit code."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    chunks = []
    while chunk := os.read(process.stdout.fileno(), 65536):
        sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace"), process.wait()


def pipeline_run_name() -> str:
    """``flows.pipeline <stages> / <experiment> / <commit>``: which run of the DAG this is, at a glance."""
    from prefect.runtime import flow_run

    stages = flow_run.parameters.get("stages") or ["all"]
    commit = git_commit()
    short = commit[:8] + ("+dirty" if commit.endswith("+dirty") else "") if commit else None
    return " / ".join(filter(None, ["flows.pipeline " + " ".join(stages), experiment_name(), short]))


@flow(name="wsss-pipeline", log_prints=True, flow_run_name=pipeline_run_name)
def pipeline_flow(stages: list[str] | None = None) -> list[dict[str, str | float]] | State:
    """Reproduce the selected stages (default: all) and what they depend on, in DAG order, as ``dvc repro``;
    stop at the first that fails (the run is failed with its one line)."""
    from prefect.states import Failed

    rows: list[dict[str, str | float]] = []
    for stage in stage_order(stages):
        state = reproduce_stage.with_options(name=f"dvc repro {stage}")(stage, return_state=True)
        if state.is_failed():
            report("Pipeline run", rows)
            return Failed(message=state.message)
        rows.append(state.result())
    report("Pipeline run", rows)  # a markdown artifact inside this flow run
    return rows


def main(argv: list[str]) -> int:
    """Run the flow; a failed stage ends it with one line and exit code 1."""
    state = pipeline_flow(argv or None, return_state=True)
    if state.is_failed():
        print(f"flows.pipeline: error: {state.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
