"""Training any registered CAM method through its contract: the shared epoch loop, a model.pt, label metrics.

The checkpoint of the epoch loop (:mod:`pipeline.trainer`) lives in ``<out parent>/.work/<out name>-<inputs
key>/``, as the segmenters' does, so a killed ``train_classifier`` resumes after its last finished epoch and
ends with the same weights and loss history. ``model.pt`` holds the method's :meth:`saved_state` with its
name, params and class names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from pipeline.cams.contract import BuildContext, CamMethod
from pipeline.cams.inputs import inputs_settings, method_inputs
from pipeline.cams.network_params import CamTrainingParams
from pipeline.cams.params import CamParams
from pipeline.cams.registry import CAM_METHODS
from pipeline.data.loading import ClassificationDataset
from pipeline.data.manifest import MANIFEST_NAME, Manifest
from pipeline.data.sizes import AS_STORED, ViewFit, resolve_rescale, scheduled_epochs
from pipeline.device import PLAIN_RUNTIME, TrainingRuntime
from pipeline.execution.world import leave_unless_main
from pipeline.io import fingerprint, remove_work, work_directory, write_json, write_torch
from pipeline.live import empty_curves
from pipeline.tracking import progress
from pipeline.trainer import EpochLoader, run_epochs, spread, write_history
from pipeline.tta import pad_to_multiple

MODEL_NAME = "model.pt"
CHECKPOINT_NAME = "checkpoint.pt"
TRAIN_FIGURE_IMAGES = 256  # the train-set label figure: a fixed subset this size, spread over the split


def training_inputs_key(manifest_dir: Path, cam: CamParams, seed: int, runtime: TrainingRuntime = PLAIN_RUNTIME) -> str:
    """Identity of a training run: the dataset manifest, the method, its params and extra inputs, the seed and
    the runtime settings that change numbers (a checkpoint is resumed only by a run that computes alike)."""
    settings = json.dumps({"seed": seed, "method": cam.method, **inputs_settings(cam.selected()),
                           **cam.selected().model_dump(mode="json"), **runtime.key_settings()},
                          sort_keys=True)  # fmt: skip
    return fingerprint(Path(manifest_dir) / MANIFEST_NAME, settings)


def train_cam_method(
    manifest: Manifest, manifest_dir: Path, cam: CamParams, seed: int, device: torch.device, out_dir: Path,
    runtime: TrainingRuntime = PLAIN_RUNTIME,
) -> dict[str, Any]:
    """Train the selected method on the train split; write model.pt, loss.csv and metrics.json into ``out_dir``.
    ``runtime``: the DataLoader's workers and the precision (:class:`pipeline.device.TrainingRuntime`)."""
    params = cam.selected()
    work = work_directory(out_dir, training_inputs_key(manifest_dir, cam, seed, runtime))
    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    context = BuildContext(class_names=tuple(manifest.classes), device=device, inputs=method_inputs(params))
    model = CAM_METHODS.get(cam.method).build(params, context).to(device)
    seeds = context.inputs.get("coarse_seeds")  # a two-phase method's pixel targets
    trains = type(params).trains
    fit = view_fit(cam, manifest)
    history, steps = train_epochs(model, params.training, manifest, seed, device, work, seeds, runtime,
                                  fit, out_dir) if trains else ([], 0)  # fmt: skip
    leave_unless_main(runtime.world)
    save_cam_method(out_dir / MODEL_NAME, cam, tuple(manifest.classes), model)
    write_history(out_dir / "loss.csv", history)  # a training-free method: the header alone
    if not trains:
        empty_curves(out_dir)
    metrics = {"method": cam.method, "backbone": describe_backbone(cam), "epochs": len(history),
               "steps": steps, **runtime.metrics(),
               **({"rescale": fit.mode, "train_median_size": manifest.sizes().describe()} if trains else {}),
               "train_loss": history[-1]["loss"] if history else None,
               "train": evaluate_labels(model, manifest, "train", device, fit, TRAIN_FIGURE_IMAGES),
               "val": evaluate_labels(model, manifest, "val", device, fit)}  # fmt: skip
    write_json(out_dir / "metrics.json", metrics)
    remove_work(work)
    return metrics


def train_epochs(
    model: CamMethod, training: CamTrainingParams, manifest: Manifest, seed: int, device: torch.device, work: Path,
    pixel_labels: Path | None = None, runtime: TrainingRuntime = PLAIN_RUNTIME, fit: ViewFit = AS_STORED,
    live_out: Path | None = None,
) -> tuple[list[dict[str, float]], int]:  # fmt: skip
    """The shared epoch loop on the train split's image labels (and ``pixel_labels``' maps, cropped alike, for
    a two-phase method, and the method's per-image inputs), resumable from ``work``, with images fitted to the
    crop by ``fit`` and the epochs raised to ``training.min_steps`` (:mod:`pipeline.data.sizes`); the loss
    history and the number of optimiser steps. Each epoch logs the val label figures of
    ``runtime.validation_images`` val images, and ``live_out`` gets the live curves (:mod:`pipeline.live`)."""
    dataset = ClassificationDataset(manifest, "train", training.crop_size, training.scale_range, seed,
                                    (model.input_mean, model.input_std), pixel_labels,
                                    model.per_image_inputs(), square=model.square_inputs, fit=fit)  # fmt: skip
    loader = EpochLoader(dataset, training.batch_size, seed, runtime)
    training = training.model_copy(update={"epochs": scheduled_epochs(training.epochs, training.min_steps,
                                                                      loader.batches)})  # fmt: skip
    groups = model.parameter_groups(training)
    optimizer = model.optimizer(groups, training)
    schedules = [model.lr_schedule(group["name"], training, loader.batches) for group in groups]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedules)

    def step(batch: tuple[torch.Tensor, ...]) -> tuple[dict[str, torch.Tensor], int]:
        images, targets, *extras = (part.to(device) for part in batch)
        return model.training_step(images, targets, *extras), len(images)

    def validate(epoch: int) -> dict[str, float]:  # logged only: the last epoch is always the one kept
        figures = evaluate_labels(model, manifest, "val", device, fit, runtime.validation_images, show_progress=False)
        return {f"val_{key}": value for key, value in figures.items()}

    history = run_epochs("train_classifier", model, optimizer, scheduler, loader, step, training.epochs, seed,
                         work / CHECKPOINT_NAME, model.after_optimizer_step,
                         validate if runtime.validation_images else None, runtime, live_out,
                         system=runtime.system)  # fmt: skip
    return history, training.epochs * loader.batches


def describe_backbone(cam: CamParams) -> str:
    """The selected method's backbone in a few words (``resnet10``, ``vit deit_small_patch16_224 p8 d96×4``)."""
    params = cam.selected()
    if "coarse_model" in type(params).extra_inputs:  # its network is the first phase's (CLIMS: plain CAM's)
        first = describe_backbone(cam.model_copy(update={"method": type(params).coarse_method}))
        return f"{first} + clip" if type(params).uses_clip() else first
    if type(params).uses_clip():
        return "clip"
    if getattr(params, "backbone", "vit") == "resnet":  # ViT-PCM's methods have no choice: a ViT
        return params.resnet.arch
    vit = params.vit
    shape = "".join(f" {k}={getattr(vit, k)}" for k in ("patch_size", "embed_dim", "depth") if getattr(vit, k))
    return f"vit {vit.model}{shape}"


def view_fit(cam: CamParams, manifest: Manifest) -> ViewFit:
    """How the selected method's training fitted images to its crop, which its inference views follow (no fit
    for a method that does not train, or trains on whole images made square)."""
    params = cam.selected()
    if not type(params).trains or getattr(params, "square_inputs", False):
        return AS_STORED
    training = params.training
    return resolve_rescale(training.rescale, training.crop_size, manifest.sizes(), f"cam.{cam.method}.training")


def resized(image: torch.Tensor, scale: float) -> torch.Tensor:
    """A (3, H, W) image resized (bilinear) by ``scale``; itself at 1."""
    if scale == 1.0:
        return image
    size = (max(1, round(image.shape[-2] * scale)), max(1, round(image.shape[-1] * scale)))
    return F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]


@torch.no_grad()
def evaluate_labels(
    model: CamMethod, manifest: Manifest, split: str, device: torch.device, fit: ViewFit = AS_STORED,
    limit: int | None = None, show_progress: bool = True,
) -> dict[str, float]:  # fmt: skip
    """Image-label quality of the method's image scores: exact match, macro F1 and mAP at threshold 0.5, on
    ``split`` (a fixed subset of at most ``limit`` images spread over it), each image seen at the scale
    training saw it (``fit``); a progress bar unless ``show_progress`` is off (the per-epoch figure)."""
    from torchmetrics.classification import MultilabelAveragePrecision, MultilabelExactMatch, MultilabelF1Score

    model.eval()
    k = manifest.num_classes
    local = {"sync_on_compute": False}  # rank 0's figure of its own images: no gather from other processes
    exact = MultilabelExactMatch(num_labels=k, **local)
    f1 = MultilabelF1Score(num_labels=k, average="macro", **local)
    average_precision = MultilabelAveragePrecision(num_labels=k, average="macro", **local)
    dataset = ClassificationDataset(manifest, split, normalisation=(model.input_mean, model.input_std))
    indices = spread(len(dataset), limit)
    for index in progress(indices, desc=f"classify {split}") if show_progress else indices:
        image, target = dataset[index]
        image = resized(image, fit.scale(*image.shape[-2:]))
        batch = pad_to_multiple(image[None].to(device), model.size_multiple)  # as CAM extraction pads its views
        scores = torch.sigmoid(model.image_scores(batch)).cpu()
        target = target[None].long()
        exact.update(scores, target)
        f1.update(scores, target)
        average_precision.update(scores, target)
    return {
        "exact_match": float(exact.compute()),
        "f1_macro": float(f1.compute()),
        "mAP": float(average_precision.compute()),
    }


def save_cam_method(path: Path, cam: CamParams, class_names: tuple[str, ...], model: CamMethod) -> None:
    """Write model.pt: the method's name, params, class names and :meth:`saved_state` (stable bytes)."""
    write_torch(path, {"method": cam.method, "params": cam.selected().model_dump(mode="json"),
                       "classes": list(class_names), "state_dict": model.saved_state()})  # fmt: skip


def load_cam_method(checkpoint: Path, cam: CamParams, class_names: tuple[str, ...], device: torch.device) -> CamMethod:
    """Rebuild the selected method (no pretrained weights loaded) and load a model.pt written by training."""
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"{checkpoint}: CAM model not found (run train_classifier)")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if state["method"] != cam.method:
        raise ValueError(f"{checkpoint}: trained with CAM method '{state['method']}', params select '{cam.method}'")
    context = BuildContext(class_names=tuple(class_names), device=device, pretrained=False,
                           inputs=method_inputs(cam.selected()))  # fmt: skip
    model = CAM_METHODS.get(cam.method).build(cam.selected(), context)
    try:
        model.load_saved(state["state_dict"])
    except ValueError as error:
        raise ValueError(f"{checkpoint}: {error} (params changed since training?)") from None
    return model.to(device).eval()
