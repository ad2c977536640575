"""Class-agnostic region proposals of one image, held sparsely as atoms.

A set of n possibly overlapping masks cuts the image into *atoms*: maximal pixel sets covered by exactly the
same masks. ``regions`` (H, W) gives each pixel's atom and ``membership`` (n, A) says which masks contain which
atom, so the dense masks are ``membership[:, regions]`` — never built unless asked for (:meth:`Proposals.masks`).
Every per-mask sum (area, CAM mass, overlap with another mask or with a label region) is a sum over a few
hundred atoms instead of n × H × W pixels, which is why SAM-based seeding runs in milliseconds
(pipeline/seeds/sams.py) and why memory does not grow with n × H × W.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import ndimage

LEVEL_NAMES = ("sub-part", "part", "whole")
SUB_PART, PART, WHOLE = 0, 1, 2


def _number_patterns(bits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Number the distinct columns of the (n, m) bool ``bits`` in sorted order of their packed bytes.

    Returns the (n, P) distinct patterns and each column's pattern index: the canonical atom numbering.
    """
    n = bits.shape[0]
    packed = np.ascontiguousarray(np.packbits(bits, axis=0).T)
    patterns, inverse = np.unique(packed.view(np.dtype((np.void, packed.shape[1]))).ravel(), return_inverse=True)
    pattern_bytes = np.frombuffer(patterns.tobytes(), dtype=np.uint8).reshape(len(patterns), -1)
    return np.unpackbits(pattern_bytes, axis=1, count=n).T.astype(bool), inverse.ravel()


def region_index(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Atoms of (n, H, W) bool masks: ``regions`` (H, W) int32 and ``membership`` (n, A) bool.

    Each pixel's coverage pattern is packed into bytes and the distinct patterns are numbered in sorted order,
    so the decomposition is exact and deterministic.
    """
    n, height, width = masks.shape
    if n == 0:
        return np.zeros((height, width), dtype=np.int32), np.zeros((0, 1), dtype=bool)
    membership, inverse = _number_patterns(masks.reshape(n, -1))
    return inverse.reshape(height, width).astype(np.int32), membership


@dataclass(frozen=True)
class Proposals:
    """n masks as atoms, with SAM's per-mask record: level (0 sub-part, 1 part, 2 whole), score, stability."""

    regions: np.ndarray
    membership: np.ndarray
    level: np.ndarray
    score: np.ndarray
    stability: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.membership)
        if self.regions.ndim != 2 or self.membership.ndim != 2 or self.membership.dtype != bool:
            raise ValueError(f"regions must be (H, W) and membership (n, A) bool, got {self.membership.dtype}")
        for name in ("level", "score", "stability"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name} must have shape ({n},), got {getattr(self, name).shape}")
        if n and (self.level.min() < SUB_PART or self.level.max() > WHOLE):
            raise ValueError(f"levels must be in 0..2 ({', '.join(LEVEL_NAMES)})")

    @classmethod
    def from_masks(cls, masks: np.ndarray, level: np.ndarray, score: np.ndarray, stability: np.ndarray) -> Proposals:
        """From dense (n, H, W) bool masks (SAM's output, tests)."""
        if masks.ndim != 3 or masks.dtype != bool:
            raise ValueError(f"masks must be a (n, H, W) bool array, got {masks.dtype} {masks.shape}")
        regions, membership = region_index(masks)
        return cls(regions, membership, np.asarray(level), np.asarray(score), np.asarray(stability))

    @classmethod
    def from_partitions(
        cls, partitions: list[np.ndarray], kept: list[np.ndarray], levels: list[int], scores: list[np.ndarray],
        stabilities: list[np.ndarray],
    ) -> Proposals:  # fmt: skip
        """From label maps that each partition the image (superpixels): the masks are the ``kept`` labels of
        each partition, at its level, with the kept labels' scores and stabilities. No dense mask is built:
        the atoms are the distinct label tuples across the partitions."""
        height, width = partitions[0].shape
        key = np.zeros(height * width, dtype=np.int64)
        counts = [int(labels.max()) + 1 for labels in partitions]
        for labels, count in zip(partitions, counts, strict=True):
            key = key * count + labels.ravel()
        tuples, inverse = np.unique(key, return_inverse=True)
        rows = []
        divisor = 1
        for count, keep in zip(reversed(counts), reversed(kept), strict=True):
            atom_label = (tuples // divisor) % count
            rows.insert(0, atom_label[None, :] == np.asarray(keep)[:, None])
            divisor *= count
        records = [np.full(len(keep), level, dtype=np.uint8) for keep, level in zip(kept, levels, strict=True)]
        return cls(
            inverse.reshape(height, width).astype(np.int32), np.concatenate(rows), np.concatenate(records),
            np.concatenate(scores).astype(np.float32), np.concatenate(stabilities).astype(np.float32),
        )  # fmt: skip

    @property
    def shape(self) -> tuple[int, int]:
        return self.regions.shape

    @cached_property
    def atom_area(self) -> np.ndarray:
        return np.bincount(self.regions.ravel(), minlength=self.membership.shape[1]).astype(np.float64)

    def atom_sums(self, values: np.ndarray) -> np.ndarray:
        """(A, k) sums of the (k, H, W) ``values`` over each atom."""
        atoms = self.membership.shape[1]
        flat = self.regions.ravel()
        return np.stack([np.bincount(flat, weights=v.ravel(), minlength=atoms) for v in values], axis=1).reshape(
            atoms, len(values)
        )

    @cached_property
    def area(self) -> np.ndarray:
        """(n,) int32 pixels per mask."""
        return (self.membership.astype(np.float64) @ self.atom_area).astype(np.int32)

    @cached_property
    def bbox(self) -> np.ndarray:
        """(n, 4) int32 XYWH boxes (SAM's convention); zeros for an empty mask. From the atoms' boxes."""
        atoms = self.membership.shape[1]
        slices = ndimage.find_objects(self.regions + 1, max_label=atoms)
        bounds = np.array(
            [(s[0].start, s[0].stop, s[1].start, s[1].stop) if s is not None else (-1, -1, -1, -1) for s in slices]
        ).reshape(atoms, 4)
        present = bounds[:, 0] >= 0
        boxes = np.zeros((len(self.membership), 4), dtype=np.int32)
        if not len(self.membership):
            return boxes
        members = self.membership & present[None]
        big = np.iinfo(np.int64).max
        y0 = np.where(members, bounds[None, :, 0], big).min(axis=1)
        y1 = np.where(members, bounds[None, :, 1], -1).max(axis=1)
        x0 = np.where(members, bounds[None, :, 2], big).min(axis=1)
        x1 = np.where(members, bounds[None, :, 3], -1).max(axis=1)
        filled = members.any(axis=1)
        boxes[filled] = np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)[filled]
        return boxes

    def masks(self) -> np.ndarray:
        """The dense (n, H, W) bool masks (for inspection and tests; seeding never needs them)."""
        return self.membership[:, self.regions]

    def subset(self, keep: np.ndarray) -> Proposals:
        """The masks selected by ``keep`` (bool or indices) over the same atoms."""
        return Proposals(self.regions, self.membership[keep], self.level[keep], self.score[keep], self.stability[keep])

    def canonical(self) -> Proposals:
        """Drop empty masks, sort by level (whole first), area (largest first), then box, and renumber the atoms
        as :func:`region_index` numbers them (merging atoms that only a dropped mask told apart): a stable,
        exact form whatever order and atoms the masks came with."""
        area, box = self.area, self.bbox
        order = np.lexsort((box[:, 0], box[:, 1], -area, -self.level.astype(np.int64)))
        order = order[area[order] > 0]
        membership = self.membership[order]
        if len(order):
            membership, inverse = _number_patterns(membership)
            regions = inverse[self.regions].astype(np.int32)
        else:
            membership, regions = np.zeros((0, 1), dtype=bool), np.zeros(self.shape, dtype=np.int32)
        return Proposals(
            regions=regions, membership=membership, level=self.level[order].astype(np.uint8),
            score=self.score[order].astype(np.float32), stability=self.stability[order].astype(np.float32),
        )  # fmt: skip
