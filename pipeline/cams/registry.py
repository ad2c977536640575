"""CAM methods by name (``cam.method``): each method's module is imported the first time its name is asked for."""

from __future__ import annotations

from pipeline.cams.contract import CamMethod
from pipeline.registry import Registry


def _apc() -> None:
    from pipeline.cams.methods.apc import model  # noqa: F401  (registers "apc")


def _clims() -> None:
    from pipeline.cams.methods.clims import model  # noqa: F401  (registers "clims")


def _clip_es() -> None:
    from pipeline.cams.methods.clip_es import model  # noqa: F401  (registers "clip_es")


def _fma() -> None:
    from pipeline.cams.methods.fma import model  # noqa: F401  (registers "fma_cls" and "fma")


def _pcc() -> None:
    from pipeline.cams.methods.pcc import model  # noqa: F401  (registers "pcc")


def _plain_cam() -> None:
    from pipeline.cams.methods.plain_cam import model  # noqa: F401  (registers "cam")


def _pole() -> None:
    from pipeline.cams.methods.pole import model  # noqa: F401  (registers "pole")


def _usage() -> None:
    from pipeline.cams.methods.usage import model  # noqa: F401  (registers "usage")


CAM_METHODS: Registry[type[CamMethod]] = Registry("CAM method", loaders={
    "apc": _apc, "clims": _clims, "clip_es": _clip_es, "fma_cls": _fma, "fma": _fma, "pcc": _pcc, "cam": _plain_cam,
    "pole": _pole, "usage": _usage,
})  # fmt: skip
