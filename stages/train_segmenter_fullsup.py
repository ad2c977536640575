"""Stage train_segmenter_fullsup: the same network and schedule on the ground-truth masks (the upper bound)."""

import sys

from pipeline import layout
from pipeline.execution.launch import start_training_processes
from pipeline.params import PipelineParams
from stages import run
from stages.train_segmenter import train


def body(params: PipelineParams) -> None:
    train(params, None, layout.SEGMENTER_FULLSUP, "train_segmenter_fullsup", "Segmenter on ground truth")


if __name__ == "__main__":
    sys.exit(run("train_segmenter_fullsup", __doc__, body, ["segmenter"], trains=lambda _: True,
                 start_processes=start_training_processes))
