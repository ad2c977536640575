"""PASCAL VOC class names, super-categories and the VOC colour palette."""

from __future__ import annotations

import numpy as np

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)  # fmt: skip

# VOC's own super-categories (used to group the synthetic objects and to score clusters).
VOC_SUPERCATEGORIES: dict[str, tuple[str, ...]] = {
    "animal": ("bird", "cat", "cow", "dog", "horse", "sheep"),
    "vehicle": ("aeroplane", "bicycle", "boat", "bus", "car", "motorbike", "train"),
    "indoor": ("bottle", "chair", "diningtable", "pottedplant", "sofa", "tvmonitor"),
    "person": ("person",),
}

IGNORE_INDEX = 255


def blend_labels(image: np.ndarray, labels: np.ndarray, palette: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """An (H, W, 3) uint8 image with each labelled pixel's class colour blended over it (``alpha`` of the
    colour); background (0) and ignored (255) pixels show the image."""
    coloured = (1 - alpha) * image.astype(np.float32) + alpha * palette[labels].astype(np.float32)
    keep = (labels == 0) | (labels == IGNORE_INDEX)
    return np.where(keep[..., None], image, coloured.round()).astype(np.uint8)


def voc_palette() -> np.ndarray:
    """The standard 256×3 VOC palette (bit-interleaved label colours; 255 → (224, 224, 192))."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    for label in range(256):
        value, r, g, b = label, 0, 0, 0
        for bit in range(8):
            r |= ((value >> 0) & 1) << (7 - bit)
            g |= ((value >> 1) & 1) << (7 - bit)
            b |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        palette[label] = (r, g, b)
    return palette
