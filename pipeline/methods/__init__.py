"""CAM methods by name: each trains a model and exposes a dense class-activation function."""

from __future__ import annotations

from pipeline.registry import Registry

CAM_METHODS: Registry = Registry("CAM method")

from pipeline.methods import cam as _cam  # noqa: E402,F401  (registers "cam")
