"""Stage train_segmenter: train the segmentation network on the refined pseudo labels (255 ignored)."""

import sys
from pathlib import Path

from pipeline import layout
from pipeline.data.manifest import load_manifest
from pipeline.device import resolve_device, training_runtime
from pipeline.execution.launch import start_training_processes
from pipeline.params import PipelineParams
from pipeline.segmentation.training import train_segmenter
from pipeline.tracking import report
from stages import run


def train(params: PipelineParams, labels: Path | None, out: Path, name: str, title: str) -> None:
    """Train ``params.segmenter`` on ``labels`` (None: ground truth) into ``out`` and report it."""
    device = resolve_device(params.device)
    metrics, history = train_segmenter(
        load_manifest(layout.DATASET), layout.DATASET, labels, params.segmenter, params.seed, device, out, name,
        training_runtime(params, device),
    )  # fmt: skip
    setting = (f"{params.segmenter.network} / {params.segmenter.encoder}, labels: {metrics['labels']}; "
               f"{metrics['epochs']} epochs, {metrics['steps']} steps, rescale {metrics['rescale']} "
               f"({metrics['train_median_size']}); train mIoU {metrics['train']['miou']:.3f} on "
               f"{metrics['train']['images']} training images against their training labels")  # fmt: skip
    report(title, history, notes=setting)


def body(params: PipelineParams) -> None:
    train(params, layout.REFINED, layout.SEGMENTER, "train_segmenter", "Segmenter on pseudo labels")


if __name__ == "__main__":
    sys.exit(run("train_segmenter", __doc__, body, ["segmenter"], trains=lambda _: True,
                 start_processes=start_training_processes))
