"""SAM voting seeds (Chen et al., "Segment anything is a good pseudo-label generator for WSSS").

Start from threshold seeds (pipeline/seeds/threshold.py). For each region P of the seed map with one label —
background, then the classes in ascending order (255 is not a region) — every SAM mask M not yet claimed joins
P's label when more than ``mask_fraction`` of M lies in P (|M ∩ P| > 0.5 |M|, i.e. 2|M ∩ P| − |M| > 0) or M
covers at least ``region_fraction`` (0.85) of P. A mask is claimed once, by the first region that takes it.
Claimed masks paint their label (a later region's masks over an earlier one's where they overlap); pixels no
claimed mask covers keep the seed's label, 255 included. Their evaluation code accumulates counts across
classes; that bug is not reproduced here. Counts are taken on the proposal atoms: no per-pixel loop.
"""

from __future__ import annotations

import numpy as np

from pipeline.params import VotingSeedParams
from pipeline.proposals.regions import Proposals
from pipeline.seeds import SEED_METHODS
from pipeline.seeds.threshold import threshold_seeds
from pipeline.voc import IGNORE_INDEX


def claim_masks(
    inside: np.ndarray, mask_area: np.ndarray, region_area: np.ndarray, params: VotingSeedParams
) -> np.ndarray:  # fmt: skip
    """Per mask the index of the region that claims it (−1: none); ``inside`` is (n, R) |M ∩ P_r|."""
    joins = (inside > params.mask_fraction * mask_area[:, None]) | (
        inside >= params.region_fraction * np.maximum(region_area[None, :], 1)
    )
    joins &= region_area[None, :] > 0
    return np.where(joins.any(axis=1), joins.argmax(axis=1), -1)


@SEED_METHODS.register("voting")
def voting_seeds(
    cams: np.ndarray, classes: list[int], params: VotingSeedParams, regions: Proposals,
    background: np.ndarray | None = None, image: np.ndarray | None = None,
) -> np.ndarray:  # fmt: skip
    """Threshold seeds (with the CAM method's own ``background`` map and the ``image``'s CRF if they use them)
    improved by SAM masks that vote themselves into a label region."""
    base = threshold_seeds(cams, classes, params.threshold, background, image)
    values = np.asarray([v for v in np.unique(base) if v != IGNORE_INDEX], dtype=np.int64)
    if len(regions.level) == 0 or len(values) == 0:
        return base
    atoms = regions.membership.shape[1]
    slot = np.full(256, len(values), dtype=np.int64)  # 255 → an extra column that is not a region
    slot[values] = np.arange(len(values))
    joint = np.bincount(regions.regions.ravel() * (len(values) + 1) + slot[base.ravel()],
                        minlength=atoms * (len(values) + 1)).reshape(atoms, len(values) + 1)  # fmt: skip
    members = regions.membership.astype(np.float64)
    inside = members @ joint[:, : len(values)]
    claimed = claim_masks(inside, members @ joint.sum(axis=1), joint[:, : len(values)].sum(axis=0), params)
    painted = regions.membership & (claimed >= 0)[:, None]
    ranked = np.where(painted, claimed[:, None] + 1, 0).max(axis=0)  # the latest region's label wins
    atom_label = np.where(ranked > 0, values[np.maximum(ranked - 1, 0)], -1)
    per_pixel = atom_label[regions.regions]
    return np.where(per_pixel >= 0, per_pixel, base).astype(np.uint8)


voting_seeds.uses_proposals = True
voting_seeds.uses_background = True
voting_seeds.reads_image = lambda params: params.threshold.crf != "none"
