"""Stage refine: refine the seed labels (none, dense CRF, image-edge or IRN random walk) into the training labels."""

import sys

from pipeline import layout
from pipeline.params import PipelineParams
from pipeline.refine import refine_labels
from pipeline.tracking import report
from stages import run


def body(params: PipelineParams) -> None:
    model = layout.IRN_MODEL if params.refine.method == "irn" else None  # the only refinement with a model
    counts = refine_labels(layout.DATASET, layout.CAMS, layout.SEEDS, params.refine, layout.REFINED,
                           params.execution, model, params.device)  # fmt: skip
    report("Refined labels", [{"method": params.refine.method, **counts}])


if __name__ == "__main__":
    sys.exit(run("refine", __doc__, body, ["refine", "device"], per_image=True))
