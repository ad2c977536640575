"""ViT-PCM's network, shared by APC and PCC: ViT patch tokens → HV-BiLSTM → softmax patch classifier → pooling.

ViT-PCM (deepplants/ViT-PCM; implementation notes, "ViT-PCM"): dropout 0.2 on the tokens, then a horizontal
bidirectional LSTM along each row and a vertical one along each column, run side by side on the same input; each
has ``width / 4`` hidden units per direction, so the two outputs concatenated are ``width`` wide again. The patch
classifier is a bias-free linear layer (weights drawn from N(0, 0.05)) followed by a softmax over the K classes
and the background, per patch.

Choices shared by both methods (neither paper says):

- The image-level BCE (APC eq. 3, PCC eq. 4) runs over the K classes and the background, whose label is 1 for
  every image, as in ViT-PCM: background is present in (nearly) every VOC and COCO image, and without a target
  the background channel would be free to swallow objects.
- The CAMs handed to extraction are the patch probabilities Z of the background and the listed classes;
  extraction applies its ReLU (a no-op here) and per-channel max normalisation, as ViT-PCM's pseudo labels
  divide each class by its max, and the CAM store keeps the background map (``seeds.threshold.background:
  model`` takes the argmax over it and the classes: ViT-PCM's pseudo labels).
- Learning rates: :func:`step_schedule` (params: :class:`~pipeline.cams.network_params.PatchClassifierParams`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.backbones import ViTFeatures
from pipeline.cams.contract import CamModel
from pipeline.cams.network_params import CamTrainingParams, PatchClassifierParams

PROBABILITY_FLOOR = 1e-6  # probabilities are clamped to [floor, 1 − floor] before a log or a logit


class HVBiLSTM(nn.Module):
    """(B, H, W, C) tokens → (B, H, W, C): [horizontal BiLSTM along rows ‖ vertical BiLSTM along columns]."""

    def __init__(self, width: int, dropout: float = 0.2) -> None:
        super().__init__()
        if width % 4:
            raise ValueError(f"HV-BiLSTM: token width {width} must be a multiple of 4 (width / 4 per direction)")
        self.dropout = nn.Dropout(dropout)
        self.horizontal = nn.LSTM(width, width // 4, batch_first=True, bidirectional=True)
        self.vertical = nn.LSTM(width, width // 4, batch_first=True, bidirectional=True)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b, h, w, c = tokens.shape
        tokens = self.dropout(tokens)
        rows, _ = self.horizontal(tokens.reshape(b * h, w, c))  # each row is a sequence over its columns
        columns, _ = self.vertical(tokens.transpose(1, 2).reshape(b * w, h, c))  # each column over its rows
        rows = rows.reshape(b, h, w, c // 2)
        columns = columns.reshape(b, w, h, c // 2).transpose(1, 2)
        return torch.cat([rows, columns], dim=-1)


class PatchClassifier(nn.Module):
    """(…, C) tokens → (…, K + 1) softmax probabilities; channel 0 is the background."""

    def __init__(self, width: int, num_classes: int, init_std: float = 0.05) -> None:
        super().__init__()
        self.linear = nn.Linear(width, num_classes + 1, bias=False)
        nn.init.normal_(self.linear.weight, std=init_std)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.linear(tokens).softmax(dim=-1)


def top_k_pool(probabilities: torch.Tensor, k: int) -> torch.Tensor:
    """PCC eq. 3: (B, N, C) patch probabilities → (B, C), the mean of each class's ``k`` highest patches."""
    k = min(k, probabilities.shape[1])
    return probabilities.topk(k, dim=1).values.mean(dim=1)


def adaptive_k_pool(
    probabilities: torch.Tensor, k_max: int = 6, theta: float = 0.9
) -> tuple[torch.Tensor, torch.Tensor]:
    """APC eq. 2 with Algorithm 1: (B, N, C) → (image scores (B, C), chosen k (B, C)).

    Per class, the patches are sorted by score; starting from the top-1 set, the top-i set (i = 2 … ``k_max``)
    replaces the selected set when mean(top-i) / mean(selected) > θ; the score is the selected set's mean.
    Algorithm 1 does not say whether to stop at the first rejection: it need not, because mean(top-i) never
    grows with i while the selected mean stays fixed, so after one rejection every later i is rejected too —
    stopping and continuing give the same k (tested).
    """
    k_max = min(k_max, probabilities.shape[1])
    top = probabilities.topk(k_max, dim=1).values  # (B, k_max, C), descending
    means = top.cumsum(dim=1) / torch.arange(1, k_max + 1, device=top.device).view(1, -1, 1)
    selected, chosen = means[:, 0], torch.ones_like(means[:, 0], dtype=torch.long)
    for i in range(1, k_max):
        accept = means[:, i] > theta * selected  # the ratio test, without dividing by a possible zero
        selected = torch.where(accept, means[:, i], selected)
        chosen = torch.where(accept, torch.full_like(chosen, i + 1), chosen)
    return selected, chosen


def background_targets(targets: torch.Tensor) -> torch.Tensor:
    """(B, K) image labels → (B, K + 1) with the background label 1 in front (channel 0, as the classifier's)."""
    return torch.cat([torch.ones_like(targets[:, :1]), targets], dim=1)


def image_bce(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """APC eq. 3 / PCC eq. 4: 1/|C| Σ_c BCE(t_c, y_c) over the classes and the background, batch-averaged;
    ``scores`` (B, K + 1) pooled probabilities, ``targets`` (B, K) image labels."""
    scores = scores.clamp(PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    return F.binary_cross_entropy(scores, background_targets(targets).to(scores.dtype))


def score_logits(scores: torch.Tensor) -> torch.Tensor:
    """Pooled probabilities of the K classes (B, K + 1) → logits (B, K), what the label metrics read."""
    return torch.logit(scores[:, 1:].clamp(PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR))


def step_schedule(
    training: CamTrainingParams, params: PatchClassifierParams, steps_per_epoch: int, frozen_epochs: int = 0
) -> Callable[[int], float]:  # fmt: skip
    """Factor on a group's rate: 0 for ``frozen_epochs``, then 1 until epoch ``high_lr_epochs``, then
    ``later_lr_scale``; times a linear warm-up over ``warmup_fraction`` of all steps."""
    warmup_steps = round(training.epochs * steps_per_epoch * training.warmup_fraction)

    def factor(step: int) -> float:
        epoch = step // steps_per_epoch
        if epoch < frozen_epochs:
            return 0.0
        level = 1.0 if epoch < params.high_lr_epochs else params.later_lr_scale
        return level * min(1.0, (step + 1) / warmup_steps) if warmup_steps else level

    return factor


class PatchNetwork(nn.Module):
    """A timm ViT's patch tokens, optionally widened by ``extra_width`` per-image channels (PCC's cluster
    token), through the HV-BiLSTM and the patch classifier."""

    def __init__(self, params: PatchClassifierParams, num_classes: int, pretrained: bool, extra_width: int = 0):
        super().__init__()
        self.backbone = ViTFeatures(params.vit, params.training.crop_size, pretrained)
        width = self.backbone.channels + extra_width
        self.lstm = HVBiLSTM(width, params.lstm_dropout)
        self.classifier = PatchClassifier(width, num_classes, params.classifier_init_std)

    def tokens(self, images: torch.Tensor) -> torch.Tensor:
        """The ViT's patch tokens as a (B, h, w, D) grid."""
        return self.backbone(images).permute(0, 2, 3, 1)

    def classify(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, h, w, C) tokens → (refined tokens F_out (B, h, w, C), probabilities Z (B, h, w, K + 1))."""
        refined = self.lstm(tokens)
        return refined, self.classifier(refined)


def freeze_early_blocks(vit: nn.Module, trainable: int | None) -> None:
    """Only the last ``trainable`` blocks of a timm ViT and its final norm keep ``requires_grad`` (None: all)."""
    if trainable is None:
        return
    kept = [*vit.blocks[max(0, len(vit.blocks) - trainable) :], vit.norm]
    learning = {id(p) for module in kept for p in module.parameters()}
    for parameter in vit.parameters():
        parameter.requires_grad_(id(parameter) in learning)


class PatchClassifierMethod(CamModel):
    """What APC and PCC share as CAM methods: the ViT's normalisation and patch size, the step schedule, and
    CAMs from the patch probabilities. Subclasses set ``self.network`` (a :class:`PatchNetwork`) and
    ``self.params`` and implement ``patch_probabilities(images, labels)``."""

    network: PatchNetwork
    params: PatchClassifierParams
    has_background = True

    def adopt_backbone(self) -> None:
        backbone = self.network.backbone
        self.size_multiple, self.input_mean, self.input_std = backbone.size_multiple, backbone.mean, backbone.std
        freeze_early_blocks(backbone.vit, self.params.trainable_blocks)
        self.square_inputs = self.params.square_inputs

    def lr_schedule(self, group: str, training: CamTrainingParams, steps_per_epoch: int) -> Callable[[int], float]:
        frozen = self.params.frozen_backbone_epochs if group == "backbone" else 0
        return step_schedule(training, self.params, steps_per_epoch, frozen)

    def patch_probabilities(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B, K + 1, h, w) patch probabilities Z of images whose labels (B, K) are known."""
        raise NotImplementedError

    @torch.no_grad()
    def infer_cams(self, images: torch.Tensor, classes: list[int]) -> torch.Tensor:
        """Z of the background and the listed classes (B, 1 + k, h, w)."""
        labels = torch.zeros(len(images), self.network.classifier.linear.out_features - 1, device=images.device)
        labels[:, classes] = 1
        return self.patch_probabilities(images, labels)[:, [0, *(c + 1 for c in classes)]]
