"""Stage evaluate: score CAMs, seeds and refined labels (train) and the segmenters' predictions (val)."""

import sys

from pipeline import layout
from pipeline.data.datasets import load_manifest
from pipeline.evaluation import evaluate_predictions, evaluate_pseudo_labels
from pipeline.io import write_json
from pipeline.params import PipelineParams
from stages import run


def body(params: PipelineParams) -> None:
    manifest = load_manifest(layout.DATASET)
    metrics = evaluate_pseudo_labels(
        manifest,
        layout.CAMS,
        {"seeds": layout.SEEDS, "refined": layout.REFINED},
        params.evaluate,
        {"cam": params.cam.method, "seeds": params.seeds.method, "refined": params.refine.method},
        layout.EVALUATION,
    )
    metrics["final"] = evaluate_predictions(
        manifest, {"prediction": layout.PREDICTIONS, "fullsup": layout.PREDICTIONS_FULLSUP}, "val",
        layout.EVALUATION, params.evaluate.overlay_images,
    )  # fmt: skip
    metrics["final"]["postprocess"] = params.predict.postprocess
    write_json(layout.EVALUATION / "metrics.json", metrics)


if __name__ == "__main__":
    sys.exit(run("evaluate", __doc__, body, ["evaluate"]))
