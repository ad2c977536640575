"""The CAM cache: a zarr v3 hierarchy with one float16 Blosc-zstd array (one chunk) per image.

Layout: the root group's attributes hold the class names, the inference settings and ``inputs_key`` (a hash of
everything the CAMs were computed from); ``<image id>/`` is an array of shape (present classes, H, W) whose
``classes`` attribute holds the 0-based class indices, its one chunk stored as ``c.0.0.0``.

While a stage runs, the hierarchy is a directory (:class:`CamStoreWriter`): each image is written to a staging
directory and renamed into place, so an image is either complete or absent and a killed run resumes where it
stopped. When every image is there, the directory is packed into one uncompressed, deterministic zip
(:func:`pipeline.io.pack_zip`) — the published store, readable with plain zarr::

    group = zarr.open_group(zarr.storage.ZipStore("artifacts/cams.zarr.zip", mode="r"), mode="r")

One file instead of thousands keeps DVC's hashing and caching cheap, and a resumed run packs to the same bytes.
Values are rounded to multiples of 1/1024 before the float16 cast (an error ≤ 0.0005, float16's own spacing
just below 1): noise in the low mantissa bits would otherwise defeat compression.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec
from zarr.storage import LocalStore, ZipStore

COMPRESSOR = BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")
QUANTUM = 1.0 / 1024


class CamStoreWriter:
    """The CAM hierarchy as a directory being filled image by image."""

    def __init__(self, path: Path, attributes: dict) -> None:
        self.path = Path(path)
        self.staging = self.path.with_name(f".{self.path.name}.staging")
        if not (self.path / "zarr.json").is_file():
            zarr.open_group(LocalStore(str(self.path)), mode="w", attributes=attributes, zarr_format=3)
        if self.staging.exists():
            shutil.rmtree(self.staging)

    def has(self, image_id: str) -> bool:
        return (self.path / image_id / "zarr.json").is_file()

    def write(self, image_id: str, cams: np.ndarray, classes: list[int]) -> None:
        """Write one image's (k, H, W) CAMs atomically."""
        if cams.ndim != 3 or cams.shape[0] != len(classes):
            raise ValueError(f"{image_id}: CAMs of shape {cams.shape} do not match classes {classes}")
        tmp = self.staging / image_id
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        array = zarr.create_array(
            LocalStore(str(tmp)), shape=cams.shape, chunks=cams.shape, dtype="float16",
            compressors=[COMPRESSOR], attributes={"classes": [int(c) for c in classes]}, zarr_format=3,
            chunk_key_encoding={"name": "default", "separator": "."},
        )  # fmt: skip
        array[...] = (np.round(cams / QUANTUM) * QUANTUM).astype(np.float16)
        target = self.path / image_id
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)

    def finish(self) -> None:
        if self.staging.exists():
            shutil.rmtree(self.staging)


class CamStore:
    """Read access to a published CAM store (a zip of the hierarchy)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: CAM store not found (run extract_cams)")
        self._group = zarr.open_group(ZipStore(self.path, mode="r"), mode="r")

    @property
    def attributes(self) -> dict:
        return dict(self._group.attrs)

    def ids(self) -> list[str]:
        return sorted(name for name, _ in self._group.arrays())

    def read(self, image_id: str) -> tuple[np.ndarray, list[int]]:
        """(k, H, W) float32 CAMs in [0, 1] and their class indices."""
        if image_id not in self._group:
            raise FileNotFoundError(f"{self.path}: no CAMs stored for image '{image_id}'")
        array = self._group[image_id]
        return np.asarray(array[...], dtype=np.float32), list(array.attrs["classes"])
