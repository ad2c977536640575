"""The proposal cache: SAM (or superpixel) masks per image in a zarr v3 hierarchy, published as one zip.

Layout of ``<image id>/`` (a group with attributes ``height`` and ``width``), n masks in canonical order,
stored sparsely as atoms (pipeline/proposals/regions.py) — the masks are ``membership[:, regions]``:

- ``regions``    int32 (H, W): each pixel's atom;  ``membership`` bool (n, A): which masks contain which atom;
- ``level``      uint8 (n,): 0 sub-part, 1 part, 2 whole (SAM's three multimask outputs);
- ``score``      float32 (n,): SAM's predicted IoU (superpixels: colour homogeneity);
- ``stability``  float32 (n,): SAM's stability score (superpixels: IoU under a scale change);
- ``bbox``       int32 (n, 4): XYWH;  ``area`` int32 (n,).

The root's attributes hold the method, its parameters and ``inputs_key``. Readable with plain zarr::

    group = zarr.open_group(zarr.storage.ZipStore("artifacts/proposals.zarr.zip", mode="r"), mode="r")
    node = group["2007_000032"]
    masks = node["membership"][...][:, node["regions"][...]]  # (n, H, W) bool
"""

from __future__ import annotations

from pathlib import Path

import zarr

from pipeline.proposals.regions import Proposals
from pipeline.zarr_cache import StagedHierarchy, create_array, open_published


class ProposalStoreWriter(StagedHierarchy):
    """The proposal hierarchy as a directory being filled image by image."""

    def write(self, image_id: str, proposals: Proposals) -> None:
        """Write one image's proposals (canonical order and atoms) atomically."""
        proposals = proposals.canonical()
        height, width = proposals.shape
        with self.stage(image_id) as store:
            group = zarr.open_group(store, mode="w", zarr_format=3, attributes={"height": height, "width": width})
            create_array(group, proposals.regions, "regions")
            create_array(group, proposals.membership, "membership")
            create_array(group, proposals.level, "level")
            create_array(group, proposals.score, "score")
            create_array(group, proposals.stability, "stability")
            create_array(group, proposals.bbox, "bbox")
            create_array(group, proposals.area, "area")


class ProposalStore:
    """Read access to a published proposal store."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._group = open_published(self.path, "proposal store", "sam_masks")

    @property
    def attributes(self) -> dict:
        return dict(self._group.attrs)

    def ids(self) -> list[str]:
        return sorted(name for name, _ in self._group.groups())

    def _node(self, image_id: str, shape: tuple[int, int] | None) -> zarr.Group:
        if image_id not in self._group:
            raise FileNotFoundError(f"{self.path}: no proposals stored for image '{image_id}'")
        node = self._group[image_id]
        stored = (node.attrs["height"], node.attrs["width"])
        if shape is not None and stored != tuple(shape):
            raise ValueError(f"{self.path}: proposals of '{image_id}' are {stored[0]}×{stored[1]}, expected {shape}")
        return node

    def read(self, image_id: str, shape: tuple[int, int] | None = None) -> Proposals:
        """The image's proposals as atoms (optionally checked against the image size ``shape``)."""
        node = self._node(image_id, shape)
        return Proposals(*(node[name][...] for name in ("regions", "membership", "level", "score", "stability")))
