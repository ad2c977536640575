"""Real-size smoke run of the CLIP methods: CLIP-ES's CAMs through a ViT-B/16-shaped open_clip model (random
weights: ``open_clip.create_model("ViT-B-16")`` without a tag downloads nothing) at 224 × 224 and at 500 × 375
(VOC's typical size; padded to multiples of 16), 20 VOC classes, CLIP-ES's 25 background words, CAA on.

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
    """CLIP-ES CAMs of two classes for one random image of ``height × width`` (one scale, no flip, as CLIP-ES)."""
    params = ClipEsParams(template="a clean origami {}.", background=CLIP_ES_BACKGROUND)
    model = ClipEs(params, vit_b16_clip(), VOC_CLASSES)
    image = torch.randn(3, height, width)
    start = time.perf_counter()
    cams = multiscale_cam(model, image, [0, 14], (1.0,), False)
    seconds = time.perf_counter() - start
    return {"size": [height, width], "cam_shape": list(cams.shape), "cam_range": [float(cams.min()), float(cams.max())],
            "seconds": seconds, "parameters_m": sum(p.numel() for p in model.clip_model.parameters()) / 1e6,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2}  # fmt: skip


def main() -> None:
    if len(sys.argv) == 3:  # a child: one size
        print(json.dumps(clip_es_at(int(sys.argv[1]), int(sys.argv[2]))))
        return
    rows = []
    for height, width in SIZES:
        child = subprocess.run([sys.executable, "-m", "benchmarks.clip_real_size", str(height), str(width)],
                               check=True, capture_output=True, text=True)  # fmt: skip
        rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
    base = rows[0]["seconds"]
    print(f"{'size':>10} {'CLIP-ES s':>10} {'× 224²':>7} {'peak RSS GB':>12}")
    for row in rows:
        size = "×".join(map(str, row["size"]))
        print(f"{size:>10} {row['seconds']:10.2f} {row['seconds'] / base:7.2f} {row['peak_rss_gb']:12.2f}")


if __name__ == "__main__":
    main()
