"""Inference on the val split: multi-scale + flip softmax averaging, optional CRF or SAMS post-processing.

SAMS post-processing follows §4.4 of FMA-WSSS: the SAM-based seeding module with the segmentation scores in
place of CAMs — here the softmax probabilities of the classes present in the raw prediction — so each
quasi-superpixel takes one class (eq. 8–10).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.data.loading import load_image, to_tensor
from pipeline.data.manifest import Manifest
from pipeline.io import fresh_directory, inside, pack_zip, write_label_png
from pipeline.params import PredictParams, SegmenterParams
from pipeline.proposals.store import ProposalStore
from pipeline.refine.crf import crf_from_probabilities
from pipeline.seeds.sams import sams_seeds
from pipeline.segmentation.training import load_segmenter
from pipeline.tracking import progress
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
    """FMA-WSSS §4.4: SAMS with the probabilities of the predicted classes as scores."""
    present = [int(c) - 1 for c in np.unique(probabilities.argmax(axis=0)) if c > 0]
    if not present:
        return np.zeros(probabilities.shape[1:], dtype=np.uint8)
    return sams_seeds(probabilities[[c + 1 for c in present]], present, params.sams, regions)


def predict_split(
    manifest: Manifest, checkpoint: Path, segmenter: SegmenterParams, params: PredictParams, device: torch.device,
    out: Path, proposals: Path, split: str = "val",
) -> dict[str, int]:  # fmt: skip
    """One VOC palette PNG prediction per image of ``split``, published as the zip ``out`` (a
    :class:`~pipeline.io.LabelSet`)."""
    model = load_segmenter(checkpoint, segmenter, manifest.num_classes + 1, device)
    store = ProposalStore(proposals) if params.postprocess == "sams" else None
    staging = fresh_directory(Path(out).with_name(f".{Path(out).name}.partial"))
    entries = manifest.entries(split)
    for entry in progress(entries, total=len(entries), desc=f"predict {split}"):
        image = load_image(manifest, entry)
        probabilities = multiscale_probabilities(model, to_tensor(image).to(device), params.scales, params.flip)
        probabilities = probabilities.cpu().numpy()
        if params.postprocess == "crf":
            label = crf_from_probabilities(image, probabilities, params.crf)
        elif params.postprocess == "sams":
            label = sams_postprocess(probabilities, params, store.read(entry.id, image.shape[:2]))
        else:
            label = probabilities.argmax(axis=0).astype(np.uint8)
        write_label_png(inside(staging, f"{entry.id}.png"), label)
    pack_zip(staging, out)
    shutil.rmtree(staging)
    return {"images": len(entries)}
