"""Stage train_coarse: train a two-phase CAM method's first phase (FMA's classification prompts) on the image
labels (artifacts/coarse/model.pt); a placeholder for one-phase methods."""

import json
import sys

from pipeline import layout
from pipeline.cams.coarse import train_coarse
from pipeline.data.manifest import load_manifest
from pipeline.device import resolve_device, training_runtime
from pipeline.execution.launch import start_training_processes
from pipeline.params import PipelineParams
from pipeline.tracking import report
from stages import run

CAM_ROLES = ("first_phase",)  # the CAM methods this stage runs (pipeline/code_closure.py)


def training_request() -> dict:
    """What the first phase trains (``method: none`` for a one-phase method: a placeholder)."""
    return json.loads((layout.COARSE_REQUEST / "training.json").read_text())


def body(params: PipelineParams) -> None:
    request = training_request()
    device = resolve_device(params.device)
    metrics = train_coarse(request, load_manifest(layout.DATASET), layout.DATASET, device, layout.COARSE,
                           training_runtime(params, device))  # fmt: skip
    report("First phase", [{k: v for k, v in metrics.items() if not isinstance(v, dict)}])


if __name__ == "__main__":
    sys.exit(run("train_coarse", __doc__, body, ["device"], trains=lambda _: training_request()["method"] != "none",
                 start_processes=start_training_processes))
