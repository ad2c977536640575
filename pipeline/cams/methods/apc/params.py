"""Params of APC with the paper's defaults (§4.1); see model.py for what each one does."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from pipeline.cams.network_params import PatchClassifierParams
from pipeline.cams.params import CAM_PARAMS


@CAM_PARAMS.register("apc")
class ApcParams(PatchClassifierParams):
    """ViT-PCM's network with adaptive-K pooling, patch contrast and a multi-level decoder (eq. 7); the
    decoder's maps are extracted with ``cam.inference.head: decoder`` (APC's single-stage labels)."""

    has_decoder: ClassVar[bool] = True

    top_k: int = Field(6, ge=1)  # K, the largest set adaptive-K pooling may select (Algorithm 1)
    theta: float = Field(0.9, gt=0, le=1)  # θ of Algorithm 1
    epsilon: float = Field(0.85, gt=0.5, lt=1)  # ε of the patch contrast: high > ε, low < 1 − ε
    seg_weight: float = Field(0.02, ge=0)  # λ1 of eq. 7
    contrast_weight: float = Field(0.01, ge=0)  # λ2 of eq. 7
    decoder_levels: int = Field(4, ge=1)  # ViT blocks the decoder reads, evenly spaced up to the last
    decoder_width: int = Field(64, ge=1)  # channels of each projected level and of the fused map
