"""Stage coarse_seeds: SAMS seeds of the first phase's CAMs on the cached proposals (artifacts/coarse/seeds.zip),
the pixel targets of the second phase."""

import json
import sys

from pipeline import layout
from pipeline.cams.coarse import coarse_seeds
from pipeline.params import PipelineParams
from pipeline.tracking import report
from stages import run


def body(params: PipelineParams) -> None:
    request = json.loads((layout.COARSE_REQUEST / "seeding.json").read_text())
    counts = coarse_seeds(request, layout.DATASET, layout.COARSE_CAMS, layout.PROPOSALS, layout.COARSE_SEEDS,
                          params.execution)  # fmt: skip
    report("Coarse seeds", [counts])


if __name__ == "__main__":
    sys.exit(run("coarse_seeds", __doc__, body, [], per_image=True))
