"""Params of plain CAM: only its network and schedule (pipeline/cams/network_params.py)."""

from __future__ import annotations

from pipeline.cams.network_params import BackboneChoice
from pipeline.cams.params import CAM_PARAMS


@CAM_PARAMS.register("cam")
class PlainCamParams(BackboneChoice):
    """GAP multi-label classifier trained with the soft-margin loss, on a ResNet or a ViT."""
