"""The dataset manifest every stage after prepare_data reads: per split, each image with its mask, size,
image-level labels and a digest of both files (so any changed file changes the manifest the stages depend on).

Kept apart from the readers (pipeline/data/datasets.py) so that stages importing it do not depend on them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.data.sizes import SplitSizes, split_sizes
from pipeline.io import FileTree, decode_label_png, id_problem

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
    """A dataset: its root (a directory, or a zip of one for the embedded benchmark), classes and splits."""

    name: str
    root: Path
    classes: tuple[str, ...]
    splits: dict[str, list[Entry]]
    labels: dict[str, Any] = field(default_factory=dict)  # LabelReport.summary(): format, drops, contradictions
    files: FileTree = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "files", FileTree(self.root))

    def read_mask(self, entry: Entry) -> np.ndarray:
        """The ground-truth class indices of an image (255 = ignore)."""
        return decode_label_png(self.files.read_bytes(entry.mask), self.files.location(entry.mask))

    def entries(self, split: str) -> list[Entry]:
        return self.splits[split]

    def sizes(self, split: str = "train") -> SplitSizes:
        """The median image sides of ``split`` (what size-derived defaults follow)."""
        return split_sizes((entry.height, entry.width) for entry in self.splits[split])

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
    for problem in filter(None, (id_problem(entry.id) for entries in splits.values() for entry in entries)):
        raise DatasetError(f"{path}: bad image id: {problem}")
    return Manifest(
        name=raw["name"], root=root, classes=tuple(raw["classes"]), splits=splits, labels=raw.get("labels", {})
    )
