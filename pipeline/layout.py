"""Where each stage writes (the same paths dvc.yaml declares as outs)."""

from pathlib import Path

ARTIFACTS = Path("artifacts")
PARAMS_CHECK = ARTIFACTS / "params_check.json"
CODE = ARTIFACTS / "code"
DATASET = ARTIFACTS / "dataset"
CLASSIFIER = ARTIFACTS / "classifier"
CAM_INPUTS = ARTIFACTS / "cam_inputs.json"
CAMS = ARTIFACTS / "cams.zarr.zip"
PROPOSALS = ARTIFACTS / "proposals.zarr.zip"
SEEDS = ARTIFACTS / "seeds.zip"
REFINED = ARTIFACTS / "refined.zip"
EVALUATION = ARTIFACTS / "eval"
VOCAB = ARTIFACTS / "vocab"
SEGMENTER = ARTIFACTS / "segmenter"
SEGMENTER_FULLSUP = ARTIFACTS / "segmenter_fullsup"
PREDICTIONS = ARTIFACTS / "predictions.zip"
PREDICTIONS_FULLSUP = ARTIFACTS / "predictions_fullsup.zip"
CLIP_REQUEST = ARTIFACTS / "clip_request.json"
CLIP = ARTIFACTS / "clip"
CLIP_MODEL = CLIP / "model"  # clip.json (the descriptor methods load) and the stand-in's weights
