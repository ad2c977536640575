"""One thin module per DVC stage: parse params, call pipeline/, write outputs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from pipeline.params import ParamsError, PipelineParams, load_params
from pipeline.tracking import run_stage


def method_choices(params: PipelineParams) -> dict[str, str]:
    """The run's resolved method choices, flat (``cam.method``: ``pole``), for filtering Prefect runs."""
    return {"data.source": params.data.source, "cam.method": params.cam.method,
            "proposals.method": params.proposals.method, "seeds.method": params.seeds.method,
            "refine.method": params.refine.method, "predict.postprocess": params.predict.postprocess}  # fmt: skip


def run(
    name: str, description: str, body: Callable[[PipelineParams], None], sections: list[str], per_image: bool = False
) -> int:  # fmt: skip
    """Parse ``--params``, validate them and run ``body`` as the stage ``name``; return the exit code.

    A ``per_image`` stage's Prefect flow runs its chunk tasks on the task runner of ``execution``.
    """
    parser = argparse.ArgumentParser(prog=f"python -m stages.{name}", description=description)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    try:
        params = load_params(parser.parse_args().params)
    except ParamsError as error:
        print(f"{name}: error: {error}", file=sys.stderr)
        return 1
    dumped = params.model_dump(mode="json")
    runner = None
    if per_image:
        from pipeline.execution.chunks import task_runner

        runner = task_runner(params.execution)
    return run_stage(name, lambda: body(params), {section: dumped[section] for section in sections},
                     method_choices(params), runner)  # fmt: skip
