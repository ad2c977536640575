"""Backbones shared by the CAM methods and the segmentation networks: torchvision ResNets and timm ViTs.

``resnet_trunk`` builds a ResNet without its pooling and classifier, at output stride 32, 16 or 8 by removing
the down-sampling of the last stages (IRN's strides (2, 2, 2, 1) at 16), without dilation. ImageNet weights
come only from the local torch hub cache: nothing is downloaded at run time.

:func:`feature_backbone` gives a CAM method its feature map A (B, D, h, w) from either family, with the input
normalisation it expects, the side multiple its inputs need, and adjustable drop-path and dropout rates
(USAGE's network adjustment): stochastic depth on every residual branch, its rate rising linearly with depth
(timm's rule), and element-wise dropout (the ViT's own dropout layers; on the ResNet's feature map).
"""

from __future__ import annotations

import pickle
import zipfile
from functools import partial
from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet
from torchvision.ops import StochasticDepth

from pipeline.cams.network_params import BackboneChoice, ResNetBackboneParams, ViTBackboneParams
from pipeline.data.loading import IMAGENET_MEAN, IMAGENET_STD
from pipeline.io import one_line

ARCHS = {
    "resnet10": (resnet.BasicBlock, [1, 1, 1, 1]),
    "resnet18": (resnet.BasicBlock, [2, 2, 2, 2]),
    "resnet34": (resnet.BasicBlock, [3, 4, 6, 3]),
    "resnet50": (resnet.Bottleneck, [3, 4, 6, 3]),
    "resnet101": (resnet.Bottleneck, [3, 4, 23, 3]),
}
# torchvision's ImageNet files (torch hub cache), by ``weights`` setting, in the order looked for. ``imagenet``
# is V1, what IRN, CLIMS and the papers used: torchvision's current name for it, then the name of torchvision <
# 0.13 that IRN's README links (resnet50-19c8e357.pth), the same weights. ``imagenet_v2``: torchvision's V2
# recipe (80.9 % top-1 for ResNet-50), not what the papers used.
IMAGENET_FILES = {
    "resnet18": {"imagenet": ("resnet18-f37072fd.pth", "resnet18-5c106cde.pth")},
    "resnet34": {"imagenet": ("resnet34-b627a593.pth", "resnet34-333f7ec4.pth")},
    "resnet50": {"imagenet": ("resnet50-0676ba61.pth", "resnet50-19c8e357.pth"),
                 "imagenet_v2": ("resnet50-11ad3fa6.pth",)},
    "resnet101": {"imagenet": ("resnet101-63fe2227.pth", "resnet101-5d3b4d8f.pth"),
                  "imagenet_v2": ("resnet101-cd907fc2.pth",)},
}  # fmt: skip


def imagenet_weights_file(arch: str, weights: str = "imagenet") -> Path:
    """Where ``arch``'s ImageNet weights (``imagenet``: V1, ``imagenet_v2``) are in the torch hub cache
    (``TORCH_HOME``): the first of their file names present, else the first name (to be reported missing)."""
    names = IMAGENET_FILES.get(arch, {}).get(weights)
    if not names:
        raise FileNotFoundError(f"torchvision has no {weights} weights for '{arch}'; use weights: none")
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    return next((folder / name for name in names if (folder / name).is_file()), folder / names[0])


def imagenet_state_dict(arch: str, weights: str = "imagenet") -> dict[str, torch.Tensor]:
    """ImageNet weights from the local torch hub cache (``weights_only``); never downloads."""
    path = imagenet_weights_file(arch, weights)
    if not path.is_file():
        names = " or ".join(IMAGENET_FILES[arch][weights])
        raise FileNotFoundError(
            f"ImageNet weights ({weights}) for '{arch}' not found in {path.parent}; nothing is downloaded at run "
            f"time — copy {names} there (or set TORCH_HOME) or use weights: none"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        raise ValueError(f"{path}: not a torchvision state dict ({one_line(error)})") from None


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
    block, layers = ARCHS[arch]
    net = resnet.ResNet(block, layers)
    if weights != "none":
        try:
            net.load_state_dict(imagenet_state_dict(arch, weights))
        except RuntimeError as error:
            raise ValueError(f"{imagenet_weights_file(arch, weights)}: does not fit torchvision's {arch} "
                             f"({one_line(error)})") from None  # fmt: skip
    if output_stride <= 16:
        stride_one(net.layer4)
    if output_stride <= 8:
        stride_one(net.layer3)
    trunk = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4)
    return trunk, net.fc.in_features


class FeatureBackbone(nn.Module):
    """A feature extractor for CAM methods: ``forward`` gives (B, ``channels``, h, w)."""

    channels: int
    size_multiple: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def drop_paths(self) -> list[StochasticDepth]:
        """The stochastic-depth modules, shallowest first."""
        return [m for m in self.modules() if isinstance(m, StochasticDepth)]

    def drop_path_blocks(self) -> list[list[StochasticDepth]]:
        """The stochastic-depth modules grouped by the block they share a rate in (a ResNet block has one)."""
        return [[module] for module in self.drop_paths()]

    def dropouts(self) -> list[nn.Dropout]:
        return [m for m in self.modules() if isinstance(m, nn.Dropout)]

    def set_adjustment(self, drop_path: float, dropout: float) -> None:
        """Set the drop-path rate (the deepest block's; shallower blocks scale linearly down to 0, timm's
        ``linspace(0, rate, depth)``, both sub-layers of a ViT block at their block's rate) and dropout rate."""
        blocks = self.drop_path_blocks()
        for depth, block in enumerate(blocks):
            for module in block:
                module.p = drop_path * depth / max(1, len(blocks) - 1)
        for module in self.dropouts():
            module.p = dropout


def _drop_residual(drop: StochasticDepth, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
    return drop(output)


class ResNetFeatures(FeatureBackbone):
    """A torchvision ResNet trunk; drop-path drops each block's residual branch (after its last BatchNorm)."""

    def __init__(self, params: ResNetBackboneParams, pretrained: bool) -> None:
        super().__init__()
        self.trunk, self.channels = resnet_trunk(params.arch, params.weights if pretrained else "none",
                                                 params.output_stride)  # fmt: skip
        self.size_multiple = params.output_stride
        self.arch, self.output_stride = params.arch, params.output_stride  # to rebuild the trunk (IRN)
        blocks = [block for stage in list(self.trunk)[4:] for block in stage]
        for block in blocks:
            block.drop_path = StochasticDepth(0.0, "row")
            last_norm = block.bn3 if isinstance(block, resnet.Bottleneck) else block.bn2
            last_norm.register_forward_hook(partial(_drop_residual, block.drop_path))
        self.dropout = nn.Dropout(0.0)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.trunk(images))


class ViTFeatures(FeatureBackbone):
    """A timm ViT (DeiT-style); the patch tokens after the final norm, as a (B, D, H/p, W/p) map."""

    def __init__(self, params: ViTBackboneParams, img_size: int, pretrained: bool) -> None:
        super().__init__()
        import timm

        shape = {k: getattr(params, k) for k in ("patch_size", "embed_dim", "depth", "num_heads")}
        options = dict(num_classes=0, dynamic_img_size=True, img_size=img_size,
                       **{k: v for k, v in shape.items() if v is not None})  # fmt: skip
        if not timm.is_model(params.model):
            raise ValueError(f"unknown timm model '{params.model}'")
        load = pretrained and params.weights == "imagenet"
        weights = local_vit_weights(params) if load else None
        if weights is not None and is_npz(weights):  # Google's JAX release (ViT-PCM's ImageNet-21k ViT-B/16)
            self.vit = timm.create_model(params.model, pretrained=False, **options)
            self.vit.load_pretrained(str(weights))  # timm's converter; numpy reads it without pickle
        else:  # timm's own files: .safetensors, or .pth / .bin read with weights_only
            overlay = {"pretrained_cfg_overlay": {"file": str(weights)}} if weights is not None else {}
            self.vit = timm.create_model(params.model, pretrained=load, **options, **overlay)
        for block in self.vit.blocks:  # blocks built at rate 0 hold Identity: make the rate adjustable
            block.drop_path1, block.drop_path2 = StochasticDepth(0.0, "row"), StochasticDepth(0.0, "row")
        self.channels = self.vit.embed_dim
        self.size_multiple = self.vit.patch_embed.patch_size[0]
        self.mean, self.std = tuple(self.vit.pretrained_cfg["mean"]), tuple(self.vit.pretrained_cfg["std"])

    def drop_path_blocks(self) -> list[list[StochasticDepth]]:
        """Each transformer block's two drop-path modules (after attention, after the MLP): one rate per block."""
        return [[block.drop_path1, block.drop_path2] for block in self.vit.blocks]

    def dropouts(self) -> list[nn.Dropout]:
        """The ViT's dropout on projections and MLPs (δ); attention dropout stays off."""
        return [m for name, m in self.vit.named_modules() if isinstance(m, nn.Dropout) and "attn_drop" not in name]

    def token_map(self, tokens: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """(B, prefix + N, D) tokens → (B, D, H/p, W/p), the prefix (class) tokens dropped."""
        height, width = images.shape[-2] // self.size_multiple, images.shape[-1] // self.size_multiple
        tokens = tokens[:, self.vit.num_prefix_tokens :]
        return tokens.transpose(1, 2).reshape(len(images), self.channels, height, width)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.token_map(self.vit.forward_features(images), images)

    def levels(self, images: torch.Tensor, count: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The final patch-token map and the (B, D, H/p, W/p) outputs of ``count`` blocks evenly spaced up to
        the last (multi-level features for a decoder)."""
        depth = len(self.vit.blocks)
        indices = sorted({round((i + 1) * depth / count) - 1 for i in range(count)})
        final, intermediates = self.vit.forward_intermediates(images, indices=indices, output_fmt="NCHW")
        return self.token_map(final, images), intermediates


def is_npz(path: Path) -> bool:
    """Whether a weights file is a numpy ``.npz`` archive (a zip of ``.npy`` arrays), by its content."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    return bool(names) and all(name.endswith(".npy") for name in names)


def local_vit_weights(params: ViTBackboneParams) -> Path:
    """The ViT's ImageNet weights on this machine: ``checkpoint``, else timm's file in the local Hugging Face
    cache. Never downloads; a missing file is named."""
    if params.checkpoint is not None:
        if not Path(params.checkpoint).is_file():
            raise FileNotFoundError(f"{params.checkpoint}: ViT checkpoint not found (cam.*.vit.checkpoint)")
        return Path(params.checkpoint)
    import timm
    from huggingface_hub import try_to_load_from_cache

    repo = timm.models.get_pretrained_cfg(params.model).hf_hub_id
    for filename in ("model.safetensors", "pytorch_model.bin"):
        cached = try_to_load_from_cache(repo, filename) if repo else None
        if isinstance(cached, str):
            return Path(cached)
    raise FileNotFoundError(
        f"ImageNet weights for '{params.model}' ({repo}) are not in the local Hugging Face cache and nothing is "
        f"downloaded at run time; set vit.checkpoint to a local weights file"
    )


def feature_backbone(choice: BackboneChoice, pretrained: bool = True) -> FeatureBackbone:
    """The backbone a CAM method's params select; ``pretrained=False`` skips loading weights (a checkpoint follows)."""
    if choice.backbone == "resnet":
        return ResNetFeatures(choice.resnet, pretrained)
    return ViTFeatures(choice.vit, choice.training.crop_size, pretrained)
