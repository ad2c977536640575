"""Classifier training for CAM methods: seeded, one checkpoint out, per-epoch loss and label metrics."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from torchmetrics.classification import MultilabelAveragePrecision, MultilabelExactMatch, MultilabelF1Score

from pipeline.data.loading import ClassificationDataset
from pipeline.data.manifest import Manifest
from pipeline.device import seed_everything
from pipeline.io import atomic_path, write_json, write_torch
from pipeline.methods import CAM_METHODS
from pipeline.params import CamParams
from pipeline.tracking import info, progress

CHECKPOINT_NAME = "model.pt"


def train_cam_classifier(
    manifest: Manifest, cam: CamParams, seed: int, device: torch.device, out_dir: Path
) -> dict[str, Any]:
    """Train the selected CAM method's classifier on the train split; evaluate image labels on val."""
    method = CAM_METHODS.get(cam.method)
    params = cam.selected()
    generator = seed_everything(seed)
    model = method.build(params, manifest.num_classes).to(device)
    dataset = ClassificationDataset(manifest, "train", params.crop_size, params.scale_range, seed)
    loader = DataLoader(dataset, batch_size=params.batch_size, shuffle=True, generator=generator, drop_last=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    steps = params.epochs * len(loader)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=params.lr, total_steps=steps, pct_start=0.15)

    history = []
    for epoch in progress(range(params.epochs), total=params.epochs, desc="train_classifier epochs"):
        dataset.epoch = epoch
        model.train()
        total, count = 0.0, 0
        for images, targets in loader:
            images, targets = images.to(device), targets.to(device)
            loss = method.loss(model(images), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item() * len(images)
            count += len(images)
        history.append({"epoch": epoch + 1, "loss": total / count})
        info(f"epoch {epoch + 1}/{params.epochs} loss {total / count:.4f}")

    out_dir.mkdir(parents=True, exist_ok=True)
    write_torch(
        out_dir / CHECKPOINT_NAME,
        {"method": cam.method, "params": params.model_dump(mode="json"), "classes": list(manifest.classes),
         "state_dict": model.state_dict()},
    )  # fmt: skip
    with atomic_path(out_dir / "loss.csv") as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["epoch", "loss"])
        writer.writeheader()
        writer.writerows(history)
    metrics = {"train_loss": history[-1]["loss"], "val": evaluate_labels(model, manifest, "val", device)}
    write_json(out_dir / "metrics.json", metrics)
    return metrics


@torch.no_grad()
def evaluate_labels(model: torch.nn.Module, manifest: Manifest, split: str, device: torch.device) -> dict[str, float]:
    """Image-label quality of the classifier: exact match, macro F1 and mAP at threshold 0.5."""
    model.eval()
    k = manifest.num_classes
    exact = MultilabelExactMatch(num_labels=k)
    f1 = MultilabelF1Score(num_labels=k, average="macro")
    average_precision = MultilabelAveragePrecision(num_labels=k, average="macro")
    for image, target in progress(ClassificationDataset(manifest, split), desc=f"classify {split}"):
        scores = torch.sigmoid(model(image[None].to(device))).cpu()
        target = target[None].long()
        exact.update(scores, target)
        f1.update(scores, target)
        average_precision.update(scores, target)
    return {
        "exact_match": float(exact.compute()),
        "f1_macro": float(f1.compute()),
        "mAP": float(average_precision.compute()),
    }


def load_cam_model(checkpoint: Path, cam: CamParams, num_classes: int, device: torch.device) -> torch.nn.Module:
    """Rebuild the selected method's model and load a checkpoint written by ``train_cam_classifier``."""
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"{checkpoint}: classifier checkpoint not found (run train_classifier)")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if state["method"] != cam.method:
        raise ValueError(f"{checkpoint}: trained with CAM method '{state['method']}', params select '{cam.method}'")
    model = CAM_METHODS.get(cam.method).build(cam.selected().model_copy(update={"weights": "none"}), num_classes)
    model.load_state_dict(state["state_dict"])
    return model.to(device).eval()
