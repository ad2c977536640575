"""Plain CAM: a GAP multi-label classifier on a torchvision ResNet (eq. 1–2 of the POLE paper).

The classifier is f_θ (a ResNet trunk) → GAP → 1×1 convolution W; it is trained with the multi-label
soft-margin loss (eq. 1) and its CAM for class k is P_k(h, w) = W_kᵀ Z(h, w) (eq. 2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.backbones import resnet_trunk
from pipeline.methods import CAM_METHODS
from pipeline.params import PlainCamParams


def multilabel_soft_margin_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Eq. 1 of the POLE paper: −1/K Σ_k [y_k log σ(s_k) + (1 − y_k) log(1 − σ(s_k))], batch-averaged."""
    return F.multilabel_soft_margin_loss(logits, targets)


class GapClassifier(nn.Module):
    """ResNet trunk → GAP → 1×1 conv; ``cam`` gives the class activation maps of eq. 2."""

    def __init__(self, arch: str, num_classes: int, output_stride: int = 16, weights: str = "none") -> None:
        super().__init__()
        self.trunk, channels = resnet_trunk(arch, weights, output_stride)
        self.classifier = nn.Conv2d(channels, num_classes, kernel_size=1, bias=False)
        self.size_multiple = output_stride  # inputs are padded to it at inference (pipeline/tta.py)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Image-level logits: W applied to the GAP of Z."""
        features = self.trunk(images).mean(dim=(2, 3), keepdim=True)
        return self.classifier(features).flatten(1)

    def cam(self, images: torch.Tensor) -> torch.Tensor:
        """Eq. 2: P_k(h, w) = W_kᵀ Z(h, w), shape (B, K, h, w), before ReLU."""
        return F.conv2d(self.trunk(images), self.classifier.weight)


@CAM_METHODS.register("cam")
class PlainCam:
    """The plain-CAM baseline: train a GAP classifier, CAM = classifier weights on the feature map."""

    params_model = PlainCamParams

    @staticmethod
    def build(params: PlainCamParams, num_classes: int) -> GapClassifier:
        return GapClassifier(params.arch, num_classes, params.output_stride, params.weights)

    @staticmethod
    def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return multilabel_soft_margin_loss(logits, targets)
