"""Params every CAM method shares, torch-free: its backbone (ResNet or ViT) and its training schedule."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipeline.cams.inputs import CamMethodParams
from pipeline.schema import Strict


class ResNetBackboneParams(Strict):
    """A torchvision ResNet (pipeline/backbones.py); the output stride is reached by removing strides."""

    arch: Literal["resnet10", "resnet18", "resnet34", "resnet50", "resnet101"] = "resnet10"
    weights: Literal["none", "imagenet"] = "none"  # imagenet: from the local torch hub cache only
    output_stride: Literal[8, 16, 32] = 16


class ViTBackboneParams(Strict):
    """A timm ViT whose patch tokens form the feature map (the class token is dropped).

    The demo default is a tiny DeiT-style ViT from scratch (the size overrides below); paper scale is
    ``deit_small_patch16_224`` with ``weights: imagenet`` and the overrides null, its weights read from
    ``checkpoint`` or else the local Hugging Face cache — never downloaded.
    """

    model: str = "deit_small_patch16_224"  # a timm model name
    weights: Literal["none", "imagenet"] = "none"
    checkpoint: str | None = None  # local weights file for weights: imagenet (null: the local HF cache)
    patch_size: int | None = Field(8, ge=1)  # null keeps the model's own
    embed_dim: int | None = Field(96, ge=8)
    depth: int | None = Field(4, ge=1)
    num_heads: int | None = Field(3, ge=1)

    @model_validator(mode="after")
    def _pretrained_keeps_shape(self) -> ViTBackboneParams:
        overrides = [k for k in ("patch_size", "embed_dim", "depth", "num_heads") if getattr(self, k) is not None]
        if self.weights == "imagenet" and overrides:
            raise ValueError(f"weights: imagenet keeps the model's shape; set {', '.join(overrides)} to null")
        return self


class CamTrainingParams(Strict):
    """AdamW with a linear warm-up then cosine decay, per step; ``backbone_lr_scale`` scales the backbone's
    learning rate against the new heads' (the per-group rates of the contract)."""

    epochs: int = Field(12, ge=1)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(2e-3, gt=0)
    backbone_lr_scale: float = Field(1.0, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    warmup_fraction: float = Field(0.15, ge=0, lt=1)  # of all steps
    crop_size: int = Field(64, ge=16)
    scale_range: tuple[float, float] = (1.0, 1.0)


class BackboneChoice(CamMethodParams):
    """A CAM method's network: ``backbone`` picks the ResNet or the ViT section; its training schedule."""

    backbone: Literal["resnet", "vit"] = "resnet"
    resnet: ResNetBackboneParams = ResNetBackboneParams()
    vit: ViTBackboneParams = ViTBackboneParams()
    training: CamTrainingParams = CamTrainingParams()

    @model_validator(mode="after")
    def _crop_fits_patches(self) -> BackboneChoice:
        patch = self.vit.patch_size
        if self.backbone == "vit" and patch is not None and self.training.crop_size % patch:
            crop = self.training.crop_size
            raise ValueError(f"training.crop_size {crop} is not a multiple of vit.patch_size {patch}")
        return self
