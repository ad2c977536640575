"""Superpixel proposals: the CPU stand-in for SAM in the embedded demo, stored in SAM's schema.

Felzenszwalb's graph segmentation at three scales gives three partitions standing for SAM's levels (largest
scale → *whole*, then *part*, then *sub-part*). Each region gets the two numbers SAM attaches to a mask:

- ``score`` (SAM: predicted IoU) — colour homogeneity, 1 − (region's colour std / image's colour std), in [0, 1];
- ``stability`` (SAM: IoU of the mask under a shifted binarisation cutoff) — the IoU of the region with its best
  match in the partition at 1.25 × the scale.

Unlike SAM's masks, one level's regions never overlap and together cover the image; SAMS's filter (t_r) then
keeps the whole level and only parts that it leaves uncovered (none, unless ``min_score`` / ``min_stability`` /
``min_area`` drop whole regions).
"""

from __future__ import annotations

import numpy as np
from skimage.segmentation import felzenszwalb

from pipeline.params import SuperpixelProposalParams
from pipeline.proposals import PROPOSAL_METHODS
from pipeline.proposals.regions import SUB_PART, WHOLE, Proposals

STABILITY_SCALE = 1.25


def homogeneity(image: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    """Per region 1 − mean-channel colour std / the image's mean-channel colour std, clipped to [0, 1]."""
    pixels = image.reshape(-1, image.shape[-1]).astype(np.float64)
    flat = labels.ravel()
    area = np.bincount(flat, minlength=count)
    mean = np.stack([np.bincount(flat, pixels[:, c], count) for c in range(pixels.shape[1])], 1) / area[:, None]
    square = np.stack([np.bincount(flat, pixels[:, c] ** 2, count) for c in range(pixels.shape[1])], 1)
    std = np.sqrt(np.maximum(square / area[:, None] - mean**2, 0.0)).mean(axis=1)
    return np.clip(1.0 - std / max(pixels.std(axis=0).mean(), 1e-6), 0.0, 1.0)


def best_match_iou(labels: np.ndarray, count: int, other: np.ndarray) -> np.ndarray:
    """For each region of ``labels``, its highest IoU with any region of the partition ``other``."""
    other_count = int(other.max()) + 1
    joint = np.bincount(labels.ravel() * other_count + other.ravel(), minlength=count * other_count)
    joint = joint.reshape(count, other_count).astype(np.float64)
    union = joint.sum(axis=1, keepdims=True) + joint.sum(axis=0, keepdims=True) - joint
    return (joint / np.maximum(union, 1.0)).max(axis=1)


@PROPOSAL_METHODS.register("superpixels")
class SuperpixelProposals:
    """Three Felzenszwalb partitions → masks with level, score and stability."""

    parallel_on_cpu = True

    def __init__(self, params: SuperpixelProposalParams, device=None) -> None:
        self.params = params

    def _partition(self, image: np.ndarray, scale: float) -> np.ndarray:
        return felzenszwalb(image, scale=scale, sigma=self.params.sigma, min_size=self.params.min_size)

    def __call__(self, image: np.ndarray) -> Proposals:
        masks, levels, scores, stabilities = [], [], [], []
        for level, scale in zip(range(WHOLE, SUB_PART - 1, -1), self.params.scales, strict=True):
            labels = self._partition(image, scale)
            count = int(labels.max()) + 1
            area = np.bincount(labels.ravel(), minlength=count)
            score = homogeneity(image, labels, count)
            stability = best_match_iou(labels, count, self._partition(image, scale * STABILITY_SCALE))
            keep = np.flatnonzero(
                (area >= self.params.min_area) & (score >= self.params.min_score)
                & (stability >= self.params.min_stability)
            )  # fmt: skip
            masks.append(labels[None] == keep[:, None, None])
            levels.append(np.full(len(keep), level, dtype=np.uint8))
            scores.append(score[keep])
            stabilities.append(stability[keep])
        return Proposals(
            np.concatenate(masks), np.concatenate(levels),
            np.concatenate(scores).astype(np.float32), np.concatenate(stabilities).astype(np.float32),
        )  # fmt: skip
