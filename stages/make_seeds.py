"""Stage make_seeds: turn the stored CAMs into seed label PNGs with the selected seed method."""

import sys

from pipeline import layout
from pipeline.params import PipelineParams
from pipeline.seeds import make_seeds
from pipeline.tracking import report
from stages import run


def body(params: PipelineParams) -> None:
    counts = make_seeds(layout.DATASET, layout.CAMS, params.seeds, layout.SEEDS, layout.PROPOSALS, params.execution)
    report("Seeds", [{"method": params.seeds.method, **counts}])


if __name__ == "__main__":
    sys.exit(run("make_seeds", __doc__, body, ["seeds"], per_image=True))
