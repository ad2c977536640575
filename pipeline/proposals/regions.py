"""Class-agnostic region proposals of one image and their exact decomposition into atoms.

A set of n possibly overlapping masks cuts the image into *atoms*: maximal pixel sets covered by exactly the
same masks. ``regions`` (H, W) gives each pixel's atom and ``membership`` (n, A) says which masks contain which
atom, so ``masks == membership[:, regions]``. Every per-mask sum (area, CAM mass, overlap with another mask
or with a label region) is then a sum over a few hundred atoms instead of n × H × W pixels — the reason
SAM-based seeding runs in milliseconds (see pipeline/seeds/sams.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LEVEL_NAMES = ("sub-part", "part", "whole")
SUB_PART, PART, WHOLE = 0, 1, 2


@dataclass(frozen=True)
class Proposals:
    """Masks (n, H, W) bool with SAM's per-mask record: level (0 sub-part, 1 part, 2 whole), score, stability."""

    masks: np.ndarray
    level: np.ndarray
    score: np.ndarray
    stability: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.masks)
        if self.masks.ndim != 3 or self.masks.dtype != bool:
            raise ValueError(f"masks must be a (n, H, W) bool array, got {self.masks.dtype} {self.masks.shape}")
        for name in ("level", "score", "stability"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name} must have shape ({n},), got {getattr(self, name).shape}")
        if n and (self.level.min() < SUB_PART or self.level.max() > WHOLE):
            raise ValueError(f"levels must be in 0..2 ({', '.join(LEVEL_NAMES)})")

    @property
    def area(self) -> np.ndarray:
        return self.masks.sum(axis=(1, 2)).astype(np.int32)

    @property
    def bbox(self) -> np.ndarray:
        """(n, 4) int32 XYWH boxes (SAM's convention); zeros for an empty mask."""
        rows, cols = self.masks.any(axis=2), self.masks.any(axis=1)
        boxes = np.zeros((len(self.masks), 4), dtype=np.int32)
        for i, (row, col) in enumerate(zip(rows, cols, strict=True)):
            if row.any():
                y0, y1 = np.flatnonzero(row)[[0, -1]]
                x0, x1 = np.flatnonzero(col)[[0, -1]]
                boxes[i] = (x0, y0, x1 - x0 + 1, y1 - y0 + 1)
        return boxes

    def canonical(self) -> Proposals:
        """Drop empty masks and sort by level (whole first), area (largest first), then box: a stable order."""
        area, box = self.area, self.bbox
        order = np.lexsort((box[:, 0], box[:, 1], -area, -self.level.astype(np.int64)))
        order = order[area[order] > 0]
        return Proposals(
            masks=self.masks[order], level=self.level[order].astype(np.uint8),
            score=self.score[order].astype(np.float32), stability=self.stability[order].astype(np.float32),
        )  # fmt: skip


def region_index(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Atoms of (n, H, W) bool masks: ``regions`` (H, W) int32 and ``membership`` (n, A) bool.

    Each pixel's coverage pattern is packed into bytes and the distinct patterns are numbered in sorted order,
    so the decomposition is exact and deterministic.
    """
    n, height, width = masks.shape
    if n == 0:
        return np.zeros((height, width), dtype=np.int32), np.zeros((0, 1), dtype=bool)
    packed = np.ascontiguousarray(np.packbits(masks.reshape(n, -1), axis=0).T)
    patterns, inverse = np.unique(packed.view(np.dtype((np.void, packed.shape[1]))).ravel(), return_inverse=True)
    pattern_bytes = np.frombuffer(patterns.tobytes(), dtype=np.uint8).reshape(len(patterns), -1)
    membership = np.unpackbits(pattern_bytes, axis=1, count=n).T.astype(bool)
    return inverse.reshape(height, width).astype(np.int32), membership


@dataclass(frozen=True)
class RegionIndex:
    """What seeding reads from the proposal store: atoms, membership and the per-mask record."""

    regions: np.ndarray
    membership: np.ndarray
    level: np.ndarray
    score: np.ndarray

    @property
    def atom_area(self) -> np.ndarray:
        return np.bincount(self.regions.ravel(), minlength=self.membership.shape[1]).astype(np.float64)

    def atom_sums(self, values: np.ndarray) -> np.ndarray:
        """(A, k) sums of the (k, H, W) ``values`` over each atom."""
        atoms = self.membership.shape[1]
        flat = self.regions.ravel()
        return np.stack([np.bincount(flat, weights=v.ravel(), minlength=atoms) for v in values], axis=1).reshape(
            atoms, len(values)
        )

    def masks(self) -> np.ndarray:
        """The (n, H, W) bool masks rebuilt from the atoms."""
        return self.membership[:, self.regions]
