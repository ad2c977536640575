"""Stage evaluate: score CAMs, seeds and refined labels (train) and the segmenters' predictions (val).

Everything is written into a staging directory that replaces ``artifacts/eval`` only when all of it is scored,
so a killed or failed run leaves the previous metrics (or none), never partial ones.
"""

import json
import sys
import warnings

from pipeline import layout
from pipeline.data.manifest import load_manifest
from pipeline.evaluation import evaluate_predictions, evaluate_pseudo_labels, fullsup_check
from pipeline.io import fresh_directory, publish_directory, write_json
from pipeline.params import PipelineParams
from pipeline.tracking import image_artifact, report
from stages import run

DATASET_RECORD = ("label_format", "dropped_no_foreground", "kept_no_foreground", "labels_without_pixels")


def body(params: PipelineParams) -> None:
    manifest = load_manifest(layout.DATASET)
    staging = fresh_directory(layout.EVALUATION.with_name(f".{layout.EVALUATION.name}.partial"))
    metrics = evaluate_pseudo_labels(
        manifest,
        layout.CAMS,
        {"seeds": layout.SEEDS, "refined": layout.REFINED},
        params.evaluate,
        {"cam": params.cam.method, "seeds": params.seeds.method, "refined": params.refine.method},
        staging,
    )
    metrics["final"] = evaluate_predictions(
        manifest, {"prediction": layout.PREDICTIONS, "fullsup": layout.PREDICTIONS_FULLSUP}, "val",
        staging, params.evaluate.overlay_images,
    )  # fmt: skip
    metrics["final"]["postprocess"] = params.predict.postprocess
    segmenter = params.segmenter
    trained = json.loads((layout.SEGMENTER_FULLSUP / "metrics.json").read_text())
    check = fullsup_check(metrics["final"]["fullsup"]["miou"], (segmenter.network, segmenter.encoder,
                          segmenter.weights), trained.get("train"))  # fmt: skip
    metrics["final"]["fullsup_check"] = check
    if check["flagged"]:
        warnings.warn(check["note"], stacklevel=1)
        report("Underfit: full supervision far below its embedded-benchmark figure", [check])
    recorded = {key: manifest.labels[key] for key in DATASET_RECORD if key in manifest.labels}
    metrics["dataset"] = {"name": manifest.name, **recorded}
    write_json(staging / "metrics.json", metrics)
    publish_directory(staging, layout.EVALUATION)
    for png in sorted(layout.EVALUATION.glob("*.png")):  # the overlay grids and confusion plots, in the run page
        image_artifact(png.stem.replace("_", " "), png)


if __name__ == "__main__":
    sys.exit(run("evaluate", __doc__, body, ["evaluate"]))
