"""Segmentation networks: DeepLabV3+ (segmentation-models-pytorch) and DeepLabV3 (torchvision).

- ``deeplabv3plus``: ``smp.DeepLabV3Plus`` with any smp encoder (``resnet18`` … ``resnet101``); FMA-WSSS trains
  DeepLabV3+ on its seeds. ImageNet encoder weights come only from the local Hugging Face cache
  (``HF_HUB_OFFLINE=1``; nothing is downloaded).
- ``deeplabv3``: torchvision's DeepLabV3 head (ASPP) on the torchvision ResNets of ``pipeline.backbones``
  (``resnet10`` … ``resnet101``), output stride by removing the last strides as the CAM classifier does.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.segmentation.deeplabv3 import DeepLabHead

from pipeline.backbones import ARCHS, resnet_trunk
from pipeline.params import SegmenterParams
from pipeline.segmentation import SEGMENTERS


def smp_encoder_weights_file(encoder: str) -> Path | None:
    """The local Hugging Face file of an smp encoder's ImageNet weights (what smp loads), if cached."""
    from huggingface_hub import try_to_load_from_cache
    from segmentation_models_pytorch.encoders import encoders

    settings = encoders.get(encoder, {}).get("pretrained_settings", {}).get("imagenet")
    if settings is None:
        return None
    found = try_to_load_from_cache(settings["repo_id"], "model.safetensors", revision=settings["revision"])
    return Path(found) if isinstance(found, str) else None


@SEGMENTERS.register("deeplabv3plus")
def deeplabv3plus(params: SegmenterParams, num_classes: int) -> nn.Module:
    """smp DeepLabV3+ (logits at the input resolution); sides must be multiples of the encoder's output stride."""
    import segmentation_models_pytorch as smp

    weights = "imagenet" if params.weights == "imagenet" else None
    try:
        model = smp.DeepLabV3Plus(
            encoder_name=params.encoder, encoder_weights=weights, encoder_output_stride=params.output_stride,
            classes=num_classes,
        )  # fmt: skip
    except KeyError as error:
        raise ValueError(f"unknown smp encoder '{params.encoder}' for deeplabv3plus ({error})") from None
    except Exception as error:  # smp raises library-specific errors when a weight file is not cached
        if weights is None:
            raise
        raise FileNotFoundError(
            f"ImageNet weights for smp encoder '{params.encoder}' are not in the local cache and nothing is "
            f"downloaded at run time ({type(error).__name__}: {error}); copy them into the Hugging Face cache "
            f"or use segmenter.weights: none"
        ) from None
    model.size_multiple = model.encoder.output_stride  # smp refuses other sides; inference pads to it
    return model


class ResNetDeepLabV3(nn.Module):
    """torchvision ResNet trunk → DeepLabV3 head (ASPP), upsampled to the input size."""

    def __init__(self, arch: str, num_classes: int, output_stride: int, weights: str) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown encoder '{arch}' for deeplabv3; known: {', '.join(ARCHS)}")
        self.trunk, channels = resnet_trunk(arch, weights, 8 if output_stride <= 8 else 16)
        self.head = DeepLabHead(channels, num_classes)
        self.size_multiple = 8 if output_stride <= 8 else 16  # layer4 (and layer3 at 8) run at stride 1

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.trunk(images))
        return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)


@SEGMENTERS.register("deeplabv3")
def deeplabv3(params: SegmenterParams, num_classes: int) -> nn.Module:
    """torchvision DeepLabV3 head on a torchvision ResNet."""
    return ResNetDeepLabV3(params.encoder, num_classes, params.output_stride, params.weights)
