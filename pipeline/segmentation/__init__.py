"""Segmentation networks by name, trained on pseudo labels (or ground truth) and run on the val split."""

from pipeline.registry import Registry

SEGMENTERS: Registry = Registry("segmentation network")

from pipeline.segmentation import networks as _networks  # noqa: E402,F401  (registers the networks)
