"""The CAM cache: one zarr v3 group, one float16 Blosc-zstd array (one chunk) per image.

Values are rounded to multiples of 1/1024 before the float16 cast (an error ≤ 0.0005, float16's own spacing
just below 1): the noise in the low mantissa bits would otherwise defeat compression.

Layout: ``cams.zarr/zarr.json`` (attrs: classes, fingerprint) and ``cams.zarr/<image id>/`` an array of shape
(present classes, H, W) whose attrs hold the 0-based class indices. Readable with plain ``zarr.open_group``.
Each image is written to a staging directory and renamed into the store, so an image is either complete or
absent; a killed run resumes where it stopped and ends byte-identical to an uninterrupted one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec
from zarr.storage import LocalStore

COMPRESSOR = BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")
QUANTUM = 1.0 / 1024


class CamStore:
    """Per-image CAM arrays in a zarr group at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.staging = self.path.with_name(f".{self.path.name}.staging")

    @classmethod
    def create(cls, path: Path, attributes: dict) -> CamStore:
        """Open the store at ``path`` for writing, creating the root group if it does not exist."""
        store = cls(path)
        if not (store.path / "zarr.json").is_file():
            zarr.open_group(LocalStore(str(store.path)), mode="w", attributes=attributes, zarr_format=3)
        if store.staging.exists():
            shutil.rmtree(store.staging)
        return store

    @property
    def attributes(self) -> dict:
        return dict(zarr.open_group(LocalStore(str(self.path), read_only=True), mode="r").attrs)

    def has(self, image_id: str) -> bool:
        return (self.path / image_id / "zarr.json").is_file()

    def ids(self) -> list[str]:
        return sorted(p.name for p in self.path.iterdir() if p.is_dir() and (p / "zarr.json").is_file())

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
        )  # fmt: skip
        array[...] = (np.round(cams / QUANTUM) * QUANTUM).astype(np.float16)
        target = self.path / image_id
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)

    def read(self, image_id: str) -> tuple[np.ndarray, list[int]]:
        """(k, H, W) float32 CAMs in [0, 1] and their class indices."""
        if not self.has(image_id):
            raise FileNotFoundError(f"{self.path / image_id}: no CAMs stored for image '{image_id}'")
        array = zarr.open_array(LocalStore(str(self.path / image_id), read_only=True), mode="r")
        return np.asarray(array[...], dtype=np.float32), list(array.attrs["classes"])

    def finish(self) -> None:
        if self.staging.exists():
            shutil.rmtree(self.staging)
