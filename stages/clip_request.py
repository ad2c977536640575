"""Stage clip_request: which CLIP the selected CAM method needs (artifacts/clip_request.json), without torch.

pretrain_clip depends on this file alone, so the stand-in is built only when a CLIP method is selected
(pipeline/clip/request.py).
"""

import sys

from pipeline import layout
from pipeline.clip.request import clip_request
from pipeline.io import write_json
from pipeline.params import PipelineParams
from stages import run

CAM_ROLES = ("selected",)  # the CAM methods this stage runs (pipeline/code_closure.py)


def body(params: PipelineParams) -> None:
    write_json(layout.CLIP_REQUEST, clip_request(params))


if __name__ == "__main__":
    sys.exit(run("clip_request", __doc__, body, ["clip"]))
