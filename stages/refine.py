"""Stage refine: refine the seed labels (none, dense CRF or random-walk affinity) into the training labels."""

import sys

from pipeline import layout
from pipeline.data.manifest import load_manifest
from pipeline.params import PipelineParams
from pipeline.refine import refine_labels
from pipeline.tracking import report
from stages import run


def body(params: PipelineParams) -> None:
    counts = refine_labels(load_manifest(layout.DATASET), layout.CAMS, layout.SEEDS, params.refine, layout.REFINED)
    report("Refined labels", [{"method": params.refine.method, **counts}])


if __name__ == "__main__":
    sys.exit(run("refine", __doc__, body, ["refine"]))
