"""CAM methods by name (``cam.method``): each method's module is imported the first time its name is asked for."""

from __future__ import annotations

from pipeline.cams.contract import CamMethod
from pipeline.registry import Registry

CAM_METHODS: Registry[type[CamMethod]] = Registry("CAM method", selected_by="cam", loaders={
    "apc": "pipeline.cams.methods.apc.model", "clims": "pipeline.cams.methods.clims.model",
    "clip_es": "pipeline.cams.methods.clip_es.model", "fma_cls": "pipeline.cams.methods.fma.model",
    "fma": "pipeline.cams.methods.fma.model", "pcc": "pipeline.cams.methods.pcc.model",
    "cam": "pipeline.cams.methods.plain_cam.model", "pole": "pipeline.cams.methods.pole.model",
    "usage": "pipeline.cams.methods.usage.model",
})  # fmt: skip
