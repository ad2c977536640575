"""Stage coarse_request: what a two-phase CAM method's first phase needs (artifacts/coarse/request/*.json),
without torch; ``none`` for one-phase methods (pipeline/cams/coarse_request.py)."""

import sys

from pipeline import layout
from pipeline.cams.coarse_request import coarse_request
from pipeline.io import write_json
from pipeline.params import PipelineParams
from stages import run

CAM_ROLES = ("selected", "first_phase")  # the CAM methods this stage runs (pipeline/code_closure.py)


def body(params: PipelineParams) -> None:
    for name, request in coarse_request(params).items():
        write_json(layout.COARSE_REQUEST / f"{name}.json", request)


if __name__ == "__main__":
    sys.exit(run("coarse_request", __doc__, body, ["seed", "cam"]))
