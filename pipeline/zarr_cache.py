"""Per-image zarr caches: a v3 hierarchy filled one image at a time, published as one deterministic zip.

While a stage runs, the hierarchy is a directory: each image's node is written to a staging directory and
renamed into place, so an image is either complete or absent and a killed run resumes where it stopped. When
every image is there, the directory is packed into one uncompressed zip (:func:`pipeline.io.pack_zip`) that
plain zarr reads (``zarr.open_group(zarr.storage.ZipStore(path, mode="r"), mode="r")``). One file instead of
thousands keeps DVC's hashing cheap, and a resumed run packs to the same bytes.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import zarr
from zarr.codecs import BloscCodec
from zarr.storage import LocalStore, ZipStore

from pipeline.io import inside

COMPRESSOR = BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")
CHUNK_KEYS = {"name": "default", "separator": "."}


class StagedHierarchy:
    """A zarr v3 group on disk whose children (one per image) are written atomically.

    The process that owns the run constructs it with ``attributes`` (creating the root and clearing staging
    left by a killed run); worker processes attach to the same path without them and write their own images.
    """

    def __init__(self, path: Path, attributes: dict | None = None) -> None:
        self.path = Path(path)
        self.staging = self.path.with_name(f".{self.path.name}.staging")
        if attributes is None:
            return
        if not (self.path / "zarr.json").is_file():
            zarr.open_group(LocalStore(str(self.path)), mode="w", attributes=attributes, zarr_format=3)
        if self.staging.exists():
            shutil.rmtree(self.staging)

    def has(self, image_id: str) -> bool:
        return (inside(self.path, image_id) / "zarr.json").is_file()

    @contextmanager
    def stage(self, image_id: str) -> Iterator[LocalStore]:
        """Yield a store for the image's node; it is renamed into the hierarchy only if the block succeeds."""
        tmp = inside(self.staging, image_id)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        yield LocalStore(str(tmp))
        target = inside(self.path, image_id)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)

    def finish(self) -> None:
        if self.staging.exists():
            shutil.rmtree(self.staging)


def create_array(store: LocalStore | zarr.Group, data, name: str | None = None, **kwargs) -> zarr.Array:
    """A one-chunk, Blosc-zstd compressed array holding ``data`` (under ``name`` when ``store`` is a group)."""
    shape = data.shape
    chunks = tuple(max(1, size) for size in shape)
    target = store.create_array if isinstance(store, zarr.Group) else None
    options = dict(
        shape=shape, chunks=chunks, dtype=data.dtype, compressors=[COMPRESSOR], chunk_key_encoding=CHUNK_KEYS
    )
    if target is not None:
        array = target(name, **options, **kwargs)
    else:
        array = zarr.create_array(store, zarr_format=3, **options, **kwargs)
    if data.size:
        array[...] = data
    return array


def open_published(path: Path, what: str, stage: str) -> zarr.Group:
    """Open a published zip store read-only, or fail naming the stage that makes it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found (run {stage})")
    return zarr.open_group(ZipStore(path, mode="r"), mode="r")
