"""CAM methods by name (``cam.method``); importing this module registers every method."""

from __future__ import annotations

from pipeline.cams.contract import CamMethod
from pipeline.registry import Registry

CAM_METHODS: Registry[type[CamMethod]] = Registry("CAM method")

from pipeline.cams.methods.apc import model as _apc  # noqa: E402,F401  (registers "apc")
from pipeline.cams.methods.clims import model as _clims  # noqa: E402,F401  (registers "clims")
from pipeline.cams.methods.clip_es import model as _clip_es  # noqa: E402,F401  (registers "clip_es")
from pipeline.cams.methods.fma import model as _fma  # noqa: E402,F401  (registers "fma_cls" and "fma")
from pipeline.cams.methods.pcc import model as _pcc  # noqa: E402,F401  (registers "pcc")
from pipeline.cams.methods.plain_cam import model as _plain_cam  # noqa: E402,F401  (registers "cam")
from pipeline.cams.methods.pole import model as _pole  # noqa: E402,F401  (registers "pole")
from pipeline.cams.methods.usage import model as _usage  # noqa: E402,F401  (registers "usage")
