"""Stage predict_fullsup: the same inference with the fully supervised segmenter (the upper bound)."""

import sys

from pipeline import layout
from pipeline.params import PipelineParams
from stages import run
from stages.predict import predict


def body(params: PipelineParams) -> None:
    predict(params, layout.SEGMENTER_FULLSUP, layout.PREDICTIONS_FULLSUP, "Predictions (fully supervised segmenter)",
            "predict_fullsup")  # fmt: skip


if __name__ == "__main__":
    sys.exit(run("predict_fullsup", __doc__, body, ["predict"], per_image=True))
