"""Stage cam_inputs: digests of the extra inputs the selected CAM method reads (artifacts/cam_inputs.json).

It depends on every output a method may read (the vocab files), so it reruns when one changes; its own output
changes only when an input of the *selected* method changed, so only then do the CAM stages rerun
(pipeline/cams/inputs.py).
"""

import sys

from pipeline import layout
from pipeline.cams.inputs import input_digests
from pipeline.io import write_json
from pipeline.params import PipelineParams
from stages import run

CAM_ROLES = ("selected",)  # the CAM methods this stage runs (pipeline/code_closure.py)


def body(params: PipelineParams) -> None:
    write_json(layout.CAM_INPUTS, {"method": params.cam.method, "inputs": input_digests(params.cam.selected())})


if __name__ == "__main__":
    sys.exit(run("cam_inputs", __doc__, body, ["cam"]))
