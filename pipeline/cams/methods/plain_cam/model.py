"""Plain CAM: a GAP multi-label classifier (eq. 1–2 of the POLE paper; eq. 3 of USAGE), ResNet or ViT.

The classifier is f_θ (a backbone) → GAP → 1×1 convolution W; it is trained with the multi-label soft-margin
loss (eq. 1) and its CAM for class k is P_k(h, w) = W_kᵀ Z(h, w) (eq. 2). On a ViT, Z is the patch tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.cams.contract import BuildContext, CamModel
from pipeline.cams.methods.plain_cam.params import PlainCamParams
from pipeline.cams.network import ActivationNetwork
from pipeline.cams.registry import CAM_METHODS


def multilabel_soft_margin_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Eq. 1 of the POLE paper: −1/K Σ_k [y_k log σ(s_k) + (1 − y_k) log(1 − σ(s_k))], batch-averaged."""
    return F.multilabel_soft_margin_loss(logits, targets)


@CAM_METHODS.register("cam")
class PlainCam(CamModel):
    """Image score s_k = mean over locations of the CAM (GAP and W commute); CAM = W on the feature map."""

    params_model = PlainCamParams

    def __init__(self, params: PlainCamParams, num_classes: int, pretrained: bool) -> None:
        super().__init__()
        self.network = ActivationNetwork(params, num_classes, pretrained)
        backbone = self.network.backbone
        self.size_multiple, self.input_mean, self.input_std = backbone.size_multiple, backbone.mean, backbone.std

    @classmethod
    def build(cls, params: PlainCamParams, context: BuildContext) -> PlainCam:
        return cls(params, len(context.class_names), context.pretrained)

    def image_scores(self, images: torch.Tensor) -> torch.Tensor:
        """Eq. 3 (USAGE): s^c = 1/N Σ_ij W_cᵀ A_ij, the GAP logits."""
        return self.network.activations(images).mean(dim=(2, 3))

    def training_step(self, images: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"classification": multilabel_soft_margin_loss(self.image_scores(images), targets)}

    @torch.no_grad()
    def infer_cams(self, images: torch.Tensor, classes: list[int]) -> torch.Tensor:
        """Eq. 2: P_k(h, w) = W_kᵀ Z(h, w) for the listed classes."""
        return self.network.activations(images)[:, classes]
