"""Params every CAM method shares, torch-free: its backbone (ResNet or ViT) and its training schedule."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipeline.cams.inputs import CamMethodParams
from pipeline.data.sizes import Rescale
from pipeline.schema import Strict


class ResNetBackboneParams(Strict):
    """A torchvision ResNet (pipeline/backbones.py); the output stride is reached by removing strides."""

    arch: Literal["resnet10", "resnet18", "resnet34", "resnet50", "resnet101"] = "resnet10"
    weights: Literal["none", "imagenet", "imagenet_v2"] = "none"  # torchvision's V1 / V2, local torch hub cache only
    output_stride: Literal[8, 16, 32] = 16


class ViTBackboneParams(Strict):
    """A timm ViT whose patch tokens form the feature map (the class token is dropped).

    The demo default is a tiny DeiT-style ViT from scratch (the size overrides below); paper scale is
    ``deit_small_patch16_224`` with ``weights: imagenet`` and the overrides null, its weights read from
    ``checkpoint`` or else the local Hugging Face cache — never downloaded.
    """

    model: str = "deit_small_patch16_224"  # a timm model name
    weights: Literal["none", "imagenet"] = "none"
    checkpoint: str | None = None  # for weights: imagenet, timm's .safetensors/.pth or Google's .npz (null: HF cache)
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
    learning rate against the new heads' (the per-group rates of the contract). The warm-up starts at
    ``warmup_lr`` and the cosine ends at ``min_lr`` (absolute rates, every group alike, as timm's scheduler in
    MCTformer / DeiT: 1e-6 and 1e-5; 0 and 0 by default)."""

    epochs: int = Field(12, ge=1)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(2e-3, gt=0)
    backbone_lr_scale: float = Field(1.0, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    warmup_fraction: float = Field(0.15, ge=0, lt=1)  # of all steps
    crop_size: int = Field(64, ge=16)
    scale_range: tuple[float, float] = (1.0, 1.0)
    rescale: Rescale = "auto"  # short_side | none | auto (pipeline/data/sizes.py)
    min_steps: int = Field(900, ge=0)  # epochs raised to reach this many optimiser steps (the demo's 12 × 75)
    warmup_lr: float = Field(0.0, ge=0)
    min_lr: float = Field(0.0, ge=0)


class OptimizerTrainingParams(CamTrainingParams):
    """The schedule with a choice of optimiser: SGD with ``momentum`` (the reference code of CLIMS and FMA-WSSS)
    or AdamW (the pipeline's default elsewhere); the weight decay is either's. CLIMS's and POLE's SGD is IRN's
    ``PolyOptimizer``, which puts the weight decay in SGD's positional ``momentum`` slot while each param group
    keeps its ``weight_decay``: they ran momentum 1e-4 and weight decay 1e-4, which their presets reproduce
    (FMA-WSSS's CoOp optimiser is a real momentum 0.9)."""

    optimizer: Literal["sgd", "adamw"] = "sgd"
    momentum: float = Field(0.9, ge=0, lt=1)


def check_crop_fits_patches(vit: ViTBackboneParams, training: CamTrainingParams) -> None:
    """Training crops must be whole numbers of ViT patches."""
    crop, patch = training.crop_size, vit.patch_size
    if patch is not None and crop % patch:
        raise ValueError(f"training.crop_size {crop} is not a multiple of vit.patch_size {patch}")


class BackboneChoice(CamMethodParams):
    """A CAM method's network: ``backbone`` picks the ResNet or the ViT section; its training schedule."""

    backbone: Literal["resnet", "vit"] = "resnet"
    resnet: ResNetBackboneParams = ResNetBackboneParams()
    vit: ViTBackboneParams = ViTBackboneParams()
    training: CamTrainingParams = CamTrainingParams()

    @model_validator(mode="after")
    def _crop_fits_patches(self) -> BackboneChoice:
        if self.backbone == "vit":
            check_crop_fits_patches(self.vit, self.training)
        return self


class PatchClassifierParams(CamMethodParams):
    """ViT-PCM's network, shared by APC and PCC: a timm ViT's patch tokens → HV-BiLSTM → a softmax patch
    classifier over the classes and the background (pipeline/cams/patch_classifier.py).

    Schedule (both papers: Adam at 1e-3 for two epochs, then 1e-4): every group trains at its rate for
    ``high_lr_epochs``, then at ``later_lr_scale`` times it, after a linear warm-up over ``warmup_fraction`` of
    the steps. ``frozen_backbone_epochs`` keeps the ViT fixed at first (ViT-PCM trained only the new heads in
    its first epoch; neither paper says so, hence 0). ``trainable_blocks``: only the ViT's last N blocks (and its
    final norm) ever learn, the rest stays at its pretrained weights (ViT-PCM's code: its 1e-3 phase with the
    backbone frozen, then the last 5 blocks unfrozen; presets/apc_vitb16.yaml, pcc_vitb16.yaml); null: all.
    ``square_inputs``: train on whole images resized to ``crop_size`` × ``crop_size`` (ViT-PCM's 384 × 384;
    the presets, with ``cam.inference.fit: square`` at 960 for the CAMs), not on crops at the image's aspect.
    """

    vit: ViTBackboneParams = ViTBackboneParams()
    training: CamTrainingParams = CamTrainingParams(lr=1e-3, weight_decay=0.0, warmup_fraction=0.0)  # Adam 1e-3
    lstm_dropout: float = Field(0.2, ge=0, lt=1)
    classifier_init_std: float = Field(0.05, gt=0)
    high_lr_epochs: int = Field(2, ge=0)
    later_lr_scale: float = Field(0.1, gt=0, le=1)
    frozen_backbone_epochs: int = Field(0, ge=0)
    trainable_blocks: int | None = Field(None, ge=0)
    square_inputs: bool = False

    @model_validator(mode="after")
    def _crop_fits_patches(self) -> PatchClassifierParams:
        check_crop_fits_patches(self.vit, self.training)
        return self
