"""Stage input_files: the SHA-256 of every file each stage reads from outside the pipeline's outputs (the
dataset, vocabulary files, checkpoints) for the current params, one JSON per reading stage in
artifacts/inputs/. It runs on every repro and costs a stat per file (pipeline/input_files.py); a reading stage
reruns only when its JSON changed."""

import sys

from pipeline.input_files import write_input_files
from pipeline.params import PipelineParams
from pipeline.tracking import info
from stages import run

CAM_ROLES = ("selected", "first_phase")  # reads their backbones' and CLIP's settings (pipeline/code_closure.py)


def body(params: PipelineParams) -> None:
    hashed = write_input_files(params)
    if hashed:
        info(f"input_files: {hashed} new or changed file(s) hashed")


if __name__ == "__main__":
    sys.exit(run("input_files", __doc__, body, ["data", "vocab", "proposals", "clip", "segmenter"]))
