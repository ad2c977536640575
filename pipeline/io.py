"""Atomic file writes, label-PNG helpers and safe paths: a reader never sees a half-written file, and no path
built from an image id or a parameter leaves the root it is meant for."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import os
import shutil
import tempfile
import unicodedata
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pipeline.voc import voc_palette


class UnsafePathError(ValueError):
    """An image id or a configured path would leave the directory it must stay in."""


FORBIDDEN_ID_CHARACTERS = frozenset("/\\\0") | frozenset(chr(c) for c in range(32))
INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"})  # control, format, line separators


def id_problem(image_id: str) -> str | None:
    """Why ``image_id`` cannot name files (path separators, NUL, control, format or line-separator characters
    such as U+2028 or a byte order mark, ``.``/``..``, a leading dot that would collide with staging files,
    empty), or None when it is safe."""
    if not image_id:
        return "empty id"
    if image_id in (".", ".."):
        return f"id {image_id!r} is a relative path"
    if any(c in FORBIDDEN_ID_CHARACTERS for c in image_id):
        return f"id {image_id!r} contains a path separator, NUL or control character"
    if image_id.startswith("."):
        return f"id {image_id!r} starts with a dot (reserved for staging files)"
    invisible = [c for c in image_id if unicodedata.category(c) in INVISIBLE_CATEGORIES]
    if invisible:
        return f"id {image_id!r} contains the invisible character U+{ord(invisible[0]):04X}"
    return None


def within(base: str, path: str) -> bool:
    """Whether the normalised absolute ``path`` is ``base`` or below it."""
    return path == base or path.startswith(base.rstrip(os.sep) + os.sep)


def resolves_inside(root: Path, path: Path | str) -> bool:
    """Whether ``path``, its symbolic links followed, stays inside ``root`` (its links followed too)."""
    return within(os.path.realpath(root), os.path.realpath(path))


def one_line(error: BaseException, limit: int = 300) -> str:
    """An exception's text on one line, at most ``limit`` characters (torch's loaders write paragraphs)."""
    return " ".join(str(error).split())[:limit]


def inside(root: Path, *parts: str) -> Path:
    """``root / parts`` after checking, lexically, that the result stays inside ``root``: no ``..`` that climbs
    out, no absolute part, no NUL. Symbolic links inside the root (a dataset's image folder linked from
    elsewhere) are allowed: only the path as written is checked."""
    root = Path(root)
    for part in parts:
        if "\0" in str(part):
            raise UnsafePathError(f"{root}: path part {str(part)!r} contains NUL")
    base = os.path.normpath(os.path.abspath(root))
    joined = os.path.normpath(os.path.join(base, *(str(part) for part in parts)))
    if not within(base, joined):
        raise UnsafePathError(f"{root}: {'/'.join(str(p) for p in parts)!r} leads outside this directory")
    return root.joinpath(*parts)


def link_target_inside(root: Path, path: Path, links: str = "inside") -> None:
    """Refuse ``path`` (inside ``root`` as written) when symbolic links take it outside ``root``, unless
    ``links`` is ``follow`` (``data.symlinks``): nothing outside a dataset's root is read unless asked for."""
    if links != "follow" and not resolves_inside(root, path):
        target = os.path.realpath(path)
        raise UnsafePathError(f"{path}: a symbolic link leads outside {root} (to {target}); copy the file in, or "
                              f"set data.symlinks: follow to read linked files wherever they are")  # fmt: skip


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto ``target`` only if the block succeeds. A write that fails
    without naming its file (a full disk) is reported with ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        try:
            yield tmp_path
        except OSError as error:
            if error.filename is None and error.errno is not None:
                raise OSError(error.errno, f"{error.strerror or error} (writing {target})", str(target)) from error
            raise
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_torch(path: Path, data: Any) -> None:
    """``torch.save`` atomically with stable bytes. Saved through a buffer: written to a file, torch names the
    archive's root folder after the file — here a random temporary name — so identical weights would hash
    differently and every stage downstream would look changed."""
    import torch  # only the stages that save models pay for importing torch

    buffer = io.BytesIO()
    torch.save(data, buffer)
    with atomic_path(Path(path)) as tmp:
        tmp.write_bytes(buffer.getvalue())


def json_safe(data: Any) -> Any:
    """``data`` with every NaN or infinite float replaced by None (JSON has no NaN; a class absent from both
    prediction and truth has no IoU)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: json_safe(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_safe(value) for value in data]
    return data


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically with sorted keys (stable bytes for DVC hashing); NaN and ±inf become null."""
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(json.dumps(json_safe(data), indent=2, sort_keys=True, allow_nan=False) + "\n")


def write_label_png(path: Path, label: np.ndarray) -> None:
    """Write a uint8 class-index map as a VOC palette PNG, atomically."""
    if label.dtype != np.uint8:
        raise ValueError(f"{path}: label map must be uint8, got {label.dtype}")
    image = Image.fromarray(label, mode="P")
    image.putpalette(voc_palette().reshape(-1).tolist())
    with atomic_path(Path(path)) as tmp:
        image.save(tmp, format="PNG")


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def decode_label_png(data: bytes, location: Path | str) -> np.ndarray:
    """A palette or grayscale PNG's raw class indices, checked by content (a JPEG saved as ``.png`` is refused:
    its grey values are not labels); errors name ``location``."""
    if not data.startswith(PNG_SIGNATURE):
        found = "a JPEG" if data.startswith(b"\xff\xd8\xff") else "not a PNG"
        raise ValueError(f"{location}: label masks must be PNG files (lossless class indices); this file is {found}")
    with Image.open(io.BytesIO(data)) as image:
        if image.mode not in ("P", "L"):
            raise ValueError(f"{location}: label PNG must be palette or grayscale, got mode {image.mode}")
        return np.asarray(image, dtype=np.uint8).copy()


def read_label_png(path: Path) -> np.ndarray:
    """Read a palette or grayscale PNG file as its raw class indices."""
    return decode_label_png(Path(path).read_bytes(), path)


class FileTree:
    """Files by relative name from a directory or from a zip of one.

    Published label sets and the embedded benchmark are zips (one file keeps DVC's no-op check cheap); real
    datasets are directories. Names are checked with :func:`inside`; errors name ``<path>/<name>``. The zip is
    opened once per process, so a tree can be handed to worker processes.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._archive: zipfile.ZipFile | None = None
        self._pid = -1

    def __getstate__(self) -> dict:
        return {"path": self.path, "_archive": None, "_pid": -1}

    @functools.cached_property
    def is_archive(self) -> bool:
        return not self.path.is_dir()

    def location(self, name: str) -> Path:
        """Where ``name`` is, for messages (inside a zip: the zip's path joined with the member's name)."""
        return inside(self.path, name)

    def _zip(self) -> zipfile.ZipFile:
        if self._archive is None or self._pid != os.getpid():
            if not self.path.is_file():
                raise FileNotFoundError(f"{self.path}: not found (neither a directory nor a zip)")
            self._archive, self._pid = zipfile.ZipFile(self.path), os.getpid()
        return self._archive

    def exists(self, name: str) -> bool:
        location = self.location(name)
        return name in self._zip().NameToInfo if self.is_archive else location.is_file()

    def read_bytes(self, name: str) -> bytes:
        location = self.location(name)
        if self.is_archive:
            archive = self._zip()  # a missing archive is named here
            try:
                return archive.read(name)
            except KeyError:
                raise FileNotFoundError(f"{location}: file not found") from None
        if not location.is_file():
            raise FileNotFoundError(f"{location}: file not found")
        return location.read_bytes()


def read_label(files: FileTree, name: str, image_id: str, shape: tuple[int, ...]) -> np.ndarray:
    """An image's label map ``name`` in ``files``, checked for presence and for the image's size ``shape``;
    errors name the file."""
    location = files.location(name)
    if not files.exists(name):
        raise FileNotFoundError(f"{location}: label missing for image '{image_id}'")
    label = decode_label_png(files.read_bytes(name), location)
    if label.shape != tuple(shape):
        raise ValueError(f"{location}: label size {label.shape} does not match the image {'×'.join(map(str, shape))}")
    return label


class LabelSet:
    """A set of label maps, ``<image id>.png`` VOC palette PNGs: a stage's published zip (seeds, refined labels,
    predictions) or a directory of PNGs from elsewhere."""

    def __init__(self, path: Path) -> None:
        self.files = FileTree(path)

    def read(self, image_id: str, shape: tuple[int, ...]) -> np.ndarray:
        """One image's label map, checked against the image's size."""
        return read_label(self.files, f"{image_id}.png", image_id, shape)


def fresh_directory(path: Path) -> Path:
    """Remove ``path`` if present and recreate it empty."""
    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def fingerprint(*parts: bytes | str | Path) -> str:
    """SHA-256 over strings, bytes and file contents: the identity of a stage's inputs."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            _hash_file(digest, part)
        else:
            digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return digest.hexdigest()


def _hash_file(digest: Any, path: Path) -> None:
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)


def sha256_file(path: Path) -> str:
    """Plain SHA-256 of a file's bytes (what ``sha256sum`` prints)."""
    digest = hashlib.sha256()
    _hash_file(digest, path)
    return digest.hexdigest()


def work_directory(target: Path, key: str) -> Path:
    """Where a resumable output for ``target`` is built: ``<parent>/.work/<name>-<key>``.

    Work left by runs with other inputs (another key) is removed; work with this key is kept and resumed.
    """
    name = Path(target).name
    work_root = Path(target).parent / ".work"
    work = work_root / f"{name}-{key[:16]}"
    if work_root.is_dir():
        for stale in work_root.iterdir():
            ours = stale.name.startswith((f"{name}-", f".{name}-"))
            if ours and not stale.name.lstrip(".").startswith(work.name):
                shutil.rmtree(stale)
    work_root.mkdir(parents=True, exist_ok=True)
    return work


def _drop_empty_work_root(work: Path) -> None:
    if not any(Path(work).parent.iterdir()):
        Path(work).parent.rmdir()


def remove_work(work: Path) -> None:
    """Delete a finished work directory (and ``.work`` itself once empty)."""
    shutil.rmtree(work)
    _drop_empty_work_root(work)


def publish_directory(work: Path, target: Path) -> None:
    """Move a finished work directory onto ``target`` (replacing it)."""
    target = Path(target)
    if target.exists():
        shutil.rmtree(target)
    Path(work).rename(target)
    _drop_empty_work_root(work)


def pack_zip(directory: Path, target: Path) -> None:
    """Pack a directory into an uncompressed zip, atomically and deterministically (sorted, fixed times).

    Dot names at the top (staging files, a run's journals) are left out: image ids never start with a dot."""
    files = sorted(path for path in Path(directory).rglob("*")
                   if path.is_file() and not path.relative_to(directory).parts[0].startswith("."))  # fmt: skip
    with atomic_path(Path(target)) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
        for path in files:
            info = zipfile.ZipInfo(path.relative_to(directory).as_posix(), date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())


def publish_zip(work: Path, target: Path) -> None:
    """Pack a finished work directory into ``target`` (:func:`pack_zip`) and delete the work directory."""
    pack_zip(work, target)
    remove_work(work)
