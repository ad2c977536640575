"""Real-size smoke run of the CLIP methods on a ViT-B/16-shaped open_clip model (random weights:
``open_clip.create_model("ViT-B-16")`` without a tag downloads nothing) at 224 × 224 and at 500 × 375 (VOC's
typical size; padded to multiples of 16), 20 VOC classes, CLIP-ES's 25 background words: CLIP-ES's CAMs (CAA
on), then one training step of each FMA-WSSS phase (16 context tokens; the segmentation phase's CAL through
the double backward) on a batch of two images.

Each size runs in a fresh process, so its peak resident memory is its own.

    .venv/bin/python -m benchmarks.clip_real_size
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from typing import Any

import open_clip
import torch

from pipeline.cams.extract import multiscale_cam
from pipeline.cams.methods.clip_es.model import ClipEs
from pipeline.cams.methods.clip_es.params import ClipEsParams
from pipeline.cams.methods.fma.model import Fma, FmaClassification
from pipeline.cams.methods.fma.params import FmaClassificationParams, FmaParams
from pipeline.clip.models import Clip
from pipeline.voc import VOC_CLASSES

SIZES = ((224, 224), (375, 500))  # (H, W)
CLIP_ES_BACKGROUND = ("ground", "land", "grass", "tree", "building", "wall", "sky", "lake", "water", "river", "sea",
                      "railway", "railroad", "keyboard", "helmet", "cloud", "house", "mountain", "ocean", "road",
                      "rock", "street", "valley", "bridge", "sign")  # fmt: skip


def vit_b16_clip() -> Clip:
    """OpenAI's ViT-B/16 shape with random weights and CLIP's own tokenizer (shipped with open_clip)."""
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-16", pretrained=None, force_quick_gelu=True)
    return Clip(model.eval().requires_grad_(False), open_clip.get_tokenizer("ViT-B-16"),
                open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD)  # fmt: skip


def clip_es_at(height: int, width: int) -> dict[str, Any]:
    """CLIP-ES CAMs of two classes for one random image of ``height × width`` (one scale, no flip, CAA, as CLIP-ES)."""
    params = ClipEsParams(template="a clean origami {}.", background=CLIP_ES_BACKGROUND, caa={"enabled": True})
    model = ClipEs(params, vit_b16_clip(), VOC_CLASSES)
    image = torch.randn(3, height, width)
    start = time.perf_counter()
    cams = multiscale_cam(model, image, [0, 14], (1.0,), False)
    seconds = time.perf_counter() - start
    return {"size": [height, width], "cam_shape": list(cams.shape), "cam_range": [float(cams.min()), float(cams.max())],
            "seconds": seconds, "parameters_m": sum(p.numel() for p in model.clip_model.parameters()) / 1e6,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2}  # fmt: skip


def fma_steps_at(height: int, width: int) -> dict[str, Any]:
    """One optimiser step of each FMA phase on two random images of ``height × width`` (padded to 16)."""
    clip = vit_b16_clip()
    size = (-(-height // 16) * 16, -(-width // 16) * 16)
    images, targets = torch.randn(2, 3, *size), torch.zeros(2, len(VOC_CLASSES))
    targets[0, [0, 14]], targets[1, 6] = 1.0, 1.0
    seeds = torch.randint(0, len(VOC_CLASSES) + 1, (2, *size))
    result: dict[str, Any] = {"size": [height, width]}
    for name, method, params, extra in (
        ("classification", FmaClassification, FmaClassificationParams(background=CLIP_ES_BACKGROUND), []),
        ("segmentation", Fma, FmaParams(background=CLIP_ES_BACKGROUND, cal_scale="raw"), [seeds]),
    ):
        model = method(params, clip, VOC_CLASSES).train()
        optimizer = model.optimizer(model.parameter_groups(params.training), params.training)
        start = time.perf_counter()
        loss = sum(model.training_step(images, targets, *extra).values())
        loss.backward()
        optimizer.step()
        result[f"{name}_seconds"] = time.perf_counter() - start
        result[f"{name}_loss"] = float(loss.detach())
    result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return result


def main() -> None:
    if len(sys.argv) == 4:  # a child: one method at one size
        run = clip_es_at if sys.argv[1] == "clip_es" else fma_steps_at
        print(json.dumps(run(int(sys.argv[2]), int(sys.argv[3]))))
        return
    rows = []
    for height, width in SIZES:
        row = {}
        for method in ("clip_es", "fma"):
            child = subprocess.run([sys.executable, "-m", "benchmarks.clip_real_size", method, str(height), str(width)],
                                   check=True, capture_output=True, text=True)  # fmt: skip
            result = json.loads(child.stdout.strip().splitlines()[-1])
            row.update({f"{method}_{k}": v for k, v in result.items()}, size=result["size"])
        rows.append(row)
    base = rows[0]
    print(f"{'size':>10} {'CLIP-ES s':>10} {'× 224²':>7} {'RSS GB':>7} {'FMA cls step s':>15} {'FMA seg step s':>15} "
          f"{'× 224²':>7} {'RSS GB':>7}")  # fmt: skip
    for row in rows:
        size = "×".join(map(str, row["size"]))
        seg = row["fma_segmentation_seconds"]
        print(f"{size:>10} {row['clip_es_seconds']:10.2f} {row['clip_es_seconds'] / base['clip_es_seconds']:7.2f} "
              f"{row['clip_es_peak_rss_gb']:7.2f} {row['fma_classification_seconds']:15.2f} {seg:15.2f} "
              f"{seg / base['fma_segmentation_seconds']:7.2f} {row['fma_peak_rss_gb']:7.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
