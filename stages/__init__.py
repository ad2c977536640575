"""One thin module per DVC stage: parse params, call pipeline/, write outputs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from pipeline.code_closure import modules_outside_closure
from pipeline.execution.params import TrainingExecutionParams
from pipeline.execution.world import is_training_worker
from pipeline.layout import CODE
from pipeline.params import ParamsError, PipelineParams, load_params
from pipeline.tracking import run_stage


def method_choices(params: PipelineParams) -> dict[str, str]:
    """The run's resolved method choices, flat (``cam.method``: ``pole``, ``cam.backbone``: ``vit`` where the
    method offers a choice), for naming and filtering Prefect runs."""
    raw = (params.cam.model_extra or {}).get(params.cam.method)  # unvalidated: no method module is imported
    backbone = raw.get("backbone") if isinstance(raw, dict) else getattr(raw, "backbone", None)
    return {"data.source": params.data.source, "cam.method": params.cam.method,
            **({"cam.backbone": backbone} if isinstance(backbone, str) else {}),
            "proposals.method": params.proposals.method, "seeds.method": params.seeds.method,
            "refine.method": params.refine.method, "predict.postprocess": params.predict.postprocess}  # fmt: skip


def run(
    name: str, description: str, body: Callable[[PipelineParams], None], sections: list[str], per_image: bool = False,
    trains: Callable[[PipelineParams], bool] | None = None,
    start_processes: Callable[[str, TrainingExecutionParams], None] | None = None,
) -> int:  # fmt: skip
    """Parse ``--params``, validate them and run ``body`` as the stage ``name``; return the exit code.

    A ``per_image`` stage's Prefect flow runs its chunk tasks on the task runner of ``execution``. A training
    stage whose run ``trains(params)`` on more than one of ``execution.training.processes`` has
    ``start_processes`` start them, each running this stage's command line, and relay their output
    (pipeline/execution/launch.py, imported by the training stages only: its code is theirs). The CAM
    methods' sections are validated when read (check_params validated them all), so the stage imports only the
    methods it runs; a stage that imported a module its code closure lacks fails (pipeline/code_closure.py).
    """
    parser = argparse.ArgumentParser(prog=f"python -m stages.{name}", description=description)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    try:
        params = load_params(parser.parse_args().params, methods=False)
    except ParamsError as error:
        print(f"{name}: error: {error}", file=sys.stderr)
        return 1
    dumped = params.model_dump(mode="json")
    runner = None
    if per_image:
        from pipeline.execution.chunks import task_runner

        runner = task_runner(params.execution)
    stage_body = lambda: body(params)  # noqa: E731
    training = params.execution.training
    if start_processes and trains and training.processes > 1 and not is_training_worker() and trains(params):
        stage_body = lambda: start_processes(name, training)  # noqa: E731
    code = run_stage(name, stage_body, {section: dumped[section] for section in sections}, method_choices(params),
                     runner)  # fmt: skip
    outside = modules_outside_closure(Path.cwd(), CODE / f"{name}.json") if code == 0 else []
    if outside:
        print(f"{name}: error: ran {', '.join(outside)}, which {CODE / name}.json does not list: its cache would "
              f"not follow them (rerun `dvc repro code_closures`, or declare the CAM methods the stage runs in "
              f"its CAM_ROLES)", file=sys.stderr)  # fmt: skip
        return 1
    return code
