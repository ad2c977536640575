"""Dataset readers (synthetic, PASCAL VOC 2012, COCO 2014) validated into one manifest.

The manifest lists, per split, every image with its mask, size, image-level labels and a digest of both files
(so any changed file changes the manifest that downstream stages depend on). Readers check every
file before anything is written: a missing file, a corrupt image, an image/mask size mismatch, a label value
out of range or an unknown class name raises :class:`DatasetError` naming the file.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from pipeline.data.synthetic import write_synthetic_voc
from pipeline.io import fingerprint, read_label_png, write_json
from pipeline.params import DataParams
from pipeline.registry import Registry
from pipeline.voc import IGNORE_INDEX, VOC_CLASSES

COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip

CLASS_NAMES: dict[str, tuple[str, ...]] = {"synthetic": VOC_CLASSES, "voc": VOC_CLASSES, "coco": COCO_CLASSES}
MANIFEST_NAME = "manifest.json"


class DatasetError(ValueError):
    """A dataset file is missing or invalid; the message starts with the file's path."""


@dataclass(frozen=True)
class Entry:
    """One image of a split: paths relative to the dataset root, size and 0-based class indices."""

    id: str
    image: str
    mask: str
    height: int
    width: int
    labels: tuple[int, ...]
    digest: str = ""  # SHA-256 (16 hex) of the image and mask bytes: a changed file changes the manifest


@dataclass(frozen=True)
class Manifest:
    name: str
    root: Path
    classes: tuple[str, ...]
    splits: dict[str, list[Entry]]

    def image_path(self, entry: Entry) -> Path:
        return self.root / entry.image

    def mask_path(self, entry: Entry) -> Path:
        return self.root / entry.mask

    def entries(self, split: str) -> list[Entry]:
        return self.splits[split]

    def by_id(self) -> dict[str, Entry]:
        """Every entry of every split by image id."""
        return {entry.id: entry for entries in self.splits.values() for entry in entries}

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def load_manifest(directory: Path) -> Manifest:
    """Load ``directory/manifest.json``; a relative root is relative to that directory."""
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise DatasetError(f"{path}: manifest not found (run the prepare_data stage)")
    raw = json.loads(path.read_text())
    root = Path(raw["root"])
    if not root.is_absolute():
        root = Path(directory) / root
    splits = {
        split: [Entry(**{**item, "labels": tuple(item["labels"])}) for item in items]
        for split, items in raw["splits"].items()
    }
    return Manifest(name=raw["name"], root=root, classes=tuple(raw["classes"]), splits=splits)


def _read_ids(path: Path) -> list[str]:
    if not path.is_file():
        raise DatasetError(f"{path}: image list not found")
    ids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise DatasetError(f"{path}: image list is empty")
    return ids


def _read_label_file(path: Path, classes: tuple[str, ...]) -> dict[str, tuple[int, ...]] | None:
    """Optional ``cls_labels.json``: id → class names (or 0-based indices)."""
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DatasetError(f"{path}: not valid JSON: {error}") from error
    labels = {}
    for image_id, names in raw.items():
        indices = []
        for name in names:
            if isinstance(name, int) and 0 <= name < len(classes):
                indices.append(name)
            elif isinstance(name, str) and name in classes:
                indices.append(classes.index(name))
            else:
                raise DatasetError(f"{path}: image '{image_id}' has unknown class {name!r}")
        labels[image_id] = tuple(sorted(set(indices)))
    return labels


def validate_entry(
    root: Path, image_rel: str, mask_rel: str, image_id: str, classes: tuple[str, ...],
    labels: tuple[int, ...] | None,
) -> Entry:  # fmt: skip
    """Open the image and its mask, check sizes and label values; derive labels from the mask if absent."""
    image_path, mask_path = root / image_rel, root / mask_rel
    if not image_path.is_file():
        raise DatasetError(f"{image_path}: image file not found")
    try:
        with Image.open(image_path) as image:
            image.load()
            width, height = image.size
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise DatasetError(f"{image_path}: corrupt or unreadable image ({error})") from error
    if not mask_path.is_file():
        raise DatasetError(f"{mask_path}: mask file not found")
    try:
        mask = read_label_png(mask_path)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DatasetError(f"{mask_path}: corrupt or unreadable mask ({error})") from error
    if mask.shape != (height, width):
        raise DatasetError(
            f"{mask_path}: mask size {mask.shape[1]}×{mask.shape[0]} does not match image {width}×{height}"
        )
    values = np.unique(mask)
    bad = [int(v) for v in values if v != IGNORE_INDEX and v > len(classes)]
    if bad:
        raise DatasetError(f"{mask_path}: label values {bad} out of range 0..{len(classes)} (255 = ignore)")
    if labels is None:
        labels = tuple(int(v) - 1 for v in values if 0 < v < IGNORE_INDEX)
    if not labels:
        raise DatasetError(f"{mask_path}: image '{image_id}' has no foreground class")
    digest = fingerprint(image_path, mask_path)[:16]
    return Entry(image_id, image_rel, mask_rel, height, width, labels, digest)


def _build_splits(
    root: Path, classes: tuple[str, ...], lists: dict[str, Path], image_rel: Callable[[str, str], str],
    mask_rel: Callable[[str, str], str], label_file: Path, progress=None,
) -> dict[str, list[Entry]]:  # fmt: skip
    labels = _read_label_file(label_file, classes)
    splits = {}
    for split, list_path in lists.items():
        ids = _read_ids(list_path)
        items: Iterable[str] = progress(ids, total=len(ids), desc=f"validate {split}") if progress else ids
        entries = []
        for image_id in items:
            given = None
            if labels is not None:
                if image_id not in labels:
                    raise DatasetError(f"{label_file}: no image-level labels for '{image_id}'")
                given = labels[image_id]
            entries.append(
                validate_entry(root, image_rel(split, image_id), mask_rel(split, image_id), image_id, classes, given)
            )
        splits[split] = entries
    return splits


DATASETS: Registry[Callable[..., tuple[Path, str, tuple[str, ...], dict[str, list[Entry]]]]] = Registry("dataset")


@DATASETS.register("synthetic")
def prepare_synthetic(params: DataParams, out_dir: Path, progress=None):
    """Generate the embedded benchmark inside ``out_dir/synthetic`` and validate it like VOC."""
    root = out_dir / "synthetic"
    write_synthetic_voc(params.synthetic, root, progress=progress)
    lists = {s: root / "ImageSets" / "Segmentation" / f"{s}.txt" for s in ("train", "val")}
    splits = _build_splits(
        root, VOC_CLASSES, lists, lambda _s, i: f"JPEGImages/{i}.jpg", lambda _s, i: f"SegmentationClass/{i}.png",
        root / "cls_labels.json", progress,
    )  # fmt: skip
    return Path("synthetic"), "synthetic-voc", VOC_CLASSES, splits


@DATASETS.register("voc")
def prepare_voc(params: DataParams, out_dir: Path, progress=None):
    """PASCAL VOC 2012: ``JPEGImages``, ``{mask_dir}`` PNGs, ``ImageSets/Segmentation/{list}.txt``."""
    voc = params.voc
    root = Path(voc.root).resolve()
    if not root.is_dir():
        raise DatasetError(f"{root}: VOC root not found (set data.voc.root; VOC cannot be downloaded here)")
    lists = {
        "train": root / "ImageSets" / "Segmentation" / f"{voc.train_list}.txt",
        "val": root / "ImageSets" / "Segmentation" / f"{voc.val_list}.txt",
    }
    splits = _build_splits(
        root, VOC_CLASSES, lists, lambda _s, i: f"JPEGImages/{i}.jpg", lambda _s, i: f"{voc.mask_dir}/{i}.png",
        root / "cls_labels.json", progress,
    )  # fmt: skip
    return root, "voc2012", VOC_CLASSES, splits


@DATASETS.register("coco")
def prepare_coco(params: DataParams, out_dir: Path, progress=None):
    """COCO 2014, WSSS layout: ``{train,val}2014/{id}.jpg``, ``SegmentationClass/{train,val}2014/{id}.png``
    (values 0 = background, 1..80 = classes, 255 = ignore), lists ``ImageSets/{list}.txt``."""
    coco = params.coco
    root = Path(coco.root).resolve()
    if not root.is_dir():
        raise DatasetError(f"{root}: COCO root not found (set data.coco.root; COCO cannot be downloaded here)")
    folder = {"train": "train2014", "val": "val2014"}
    lists = {"train": root / "ImageSets" / f"{coco.train_list}.txt", "val": root / "ImageSets" / f"{coco.val_list}.txt"}
    splits = _build_splits(
        root, COCO_CLASSES, lists, lambda s, i: f"{folder[s]}/{i}.jpg",
        lambda s, i: f"SegmentationClass/{folder[s]}/{i}.png", root / "cls_labels.json", progress,
    )  # fmt: skip
    return root, "coco2014", COCO_CLASSES, splits


def prepare_dataset(params: DataParams, out_dir: Path, progress=None) -> Manifest:
    """Generate or validate the selected dataset into a fresh ``out_dir`` with its manifest.

    Work happens in a sibling temporary directory renamed into place at the end, so a failure leaves no
    partial output behind.
    """
    out_dir = Path(out_dir)
    staging = out_dir.with_name(f".{out_dir.name}.partial")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        root, name, classes, splits = DATASETS.get(params.source)(params, staging, progress)
        manifest: dict[str, Any] = {
            "name": name,
            "root": str(root),
            "classes": list(classes),
            "splits": {s: [{**asdict(e), "labels": list(e.labels)} for e in entries] for s, entries in splits.items()},
        }
        write_json(staging / MANIFEST_NAME, manifest)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return load_manifest(out_dir)
