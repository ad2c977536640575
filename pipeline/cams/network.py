"""Backbone + bias-free 1×1 classifier: the class activations W_cᵀ A(i, j) every CAM method here starts from."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.backbones import feature_backbone
from pipeline.cams.network_params import BackboneChoice


class ActivationNetwork(nn.Module):
    """``activations(images)``: (B, K, h, w) = Σ_d w_d^c A_ij^d, the CAM of eq. 2 (POLE) before any ReLU."""

    def __init__(self, choice: BackboneChoice, num_classes: int, pretrained: bool) -> None:
        super().__init__()
        self.backbone = feature_backbone(choice, pretrained)
        self.classifier = nn.Conv2d(self.backbone.channels, num_classes, kernel_size=1, bias=False)

    def activations(self, images: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self.backbone(images), self.classifier.weight)
