"""Where a dataset's files are: the split lists, each image and mask, the optional image-label file.

One description serves the reader (pipeline/data/datasets.py), which validates the files, and the
``input_files`` stage (pipeline/input_files.py), which digests them so that an edited mask reruns prepare_data.
Paths from params are checked to stay inside the dataset's root.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.data.manifest import DatasetError
from pipeline.io import inside
from pipeline.params import DataParams

SPLITS = ("train", "val")


@dataclass(frozen=True)
class DatasetLayout:
    """A dataset on disk: its root, a list file per split, the image and mask path of an id (relative to the
    root) and the optional label file."""

    root: Path
    lists: dict[str, Path]
    image: Callable[[str, str], str]  # (split, id) → relative path
    mask: Callable[[str, str], str]
    label_file: Path | None  # None: labels from the masks


def _label_path(root: Path, label_file: str | None) -> Path | None:
    return inside(root, label_file) if label_file is not None else None


def voc_layout(root: Path, train_list: str, val_list: str, mask_dir: str, label_file: str | None) -> DatasetLayout:
    """PASCAL VOC 2012: ``JPEGImages``, ``{mask_dir}`` PNGs, ``ImageSets/Segmentation/{list}.txt``."""
    lists = {split: inside(root, "ImageSets", "Segmentation", f"{name}.txt")
             for split, name in zip(SPLITS, (train_list, val_list), strict=True)}  # fmt: skip
    inside(root, mask_dir)
    return DatasetLayout(root, lists, lambda _split, i: f"JPEGImages/{i}.jpg", lambda _split, i: f"{mask_dir}/{i}.png",
                         _label_path(root, label_file))  # fmt: skip


def coco_layout(root: Path, train_list: str, val_list: str, label_file: str | None) -> DatasetLayout:
    """COCO 2014, WSSS layout: ``{train,val}2014/{id}.jpg``, ``SegmentationClass/{train,val}2014/{id}.png``,
    lists ``ImageSets/{list}.txt``."""
    folder = {"train": "train2014", "val": "val2014"}
    lists = {split: inside(root, "ImageSets", f"{name}.txt")
             for split, name in zip(SPLITS, (train_list, val_list), strict=True)}  # fmt: skip
    return DatasetLayout(root, lists, lambda s, i: f"{folder[s]}/{i}.jpg",
                         lambda s, i: f"SegmentationClass/{folder[s]}/{i}.png",
                         _label_path(root, label_file))  # fmt: skip


def dataset_layout(params: DataParams, check: bool = True) -> DatasetLayout:
    """The files of the selected real dataset (VOC or COCO); ``check``: its root and mask folder must exist."""
    if params.source == "voc":
        voc = params.voc
        root = Path(voc.root).resolve()
        layout = voc_layout(root, voc.train_list, voc.val_list, voc.mask_dir, voc.label_file)
        what, key = "VOC", "data.voc.root"
    else:
        coco = params.coco
        root = Path(coco.root).resolve()
        layout = coco_layout(root, coco.train_list, coco.val_list, coco.label_file)
        what, key = "COCO", "data.coco.root"
    if check and not root.is_dir():
        raise DatasetError(f"{root}: {what} root not found (set {key}; datasets cannot be downloaded here)")
    return layout


def list_lines(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, its columns) of each non-blank line of a split list: UTF-8 with or without a byte
    order mark, lines ended by ``\n`` (or ``\r\n``) only, so a U+2028 inside an id stays in it and is refused."""
    text = path.read_bytes().decode("utf-8-sig")
    rows = []
    for number, line in enumerate(text.split("\n"), start=1):
        columns = [column for column in re.split(r"[ \t]+", line.removesuffix("\r")) if column]
        if columns:
            rows.append((number, columns))
    return rows


def listed_ids(path: Path) -> list[str]:
    """The first column of each non-blank line of a split list, unchecked (the reader checks them)."""
    return [columns[0] for _, columns in list_lines(path)]
