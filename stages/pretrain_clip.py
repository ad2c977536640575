"""Stage pretrain_clip: the CLIP of artifacts/clip_request.json — the stand-in pretrained on the synthetic
caption corpus, or the descriptor of a real open_clip model (artifacts/clip/model/clip.json)."""

import json
import sys

from pipeline import layout
from pipeline.clip.build import build_clip
from pipeline.data.manifest import load_manifest
from pipeline.device import TrainingRuntime, resolve_device
from pipeline.params import PipelineParams
from pipeline.tracking import report
from stages import run


def body(params: PipelineParams) -> None:
    request = json.loads(layout.CLIP_REQUEST.read_text())
    weights = json.loads((layout.INPUT_FILES / "pretrain_clip.json").read_text())["files"]  # a real CLIP's file
    device = resolve_device(params.device)
    runtime = TrainingRuntime(precision=params.precision)  # the stand-in's corpus is in memory: no DataLoader
    metrics = build_clip(request, load_manifest(layout.DATASET), layout.DATASET, device, layout.CLIP, weights,
                         runtime)  # fmt: skip
    report("CLIP", [metrics])


if __name__ == "__main__":
    sys.exit(run("pretrain_clip", __doc__, body, ["clip"]))
