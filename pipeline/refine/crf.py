"""Dense CRF refinement (Krähenbühl & Koltun, via pydensecrf2) with the presets of IRN, CLIP-ES and ToCo
(pipeline/dense_crf.py).

Labels are the image's compact set {background} ∪ present classes. Two unaries:

- ``labels`` (IRN): the seed label has probability ``gt_prob`` (0.7), the others share the rest; seed pixels
  marked 255 get a uniform unary ("unsure");
- ``cams`` (CLIP-ES, ToCo): probabilities ∝ [(1 − max_c CAM)^α, CAM_1, …, CAM_k] (α = 1), normalised per
  pixel, unary = −log p. (CLIP-ES's code mean-subtracts the image before the CRF and casts back to uint8 — a
  bug not reproduced: the CRF sees the RGB image.)

After ``iterations`` mean-field steps each pixel takes its most probable label; pixels whose posterior is
below ``confidence`` become 255 (CLIP-ES: 0.95). The presets' spatial stds are pixels of ~500 px images, as in
their code; ``custom`` states them for a ``reference_size`` side (64, the demo) and scales them with each
image's side √(H·W), so the same setting serves 64 px and 500×375 images.
"""

from __future__ import annotations

import numpy as np
from pydensecrf.utils import unary_from_labels, unary_from_softmax

from pipeline.dense_crf import CRF_PRESETS, dense_crf
from pipeline.params import CrfKernelParams, CrfRefineParams
from pipeline.refine import REFINE_METHODS
from pipeline.voc import IGNORE_INDEX


def kernel_params(params: CrfRefineParams) -> CrfKernelParams:
    return params.custom if params.preset == "custom" else CRF_PRESETS[params.preset]


def cam_probabilities(cams: np.ndarray, alpha: float) -> np.ndarray:
    """(1 + k, H, W) per-pixel probabilities from [(1 − max CAM)^α, CAMs], normalised to sum 1."""
    peak = cams.max(axis=0) if len(cams) else np.zeros(cams.shape[1:], dtype=np.float32)
    scores = np.concatenate([np.power(np.clip(1.0 - peak, 0, 1), alpha)[None], np.clip(cams, 0, None)])
    return scores / np.maximum(scores.sum(axis=0, keepdims=True), 1e-8)


@REFINE_METHODS.register("crf")
def crf_refine(
    image: np.ndarray, seeds: np.ndarray, cams: np.ndarray, classes: list[int], params: CrfRefineParams
) -> np.ndarray:  # fmt: skip
    """Dense-CRF labels over {background} ∪ ``classes``; low-confidence pixels → 255."""
    kernel = kernel_params(params)
    values = np.asarray([0] + [c + 1 for c in classes], dtype=np.uint8)
    if not classes:  # an image kept as a negative: background is the only label
        return np.zeros(seeds.shape, dtype=np.uint8)
    if kernel.unary == "labels":
        compact = np.zeros(256, dtype=np.int64)  # 0 = unsure (255 and any label outside the image's classes)
        compact[values] = np.arange(1, len(values) + 1)
        unary = unary_from_labels(compact[seeds], len(values), kernel.gt_prob, zero_unsure=True)
    else:
        unary = unary_from_softmax(cam_probabilities(cams, kernel.bg_alpha))
    posterior = dense_crf(image, unary.reshape(len(values), *seeds.shape), kernel)
    label = values[posterior.argmax(axis=0)]
    return np.where(posterior.max(axis=0) < kernel.confidence, IGNORE_INDEX, label).astype(np.uint8)


def crf_from_probabilities(image: np.ndarray, probabilities: np.ndarray, params: CrfRefineParams) -> np.ndarray:
    """Post-processing of a prediction: the CRF's posterior argmax with unary −log p (p: (C, H, W) softmax)."""
    kernel = kernel_params(params)
    posterior = dense_crf(image, unary_from_softmax(np.clip(probabilities, 1e-8, 1.0)), kernel)
    return posterior.argmax(axis=0).astype(np.uint8)
