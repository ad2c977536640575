"""Superpixel proposals: the CPU stand-in for SAM in the embedded demo, stored in SAM's schema.

Felzenszwalb's graph segmentation at three scales gives three partitions standing for SAM's levels (largest
scale → *whole*, then *part*, then *sub-part*). Each region gets the two numbers SAM attaches to a mask:

- ``score`` (SAM: predicted IoU) — colour homogeneity, 1 − (region's colour std / image's colour std), in [0, 1];
- ``stability`` (SAM: IoU of the mask under a shifted binarisation cutoff) — the IoU of the region with its best
  match in the partition at 1.25 × the scale.

Scales and sizes are relative to the image (``reference_size``, see :meth:`SuperpixelProposals.sizes`).
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
    """For each region of ``labels``, its highest IoU with any region of the partition ``other``.

    Only the (region, other region) pairs that share a pixel are counted, so memory is O(H·W), not
    count × other count.
    """
    other_count = int(other.max()) + 1
    pairs, joint = np.unique(labels.ravel().astype(np.int64) * other_count + other.ravel(), return_counts=True)
    first, second = pairs // other_count, pairs % other_count
    area = np.bincount(labels.ravel(), minlength=count)
    other_area = np.bincount(other.ravel(), minlength=other_count)
    iou = joint / (area[first] + other_area[second] - joint)
    best = np.zeros(count)
    np.maximum.at(best, first, iou)
    return best


@PROPOSAL_METHODS.register("superpixels")
class SuperpixelProposals:
    """Three Felzenszwalb partitions → masks with level, score and stability, built as atoms (no dense masks)."""

    def __init__(self, params: SuperpixelProposalParams, device=None) -> None:
        self.params = params

    def sizes(self, height: int, width: int) -> tuple[tuple[float, ...], int, int]:
        """Felzenszwalb scales, its min_size and the min_area for an image of this size.

        With ``reference_size`` r the parameters are those of an r × r image: the scales grow with the side
        √(H·W) / r and the two pixel counts with the area H·W / r². On 500×375 photographs that gives about
        80–160 masks per image, in the range of SAM's automatic generator, where the 64 px values taken as
        pixels give 4,000–6,000 (benchmarks/proposals_real.py). ``reference_size: null`` takes them as pixels.
        """
        p = self.params
        if p.reference_size is None:
            return p.scales, p.min_size, p.min_area
        area_ratio = height * width / p.reference_size**2
        side_ratio = area_ratio**0.5
        return (
            tuple(scale * side_ratio for scale in p.scales),
            max(1, round(p.min_size * area_ratio)), max(1, round(p.min_area * area_ratio)),
        )  # fmt: skip

    def __call__(self, image: np.ndarray) -> Proposals:
        scales, min_size, min_area = self.sizes(*image.shape[:2])
        partitions, kept, scores, stabilities = [], [], [], []
        for scale in scales:
            labels = felzenszwalb(image, scale=scale, sigma=self.params.sigma, min_size=min_size)
            count = int(labels.max()) + 1
            area = np.bincount(labels.ravel(), minlength=count)
            score = homogeneity(image, labels, count)
            other = felzenszwalb(image, scale=scale * STABILITY_SCALE, sigma=self.params.sigma, min_size=min_size)
            stability = best_match_iou(labels, count, other)
            keep = np.flatnonzero(
                (area >= min_area) & (score >= self.params.min_score) & (stability >= self.params.min_stability)
            )
            partitions.append(labels)
            kept.append(keep)
            scores.append(score[keep])
            stabilities.append(stability[keep])
        levels = list(range(WHOLE, SUB_PART - 1, -1))
        return Proposals.from_partitions(partitions, kept, levels, scores, stabilities)
