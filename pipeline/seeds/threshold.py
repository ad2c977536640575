"""Threshold seeds (IRN / PSA): background by a constant pad or (1 − max_c CAM)^α, confidence band → 255.

With CAMs M_c ∈ [0, 1] of the present classes and a background score b(x), a pixel's label is
argmax(b(x), M_1(x), …, M_k(x)) (ties go to background). Two background scores are used: a high one that only
lets confident foreground through and a low one that only keeps confident background. Pixels that are
foreground under the high score keep their class, pixels that stay background under the low score are 0, and
the rest are 255 (ignored): IRN's fg 0.30 / bg 0.05 constant pads (CLIMS's and POLE's code: 0.30 / 0.10), or
PSA's α = 4 / 32 powers. A CAM method with a background class (APC, PCC) stores its own background map;
``background: model`` takes the argmax over it and the classes, ViT-PCM's pseudo labels, with no uncertain band.

``crf: irn`` is IRN's ``step/cam_to_ir_label.py``: each of the two argmax maps goes through its label CRF
(``misc/imutils.py:crf_inference_label``, :func:`pipeline.dense_crf.label_crf`) before they are combined, so the
seeds follow the image's edges; IRN's paper does not mention the CRF, its code (and CLIMS's, POLE's) runs it.
"""

from __future__ import annotations

import numpy as np

from pipeline.dense_crf import CRF_PRESETS, label_crf
from pipeline.params import ThresholdSeedParams
from pipeline.seeds import SEED_METHODS, require_background
from pipeline.voc import IGNORE_INDEX


def power_background(cams: np.ndarray, alpha: float) -> np.ndarray:
    """PSA's background score (1 − max_c M_c)^α, shape (H, W)."""
    peak = cams.max(axis=0) if len(cams) else np.zeros(cams.shape[1:], dtype=cams.dtype)
    return np.power(np.clip(1.0 - peak, 0.0, 1.0), alpha)


def compact_argmax(cams: np.ndarray, background: float | np.ndarray) -> np.ndarray:
    """Per pixel 0 where the background score wins (ties included), else 1 + the index of the winning CAM."""
    background = np.broadcast_to(np.asarray(background, dtype=cams.dtype), cams.shape[1:])
    return np.concatenate([background[None], cams], axis=0).argmax(axis=0)


def class_values(classes: list[int]) -> np.ndarray:
    """Label value of each compact index: 0 (background), then 1 + each class index."""
    return np.asarray([0] + [c + 1 for c in classes], dtype=np.uint8)


def argmax_with_background(cams: np.ndarray, classes: list[int], background: float | np.ndarray) -> np.ndarray:
    """uint8 label map: 0 where the background score wins (ties included), else 1 + the class index."""
    return class_values(classes)[compact_argmax(cams, background)]


@SEED_METHODS.register("threshold")
def threshold_seeds(
    cams: np.ndarray, classes: list[int], params: ThresholdSeedParams, background: np.ndarray | None = None,
    image: np.ndarray | None = None,
) -> np.ndarray:  # fmt: skip
    """Confident-foreground / confident-background seeds with 255 in between; ``background`` is the CAM
    method's own background map, used with ``background: model``; ``image`` (H×W×3 uint8) the CRF's, used with
    ``crf: irn``."""
    if params.background == "model":
        fg_bg = bg_bg = require_background(background, "seeds.threshold")
    elif params.background == "constant":
        fg_bg, bg_bg = params.constant.fg_pad, params.constant.bg_pad
    else:
        fg_bg = power_background(cams, params.power.fg_alpha)
        bg_bg = power_background(cams, params.power.bg_alpha)
    fg_index, bg_index = compact_argmax(cams, fg_bg), compact_argmax(cams, bg_bg)
    if params.crf == "irn":
        if image is None:
            raise ValueError("seeds.threshold.crf: irn needs the image")
        count = len(classes) + 1
        fg_index, bg_index = (label_crf(image, index, count, CRF_PRESETS["irn"]) for index in (fg_index, bg_index))
    values = class_values(classes)
    confident_fg, confident_bg = values[fg_index], values[bg_index]
    seeds = np.full(cams.shape[1:], IGNORE_INDEX, dtype=np.uint8)
    seeds[confident_bg == 0] = 0
    keep = confident_fg != 0
    seeds[keep] = confident_fg[keep]
    return seeds


threshold_seeds.uses_background = True
threshold_seeds.reads_image = lambda params: params.crf != "none"
