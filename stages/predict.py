"""Stage predict: multi-scale + flip predictions of the pseudo-label segmenter on the val split."""

import sys
from pathlib import Path

from pipeline import layout
from pipeline.data.manifest import load_manifest
from pipeline.params import PipelineParams
from pipeline.segmentation.predict import predict_split
from pipeline.segmentation.training import MODEL_NAME
from pipeline.tracking import report
from stages import run


def predict(params: PipelineParams, model_dir: Path, out: Path, title: str, stage: str) -> None:
    """Predict the val split with the model in ``model_dir`` into ``out`` as ``stage`` and report it."""
    counts = predict_split(
        load_manifest(layout.DATASET), layout.DATASET, model_dir / MODEL_NAME, params.segmenter, params.predict,
        params.device, out, layout.PROPOSALS, params.execution, stage,
    )  # fmt: skip
    report(title, [{"postprocess": params.predict.postprocess, **counts}])


def body(params: PipelineParams) -> None:
    predict(params, layout.SEGMENTER, layout.PREDICTIONS, "Predictions (pseudo-label segmenter)", "predict")


if __name__ == "__main__":
    sys.exit(run("predict", __doc__, body, ["predict"], per_image=True))
