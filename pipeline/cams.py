"""CAM extraction: multi-scale + flip inference, ReLU, per-class max normalisation, cached per image."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from pipeline.cam_store import CamStoreWriter
from pipeline.data.loading import load_image, to_tensor
from pipeline.data.manifest import MANIFEST_NAME, Manifest
from pipeline.io import fingerprint, pack_zip, remove_work, work_directory
from pipeline.params import CamParams
from pipeline.tracking import progress
from pipeline.training import load_cam_model
from pipeline.tta import padded_forward, size_multiple


@torch.no_grad()
def multiscale_cam(
    cam_fn, image: torch.Tensor, classes: list[int], scales: tuple[float, ...], flip: bool, multiple: int = 1
) -> torch.Tensor:
    """Σ over scales (and flips) of ReLU(CAM) resized to the image, divided by each class's max.

    ``cam_fn`` maps a (B, 3, h, w) batch to (B, K, h', w') raw CAMs; each scaled image is padded to sides
    divisible by ``multiple`` (:func:`pipeline.tta.padded_forward`). Returns (len(classes), H, W) in [0, 1].
    """
    height, width = image.shape[-2:]
    total = torch.zeros(len(classes), height, width, device=image.device)
    if not classes:  # an image kept as a negative (data.no_foreground: keep)
        return total
    for scale in scales:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        scaled = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)
        batch = torch.cat([scaled, scaled.flip(-1)]) if flip else scaled
        cams = F.relu(padded_forward(cam_fn, batch, multiple)[:, classes])
        if flip:
            cams = cams[:1] + cams[1:].flip(-1)
        total += F.interpolate(cams, size=(height, width), mode="bilinear", align_corners=False)[0]
    return total / (total.amax(dim=(1, 2), keepdim=True) + 1e-5)


def cam_inputs_key(manifest_dir: Path, checkpoint: Path, cam: CamParams) -> str:
    """Identity of everything the CAMs depend on (dataset manifest, weights, inference settings)."""
    settings = json.dumps({"method": cam.method, **cam.inference.model_dump(mode="json")}, sort_keys=True)
    return fingerprint(Path(manifest_dir) / MANIFEST_NAME, Path(checkpoint), settings)


def extract_cams(
    manifest: Manifest, manifest_dir: Path, cam: CamParams, checkpoint: Path, device: torch.device, out: Path
) -> dict[str, int]:
    """Fill the CAM store for the configured split, resuming a killed run, then publish it as the zip ``out``."""
    key = cam_inputs_key(manifest_dir, checkpoint, cam)
    work = work_directory(out, key)
    store = CamStoreWriter(
        work, {"classes": list(manifest.classes), "method": cam.method, "inputs_key": key,
               "split": cam.inference.split, "scales": list(cam.inference.scales), "flip": cam.inference.flip},
    )  # fmt: skip
    entries = manifest.entries(cam.inference.split)
    todo = [e for e in entries if not store.has(e.id)]
    model = load_cam_model(checkpoint, cam, manifest.num_classes, device) if todo else None
    for entry in progress(todo, total=len(todo), desc="extract_cams"):
        image = to_tensor(load_image(manifest, entry)).to(device)
        classes = list(entry.labels)
        cams = multiscale_cam(model.cam, image, classes, cam.inference.scales, cam.inference.flip, size_multiple(model))
        store.write(entry.id, cams.cpu().numpy(), classes)
    store.finish()
    pack_zip(work, out)
    remove_work(work)
    return {"images": len(entries), "computed": len(todo), "resumed": len(entries) - len(todo)}
