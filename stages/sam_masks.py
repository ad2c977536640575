"""Stage sam_masks: class-agnostic proposals (SAM or superpixels) for every image, cached in zarr."""

import sys

from pipeline import layout
from pipeline.data.manifest import load_manifest
from pipeline.params import PipelineParams
from pipeline.proposals import generate_proposals
from pipeline.tracking import report
from stages import run


def body(params: PipelineParams) -> None:
    counts = generate_proposals(load_manifest(layout.DATASET), layout.DATASET, params.proposals, params.device,
                                layout.PROPOSALS, params.execution)  # fmt: skip
    report("Proposals", [{"method": params.proposals.method, **counts}])


if __name__ == "__main__":
    sys.exit(run("sam_masks", __doc__, body, ["proposals"], per_image=True))
