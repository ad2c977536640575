"""Plain CAM: a GAP multi-label classifier on a torchvision ResNet (eq. 1–2 of the POLE paper).

The classifier is f_θ (a ResNet trunk) → GAP → 1×1 convolution W; it is trained with the multi-label
soft-margin loss (eq. 1) and its CAM for class k is P_k(h, w) = W_kᵀ Z(h, w) (eq. 2).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models import resnet

from pipeline.methods import CAM_METHODS
from pipeline.params import PlainCamParams

ARCHS = {
    "resnet10": (resnet.BasicBlock, [1, 1, 1, 1], None),
    "resnet18": (resnet.BasicBlock, [2, 2, 2, 2], torchvision.models.ResNet18_Weights.IMAGENET1K_V1),
    "resnet34": (resnet.BasicBlock, [3, 4, 6, 3], torchvision.models.ResNet34_Weights.IMAGENET1K_V1),
    "resnet50": (resnet.Bottleneck, [3, 4, 6, 3], torchvision.models.ResNet50_Weights.IMAGENET1K_V1),
    "resnet101": (resnet.Bottleneck, [3, 4, 23, 3], torchvision.models.ResNet101_Weights.IMAGENET1K_V1),
}


def multilabel_soft_margin_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Eq. 1 of the POLE paper: −1/K Σ_k [y_k log σ(s_k) + (1 − y_k) log(1 − σ(s_k))], batch-averaged."""
    return F.multilabel_soft_margin_loss(logits, targets)


def imagenet_state_dict(arch: str) -> dict[str, torch.Tensor]:
    """ImageNet weights from the local torch hub cache; never downloads."""
    weights = ARCHS[arch][2]
    if weights is None:
        raise FileNotFoundError(f"no ImageNet weights exist for '{arch}'; use weights: none")
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not path.is_file():
        raise FileNotFoundError(
            f"ImageNet weights for '{arch}' not found at {path}; nothing is downloaded at run time — copy "
            f"{Path(weights.url).name} there (or set TORCH_HOME) or use weights: none"
        )
    return torch.load(path, map_location="cpu", weights_only=True)


def _stride_one(layer: nn.Sequential) -> None:
    """Remove the down-sampling of a ResNet stage (IRN's strides (2, 2, 2, 1)), no dilation."""
    block = layer[0]
    conv = block.conv2 if isinstance(block, resnet.Bottleneck) else block.conv1
    conv.stride = (1, 1)
    if block.downsample is not None:
        block.downsample[0].stride = (1, 1)


class GapClassifier(nn.Module):
    """ResNet trunk → GAP → 1×1 conv; ``cam`` gives the class activation maps of eq. 2."""

    def __init__(self, arch: str, num_classes: int, output_stride: int = 16, weights: str = "none") -> None:
        super().__init__()
        block, layers, _ = ARCHS[arch]
        net = resnet.ResNet(block, layers)
        if weights == "imagenet":
            net.load_state_dict(imagenet_state_dict(arch))
        if output_stride <= 16:
            _stride_one(net.layer4)
        if output_stride <= 8:
            _stride_one(net.layer3)
        self.trunk = nn.Sequential(
            net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4
        )
        self.classifier = nn.Conv2d(net.fc.in_features, num_classes, kernel_size=1, bias=False)
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
