"""The fully connected CRF (Krähenbühl & Koltun, via pydensecrf2) every stage shares: the kernel presets of IRN,
CLIP-ES and ToCo, the mean-field posterior, and IRN's CRF on a label map (``misc/imutils.py:crf_inference_label``),
which its seeds (``step/cam_to_ir_label.py``) and the refinement's ``labels`` unary both rest on. Numpy only."""

from __future__ import annotations

import numpy as np
import pydensecrf.densecrf as dcrf
from pydensecrf.utils import unary_from_labels

from pipeline.params import CrfKernelParams

CRF_PRESETS = {
    "irn": CrfKernelParams(
        unary="labels", gt_prob=0.7, iterations=10, gaussian_sxy=3, gaussian_compat=3,
        bilateral_sxy=50, bilateral_srgb=5, bilateral_compat=10, confidence=0.0, reference_size=None,
    ),
    "clip_es": CrfKernelParams(
        unary="cams", bg_alpha=1.0, iterations=10, gaussian_sxy=1, gaussian_compat=3,
        bilateral_sxy=67, bilateral_srgb=3, bilateral_compat=4, confidence=0.95, reference_size=None,
    ),
    "toco": CrfKernelParams(
        unary="cams", bg_alpha=1.0, iterations=10, gaussian_sxy=3, gaussian_compat=3,
        bilateral_sxy=36, bilateral_srgb=3, bilateral_compat=4, confidence=0.0, reference_size=None,
    ),
}  # fmt: skip


def spatial_scale(kernel: CrfKernelParams, height: int, width: int) -> float:
    """Factor on the kernels' spatial stds: √(H·W) / ``reference_size``, or 1 when they are in pixels."""
    return 1.0 if kernel.reference_size is None else (height * width) ** 0.5 / kernel.reference_size


def dense_crf(image: np.ndarray, unary: np.ndarray, kernel: CrfKernelParams) -> np.ndarray:
    """(L, H, W) posterior of a fully connected CRF with Gaussian + bilateral kernels."""
    labels, height, width = unary.shape[0], *image.shape[:2]
    scale = spatial_scale(kernel, height, width)
    crf = dcrf.DenseCRF2D(width, height, labels)
    crf.setUnaryEnergy(np.ascontiguousarray(unary.reshape(labels, -1), dtype=np.float32))
    crf.addPairwiseGaussian(sxy=kernel.gaussian_sxy * scale, compat=kernel.gaussian_compat)
    rgb = np.ascontiguousarray(image, dtype=np.uint8)
    crf.addPairwiseBilateral(
        sxy=kernel.bilateral_sxy * scale, srgb=kernel.bilateral_srgb, rgbim=rgb, compat=kernel.bilateral_compat
    )
    return np.asarray(crf.inference(kernel.iterations), dtype=np.float32).reshape(labels, height, width)


def label_crf(image: np.ndarray, labels: np.ndarray, count: int, kernel: CrfKernelParams) -> np.ndarray:
    """IRN's ``crf_inference_label``: every pixel's label in 0…``count``−1 gets probability ``gt_prob`` (the
    others share the rest; ``zero_unsure=False``: label 0 is a label, not "unsure"), then the kernel's
    mean-field steps; the posterior's argmax, int64 (H, W)."""
    unary = unary_from_labels(labels.astype(np.int64), count, kernel.gt_prob, zero_unsure=False)
    return dense_crf(image, unary.reshape(count, *labels.shape), kernel).argmax(axis=0)
