"""SAMS — the SAM-based seeding module of FMA-WSSS (Yang & Gong, §3.3, eq. 8–10).

1. Quasi-superpixels: keep every *whole* mask, then each *part* mask whose occupation ratio
   max_M |m ∩ M| / |m| over the masks kept so far is below t_r (0.3), then each *sub-part* mask likewise.
   Masks of the same level are not compared with each other (SAM's NMS has already thinned them).
2. Classification: S^c(Q_i) = Norm(mean of M^c over Q_i) with min-max normalisation over the quasi-superpixels
   (eq. 8); S^bg(Q_i) = (1 − max_c S^c(Q_i))^α (eq. 9); l_i = argmax over {bg} ∪ present classes (eq. 10),
   ties going to background. A class whose mean activation is equal on every quasi-superpixel scores 0. With
   ``background: model`` (a CAM method with a background class: APC, PCC) S^bg is the method's background map
   scored as eq. 8 scores a class.
3. Seed map: each quasi-superpixel paints its label; where several cover a pixel, the higher level wins, then
   the higher winning score (then the smaller mask: later in the store's canonical order); uncovered pixels
   are background.

Everything is computed on the proposal store's atoms (pipeline/proposals/regions.py), so there is no per-pixel
or per-mask Python loop: the cost is a few bincounts over the image plus (n × A) matrix products.
"""

from __future__ import annotations

import numpy as np

from pipeline.params import SamsSeedParams
from pipeline.proposals.regions import PART, SUB_PART, WHOLE, Proposals
from pipeline.seeds import SEED_METHODS, require_background


def mask_overlaps(regions: Proposals) -> np.ndarray:
    """(n, n) pixel counts |m_i ∩ m_j| (the diagonal holds the areas)."""
    members = regions.membership.astype(np.float64)
    return (members * regions.atom_area) @ members.T


def quasi_superpixels(overlaps: np.ndarray, level: np.ndarray, t_r: float) -> np.ndarray:
    """Bool (n,): the masks kept by FMA-WSSS's whole → part → sub-part filter with threshold ``t_r``."""
    area = np.diag(overlaps)
    kept = level == WHOLE
    for current in (PART, SUB_PART):
        candidates = np.flatnonzero(level == current)
        if kept.any():
            ratio = overlaps[np.ix_(candidates, np.flatnonzero(kept))].max(axis=1) / np.maximum(area[candidates], 1)
        else:
            ratio = np.zeros(len(candidates))
        kept = kept.copy()
        kept[candidates[ratio < t_r]] = True
    return kept


def class_scores(regions: Proposals, cams: np.ndarray, area: np.ndarray) -> np.ndarray:
    """Eq. 8: (n, k) mean activation of each class over each mask, min-max normalised over the masks."""
    mass = regions.membership.astype(np.float64) @ regions.atom_sums(np.maximum(cams, 0.0))
    mean = mass / np.maximum(area, 1)[:, None]
    low, high = mean.min(axis=0, keepdims=True), mean.max(axis=0, keepdims=True)
    spread = high - low
    return np.divide(mean - low, spread, out=np.zeros_like(mean), where=spread > 0)


def background_score(scores: np.ndarray, alpha: float) -> np.ndarray:
    """Eq. 9: S^bg = (1 − max_c S^c)^α per mask."""
    peak = scores.max(axis=1) if scores.shape[1] else np.zeros(len(scores))
    return np.power(np.clip(1.0 - peak, 0.0, 1.0), alpha)


def winners(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 10: per mask the winning column of [bg, S^1..S^k] (0 = background, ties to it) and its score."""
    winner = table.argmax(axis=1)
    return winner, table[np.arange(len(table)), winner]


def classify_masks(scores: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 9–10 with the class scores S^1..S^k of each mask."""
    return winners(np.concatenate([background_score(scores, alpha)[:, None], scores], axis=1))


def paint_masks(
    regions: Proposals, keep: np.ndarray, labels: np.ndarray, priority: np.ndarray
) -> np.ndarray:  # fmt: skip
    """(H, W) uint8: each pixel takes the label of the covering kept mask with the highest priority, else 0."""
    members = regions.membership & keep[:, None]
    ranked = np.where(members, priority[:, None] + 1, 0)
    winner = ranked.argmax(axis=0)
    atom_label = np.where(members.any(axis=0), labels[winner], 0).astype(np.uint8)
    return atom_label[regions.regions]


@SEED_METHODS.register("sams")
def sams_seeds(
    cams: np.ndarray, classes: list[int], params: SamsSeedParams, regions: Proposals,
    background: np.ndarray | None = None,
) -> np.ndarray:  # fmt: skip
    """FMA-WSSS SAMS seeds from (k, H, W) CAMs of ``classes`` and the image's proposals; with ``background:
    model`` the CAM method's own background map is scored like a class (eq. 8) instead of by eq. 9."""
    n = len(regions.level)
    if n == 0 or not classes:  # no masks, or an image kept as a negative (data.no_foreground: keep)
        return np.zeros(cams.shape[1:], dtype=np.uint8)
    overlaps = mask_overlaps(regions)
    area = np.diag(overlaps)
    keep = quasi_superpixels(overlaps, regions.level, params.t_r)
    if params.background == "model":
        channels = np.concatenate([require_background(background, "seeds.sams")[None], cams])
        table = np.zeros((n, len(classes) + 1))
        table[keep] = class_scores(regions.subset(keep), channels, area[keep])
        winner, confidence = winners(table)
    else:
        scores = np.zeros((n, len(classes)))
        scores[keep] = class_scores(regions.subset(keep), cams, area[keep])
        winner, confidence = classify_masks(scores, params.alpha)
    lookup = np.asarray([0] + [c + 1 for c in classes], dtype=np.uint8)
    order = np.lexsort((confidence, regions.level))  # ascending (level, confidence): later ranks win
    priority = np.empty(n, dtype=np.int64)
    priority[order] = np.arange(n)
    return paint_masks(regions, keep, lookup[winner], priority)


sams_seeds.uses_proposals = True
sams_seeds.uses_background = True
