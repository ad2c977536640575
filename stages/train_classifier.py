"""Stage train_classifier: train the selected CAM method's classifier on the image-level labels."""

import sys

from pipeline import layout
from pipeline.data.manifest import load_manifest
from pipeline.device import resolve_device
from pipeline.params import PipelineParams
from pipeline.tracking import report
from pipeline.training import train_cam_classifier
from stages import run


def body(params: PipelineParams) -> None:
    manifest = load_manifest(layout.DATASET)
    metrics = train_cam_classifier(manifest, params.cam, params.seed, resolve_device(params.device), layout.CLASSIFIER)
    report("Classifier", [{"train loss": metrics["train_loss"], **{f"val {k}": v for k, v in metrics["val"].items()}}])


if __name__ == "__main__":
    sys.exit(run("train_classifier", __doc__, body, ["seed", "cam"]))
