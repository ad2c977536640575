"""Stage extract_cams: multi-scale + flip CAMs of every image of the split into the zarr CAM store."""

import sys

from pipeline import layout
from pipeline.cams.extract import extract_cams
from pipeline.cams.train import MODEL_NAME
from pipeline.data.manifest import load_manifest
from pipeline.params import PipelineParams
from pipeline.tracking import report
from stages import run

CAM_ROLES = ("selected",)  # the CAM methods this stage runs (pipeline/code_closure.py)


def body(params: PipelineParams) -> None:
    counts = extract_cams(
        load_manifest(layout.DATASET), layout.DATASET, params.cam, layout.CLASSIFIER / MODEL_NAME, params.device,
        layout.CAMS, params.execution,
    )  # fmt: skip
    report("CAM store", [counts])


if __name__ == "__main__":
    sys.exit(run("extract_cams", __doc__, body, ["cam"], per_image=True))
