"""Stage evaluate: score CAMs and seeds against ground truth; metrics, plots and the overlay grid."""

import sys

from pipeline import layout
from pipeline.data.datasets import load_manifest
from pipeline.evaluation import evaluate_pseudo_labels
from pipeline.params import PipelineParams
from stages import run


def body(params: PipelineParams) -> None:
    evaluate_pseudo_labels(
        load_manifest(layout.DATASET),
        layout.CAMS,
        {"seeds": layout.SEEDS},
        params.evaluate,
        {"cam": params.cam.method, "seeds": params.seeds.method},
        layout.EVALUATION,
    )


if __name__ == "__main__":
    sys.exit(run("evaluate", __doc__, body, ["evaluate"]))
