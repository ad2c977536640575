"""APC's segmentation branch: the patch classifier's own labels (labelled classes only) supervise the decoder."""

from __future__ import annotations

import pytest
import torch

from pipeline.cams.methods.apc.model import Apc, MultiLevelDecoder, patch_labels
from pipeline.cams.methods.apc.params import ApcParams


def test_patch_labels_take_the_argmax_over_background_and_the_labelled_classes() -> None:
    # one image, 2 patches; channels: background, class 0, class 1
    probabilities = torch.tensor([[0.2, 0.7, 0.1], [0.3, 0.3, 0.4]]).T.reshape(1, 3, 1, 2)
    assert patch_labels(probabilities, torch.tensor([[1.0, 1.0]])).tolist() == [[[1, 2]]]
    # class 1 not in the image: the second patch falls to the background (0.3 ≥ 0.3, first wins), never to 1
    assert patch_labels(probabilities, torch.tensor([[1.0, 0.0]])).tolist() == [[[1, 0]]]


def test_decoder_fuses_levels_into_class_and_background_logits_per_patch() -> None:
    decoder = MultiLevelDecoder(channels=8, levels=3, width=4, num_classes=5)
    assert decoder([torch.randn(2, 8, 3, 4) for _ in range(3)]).shape == (2, 6, 3, 4)


def test_training_step_returns_the_three_weighted_terms_of_eq_7() -> None:
    images, targets = torch.randn(2, 3, 32, 32), torch.tensor([[1.0, 0, 0], [0, 1, 1]])

    def losses(seg_weight: float, contrast_weight: float) -> dict[str, float]:
        torch.manual_seed(0)  # the same weights for both models; eval mode: no dropout
        model = Apc(ApcParams(seg_weight=seg_weight, contrast_weight=contrast_weight), 3, pretrained=False).eval()
        return {name: value.item() for name, value in model.training_step(images, targets).items()}

    unit, weighted = losses(1.0, 1.0), losses(0.02, 0.01)
    assert set(unit) == {"classification", "segmentation", "contrast"}
    assert weighted["classification"] == pytest.approx(unit["classification"])
    assert weighted["segmentation"] == pytest.approx(0.02 * unit["segmentation"])
    assert weighted["contrast"] == pytest.approx(0.01 * unit["contrast"])
    assert unit["segmentation"] > 0
