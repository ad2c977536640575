"""Stage evaluate: score CAMs, seeds and refined labels against ground truth; metrics, plots, overlay grid."""

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
        {"seeds": layout.SEEDS, "refined": layout.REFINED},
        params.evaluate,
        {"cam": params.cam.method, "seeds": params.seeds.method, "refined": params.refine.method},
        layout.EVALUATION,
    )


if __name__ == "__main__":
    sys.exit(run("evaluate", __doc__, body, ["evaluate"]))
