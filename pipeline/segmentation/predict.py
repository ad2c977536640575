"""Inference on the val split: multi-scale + flip softmax averaging, optional CRF or SAMS post-processing.

SAMS post-processing follows §4.4 of FMA-WSSS: the SAM-based seeding module with the segmentation scores in
place of CAMs — here the softmax probabilities of the classes present in the raw prediction — so each
quasi-superpixel takes one class (eq. 8–10).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.data.loading import load_image, to_tensor
from pipeline.data.manifest import MANIFEST_NAME, Manifest
from pipeline.data.sizes import scaled_views
from pipeline.device import autocast, resolve_device
from pipeline.execution.chunks import LabelJob, run_images
from pipeline.execution.params import ExecutionParams
from pipeline.io import fingerprint, publish_zip, work_directory
from pipeline.params import PredictParams, SegmenterParams
from pipeline.proposals.store import ProposalStore
from pipeline.refine.crf import crf_from_probabilities
from pipeline.seeds.sams import sams_seeds
from pipeline.segmentation.training import load_segmenter, segmenter_fit
from pipeline.tta import multiscale_sum, size_multiple


@torch.no_grad()
def multiscale_probabilities(
    model: torch.nn.Module, image: torch.Tensor, scales: tuple[float, ...], flip: bool
) -> torch.Tensor:  # fmt: skip
    """(C, H, W) softmax averaged over the scales (and their horizontal flips), at the image's size."""

    def softmax(batch: torch.Tensor) -> torch.Tensor:
        return F.softmax(model(batch), dim=1)

    total, views = multiscale_sum(softmax, image, scales, flip, size_multiple(model))
    return total / views


def sams_postprocess(probabilities: np.ndarray, params: PredictParams, regions) -> np.ndarray:
    """FMA-WSSS §4.4: SAMS with the probabilities of the predicted classes as scores; with ``sams.background:
    model`` the model's own background probability is scored like a class (as the reference scores its
    segmenter's background channel), else eq. 9's (1 − max_c S^c)^α."""
    present = [int(c) - 1 for c in np.unique(probabilities.argmax(axis=0)) if c > 0]
    if not present:
        return np.zeros(probabilities.shape[1:], dtype=np.uint8)
    foreground = probabilities[[c + 1 for c in present]]
    return sams_seeds(foreground, present, params.sams, regions, background=probabilities[0])


class PredictJob(LabelJob):
    """One val image's prediction (multi-scale softmax, then the post-processing); a GPU worker's when the
    cluster has them."""

    uses_gpu = True

    def __init__(self, key: str, work: Path, manifest_dir: Path, checkpoint: Path, segmenter: SegmenterParams,
                 params: PredictParams, device: str, proposals: Path) -> None:  # fmt: skip
        super().__init__(key, work)
        self.manifest_dir, self.checkpoint, self.segmenter = manifest_dir, checkpoint, segmenter
        self.params, self.device, self.proposals = params, device, proposals

    def load(self) -> None:
        from pipeline.data.manifest import load_manifest
        self.manifest = load_manifest(self.manifest_dir)
        self.by_id = self.manifest.by_id()
        self.torch_device = resolve_device(self.device)
        self.model = load_segmenter(self.checkpoint, self.segmenter, self.manifest.num_classes + 1, self.torch_device)
        self.regions = ProposalStore(self.proposals) if self.params.postprocess == "sams" else None
        self.fit = segmenter_fit(self.manifest, self.segmenter)

    def compute(self, image_id: str) -> None:
        params, image = self.params, load_image(self.manifest, self.by_id[image_id])
        scales = scaled_views(params.scales, self.fit.scale(*image.shape[:2]))  # relative to training's view
        with autocast(self.torch_device, params.precision):
            probabilities = multiscale_probabilities(self.model, to_tensor(image).to(self.torch_device), scales,
                                                     params.flip)  # fmt: skip
        probabilities = probabilities.float().cpu().numpy()
        if params.postprocess == "crf":
            label = crf_from_probabilities(image, probabilities, params.crf)
        elif params.postprocess == "sams":
            label = sams_postprocess(probabilities, params, self.regions.read(image_id, image.shape[:2]))
        else:
            label = probabilities.argmax(axis=0).astype(np.uint8)
        self.write_label(image_id, label)


def predict_split(
    manifest: Manifest, manifest_dir: Path, checkpoint: Path, segmenter: SegmenterParams, params: PredictParams,
    device: str, out: Path, proposals: Path, execution: ExecutionParams, stage: str = "predict", split: str = "val",
) -> dict[str, int]:  # fmt: skip
    """One VOC palette PNG prediction per image of ``split`` on ``execution``'s runner, built in a resumable
    work directory and published as the zip ``out`` (a :class:`~pipeline.io.LabelSet`)."""
    settings = json.dumps({"segmenter": segmenter.model_dump(mode="json"), "predict": params.model_dump(mode="json"),
                           "split": split}, sort_keys=True)  # fmt: skip
    extra = [ProposalStore(proposals).attributes["inputs_key"]] if params.postprocess == "sams" else []
    key = fingerprint(Path(manifest_dir) / MANIFEST_NAME, Path(checkpoint), settings, *extra)
    work = work_directory(out, key)
    job = PredictJob(key, work, manifest_dir, checkpoint, segmenter, params, device, proposals)
    counts = run_images(stage, job, [entry.id for entry in manifest.entries(split)], execution)
    publish_zip(work, out)
    return counts
