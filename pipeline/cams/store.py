"""The CAM cache: a zarr v3 hierarchy with one float16 Blosc-zstd array (one chunk) per image.

Layout: the root group's attributes hold the class names, the inference settings, ``inputs_key`` (a hash of
everything the CAMs were computed from) and ``background`` (whether the method has a background channel);
``<image id>/`` is an array of shape (present classes, H, W) — with the background map in front when
``background`` is true — whose ``classes`` attribute holds the 0-based class indices of the class channels, its
one chunk stored as ``c.0.0.0``. Written image by
image and published as one zip (:mod:`pipeline.zarr_cache`), readable with plain zarr::

    group = zarr.open_group(zarr.storage.ZipStore("artifacts/cams.zarr.zip", mode="r"), mode="r")

Values are rounded to multiples of 1/1024 before the float16 cast (an error ≤ 0.0005, float16's own spacing
just below 1): noise in the low mantissa bits would otherwise defeat compression.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.zarr_cache import StagedHierarchy, create_array, open_published

QUANTUM = 1.0 / 1024


class CamStoreWriter(StagedHierarchy):
    """The CAM hierarchy as a directory being filled image by image."""

    def write(self, image_id: str, cams: np.ndarray, classes: list[int], background: bool = False) -> None:
        """Write one image's (k, H, W) CAMs atomically ((1 + k, H, W), background first, with ``background``)."""
        if cams.ndim != 3 or cams.shape[0] != len(classes) + background:
            raise ValueError(f"{image_id}: CAMs of shape {cams.shape} do not match classes {classes}"
                             + (" and a background channel" if background else ""))  # fmt: skip
        with self.stage(image_id) as store:
            quantised = (np.round(cams / QUANTUM) * QUANTUM).astype(np.float16)
            create_array(store, quantised, attributes={"classes": [int(c) for c in classes]})


class CamStore:
    """Read access to a published CAM store (a zip of the hierarchy)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._group = open_published(self.path, "CAM store", "extract_cams")

    @property
    def attributes(self) -> dict:
        return dict(self._group.attrs)

    def ids(self) -> list[str]:
        return sorted(name for name, _ in self._group.arrays())

    @property
    def has_background(self) -> bool:
        return bool(self._group.attrs.get("background", False))

    def read_with_background(self, image_id: str) -> tuple[np.ndarray, list[int], np.ndarray | None]:
        """(k, H, W) float32 CAMs in [0, 1], their class indices, and the method's own (H, W) background map
        (None when its CAMs have none), from one read of the image's array."""
        if image_id not in self._group:
            raise FileNotFoundError(f"{self.path}: no CAMs stored for image '{image_id}'")
        array = self._group[image_id]
        maps, classes = np.asarray(array[...], dtype=np.float32), list(array.attrs["classes"])
        if self.has_background:
            return maps[1:], classes, maps[0]
        return maps, classes, None

    def read(self, image_id: str) -> tuple[np.ndarray, list[int]]:
        """(k, H, W) float32 CAMs in [0, 1] and their class indices (the background channel left out)."""
        return self.read_with_background(image_id)[:2]

    def read_background(self, image_id: str) -> np.ndarray | None:
        """The method's own (H, W) background map in [0, 1], or None when its CAMs have no background."""
        return self.read_with_background(image_id)[2]
