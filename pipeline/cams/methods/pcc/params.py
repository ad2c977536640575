"""Params of PCC with the paper's defaults (§4.1); see model.py for what each one does."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from pipeline.cams.network_params import PatchClassifierParams
from pipeline.cams.params import CAM_PARAMS


@CAM_PARAMS.register("pcc")
class PccParams(PatchClassifierParams):
    """ViT-PCM's network with a cluster token of ``cluster_width`` channels on every patch token."""

    extra_inputs: ClassVar[tuple[str, ...]] = ("clusters",)

    top_k: int = Field(6, ge=1)  # k of the top-k pooling (eq. 3)
    cluster_width: int = Field(32, ge=1)  # H, the width of the cluster token F_c (eq. 1)
    cluster_init_std: float = Field(0.02, gt=0)  # G ~ N(0, std²)
