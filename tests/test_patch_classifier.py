"""ViT-PCM's shared heads: HV-BiLSTM mixes only along rows (horizontal) and columns (vertical); softmax patches."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.cams.network_params import PatchClassifierParams
from pipeline.cams.patch_classifier import (
    HVBiLSTM,
    PatchClassifier,
    adaptive_k_pool,
    image_bce,
    score_logits,
    step_schedule,
    top_k_pool,
)


def test_hv_bilstm_keeps_the_token_width_and_grid() -> None:
    torch.manual_seed(0)
    assert HVBiLSTM(16).eval()(torch.randn(2, 3, 5, 16)).shape == (2, 3, 5, 16)
    with pytest.raises(ValueError, match="multiple of 4"):
        HVBiLSTM(18)


def test_horizontal_half_mixes_only_within_a_row_and_vertical_half_only_within_a_column() -> None:
    torch.manual_seed(0)
    module = HVBiLSTM(8).eval()
    tokens = torch.randn(1, 4, 5, 8)
    changed = tokens.clone()
    changed[0, 1, 2] += 1.0  # one token: row 1, column 2
    with torch.no_grad():
        difference = (module(changed) - module(tokens)).abs()[0]  # (H, W, C): horizontal half, then vertical
    rows_half, columns_half = difference[..., :4].sum(dim=-1), difference[..., 4:].sum(dim=-1)
    assert torch.nonzero(rows_half > 0)[:, 0].unique().tolist() == [1]  # only row 1 moves
    assert torch.nonzero(columns_half > 0)[:, 1].unique().tolist() == [2]  # only column 2 moves
    # bidirectional: the change reaches every token of its row and of its column, before and after it
    assert bool((rows_half[1] > 0).all()) and bool((columns_half[:, 2] > 0).all())


def test_patch_classifier_is_a_bias_free_softmax_over_classes_and_background() -> None:
    torch.manual_seed(0)
    head = PatchClassifier(8, num_classes=3)
    assert head.linear.bias is None and head.linear.weight.shape == (4, 8)
    tokens = torch.randn(2, 3, 3, 8)
    probabilities = head(tokens)
    assert probabilities.shape == (2, 3, 3, 4)
    assert torch.allclose(probabilities.sum(dim=-1), torch.ones(2, 3, 3))
    expected = torch.softmax(tokens @ head.linear.weight.T, dim=-1)
    assert torch.allclose(probabilities, expected)
    assert torch.allclose(head(torch.zeros(1, 8)), torch.full((1, 4), 0.25))  # no bias: zero tokens are uniform


def test_top_k_pool_is_the_mean_of_the_k_best_patches_per_class() -> None:
    scores = torch.tensor([[[0.9, 0.1], [0.5, 0.2], [0.7, 0.3], [0.1, 0.8]]])  # (1, 4 patches, 2 classes)
    assert torch.allclose(top_k_pool(scores, 2), torch.tensor([[0.8, 0.55]]))
    assert torch.allclose(top_k_pool(scores, 10), scores.mean(dim=1))  # k beyond the patches: all of them


def test_adaptive_k_grows_while_the_mean_stays_within_theta_and_stops_at_the_first_rejection() -> None:
    # class 0 sorted: 1.0, 0.9, 0.85, 0.2, 0.19 → means 1.0, 0.95, 0.9167, 0.7375, 0.628
    #   i=2: 0.95/1.0 > 0.9 accept; i=3: 0.9167/0.95 = 0.965 accept; i=4: 0.7375/0.9167 = 0.80 reject; i=5 too
    # class 1 sorted: 0.8, 0.3, … → i=2: 0.55/0.8 = 0.69 reject → k = 1, the max
    column0 = torch.tensor([0.2, 1.0, 0.85, 0.19, 0.9])
    column1 = torch.tensor([0.3, 0.8, 0.1, 0.05, 0.02])
    scores, k = adaptive_k_pool(torch.stack([column0, column1], dim=1)[None], k_max=6, theta=0.9)
    assert k.tolist() == [[3, 1]]
    assert torch.allclose(scores, torch.tensor([[(1.0 + 0.9 + 0.85) / 3, 0.8]]))


def test_adaptive_k_respects_k_max_and_passes_gradients_to_the_selected_patches_only() -> None:
    scores = torch.full((1, 10, 1), 0.5, requires_grad=True)  # all equal: every step accepted up to k_max
    pooled, k = adaptive_k_pool(scores, k_max=6, theta=0.9)
    assert k.item() == 6 and pooled.item() == pytest.approx(0.5)
    pooled.sum().backward()
    assert (scores.grad > 0).sum().item() == 6


def test_step_schedule_freezes_then_drops_the_rate_after_the_high_epochs() -> None:
    params = PatchClassifierParams(high_lr_epochs=2, later_lr_scale=0.1, training={"epochs": 4, "warmup_fraction": 0})
    heads = step_schedule(params.training, params, steps_per_epoch=3)
    backbone = step_schedule(params.training, params, steps_per_epoch=3, frozen_epochs=1)
    assert [heads(step) for step in range(12)] == [1.0] * 6 + [0.1] * 6
    assert [backbone(step) for step in range(12)] == [0.0] * 3 + [1.0] * 3 + [0.1] * 6
    warm = PatchClassifierParams(training={"epochs": 4, "warmup_fraction": 0.25})
    assert [step_schedule(warm.training, warm, 3)(step) for step in range(4)] == pytest.approx([1 / 3, 2 / 3, 1, 1])


def test_background_is_labelled_present_in_the_image_bce() -> None:
    scores = torch.tensor([[0.9, 0.8, 0.1]])  # background, class 0, class 1
    expected = -(math.log(0.9) + math.log(0.8) + math.log(0.9)) / 3  # targets (1, 1, 0)
    assert image_bce(scores, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(expected)
    assert score_logits(scores)[0].tolist() == pytest.approx([math.log(0.8 / 0.2), math.log(0.1 / 0.9)])
