"""Backbones shared by the CAM methods and the segmentation networks (torchvision ResNets).

``resnet_trunk`` builds a ResNet without its pooling and classifier, at output stride 32, 16 or 8 by removing
the down-sampling of the last stages (IRN's strides (2, 2, 2, 1) at 16), without dilation. ImageNet weights
come only from the local torch hub cache: nothing is downloaded at run time.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.models import resnet

ARCHS = {
    "resnet10": (resnet.BasicBlock, [1, 1, 1, 1], None),
    "resnet18": (resnet.BasicBlock, [2, 2, 2, 2], torchvision.models.ResNet18_Weights.IMAGENET1K_V1),
    "resnet34": (resnet.BasicBlock, [3, 4, 6, 3], torchvision.models.ResNet34_Weights.IMAGENET1K_V1),
    "resnet50": (resnet.Bottleneck, [3, 4, 6, 3], torchvision.models.ResNet50_Weights.IMAGENET1K_V1),
    "resnet101": (resnet.Bottleneck, [3, 4, 23, 3], torchvision.models.ResNet101_Weights.IMAGENET1K_V1),
}


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


def stride_one(layer: nn.Sequential) -> None:
    """Remove the down-sampling of a ResNet stage (no dilation)."""
    block = layer[0]
    conv = block.conv2 if isinstance(block, resnet.Bottleneck) else block.conv1
    conv.stride = (1, 1)
    if block.downsample is not None:
        block.downsample[0].stride = (1, 1)


def resnet_trunk(arch: str, weights: str = "none", output_stride: int = 16) -> tuple[nn.Sequential, int]:
    """(conv1 … layer4 as one Sequential, its output channels) of a torchvision ResNet at ``output_stride``."""
    if arch not in ARCHS:
        raise ValueError(f"unknown ResNet '{arch}'; known: {', '.join(ARCHS)}")
    block, layers, _ = ARCHS[arch]
    net = resnet.ResNet(block, layers)
    if weights == "imagenet":
        net.load_state_dict(imagenet_state_dict(arch))
    if output_stride <= 16:
        stride_one(net.layer4)
    if output_stride <= 8:
        stride_one(net.layer3)
    trunk = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4)
    return trunk, net.fc.in_features
