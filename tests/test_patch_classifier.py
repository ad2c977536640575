"""ViT-PCM's shared heads: HV-BiLSTM mixes only along rows (horizontal) and columns (vertical); softmax patches."""

from __future__ import annotations

import pytest
import torch

from pipeline.cams.patch_classifier import HVBiLSTM, PatchClassifier


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
