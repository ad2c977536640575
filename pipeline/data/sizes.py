"""Sizes that follow the data: a training crop fitted to each image's short side when the images are far larger
than the crop, the same fit at inference, and a floor on the number of optimiser steps.

The defaults were tuned on the embedded benchmark's 64 × 64 images with 64 px crops. On a dataset of 200 px
images a 64 px window often misses the object its image-level label names, and the epochs that gave the
benchmark 900 classifier steps give a 600-image dataset less than half of them. Hence:

- ``rescale`` (each training section): ``short_side`` scales every image so that its short side is the crop
  before the random rescale of ``scale_range`` (IRN's and CLIMS's ``resize_long`` play the same part on VOC),
  and its inference views (CAM scales, the segmenter's prediction scales, label quality) alike; ``none`` keeps
  the stored size; ``auto`` is ``short_side`` when the crop is below :data:`FAR_SMALLER` of the train split's
  median short side, else ``none`` (the embedded benchmark: ``none``, its figures unchanged). An explicit
  ``none`` with such a crop trains, with a warning naming the setting and the median image size.
- ``min_steps``: the epochs are raised until the schedule reaches this many optimiser steps
  (:func:`scheduled_epochs`).

No torch here: params validation imports this module.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Rescale = Literal["auto", "short_side", "none"]
FAR_SMALLER = 0.5  # a crop below half the median short side sees little of most images


@dataclass(frozen=True)
class SplitSizes:
    """Median sides of a split's images, in pixels."""

    images: int
    median_height: float
    median_width: float
    median_short_side: float

    def describe(self) -> str:
        return f"median {self.median_width:g}×{self.median_height:g} px, short side {self.median_short_side:g} px"


def split_sizes(sides: Iterable[tuple[int, int]]) -> SplitSizes:
    """The medians of (height, width) pairs."""
    sides = list(sides)
    if not sides:
        raise ValueError("no images to size the crops from")
    return SplitSizes(len(sides), statistics.median(h for h, _ in sides), statistics.median(w for _, w in sides),
                      statistics.median(min(h, w) for h, w in sides))  # fmt: skip


@dataclass(frozen=True)
class ViewFit:
    """How a network's training saw the images: ``mode`` ``short_side`` scales each so that its short side is
    ``crop_size``; ``none`` keeps its stored size."""

    mode: Literal["short_side", "none"] = "none"
    crop_size: int = 0

    def scale(self, height: int, width: int) -> float:
        """The factor an image of ``height`` × ``width`` is seen at before any random or test-time scale."""
        return self.crop_size / min(height, width) if self.mode == "short_side" else 1.0


AS_STORED = ViewFit()  # images seen at their stored size


def resolve_rescale(rescale: Rescale, crop_size: int, sizes: SplitSizes, setting: str) -> ViewFit:
    """What ``rescale`` means for crops of ``crop_size`` on images of ``sizes`` (see the module docstring);
    ``setting`` names the params section in the warning (``segmenter``, ``cam.cam.training``)."""
    far = crop_size < FAR_SMALLER * sizes.median_short_side
    if rescale == "auto":
        return ViewFit("short_side" if far else "none", crop_size)
    if rescale == "none" and far:
        warnings.warn(f"{setting}.crop_size {crop_size} is far smaller than the training images ({sizes.describe()})"
                      f" and {setting}.rescale is none: a crop sees a small part of each image, and an image label "
                      f"may name an object outside it; rescale: auto (or short_side) fits each image's short side "
                      f"to the crop", stacklevel=2)  # fmt: skip
    return ViewFit(rescale, crop_size)


def scaled_views(scales: tuple[float, ...], base: float) -> tuple[float, ...]:
    """Test-time scales relative to the training resolution: each of ``scales`` times ``base`` (``scales``
    itself at base 1, so the views of a run without rescaling are unchanged)."""
    return scales if base == 1.0 else tuple(scale * base for scale in scales)


def scheduled_epochs(epochs: int, min_steps: int, batches_per_epoch: int) -> int:
    """``epochs``, raised until ``epochs × batches_per_epoch`` reaches ``min_steps``."""
    return max(epochs, math.ceil(min_steps / max(1, batches_per_epoch)))
