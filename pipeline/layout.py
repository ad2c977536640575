"""Where each stage writes (the same paths dvc.yaml declares as outs)."""

from pathlib import Path

ARTIFACTS = Path("artifacts")
PARAMS_CHECK = ARTIFACTS / "params_check.json"
CODE = ARTIFACTS / "code"
INPUT_FILES = ARTIFACTS / "inputs"  # digests of the files each stage reads from outside (pipeline/input_files.py)
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
COARSE = ARTIFACTS / "coarse"  # a two-phase CAM method's first phase (pipeline/cams/coarse.py)
COARSE_REQUEST = COARSE / "request"  # training.json, inference.json, seeding.json: what each later step needs
COARSE_MODEL = COARSE / "model.pt"
COARSE_CAMS = COARSE / "cams.zarr.zip"
COARSE_SEEDS = COARSE / "seeds.zip"
COARSE_PROMPTS = COARSE / "prompts.json"  # POLE's synonym per train image and class (select_prompts)
COARSE_PROMPT_STATS = COARSE / "prompt_stats.json"
IRN = ARTIFACTS / "irn"  # IRN's boundary network (refine.method: irn; a placeholder otherwise)
IRN_MODEL = IRN / "model.pt"
