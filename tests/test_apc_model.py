"""APC's segmentation branch: the patch classifier's own labels (labelled classes only) supervise the decoder."""

from __future__ import annotations

import pytest
import torch

from pipeline.cams.methods.apc.model import Apc, MultiLevelDecoder, patch_labels
from pipeline.cams.methods.apc.params import ApcParams


def test_patch_labels_are_the_labels_extraction_makes_from_z() -> None:
    """Per-channel max normalisation, then the argmax over the background and the labelled classes."""
    # one image, 3 patches; channels: background, class 0
    probabilities = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.55, 0.45]]).T.reshape(1, 2, 1, 3)
    # raw argmax: 0, 0, 0; normalised: background (1, 0.667, 0.611), class 0 (0.222, 0.889, 1)
    assert patch_labels(probabilities, torch.tensor([[1.0]])).tolist() == [[[0, 1, 1]]]


def test_patch_labels_never_take_a_class_the_image_does_not_hold() -> None:
    # channels: background, class 0, class 1; normalised: bg (1, 0.5), c0 (1, 0.5), c1 (0.25, 1)
    probabilities = torch.tensor([[0.4, 0.4, 0.1], [0.2, 0.2, 0.4]]).T.reshape(1, 3, 1, 2)
    assert patch_labels(probabilities, torch.tensor([[1.0, 1.0]])).tolist() == [[[0, 2]]]  # ties: the first
    assert patch_labels(probabilities, torch.tensor([[1.0, 0.0]])).tolist() == [[[0, 0]]]


def test_the_decoder_reads_no_label_on_the_val_split() -> None:
    """Extraction lists every class for a decoder on val: its softmax over all K + 1, not the labelled ones."""
    from pipeline.cams.extract import extraction_classes
    from pipeline.cams.params import CamInferenceParams

    decoder_val = CamInferenceParams(head="decoder", split="val")
    assert extraction_classes((2,), decoder_val, 4) == [0, 1, 2, 3]
    assert extraction_classes((2,), CamInferenceParams(head="decoder"), 4) == [2]  # train: the weak labels
    assert extraction_classes((2,), CamInferenceParams(split="val"), 4) == [2]  # CAMs are per labelled class
    torch.manual_seed(0)
    model = Apc(ApcParams(), 3, pretrained=False).eval()
    images = torch.randn(1, 3, 32, 32)
    _, levels = model.network.backbone.levels(images, model.params.decoder_levels)
    torch.testing.assert_close(model.infer_decoder(images, [0, 1, 2]), model.decoder(levels).softmax(dim=1))


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


def test_only_the_vits_last_blocks_learn_with_trainable_blocks() -> None:
    """ViT-PCM's fine-tuning: the last N blocks (and the final norm) of the ViT, the heads; nothing earlier."""
    torch.manual_seed(0)
    model = Apc(ApcParams(trainable_blocks=1), 3, pretrained=False).train()
    vit = model.network.backbone.vit
    learning = {name for name, p in vit.named_parameters() if p.requires_grad}
    last = len(vit.blocks) - 1
    assert learning == {n for n, _ in vit.named_parameters() if n.startswith((f"blocks.{last}.", "norm."))}
    losses = model.training_step(torch.randn(2, 3, 32, 32), torch.tensor([[1.0, 0, 0], [0, 1, 1]]))
    sum(losses.values()).backward()
    assert vit.blocks[0].attn.qkv.weight.grad is None and vit.blocks[last].attn.qkv.weight.grad is not None
    assert all(p.requires_grad for p in Apc(ApcParams(), 3, pretrained=False).network.backbone.vit.parameters())
