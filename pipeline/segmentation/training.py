"""Segmentation training on pseudo labels or ground truth: seeded, checkpointed every epoch, resumable.

Pixels labelled 255 are ignored by the cross-entropy loss. The epoch loop (seeding, per-epoch checkpoints,
resume after a kill) is the one CAM methods use (:mod:`pipeline.trainer`); the checkpoint lives in
``<out parent>/.work/<out name>-<inputs key>/``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from pipeline.data.loading import augment, load_image, read_training_label, to_tensor
from pipeline.data.manifest import MANIFEST_NAME, Entry, Manifest
from pipeline.data.sizes import AS_STORED, ViewFit, resolve_rescale, scheduled_epochs
from pipeline.device import PLAIN_RUNTIME, TrainingRuntime
from pipeline.execution.world import leave_unless_main
from pipeline.io import FileTree, fingerprint, remove_work, work_directory, write_json, write_torch
from pipeline.metrics import confusion_matrix, summary
from pipeline.params import SegmenterParams
from pipeline.segmentation import SEGMENTERS
from pipeline.trainer import EpochLoader, epoch_seed, run_epochs, spread, write_history
from pipeline.tta import multiscale_sum, size_multiple
from pipeline.voc import IGNORE_INDEX, blend_labels, voc_palette

MODEL_NAME = "model.pt"
CHECKPOINT_NAME = "checkpoint.pt"
TRAIN_FIGURE_IMAGES = 64  # the train-set mIoU: a fixed subset this size, spread over the split
VAL_IMAGES_SHOWN = 4  # val images in the live log's prediction strips


def label_source(manifest: Manifest, entry: Entry, labels: FileTree | None) -> tuple[FileTree, str]:
    """Where an image's training label is: its pseudo-label PNG in ``labels``, or the ground truth when None."""
    return (manifest.files, entry.mask) if labels is None else (labels, f"{entry.id}.png")


def segmenter_fit(manifest: Manifest, params: SegmenterParams) -> ViewFit:
    """How the segmenter sees images, in training and prediction (``segmenter.rescale``,
    :mod:`pipeline.data.sizes`)."""
    return resolve_rescale(params.rescale, params.crop_size, manifest.sizes(), "segmenter")


class SegmentationDataset(Dataset):
    """(image, label) pairs of the train split (or ``split``, with ground truth) with joint random scale (after
    ``fit``), flip and crop (label padded with 255)."""

    def __init__(self, manifest: Manifest, labels: Path | None, params: SegmenterParams, seed: int,
                 fit: ViewFit = AS_STORED, split: str = "train") -> None:  # fmt: skip
        self.manifest, self.params, self.seed, self.fit = manifest, params, seed, fit
        self.labels = FileTree(labels) if labels is not None else None
        self.entries = manifest.entries(split)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(epoch_seed(epoch_seed(self.seed, self.epoch), index))
        image, label = self.pair(index)
        return augment(image, self.params.crop_size, self.params.scale_range, generator, label,
                       self.fit.scale(*image.shape[-2:]))  # fmt: skip

    def pair(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The image (normalised) and its training label, as stored."""
        entry = self.entries[index]
        files, name = label_source(self.manifest, entry, self.labels)
        label = read_training_label(files, name, entry, self.manifest.num_classes).astype(np.int64)
        return to_tensor(load_image(self.manifest, entry)), torch.from_numpy(label)


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Pixel-wise cross-entropy with 255 ignored (mean over the labelled pixels)."""
    return F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)


def build_segmenter(params: SegmenterParams, num_classes: int) -> torch.nn.Module:
    """The named network with ``num_classes`` outputs (background included)."""
    return SEGMENTERS.get(params.network)(params, num_classes)


def _optimizer(model: torch.nn.Module, params: SegmenterParams, steps: int):
    if params.optimizer == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=params.lr, momentum=params.momentum,
                                    weight_decay=params.weight_decay)  # fmt: skip
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    poly = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: (1 - min(step, steps - 1) / steps) ** params.poly_power
    )
    return optimizer, poly


def training_inputs_key(
    manifest_dir: Path, labels: Path | None, params: SegmenterParams, seed: int,
    runtime: TrainingRuntime = PLAIN_RUNTIME,
) -> str:  # fmt: skip
    settings = json.dumps({"seed": seed, "labels": "ground truth" if labels is None else "pseudo",
                           **params.model_dump(mode="json"), **runtime.key_settings()},
                          sort_keys=True)  # fmt: skip
    return fingerprint(Path(manifest_dir) / MANIFEST_NAME, settings, *([Path(labels)] if labels is not None else []))


def train_segmenter(
    manifest: Manifest, manifest_dir: Path, labels: Path | None, params: SegmenterParams, seed: int,
    device: torch.device, out_dir: Path, name: str, runtime: TrainingRuntime = PLAIN_RUNTIME,
) -> tuple[dict[str, Any], list[dict[str, float]]]:  # fmt: skip
    """Train on ``labels`` (a :class:`~pipeline.io.LabelSet` path; None = ground truth); write model.pt,
    loss.csv, metrics.json.

    Returns the metrics and the per-epoch loss history.
    """
    work = work_directory(out_dir, training_inputs_key(manifest_dir, labels, params, seed, runtime))
    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = build_segmenter(params, manifest.num_classes + 1).to(device)
    fit = segmenter_fit(manifest, params)
    dataset = SegmentationDataset(manifest, labels, params, seed, fit)
    loader = EpochLoader(dataset, params.batch_size, seed, runtime)
    epochs = scheduled_epochs(params.epochs, params.min_steps, loader.batches)
    optimizer, scheduler = _optimizer(model, params, epochs * loader.batches)

    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[dict[str, torch.Tensor], int]:
        images, targets = batch[0].to(device), batch[1].to(device)
        return {"cross_entropy": segmentation_loss(model(images), targets)}, int((targets != IGNORE_INDEX).sum())

    validation = SegmentationDataset(manifest, None, params, seed, fit, split="val")

    def validate(epoch: int) -> dict[str, float]:  # logged only: the last epoch is always the one kept
        return {"val_mIoU": miou_figure(model, validation, device, runtime.validation_images)["miou"]}

    def images(epoch: int) -> dict[str, Any]:
        if not runtime.images_every or epoch % runtime.images_every:
            return {}
        return {f"val/epoch-{epoch:03d}.png": prediction_strip(model, validation, device, VAL_IMAGES_SHOWN)}

    history = run_epochs(name, model, optimizer, scheduler, loader, step, epochs, seed, work / CHECKPOINT_NAME,
                         after_epoch=validate if runtime.validation_images else None, runtime=runtime,
                         live_out=out_dir, epoch_images=images, system=runtime.system)  # fmt: skip
    leave_unless_main(runtime.world)
    out_dir.mkdir(parents=True, exist_ok=True)
    saved = {"params": params.model_dump(mode="json"), "classes": list(manifest.classes),
             "state_dict": model.state_dict()}  # fmt: skip
    write_torch(out_dir / MODEL_NAME, saved)
    write_history(out_dir / "loss.csv", history)
    metrics = {"train_loss": history[-1]["loss"], "epochs": epochs, "steps": epochs * loader.batches,
               "rescale": fit.mode, "train_median_size": manifest.sizes().describe(), **runtime.metrics(),
               "labels": "ground truth" if labels is None else str(labels),
               "train": miou_figure(model, dataset, device, TRAIN_FIGURE_IMAGES)}  # fmt: skip
    write_json(out_dir / "metrics.json", metrics)
    remove_work(work)
    return metrics, history


@torch.no_grad()
def miou_figure(model: torch.nn.Module, dataset: SegmentationDataset, device: torch.device, limit: int) -> dict:
    """mIoU against the dataset's labels on a fixed subset of ``limit`` images spread over its split, each seen
    once at the scale training saw it (no flip): with the train split's training labels, how well the network
    fits what it learned; with val's ground truth, the per-epoch validation figure."""
    model.eval()
    num_labels = dataset.manifest.num_classes + 1
    confusion = np.zeros((num_labels, num_labels), np.int64)
    indices = spread(len(dataset), limit)
    for index in indices:
        image, label = dataset.pair(index)
        confusion += confusion_matrix(_predict(model, image, dataset.fit, device), label.numpy(), num_labels)
    return {"images": len(indices), "miou": summary(confusion)["miou"]}


def _predict(model: torch.nn.Module, image: torch.Tensor, fit: ViewFit, device: torch.device) -> np.ndarray:
    logits, _ = multiscale_sum(model, image.to(device), (fit.scale(*image.shape[-2:]),), False, size_multiple(model))
    return logits.argmax(0).cpu().numpy()


@torch.no_grad()
def prediction_strip(model: torch.nn.Module, dataset: SegmentationDataset, device: torch.device, count: int):
    """A PIL image of ``count`` images spread over the dataset's split, one row each: the image, its label and
    the network's prediction, classes blended over the image in the VOC palette."""
    from PIL import Image

    model.eval()
    palette = voc_palette()
    rows = []
    for index in spread(len(dataset), count):
        entry = dataset.entries[index]
        image, label = dataset.pair(index)
        pixels = load_image(dataset.manifest, entry)
        predicted = _predict(model, image, dataset.fit, device)
        rows.append(np.concatenate([pixels, blend_labels(pixels, label.numpy(), palette),
                                    blend_labels(pixels, predicted, palette)], axis=1))  # fmt: skip
    width = max(row.shape[1] for row in rows)
    rows = [np.pad(row, ((0, 2), (0, width - row.shape[1]), (0, 0)), constant_values=255) for row in rows]
    return Image.fromarray(np.concatenate(rows, axis=0))


def load_segmenter(checkpoint: Path, params: SegmenterParams, num_classes: int, device: torch.device):
    """Rebuild the network of ``params`` (weights: none) and load a model.pt written by train_segmenter."""
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"{checkpoint}: segmentation model not found (run its training stage)")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model = build_segmenter(params.model_copy(update={"weights": "none"}), num_classes)
    model.load_state_dict(state["state_dict"])
    return model.to(device).eval()
