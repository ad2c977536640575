"""APC: Adaptive Patch Contrast (Wu et al.; ``002_*`` in shared/papers), a single-stage ViT-PCM.

- eq. 1: Z = softmax(F_out W), F_out the HV-BiLSTM's tokens (:mod:`pipeline.cams.patch_classifier`);
- eq. 2 and Algorithm 1, :func:`~pipeline.cams.patch_classifier.adaptive_k_pool`: each class's score is the mean
  of its top-k patches, k grown from 1 up to K = 6 while the mean stays above θ = 0.9 times the selected one;
- eq. 3, :func:`~pipeline.cams.patch_classifier.image_bce`: the multi-label BCE of those scores;
- eq. 4–6, :func:`~pipeline.cams.methods.apc.contrast.patch_contrastive_loss`: high-confidence patches of a
  class (Z > ε) pulled together, pushed from its low-confidence ones (Z < 1 − ε), on F_out;
- the decoder head, :class:`MultiLevelDecoder`, trained with a cross-entropy L_seg against the patch
  classifier's own labels mapped onto the pixels of each patch (:func:`patch_labels`);
- eq. 7: L = L_MCE + λ1 L_seg + λ2 Σ_c L_PCE^c (λ1 = 0.02, λ2 = 0.01).

Where the paper is silent we chose, and say why:

- Decoder: SegFormer's all-MLP head (which "merge multi-level feature maps … through simple MLP layers"
  describes): the outputs of ``decoder_levels`` ViT blocks evenly spaced up to the last, each projected to
  ``decoder_width`` channels by a linear layer, concatenated, fused by a linear layer + BatchNorm + ReLU, and
  classified into the K classes and the background per patch; logits upsampled bilinearly to the pixels.
- L_seg's target: the labels extraction makes from Z (ViT-PCM's pseudo label): each channel of the background
  and the image's labelled classes divided by its max over the image's patches, then the argmax, detached — a
  class the image does not hold is never taught to the decoder, and the decoder learns the labels the pipeline
  evaluates (the raw argmax differs: Z = (0.9, 0.1), (0.6, 0.4), (0.55, 0.45) gives 0, 0, 0 raw but 0, 1, 1
  normalised); each patch's label covers its pixels (nearest upsampling), as the paper says.
- The contrast runs over each image's labelled classes, on ordered pairs; see the contrast module.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.cams.contract import BuildContext
from pipeline.cams.methods.apc.contrast import patch_contrastive_loss
from pipeline.cams.methods.apc.params import ApcParams
from pipeline.cams.patch_classifier import (
    PatchClassifierMethod,
    PatchNetwork,
    adaptive_k_pool,
    background_targets,
    image_bce,
    score_logits,
)
from pipeline.cams.registry import CAM_METHODS


class MultiLevelDecoder(nn.Module):
    """``levels`` (B, D, h, w) maps → (B, K + 1, h, w) logits: per-level linear projections, concatenation,
    a fusing linear layer with BatchNorm and ReLU, a linear classifier."""

    def __init__(self, channels: int, levels: int, width: int, num_classes: int) -> None:
        super().__init__()
        self.project = nn.ModuleList(nn.Conv2d(channels, width, kernel_size=1) for _ in range(levels))
        self.fuse = nn.Sequential(nn.Conv2d(width * levels, width, kernel_size=1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU())  # fmt: skip
        self.classify = nn.Conv2d(width, num_classes + 1, kernel_size=1)

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        return self.classify(self.fuse(torch.cat([p(x) for p, x in zip(self.project, levels, strict=True)], 1)))


def patch_labels(probabilities: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B, K + 1, h, w) Z and (B, K) image labels → (B, h, w) argmax over the background and labelled classes of
    Z with each channel divided by its max over the image (the per-channel normalisation extraction applies)."""
    allowed = background_targets(targets).bool()[:, :, None, None]
    normalised = probabilities / probabilities.amax(dim=(2, 3), keepdim=True).clamp(min=1e-12)
    return normalised.masked_fill(~allowed, -1.0).argmax(dim=1)


@CAM_METHODS.register("apc")
class Apc(PatchClassifierMethod):
    """ViT → HV-BiLSTM → softmax patch classifier → adaptive-K pooling, with patch contrast and a decoder."""

    params_model = ApcParams

    def __init__(self, params: ApcParams, num_classes: int, pretrained: bool) -> None:
        super().__init__()
        self.params = params
        self.network = PatchNetwork(params, num_classes, pretrained)
        depth = len(self.network.backbone.vit.blocks)
        if params.decoder_levels > depth:
            raise ValueError(f"apc: decoder_levels {params.decoder_levels} > the ViT's {depth} blocks")
        self.decoder = MultiLevelDecoder(self.network.backbone.channels, params.decoder_levels,
                                         params.decoder_width, num_classes)  # fmt: skip
        self.adopt_backbone()

    @classmethod
    def build(cls, params: ApcParams, context: BuildContext) -> Apc:
        return cls(params, len(context.class_names), context.pretrained)

    def _forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """(F_out (B, h, w, C), Z (B, h, w, K + 1), the decoder's level maps)."""
        final, levels = self.network.backbone.levels(images, self.params.decoder_levels)
        refined, probabilities = self.network.classify(final.permute(0, 2, 3, 1))
        return refined, probabilities, levels

    def training_step(self, images: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        params = self.params
        refined, probabilities, levels = self._forward(images)
        flat = probabilities.flatten(1, 2)
        scores, _ = adaptive_k_pool(flat, params.top_k, params.theta)
        contrast = patch_contrastive_loss(refined.flatten(1, 2), flat[..., 1:], targets, params.epsilon)
        labels = patch_labels(probabilities.detach().permute(0, 3, 1, 2), targets)
        pixels = images.shape[-2:]
        logits = F.interpolate(self.decoder(levels), size=pixels, mode="bilinear", align_corners=False)
        pixel_labels = F.interpolate(labels[:, None].float(), size=pixels, mode="nearest")[:, 0].long()
        return {
            "classification": image_bce(scores, targets),
            "segmentation": params.seg_weight * F.cross_entropy(logits, pixel_labels),
            "contrast": params.contrast_weight * contrast,
        }

    def image_scores(self, images: torch.Tensor) -> torch.Tensor:
        """Adaptive-K scores (eq. 2) of the K classes, as logits."""
        probabilities = self.network.classify(self.network.tokens(images))[1]
        return score_logits(adaptive_k_pool(probabilities.flatten(1, 2), self.params.top_k, self.params.theta)[0])

    @torch.no_grad()
    def infer_decoder(self, images: torch.Tensor, classes: list[int]) -> torch.Tensor:
        """The decoder's softmax over the background and the listed classes (B, 1 + k, h, w): APC's own
        single-stage labels are its argmax (``seeds.threshold.background: model``). Listing every class is the
        label-free path (the softmax over all K + 1): extraction takes it on the val split
        (:func:`pipeline.cams.extract.extraction_classes`)."""
        _, levels = self.network.backbone.levels(images, self.params.decoder_levels)
        logits = self.decoder(levels)[:, [0, *(c + 1 for c in classes)]]
        return logits.softmax(dim=1)

    def patch_probabilities(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.network.classify(self.network.tokens(images))[1].permute(0, 3, 1, 2)
