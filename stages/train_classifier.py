"""Stage train_classifier: train the selected CAM method (cam.method) on the image-level labels."""

import sys

from pipeline import layout
from pipeline.cams.train import train_cam_method
from pipeline.data.manifest import load_manifest
from pipeline.device import resolve_device, training_runtime
from pipeline.execution.launch import start_training_processes
from pipeline.params import PipelineParams
from pipeline.tracking import report
from stages import run

CAM_ROLES = ("selected",)  # the CAM methods this stage runs (pipeline/code_closure.py)


def body(params: PipelineParams) -> None:
    device = resolve_device(params.device)
    metrics = train_cam_method(load_manifest(layout.DATASET), layout.DATASET, params.cam, params.seed, device,
                               layout.CLASSIFIER, training_runtime(params, device))  # fmt: skip
    report(
        "Classifier",
        [
            {
                "method": metrics["method"],
                "backbone": metrics["backbone"],
                "steps": metrics["steps"],
                "rescale": metrics.get("rescale", "none"),
                "train loss": metrics["train_loss"],
                "train mAP": metrics["train"]["mAP"],
                **{f"val {k}": v for k, v in metrics["val"].items()},
            }
        ],
    )


if __name__ == "__main__":
    sys.exit(run("train_classifier", __doc__, body, ["seed", "cam"], trains=lambda p: type(p.cam.selected()).trains,
                 start_processes=start_training_processes))
