"""One thin module per DVC stage: parse params, call pipeline/, write outputs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from pipeline.params import ParamsError, PipelineParams, load_params
from pipeline.tracking import run_stage


def run(name: str, description: str, body: Callable[[PipelineParams], None], sections: list[str]) -> int:
    """Parse ``--params``, validate them and run ``body`` as the stage ``name``; return the exit code."""
    parser = argparse.ArgumentParser(prog=f"python -m stages.{name}", description=description)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    try:
        params = load_params(parser.parse_args().params)
    except ParamsError as error:
        print(f"{name}: error: {error}", file=sys.stderr)
        return 1
    dumped = params.model_dump(mode="json")
    return run_stage(name, lambda: body(params), {section: dumped[section] for section in sections})
