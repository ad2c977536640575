"""SAMS (FMA-WSSS eq. 8–10, filter, painting) and SAM voting seeds on hand-built masks and CAMs."""

import numpy as np
import pytest

from pipeline.params import SamsSeedParams, ThresholdSeedParams, VotingSeedParams
from pipeline.proposals.regions import Proposals
from pipeline.seeds.sams import (
    background_score,
    class_scores,
    classify_masks,
    mask_overlaps,
    paint_masks,
    quasi_superpixels,
    sams_seeds,
)
from pipeline.seeds.voting import claim_masks, voting_seeds


def index_of(masks: list[list[int]], level: list[int], shape=(2, 4)) -> Proposals:
    """Proposals of masks given as flat pixel lists on an image of ``shape``."""
    dense = np.zeros((len(masks), shape[0] * shape[1]), dtype=bool)
    for i, pixels in enumerate(masks):
        dense[i, pixels] = True
    dense = dense.reshape(len(masks), *shape)
    ones = np.ones(len(masks), np.float32)
    return Proposals.from_masks(dense, np.asarray(level, np.uint8), ones, ones)


# 2×4 image, flat pixels 0..7. W1 whole {0,1,4,5}; P1 part {2,3}; P2 part {1,2}; S1 sub {6}; S2 sub {3,7}.
MASKS = [[0, 1, 4, 5], [2, 3], [1, 2], [6], [3, 7]]
LEVELS = [2, 1, 1, 0, 0]
CAM = np.array([[[0.9, 0.7, 0.2, 0.0], [0.8, 0.6, 0.4, 0.1]]], dtype=np.float32)


def test_filter_keeps_whole_then_low_occupation_parts() -> None:
    regions = index_of(MASKS, LEVELS)
    overlaps = mask_overlaps(regions)
    assert np.diag(overlaps).tolist() == [4, 2, 2, 1, 2]
    assert overlaps[2, 0] == 1 and overlaps[4, 1] == 1
    # P1: 0/2 < 0.3 kept; P2: |P2 ∩ W1| / |P2| = 1/2 dropped; S1: 0 kept; S2: |S2 ∩ P1| / |S2| = 1/2 dropped.
    assert quasi_superpixels(overlaps, regions.level, 0.3).tolist() == [True, True, False, True, False]
    # With t_r above 0.5 the half-covered masks pass too.
    assert quasi_superpixels(overlaps, regions.level, 0.6).tolist() == [True] * 5


def test_eq8_to_eq10_on_hand_computed_numbers() -> None:
    regions = index_of([MASKS[0], MASKS[1], MASKS[3]], [2, 1, 0])
    scores = class_scores(regions, CAM, np.array([4, 2, 1]))
    # Means: W1 (0.9+0.7+0.8+0.6)/4 = 0.75, P1 (0.2+0.0)/2 = 0.1, S1 0.4; min-max over the three masks.
    assert scores[:, 0] == pytest.approx([1.0, 0.0, 0.3 / 0.65], abs=1e-6)
    background = background_score(scores, 0.6)
    assert background == pytest.approx([0.0, 1.0, (1 - 0.3 / 0.65) ** 0.6], abs=1e-6)
    winner, confidence = classify_masks(scores, 0.6)
    assert winner.tolist() == [1, 0, 0]  # S1: (0.5385)^0.6 = 0.690 > 0.462 → background
    assert confidence == pytest.approx([1.0, 1.0, (1 - 0.3 / 0.65) ** 0.6], abs=1e-6)
    # A larger α shrinks the background score: S1 turns foreground (0.5385^2 = 0.29 < 0.462).
    assert classify_masks(scores, 2.0)[0].tolist() == [1, 0, 1]


def test_sams_seed_map() -> None:
    seeds = sams_seeds(CAM, [4], SamsSeedParams(t_r=0.3, alpha=0.6), index_of(MASKS, LEVELS))
    # W1 → class 4 (label 5); P1, S1 → background; pixel 7 uncovered → background.
    assert seeds.tolist() == [[5, 5, 0, 0], [5, 5, 0, 0]]
    seeds = sams_seeds(CAM, [4], SamsSeedParams(t_r=0.3, alpha=2.0), index_of(MASKS, LEVELS))
    assert seeds.tolist() == [[5, 5, 0, 0], [5, 5, 5, 0]]


def test_sams_with_the_methods_background_map_scores_it_like_a_class() -> None:
    # background map means over W1, P1, S1 (kept): 0.25, 0.9, 0.5 → min-max 0, 1, 0.25/0.65
    background = np.array([[0.1, 0.2, 0.9, 0.9], [0.3, 0.4, 0.5, 0.0]], dtype=np.float32)
    params = SamsSeedParams(background="model")
    seeds = sams_seeds(CAM, [4], params, index_of(MASKS, LEVELS), background=background)
    # W1: class 1.0 vs bg 0 → 5; P1: class 0 vs bg 1 → 0; S1: class 0.3/0.65 = 0.46 vs bg 0.38 → 5
    assert seeds.tolist() == [[5, 5, 0, 0], [5, 5, 5, 0]]
    with pytest.raises(ValueError, match="seeds.sams.background: model"):
        sams_seeds(CAM, [4], params, index_of(MASKS, LEVELS))


def test_painting_prefers_level_then_confidence() -> None:
    # Three masks over one 1×3 image: whole {0,1}, part {1,2}, sub-part {2}.
    regions = index_of([[0, 1], [1, 2], [2]], [2, 1, 0], shape=(1, 3))
    keep = np.array([True, True, True])
    labels = np.array([3, 7, 9])
    # Priority ascending (level, confidence): the whole mask ranks highest whatever its confidence.
    priority = np.array([2, 1, 0])
    assert paint_masks(regions, keep, labels, priority).tolist() == [[3, 3, 7]]
    # Same level: the higher-priority (more confident) mask wins the shared pixel.
    same = index_of([[0, 1], [1, 2]], [1, 1], shape=(1, 3))
    assert paint_masks(same, np.array([True, True]), np.array([3, 7]), np.array([0, 1])).tolist() == [[3, 7, 7]]
    assert paint_masks(same, np.array([True, False]), np.array([3, 7]), np.array([0, 1])).tolist() == [[3, 3, 0]]


def test_sams_without_masks_is_all_background() -> None:
    empty = Proposals(
        np.zeros((2, 4), np.int32), np.zeros((0, 1), bool), np.zeros(0, np.uint8), np.zeros(0), np.zeros(0)
    )
    assert sams_seeds(CAM, [4], SamsSeedParams(), empty).tolist() == [[0] * 4] * 2


def test_voting_rule_on_hand_counts() -> None:
    params = VotingSeedParams(mask_fraction=0.5, region_fraction=0.85)
    inside = np.array([[2.0, 1.0], [1.0, 3.0], [1.0, 0.0], [0.0, 0.0]])
    # Mask 0: 2 of 3 in region 0 → region 0. Mask 1: no majority anywhere, but covers all 3 px of region 1.
    # Mask 2: 1 of 2 is not more than half, and 1 of region 0's 5 px is below 0.85 → none. Mask 3: outside both.
    claimed = claim_masks(inside, np.array([3.0, 10.0, 2.0, 4.0]), np.array([5.0, 3.0]), params)
    assert claimed.tolist() == [0, 1, -1, -1]


def test_voting_seeds_fill_ignored_pixels_and_fix_regions() -> None:
    cams = np.array([[[0.9, 0.9, 0.2, 0.0, 0.0, 0.5]]], dtype=np.float32)
    threshold = ThresholdSeedParams()  # fg 0.30 / bg 0.05: [1, 1, 255, 0, 0, 1]
    regions = index_of([[0, 1, 2], [3, 4, 5], [2]], [2, 2, 0], shape=(1, 6))
    seeds = voting_seeds(cams, [0], VotingSeedParams(threshold=threshold), regions)
    # {0,1,2}: 2 of 3 in class 1 → paints pixel 2; {3,4,5}: 2 of 3 background → pixel 5 becomes background;
    # {2}: lies only on an ignored pixel → claims nothing.
    assert seeds.tolist() == [[1, 1, 1, 0, 0, 0]]
    alone = voting_seeds(cams, [0], VotingSeedParams(threshold=threshold), index_of([[2]], [0], shape=(1, 6)))
    assert alone.tolist() == [[1, 1, 255, 0, 0, 1]]
