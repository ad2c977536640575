"""APC's patch contrastive loss (eq. 4–6) on hand-computed embeddings."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.cams.methods.apc.contrast import class_contrast, normalised_similarity, patch_contrastive_loss


def test_similarity_maps_cosine_to_the_unit_interval() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]])
    assert torch.allclose(
        normalised_similarity(a, a), torch.tensor([[1.0, 0.5, 0.0], [0.5, 1.0, 0.5], [0.0, 0.5, 1.0]])
    )


def test_one_class_term_pulls_high_patches_together_and_pushes_low_ones_away() -> None:
    # patches 0, 1 high (> 0.85), patch 2 low (< 0.15), patch 3 in between (ignored)
    embeddings = torch.tensor([[1.0, 0.0], [1.0, 1.0], [-1.0, 0.0], [0.0, 1.0]])
    scores = torch.tensor([0.9, 0.95, 0.05, 0.5])
    cos01 = 1 / math.sqrt(2)
    positive = 1 - (1 + cos01) / 2  # the ordered pairs (0, 1) and (1, 0) have the same value
    negative = ((1 + -1.0) / 2 + (1 - cos01) / 2) / 2  # pairs (0, 2) and (1, 2)
    assert class_contrast(embeddings, scores, 0.85).item() == pytest.approx(positive + negative)


def test_terms_without_pairs_are_left_out_and_only_labelled_classes_count() -> None:
    embeddings = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])  # (1, 3, 2)
    probabilities = torch.tensor([[[0.9, 0.9], [0.1, 0.9], [0.5, 0.05]]])  # (1, 3 patches, 2 classes)
    # class 0: one high patch (0) and one low (1): only the negative part, S̄ = (1 + 0) / 2
    assert class_contrast(embeddings[0], probabilities[0, :, 0], 0.85).item() == pytest.approx(0.5)
    only_class_0 = patch_contrastive_loss(embeddings, probabilities, torch.tensor([[1, 0]]))
    assert only_class_0.item() == pytest.approx(0.5)
    # class 1: two high patches (0, 1), cosine 0 → 1 − 0.5; one low patch (2), cosines 1/√2 with both
    class_1 = 0.5 + (1 + 1 / math.sqrt(2)) / 2
    both = patch_contrastive_loss(embeddings, probabilities, torch.tensor([[1, 1]]))
    assert both.item() == pytest.approx(0.5 + class_1)  # eq. 7 sums the classes of an image
    two_images = patch_contrastive_loss(embeddings.repeat(2, 1, 1), probabilities.repeat(2, 1, 1),
                                        torch.tensor([[1, 1], [1, 0]]))  # fmt: skip
    assert two_images.item() == pytest.approx((0.5 + class_1 + 0.5) / 2)  # and the batch averages its images
    none = patch_contrastive_loss(embeddings.requires_grad_(), probabilities, torch.tensor([[0, 0]]))
    assert none.item() == 0.0 and none.requires_grad
