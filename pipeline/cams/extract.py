"""CAM extraction: multi-scale + flip inference, ReLU, per-class max normalisation, cached per image."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from pipeline.cams.contract import CamMethod
from pipeline.cams.inputs import inputs_settings
from pipeline.cams.params import CamInferenceParams, CamParams
from pipeline.cams.registry import CAM_METHODS
from pipeline.cams.store import CamStoreWriter
from pipeline.cams.train import describe_backbone, load_cam_method, view_fit
from pipeline.data.loading import load_image, to_tensor
from pipeline.data.manifest import MANIFEST_NAME, Entry, Manifest
from pipeline.data.sizes import AS_STORED, ViewFit, scaled_views
from pipeline.device import autocast, resolve_device
from pipeline.execution.chunks import ImageJob, run_images
from pipeline.execution.params import ExecutionParams
from pipeline.io import fingerprint, publish_zip, work_directory
from pipeline.tta import multiscale_sum, stretched_sum


def multiscale_cam(
    model: CamMethod, image: torch.Tensor, classes: list[int], scales: tuple[float, ...], flip: bool,
    head: str = "cams", fit: str = "pad", square_size: int | None = None,
) -> torch.Tensor:  # fmt: skip
    """Σ over scales (and flips) of ReLU(CAM) resized to the image, divided by each class's max; ``head``
    ``decoder`` takes the maps from the method's ``infer_decoder`` instead of ``infer_cams``; ``fit``
    ``stretch`` takes CLIP-ES's views instead (:func:`pipeline.tta.stretched_sum`: each view's maps normalised
    before upsampling, their mean returned), ``square`` views of ``square_size`` × ``square_size``.

    ``image`` is normalised as the model expects: one (3, H, W) image, or a batch (N, 3, H, W) of images of one
    size and the same ``classes``, seen together in one forward per view; each view is padded to the model's
    ``size_multiple`` (:func:`pipeline.tta.multiscale_sum`). Returns (len(classes), H, W) in [0, 1] (or
    (N, len(classes), H, W)), after the background map (normalised alike) when the method has one.
    """
    if not classes:  # an image kept as a negative (data.no_foreground: keep): all background
        return torch.ones(*image.shape[:-3], int(model.has_background), *image.shape[-2:], device=image.device)
    infer = model.infer_decoder if head == "decoder" else model.infer_cams

    def maps(batch: torch.Tensor) -> torch.Tensor:
        return F.relu(infer(batch, classes))

    if fit == "stretch":
        total, views = stretched_sum(maps, image, scales, flip, model.size_multiple)
        return total.detach() / views
    square = square_size if fit == "square" else None
    total = multiscale_sum(maps, image, scales, flip, model.size_multiple, square)[0].detach()
    return total / (total.amax(dim=(-2, -1), keepdim=True) + 1e-5)


def extraction_classes(labels: tuple[int, ...], inference: CamInferenceParams, num_classes: int) -> list[int]:
    """The classes whose maps an image gets: its labels, except for a segmentation decoder on the val split,
    which reads no label there (every class: its label-free softmax, so no val figure leans on the ground truth
    labels)."""
    if inference.head == "decoder" and inference.split == "val":
        return list(range(num_classes))
    return list(labels)


# Inference settings added after CAM stores existed, with their defaults: recorded only where they differ, so the
# keys of the stores made before them stay valid, and so does DVC's run-cache.
LATER_SETTINGS = {"head": "cams", "fit": "pad", "square_size": None, "precision": "fp32", "batch_size": 1}


def later_settings(inference: CamInferenceParams) -> dict:
    """``head``, ``fit``, ``square_size``, ``precision`` and ``batch_size`` where they differ from their defaults."""
    chosen = inference.model_dump(mode="json", include=set(LATER_SETTINGS))
    return {key: value for key, value in chosen.items() if value != LATER_SETTINGS[key]}


def inference_settings(cam: CamParams) -> dict:
    """The inference params, the later ones left out at their defaults."""
    return {**cam.inference.model_dump(mode="json", exclude=set(LATER_SETTINGS)), **later_settings(cam.inference)}


def cam_inputs_key(manifest_dir: Path, checkpoint: Path, cam: CamParams) -> str:
    """Identity of everything the CAMs depend on (dataset manifest, weights, extra inputs, inference settings)."""
    settings = json.dumps({"method": cam.method, **inputs_settings(cam.selected()),
                           **inference_settings(cam)}, sort_keys=True)  # fmt: skip
    return fingerprint(Path(manifest_dir) / MANIFEST_NAME, Path(checkpoint), settings)


def fitted_to_crop(fit: ViewFit) -> dict:
    """What a store records of views relative to a crop fit (nothing for images seen as stored)."""
    return {} if fit.mode == "none" else {"rescale": fit.mode, "crop_size": fit.crop_size}


def inference_fit(cam: CamParams, manifest: Manifest) -> ViewFit:
    """The scale each image's views are relative to: as the method's training saw it (its ``rescale``), except
    for square views, whose size is ``square_size``."""
    return view_fit(cam, manifest) if cam.inference.fit != "square" else AS_STORED


class CamJob(ImageJob):
    """One image's multi-scale CAMs into the work store; a GPU worker's when the cluster has them."""

    uses_gpu = True

    def __init__(self, key: str, work: Path, manifest_dir: Path, cam: CamParams, checkpoint: Path, device: str) -> None:
        super().__init__(key, work)
        self.manifest_dir, self.cam, self.checkpoint, self.device = manifest_dir, cam, checkpoint, device

    def load(self) -> None:
        from pipeline.data.manifest import load_manifest

        self.manifest = load_manifest(self.manifest_dir)
        self.by_id = self.manifest.by_id()
        self.torch_device = resolve_device(self.device)
        self.model = load_cam_method(self.checkpoint, self.cam, tuple(self.manifest.classes), self.torch_device)
        self.background = CAM_METHODS.get(self.cam.method).has_background
        self.store = CamStoreWriter(self.work)
        self.training_fit = inference_fit(self.cam, self.manifest)

    def done(self, image_id: str) -> bool:
        return CamStoreWriter(self.work).has(image_id)

    def groups(self, image_ids: list[str]) -> list[list[str]]:
        """Images of one size and one class list, up to ``inference.batch_size`` together, where the method's
        maps of an image do not depend on the others in its batch (``batched_inference``)."""
        size = self.cam.inference.batch_size if self.model.batched_inference else 1
        if size == 1:
            return super().groups(image_ids)
        open_groups: dict[tuple, list[str]] = {}
        groups = []
        for image_id in image_ids:
            entry = self.by_id[image_id]
            key = (entry.height, entry.width, tuple(self.classes(entry)))
            if key not in open_groups or len(open_groups[key]) == size:
                open_groups[key] = []
                groups.append(open_groups[key])
            open_groups[key].append(image_id)
        return groups

    def classes(self, entry: Entry) -> list[int]:
        return extraction_classes(entry.labels, self.cam.inference, len(self.manifest.classes))

    def compute(self, image_id: str) -> None:
        self.compute_group([image_id])

    def compute_group(self, image_ids: list[str]) -> None:
        inference, model = self.cam.inference, self.model
        entries = [self.by_id[image_id] for image_id in image_ids]
        images = torch.stack([to_tensor(load_image(self.manifest, entry), (model.input_mean, model.input_std))
                              for entry in entries]).to(self.torch_device)  # fmt: skip
        classes = self.classes(entries[0])
        scales = scaled_views(inference.scales, self.training_fit.scale(entries[0].height, entries[0].width))
        with autocast(self.torch_device, inference.precision):
            cams = multiscale_cam(model, images, classes, scales, inference.flip, inference.head, inference.fit,
                                  inference.square_size)  # fmt: skip
        for entry, maps in zip(entries, cams.float().cpu().numpy(), strict=True):
            self.store.write(entry.id, maps, classes, self.background)


def extract_cams(
    manifest: Manifest, manifest_dir: Path, cam: CamParams, checkpoint: Path, device: str, out: Path,
    execution: ExecutionParams, stage: str = "extract_cams",
) -> dict[str, int]:  # fmt: skip
    """Fill the CAM store for the configured split on ``execution``'s runner, resuming a killed run, then
    publish it as the zip ``out``; ``device`` is resolved on each worker."""
    key = cam_inputs_key(manifest_dir, checkpoint, cam)
    work = work_directory(out, key)
    background = CAM_METHODS.get(cam.method).has_background
    store = CamStoreWriter(
        work, {"classes": list(manifest.classes), "method": cam.method, "backbone": describe_backbone(cam),
               "inputs_key": key, **({"background": True} if background else {}), "split": cam.inference.split,
               "scales": list(cam.inference.scales), "flip": cam.inference.flip, **later_settings(cam.inference),
               **fitted_to_crop(inference_fit(cam, manifest))},
    )  # fmt: skip
    ids = [entry.id for entry in manifest.entries(cam.inference.split)]
    counts = run_images(stage, CamJob(key, work, manifest_dir, cam, checkpoint, device), ids, execution)
    store.finish()
    publish_zip(work, out)
    return counts
