"""Torch-side loading: images as normalised tensors, multi-hot labels, training augmentation."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from pipeline.data.manifest import DatasetError, Entry, Manifest
from pipeline.data.sizes import AS_STORED, ViewFit
from pipeline.io import FileTree, read_label
from pipeline.voc import IGNORE_INDEX

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
Normalisation = tuple[tuple[float, float, float], tuple[float, float, float]]  # (mean, std) per channel


def load_image(manifest: Manifest, entry: Entry) -> np.ndarray:
    """RGB uint8 H×W×3; a file that went bad after validation is still named."""
    path = manifest.files.location(entry.image)
    try:
        with Image.open(io.BytesIO(manifest.files.read_bytes(entry.image))) as image:
            return np.array(image.convert("RGB"))
    except OSError as error:
        raise DatasetError(f"{path}: corrupt or unreadable image ({error})") from error


def to_tensor(image: np.ndarray, normalisation: Normalisation = (IMAGENET_MEAN, IMAGENET_STD)) -> torch.Tensor:
    """uint8 H×W×3 → normalised float 3×H×W (ImageNet's statistics unless a model states its own)."""
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in normalisation)
    return (tensor - mean) / std


def multi_hot(labels: tuple[int, ...], num_classes: int) -> torch.Tensor:
    target = torch.zeros(num_classes)
    target[list(labels)] = 1.0
    return target


def augment(
    image: torch.Tensor, crop_size: int, scale_range: tuple[float, float], generator: torch.Generator,
    label: torch.Tensor | None = None, base: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor | None]:  # fmt: skip
    """Random rescale (``base`` times a factor drawn from ``scale_range``: :meth:`pipeline.data.sizes.ViewFit.scale`),
    horizontal flip and a crop of ``crop_size`` (zero-padded), applied alike to an optional (H, W) label map
    (nearest-neighbour rescale, padded with 255)."""
    scale = base * (scale_range[0] + (scale_range[1] - scale_range[0]) * torch.rand(1, generator=generator).item())
    if scale != 1.0:
        size = [max(1, round(image.shape[1] * scale)), max(1, round(image.shape[2] * scale))]
        image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
        if label is not None:
            label = F.interpolate(label[None, None].float(), size=size, mode="nearest")[0, 0].long()
    if torch.rand(1, generator=generator).item() < 0.5:
        image = image.flip(-1)
        label = label.flip(-1) if label is not None else None
    _, height, width = image.shape
    pad_h, pad_w = max(0, crop_size - height), max(0, crop_size - width)
    if pad_h or pad_w:
        image = F.pad(image, (0, pad_w, 0, pad_h))
        label = F.pad(label, (0, pad_w, 0, pad_h), value=IGNORE_INDEX) if label is not None else None
    top = int(torch.randint(0, image.shape[1] - crop_size + 1, (1,), generator=generator))
    left = int(torch.randint(0, image.shape[2] - crop_size + 1, (1,), generator=generator))
    window = (slice(top, top + crop_size), slice(left, left + crop_size))
    return image[:, window[0], window[1]], label[window] if label is not None else None


def read_training_label(files: FileTree, name: str, entry: Entry, num_classes: int) -> np.ndarray:
    """A label map checked for presence, size and range; errors name the file."""
    path = files.location(name)
    label = read_label(files, name, entry.id, (entry.height, entry.width))
    bad = np.unique(label[(label > num_classes) & (label != IGNORE_INDEX)])
    if len(bad):
        raise ValueError(f"{path}: label values {bad.tolist()} out of range 0..{num_classes} (255 = ignore)")
    return label


class ClassificationDataset(Dataset):
    """(image tensor, multi-hot labels) pairs of one split; augmentation when ``crop_size`` is given. With
    ``pixel_labels`` (a label set: PNGs named by image id) each item also holds its label map, augmented alike
    (a two-phase CAM method's coarse seeds); with ``per_image`` (image id → tensor) it holds that tensor last
    (POLE's prompt choices). ``square`` resizes each image (and label map) to ``crop_size`` × ``crop_size``
    before the augmentation, as ViT-PCM trains at 384 × 384; else ``fit`` may first scale each image so that
    its short side is the crop (:mod:`pipeline.data.sizes`)."""

    def __init__(
        self, manifest: Manifest, split: str, crop_size: int | None = None,
        scale_range: tuple[float, float] = (1.0, 1.0), seed: int = 0,
        normalisation: Normalisation = (IMAGENET_MEAN, IMAGENET_STD), pixel_labels: Path | None = None,
        per_image: Mapping[str, torch.Tensor] | None = None, square: bool = False, fit: ViewFit = AS_STORED,
    ) -> None:  # fmt: skip
        self.manifest = manifest
        self.fit = fit
        self.square = square
        self.entries = manifest.entries(split)
        self.crop_size = crop_size
        self.scale_range = scale_range
        self.seed = seed
        self.normalisation = normalisation
        self.pixel_labels = FileTree(pixel_labels) if pixel_labels is not None else None
        self.per_image = per_image
        if per_image is not None:
            missing = [e.id for e in self.entries if e.id not in per_image]
            if missing:
                raise KeyError(f"no per-image input for {len(missing)} {split} images, e.g. {missing[:3]}")
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        entry = self.entries[index]
        image = to_tensor(load_image(self.manifest, entry), self.normalisation)
        label = None
        if self.pixel_labels is not None:
            raw = read_training_label(self.pixel_labels, f"{entry.id}.png", entry, self.manifest.num_classes)
            label = torch.from_numpy(raw.astype(np.int64))
        if self.crop_size is not None and self.square:
            side = (self.crop_size, self.crop_size)
            image = F.interpolate(image[None], size=side, mode="bilinear", align_corners=False)[0]
            if label is not None:
                label = F.interpolate(label[None, None].float(), size=side, mode="nearest")[0, 0].long()
        if self.crop_size is not None:
            generator = torch.Generator().manual_seed(hash((self.seed, self.epoch, index)) & 0x7FFFFFFF)
            base = 1.0 if self.square else self.fit.scale(entry.height, entry.width)
            image, label = augment(image, self.crop_size, self.scale_range, generator, label, base)
        targets = multi_hot(entry.labels, self.manifest.num_classes)
        extras = ([] if label is None else [label]) + ([] if self.per_image is None else [self.per_image[entry.id]])
        return (image, targets, *extras)
