"""Real-size smoke run of the ViT-PCM methods: one training step and CAM inference on 384 × 384 inputs through a
ViT-B/16-shaped model (``vit_base_patch16_384``, random weights: nothing is downloaded), as the papers train.

Each method runs in a fresh process so that its peak resident memory is its own; plain CAM on the same ViT-B/16
is the baseline every row is divided by.

    .venv/bin/python -m benchmarks.vit_pcm_real_size [--batch 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from pipeline.cams.contract import BuildContext
from pipeline.cams.extract import multiscale_cam
from pipeline.cams.params import CamParams
from pipeline.cams.registry import CAM_METHODS

SIDE = 384
CLASSES = tuple(f"class{i}" for i in range(20))
VIT_B16 = {"model": "vit_base_patch16_384", "weights": "none", "patch_size": None, "embed_dim": None, "depth": None,
           "num_heads": None}  # fmt: skip
METHODS = ("cam", "apc", "pcc")


def real_size_params(method: str, batch: int) -> CamParams:
    section: dict[str, Any] = {"vit": VIT_B16, "training": {"crop_size": SIDE, "batch_size": batch}}
    if method == "cam":
        section["backbone"] = "vit"
    if method == "apc":
        section["decoder_width"] = 256
    if method == "pcc":
        section["cluster_width"] = 256
    return CamParams.model_validate({"method": method, method: section})


def real_size_step(method: str, batch: int, inputs: dict) -> dict[str, Any]:
    """One optimiser step on ``batch`` random 384² images and CAMs of two classes for one image (scale 1 + flip)."""
    torch.manual_seed(0)
    params = real_size_params(method, batch).selected()
    model = CAM_METHODS.get(method).build(params, BuildContext(CLASSES, pretrained=False, inputs=inputs)).train()
    optimizer = torch.optim.AdamW(model.parameter_groups(params.training))
    images = torch.randn(batch, 3, SIDE, SIDE)
    targets = torch.zeros(batch, len(CLASSES))
    targets[:, [0, 7]] = 1
    start = time.perf_counter()
    losses = model.training_step(images, targets)
    sum(losses.values()).backward()
    optimizer.step()
    trained = time.perf_counter() - start
    start = time.perf_counter()
    cams = multiscale_cam(model.eval(), images[0], [0, 7], (1.0,), True)
    inferred = time.perf_counter() - start
    return {"losses": {k: v.item() for k, v in losses.items()}, "cam_shape": list(cams.shape),
            "cam_range": [float(cams.min()), float(cams.max())], "train_step_s": trained, "inference_s": inferred,
            "parameters_m": sum(p.numel() for p in model.parameters()) / 1e6}  # fmt: skip


def child(method: str, batch: int, clusters: str) -> None:
    result = real_size_step(method, batch, {"clusters": clusters})
    result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--child", choices=METHODS)
    parser.add_argument("--clusters", default="")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.batch, args.clusters)
        return
    with tempfile.TemporaryDirectory() as tmp:
        clusters = Path(tmp) / "clusters.json"
        membership = {name: [f"group{i % 5}"] for i, name in enumerate(CLASSES)}
        clusters.write_text(json.dumps({"clusters": {}, "membership": membership}))
        results = {}
        for method in METHODS:
            command = [sys.executable, "-m", "benchmarks.vit_pcm_real_size", "--child", method, "--batch",
                       str(args.batch), "--clusters", str(clusters)]  # fmt: skip
            results[method] = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    base = results["cam"]
    print(
        f"{SIDE}×{SIDE}, batch {args.batch}, ViT-B/16-shaped, random weights, CPU ({torch.get_num_threads()} threads)"
    )
    print("| method | parameters (M) | train step (s) | × CAM | CAM inference (s) | × CAM | peak RSS (GB) | × CAM |")
    print("|---|---|---|---|---|---|---|---|")
    for method, row in results.items():
        print(f"| {method} | {row['parameters_m']:.1f} | {row['train_step_s']:.1f} | "
              f"{row['train_step_s'] / base['train_step_s']:.2f} | {row['inference_s']:.1f} | "
              f"{row['inference_s'] / base['inference_s']:.2f} | {row['peak_rss_gb']:.2f} | "
              f"{row['peak_rss_gb'] / base['peak_rss_gb']:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
