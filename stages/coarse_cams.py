"""Stage coarse_cams: the first phase's CAMs of the train split (artifacts/coarse/cams.zarr.zip)."""

import json
import sys

from pipeline import layout
from pipeline.cams.coarse import coarse_cams
from pipeline.data.manifest import load_manifest
from pipeline.params import PipelineParams
from pipeline.tracking import report
from stages import run

CAM_ROLES = ("first_phase",)  # the CAM methods this stage runs (pipeline/code_closure.py)


def body(params: PipelineParams) -> None:
    request = json.loads((layout.COARSE_REQUEST / "inference.json").read_text())
    counts = coarse_cams(request, load_manifest(layout.DATASET), layout.DATASET, layout.COARSE_MODEL, params.device,
                         layout.COARSE_CAMS, params.execution)  # fmt: skip
    report("First-phase CAMs", [counts])


if __name__ == "__main__":
    sys.exit(run("coarse_cams", __doc__, body, ["device"], per_image=True))
